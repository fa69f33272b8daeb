//! Blocks shared by the models.

use crate::{Result, Store};
use m2ugen_gpu::{GpuTensor, Recorder, Unary, Weight};

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

    /// `{name}.weight` `(out, in)` and, with `bias`, `{name}.bias` from the store.
    pub fn load(store: &Store, name: &str, out_features: usize, in_features: usize, bias: bool) -> Result<Linear> {
        let weight = store.weight(&format!("{name}.weight"), out_features, in_features)?;
        let bias = if bias { Some(store.tensor(&format!("{name}.bias"), &[out_features])?) } else { None };
        Ok(Linear { weight, bias })
    }
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

/// The SwiGLU feed-forward of LLaMA and of M2UGen's adapter blocks: `w2(silu(w1 x) * w3 x)`.
pub struct FeedForward {
    /// Gate projection, `dim -> hidden`.
    pub w1: Linear,
    /// Down projection, `hidden -> dim`.
    pub w2: Linear,
    /// Up projection, `dim -> hidden`.
    pub w3: Linear,
}

impl FeedForward {
    /// Applies the block to `x` of shape `(.., dim)`.
    pub fn forward(&self, rec: &mut Recorder, x: &GpuTensor) -> Result<GpuTensor> {
        let gate = self.w1.forward(rec, x)?;
        let gate = rec.unary(Unary::Silu, &gate)?;
        let up = self.w3.forward(rec, x)?;
        let hidden = rec.mul(&gate, &up)?;
        self.w2.forward(rec, &hidden)
    }

    /// `{name}.w1|w2|w3` from the store, with biases when `bias`.
    pub fn load(store: &Store, name: &str, dim: usize, hidden: usize, bias: bool) -> Result<FeedForward> {
        Ok(FeedForward {
            w1: Linear::load(store, &format!("{name}.w1"), hidden, dim, bias)?,
            w2: Linear::load(store, &format!("{name}.w2"), dim, hidden, bias)?,
            w3: Linear::load(store, &format!("{name}.w3"), hidden, dim, bias)?,
        })
    }
}
