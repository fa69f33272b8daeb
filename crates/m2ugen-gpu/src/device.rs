//! The GPU: adapter and device creation with the features and limits the kernels need.

use crate::buffer::{PoolMemory, Shared};
use crate::pipeline::PipelineCache;
use crate::{platform, Error, Result};
use std::sync::{Arc, Mutex};

/// Whether to use f16 arithmetic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum F16Mode {
    /// Use `shader-f16` when the adapter has it, f32 otherwise.
    #[default]
    Auto,
    /// Fail when the adapter lacks `shader-f16`.
    Require,
    /// Never use it.
    Off,
}

/// Options for [`Gpu::new`].
#[derive(Clone, Debug, Default)]
pub struct GpuOptions {
    /// Whether to use f16 arithmetic.
    pub f16: F16Mode,
    /// The largest tensor (bytes) that must fit one binding; a smaller device limit is an error.
    pub min_binding: u64,
    /// Split tensors at this many bytes instead of the device's binding limit (tests use a tiny
    /// value so that splitting is exercised on small tensors).
    pub split_at: Option<u64>,
}

/// What the kernels need of a device, checked before it is created.
/// (WebGPU's defaults, so every WebGPU device has them; they bound the kernels' sizes in
/// `registry::sizes`.)
const NEEDS: [(&str, fn(&wgpu::Limits) -> u64, u64); 6] = [
    ("maxComputeInvocationsPerWorkgroup", |l| l.max_compute_invocations_per_workgroup as u64, 256),
    ("maxComputeWorkgroupSizeX", |l| l.max_compute_workgroup_size_x as u64, 256),
    ("maxComputeWorkgroupStorageSize", |l| l.max_compute_workgroup_storage_size as u64, 16384),
    ("maxStorageBuffersPerShaderStage", |l| l.max_storage_buffers_per_shader_stage as u64, 8),
    ("maxComputeWorkgroupsPerDimension", |l| l.max_compute_workgroups_per_dimension as u64, 65535),
    ("maxUniformBufferBindingSize", |l| l.max_uniform_buffer_binding_size as u64, crate::params::PARAM_SLOT as u64),
];

/// A GPU device with its queue, pipeline cache and error state.
pub struct Gpu {
    /// The wgpu device.
    pub device: wgpu::Device,
    /// Its queue.
    pub queue: wgpu::Queue,
    /// What the adapter says of itself.
    pub info: wgpu::AdapterInfo,
    /// The device's limits.
    pub limits: wgpu::Limits,
    f16: bool,
    split_at: u64,
    pub(crate) cache: PipelineCache,
    pub(crate) shared: Arc<Shared>,
    pub(crate) dummy: wgpu::Buffer,
    /// Bound to writable bindings a launch leaves unused (one buffer may not be both read-only
    /// and writable in one dispatch).
    pub(crate) dummy_write: wgpu::Buffer,
    /// The uniform buffer every recording's parameters go into, and its size.
    pub(crate) params: Mutex<(wgpu::Buffer, u64)>,
    /// Bytes between two ops' parameters (a slot, aligned for dynamic offsets).
    pub(crate) param_stride: u64,
    errors: Arc<Mutex<Vec<String>>>,
    lost: Arc<Mutex<Option<String>>>,
}

