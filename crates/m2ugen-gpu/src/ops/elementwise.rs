use super::{elem_of, expect_dtype, u32_of};
use crate::params::ElementwiseParams;
use crate::pipeline::Layout;
use crate::pipeline::Slot::{Read, Uniform, Write};
use crate::recorder::{grid, Dispatch};
use crate::registry::{sizes::GROUP, Kernel};
use crate::{Error, GpuTensor, Recorder, Result};

const BINARY: Layout = &[(0, Uniform), (1, Read), (2, Read), (3, Write)];
const UNARY: Layout = &[(0, Uniform), (1, Read), (3, Write)];

/// The one-input element-wise ops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unary {
    /// `x * sigmoid(x)`.
    Silu,
    /// `1 / (1 + exp(-x))`.
    Sigmoid,
    /// Exact (erf) GELU.
    Gelu,
    /// GELU in its tanh form (`gelu_new`, `gelu_fast`).
    GeluTanh,
    /// ELU, α = 1.
    Elu,
    /// tanh.
    Tanh,
    /// `max(x, 0)`.
    Relu,
}

impl Unary {
    /// Every unary op.
    pub const ALL: [Unary; 7] = [Unary::Silu, Unary::Sigmoid, Unary::Gelu, Unary::GeluTanh, Unary::Elu, Unary::Tanh, Unary::Relu];

    fn entry(self) -> &'static str {
        match self {
            Unary::Silu => "silu",
            Unary::Sigmoid => "sigmoid",
            Unary::Gelu => "gelu",
            Unary::GeluTanh => "gelu_tanh",
            Unary::Elu => "elu",
            Unary::Tanh => "tanh_op",
            Unary::Relu => "relu",
        }
    }

    /// The op for a configuration's activation.
    pub fn of(a: m2ugen_core::config::Activation) -> Unary {
        use m2ugen_core::config::Activation;
        match a {
            Activation::Gelu => Unary::Gelu,
            Activation::GeluTanh => Unary::GeluTanh,
            Activation::Relu => Unary::Relu,
            Activation::Silu => Unary::Silu,
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
        // Same shape: chunk i of b pairs with chunk i of a (the same row plan).
        let single_b = if same { None } else { Some(b.single(self.gpu, op, "b")?) };
        let out = self.alloc(op, a.shape(), a.dtype())?;
        let cols = a.cols();
        for (i, (ca, co)) in a.chunks().iter().zip(out.chunks()).enumerate() {
            let n = ca.rows.len() * cols;
            let (b_buf, b_len) = match &single_b {
                Some(buf) => (buf.clone(), b.numel()),
                None => (b.chunks()[i].raw(), n.max(1)),
            };
            let params = ElementwiseParams { n: u32_of(op, "a", n)?, b_len: u32_of(op, "b", b_len)?, slope: 0.0 };
            let buffers = vec![(1, ca.raw()), (2, b_buf), (3, co.raw())];
            self.push(Dispatch { kernel: Kernel::Elementwise, entry: op, elem, layout: BINARY, variant: [0; 2], params: &params, buffers, workgroups: grid(n.div_ceil(GROUP as usize)) });
        }
        Ok(out)
    }

    /// `silu(gate) * up` of the two halves `[gate | up]` of each row of `x` `(.., 2h)`: `(.., h)`.
    pub fn swiglu(&mut self, x: &GpuTensor) -> Result<GpuTensor> {
        let op = "swiglu";
        let elem = elem_of(self.gpu, op, "x", x)?;
        let h = x.cols() / 2;
        if x.cols() % 2 != 0 || h == 0 {
            return Err(Error::Shape { op, what: "x", expected: "rows of two equal halves".into(), got: x.shape().to_vec() });
        }
        let mut shape = x.shape().to_vec();
        if let Some(last) = shape.last_mut() {
            *last = h;
        }
        let out = self.alloc(op, &shape, x.dtype())?;
        let n = out.numel();
        let params = ElementwiseParams { n: u32_of(op, "x", n)?, b_len: u32_of(op, "x", h)?, slope: 0.0 };
        let buffers = vec![(1, x.single(self.gpu, op, "x")?), (3, out.single(self.gpu, op, "output")?)];
        self.push(Dispatch { kernel: Kernel::Elementwise, entry: op, elem, layout: UNARY, variant: [0; 2], params: &params, buffers, workgroups: grid(n.div_ceil(GROUP as usize)) });
        Ok(out)
    }

    /// A one-input element-wise op.
    pub fn unary(&mut self, op: Unary, x: &GpuTensor) -> Result<GpuTensor> {
        self.one_input(op.entry(), x, 0.0)
    }

    /// Leaky ReLU: `x` above zero, `slope · x` otherwise (HiFi-GAN's slope 0.1; PyTorch's
    /// default 0.01).
    pub fn leaky_relu(&mut self, x: &GpuTensor, slope: f32) -> Result<GpuTensor> {
        let op = "leaky_relu";
        if !slope.is_finite() {
            return Err(Error::Setting { op, setting: "slope", value: slope.to_string(), range: "a finite number" });
        }
        self.one_input(op, x, slope)
    }

    /// One launch per chunk of a one-input op; `slope` is what it reads of the parameters.
    fn one_input(&mut self, op: &'static str, x: &GpuTensor, slope: f32) -> Result<GpuTensor> {
        let elem = elem_of(self.gpu, op, "x", x)?;
        let out = self.alloc(op, x.shape(), x.dtype())?;
        for (cx, co) in x.chunks().iter().zip(out.chunks()) {
            let n = cx.rows.len() * x.cols();
            let params = ElementwiseParams { n: u32_of(op, "x", n)?, b_len: 1, slope };
            let buffers = vec![(1, cx.raw()), (3, co.raw())];
            self.push(Dispatch { kernel: Kernel::Elementwise, entry: op, elem, layout: UNARY, variant: [0; 2], params: &params, buffers, workgroups: grid(n.div_ceil(GROUP as usize)) });
        }
        Ok(out)
    }
}
