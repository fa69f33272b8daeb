use super::{elem_of, expect_dtype, expect_len, u32_of};
use crate::params::ProductParams;
use crate::pipeline::Layout;
use crate::pipeline::Slot::{Read, Uniform, Write};
use crate::recorder::{grid, Dispatch};
use crate::registry::sizes::{MATVEC_ROWS, MAX_BATCH, TILE};
use crate::registry::{Kernel, WeightKind};
use crate::{Error, GpuTensor, Recorder, Result, Weight};

const DENSE: Layout = &[(0, Uniform), (1, Read), (2, Read), (3, Read), (4, Write), (6, Read)];
const QUANT: Layout = &[(0, Uniform), (1, Read), (2, Read), (3, Read), (4, Write), (5, Read), (6, Read)];

/// Up to this many input rows, [`Recorder::linear`] uses the matrix-vector kernel, which reads
/// each weight once for all of them.
pub const MATVEC_MAX_ROWS: usize = MAX_BATCH as usize;

#[derive(Clone, Copy, PartialEq)]
enum Product {
    Matmul,
    Matvec,
}

impl Recorder<'_> {
    /// `y = x · wᵀ + bias` for `x` of shape `(.., in_features)`: matvec for a few rows, tiled
    /// matmul otherwise. Output `(.., out_features)`.
    pub fn linear(&mut self, x: &GpuTensor, w: &Weight, bias: Option<&GpuTensor>) -> Result<GpuTensor> {
        self.linear_residual(x, w, bias, None)
    }

    /// [`Recorder::linear`] plus `residual` (the output's shape) when given: a residual
    /// connection folded into the product.
    pub fn linear_residual(&mut self, x: &GpuTensor, w: &Weight, bias: Option<&GpuTensor>, residual: Option<&GpuTensor>) -> Result<GpuTensor> {
        let kind = if x.rows() <= MATVEC_MAX_ROWS { Product::Matvec } else { Product::Matmul };
        self.product(kind, x, w, bias, residual)
    }

    /// The tiled matrix product (any number of rows), plus `residual` when given.
    pub fn matmul(&mut self, x: &GpuTensor, w: &Weight, bias: Option<&GpuTensor>, residual: Option<&GpuTensor>) -> Result<GpuTensor> {
        self.product(Product::Matmul, x, w, bias, residual)
    }

    /// The matrix-vector product (any number of rows, in groups of up to [`MATVEC_MAX_ROWS`]
    /// that share each weight read), plus `residual` when given.
    pub fn matvec(&mut self, x: &GpuTensor, w: &Weight, bias: Option<&GpuTensor>, residual: Option<&GpuTensor>) -> Result<GpuTensor> {
        self.product(Product::Matvec, x, w, bias, residual)
    }

    fn product(&mut self, kind: Product, x: &GpuTensor, w: &Weight, bias: Option<&GpuTensor>, residual: Option<&GpuTensor>) -> Result<GpuTensor> {
        let op = if kind == Product::Matmul { "matmul" } else { "matvec" };
        let elem = elem_of(self.gpu, op, "x", x)?;
        let (n, k) = w.dims();
        let m = x.rows();
        if x.cols() != k {
            return Err(Error::Shape { op, what: "x", expected: format!("(.., {k}) to match the weight's in_features"), got: x.shape().to_vec() });
        }
        if let Weight::Dense(t) = w {
            expect_dtype(op, "weight", t, x.dtype())?;
        }
        let dummy = self.gpu.dummy.clone();
        let bias_buf = match bias {
            Some(b) => {
                expect_dtype(op, "bias", b, x.dtype())?;
                expect_len(op, "bias", b, n)?;
                b.single(self.gpu, op, "bias")?
            }
            None => dummy.clone(),
        };
        let x_buf = x.single(self.gpu, op, "x")?;
        let mut shape = x.shape().to_vec();
        if let Some(last) = shape.last_mut() {
            *last = n;
        }
        let residual_buf = match residual {
            Some(r) => {
                expect_dtype(op, "residual", r, x.dtype())?;
                if r.shape() != shape.as_slice() {
                    return Err(Error::Shape { op, what: "residual", expected: format!("{shape:?}, the output's shape"), got: r.shape().to_vec() });
                }
                r.single(self.gpu, op, "residual")?
            }
            None => dummy,
        };
        let y = self.alloc(op, &shape, x.dtype())?;
        let y_buf = y.single(self.gpu, op, "output")?;
        let kernel = if kind == Product::Matmul { Kernel::Matmul(w.kind()) } else { Kernel::Matvec(w.kind()) };
        let layout = if w.kind() == WeightKind::Dense { DENSE } else { QUANT };
        // Input rows per matvec workgroup: the next power of two up to MAX_BATCH (few pipelines).
        let batch = m.clamp(1, MATVEC_MAX_ROWS).next_power_of_two();
        let variant = if kind == Product::Matmul { [0, 0] } else { [batch as u32, 0] };
        for (rows, weight_buffers) in w.chunk_bindings() {
            let params = ProductParams {
                m: u32_of(op, "x", m)?,
                n: u32_of(op, "weight", n)?,
                k: u32_of(op, "weight", k)?,
                n0: u32_of(op, "weight", rows.start)?,
                rows: u32_of(op, "weight", rows.len())?,
                has_bias: bias.is_some() as u32,
                has_residual: residual.is_some() as u32,
            };
            let mut buffers = vec![(1, x_buf.clone()), (3, bias_buf.clone()), (4, y_buf.clone()), (6, residual_buf.clone())];
            buffers.extend(weight_buffers);
            let workgroups = match kind {
                Product::Matmul => [rows.len().div_ceil(TILE as usize) as u32, m.div_ceil(TILE as usize) as u32, 1],
                Product::Matvec => {
                    let [gx, gy, _] = grid(rows.len().div_ceil(MATVEC_ROWS as usize));
                    [gx, gy, u32_of(op, "x", m.div_ceil(batch))?]
                }
            };
            self.push(Dispatch { kernel, entry: op, elem, layout, variant, params: &params, buffers, workgroups });
        }
        Ok(y)
    }
}
