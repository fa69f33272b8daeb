//! Blocks the models share: linear layers, RMSNorm and LayerNorm, the SwiGLU feed-forward of
//! LLaMA and the M2UGen adapters, the GELU/ReLU MLP of the transformers around them, and
//! multi-head attention (self and cross).
//!
//! Loaders take tensors by name from a [`Store`]; the ones that fuse several stored tensors into
//! one (q/k/v, the SwiGLU gate and up projections) take them out of the store, so the parts'
//! memory goes once the fused copy exists.

use crate::{Result, Store};
use m2ugen_gpu::{Attention, Gpu, GpuTensor, HeadShape, Heads, Recorder, StridedView, Unary, Weight};
use std::ops::Range;

/// A linear layer, `y = x · Wᵀ + b`, for any weight type.
pub struct Linear {
    /// `(out_features, in_features)`.
    pub weight: Weight,
    /// `(out_features)`, if any.
    pub bias: Option<GpuTensor>,
}

impl Linear {
    /// Applies the layer to `x` of shape `(.., in_features)`.
    pub fn forward(&self, rec: &mut Recorder, x: &GpuTensor) -> Result<GpuTensor> {
        Ok(rec.linear(x, &self.weight, self.bias.as_ref())?)
    }

    /// Applies the layer to `x`, adding `residual` (the output's shape) in the same launch.
    pub fn forward_residual(&self, rec: &mut Recorder, x: &GpuTensor, residual: Option<&GpuTensor>) -> Result<GpuTensor> {
        Ok(rec.linear_residual(x, &self.weight, self.bias.as_ref(), residual)?)
    }

    /// `{name}.weight` `(out, in)` and, with `bias`, `{name}.bias` from the store.
    pub fn load(store: &Store, name: &str, out_features: usize, in_features: usize, bias: bool) -> Result<Linear> {
        let weight = store.weight(&format!("{name}.weight"), out_features, in_features)?;
        let bias = if bias { Some(store.tensor(&format!("{name}.bias"), &[out_features])?) } else { None };
        Ok(Linear { weight, bias })
    }

    /// Several stored layers over the same input as one (their outputs side by side), taken out
    /// of the store: `(name, out_features)` each, biases where stored (zeros for a part without
    /// one, if any part has one).
    pub fn load_fused(gpu: &Gpu, store: &mut Store, parts: &[(&str, usize)], in_features: usize) -> Result<Linear> {
        let weights = parts.iter().map(|(name, out)| store.weight(&format!("{name}.weight"), *out, in_features)).collect::<Result<Vec<_>>>()?;
        let refs: Vec<&Weight> = weights.iter().collect();
        let what = parts.iter().map(|(n, _)| *n).collect::<Vec<_>>().join("|");
        let weight = Weight::concat_rows(gpu, &what, &refs)?;
        let biases = parts.iter().map(|(name, out)| if store.has(&format!("{name}.bias")) { store.tensor(&format!("{name}.bias"), &[*out]).map(Some) } else { Ok(None) }).collect::<Result<Vec<_>>>()?;
        let bias = if biases.iter().any(Option::is_some) {
            let pieces: Vec<VectorPart> = biases.iter().zip(parts).map(|(b, (_, out))| b.as_ref().map_or(VectorPart::Zeros(*out), |t| VectorPart::Slice(t, 0..*out))).collect();
            Some(join_vectors(gpu, &format!("{what} bias"), store.dtype(), &pieces)?)
        } else {
            None
        };
        for (name, _) in parts {
            store.remove(&format!("{name}.weight"));
            store.remove(&format!("{name}.bias"));
        }
        Ok(Linear { weight, bias })
    }
}

/// A piece of a vector being joined: a range of a stored vector, or zeros.
pub enum VectorPart<'a> {
    /// Elements `range` of the tensor.
    Slice(&'a GpuTensor, Range<usize>),
    /// This many zeros.
    Zeros(usize),
}

/// `parts` one after the other as one vector of its own (fused biases), copied on the GPU.
pub fn join_vectors(gpu: &Gpu, what: &str, dtype: m2ugen_core::DType, parts: &[VectorPart]) -> Result<GpuTensor> {
    let len: usize = parts.iter().map(|p| match p {
        VectorPart::Slice(_, r) => r.len(),
        VectorPart::Zeros(n) => *n,
    }).sum();
    let out = gpu.zeros(what, &[len], dtype)?;
    let mut rec = Recorder::new(gpu);
    let mut at = 0;
    for p in parts {
        match p {
            VectorPart::Slice(t, r) => {
                let t = t.reshape(&[t.numel()])?;
                rec.copy_strided(&t, StridedView { offset: r.start, strides: [0, 0, 0, 1] }, &out, StridedView { offset: at, strides: [0, 0, 0, 1] }, &[r.len()])?;
                at += r.len();
            }
            VectorPart::Zeros(n) => at += n,
        }
    }
    rec.submit()?;
    Ok(out)
}

