use super::{elem_of, expect_dtype, expect_len};
use crate::pipeline::Layout;
use crate::pipeline::Slot::{Read, Uniform, Write};
use crate::recorder::grid;
use crate::registry::{Kernel, WeightKind};
use crate::{Error, GpuTensor, Recorder, Result, Weight};

const DENSE: Layout = &[(0, Uniform), (1, Read), (2, Read), (3, Read), (4, Write)];
const QUANT: Layout = &[(0, Uniform), (1, Read), (2, Read), (3, Read), (4, Write), (5, Read)];

/// Up to this many input rows, [`Recorder::linear`] uses the matrix-vector kernel.
pub const MATVEC_MAX_ROWS: usize = 4;

impl Recorder<'_> {
    /// `y = x · wᵀ + bias` for `x` of shape `(.., in_features)`: matvec for a few rows, tiled
    /// matmul otherwise. Output `(.., out_features)`.
    pub fn linear(&mut self, x: &GpuTensor, w: &Weight, bias: Option<&GpuTensor>) -> Result<GpuTensor> {
        if x.rows() <= MATVEC_MAX_ROWS { self.matvec(x, w, bias) } else { self.matmul(x, w, bias) }
    }

    /// The tiled matrix product (any number of rows).
    pub fn matmul(&mut self, x: &GpuTensor, w: &Weight, bias: Option<&GpuTensor>) -> Result<GpuTensor> {
        self.product("matmul", x, w, bias)
    }

    /// The matrix-vector product (one workgroup per output feature and row of `x`).
    pub fn matvec(&mut self, x: &GpuTensor, w: &Weight, bias: Option<&GpuTensor>) -> Result<GpuTensor> {
        self.product("matvec", x, w, bias)
    }

    fn product(&mut self, op: &'static str, x: &GpuTensor, w: &Weight, bias: Option<&GpuTensor>) -> Result<GpuTensor> {
        let elem = elem_of(self.gpu, op, "x", x)?;
        let (n, k) = w.dims();
        let m = x.rows();
        if x.cols() != k {
            return Err(Error::Shape { op, what: "x", expected: format!("(.., {k}) to match the weight's in_features"), got: x.shape().to_vec() });
        }
        if let Weight::Dense(t) = w {
            expect_dtype(op, "weight", t, x.dtype())?;
        }
        if op == "matvec" && m > 65535 {
            return Err(Error::Shape { op, what: "x", expected: "at most 65535 rows".into(), got: x.shape().to_vec() });
        }
        let bias_buf = match bias {
            Some(b) => {
                expect_dtype(op, "bias", b, x.dtype())?;
                expect_len(op, "bias", b, n)?;
                b.single(self.gpu, op, "bias")?
            }
            None => self.gpu.dummy.clone(),
        };
        let x_buf = x.single(self.gpu, op, "x")?;
        let mut shape = x.shape().to_vec();
        if let Some(last) = shape.last_mut() {
            *last = n;
        }
        let y = self.gpu.zeros(op, &shape, x.dtype())?;
        let y_buf = y.single(self.gpu, op, "output")?;
        let kernel = if op == "matmul" { Kernel::Matmul(w.kind()) } else { Kernel::Matvec(w.kind()) };
        let layout = if w.kind() == WeightKind::Dense { DENSE } else { QUANT };
        for (rows, weight_buffers) in w.chunk_bindings() {
            let params = [m as u32, n as u32, k as u32, rows.start as u32, rows.len() as u32, bias.is_some() as u32];
            let mut buffers = vec![(1, x_buf.clone()), (3, bias_buf.clone()), (4, y_buf.clone())];
            buffers.extend(weight_buffers);
            let workgroups = if op == "matmul" {
                [rows.len().div_ceil(64) as u32, m.div_ceil(64) as u32, 1]
            } else {
                // 8 weight rows per workgroup (matvec.wgsl).
                let [gx, gy, _] = grid(rows.len().div_ceil(8));
                [gx, gy, m as u32]
            };
            self.push(kernel, op, elem, layout, &params, buffers, workgroups);
        }
        Ok(y)
    }
}
