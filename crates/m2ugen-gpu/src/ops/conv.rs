//! 1-D convolutions over channels-last sequences (`m2ugen_core::conv` describes them).
//!
//! **Binding rule.** The input and the weight sit in one binding each (an output step reads
//! a window of input steps, which a split at arbitrary rows would cut); a longer sequence is
//! convolved in overlapping windows by its model, as EnCodec's streaming decode does anyway. The
//! output may be split across bindings: one launch per output chunk, each reading the whole
//! input.

use super::{elem_of, expect_dtype, expect_len, u32_of};
use crate::params::ConvParams;
use crate::pipeline::Layout;
use crate::pipeline::Slot::{Read, Uniform, Write};
use crate::recorder::{grid, Dispatch};
use crate::registry::sizes::{GROUP, TILE};
use crate::registry::Kernel;
use crate::{Error, GpuTensor, Recorder, Result};
use m2ugen_core::conv::{Conv1d, ConvTranspose1d, Padding};

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
        let elem = elem_of(self.gpu, op, "x", x)?;
        let out = self.alloc(op, &[c.batch, out_len, c.c_out], x.dtype())?;
        params.batch = u32_of(op, "x", c.batch)?;
        params.len = u32_of(op, "x", c.len)?;
        params.c_in = u32_of(op, "x", c.c_in)?;
        params.out_len = u32_of(op, "output", out_len)?;
        params.c_out = u32_of(op, "weight", c.c_out)?;
        params.kernel = u32_of(op, "weight", c.kernel)?;
        params.has_bias = c.buffers.iter().any(|(b, _)| *b == 3) as u32;
        for chunk in out.chunks() {
            let rows = chunk.rows.len();
            let p = ConvParams { out_row0: u32_of(op, "output", chunk.rows.start)?, out_rows: u32_of(op, "output", rows)?, ..params };
            let mut buffers = c.buffers.clone();
            buffers.push((4, chunk.raw()));
            let workgroups = if tiled {
                [c.c_out.div_ceil(TILE as usize) as u32, u32_of(op, "output", rows.div_ceil(TILE as usize))?, 1]
            } else {
                grid((rows * c.c_out).div_ceil(GROUP as usize))
            };
            self.push(Dispatch { kernel: Kernel::Conv, entry, elem, layout: LAYOUT, variant: [0; 2], params: &p, buffers, workgroups });
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
}
