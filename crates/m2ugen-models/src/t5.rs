//! T5's encoder (Raffel et al. 2020, arXiv 1910.10683; as transformers' `modeling_t5.py`
//! computes it, with Hugging Face `T5EncoderModel` names under a prefix: `musicgen.text_encoder` in
//! a converted MusicGen). The shared embedding, pre-norm layers of self-attention and a
//! feed-forward (`relu`, T5; `gated-gelu`, T5 v1.1 and Flan-T5), T5's RMS-style norm (no mean,
//! no bias), and the final norm. Attention is unscaled and biased by learned relative-position
//! buckets, computed once by the first layer and shared by all (T5's rule), plus the padding
//! mask. Several prompts of one padded length go through at once.

use crate::layers::{Linear, Mlp, MultiHeadAttention, RmsNorm};
use crate::{Error, Result, Store};
use m2ugen_core::config::T5Config;
use m2ugen_core::DType;
use m2ugen_gpu::{Attention, Bias, Gpu, GpuTensor, HeadShape, Heads, Recorder, Unary};

/// Added to the scores of padding keys (the attention kernels take a large negative number, not
/// -inf).
pub const MASKED: f32 = -1e30;

enum FeedForward {
    /// `wo(relu(wi x))`.
    Relu(Mlp),
    /// `wo(gelu_tanh(wi_0 x) * wi_1 x)`.
    GatedGelu { wi_0: Linear, wi_1: Linear, wo: Linear },
}

struct Layer {
    attention_norm: RmsNorm,
    attention: MultiHeadAttention,
    ffn_norm: RmsNorm,
    ffn: FeedForward,
}

/// T5's encoder, loaded.
pub struct T5Encoder {
    config: T5Config,
    embed: GpuTensor,
    layers: Vec<Layer>,
    final_norm: RmsNorm,
    /// The first layer's relative-attention bias, `(buckets, heads)`, kept on the CPU.
    relative_bias: Vec<f32>,
}

/// T5's bucket of a relative position `key - query` (bidirectional: half the buckets for keys
/// after the query), exact up to `max_exact = buckets / 4` and logarithmic up to
/// `max_distance`, as `T5Attention._relative_position_bucket` computes it (in f32, truncated).
pub fn relative_position_bucket(relative: i64, num_buckets: usize, max_distance: usize) -> usize {
    let half = num_buckets / 2;
    let mut bucket = if relative > 0 { half } else { 0 };
    let distance = relative.unsigned_abs() as usize;
    let max_exact = half / 2;
    if distance < max_exact {
        return bucket + distance;
    }
    let ratio = ((distance as f32 / max_exact as f32).ln() / (max_distance as f32 / max_exact as f32).ln()) * (half - max_exact) as f32;
    bucket += (max_exact + ratio as usize).min(half - 1);
    bucket
}

