use super::{elem_of, u32_of};
use crate::params::SoftmaxParams;
use crate::pipeline::Layout;
use crate::pipeline::Slot::{Read, Uniform, Write};
use crate::recorder::{grid, Dispatch};
use crate::registry::Kernel;
use crate::{GpuTensor, Recorder, Result};

const LAYOUT: Layout = &[(0, Uniform), (1, Read), (2, Write)];

impl Recorder<'_> {
    /// Softmax over each row (the last dimension).
    pub fn softmax(&mut self, x: &GpuTensor) -> Result<GpuTensor> {
        let op = "softmax";
        let elem = elem_of(self.gpu, op, "x", x)?;
        let out = self.alloc(op, x.shape(), x.dtype())?;
        for (cx, co) in x.chunks().iter().zip(out.chunks()) {
            let rows = cx.rows.len();
            let params = SoftmaxParams { rows: u32_of(op, "x", rows)?, cols: u32_of(op, "x", x.cols())? };
            let buffers = vec![(1, cx.raw()), (2, co.raw())];
            self.push(Dispatch { kernel: Kernel::Softmax, entry: op, elem, layout: LAYOUT, variant: [0; 2], params: &params, buffers, workgroups: grid(rows) });
        }
        Ok(out)
    }
}
