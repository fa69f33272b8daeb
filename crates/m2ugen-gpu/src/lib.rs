//! The WebGPU runtime of m2ugen-web: one code path for the browser (WebGPU) and native
//! (Vulkan, Metal, DX12) through `wgpu`.
//!
//! - [`Gpu`]: adapter and device creation that checks features (`shader-f16`) and limits and says
//!   what is missing; device-loss and error tracking.
//! - [`GpuTensor`]: f32, f16 or u32 tensors, split into row chunks when larger than one binding;
//!   upload and read-back; their buffers exact-size (weights, caches) or lent by a pool (what a
//!   recording makes), with one cache of bind groups over them.
//! - [`Weight`]: a linear layer's weight, dense or quantized (q8/q4), behind one interface.
//! - [`registry`]: the WGSL files of `shaders/`, how each kernel's module is assembled, and the
//!   one table of workgroup sizes and tiles ([`registry::sizes`]) both sides read.
//! - [`params`]: each kernel's parameters as a `#[repr(C)]` struct, checked against its WGSL.
//! - [`PipelineCache`]: the one cache of compiled pipelines.
//! - [`Recorder`]: typed launchers (`rec.rms_norm(..)`, `rec.linear(..)`), submitted at once.
//! - [`bench`]: kernel benchmarks reporting GB/s or GFLOP/s against a same-process baseline.
//!
//! What it does not do: model logic (m2ugen-models), fetching weights (m2ugen-weights).
#![deny(missing_docs)]

pub mod bench;
mod buffer;
mod device;
mod error;
pub mod ops;
pub mod params;
mod pipeline;
mod platform;
mod recorder;
mod stats;
pub mod registry;
mod tensor;
mod weight;

pub use buffer::{Buf, PoolMemory};
pub use device::{F16Mode, Gpu, GpuOptions};
pub use error::{Error, Result};
pub use ops::{Attention, Bias, Choose, DecodeAttention, HeadShape, Heads, RopeTable, StridedView, Unary};
pub use pipeline::{PipelineCache, PipelineKey, Slot};
pub use platform::now_ms;
pub use recorder::{grid, Recorder};
pub use stats::GpuStats;
pub use tensor::{Chunk, GpuTensor};
pub use weight::{QuantChunk, QuantWeight, Weight};
pub use wgpu;
