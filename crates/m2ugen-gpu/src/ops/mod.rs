//! Launchers: one typed function per kernel entry point, as methods of [`Recorder`].
//!
//! Each checks its inputs' shapes and dtypes, allocates its output from the recording's pool,
//! and records one op per chunk it touches with the kernel's parameter struct
//! ([`crate::params`]). Grids come from [`crate::registry::sizes`], the numbers the WGSL reads.

mod attention;
mod conv;
mod elementwise;
mod linear;
mod lstm;
mod norm;
mod pool;
mod rope;
mod rows;
mod sample;
mod softmax;

pub use attention::{Attention, Bias, DecodeAttention, HeadShape, Heads, DECODE_SPLIT, MAX_HEAD_DIM};
pub use elementwise::Unary;
pub use linear::MATVEC_MAX_ROWS;
pub use pool::MAX_POOL_ROWS;
pub use rope::RopeTable;
pub use rows::StridedView;
pub use sample::Choose;

use crate::registry::Elem;
use crate::{Error, Gpu, GpuTensor, Result};
use m2ugen_core::DType;

#[cfg(doc)]
use crate::Recorder;

/// The element type of a float tensor, checked against the device.
pub(crate) fn elem_of(gpu: &Gpu, op: &'static str, what: &'static str, t: &GpuTensor) -> Result<Elem> {
    match t.dtype() {
        DType::F32 => Ok(Elem::F32),
        DType::F16 if gpu.has_f16() => Ok(Elem::F16),
        DType::F16 => Err(Error::MissingFeature { adapter: gpu.info.name.clone(), feature: "shader-f16" }),
        DType::U32 => Err(Error::DType { op, what, expected: "f32 or f16", got: t.dtype() }),
    }
}

/// Fails unless `t` has dtype `dtype`.
pub(crate) fn expect_dtype(op: &'static str, what: &'static str, t: &GpuTensor, dtype: DType) -> Result<()> {
    if t.dtype() != dtype {
        return Err(Error::DType { op, what, expected: dtype.name(), got: t.dtype() });
    }
    Ok(())
}

/// Fails unless `t` holds exactly `len` elements.
pub(crate) fn expect_len(op: &'static str, what: &'static str, t: &GpuTensor, len: usize) -> Result<()> {
    if t.numel() != len {
        return Err(Error::Shape { op, what, expected: format!("{len} elements"), got: t.shape().to_vec() });
    }
    Ok(())
}

/// A number as a kernel parameter, or an error naming it when it does not fit 32 bits.
pub(crate) fn u32_of(op: &'static str, what: &'static str, v: usize) -> Result<u32> {
    u32::try_from(v).map_err(|_| Error::Shape { op, what, expected: "sizes below 2^32".into(), got: vec![v] })
}
