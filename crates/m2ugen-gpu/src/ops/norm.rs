use super::{elem_of, expect_dtype, expect_len};
use crate::pipeline::Layout;
use crate::pipeline::Slot::{Read, Uniform, Write};
use crate::recorder::grid;
use crate::registry::Kernel;
use crate::{GpuTensor, Recorder, Result};

const RMS: Layout = &[(0, Uniform), (1, Read), (2, Read), (4, Write)];
const LAYER: Layout = &[(0, Uniform), (1, Read), (2, Read), (3, Read), (4, Write)];

impl Recorder<'_> {
    /// RMSNorm of each row: `x / sqrt(mean(x²) + eps) * weight`.
    pub fn rms_norm(&mut self, x: &GpuTensor, weight: &GpuTensor, eps: f32) -> Result<GpuTensor> {
        self.norm("rms_norm", RMS, x, weight, None, eps)
    }

    /// LayerNorm of each row: `(x - mean) / sqrt(var + eps) * weight + bias`.
    pub fn layer_norm(&mut self, x: &GpuTensor, weight: &GpuTensor, bias: &GpuTensor, eps: f32) -> Result<GpuTensor> {
        self.norm("layer_norm", LAYER, x, weight, Some(bias), eps)
    }

    fn norm(&mut self, op: &'static str, layout: Layout, x: &GpuTensor, weight: &GpuTensor, bias: Option<&GpuTensor>, eps: f32) -> Result<GpuTensor> {
        let elem = elem_of(self.gpu, op, "x", x)?;
        let cols = x.cols();
        expect_dtype(op, "weight", weight, x.dtype())?;
        expect_len(op, "weight", weight, cols)?;
        let mut params_buffers = vec![(2, weight.single(self.gpu, op, "weight")?)];
        if let Some(b) = bias {
            expect_dtype(op, "bias", b, x.dtype())?;
            expect_len(op, "bias", b, cols)?;
            params_buffers.push((3, b.single(self.gpu, op, "bias")?));
        }
        let out = self.gpu.zeros(op, x.shape(), x.dtype())?;
        for (cx, co) in x.chunks().iter().zip(out.chunks()) {
            let rows = cx.rows.len();
            let mut buffers = vec![(1, cx.buffer.clone()), (4, co.buffer.clone())];
            buffers.extend(params_buffers.iter().cloned());
            self.push(Kernel::Norm, op, elem, layout, &[rows as u32, cols as u32, eps.to_bits()], buffers, grid(rows));
        }
        Ok(out)
    }
}
