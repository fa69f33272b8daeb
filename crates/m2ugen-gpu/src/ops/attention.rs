use super::{elem_of, expect_dtype};
use crate::pipeline::Layout;
use crate::pipeline::Slot::{Read, Uniform, Write};
use crate::recorder::grid;
use crate::registry::Kernel;
use crate::{Error, GpuTensor, Recorder, Result};
use m2ugen_core::DType;
use std::ops::Range;

const PREFILL: Layout = &[(0, Uniform), (1, Read), (2, Read), (3, Read), (4, Write)];
const SPLIT: Layout = &[(0, Uniform), (1, Read), (2, Read), (3, Read), (5, Read), (7, Write)];
const COMBINE: Layout = &[(0, Uniform), (4, Write), (6, Read)];
const KV_WRITE: Layout = &[(0, Uniform), (1, Read), (4, Write), (5, Read)];

/// Largest head the attention kernels take (`attention.wgsl`'s `MAX_HEAD`).
pub const MAX_HEAD_DIM: usize = 128;
/// Keys one workgroup of the decode kernel covers (`attention.wgsl`'s `SPLIT`).
pub const DECODE_SPLIT: usize = 256;

/// Head geometry of an attention.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeadShape {
    /// Query heads.
    pub heads: usize,
    /// Key/value heads (divides `heads`).
    pub kv_heads: usize,
    /// Width of one head (a multiple of 4, at most [`MAX_HEAD_DIM`]).
    pub head_dim: usize,
}

/// Where the heads sit in a tensor's rows: from column `offset`, `heads * head_dim` values
/// (so q, k and v can be read from one fused projection).
#[derive(Clone, Copy)]
pub struct Heads<'a> {
    /// The tensor, `(rows, cols)`.
    pub tensor: &'a GpuTensor,
    /// First column.
    pub offset: usize,
}

impl<'a> Heads<'a> {
    /// The heads of `tensor` from column 0.
    pub fn of(tensor: &'a GpuTensor) -> Self {
        Heads { tensor, offset: 0 }
    }
}

/// Parameters as `attention.wgsl`'s `Params`.
struct Params {
    q_rows: usize,
    kv_len: usize,
    kv_row0: usize,
    causal: Option<usize>,
    q: (usize, usize),
    kv: (usize, usize, usize),
    splits: usize,
}

impl Params {
    fn words(&self, shape: HeadShape) -> [u32; 16] {
        let scale = 1.0 / (shape.head_dim as f32).sqrt();
        [
            self.q_rows as u32,
            shape.heads as u32,
            shape.kv_heads as u32,
            shape.head_dim as u32,
            self.kv_len as u32,
            self.kv_row0 as u32,
            self.causal.is_some() as u32,
            self.causal.unwrap_or(0) as u32,
            scale.to_bits(),
            self.q.0 as u32,
            self.q.1 as u32,
            self.kv.0 as u32,
            self.kv.1 as u32,
            self.kv.2 as u32,
            self.splits as u32,
            0,
        ]
    }
}

