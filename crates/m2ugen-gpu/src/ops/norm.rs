use super::{elem_of, expect_dtype, expect_len, u32_of};
use crate::params::NormParams;
use crate::pipeline::Layout;
use crate::pipeline::Slot::{Read, Uniform, Write};
use crate::recorder::{grid, Dispatch};
use crate::registry::Kernel;
use crate::{Error, GpuTensor, Recorder, Result};

const RMS: Layout = &[(0, Uniform), (1, Read), (2, Read), (4, Write)];
const WITH_BIAS: Layout = &[(0, Uniform), (1, Read), (2, Read), (3, Read), (4, Write)];
const WITH_STATISTICS: Layout = &[(0, Uniform), (1, Read), (2, Read), (3, Read), (4, Write), (5, Read), (6, Read)];

impl Recorder<'_> {
    /// RMSNorm of each row: `x / sqrt(mean(x²) + eps) * weight`.
    pub fn rms_norm(&mut self, x: &GpuTensor, weight: &GpuTensor, eps: f32) -> Result<GpuTensor> {
        self.norm("rms_norm", RMS, x, weight, None, eps)
    }

    /// L2 normalisation of each row, scaled per column: `x / max(‖x‖₂, eps) * weight`
    /// (PyTorch's `F.normalize` with `eps`, then a scale).
    pub fn l2_norm(&mut self, x: &GpuTensor, weight: &GpuTensor, eps: f32) -> Result<GpuTensor> {
        self.norm("l2_norm", RMS, x, weight, None, eps)
    }

    /// LayerNorm of each row: `(x - mean) / sqrt(var + eps) * weight + bias`.
    pub fn layer_norm(&mut self, x: &GpuTensor, weight: &GpuTensor, bias: &GpuTensor, eps: f32) -> Result<GpuTensor> {
        self.norm("layer_norm", WITH_BIAS, x, weight, Some(bias), eps)
    }

    /// Each row normalised by given per-column statistics: `(x - mean) / sqrt(variance + eps)
    /// * weight + bias` (BatchNorm at inference; a GroupNorm of one channel per group whose
    /// statistics were gathered chunk by chunk with [`Recorder::sum_rows`] and
    /// [`Recorder::sum_squared_deviations`]). `mean`, `variance`, `weight` and `bias` are
    /// `(cols)`.
    pub fn batch_norm(&mut self, x: &GpuTensor, mean: &GpuTensor, variance: &GpuTensor, weight: &GpuTensor, bias: &GpuTensor, eps: f32) -> Result<GpuTensor> {
        let op = "batch_norm";
        let mut statistics = Vec::with_capacity(2);
        for (slot, what, t) in [(5, "mean", mean), (6, "variance", variance)] {
            expect_dtype(op, what, t, x.dtype())?;
            expect_len(op, what, t, x.cols())?;
            statistics.push((slot, t.single(self.gpu, op, what)?));
        }
        self.norm_with(op, WITH_STATISTICS, x, weight, Some(bias), eps, &statistics)
    }

    fn norm_inputs(&self, op: &'static str, x: &GpuTensor, weight: &GpuTensor, bias: Option<&GpuTensor>) -> Result<Vec<(u32, wgpu::Buffer)>> {
        let cols = x.cols();
        expect_dtype(op, "weight", weight, x.dtype())?;
        expect_len(op, "weight", weight, cols)?;
        let mut buffers = vec![(2, weight.single(self.gpu, op, "weight")?)];
        if let Some(b) = bias {
            expect_dtype(op, "bias", b, x.dtype())?;
            expect_len(op, "bias", b, cols)?;
            buffers.push((3, b.single(self.gpu, op, "bias")?));
        }
        Ok(buffers)
    }

    fn norm(&mut self, op: &'static str, layout: Layout, x: &GpuTensor, weight: &GpuTensor, bias: Option<&GpuTensor>, eps: f32) -> Result<GpuTensor> {
        self.norm_with(op, layout, x, weight, bias, eps, &[])
    }

    #[allow(clippy::too_many_arguments)]
    fn norm_with(&mut self, op: &'static str, layout: Layout, x: &GpuTensor, weight: &GpuTensor, bias: Option<&GpuTensor>, eps: f32, extra: &[(u32, wgpu::Buffer)]) -> Result<GpuTensor> {
        let elem = elem_of(self.gpu, op, "x", x)?;
        let mut shared = self.norm_inputs(op, x, weight, bias)?;
        shared.extend(extra.iter().cloned());
        let out = self.alloc(op, x.shape(), x.dtype())?;
        for (cx, co) in x.chunks().iter().zip(out.chunks()) {
            let rows = cx.rows.len();
            let params = NormParams { rows: u32_of(op, "x", rows)?, cols: u32_of(op, "x", x.cols())?, eps, groups: 1, batch: 1 };
            let mut buffers = vec![(1, cx.raw()), (4, co.raw())];
            buffers.extend(shared.iter().cloned());
            self.push(Dispatch { kernel: Kernel::Norm, entry: op, elem, layout, variant: [0; 2], params: &params, buffers, workgroups: grid(rows) });
        }
        Ok(out)
    }

    /// GroupNorm of channels-last `x` `(batch, time, channels)`: per batch item, `groups` runs of
    /// `channels / groups` channels each normalised over every time step and channel of the run,
    /// then scaled by `weight` and shifted by `bias` per channel. `x` must sit in one binding.
    pub fn group_norm(&mut self, x: &GpuTensor, groups: usize, weight: &GpuTensor, bias: &GpuTensor, eps: f32) -> Result<GpuTensor> {
        let op = "group_norm";
        let elem = elem_of(self.gpu, op, "x", x)?;
        let &[batch, len, channels] = x.shape() else {
            return Err(Error::Shape { op, what: "x", expected: "(batch, time, channels)".into(), got: x.shape().to_vec() });
        };
        if groups == 0 || channels % groups != 0 {
            return Err(Error::Shape { op, what: "x", expected: format!("channels divisible by {groups} groups"), got: x.shape().to_vec() });
        }
        let mut buffers = self.norm_inputs(op, x, weight, Some(bias))?;
        let xb = x.single(self.gpu, op, "x")?;
        let out = self.alloc(op, x.shape(), x.dtype())?;
        buffers.extend([(1, xb), (4, out.single(self.gpu, op, "output")?)]);
        let params = NormParams { rows: u32_of(op, "x", batch * len)?, cols: u32_of(op, "x", channels)?, eps, groups: u32_of(op, "groups", groups)?, batch: u32_of(op, "x", batch)? };
        self.push(Dispatch { kernel: Kernel::Norm, entry: op, elem, layout: WITH_BIAS, variant: [0; 2], params: &params, buffers, workgroups: grid(batch * groups) });
        Ok(out)
    }
}
