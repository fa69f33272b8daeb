use super::{elem_of, expect_dtype, expect_len, u32_of};
use crate::params::PoolParams;
use crate::pipeline::Layout;
use crate::pipeline::Slot::{Read, Uniform, Write};
use crate::recorder::{grid, Dispatch};
use crate::registry::{sizes, Kernel};
use crate::{Error, GpuTensor, Recorder, Result};

const LAYOUT: Layout = &[(0, Uniform), (1, Read), (2, Read), (3, Read), (4, Write), (5, Read)];

/// The largest number of rows [`Recorder::sum_rows`] pools in one launch.
pub const MAX_POOL_ROWS: usize = sizes::MAX_POOL_ROWS as usize;

impl Recorder<'_> {
    /// Pools the rows of each batch item of `x` `(batch, rows, cols)` (or `(rows, cols)`, one
    /// item): `y[b, c] = bias + scale · Σ_t weight[t] · x[b, t, c]`, shape `(batch, cols)`.
    /// Without `weight` every row counts once (a mean with `scale = 1 / rows`); `bias` is one
    /// value. M2UGen's aggregating `Conv1d(rows, 1, 1)` is `weight` and `bias` with scale 1.
    /// `x` must sit in one binding and have at most [`MAX_POOL_ROWS`] rows per item.
    pub fn sum_rows(&mut self, x: &GpuTensor, weight: Option<&GpuTensor>, bias: Option<&GpuTensor>, scale: f32) -> Result<GpuTensor> {
        self.pool("sum_rows", x, weight, bias, None, scale)
    }

    /// The squared deviations of the rows of each batch item of `x` from `center` `(cols)`,
    /// summed and scaled: `y[b, c] = scale · Σ_t (x[b, t, c] - center[c])²`, shape
    /// `(batch, cols)`. With the mean as center and `scale = 1 / N`, a variance over `N` rows
    /// gathered chunk by chunk (each launch sums in f32; its result is stored in `x`'s dtype).
    /// Limits as [`Recorder::sum_rows`].
    pub fn sum_squared_deviations(&mut self, x: &GpuTensor, center: &GpuTensor, scale: f32) -> Result<GpuTensor> {
        self.pool("sum_squared_deviations", x, None, None, Some(center), scale)
    }

    fn pool(&mut self, op: &'static str, x: &GpuTensor, weight: Option<&GpuTensor>, bias: Option<&GpuTensor>, center: Option<&GpuTensor>, scale: f32) -> Result<GpuTensor> {
        let elem = elem_of(self.gpu, op, "x", x)?;
        let (batch, rows, cols) = match *x.shape() {
            [rows, cols] => (1, rows, cols),
            [batch, rows, cols] => (batch, rows, cols),
            _ => return Err(Error::Shape { op, what: "x", expected: "(batch, rows, cols) or (rows, cols)".into(), got: x.shape().to_vec() }),
        };
        if rows == 0 || rows > MAX_POOL_ROWS {
            return Err(Error::Shape { op, what: "x", expected: format!("1 to {MAX_POOL_ROWS} rows per item"), got: x.shape().to_vec() });
        }
        let mut buffers = vec![(1, x.single(self.gpu, op, "x")?)];
        if let Some(w) = weight {
            expect_dtype(op, "weight", w, x.dtype())?;
            expect_len(op, "weight", w, rows)?;
            buffers.push((2, w.single(self.gpu, op, "weight")?));
        }
        if let Some(b) = bias {
            expect_dtype(op, "bias", b, x.dtype())?;
            expect_len(op, "bias", b, 1)?;
            buffers.push((3, b.single(self.gpu, op, "bias")?));
        }
        if let Some(m) = center {
            expect_dtype(op, "center", m, x.dtype())?;
            expect_len(op, "center", m, cols)?;
            buffers.push((5, m.single(self.gpu, op, "center")?));
        }
        let out = self.alloc(op, &[batch, cols], x.dtype())?;
        buffers.push((4, out.single(self.gpu, op, "output")?));
        let params = PoolParams {
            batch: u32_of(op, "x", batch)?,
            rows: u32_of(op, "x", rows)?,
            cols: u32_of(op, "x", cols)?,
            has_weight: weight.is_some() as u32,
            has_bias: bias.is_some() as u32,
            has_center: center.is_some() as u32,
            scale,
        };
        let n = batch * cols;
        self.push(Dispatch { kernel: Kernel::Pool, entry: "sum_rows", elem, layout: LAYOUT, variant: [0; 2], params: &params, buffers, workgroups: grid(n.div_ceil(sizes::GROUP as usize)) });
        Ok(out)
    }
}