impl Recorder<'_> {
    fn check_heads(&self, op: &'static str, what: &'static str, h: Heads, count: usize, shape: HeadShape) -> Result<wgpu::Buffer> {
        let width = count * shape.head_dim;
        if h.offset + width > h.tensor.cols() {
            return Err(Error::Shape { op, what, expected: format!("rows holding {count} heads of {} from column {}", shape.head_dim, h.offset), got: h.tensor.shape().to_vec() });
        }
        h.tensor.single(self.gpu, op, what)
    }

    fn check_shape(op: &'static str, shape: HeadShape) -> Result<()> {
        let HeadShape { heads, kv_heads, head_dim } = shape;
        if head_dim == 0 || head_dim > MAX_HEAD_DIM || head_dim % 4 != 0 || kv_heads == 0 || heads % kv_heads != 0 {
            return Err(Error::Shape { op, what: "heads", expected: format!("head_dim a multiple of 4 up to {MAX_HEAD_DIM}, kv_heads dividing heads"), got: vec![heads, kv_heads, head_dim] });
        }
        Ok(())
    }

    /// Attention of every row of `q` over rows `keys` of `k` and `v` (tiled, online softmax).
    /// With `causal = Some(pos0)`, query row `i` sits at position `pos0 + i` and sees key rows
    /// `keys.start ..= keys.start + pos0 + i` only. Output `(q rows, heads * head_dim)`.
    pub fn attention(&mut self, q: Heads, k: Heads, v: Heads, shape: HeadShape, keys: Range<usize>, causal: Option<usize>) -> Result<GpuTensor> {
        let op = "attention";
        Self::check_shape(op, shape)?;
        let elem = elem_of(self.gpu, op, "q", q.tensor)?;
        for (what, t) in [("k", k.tensor), ("v", v.tensor)] {
            expect_dtype(op, what, t, q.tensor.dtype())?;
        }
        if k.tensor.cols() != v.tensor.cols() {
            return Err(Error::Shape { op, what: "v", expected: format!("rows as wide as k's ({})", k.tensor.cols()), got: v.tensor.shape().to_vec() });
        }
        if keys.end > k.tensor.rows() || keys.end > v.tensor.rows() {
            return Err(Error::Shape { op, what: "k", expected: format!("at least {} rows", keys.end), got: k.tensor.shape().to_vec() });
        }
        let q_buf = self.check_heads(op, "q", q, shape.heads, shape)?;
        let k_buf = self.check_heads(op, "k", k, shape.kv_heads, shape)?;
        let v_buf = self.check_heads(op, "v", v, shape.kv_heads, shape)?;
        let q_rows = q.tensor.rows();
        let out = self.gpu.zeros(op, &[q_rows, shape.heads * shape.head_dim], q.tensor.dtype())?;
        let out_buf = out.single(self.gpu, op, "output")?;
        let params = Params {
            q_rows,
            kv_len: keys.len(),
            kv_row0: keys.start,
            causal,
            q: (q.tensor.cols(), q.offset),
            kv: (k.tensor.cols(), k.offset, v.offset),
            splits: 0,
        };
        let buffers = vec![(1, q_buf), (2, k_buf), (3, v_buf), (4, out_buf)];
        // 16 query rows per workgroup (attention.wgsl's PREFILL_ROWS).
        let workgroups = [q_rows.div_ceil(16).max(1) as u32, shape.heads as u32, 1];
        self.push(Kernel::Attention, "prefill", elem, PREFILL, &params.words(shape), buffers, workgroups);
        Ok(out)
    }

    /// One query row per cache slot over the KV cache: row `r` of `q` attends to the first
    /// `lens[r]` rows of slot `r` (cache rows `r * slot_rows ..`). `max_len` bounds every
    /// `lens[r]` (it sets the number of splits of [`DECODE_SPLIT`] keys). Two passes: partial
    /// softmax per split, then their merge.
    #[allow(clippy::too_many_arguments)]
    pub fn attention_decode(&mut self, q: Heads, k_cache: &GpuTensor, v_cache: &GpuTensor, shape: HeadShape, slot_rows: usize, lens: &GpuTensor, max_len: usize) -> Result<GpuTensor> {
        let op = "attention_decode";
        Self::check_shape(op, shape)?;
        let elem = elem_of(self.gpu, op, "q", q.tensor)?;
        expect_dtype(op, "k cache", k_cache, q.tensor.dtype())?;
        expect_dtype(op, "v cache", v_cache, q.tensor.dtype())?;
        expect_dtype(op, "lens", lens, DType::U32)?;
        let rows = q.tensor.rows();
        if lens.numel() != rows {
            return Err(Error::Shape { op, what: "lens", expected: format!("{rows} lengths, one per query row"), got: lens.shape().to_vec() });
        }
        if max_len > slot_rows || rows * slot_rows > k_cache.rows() || k_cache.shape() != v_cache.shape() {
            return Err(Error::Shape { op, what: "k cache", expected: format!("{rows} slots of {slot_rows} rows (lengths up to {max_len}), v the same"), got: k_cache.shape().to_vec() });
        }
        let q_buf = self.check_heads(op, "q", q, shape.heads, shape)?;
        let k_buf = self.check_heads(op, "k cache", Heads::of(k_cache), shape.kv_heads, shape)?;
        let v_buf = self.check_heads(op, "v cache", Heads::of(v_cache), shape.kv_heads, shape)?;
        let lens_buf = lens.single(self.gpu, op, "lens")?;
        let splits = max_len.div_ceil(DECODE_SPLIT).max(1);
        let parts = self.gpu.zeros("attention partials", &[rows * shape.heads * splits, shape.head_dim + 2], DType::F32)?;
        let parts_buf = parts.single(self.gpu, op, "partials")?;
        let out = self.gpu.zeros(op, &[rows, shape.heads * shape.head_dim], q.tensor.dtype())?;
        let out_buf = out.single(self.gpu, op, "output")?;
        let params = Params {
            q_rows: rows,
            kv_len: 0,
            kv_row0: slot_rows,
            causal: None,
            q: (q.tensor.cols(), q.offset),
            kv: (k_cache.cols(), 0, 0),
            splits,
        };
        let words = params.words(shape);
        let buffers = vec![(1, q_buf), (2, k_buf), (3, v_buf), (5, lens_buf), (7, parts_buf.clone())];
        self.push(Kernel::Attention, "decode_split", elem, SPLIT, &words, buffers, [splits as u32, shape.heads as u32, rows as u32]);
        self.push(Kernel::Attention, "decode_combine", elem, COMBINE, &words, vec![(4, out_buf), (6, parts_buf)], [shape.heads as u32, rows as u32, 1]);
        Ok(out)
    }

    /// Writes each row `r` of `new` into row `rows[r]` of `cache` (same width and dtype), in
    /// place: how keys and values enter the KV cache.
    pub fn kv_write(&mut self, new: &GpuTensor, cache: &GpuTensor, rows: &GpuTensor) -> Result<()> {
        let op = "kv_write";
        let elem = elem_of(self.gpu, op, "new", new)?;
        expect_dtype(op, "cache", cache, new.dtype())?;
        expect_dtype(op, "rows", rows, DType::U32)?;
        if new.cols() != cache.cols() || rows.numel() != new.rows() {
            return Err(Error::Shape { op, what: "new", expected: format!("rows of {} values, one target row each", cache.cols()), got: new.shape().to_vec() });
        }
        let n = new.numel();
        let params = Params { q_rows: new.rows(), kv_len: 0, kv_row0: 0, causal: None, q: (new.cols(), 0), kv: (0, 0, 0), splits: 0 };
        let shape = HeadShape { heads: 1, kv_heads: 1, head_dim: 1 };
        let buffers = vec![(1, new.single(self.gpu, op, "new")?), (4, cache.single(self.gpu, op, "cache")?), (5, rows.single(self.gpu, op, "rows")?)];
        self.push(Kernel::Attention, op, elem, KV_WRITE, &params.words(shape), buffers, grid(n.div_ceil(256)));
        Ok(())
    }
}
