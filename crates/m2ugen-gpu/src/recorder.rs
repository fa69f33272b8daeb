//! Recording ops and submitting them in one go.
//!
//! A launcher (`rec.rms_norm(..)`) checks shapes, allocates its output from the pool and records
//! one op per chunk it touches: a pipeline, its typed parameters and the plain buffers it binds.
//! [`Recorder::submit`] writes every op's parameters into slots of the device's one parameter
//! buffer (bound with dynamic offsets), takes each op's bind group from the cache, encodes all
//! dispatches into one compute pass and submits once. Tensors dropped while recording hand their
//! buffers back for later ops of the same recording (see `buffer.rs`).

use crate::params::{KernelParams, PARAM_SLOT};
use crate::pipeline::{Layout, Pipeline, PipelineKey, Slot};
use crate::registry::{Elem, Kernel};
use crate::stats::Counters;
use crate::tensor::{values_as, Alloc};
use crate::{Gpu, GpuTensor, Result};
use m2ugen_core::DType;
use std::sync::Arc;

/// One dispatch: a pipeline, its buffers and its grid (its parameters sit in the recorder's
/// slots, in op order).
struct Op {
    pipeline: Arc<Pipeline>,
    buffers: Vec<(u32, wgpu::Buffer)>,
    workgroups: [u32; 3],
}

/// What one launch records.
pub(crate) struct Dispatch<'a, P: KernelParams> {
    pub kernel: Kernel,
    pub entry: &'static str,
    pub elem: Elem,
    pub layout: Layout,
    /// Values of the kernel's pipeline constants.
    pub variant: [u32; 2],
    pub params: &'a P,
    /// `(binding, buffer)`; bindings of `layout` left out are bound to a dummy buffer.
    pub buffers: Vec<(u32, wgpu::Buffer)>,
    pub workgroups: [u32; 3],
}

/// Collects ops for one submission.
pub struct Recorder<'g> {
    /// The GPU the ops run on.
    pub gpu: &'g Gpu,
    id: u64,
    ops: Vec<Op>,
    /// Every op's parameters, one slot of `gpu.param_stride` bytes each.
    params: Vec<u8>,
}

/// Workgroup grid for `count` workgroups: x up to 65535, then y.
pub fn grid(count: usize) -> [u32; 3] {
    const MAX: usize = 65535;
    if count <= MAX {
        [count.max(1) as u32, 1, 1]
    } else {
        [MAX as u32, count.div_ceil(MAX) as u32, 1]
    }
}

impl<'g> Recorder<'g> {
    /// An empty recording on `gpu`.
    pub fn new(gpu: &'g Gpu) -> Self {
        Recorder { gpu, id: gpu.shared.open_recording(), ops: Vec::new(), params: Vec::new() }
    }

    /// Ops recorded so far.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// A tensor for an op of this recording to write: from the pool, perhaps a buffer this
    /// recording already freed. Its contents are undefined until written.
    pub fn alloc(&self, what: &str, shape: &[usize], dtype: DType) -> Result<GpuTensor> {
        self.gpu.alloc(what, shape, dtype, Alloc::Pooled { id: self.id, outputs: true })
    }

    /// Uploads u32 values (token ids, positions) for this recording's ops, into a pooled buffer.
    pub fn upload_u32(&self, what: &str, shape: &[usize], data: &[u32]) -> Result<GpuTensor> {
        self.upload_bytes(what, shape, DType::U32, bytemuck::cast_slice(data))
    }

    /// Uploads f32 values as `dtype` (f32 or f16) for this recording's ops, into a pooled buffer.
    pub fn upload(&self, what: &str, shape: &[usize], dtype: DType, data: &[f32]) -> Result<GpuTensor> {
        self.upload_bytes(what, shape, dtype, &values_as(dtype, data, what)?)
    }

    fn upload_bytes(&self, what: &str, shape: &[usize], dtype: DType, bytes: &[u8]) -> Result<GpuTensor> {
        let t = self.gpu.alloc(what, shape, dtype, Alloc::Pooled { id: self.id, outputs: false })?;
        self.gpu.write(&t, what, bytes)?;
        Ok(t)
    }

    /// Records one dispatch.
    pub(crate) fn push<P: KernelParams>(&mut self, d: Dispatch<'_, P>) {
        debug_assert_eq!(crate::params::params_file(d.kernel), P::FILE, "{} takes the parameters of {}", d.kernel.name(), P::FILE);
        debug_assert_eq!(d.layout.first(), Some(&(0, Slot::Uniform)), "binding 0 is the parameter block");
        let pipeline = self.gpu.cache.get(&self.gpu.device, &PipelineKey { kernel: d.kernel, entry: d.entry, elem: d.elem, layout: d.layout, variant: d.variant });
        let start = self.params.len();
        self.params.extend_from_slice(bytemuck::bytes_of(d.params));
        self.params.resize(start + self.gpu.param_stride as usize, 0);
        let mut buffers = d.buffers;
        for &(binding, slot) in d.layout {
            if slot != Slot::Uniform && !buffers.iter().any(|(b, _)| *b == binding) {
                let dummy = if slot == Slot::Write { &self.gpu.dummy_write } else { &self.gpu.dummy };
                buffers.push((binding, dummy.clone()));
            }
        }
        self.ops.push(Op { pipeline, buffers, workgroups: d.workgroups });
    }

    /// Encodes every op into one compute pass and submits it.
    pub fn submit(self) -> Result<()> {
        let gpu = self.gpu;
        gpu.check("recording")?;
        if self.ops.is_empty() {
            return Ok(());
        }
        let stride = gpu.param_stride;
        let needed = self.params.len() as u64;
        let params = {
            let mut held = gpu.params.lock().unwrap_or_else(|e| e.into_inner());
            if held.1 < needed {
                // Grown to a power of two: rarely, and never once a model has warmed up.
                let size = needed.next_power_of_two();
                held.0 = gpu.shared.create("op parameters", size, wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST);
                held.1 = size;
                gpu.shared.clear_bind_groups();
            }
            held.0.clone()
        };
        gpu.queue.write_buffer(&params, 0, &self.params);
        let mut encoder = gpu.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("ops") });
        {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("ops"), timestamp_writes: None });
            let mut entries = Vec::new();
            for (i, op) in self.ops.iter().enumerate() {
                entries.clear();
                entries.push((0, params.clone(), 0, PARAM_SLOT as u64));
                entries.extend(op.buffers.iter().map(|(binding, buffer)| (*binding, buffer.clone(), 0, buffer.size())));
                let group = gpu.shared.bind_group(&op.pipeline, Arc::as_ptr(&op.pipeline) as usize, &entries);
                pass.set_pipeline(&op.pipeline.pipeline);
                pass.set_bind_group(0, &group, &[(i as u64 * stride) as u32]);
                let [x, y, z] = op.workgroups;
                pass.dispatch_workgroups(x, y, z);
            }
        }
        gpu.queue.submit([encoder.finish()]);
        Counters::add(&gpu.shared.counters.submits, 1);
        Counters::add(&gpu.shared.counters.dispatches, self.ops.len() as u64);
        gpu.check("submitting ops")
    }
}

impl Drop for Recorder<'_> {
    /// Closing the recording (submitted or abandoned) returns the buffers it freed to the pool.
    fn drop(&mut self) {
        self.gpu.shared.close_recording(self.id);
    }
}
