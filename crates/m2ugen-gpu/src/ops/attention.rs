use super::{elem_of, expect_dtype, u32_of};
use crate::params::AttentionParams;
use crate::pipeline::Layout;
use crate::pipeline::Slot::{Read, Uniform, Write};
use crate::recorder::Dispatch;
use crate::registry::{sizes, Kernel};
use crate::{Error, GpuTensor, Recorder, Result};
use m2ugen_core::DType;
use std::ops::Range;

const PREFILL: Layout = &[(0, Uniform), (1, Read), (2, Read), (3, Read), (4, Write), (8, Read), (9, Read)];
const SPLIT: Layout = &[(0, Uniform), (1, Read), (2, Read), (3, Read), (4, Write), (5, Read), (7, Write), (8, Read), (9, Read)];
const COMBINE: Layout = &[(0, Uniform), (4, Write), (6, Read), (9, Read)];

/// Largest head the attention kernels take.
pub const MAX_HEAD_DIM: usize = sizes::MAX_HEAD as usize;
/// Keys one workgroup of the decode kernel covers.
pub const DECODE_SPLIT: usize = sizes::DECODE_SPLIT as usize;

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

/// An additive bias on the attention scores (f32): score `(item, head, query row, key)` gets
/// `tensor[item * per_item + head * per_head + row * per_row + key]`; a zero stride repeats.
/// Mask with a large negative number (-1e30), not -inf.
#[derive(Clone, Copy)]
pub struct Bias<'a> {
    /// The values.
    pub tensor: &'a GpuTensor,
    /// Stride per batch item (decode: per query row).
    pub per_item: usize,
    /// Stride per head.
    pub per_head: usize,
    /// Stride per query row (prefill).
    pub per_row: usize,
}

/// Rows added to the attention's output after normalising: output row `r` gets row
/// `first + r * step` of `tensor` (`(rows, heads * head_dim)`; `step` 0 adds one row to all).
#[derive(Clone, Copy)]
pub struct Addend<'a> {
    tensor: &'a GpuTensor,
    first: usize,
    step: usize,
}

/// An attention over a block of queries (the prefill kernel): queries, keys and values, which
/// keys, and the options. Built with [`Attention::new`] and the builder methods.
#[derive(Clone)]
pub struct Attention<'a> {
    q: Heads<'a>,
    k: Heads<'a>,
    v: Heads<'a>,
    shape: HeadShape,
    keys: Range<usize>,
    causal: Option<usize>,
    scale: Option<f32>,
    batch: usize,
    kv_batch: usize,
    bias: Option<Bias<'a>>,
    addend: Option<Addend<'a>>,
}

impl<'a> Attention<'a> {
    /// Every row of `q` attends to rows `keys` of `k` and `v`, scores scaled by 1/√head_dim.
    pub fn new(q: Heads<'a>, k: Heads<'a>, v: Heads<'a>, shape: HeadShape, keys: Range<usize>) -> Self {
        Attention { q, k, v, shape, keys, causal: None, scale: None, batch: 1, kv_batch: 0, bias: None, addend: None }
    }

    /// Causal: query row `i` sits at position `pos0 + i` and sees keys up to that position.
    pub fn causal(self, pos0: usize) -> Self {
        Attention { causal: Some(pos0), ..self }
    }

    /// Scores scaled by `scale` instead of 1/√head_dim (T5: 1).
    pub fn scale(self, scale: f32) -> Self {
        Attention { scale: Some(scale), ..self }
    }

    /// `items` independent sequences: `q`'s rows are `items` blocks of equal length, item `b`'s
    /// keys are `keys` moved down by `b * kv_rows_between` rows.
    pub fn batch(self, items: usize, kv_rows_between: usize) -> Self {
        Attention { batch: items, kv_batch: kv_rows_between, ..self }
    }

    /// An additive bias on the scores.
    pub fn bias(self, bias: Bias<'a>) -> Self {
        Attention { bias: Some(bias), ..self }
    }

    /// Rows added to the output: output row `r` gets row `first + r * step` of `tensor`.
    pub fn addend(self, tensor: &'a GpuTensor, first: usize, step: usize) -> Self {
        Attention { addend: Some(Addend { tensor, first, step }), ..self }
    }
}

