//! GPU buffers: a pool that reuses them, and one cache of bind groups over them.
//!
//! **Two kinds of buffer.** Long-lived tensors (weights, caches, inputs: [`crate::Gpu::zeros`],
//! [`crate::Gpu::upload`]) get a buffer of their exact size, freed when the last handle goes.
//! Everything a recording makes (each op's output, the small per-step uploads of
//! [`crate::Recorder::upload_u32`]) and every read-back staging buffer comes from the pool, in
//! size classes a quarter of a power of two apart, and goes back to it when its last
//! [`GpuTensor`](crate::GpuTensor) handle is dropped. So a decoding step, once warm, creates no
//! buffer.
//!
//! **Reuse inside a recording.** Ops keep plain `wgpu::Buffer`s, not tensor handles: an
//! intermediate whose handles are dropped while its recording is open is free for a later op of
//! the same recording to write. That is safe because the ops of one compute pass run in order,
//! each seeing the previous ones' writes; so a forward's peak memory is what is alive at once,
//! not every intermediate it made. Such a buffer is not handed to an upload (`write_buffer` runs
//! before the whole submission, so it would clobber data an earlier op of the recording still
//! needs), and a buffer freed while another recording is also open, or one made outside the
//! recording, waits until the recordings close.
//!
//! **Bind groups** are cached by pipeline and the exact buffers, offsets and sizes they bind, so
//! a step that binds the same buffers as the last one (which a warm pool makes the norm) creates
//! none. Dropping an exact-size buffer clears the cache, so cached groups never keep freed
//! weights alive.

use crate::stats::Counters;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

/// Usage of every storage buffer.
pub(crate) const STORAGE: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE.union(wgpu::BufferUsages::COPY_DST).union(wgpu::BufferUsages::COPY_SRC);
/// Usage of read-back staging buffers.
pub(crate) const READBACK: wgpu::BufferUsages = wgpu::BufferUsages::MAP_READ.union(wgpu::BufferUsages::COPY_DST);

/// Smallest pooled buffer.
const MIN_CLASS: u64 = 256;
/// Bind groups kept before the cache starts over.
const MAX_BIND_GROUPS: usize = 16384;

/// The pooled size for `bytes`: rounded up to a multiple of an eighth of the next power of two
/// (at least 256 bytes), so at most a quarter, or 256 bytes, is wasted.
pub(crate) fn size_class(bytes: u64) -> u64 {
    let b = bytes.max(MIN_CLASS);
    let step = (b.next_power_of_two() / 8).max(MIN_CLASS);
    b.div_ceil(step) * step
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Kind {
    Storage,
    Readback,
}

/// Where a pooled buffer goes back to when freed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Origin {
    /// An op output or upload of recording `id`.
    Recording(u64),
    /// Outside any recording.
    Outside,
}

/// Free buffers of one size class by their serial number: the lowest goes out first, so a step
/// that starts with the same buffers free gets the same ones in the same places (and so the
/// same bind groups), whatever order the last step freed them in.
type Shelf = BTreeMap<u64, wgpu::Buffer>;

#[derive(Default)]
struct PoolState {
    free: HashMap<(Kind, u64), Shelf>,
    /// Intermediates of the one open recording, freed while it records: for its later outputs.
    local: HashMap<u64, Shelf>,
    local_owner: Option<u64>,
    /// Freed while recordings were open: free once they all close.
    quarantine: Vec<(Kind, u64, u64, wgpu::Buffer)>,
    next_serial: u64,
    open: Vec<u64>,
    next_id: u64,
    in_use: u64,
    peak: u64,
    held: u64,
}

/// Memory held by the pool, for reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolMemory {
    /// Bytes of pooled buffers handed out and not yet freed.
    pub in_use: u64,
    /// The most `in_use` has been since [`crate::Gpu::reset_peak`].
    pub peak: u64,
    /// Bytes of every buffer the pool owns, free or not.
    pub held: u64,
}

#[derive(Hash, PartialEq, Eq)]
struct BindKey {
    pipeline: usize,
    entries: Vec<(u32, wgpu::Buffer, u64, u64)>,
}

