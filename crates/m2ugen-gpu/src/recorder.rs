//! Recording ops and submitting them in one go.
//!
//! A launcher (`rec.rms_norm(..)`) checks shapes, allocates its output and pushes one [`Op`] per
//! chunk it touches. [`Recorder::submit`] packs every op's parameters into one uniform buffer,
//! encodes all dispatches into one compute pass and submits once.

use crate::pipeline::{Layout, Pipeline, PipelineKey, Slot};
use crate::registry::{Elem, Kernel};
use crate::{Gpu, Result};
use std::sync::Arc;

/// One dispatch: a pipeline, its parameters, its buffers and its grid.
pub struct Op {
    pipeline: Arc<Pipeline>,
    params: Vec<u32>,
    buffers: Vec<(u32, wgpu::Buffer)>,
    workgroups: [u32; 3],
}

/// Collects ops for one submission.
pub struct Recorder<'g> {
    /// The GPU the ops run on.
    pub gpu: &'g Gpu,
    ops: Vec<Op>,
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
        Recorder { gpu, ops: Vec::new() }
    }

    /// Ops recorded so far.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Records one dispatch. `buffers` pairs binding indices with buffers; binding 0 of
    /// `layout` must be the uniform that receives `params` (padded to 16 bytes).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn push(
        &mut self,
        kernel: Kernel,
        entry: &'static str,
        elem: Elem,
        layout: Layout,
        params: &[u32],
        buffers: Vec<(u32, wgpu::Buffer)>,
        workgroups: [u32; 3],
    ) {
        debug_assert_eq!(layout.first(), Some(&(0, Slot::Uniform)), "binding 0 is the parameter block");
        let pipeline = self.gpu.cache.get(&self.gpu.device, &PipelineKey { kernel, entry, elem, layout });
        let mut params = params.to_vec();
        params.resize(params.len().div_ceil(4).max(1) * 4, 0);
        self.ops.push(Op { pipeline, params, buffers, workgroups });
    }

    /// Encodes every op into one compute pass and submits it.
    pub fn submit(self) -> Result<()> {
        let gpu = self.gpu;
        gpu.check("recording")?;
        if self.ops.is_empty() {
            return Ok(());
        }
        let align = gpu.limits.min_uniform_buffer_offset_alignment.max(16) as usize / 4;
        let mut arena: Vec<u32> = Vec::new();
        let mut offsets = Vec::with_capacity(self.ops.len());
        for op in &self.ops {
            arena.resize(arena.len().div_ceil(align) * align, 0);
            offsets.push(arena.len() * 4);
            arena.extend_from_slice(&op.params);
        }
        // Plain create + write (not create_buffer_init): on a lost device this reports an error
        // instead of panicking in the mapping.
        let uniforms = gpu.create_buffer(&wgpu::BufferDescriptor {
            label: Some("op parameters"),
            size: (arena.len() * 4) as u64,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        gpu.queue.write_buffer(&uniforms, 0, bytemuck::cast_slice(&arena));
        let groups: Vec<wgpu::BindGroup> = self
            .ops
            .iter()
            .zip(&offsets)
            .map(|(op, &offset)| {
                let mut entries = vec![wgpu::BindGroupEntry {
                    binding: 0,
                    resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                        buffer: &uniforms,
                        offset: offset as u64,
                        size: wgpu::BufferSize::new(op.params.len() as u64 * 4),
                    }),
                }];
                entries.extend(op.buffers.iter().map(|(binding, buffer)| wgpu::BindGroupEntry { binding: *binding, resource: buffer.as_entire_binding() }));
                gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
                    label: Some(&op.pipeline.name),
                    layout: &op.pipeline.bind_group_layout,
                    entries: &entries,
                })
            })
            .collect();
        let mut encoder = gpu.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("ops") });
        {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("ops"), timestamp_writes: None });
            for (op, group) in self.ops.iter().zip(&groups) {
                pass.set_pipeline(&op.pipeline.pipeline);
                pass.set_bind_group(0, group, &[]);
                let [x, y, z] = op.workgroups;
                pass.dispatch_workgroups(x, y, z);
            }
        }
        gpu.queue.submit([encoder.finish()]);
        use crate::stats::Counters;
        Counters::add(&gpu.counters.submits, 1);
        Counters::add(&gpu.counters.dispatches, self.ops.len() as u64);
        Counters::add(&gpu.counters.bind_groups_created, groups.len() as u64);
        gpu.check("submitting ops")
    }
}
