use super::elem_of;
use crate::pipeline::Layout;
use crate::pipeline::Slot::{Read, Uniform, Write};
use crate::recorder::grid;
use crate::registry::Kernel;
use crate::{GpuTensor, Recorder, Result};

const LAYOUT: Layout = &[(0, Uniform), (1, Read), (2, Write)];

impl Recorder<'_> {
    /// Softmax over each row (the last dimension).
    pub fn softmax(&mut self, x: &GpuTensor) -> Result<GpuTensor> {
        let elem = elem_of(self.gpu, "softmax", "x", x)?;
        let out = self.gpu.zeros("softmax", x.shape(), x.dtype())?;
        for (cx, co) in x.chunks().iter().zip(out.chunks()) {
            let rows = cx.rows.len();
            let buffers = vec![(1, cx.buffer.clone()), (2, co.buffer.clone())];
            self.push(Kernel::Softmax, "softmax", elem, LAYOUT, &[rows as u32, x.cols() as u32], buffers, grid(rows));
        }
        Ok(out)
    }
}