/// RMSNorm with a learned scale (LLaMA, T5, the M2UGen adapters).
pub struct RmsNorm {
    /// `(dim)`.
    pub weight: GpuTensor,
    /// Added to the mean square.
    pub eps: f32,
}

impl RmsNorm {
    /// Normalises each row of `x`.
    pub fn forward(&self, rec: &mut Recorder, x: &GpuTensor) -> Result<GpuTensor> {
        Ok(rec.rms_norm(x, &self.weight, self.eps)?)
    }

    /// `{name}.weight` `(dim)` from the store.
    pub fn load(store: &Store, name: &str, dim: usize, eps: f32) -> Result<RmsNorm> {
        Ok(RmsNorm { weight: store.tensor(&format!("{name}.weight"), &[dim])?, eps })
    }
}

/// LayerNorm with weight and bias (MusicGen, ViT, MERT, the output projector).
pub struct LayerNorm {
    /// `(dim)`.
    pub weight: GpuTensor,
    /// `(dim)`.
    pub bias: GpuTensor,
    /// Added to the variance.
    pub eps: f32,
}

impl LayerNorm {
    /// Normalises each row of `x`.
    pub fn forward(&self, rec: &mut Recorder, x: &GpuTensor) -> Result<GpuTensor> {
        Ok(rec.layer_norm(x, &self.weight, &self.bias, self.eps)?)
    }

    /// `norm(x + residual)`: a post-norm step.
    pub fn add_norm(&self, rec: &mut Recorder, x: &GpuTensor, residual: &GpuTensor) -> Result<GpuTensor> {
        let sum = rec.add(x, residual)?;
        self.forward(rec, &sum)
    }

    /// `{name}.weight` and `{name}.bias` `(dim)` from the store.
    pub fn load(store: &Store, name: &str, dim: usize, eps: f32) -> Result<Self> {
        Ok(LayerNorm { weight: store.tensor(&format!("{name}.weight"), &[dim])?, bias: store.tensor(&format!("{name}.bias"), &[dim])?, eps })
    }
}

/// The SwiGLU feed-forward of LLaMA and of M2UGen's adapter blocks: `w2(silu(w1 x) · w3 x)`,
/// with `w1` and `w3` fused into one product (`w13`) and the gate (silu and product) one launch.
pub struct FeedForward {
    /// Gate and up projections side by side, `dim -> 2 hidden`.
    pub w13: Linear,
    /// Down projection, `hidden -> dim`.
    pub w2: Linear,
}

impl FeedForward {
    /// Applies the block to `x` of shape `(.., dim)`, adding `residual` when given: three
    /// launches (the fused gate|up product, the gate, the down projection with the residual).
    pub fn forward(&self, rec: &mut Recorder, x: &GpuTensor, residual: Option<&GpuTensor>) -> Result<GpuTensor> {
        let gate_up = self.w13.forward(rec, x)?;
        let h = rec.swiglu(&gate_up)?;
        self.w2.forward_residual(rec, &h, residual)
    }

    /// `{name}.w1|w2|w3` from the store (w1 and w3 taken out and fused), with biases when
    /// `bias`.
    pub fn load(gpu: &Gpu, store: &mut Store, name: &str, dim: usize, hidden: usize, bias: bool) -> Result<FeedForward> {
        let w2 = Linear::load(store, &format!("{name}.w2"), dim, hidden, bias)?;
        let w13 = Linear::load_fused(gpu, store, &[(&format!("{name}.w1"), hidden), (&format!("{name}.w3"), hidden)], dim)?;
        Ok(FeedForward { w13, w2 })
    }
}

/// The two-layer MLP of transformer blocks: `fc2(act(fc1 x))`, with GELU or ReLU.
pub struct Mlp {
    /// `dim -> hidden`.
    pub fc1: Linear,
    /// `hidden -> dim`.
    pub fc2: Linear,
    /// The activation between them.
    pub act: Unary,
}

impl Mlp {
    /// Applies the block to `x` `(.., dim)`, adding `residual` when given.
    pub fn forward(&self, rec: &mut Recorder, x: &GpuTensor, residual: Option<&GpuTensor>) -> Result<GpuTensor> {
        let h = self.fc1.forward(rec, x)?;
        let h = rec.unary(self.act, &h)?;
        self.fc2.forward_residual(rec, &h, residual)
    }