/// An attention of one query row per cache slot over the KV cache (the decode kernel): row `r`
/// attends to the first `lens[r]` rows of slot `r` (cache rows `r * slot_rows ..`).
#[derive(Clone, Copy)]
pub struct DecodeAttention<'a> {
    q: Heads<'a>,
    k: &'a GpuTensor,
    v: &'a GpuTensor,
    shape: HeadShape,
    slot_rows: usize,
    lens: &'a GpuTensor,
    max_len: usize,
    scale: Option<f32>,
    bias: Option<Bias<'a>>,
    addend: Option<Addend<'a>>,
}

impl<'a> DecodeAttention<'a> {
    /// `lens` (u32, one per query row) says how many keys each row sees; `max_len` bounds
    /// them (it sets the number of splits of [`DECODE_SPLIT`] keys).
    pub fn new(q: Heads<'a>, k_cache: &'a GpuTensor, v_cache: &'a GpuTensor, shape: HeadShape, slot_rows: usize, lens: &'a GpuTensor, max_len: usize) -> Self {
        DecodeAttention { q, k: k_cache, v: v_cache, shape, slot_rows, lens, max_len, scale: None, bias: None, addend: None }
    }

    /// Scores scaled by `scale` instead of 1/√head_dim.
    pub fn scale(self, scale: f32) -> Self {
        DecodeAttention { scale: Some(scale), ..self }
    }

    /// An additive bias on the scores (`per_item` steps per query row).
    pub fn bias(self, bias: Bias<'a>) -> Self {
        DecodeAttention { bias: Some(bias), ..self }
    }

