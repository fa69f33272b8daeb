//! Convolutions over channels-last sequences and images (`m2ugen_core::conv` describes them),
//! and the nearest-neighbour upsampling that goes with the 2-D ones.
//!
//! **Binding rule.** The input and the weight sit in one binding each (an output row reads a
//! window of input rows, which a split at arbitrary rows would cut); a longer sequence is
//! convolved in overlapping windows by its model, as EnCodec's streaming decode does anyway. The
//! output may be split across bindings: one launch per output chunk, each reading the whole
//! input. `upsample_nearest2d` is strided copies, so its input and output sit in one binding
//! each.

use super::{elem_of, expect_dtype, expect_len, u32_of, StridedView};
use crate::params::ConvParams;
use crate::pipeline::Layout;
use crate::pipeline::Slot::{Read, Uniform, Write};
use crate::recorder::{grid, Dispatch};
use crate::registry::sizes::{GROUP, TILE, TILE_K, TILE_THREADS};
use crate::registry::Kernel;
use crate::{Error, GpuTensor, Recorder, Result};
use m2ugen_core::conv::{Conv1d, Conv2d, ConvTranspose1d, Padding};

// conv2d_tiled has each invocation stage whole rows of one reduction column.
const _: () = assert!((TILE_THREADS * TILE_THREADS).is_multiple_of(TILE_K) && TILE.is_multiple_of(TILE_THREADS * TILE_THREADS / TILE_K));

/// Most workgroups along one side of a grid (WebGPU's guaranteed minimum).
const MAX_GRID: usize = 65535;

const LAYOUT: Layout = &[(0, Uniform), (1, Read), (2, Read), (3, Read), (4, Write)];

struct Checked {
    batch: usize,
    len: usize,
    c_in: usize,
    c_out: usize,
    kernel: usize,
    buffers: Vec<(u32, wgpu::Buffer)>,
}