/// What the device's buffers share: the pool, the bind group cache and the counters.
pub(crate) struct Shared {
    pub device: wgpu::Device,
    pool: Mutex<PoolState>,
    bind_groups: Mutex<HashMap<BindKey, wgpu::BindGroup>>,
    pub counters: Counters,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    pub fn new(device: wgpu::Device) -> Arc<Shared> {
        Arc::new(Shared { device, pool: Mutex::default(), bind_groups: Mutex::default(), counters: Counters::default() })
    }

    /// Creates a buffer (counted).
    pub fn create(&self, label: &str, size: u64, usage: wgpu::BufferUsages) -> wgpu::Buffer {
        Counters::add(&self.counters.buffers_created, 1);
        Counters::add(&self.counters.bytes_created, size);
        self.device.create_buffer(&wgpu::BufferDescriptor { label: Some(label), size, usage, mapped_at_creation: false })
    }

    /// An exact-size storage buffer of its own.
    pub fn exact(self: &Arc<Self>, label: &str, size: u64) -> Buf {
        let buffer = self.create(label, size.max(4), STORAGE);
        Buf(Arc::new(BufInner { buffer, pooled: None, shared: self.clone() }))
    }

    /// A pooled buffer of at least `size` bytes; `output` when an op of `origin`'s recording
    /// writes it (then it may be one the recording freed), not for an upload.
    pub fn pooled(self: &Arc<Self>, label: &str, size: u64, kind: Kind, origin: Origin, output: bool) -> Buf {
        let class = size_class(size);
        let (reused, serial) = {
            let mut pool = lock(&self.pool);
            let from_local = match origin {
                Origin::Recording(id) if output && pool.local_owner == Some(id) => pool.local.get_mut(&class).and_then(BTreeMap::pop_first),
                _ => None,
            };
            let found = from_local.or_else(|| pool.free.get_mut(&(kind, class)).and_then(BTreeMap::pop_first));
            pool.in_use += class;
            pool.peak = pool.peak.max(pool.in_use);
            match found {
                Some((serial, buffer)) => (Some(buffer), serial),
                None => {
                    pool.held += class;
                    pool.next_serial += 1;
                    (None, pool.next_serial)
                }
            }
        };
        let buffer = reused.unwrap_or_else(|| self.create(label, class, if kind == Kind::Storage { STORAGE } else { READBACK }));
        Buf(Arc::new(BufInner { buffer, pooled: Some(Pooled { kind, class, serial, origin }), shared: self.clone() }))
    }

    fn release(&self, buffer: wgpu::Buffer, p: Pooled) {
        let mut pool = lock(&self.pool);
        pool.in_use -= p.class;
        let only_open = if pool.open.len() == 1 { pool.open.first().copied() } else { None };
        match p.origin {
            Origin::Recording(id) if p.kind == Kind::Storage && only_open == Some(id) && pool.local_owner == Some(id) => {
                pool.local.entry(p.class).or_default().insert(p.serial, buffer);
            }
            _ if p.kind == Kind::Storage && !pool.open.is_empty() => pool.quarantine.push((p.kind, p.class, p.serial, buffer)),
            _ => {
                pool.free.entry((p.kind, p.class)).or_default().insert(p.serial, buffer);
            }
        }
    }

    /// Opens a recording; its id tags what it allocates.
    pub fn open_recording(&self) -> u64 {
        let mut pool = lock(&self.pool);
        pool.next_id += 1;
        let id = pool.next_id;
        pool.open.push(id);
        pool.local_owner = if pool.open.len() == 1 { Some(id) } else { None };
        id
    }

    /// Closes recording `id` (submitted or abandoned): its freed intermediates become free, and
    /// so does the quarantine once no recording is open.
    pub fn close_recording(&self, id: u64) {
        let mut pool = lock(&self.pool);
        pool.open.retain(|&o| o != id);
        if pool.local_owner == Some(id) {
            pool.local_owner = None;
            let local = std::mem::take(&mut pool.local);
            for (class, buffers) in local {
                pool.free.entry((Kind::Storage, class)).or_default().extend(buffers);
            }
        }
        if pool.open.is_empty() {
            let quarantine = std::mem::take(&mut pool.quarantine);
            for (kind, class, serial, buffer) in quarantine {
                pool.free.entry((kind, class)).or_default().insert(serial, buffer);
            }
        }
    }