    /// `fc1` and `fc2` by name, with biases when `bias`.
    pub fn load(store: &Store, fc1: &str, fc2: &str, dim: usize, hidden: usize, act: Unary, bias: bool) -> Result<Mlp> {
        Ok(Mlp { fc1: Linear::load(store, fc1, hidden, dim, bias)?, fc2: Linear::load(store, fc2, dim, hidden, bias)?, act })
    }
}

/// Multi-head attention with its projections: queries from one sequence, keys and values from
/// the same (self-attention) or another (cross-attention, whose keys and values are computed
/// once with [`MultiHeadAttention::keys`] and kept).
pub struct MultiHeadAttention {
    /// Query projection.
    pub q: Linear,
    /// Key and value projections side by side.
    pub kv: Linear,
    /// Output projection.
    pub out: Linear,
    /// Heads.
    pub shape: HeadShape,
    /// Score scale (None: 1/√head_dim).
    pub scale: Option<f32>,
}

impl MultiHeadAttention {
    /// PyTorch's `nn.MultiheadAttention` at `name`: `in_proj_weight` `(3 dim, dim)` and
    /// `in_proj_bias`, then `out_proj`.
    pub fn load_pytorch(gpu: &Gpu, store: &Store, name: &str, dim: usize, heads: usize) -> Result<Self> {
        let w = store.weight(&format!("{name}.in_proj_weight"), 3 * dim, dim)?;
        let b = store.tensor(&format!("{name}.in_proj_bias"), &[3 * dim])?;
        let q = Linear { weight: Weight::gather_rows(gpu, name, &[(&w, 0..dim)])?, bias: Some(join_vectors(gpu, name, store.dtype(), &[VectorPart::Slice(&b, 0..dim)])?) };
        let kv = Linear { weight: Weight::gather_rows(gpu, name, &[(&w, dim..3 * dim)])?, bias: Some(join_vectors(gpu, name, store.dtype(), &[VectorPart::Slice(&b, dim..3 * dim)])?) };
        let out = Linear::load(store, &format!("{name}.out_proj"), dim, dim, true)?;
        Ok(MultiHeadAttention { q, kv, out, shape: HeadShape { heads, kv_heads: heads, head_dim: dim / heads }, scale: None })
    }

    /// Separate projections by name (`q`, `k`, `v`, `out`), `dim -> heads * head_dim`, with
    /// biases when `bias`; k and v are taken out of the store and fused.
    pub fn load_separate(gpu: &Gpu, store: &mut Store, names: [&str; 4], dim: usize, shape: HeadShape, bias: bool) -> Result<Self> {
        let inner = shape.heads * shape.head_dim;
        let q = Linear::load(store, names[0], inner, dim, bias)?;
        let out = Linear::load(store, names[3], dim, inner, bias)?;
        let kv = Linear::load_fused(gpu, store, &[(names[1], inner), (names[2], inner)], dim)?;
        Ok(MultiHeadAttention { q, kv, out, shape, scale: None })
    }

    /// Keys and values of `memory` `(rows, dim)`, side by side: for cross-attention, computed
    /// once and kept.
    pub fn keys(&self, rec: &mut Recorder, memory: &GpuTensor) -> Result<GpuTensor> {
        self.kv.forward(rec, memory)
    }

    /// Attention of `x` over `kv` (from [`MultiHeadAttention::keys`]), with the output
    /// projection and `residual` added when given.
    pub fn attend(&self, rec: &mut Recorder, x: &GpuTensor, kv: &GpuTensor, residual: Option<&GpuTensor>) -> Result<GpuTensor> {
        let q = self.q.forward(rec, x)?;
        let inner = self.shape.heads * self.shape.head_dim;
        let mut a = Attention::new(Heads::of(&q), Heads { tensor: kv, offset: 0 }, Heads { tensor: kv, offset: inner }, self.shape, 0..kv.rows());
        if let Some(s) = self.scale {
            a = a.scale(s);
        }
        let h = rec.attention(&a)?;
        self.out.forward_residual(rec, &h, residual)
    }

    /// Self-attention of `x` when `memory` is `None`, else cross-attention to `memory`.
    pub fn forward(&self, rec: &mut Recorder, x: &GpuTensor, memory: Option<&GpuTensor>) -> Result<GpuTensor> {
        let kv = self.keys(rec, memory.unwrap_or(x))?;
        self.attend(rec, x, &kv, None)
    }
}
