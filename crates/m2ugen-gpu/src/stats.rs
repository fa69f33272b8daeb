//! Counters of what the runtime asks of the device: buffers and bind groups created, dispatches,
//! submissions and bytes read back. `m2ugen bench-llm` prints them per decode step.

use std::sync::atomic::{AtomicU64, Ordering};

/// A snapshot of the counters (see [`crate::Gpu::stats`]); subtract two to get what happened
/// between them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GpuStats {
    /// GPU buffers created.
    pub buffers_created: u64,
    /// Bytes of the buffers created.
    pub bytes_created: u64,
    /// Bind groups created.
    pub bind_groups_created: u64,
    /// Compute dispatches recorded and submitted.
    pub dispatches: u64,
    /// Queue submissions.
    pub submits: u64,
    /// Bytes copied back from the GPU.
    pub bytes_read_back: u64,
}

impl std::ops::Sub for GpuStats {
    type Output = GpuStats;
    fn sub(self, o: GpuStats) -> GpuStats {
        GpuStats {
            buffers_created: self.buffers_created - o.buffers_created,
            bytes_created: self.bytes_created - o.bytes_created,
            bind_groups_created: self.bind_groups_created - o.bind_groups_created,
            dispatches: self.dispatches - o.dispatches,
            submits: self.submits - o.submits,
            bytes_read_back: self.bytes_read_back - o.bytes_read_back,
        }
    }
}

/// The live counters.
#[derive(Default)]
pub(crate) struct Counters {
    pub buffers_created: AtomicU64,
    pub bytes_created: AtomicU64,
    pub bind_groups_created: AtomicU64,
    pub dispatches: AtomicU64,
    pub submits: AtomicU64,
    pub bytes_read_back: AtomicU64,
}

impl Counters {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> GpuStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        GpuStats {
            buffers_created: get(&self.buffers_created),
            bytes_created: get(&self.bytes_created),
            bind_groups_created: get(&self.bind_groups_created),
            dispatches: get(&self.dispatches),
            submits: get(&self.submits),
            bytes_read_back: get(&self.bytes_read_back),
        }
    }
}