    /// Rows added to the output: output row `r` gets row `first + r * step` of `tensor`.
    pub fn addend(self, tensor: &'a GpuTensor, first: usize, step: usize) -> Self {
        DecodeAttention { addend: Some(Addend { tensor, first, step }), ..self }
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

    /// The bias binding and its strides, checked to stay inside the tensor for `items` items of
    /// `rows` query rows over `keys` keys.
    fn bias_of(&self, op: &'static str, bias: Option<Bias>, items: usize, heads: usize, rows: usize, keys: usize) -> Result<(wgpu::Buffer, [u32; 4])> {
        let Some(b) = bias else { return Ok((self.gpu.dummy.clone(), [0; 4])) };
        expect_dtype(op, "bias", b.tensor, DType::F32)?;
        let last = (items.max(1) - 1) * b.per_item + (heads - 1) * b.per_head + (rows.max(1) - 1) * b.per_row + keys.max(1) - 1;
        if last >= b.tensor.numel() {
            return Err(Error::Shape { op, what: "bias", expected: format!("at least {} values for its strides", last + 1), got: b.tensor.shape().to_vec() });
        }
        Ok((b.tensor.single(self.gpu, op, "bias")?, [1, u32_of(op, "bias", b.per_item)?, u32_of(op, "bias", b.per_head)?, u32_of(op, "bias", b.per_row)?]))
    }

    fn addend_of(&self, op: &'static str, addend: Option<Addend>, rows: usize, width: usize, dtype: DType) -> Result<(wgpu::Buffer, [u32; 3])> {
        let Some(a) = addend else { return Ok((self.gpu.dummy.clone(), [0; 3])) };
        expect_dtype(op, "addend", a.tensor, dtype)?;
        if a.tensor.cols() != width || a.first + (rows.max(1) - 1) * a.step >= a.tensor.rows() {
            return Err(Error::Shape { op, what: "addend", expected: format!("rows of {width} values, past row {}", a.first + (rows.max(1) - 1) * a.step), got: a.tensor.shape().to_vec() });
        }
        Ok((a.tensor.single(self.gpu, op, "addend")?, [1, u32_of(op, "addend", a.first)?, u32_of(op, "addend", a.step)?]))
    }

    /// Attention of a block of queries (see [`Attention`]). Output `(q rows, heads * head_dim)`.
    pub fn attention(&mut self, a: &Attention) -> Result<GpuTensor> {
        let op = "attention";
        let shape = a.shape;
        Self::check_shape(op, shape)?;
        let elem = elem_of(self.gpu, op, "q", a.q.tensor)?;
        for (what, t) in [("k", a.k.tensor), ("v", a.v.tensor)] {
            expect_dtype(op, what, t, a.q.tensor.dtype())?;
        }
        if a.k.tensor.cols() != a.v.tensor.cols() {
            return Err(Error::Shape { op, what: "v", expected: format!("rows as wide as k's ({})", a.k.tensor.cols()), got: a.v.tensor.shape().to_vec() });
        }
        let batch = a.batch.max(1);
        let q_total = a.q.tensor.rows();
        if q_total % batch != 0 || q_total == 0 {
            return Err(Error::Shape { op, what: "q", expected: format!("a positive multiple of {batch} rows, one block per batch item"), got: a.q.tensor.shape().to_vec() });
        }
        let key_end = a.keys.end + (batch - 1) * a.kv_batch;
        if key_end > a.k.tensor.rows() || key_end > a.v.tensor.rows() {
            return Err(Error::Shape { op, what: "k", expected: format!("at least {key_end} rows"), got: a.k.tensor.shape().to_vec() });
        }
        let q_buf = self.check_heads(op, "q", a.q, shape.heads, shape)?;
        let k_buf = self.check_heads(op, "k", a.k, shape.kv_heads, shape)?;
        let v_buf = self.check_heads(op, "v", a.v, shape.kv_heads, shape)?;
        let q_rows = q_total / batch;
        let width = shape.heads * shape.head_dim;
        let (bias_buf, bias) = self.bias_of(op, a.bias, batch, shape.heads, q_rows, a.keys.len())?;
        let (addend_buf, add) = self.addend_of(op, a.addend, q_total, width, a.q.tensor.dtype())?;
        let out = self.alloc(op, &[q_total, width], a.q.tensor.dtype())?;
        let params = AttentionParams {
            q_rows: u32_of(op, "q", q_rows)?,
            heads: u32_of(op, "heads", shape.heads)?,
            kv_heads: u32_of(op, "heads", shape.kv_heads)?,
            head_dim: u32_of(op, "heads", shape.head_dim)?,
            kv_len: u32_of(op, "keys", a.keys.len())?,
            kv_row0: u32_of(op, "keys", a.keys.start)?,
            causal: a.causal.is_some() as u32,
            pos0: u32_of(op, "causal", a.causal.unwrap_or(0))?,
            scale: a.scale.unwrap_or(1.0 / (shape.head_dim as f32).sqrt()),
            q_stride: u32_of(op, "q", a.q.tensor.cols())?,
            q_off: u32_of(op, "q", a.q.offset)?,
            kv_stride: u32_of(op, "k", a.k.tensor.cols())?,
            k_off: u32_of(op, "k", a.k.offset)?,
            v_off: u32_of(op, "v", a.v.offset)?,
            splits: 0,
            kv_batch: u32_of(op, "keys", a.kv_batch)?,
            has_bias: bias[0],
            bias_b: bias[1],
            bias_h: bias[2],
            bias_q: bias[3],
            has_addend: add[0],
            add_row0: add[1],
            add_step: add[2],
        };
        let buffers = vec![(1, q_buf), (2, k_buf), (3, v_buf), (4, out.single(self.gpu, op, "output")?), (8, bias_buf), (9, addend_buf)];
        let workgroups = [q_rows.div_ceil(sizes::PREFILL_ROWS as usize) as u32, u32_of(op, "heads", shape.heads)?, u32_of(op, "batch", batch)?];
        self.push(Dispatch { kernel: Kernel::Attention, entry: "prefill", elem, layout: PREFILL, variant: [0; 2], params: &params, buffers, workgroups });
        Ok(out)
    }

    /// One query row per cache slot over the KV cache (see [`DecodeAttention`]); one launch
    /// while every row sees at most [`DECODE_SPLIT`] keys, else a partial softmax per split and
    /// a second launch merging them. Output `(rows, heads * head_dim)`.
    pub fn attention_decode(&mut self, a: &DecodeAttention) -> Result<GpuTensor> {
        let op = "attention_decode";
        let shape = a.shape;
        Self::check_shape(op, shape)?;
        let elem = elem_of(self.gpu, op, "q", a.q.tensor)?;
        expect_dtype(op, "k cache", a.k, a.q.tensor.dtype())?;
        expect_dtype(op, "v cache", a.v, a.q.tensor.dtype())?;
        expect_dtype(op, "lens", a.lens, DType::U32)?;
        let rows = a.q.tensor.rows();
        if a.lens.numel() != rows {
            return Err(Error::Shape { op, what: "lens", expected: format!("{rows} lengths, one per query row"), got: a.lens.shape().to_vec() });
        }
        if a.max_len > a.slot_rows || rows * a.slot_rows > a.k.rows() || a.k.shape() != a.v.shape() {
            return Err(Error::Shape { op, what: "k cache", expected: format!("{rows} slots of {} rows (lengths up to {}), v the same", a.slot_rows, a.max_len), got: a.k.shape().to_vec() });
        }
        let q_buf = self.check_heads(op, "q", a.q, shape.heads, shape)?;
        let k_buf = self.check_heads(op, "k cache", Heads::of(a.k), shape.kv_heads, shape)?;
        let v_buf = self.check_heads(op, "v cache", Heads::of(a.v), shape.kv_heads, shape)?;
        let lens_buf = a.lens.single(self.gpu, op, "lens")?;
        let width = shape.heads * shape.head_dim;
        let (bias_buf, bias) = self.bias_of(op, a.bias, rows, shape.heads, 1, a.max_len)?;
        let (addend_buf, add) = self.addend_of(op, a.addend, rows, width, a.q.tensor.dtype())?;
        let splits = a.max_len.div_ceil(DECODE_SPLIT).max(1);
        let out = self.alloc(op, &[rows, width], a.q.tensor.dtype())?;
        let out_buf = out.single(self.gpu, op, "output")?;
        let params = AttentionParams {
            q_rows: u32_of(op, "q", rows)?,
            heads: u32_of(op, "heads", shape.heads)?,
            kv_heads: u32_of(op, "heads", shape.kv_heads)?,
            head_dim: u32_of(op, "heads", shape.head_dim)?,
            kv_row0: u32_of(op, "slot rows", a.slot_rows)?,
            scale: a.scale.unwrap_or(1.0 / (shape.head_dim as f32).sqrt()),
            q_stride: u32_of(op, "q", a.q.tensor.cols())?,
            q_off: u32_of(op, "q", a.q.offset)?,
            kv_stride: u32_of(op, "k cache", a.k.cols())?,
            splits: splits as u32,
            has_bias: bias[0],
            bias_b: bias[1],
            bias_h: bias[2],
            has_addend: add[0],
            add_row0: add[1],
            add_step: add[2],
            ..Default::default()
        };
        let grid_split = [splits as u32, u32_of(op, "heads", shape.heads)?, u32_of(op, "q", rows)?];
        let mut buffers = vec![(1, q_buf), (2, k_buf), (3, v_buf), (5, lens_buf), (8, bias_buf), (9, addend_buf.clone())];
        if splits == 1 {
            buffers.push((4, out_buf));
            self.push(Dispatch { kernel: Kernel::Attention, entry: "decode_split", elem, layout: SPLIT, variant: [0; 2], params: &params, buffers, workgroups: grid_split });
            return Ok(out);
        }
        let parts = self.alloc("attention partials", &[rows * shape.heads * splits, shape.head_dim + 2], DType::F32)?;
        let parts_buf = parts.single(self.gpu, op, "partials")?;
        buffers.push((7, parts_buf.clone()));
        self.push(Dispatch { kernel: Kernel::Attention, entry: "decode_split", elem, layout: SPLIT, variant: [0; 2], params: &params, buffers, workgroups: grid_split });
        let buffers = vec![(4, out_buf), (6, parts_buf), (9, addend_buf)];
        self.push(Dispatch { kernel: Kernel::Attention, entry: "decode_combine", elem, layout: COMBINE, variant: [0; 2], params: &params, buffers, workgroups: [u32_of(op, "heads", shape.heads)?, u32_of(op, "q", rows)?, 1] });
        Ok(out)
    }
}
