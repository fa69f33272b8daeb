use super::elem_of;
use crate::pipeline::Layout;
use crate::pipeline::Slot::{Read, Uniform, Write};
use crate::recorder::grid;
use crate::registry::Kernel;
use crate::{Error, Gpu, GpuTensor, Recorder, Result};
use m2ugen_core::DType;

const LAYOUT: Layout = &[(0, Uniform), (1, Read), (2, Read), (3, Read), (4, Write)];

/// The cos/sin table of rotary embeddings on the GPU (Meta's convention, built on the CPU by
/// `m2ugen_core::cpu::rope_table`).
pub struct RopeTable {
    /// Positions covered.
    pub positions: usize,
    /// Head size.
    pub head_dim: usize,
    cos: GpuTensor,
    sin: GpuTensor,
}

impl RopeTable {
    /// Builds and uploads the table for `positions` positions.
    pub fn new(gpu: &Gpu, positions: usize, head_dim: usize, theta: f32) -> Result<RopeTable> {
        let (cos, sin) = m2ugen_core::cpu::rope_table(positions, head_dim, theta);
        let shape = [positions, head_dim / 2];
        Ok(RopeTable {
            positions,
            head_dim,
            cos: gpu.upload("rope cos", &shape, DType::F32, &cos)?,
            sin: gpu.upload("rope sin", &shape, DType::F32, &sin)?,
        })
    }
}

impl Recorder<'_> {
    /// Rotates `x` of shape `(seq, heads, head_dim)` for positions `pos0 .. pos0 + seq`.
    pub fn rope(&mut self, x: &GpuTensor, table: &RopeTable, pos0: usize) -> Result<GpuTensor> {
        let op = "rope";
        let elem = elem_of(self.gpu, op, "x", x)?;
        let &[seq, heads, head_dim] = x.shape() else {
            return Err(Error::Shape { op, what: "x", expected: "(seq, heads, head_dim)".into(), got: x.shape().to_vec() });
        };
        if head_dim != table.head_dim || head_dim % 2 != 0 {
            return Err(Error::Shape { op, what: "x", expected: format!("head_dim {} (the table's, even)", table.head_dim), got: x.shape().to_vec() });
        }
        if pos0 + seq > table.positions {
            return Err(Error::Shape { op, what: "x", expected: format!("positions up to {} (the table's), from {pos0}", table.positions), got: x.shape().to_vec() });
        }
        let cos = table.cos.single(self.gpu, op, "cos table")?;
        let sin = table.sin.single(self.gpu, op, "sin table")?;
        let out = self.gpu.zeros(op, x.shape(), x.dtype())?;
        for (cx, co) in x.chunks().iter().zip(out.chunks()) {
            let rows = cx.rows.len();
            let params = [rows as u32, heads as u32, head_dim as u32, pos0 as u32, cx.rows.start as u32];
            let buffers = vec![(1, cx.buffer.clone()), (2, cos.clone()), (3, sin.clone()), (4, co.buffer.clone())];
            self.push(Kernel::Rope, op, elem, LAYOUT, &params, buffers, grid((rows * head_dim / 2).div_ceil(256)));
        }
        Ok(out)
    }
}
