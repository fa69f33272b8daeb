use super::{elem_of, expect_dtype, u32_of, HeadShape};
use crate::params::RopeParams;
use crate::pipeline::Layout;
use crate::pipeline::Slot::{Read, Uniform, Write};
use crate::recorder::{grid, Dispatch};
use crate::registry::{sizes::GROUP, Kernel};
use crate::{Error, Gpu, GpuTensor, Recorder, Result};
use m2ugen_core::DType;

const ROPE: Layout = &[(0, Uniform), (1, Read), (2, Read), (3, Write), (4, Read)];
const ROPE_KV: Layout = &[(0, Uniform), (1, Read), (2, Read), (3, Write), (4, Read), (5, Write), (6, Write), (7, Read)];

/// The cos/sin table of rotary embeddings on the GPU (Meta's convention, built on the CPU by
/// `m2ugen_core::cpu::rope_table`): `(2, positions, head_dim / 2)`, cos then sin.
pub struct RopeTable {
    /// Positions covered.
    pub positions: usize,
    /// Head size.
    pub head_dim: usize,
    table: GpuTensor,
}

impl RopeTable {
    /// Builds and uploads the table for `positions` positions.
    pub fn new(gpu: &Gpu, positions: usize, head_dim: usize, theta: f32) -> Result<RopeTable> {
        let (cos, sin) = m2ugen_core::cpu::rope_table(positions, head_dim, theta);
        let both: Vec<f32> = cos.into_iter().chain(sin).collect();
        Ok(RopeTable { positions, head_dim, table: gpu.upload("rope table", &[2 * positions, head_dim / 2], DType::F32, &both)? })
    }

    fn check(&self, op: &'static str, head_dim: usize, end: usize, x: &GpuTensor) -> Result<()> {
        if head_dim != self.head_dim || head_dim % 2 != 0 {
            return Err(Error::Shape { op, what: "x", expected: format!("head_dim {} (the table's, even)", self.head_dim), got: x.shape().to_vec() });
        }
        if end > self.positions {
            return Err(Error::Shape { op, what: "positions", expected: format!("positions below {} (the table's)", self.positions), got: vec![end] });
        }
        Ok(())
    }
}

impl Recorder<'_> {
    /// Rotates `x` of shape `(seq, heads, head_dim)` for positions `pos0 .. pos0 + seq`.
    pub fn rope(&mut self, x: &GpuTensor, table: &RopeTable, pos0: usize) -> Result<GpuTensor> {
        let seq = x.shape().first().copied().unwrap_or(0);
        let positions: Vec<u32> = (pos0..pos0 + seq).map(|p| p as u32).collect();
        let positions = self.upload_u32("rope positions", &[seq], &positions)?;
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
        table.check(op, head_dim, end, x)?;
        let table_buf = table.table.single(self.gpu, op, "table")?;
        let positions = positions.single(self.gpu, op, "positions")?;
        let out = self.alloc(op, x.shape(), x.dtype())?;
        for (cx, co) in x.chunks().iter().zip(out.chunks()) {
            let rows = cx.rows.len();
            let params = RopeParams { rows: u32_of(op, "x", rows)?, heads: u32_of(op, "x", heads)?, kv_heads: 0, head_dim: u32_of(op, "x", head_dim)?, row0: u32_of(op, "x", cx.rows.start)?, positions: u32_of(op, "table", table.positions)? };
            let buffers = vec![(1, cx.raw()), (2, table_buf.clone()), (3, co.raw()), (4, positions.clone())];
            self.push(Dispatch { kernel: Kernel::Rope, entry: op, elem, layout: ROPE, variant: [0; 2], params: &params, buffers, workgroups: grid((rows * head_dim / 2).div_ceil(GROUP as usize)) });
        }
        Ok(out)
    }

    /// The attention inputs of a fused q|k|v projection `qkv` `(tokens, (heads + 2 kv_heads) *
    /// head_dim)` in one launch: token `t` at position `positions[t]`; its rotated key and its
    /// value go into row `cache_rows[t]` of `k_cache` and `v_cache`; returns the rotated queries
    /// `(tokens, heads * head_dim)`. `end` bounds every position.
    #[allow(clippy::too_many_arguments)]
    pub fn rope_kv(&mut self, qkv: &GpuTensor, shape: HeadShape, table: &RopeTable, positions: &GpuTensor, end: usize, k_cache: &GpuTensor, v_cache: &GpuTensor, cache_rows: &GpuTensor) -> Result<GpuTensor> {
        let op = "rope_kv";
        let elem = elem_of(self.gpu, op, "qkv", qkv)?;
        let HeadShape { heads, kv_heads, head_dim } = shape;
        let tokens = qkv.rows();
        if qkv.cols() != (heads + 2 * kv_heads) * head_dim {
            return Err(Error::Shape { op, what: "qkv", expected: format!("rows of ({heads} + 2 x {kv_heads}) heads of {head_dim}"), got: qkv.shape().to_vec() });
        }
        for (what, t, n) in [("positions", positions, tokens), ("cache_rows", cache_rows, tokens)] {
            expect_dtype(op, what, t, DType::U32)?;
            if t.numel() != n {
                return Err(Error::Shape { op, what, expected: format!("{n} values, one per token"), got: t.shape().to_vec() });
            }
        }
        for (what, c) in [("k_cache", k_cache), ("v_cache", v_cache)] {
            expect_dtype(op, what, c, qkv.dtype())?;
            if c.cols() != kv_heads * head_dim {
                return Err(Error::Shape { op, what, expected: format!("rows of {kv_heads} heads of {head_dim}"), got: c.shape().to_vec() });
            }
        }
        table.check(op, head_dim, end, qkv)?;
        let q = self.alloc(op, &[tokens, heads * head_dim], qkv.dtype())?;
        let params = RopeParams { rows: u32_of(op, "qkv", tokens)?, heads: u32_of(op, "heads", heads)?, kv_heads: u32_of(op, "heads", kv_heads)?, head_dim: u32_of(op, "heads", head_dim)?, row0: 0, positions: u32_of(op, "table", table.positions)? };
        let buffers = vec![
            (1, qkv.single(self.gpu, op, "qkv")?),
            (2, table.table.single(self.gpu, op, "table")?),
            (3, q.single(self.gpu, op, "q")?),
            (4, positions.single(self.gpu, op, "positions")?),
            (5, k_cache.single(self.gpu, op, "k_cache")?),
            (6, v_cache.single(self.gpu, op, "v_cache")?),
            (7, cache_rows.single(self.gpu, op, "cache_rows")?),
        ];
        let pairs = tokens * qkv.cols() / 2;
        self.push(Dispatch { kernel: Kernel::Rope, entry: op, elem, layout: ROPE_KV, variant: [0; 2], params: &params, buffers, workgroups: grid(pairs.div_ceil(GROUP as usize)) });
        Ok(q)
    }
}
