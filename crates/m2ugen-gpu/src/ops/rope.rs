use super::elem_of;
use crate::pipeline::Layout;
use crate::pipeline::Slot::{Read, Uniform, Write};
use crate::recorder::grid;
use crate::registry::Kernel;
use super::expect_dtype;
use crate::{Error, Gpu, GpuTensor, Recorder, Result};
use m2ugen_core::DType;

const LAYOUT: Layout = &[(0, Uniform), (1, Read), (2, Read), (3, Read), (4, Write), (5, Read)];

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
        let seq = x.shape().first().copied().unwrap_or(0);
        let positions: Vec<u32> = (pos0..pos0 + seq).map(|p| p as u32).collect();
        let positions = self.gpu.upload_u32("rope positions", &[seq], &positions)?;
        self.rope_at(x, table, &positions, pos0 + seq)
    }

    /// Rotates `x` of shape `(seq, heads, head_dim)`, sequence index `s` at position
    /// `positions[s]` (u32, `(seq)`); `end` bounds every position (checked against the table).
    pub fn rope_at(&mut self, x: &GpuTensor, table: &RopeTable, positions: &GpuTensor, end: usize) -> Result<GpuTensor> {
        let op = "rope";
        let elem = elem_of(self.gpu, op, "x", x)?;
        let &[seq, heads, head_dim] = x.shape() else {
            return Err(Error::Shape { op, what: "x", expected: "(seq, heads, head_dim)".into(), got: x.shape().to_vec() });
        };
        expect_dtype(op, "positions", positions, DType::U32)?;
        if positions.numel() != seq {
            return Err(Error::Shape { op, what: "positions", expected: format!("{seq} positions, one per sequence index"), got: positions.shape().to_vec() });
        }
        if head_dim != table.head_dim || head_dim % 2 != 0 {
            return Err(Error::Shape { op, what: "x", expected: format!("head_dim {} (the table's, even)", table.head_dim), got: x.shape().to_vec() });
        }
        if end > table.positions {
            return Err(Error::Shape { op, what: "positions", expected: format!("positions below {} (the table's)", table.positions), got: vec![end] });
        }
        let cos = table.cos.single(self.gpu, op, "cos table")?;
        let sin = table.sin.single(self.gpu, op, "sin table")?;
        let positions = positions.single(self.gpu, op, "positions")?;
        let out = self.gpu.zeros(op, x.shape(), x.dtype())?;
        for (cx, co) in x.chunks().iter().zip(out.chunks()) {
            let rows = cx.rows.len();
            let params = [rows as u32, heads as u32, head_dim as u32, cx.rows.start as u32];
            let buffers = vec![(1, cx.buffer.clone()), (2, cos.clone()), (3, sin.clone()), (4, co.buffer.clone()), (5, positions.clone())];
            self.push(Kernel::Rope, op, elem, LAYOUT, &params, buffers, grid((rows * head_dim / 2).div_ceil(256)));
        }
        Ok(out)
    }
}
