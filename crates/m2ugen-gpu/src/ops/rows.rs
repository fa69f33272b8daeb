//! Moving data: rows by index (gather, scatter) and the one strided copy that serves permute,
//! slice, concatenate and pad.

use super::{elem_of, expect_dtype, u32_of};
use crate::params::{CopyParams, RowsParams};
use crate::pipeline::Layout;
use crate::pipeline::Slot::{Read, Uniform, Write};
use crate::recorder::{grid, Dispatch};
use crate::registry::{sizes::GROUP, Elem, Kernel};
use crate::{Error, GpuTensor, Recorder, Result};
use m2ugen_core::DType;
use std::ops::Range;

const ROWS: Layout = &[(0, Uniform), (1, Read), (2, Read), (3, Write)];
const COPY: Layout = &[(0, Uniform), (1, Read), (2, Write)];
const FILL: Layout = &[(0, Uniform), (2, Write)];

/// Where a strided copy reads or writes: the first element and the step of each dimension of
/// the copy's shape, in elements. `strides` is aligned with the shape padded at the front to
/// four dimensions: for a shape of rank 2, the steps are `strides[2]` and `strides[3]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StridedView {
    /// First element.
    pub offset: usize,
    /// Step per dimension (outermost first, as the shape).
    pub strides: [usize; 4],
}

/// Row-major strides of `shape` (up to 4 dimensions), padded at the front with zeros.
fn contiguous(shape: &[usize]) -> [usize; 4] {
    let mut s = [0; 4];
    let mut step = 1;
    let off = 4 - shape.len();
    for d in (0..shape.len()).rev() {
        s[off + d] = step;
        step *= shape[d];
    }
    s
}

/// `shape` padded at the front with ones to 4 dimensions.
fn shape4(op: &'static str, shape: &[usize]) -> Result<[usize; 4]> {
    if shape.is_empty() || shape.len() > 4 {
        return Err(Error::Shape { op, what: "shape", expected: "1 to 4 dimensions".into(), got: shape.to_vec() });
    }
    let mut s = [1; 4];
    s[4 - shape.len()..].copy_from_slice(shape);
    Ok(s)
}