impl Gpu {
    /// Finds an adapter, checks its features and limits, and creates the device.
    pub async fn new(options: GpuOptions) -> Result<Gpu> {
        platform::check_webgpu_present()?;
        let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
        desc.backends = platform::backends();
        let instance = wgpu::Instance::new(desc);
        let adapter = instance
            .request_adapter(&wgpu::RequestAdapterOptions {
                power_preference: wgpu::PowerPreference::HighPerformance,
                force_fallback_adapter: false,
                compatible_surface: None,
                apply_limit_buckets: false,
            })
            .await
            .map_err(|e| Error::NoAdapter { detail: e.to_string(), hint: platform::NO_ADAPTER_HINT })?;
        let info = adapter.get_info();
        let limits = adapter.limits();
        for (limit, get, need) in NEEDS {
            if get(&limits) < need {
                return Err(Error::LimitTooSmall { limit, have: get(&limits), need });
            }
        }
        let max_binding = limits.max_storage_buffer_binding_size.min(limits.max_buffer_size);
        if max_binding < options.min_binding {
            return Err(Error::LimitTooSmall { limit: "maxStorageBufferBindingSize", have: max_binding, need: options.min_binding });
        }
        let has_f16 = adapter.features().contains(wgpu::Features::SHADER_F16);
        let f16 = match options.f16 {
            F16Mode::Require if !has_f16 => return Err(Error::MissingFeature { adapter: info.name.clone(), feature: "shader-f16" }),
            F16Mode::Off => false,
            _ => has_f16,
        };
        let required_features = if f16 { wgpu::Features::SHADER_F16 } else { wgpu::Features::empty() };
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("m2ugen"),
                required_features,
                required_limits: limits.clone(),
                memory_hints: wgpu::MemoryHints::Performance,
                ..Default::default()
            })
            .await
            .map_err(|e| Error::RequestDevice(e.to_string()))?;
        let errors = Arc::new(Mutex::new(Vec::new()));
        let lost = Arc::new(Mutex::new(None));
        {
            let errors = errors.clone();
            device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
                if let Ok(mut v) = errors.lock() {
                    v.push(e.to_string());
                }
            }));
            let lost = lost.clone();
            device.set_device_lost_callback(move |reason, message| {
                if let Ok(mut l) = lost.lock() {
                    *l = Some(format!("{reason:?}: {message}"));
                }
            });
        }
        let shared = Shared::new(device.clone());
        let dummy = shared.create("unused binding", 16, wgpu::BufferUsages::STORAGE);
        let dummy_write = shared.create("unused writable binding", 16, wgpu::BufferUsages::STORAGE);
        let param_stride = (crate::params::PARAM_SLOT as u64).next_multiple_of(limits.min_uniform_buffer_offset_alignment.max(16) as u64);
        let params = shared.create("op parameters", 64 * param_stride, wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST);
        let split_at = options.split_at.unwrap_or(max_binding).min(max_binding);
        Ok(Gpu {
            device,
            queue,
            info,
            limits,
            f16,
            split_at,
            cache: PipelineCache::default(),
            shared,
            dummy,
            dummy_write,
            params: Mutex::new((params, 64 * param_stride)),
            param_stride,
            errors,
            lost,
        })
    }

    /// Creates a buffer of its own (benchmarks' copies), counted in [`Gpu::stats`].
    pub fn create_buffer(&self, label: &str, size: u64, usage: wgpu::BufferUsages) -> wgpu::Buffer {
        self.shared.create(label, size, usage)
    }

    /// What the runtime has asked of the device so far.
    pub fn stats(&self) -> crate::GpuStats {
        self.shared.counters.snapshot()
    }

    /// Memory of the buffer pool (what recordings allocate): in use, peak, held.
    pub fn pool_memory(&self) -> PoolMemory {
        self.shared.memory()
    }

    /// Starts the pool's peak over from what is in use now.
    pub fn reset_peak(&self) {
        self.shared.reset_peak();
    }

    /// Frees the pool's idle buffers and the cached bind groups (after unloading a model).
    pub fn trim(&self) {
        self.shared.trim();
    }

    /// Whether f16 kernels can run.
    pub fn has_f16(&self) -> bool {
        self.f16
    }

    /// Bytes at which tensors are split across bindings.
    pub fn split_at(&self) -> u64 {
        self.split_at
    }

    /// One line describing the adapter: name, backend, type, f16, binding limit.
    pub fn describe(&self) -> String {
        let name = if self.info.name.is_empty() { "unnamed adapter (the browser hides its name)" } else { &self.info.name };
        format!(
            "{} ({:?}, {:?}), shader-f16: {}, max binding {} MiB",
            name,
            self.info.backend,
            self.info.device_type,
            if self.f16 { "yes" } else { "no" },
            self.limits.max_storage_buffer_binding_size >> 20
        )
    }

    /// Why the device was lost, if it was (errors stay for [`Gpu::check`]).
    pub fn lost(&self) -> Option<String> {
        platform::poll(&self.device);
        self.lost.lock().ok().and_then(|l| l.clone()).map(|reason| Error::DeviceLost(reason).to_string())
    }

    /// After a failure: why the device was lost, if it was, waiting up to a second for the
    /// browser to say so (a read on a lost device fails before its `lost` promise settles).
    pub async fn loss_after_failure(&self) -> Option<String> {
        for _ in 0..20 {
            if let Some(reason) = self.lost() {
                return Some(reason);
            }
            if !platform::pause_ms(50).await {
                break;
            }
        }
        self.lost()
    }

    /// Fails if the device was lost or reported an error since the last check.
    pub fn check(&self, what: &str) -> Result<()> {
        if self.errors.lock().is_ok_and(|e| !e.is_empty()) {
            // Errors after a device loss are its symptoms: let a pending loss callback run first
            // so that the loss is what gets reported.
            platform::poll(&self.device);
        }
        if let Some(reason) = self.lost.lock().ok().and_then(|l| l.clone()) {
            return Err(Error::DeviceLost(reason));
        }
        let mut errors = self.errors.lock().map_err(|_| Error::Gpu { what: what.into(), message: "error log poisoned".into() })?;
        if !errors.is_empty() {
            let message = errors.join("; ");
            errors.clear();
            return Err(Error::Gpu { what: what.to_string(), message });
        }
        Ok(())
    }

    /// Waits until every submitted command has finished.
    pub async fn sync(&self) -> Result<()> {
        let (tx, rx) = futures_channel::oneshot::channel();
        self.queue.on_submitted_work_done(move || {
            let _ = tx.send(());
        });
        platform::wait(&self.device, rx, "waiting for the GPU").await?;
        self.check("waiting for the GPU")
    }

    /// Destroys the device (to test the lost-device path).
    pub fn destroy(&self) {
        self.device.destroy();
    }
}

/// Dropping a `Gpu` destroys its device, so its memory goes at once. In the browser a dropped
/// device otherwise lives until the garbage collector reaches its wrapper, and in Chromium 156
/// collecting devices that were never destroyed deadlocked the renderer now and then (the
/// browser GPU suite, a device per test, hung in 3 of 4 runs near its fiftieth test; with each
/// device destroyed, 8 runs of 8 passed).
impl Drop for Gpu {
    fn drop(&mut self) {
        self.destroy();
    }
}