impl Recorder<'_> {
    /// Shapes of x `(batch, len, c_in)` and w `(a, b, kernel)` where `c_in` and `c_out` come from
    /// the weight as `transposed` says; the bias `(c_out)`.
    fn conv_inputs(&self, op: &'static str, x: &GpuTensor, w: &GpuTensor, bias: Option<&GpuTensor>, groups: usize, transposed: bool) -> Result<Checked> {
        let &[batch, len, c_in] = x.shape() else {
            return Err(Error::Shape { op, what: "x", expected: "(batch, time, channels)".into(), got: x.shape().to_vec() });
        };
        let &[w0, w1, kernel] = w.shape() else {
            return Err(Error::Shape { op, what: "weight", expected: "(out, in / groups, kernel) or, transposed, (in, out / groups, kernel)".into(), got: w.shape().to_vec() });
        };
        expect_dtype(op, "weight", w, x.dtype())?;
        let (c_out, fits) = if transposed { (w1 * groups, w0 == c_in) } else { (w0, w1 * groups == c_in) };
        if groups == 0 || c_in % groups != 0 || c_out % groups != 0 || !fits || kernel == 0 {
            return Err(Error::Shape { op, what: "weight", expected: format!("{} for {c_in} input channels in {groups} groups", if transposed { "(c_in, c_out / groups, kernel)" } else { "(c_out, c_in / groups, kernel)" }), got: w.shape().to_vec() });
        }
        let mut buffers = vec![(1, x.single(self.gpu, op, "x")?), (2, w.single(self.gpu, op, "weight")?)];
        if let Some(b) = bias {
            expect_dtype(op, "bias", b, x.dtype())?;
            expect_len(op, "bias", b, c_out)?;
            buffers.push((3, b.single(self.gpu, op, "bias")?));
        }
        Ok(Checked { batch, len, c_in, c_out, kernel, buffers })
    }

    fn conv_launch(&mut self, op: &'static str, entry: &'static str, x: &GpuTensor, c: Checked, out_len: usize, mut params: ConvParams, tiled: bool) -> Result<GpuTensor> {
        params.batch = u32_of(op, "x", c.batch)?;
        params.len = u32_of(op, "x", c.len)?;
        params.c_in = u32_of(op, "x", c.c_in)?;
        params.out_len = u32_of(op, "output", out_len)?;
        params.c_out = u32_of(op, "weight", c.c_out)?;
        params.kernel = u32_of(op, "weight", c.kernel)?;
        self.conv_dispatch(op, entry, x, &[c.batch, out_len, c.c_out], c.buffers, params, tiled)
    }

    /// Allocates the output `out_shape` (its last dimension the output channels) and records one
    /// launch per chunk of it; `params` holds everything but the chunk and the bias flag.
    #[allow(clippy::too_many_arguments)]
    fn conv_dispatch(&mut self, op: &'static str, entry: &'static str, x: &GpuTensor, out_shape: &[usize], buffers: Vec<(u32, wgpu::Buffer)>, mut params: ConvParams, tiled: bool) -> Result<GpuTensor> {
        let elem = elem_of(self.gpu, op, "x", x)?;
        let out = self.alloc(op, out_shape, x.dtype())?;
        let c_out = out.cols();
        params.has_bias = buffers.iter().any(|(b, _)| *b == 3) as u32;
        for chunk in out.chunks() {
            let rows = chunk.rows.len();
            let p = ConvParams { out_row0: u32_of(op, "output", chunk.rows.start)?, out_rows: u32_of(op, "output", rows)?, ..params };
            let mut bound = buffers.clone();
            bound.push((4, chunk.raw()));
            let workgroups = if tiled {
                let tiles = rows.div_ceil(TILE as usize);
                if tiles > MAX_GRID {
                    return Err(Error::Shape { op, what: "output", expected: format!("at most {} rows (pixels) per binding", MAX_GRID * TILE as usize), got: out_shape.to_vec() });
                }
                [c_out.div_ceil(TILE as usize) as u32, tiles as u32, 1]
            } else {
                grid((rows * c_out).div_ceil(GROUP as usize))
            };
            self.push(Dispatch { kernel: Kernel::Conv, entry, elem, layout: LAYOUT, variant: [0; 2], params: &p, buffers: bound, workgroups });
        }
        Ok(out)
    }

    /// `conv1d` of `x` `(batch, time, c_in)` with PyTorch's weight `(c_out, c_in / groups,
    /// kernel)` and an optional bias: `(batch, out_len, c_out)`. A tiled implicit product when
    /// each tile of output channels lies in one group, one value per invocation otherwise
    /// (depthwise).
    pub fn conv1d(&mut self, x: &GpuTensor, w: &GpuTensor, bias: Option<&GpuTensor>, conv: &Conv1d) -> Result<GpuTensor> {
        let op = "conv1d";
        let c = self.conv_inputs(op, x, w, bias, conv.groups, false)?;
        if conv.stride == 0 || conv.dilation == 0 {
            return Err(Error::Shape { op, what: "stride", expected: "stride and dilation of at least 1".into(), got: vec![conv.stride, conv.dilation] });
        }
        if conv.padding == Padding::Reflect && (conv.pad_left >= c.len || conv.pad_right >= c.len) {
            return Err(Error::Shape { op, what: "x", expected: format!("more than {} steps for reflect padding of {} and {}", conv.pad_left.max(conv.pad_right), conv.pad_left, conv.pad_right), got: x.shape().to_vec() });
        }
        let out_len = conv.out_len(c.len, c.kernel);
        if out_len == 0 {
            return Err(Error::Shape { op, what: "x", expected: format!("enough steps for a kernel spanning {}", conv.dilation * (c.kernel - 1) + 1), got: x.shape().to_vec() });
        }
        let cog = c.c_out / conv.groups;
        let tiled = conv.groups == 1 || cog % TILE as usize == 0;
        let params = ConvParams {
            stride: u32_of(op, "stride", conv.stride)?,
            dilation: u32_of(op, "dilation", conv.dilation)?,
            groups: u32_of(op, "groups", conv.groups)?,
            pad_left: u32_of(op, "padding", conv.pad_left)?,
            pad_mode: conv.padding.code(),
            ..Default::default()
        };
        self.conv_launch(op, if tiled { "conv1d_tiled" } else { "conv1d_direct" }, x, c, out_len, params, tiled)
    }

    /// `conv_transpose1d` of `x` `(batch, time, c_in)` with PyTorch's weight `(c_in, c_out /
    /// groups, kernel)`, trimmed as `conv` says: `(batch, out_len, c_out)`.
    pub fn conv_transpose1d(&mut self, x: &GpuTensor, w: &GpuTensor, bias: Option<&GpuTensor>, conv: &ConvTranspose1d) -> Result<GpuTensor> {
        let op = "conv_transpose1d";
        let c = self.conv_inputs(op, x, w, bias, conv.groups, true)?;
        if conv.stride == 0 || conv.dilation == 0 {
            return Err(Error::Shape { op, what: "stride", expected: "stride and dilation of at least 1".into(), got: vec![conv.stride, conv.dilation] });
        }
        let out_len = conv.out_len(c.len, c.kernel);
        if out_len == 0 {
            return Err(Error::Shape { op, what: "x", expected: format!("more output than the trim of {} and {}", conv.trim_left, conv.trim_right), got: x.shape().to_vec() });
        }
        let params = ConvParams {
            stride: u32_of(op, "stride", conv.stride)?,
            dilation: u32_of(op, "dilation", conv.dilation)?,
            groups: u32_of(op, "groups", conv.groups)?,
            trim_left: u32_of(op, "trim", conv.trim_left)?,
            ..Default::default()
        };
        self.conv_launch(op, "conv_transpose1d", x, c, out_len, params, false)
    }

    /// `conv2d` of `x` `(batch, h, w, c_in)` with PyTorch's weight `(c_out, c_in / groups, kh,
    /// kw)`, an optional bias `(c_out)` and zero padding: `(batch, oh, ow, c_out)` (sizes from
    /// [`Conv2d::out_size`]). A tiled implicit product (rows are output pixels) when each tile of
    /// output channels lies in one group, one value per invocation otherwise (depthwise and
    /// other narrow groups).
    pub fn conv2d(&mut self, x: &GpuTensor, w: &GpuTensor, bias: Option<&GpuTensor>, conv: &Conv2d) -> Result<GpuTensor> {
        let op = "conv2d";
        let &[batch, height, width, c_in] = x.shape() else {
            return Err(Error::Shape { op, what: "x", expected: "(batch, height, width, channels)".into(), got: x.shape().to_vec() });
        };
        let &[c_out, cig, kh, kw] = w.shape() else {
            return Err(Error::Shape { op, what: "weight", expected: "(c_out, c_in / groups, kh, kw)".into(), got: w.shape().to_vec() });
        };
        expect_dtype(op, "weight", w, x.dtype())?;
        let groups = conv.groups;
        if groups == 0 || !c_out.is_multiple_of(groups) || cig * groups != c_in || kh == 0 || kw == 0 {
            return Err(Error::Shape { op, what: "weight", expected: format!("(c_out, c_in / groups, kh, kw) for {c_in} input channels in {groups} groups, c_out a multiple of {groups}"), got: w.shape().to_vec() });
        }
        if conv.stride.contains(&0) || conv.dilation.contains(&0) {
            return Err(Error::Setting { op, setting: "stride and dilation", value: format!("{:?} and {:?}", conv.stride, conv.dilation), range: "at least 1 along each axis" });
        }
        let (out_h, out_w) = conv.out_size(height, width, kh, kw);
        if out_h == 0 {
            let span = |k: usize, d: usize| conv.dilation[d] * (k - 1) + 1;
            return Err(Error::Shape { op, what: "x", expected: format!("enough pixels for a kernel spanning {}x{} (padding {:?})", span(kh, 0), span(kw, 1), conv.padding), got: x.shape().to_vec() });
        }
        let mut buffers = vec![(1, x.single(self.gpu, op, "x")?), (2, w.single(self.gpu, op, "weight")?)];
        if let Some(b) = bias {
            expect_dtype(op, "bias", b, x.dtype())?;
            expect_len(op, "bias", b, c_out)?;
            buffers.push((3, b.single(self.gpu, op, "bias")?));
        }
        let tiled = groups == 1 || (c_out / groups).is_multiple_of(TILE as usize);
        let params = ConvParams {
            batch: u32_of(op, "x", batch)?,
            len: u32_of(op, "x", width)?,
            c_in: u32_of(op, "x", c_in)?,
            out_len: u32_of(op, "output", out_w)?,
            c_out: u32_of(op, "weight", c_out)?,
            kernel: u32_of(op, "weight", kw)?,
            stride: u32_of(op, "stride", conv.stride[1])?,
            dilation: u32_of(op, "dilation", conv.dilation[1])?,
            groups: u32_of(op, "groups", groups)?,
            pad_left: u32_of(op, "padding", conv.padding[1])?,
            height: u32_of(op, "x", height)?,
            out_height: u32_of(op, "output", out_h)?,
            kernel_h: u32_of(op, "weight", kh)?,
            stride_h: u32_of(op, "stride", conv.stride[0])?,
            dilation_h: u32_of(op, "dilation", conv.dilation[0])?,
            pad_top: u32_of(op, "padding", conv.padding[0])?,
            ..Default::default()
        };
        self.conv_dispatch(op, if tiled { "conv2d_tiled" } else { "conv2d_direct" }, x, &[batch, out_h, out_w, c_out], buffers, params, tiled)
    }

    /// Nearest-neighbour upsampling of `x` `(batch, h, w, c)` by an integer `scale`: `(batch,
    /// h·scale, w·scale, c)`, each pixel repeated into a `scale x scale` block (PyTorch's
    /// `F.interpolate(mode="nearest", scale_factor=scale)`). `scale` strided copies with zero
    /// strides, one per column offset in a block, each writing its pixels straight into the
    /// output; input and output sit in one binding each.
    pub fn upsample_nearest2d(&mut self, x: &GpuTensor, scale: usize) -> Result<GpuTensor> {
        let op = "upsample_nearest2d";
        let &[batch, h, w, c] = x.shape() else {
            return Err(Error::Shape { op, what: "x", expected: "(batch, height, width, channels)".into(), got: x.shape().to_vec() });
        };
        if scale == 0 {
            return Err(Error::Setting { op, setting: "scale", value: "0".into(), range: "at least 1" });
        }
        let (oh, ow) = (h * scale, w * scale);
        elem_of(self.gpu, op, "x", x)?;
        x.single(self.gpu, op, "x")?;
        let out = self.alloc(op, &[batch, oh, ow, c], x.dtype())?;
        out.single(self.gpu, op, "output")?;
        // Index (batch·h + y, block row, x, channel): the block row repeats the source row
        // (stride 0); launch `sx` writes column sx of each block.
        let from = StridedView { offset: 0, strides: [w * c, 0, c, 1] };
        for sx in 0..scale {
            let to = StridedView { offset: sx * c, strides: [scale * ow * c, ow * c, scale * c, 1] };
            self.copy_strided(x, from, &out, to, &[batch * h, scale, w, c])?;
        }
        Ok(out)
    }
}
