//! The one pipeline cache: a compute pipeline and its bind group layout per
//! (kernel, entry point, element type, binding layout, pipeline constants).

use crate::params::PARAM_SLOT;
use crate::registry::{Elem, Kernel};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// How a binding is used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Slot {
    /// The parameter block: a uniform with a dynamic offset (binding 0).
    Uniform,
    /// A read-only storage buffer.
    Read,
    /// A read-write storage buffer.
    Write,
}

/// A binding layout: `(binding index, use)` pairs, declared beside each launcher.
pub type Layout = &'static [(u32, Slot)];

/// What identifies a compiled pipeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PipelineKey {
    /// The kernel family (and weight kind).
    pub kernel: Kernel,
    /// The entry point.
    pub entry: &'static str,
    /// The element type.
    pub elem: Elem,
    /// The bindings.
    pub layout: Layout,
    /// Values of the kernel's pipeline constants ([`Kernel::variant_names`], in order).
    pub variant: [u32; 2],
}

/// A compiled pipeline with its explicit bind group layout.
pub struct Pipeline {
    /// The pipeline.
    pub pipeline: wgpu::ComputePipeline,
    /// The layout its bind groups follow.
    pub bind_group_layout: wgpu::BindGroupLayout,
    /// For labels and errors.
    pub name: String,
}

/// Pipelines and shader modules, each compiled once per device.
#[derive(Default)]
pub struct PipelineCache {
    modules: Mutex<HashMap<(Kernel, Elem), wgpu::ShaderModule>>,
    pipelines: Mutex<HashMap<PipelineKey, Arc<Pipeline>>>,
}

impl PipelineCache {
    /// The pipeline for `key`, compiled on first use.
    pub fn get(&self, device: &wgpu::Device, key: &PipelineKey) -> Arc<Pipeline> {
        let mut pipelines = self.pipelines.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = pipelines.get(key) {
            return p.clone();
        }
        let module = {
            let mut modules = self.modules.lock().unwrap_or_else(|e| e.into_inner());
            modules
                .entry((key.kernel, key.elem))
                .or_insert_with(|| {
                    device.create_shader_module(wgpu::ShaderModuleDescriptor {
                        label: Some(&key.kernel.name()),
                        source: wgpu::ShaderSource::Wgsl(key.kernel.source(key.elem).into()),
                    })
                })
                .clone()
        };
        let entries: Vec<wgpu::BindGroupLayoutEntry> = key
            .layout
            .iter()
            .map(|&(binding, slot)| wgpu::BindGroupLayoutEntry {
                binding,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: wgpu::BindingType::Buffer {
                    ty: match slot {
                        Slot::Uniform => wgpu::BufferBindingType::Uniform,
                        Slot::Read => wgpu::BufferBindingType::Storage { read_only: true },
                        Slot::Write => wgpu::BufferBindingType::Storage { read_only: false },
                    },
                    has_dynamic_offset: slot == Slot::Uniform,
                    min_binding_size: if slot == Slot::Uniform { wgpu::BufferSize::new(PARAM_SLOT as u64) } else { None },
                },
                count: None,
            })
            .collect();
        let variant: String = key.kernel.variant_names().iter().zip(key.variant).map(|(n, v)| format!(",{n}={v}")).collect();
        let name = format!("{}::{}::{:?}{variant}", key.kernel.name(), key.entry, key.elem);
        let bind_group_layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor { label: Some(&name), entries: &entries });
        let layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some(&name),
            bind_group_layouts: &[Some(&bind_group_layout)],
            immediate_size: 0,
        });
        let constants: Vec<(&str, f64)> = key.kernel.variant_names().iter().zip(key.variant).map(|(&n, v)| (n, v as f64)).collect();
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(&name),
            layout: Some(&layout),
            module: &module,
            entry_point: Some(key.entry),
            compilation_options: wgpu::PipelineCompilationOptions { constants: &constants, ..Default::default() },
            cache: None,
        });
        let p = Arc::new(Pipeline { pipeline, bind_group_layout, name });
        pipelines.insert(*key, p.clone());
        p
    }

    /// Pipelines compiled so far.
    pub fn len(&self) -> usize {
        self.pipelines.lock().map_or(0, |p| p.len())
    }

    /// Whether nothing was compiled yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