    pub fn memory(&self) -> PoolMemory {
        let pool = lock(&self.pool);
        PoolMemory { in_use: pool.in_use, peak: pool.peak, held: pool.held }
    }

    pub fn reset_peak(&self) {
        let mut pool = lock(&self.pool);
        pool.peak = pool.in_use;
    }

    /// Frees every pooled buffer not in use and every cached bind group.
    pub fn trim(&self) {
        let mut pool = lock(&self.pool);
        let freed: u64 = pool.free.iter().map(|((_, class), shelf)| class * shelf.len() as u64).sum();
        pool.held -= freed;
        pool.free.clear();
        drop(pool);
        lock(&self.bind_groups).clear();
    }

    /// The bind group for `pipeline` over `entries` (binding, buffer, offset, size), cached.
    pub fn bind_group(&self, pipeline: &crate::pipeline::Pipeline, pipeline_id: usize, entries: &[(u32, wgpu::Buffer, u64, u64)]) -> wgpu::BindGroup {
        let key = BindKey { pipeline: pipeline_id, entries: entries.to_vec() };
        let mut groups = lock(&self.bind_groups);
        if let Some(g) = groups.get(&key) {
            return g.clone();
        }
        if groups.len() >= MAX_BIND_GROUPS {
            groups.clear();
        }
        let wgpu_entries: Vec<wgpu::BindGroupEntry> = entries
            .iter()
            .map(|(binding, buffer, offset, size)| wgpu::BindGroupEntry {
                binding: *binding,
                resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding { buffer, offset: *offset, size: wgpu::BufferSize::new(*size) }),
            })
            .collect();
        let group = self.device.create_bind_group(&wgpu::BindGroupDescriptor { label: Some(&pipeline.name), layout: &pipeline.bind_group_layout, entries: &wgpu_entries });
        Counters::add(&self.counters.bind_groups_created, 1);
        groups.insert(key, group.clone());
        group
    }

    /// Forgets every cached bind group (a buffer they may bind is gone).
    pub fn clear_bind_groups(&self) {
        lock(&self.bind_groups).clear();
    }
}

/// What a pooled buffer is: its kind, size class, serial number and where it goes when freed.
#[derive(Clone, Copy)]
struct Pooled {
    kind: Kind,
    class: u64,
    serial: u64,
    origin: Origin,
}

pub(crate) struct BufInner {
    buffer: wgpu::Buffer,
    pooled: Option<Pooled>,
    shared: Arc<Shared>,
}

impl Drop for BufInner {
    fn drop(&mut self) {
        match self.pooled {
            Some(p) => self.shared.release(self.buffer.clone(), p),
            // Not destroyed here: an op recorded but not yet submitted may still bind it (wgpu
            // frees it when the last reference goes).
            None => self.shared.clear_bind_groups(),
        }
    }
}

/// A handle to a GPU buffer: an exact-size one, or one lent by the pool and returned when the
/// last handle goes.
#[derive(Clone)]
pub struct Buf(Arc<BufInner>);

impl Buf {
    /// The buffer, to bind (a plain `wgpu::Buffer` does not hold the pool's loan).
    pub fn buffer(&self) -> &wgpu::Buffer {
        &self.0.buffer
    }

    /// Its size in bytes (a pooled buffer's is its size class).
    pub fn size(&self) -> u64 {
        self.0.buffer.size()
    }
}

impl std::fmt::Debug for Buf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Buf({} bytes{})", self.size(), if self.0.pooled.is_some() { ", pooled" } else { "" })
    }
}

#[cfg(test)]
mod tests {
    use super::size_class;

    #[test]
    fn size_classes_waste_at_most_a_quarter_or_256_bytes() {
        assert_eq!(size_class(1), 256);
        assert_eq!(size_class(256), 256);
        assert_eq!(size_class(257), 512);
        assert_eq!(size_class(4096), 4096);
        assert_eq!(size_class(4097), 5120);
        for b in [300u64, 1000, 5000, 65537, 1 << 20, (1 << 20) + 1, 123_456_789] {
            let c = size_class(b);
            assert!(c >= b && (c - b) < (b / 4).max(256), "{b} -> {c}");
        }
    }
}