impl T5Encoder {
    /// Loads the `{prefix}.*` tensors (`shared.weight`, `encoder.block.N.layer.{0,1}.*`,
    /// `encoder.final_layer_norm.weight`) with `config`.
    pub fn load(gpu: &Gpu, store: &mut Store, prefix: &str, config: &T5Config) -> Result<T5Encoder> {
        let c = config;
        let (d, inner) = (c.d_model, c.num_heads * c.d_kv);
        let gated = match c.feed_forward_proj.as_str() {
            "relu" => false,
            "gated-gelu" => true,
            other => return Err(Error::Config { field: "t5.feed_forward_proj".into(), problem: format!("'{other}' is neither 'relu' nor 'gated-gelu'") }),
        };
        if c.num_layers == 0 || c.num_heads == 0 || c.relative_attention_num_buckets < 4 {
            return Err(Error::Config { field: "t5".into(), problem: format!("{} layers, {} heads and {} buckets: each must be positive (buckets at least 4)", c.num_layers, c.num_heads, c.relative_attention_num_buckets) });
        }
        let embed = store.tensor(&format!("{prefix}.shared.weight"), &[c.vocab_size, d])?;
        let bias_name = format!("{prefix}.encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight");
        let relative_bias = store.values(&bias_name, &[c.relative_attention_num_buckets, c.num_heads])?;
        store.remove(&bias_name);
        let eps = c.layer_norm_epsilon;
        let shape = HeadShape { heads: c.num_heads, kv_heads: c.num_heads, head_dim: c.d_kv };
        let layers = (0..c.num_layers)
            .map(|i| {
                let b = format!("{prefix}.encoder.block.{i}.layer");
                let a = format!("{b}.0.SelfAttention");
                let names = [format!("{a}.q"), format!("{a}.k"), format!("{a}.v"), format!("{a}.o")];
                let mut attention = MultiHeadAttention::load_separate(gpu, store, [&names[0], &names[1], &names[2], &names[3]], d, shape, false)?;
                attention.scale = Some(1.0);
                let f = format!("{b}.1.DenseReluDense");
                let ffn = if gated {
                    FeedForward::GatedGelu { wi_0: Linear::load(store, &format!("{f}.wi_0"), c.d_ff, d, false)?, wi_1: Linear::load(store, &format!("{f}.wi_1"), c.d_ff, d, false)?, wo: Linear::load(store, &format!("{f}.wo"), d, c.d_ff, false)? }
                } else {
                    FeedForward::Relu(Mlp::load(store, &format!("{f}.wi"), &format!("{f}.wo"), d, c.d_ff, Unary::Relu, false)?)
                };
                Ok(Layer { attention_norm: RmsNorm::load(store, &format!("{b}.0.layer_norm"), d, eps)?, attention, ffn_norm: RmsNorm::load(store, &format!("{b}.1.layer_norm"), d, eps)?, ffn })
            })
            .collect::<Result<Vec<_>>>()?;
        debug_assert_eq!(inner, shape.heads * shape.head_dim);
        Ok(T5Encoder { config: config.clone(), embed, layers, final_norm: RmsNorm::load(store, &format!("{prefix}.encoder.final_layer_norm"), d, eps)?, relative_bias })
    }

    /// Every tensor [`T5Encoder::load`] takes under `prefix`, with its shape.
    pub fn tensors(prefix: &str, c: &T5Config) -> Vec<(String, Vec<usize>)> {
        let (d, inner) = (c.d_model, c.num_heads * c.d_kv);
        let mut t = vec![(format!("{prefix}.shared.weight"), vec![c.vocab_size, d]), (format!("{prefix}.encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"), vec![c.relative_attention_num_buckets, c.num_heads])];
        for i in 0..c.num_layers {
            let b = format!("{prefix}.encoder.block.{i}.layer");
            for p in ["q", "k", "v"] {
                t.push((format!("{b}.0.SelfAttention.{p}.weight"), vec![inner, d]));
            }
            t.push((format!("{b}.0.SelfAttention.o.weight"), vec![d, inner]));
            t.push((format!("{b}.0.layer_norm.weight"), vec![d]));
            t.push((format!("{b}.1.layer_norm.weight"), vec![d]));
            if c.feed_forward_proj == "gated-gelu" {
                t.push((format!("{b}.1.DenseReluDense.wi_0.weight"), vec![c.d_ff, d]));
                t.push((format!("{b}.1.DenseReluDense.wi_1.weight"), vec![c.d_ff, d]));
            } else {
                t.push((format!("{b}.1.DenseReluDense.wi.weight"), vec![c.d_ff, d]));
            }
            t.push((format!("{b}.1.DenseReluDense.wo.weight"), vec![d, c.d_ff]));
        }
        t.push((format!("{prefix}.encoder.final_layer_norm.weight"), vec![d]));
        t
    }

    /// The configuration.
    pub fn config(&self) -> &T5Config {
        &self.config
    }

    /// The additive attention bias for `batch` prompts of `len` tokens, `(batch, heads, len,
    /// len)`: the relative-position bias, plus [`MASKED`] on padding keys (`mask[b * len + j]`
    /// false).
    pub fn attention_bias(&self, batch: usize, len: usize, mask: &[bool]) -> Vec<f32> {
        let c = &self.config;
        let heads = c.num_heads;
        let buckets: Vec<usize> = (0..2 * len).map(|i| relative_position_bucket(i as i64 - len as i64, c.relative_attention_num_buckets, c.relative_attention_max_distance)).collect();
        let mut bias = Vec::with_capacity(batch * heads * len * len);
        for b in 0..batch {
            for h in 0..heads {
                for q in 0..len {
                    for k in 0..len {
                        let masked = !mask.get(b * len + k).copied().unwrap_or(false);
                        bias.push(self.relative_bias[buckets[k + len - q] * heads + h] + if masked { MASKED } else { 0.0 });
                    }
                }
            }
        }
        bias
    }