impl Recorder<'_> {
    /// Rows of `table` (`rows x cols`, possibly split) picked by the u32 `index`; an index past
    /// the table gives a zero row. Output `(index, cols)`. (An embedding lookup.)
    pub fn gather_rows(&mut self, table: &GpuTensor, index: &GpuTensor) -> Result<GpuTensor> {
        let op = "gather_rows";
        let elem = elem_of(self.gpu, op, "table", table)?;
        expect_dtype(op, "index", index, DType::U32)?;
        let (n, cols) = (index.numel(), table.cols());
        let index_buf = index.single(self.gpu, op, "index")?;
        let out = self.alloc(op, &[n, cols], table.dtype())?;
        let out_buf = out.single(self.gpu, op, "output")?;
        for (i, c) in table.chunks().iter().enumerate() {
            let params = RowsParams { n: u32_of(op, "index", n)?, cols: u32_of(op, "table", cols)?, row0: u32_of(op, "table", c.rows.start)?, rows: u32_of(op, "table", c.rows.len())?, write_all: (i == 0) as u32 };
            let buffers = vec![(1, index_buf.clone()), (2, c.raw()), (3, out_buf.clone())];
            self.push(Dispatch { kernel: Kernel::Rows, entry: op, elem, layout: ROWS, variant: [0; 2], params: &params, buffers, workgroups: grid((n * cols).div_ceil(GROUP as usize)) });
        }
        Ok(out)
    }

    /// Writes each row `r` of `src` into row `index[r]` of `dst` (same width and dtype), in
    /// place: how keys and values enter a cache, or rows a table.
    pub fn scatter_rows(&mut self, src: &GpuTensor, dst: &GpuTensor, index: &GpuTensor) -> Result<()> {
        let op = "scatter_rows";
        let elem = elem_of(self.gpu, op, "src", src)?;
        expect_dtype(op, "dst", dst, src.dtype())?;
        expect_dtype(op, "index", index, DType::U32)?;
        if src.cols() != dst.cols() || index.numel() != src.rows() {
            return Err(Error::Shape { op, what: "src", expected: format!("rows of {} values, one index each", dst.cols()), got: src.shape().to_vec() });
        }
        let n = src.rows();
        let params = RowsParams { n: u32_of(op, "src", n)?, cols: u32_of(op, "src", src.cols())?, row0: 0, rows: u32_of(op, "dst", dst.rows())?, write_all: 0 };
        let buffers = vec![(1, index.single(self.gpu, op, "index")?), (2, src.single(self.gpu, op, "src")?), (3, dst.single(self.gpu, op, "dst")?)];
        self.push(Dispatch { kernel: Kernel::Rows, entry: op, elem, layout: ROWS, variant: [0; 2], params: &params, buffers, workgroups: grid(src.numel().div_ceil(GROUP as usize)) });
        Ok(())
    }

    /// For every index `i` of `shape` (up to 4 dimensions), `dst[to.offset + Σ i·to.strides] =
    /// src[from.offset + Σ i·from.strides]`. Both tensors sit in one binding each, and every
    /// index must land inside them (checked).
    pub fn copy_strided(&mut self, src: &GpuTensor, from: StridedView, dst: &GpuTensor, to: StridedView, shape: &[usize]) -> Result<()> {
        let op = "copy_strided";
        let elem = elem_of(self.gpu, op, "src", src)?;
        expect_dtype(op, "dst", dst, src.dtype())?;
        let s4 = shape4(op, shape)?;
        let n: usize = s4.iter().product();
        if n == 0 {
            return Ok(());
        }
        let last = |v: &StridedView| v.offset + (0..4).map(|d| (s4[d] - 1) * v.strides[d]).sum::<usize>();
        for (what, view, t) in [("src", &from, src), ("dst", &to, dst)] {
            if last(view) >= t.numel() {
                return Err(Error::Shape { op, what, expected: format!("at least {} elements for the view {view:?} of {shape:?}", last(view) + 1), got: t.shape().to_vec() });
            }
        }
        let v4 = |a: [usize; 4]| -> Result<[u32; 4]> { Ok([u32_of(op, "view", a[0])?, u32_of(op, "view", a[1])?, u32_of(op, "view", a[2])?, u32_of(op, "view", a[3])?]) };
        let params = CopyParams {
            n: u32_of(op, "shape", n)?,
            src_offset: u32_of(op, "src", from.offset)?,
            dst_offset: u32_of(op, "dst", to.offset)?,
            value: 0.0,
            shape: v4(s4)?,
            src_strides: v4(from.strides)?,
            dst_strides: v4(to.strides)?,
        };
        let buffers = vec![(1, src.single(self.gpu, op, "src")?), (2, dst.single(self.gpu, op, "dst")?)];
        self.push(Dispatch { kernel: Kernel::Copy, entry: op, elem, layout: COPY, variant: [0; 2], params: &params, buffers, workgroups: grid(n.div_ceil(GROUP as usize)) });
        Ok(())
    }

    /// Sets every element of `dst` to `value`.
    pub fn fill(&mut self, dst: &GpuTensor, value: f32) -> Result<()> {
        let op = "fill";
        let elem: Elem = elem_of(self.gpu, op, "dst", dst)?;
        for c in dst.chunks() {
            let n = c.rows.len() * dst.cols();
            let params = CopyParams { n: u32_of(op, "dst", n)?, value, shape: [1; 4], ..Default::default() };
            self.push(Dispatch { kernel: Kernel::Copy, entry: op, elem, layout: FILL, variant: [0; 2], params: &params, buffers: vec![(2, c.raw())], workgroups: grid(n.div_ceil(GROUP as usize)) });
        }
        Ok(())
    }

    /// `x` with its dimensions reordered: output dimension `d` is input dimension `dims[d]`.
    pub fn permute(&mut self, x: &GpuTensor, dims: &[usize]) -> Result<GpuTensor> {
        let op = "permute";
        let shape = x.shape();
        let mut sorted = dims.to_vec();
        sorted.sort_unstable();
        if sorted != (0..shape.len()).collect::<Vec<_>>() {
            return Err(Error::Shape { op, what: "dims", expected: format!("a permutation of 0..{}", shape.len()), got: dims.to_vec() });
        }
        let out_shape: Vec<usize> = dims.iter().map(|&d| shape[d]).collect();
        let src = contiguous(shape);
        let off = 4 - shape.len();
        let mut from = [0; 4];
        for (d, &i) in dims.iter().enumerate() {
            from[off + d] = src[off + i];
        }
        let out = self.alloc(op, &out_shape, x.dtype())?;
        self.copy_strided(x, StridedView { offset: 0, strides: from }, &out, StridedView { offset: 0, strides: contiguous(&out_shape) }, &out_shape)?;
        Ok(out)
    }

    /// Indices `range` of dimension `dim` of `x`.
    pub fn slice(&mut self, x: &GpuTensor, dim: usize, range: Range<usize>) -> Result<GpuTensor> {
        let op = "slice";
        let shape = x.shape();
        if dim >= shape.len() || range.start > range.end || range.end > shape[dim] {
            return Err(Error::Shape { op, what: "x", expected: format!("dimension {dim} holding {range:?}"), got: shape.to_vec() });
        }
        let mut out_shape = shape.to_vec();
        out_shape[dim] = range.len();
        let strides = contiguous(shape);
        let out = self.alloc(op, &out_shape, x.dtype())?;
        let from = StridedView { offset: range.start * strides[4 - shape.len() + dim], strides };
        self.copy_strided(x, from, &out, StridedView { offset: 0, strides: contiguous(&out_shape) }, &out_shape)?;
        Ok(out)
    }

    /// `parts` joined along dimension `dim` (their other dimensions equal).
    pub fn concat(&mut self, parts: &[&GpuTensor], dim: usize) -> Result<GpuTensor> {
        let op = "concat";
        let Some(first) = parts.first() else {
            return Err(Error::Shape { op, what: "parts", expected: "at least one tensor".into(), got: vec![] });
        };
        let rank = first.shape().len();
        let mut out_shape = first.shape().to_vec();
        if dim >= rank {
            return Err(Error::Shape { op, what: "parts", expected: format!("a dimension {dim}"), got: out_shape });
        }
        out_shape[dim] = 0;
        for p in parts {
            let same = p.shape().len() == rank && (0..rank).all(|d| d == dim || p.shape()[d] == first.shape()[d]);
            if !same {
                return Err(Error::Shape { op, what: "part", expected: format!("{:?} but for dimension {dim}", first.shape()), got: p.shape().to_vec() });
            }
            out_shape[dim] += p.shape()[dim];
        }
        let out = self.alloc(op, &out_shape, first.dtype())?;
        let to = contiguous(&out_shape);
        let mut at = 0;
        for p in parts {
            let view = StridedView { offset: at * to[4 - rank + dim], strides: to };
            self.copy_strided(p, StridedView { offset: 0, strides: contiguous(p.shape()) }, &out, view, p.shape())?;
            at += p.shape()[dim];
        }
        Ok(out)
    }

    /// `x` extended along `dim` by `before` and `after` entries of `value`.
    pub fn pad(&mut self, x: &GpuTensor, dim: usize, before: usize, after: usize, value: f32) -> Result<GpuTensor> {
        let op = "pad";
        let shape = x.shape();
        if dim >= shape.len() {
            return Err(Error::Shape { op, what: "x", expected: format!("a dimension {dim}"), got: shape.to_vec() });
        }
        let mut out_shape = shape.to_vec();
        out_shape[dim] += before + after;
        let out = self.alloc(op, &out_shape, x.dtype())?;
        self.fill(&out, value)?;
        let to = contiguous(&out_shape);
        self.copy_strided(x, StridedView { offset: 0, strides: contiguous(shape) }, &out, StridedView { offset: before * to[4 - shape.len() + dim], strides: to }, shape)?;
        Ok(out)
    }
}
