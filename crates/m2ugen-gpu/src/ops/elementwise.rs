use super::{elem_of, expect_dtype};
use crate::pipeline::Slot::{Read, Uniform, Write};
use crate::pipeline::Layout;
use crate::recorder::grid;
use crate::registry::Kernel;
use crate::{Error, GpuTensor, Recorder, Result};

const BINARY: Layout = &[(0, Uniform), (1, Read), (2, Read), (3, Write)];
const UNARY: Layout = &[(0, Uniform), (1, Read), (3, Write)];

/// The one-input element-wise ops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unary {
    /// `x * sigmoid(x)`.
    Silu,
    /// Exact (erf) GELU.
    Gelu,
    /// ELU, α = 1.
    Elu,
    /// tanh.
    Tanh,
    /// `max(x, 0)`.
    Relu,
}

impl Unary {
    /// Every unary op.
    pub const ALL: [Unary; 5] = [Unary::Silu, Unary::Gelu, Unary::Elu, Unary::Tanh, Unary::Relu];

    fn entry(self) -> &'static str {
        match self {
            Unary::Silu => "silu",
            Unary::Gelu => "gelu",
            Unary::Elu => "elu",
            Unary::Tanh => "tanh_op",
            Unary::Relu => "relu",
        }
    }
}

impl Recorder<'_> {
    /// `a + b`; `b` is either `a`'s shape or a shorter run repeated along `a` (a bias row),
    /// in which case `a`'s row length must be a multiple of it.
    pub fn add(&mut self, a: &GpuTensor, b: &GpuTensor) -> Result<GpuTensor> {
        self.binary("add", a, b)
    }

    /// `a - b`, broadcast as in [`Recorder::add`].
    pub fn sub(&mut self, a: &GpuTensor, b: &GpuTensor) -> Result<GpuTensor> {
        self.binary("sub", a, b)
    }

    /// `a * b`, broadcast as in [`Recorder::add`].
    pub fn mul(&mut self, a: &GpuTensor, b: &GpuTensor) -> Result<GpuTensor> {
        self.binary("mul", a, b)
    }

    fn binary(&mut self, op: &'static str, a: &GpuTensor, b: &GpuTensor) -> Result<GpuTensor> {
        let elem = elem_of(self.gpu, op, "a", a)?;
        expect_dtype(op, "b", b, a.dtype())?;
        let same = b.shape() == a.shape();
        let repeated = b.numel() > 0 && a.cols() % b.numel() == 0;
        if !same && !repeated {
            return Err(Error::Shape { op, what: "b", expected: format!("{:?} or a row dividing {}", a.shape(), a.cols()), got: b.shape().to_vec() });
        }
        let out = self.gpu.zeros(op, a.shape(), a.dtype())?;
        let cols = a.cols();
        let single_b = if same { None } else { Some(b.single(self.gpu, op, "b")?) };
        for (i, (ca, co)) in a.chunks().iter().zip(out.chunks()).enumerate() {
            let n = ca.rows.len() * cols;
            let (b_buf, b_len) = match &single_b {
                Some(buf) => (buf.clone(), b.numel()),
                None => (b.chunks()[i].buffer.clone(), n.max(1)),
            };
            let buffers = vec![(1, ca.buffer.clone()), (2, b_buf), (3, co.buffer.clone())];
            self.push(Kernel::Elementwise, op, elem, BINARY, &[n as u32, b_len as u32], buffers, grid(n.div_ceil(256)));
        }
        Ok(out)
    }

    /// A one-input element-wise op.
    pub fn unary(&mut self, op: Unary, x: &GpuTensor) -> Result<GpuTensor> {
        let elem = elem_of(self.gpu, op.entry(), "x", x)?;
        let out = self.gpu.zeros(op.entry(), x.shape(), x.dtype())?;
        for (cx, co) in x.chunks().iter().zip(out.chunks()) {
            let n = cx.rows.len() * x.cols();
            let buffers = vec![(1, cx.buffer.clone()), (3, co.buffer.clone())];
            self.push(Kernel::Elementwise, op.entry(), elem, UNARY, &[n as u32, 1], buffers, grid(n.div_ceil(256)));
        }
        Ok(out)
    }
}