    /// The last hidden state `(batch * len, d_model)` of `batch` prompts of `len` token ids each
    /// (row-major), `mask` saying which are real tokens (false: padding, which no token attends
    /// to; its own rows are computed all the same, as T5 does).
    pub fn forward(&self, rec: &mut Recorder, ids: &[u32], mask: &[bool], batch: usize, len: usize) -> Result<GpuTensor> {
        let c = &self.config;
        if batch == 0 || len == 0 || ids.len() != batch * len || mask.len() != batch * len {
            return Err(Error::Request(format!("t5: {} ids and {} mask values for {batch} prompts of {len} tokens", ids.len(), mask.len())));
        }
        if let Some(&bad) = ids.iter().find(|&&i| i as usize >= c.vocab_size) {
            return Err(Error::Request(format!("t5: token id {bad} is outside the vocabulary of {}", c.vocab_size)));
        }
        let index = rec.upload_u32("t5 ids", &[ids.len()], ids)?;
        let mut h = rec.gather_rows(&self.embed, &index)?;
        let bias = rec.upload("t5 attention bias", &[batch * c.num_heads * len * len], DType::F32, &self.attention_bias(batch, len, mask))?;
        let bias = Bias { tensor: &bias, per_item: c.num_heads * len * len, per_head: len * len, per_row: len };
        let inner = c.num_heads * c.d_kv;
        for layer in &self.layers {
            let n = layer.attention_norm.forward(rec, &h)?;
            let q = layer.attention.q.forward(rec, &n)?;
            let kv = layer.attention.keys(rec, &n)?;
            let a = Attention::new(Heads::of(&q), Heads { tensor: &kv, offset: 0 }, Heads { tensor: &kv, offset: inner }, layer.attention.shape, 0..len).batch(batch, len).scale(1.0).bias(bias);
            let a = rec.attention(&a)?;
            h = layer.attention.out.forward_residual(rec, &a, Some(&h))?;
            let n = layer.ffn_norm.forward(rec, &h)?;
            h = match &layer.ffn {
                FeedForward::Relu(mlp) => mlp.forward(rec, &n, Some(&h))?,
                FeedForward::GatedGelu { wi_0, wi_1, wo } => {
                    let g = wi_0.forward(rec, &n)?;
                    let g = rec.unary(Unary::GeluTanh, &g)?;
                    let u = wi_1.forward(rec, &n)?;
                    let gu = rec.mul(&g, &u)?;
                    wo.forward_residual(rec, &gu, Some(&h))?
                }
            };
        }
        self.final_norm.forward(rec, &h)
    }

    /// Multiply-adds ×2 of one prompt of `len` tokens.
    pub fn flops(c: &T5Config, len: usize) -> f64 {
        let (t, d, inner, ff) = (len as f64, c.d_model as f64, (c.num_heads * c.d_kv) as f64, c.d_ff as f64);
        let ffn = if c.feed_forward_proj == "gated-gelu" { 6.0 } else { 4.0 };
        c.num_layers as f64 * (8.0 * t * d * inner + 4.0 * t * t * inner + ffn * t * d * ff)
    }
}

#[cfg(test)]
mod tests {
    use super::relative_position_bucket as bucket;

    #[test]
    fn buckets_follow_t5s_table() {
        // 32 buckets, distance 128: 16 per direction, exact below 8, then log-spaced to 128.
        assert_eq!(bucket(0, 32, 128), 0);
        assert_eq!(bucket(-1, 32, 128), 1);
        assert_eq!(bucket(1, 32, 128), 17);
        assert_eq!(bucket(-7, 32, 128), 7);
        // 8 + floor(ln(8/8) / ln(16) * 8) = 8.
        assert_eq!(bucket(-8, 32, 128), 8);
        assert_eq!(bucket(8, 32, 128), 24);
        // 8 + floor(ln(20/8) / ln(16) * 8) = 8 + floor(2.64) = 10.
        assert_eq!(bucket(-20, 32, 128), 10);
        // 16 + 8 + floor(ln(50/8) / ln(16) * 8) = 16 + 8 + floor(5.29) = 29.
        assert_eq!(bucket(50, 32, 128), 29);
        // Beyond the distance: the last bucket of the direction.
        assert_eq!(bucket(-128, 32, 128), 15);
        assert_eq!(bucket(1000, 32, 128), 31);
    }
}
