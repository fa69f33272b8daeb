use super::{elem_of, expect_dtype};
use crate::pipeline::Layout;
use crate::pipeline::Slot::{Read, Uniform, Write};
use crate::recorder::grid;
use crate::registry::Kernel;
use crate::{GpuTensor, Recorder, Result};
use m2ugen_core::DType;

const LAYOUT: Layout = &[(0, Uniform), (1, Read), (2, Read), (3, Write)];

impl Recorder<'_> {
    /// Rows of `table` (`vocab x dim`, possibly split) picked by the u32 `ids`; ids past the
    /// table give zero rows. Output `(ids, dim)`.
    pub fn embedding(&mut self, table: &GpuTensor, ids: &GpuTensor) -> Result<GpuTensor> {
        let op = "embedding";
        let elem = elem_of(self.gpu, op, "table", table)?;
        expect_dtype(op, "ids", ids, DType::U32)?;
        let (n, dim) = (ids.numel(), table.cols());
        let ids_buf = ids.single(self.gpu, op, "ids")?;
        let out = self.gpu.zeros(op, &[n, dim], table.dtype())?;
        let out_buf = out.single(self.gpu, op, "output")?;
        for c in table.chunks() {
            let params = [n as u32, dim as u32, c.rows.start as u32, c.rows.len() as u32];
            let buffers = vec![(1, ids_buf.clone()), (2, c.buffer.clone()), (3, out_buf.clone())];
            self.push(Kernel::Embed, op, elem, LAYOUT, &params, buffers, grid((n * dim).div_ceil(256)));
        }
        Ok(out)
    }
}
