//! CLAP's text branch (Wu et al. 2023, arXiv 2211.06687; as transformers' `modeling_clap.py`
//! computes `ClapModel.get_text_features`, with Hugging Face `ClapModel` names under a prefix:
//! `audioldm2.clap` in a converted AudioLDM 2). AudioLDM 2 conditions on its one vector per
//! prompt.
//!
//! RoBERTa: word + position + token-type embeddings and a LayerNorm, then post-norm layers
//! (self-attention over the unpadded tokens, its output projection plus the residual, a LayerNorm;
//! an exact-GELU feed-forward plus the residual, a LayerNorm). The pooler takes the first token
//! (`<s>`) through a dense layer and `tanh`; the projection is linear, ReLU, linear; the result is
//! L2-normalised (`F.normalize`, eps 1e-12).
//!
//! Positions are RoBERTa's, from the token ids (not the attention mask): a token that is not the
//! pad id gets `pad_id + 1 + (non-pad tokens before it)`, a pad token `pad_id` itself. Padding
//! keys are masked by the attention mask; padded rows are computed and never read (only the
//! first token is pooled). The audio branch is not here.

use crate::layers::{LayerNorm, Linear, Mlp};
use crate::{Error, Result, Store};
use m2ugen_core::config::audioldm2::ClapConfig;
use m2ugen_core::DType;
use m2ugen_gpu::{Attention, Bias, Gpu, GpuTensor, HeadShape, Heads, Recorder, StridedView, Unary};

/// Added to the scores of padding keys.
pub const MASKED: f32 = -1e30;

/// `F.normalize`'s epsilon, as `get_text_features` calls it.
pub const NORMALIZE_EPS: f32 = 1e-12;

/// CLAP's projection of either branch into the shared space (`text_projection` or
/// `audio_projection`: `linear1`, the activation, `linear2`), then the L2 normalisation
/// `get_text_features` / `get_audio_features` apply.
pub struct ClapProjection {
    linear1: Linear,
    act: Unary,
    linear2: Linear,
    /// Ones, `(projection_dim)`: the L2 norm's per-column scale.
    ones: GpuTensor,
}

impl ClapProjection {
    /// `{name}.linear1` (`hidden` to `dim`) and `{name}.linear2` (`dim` to `dim`), with biases.
    pub fn load(gpu: &Gpu, store: &Store, name: &str, hidden: usize, dim: usize, act: Unary) -> Result<ClapProjection> {
        Ok(ClapProjection {
            linear1: Linear::load(store, &format!("{name}.linear1"), dim, hidden, true)?,
            act,
            linear2: Linear::load(store, &format!("{name}.linear2"), dim, dim, true)?,
            ones: gpu.upload(&format!("{name} normalise"), &[dim], store.dtype(), &vec![1.0; dim])?,
        })
    }

    /// Its tensors `{name}.linear1|2.weight|bias`, with their shapes.
    pub fn tensors(name: &str, hidden: usize, dim: usize) -> Vec<(String, Vec<usize>)> {
        vec![
            (format!("{name}.linear1.weight"), vec![dim, hidden]),
            (format!("{name}.linear1.bias"), vec![dim]),
            (format!("{name}.linear2.weight"), vec![dim, dim]),
            (format!("{name}.linear2.bias"), vec![dim]),
        ]
    }

    /// The normalised embeddings `(rows, dim)` of pooled states `x` `(rows, hidden)`.
    pub fn forward(&self, rec: &mut Recorder, x: &GpuTensor) -> Result<GpuTensor> {
        let x = self.linear1.forward(rec, x)?;
        let x = rec.unary(self.act, &x)?;
        let x = self.linear2.forward(rec, &x)?;
        Ok(rec.l2_norm(&x, &self.ones, NORMALIZE_EPS)?)
    }
}

struct Layer {
    /// query|key|value in one product.
    qkv: Linear,
    /// `attention.output.dense`.
    attention_out: Linear,
    attention_norm: LayerNorm,
    /// `intermediate.dense`, the activation, `output.dense`.
    mlp: Mlp,
    output_norm: LayerNorm,
}

/// CLAP's text encoder with its pooler and projection, loaded.
pub struct ClapText {
    config: ClapConfig,
    word: GpuTensor,
    position: GpuTensor,
    /// Row 0 of the token-type table (the only type a prompt has), `(1, hidden)`.
    token_type: GpuTensor,
    embed_norm: LayerNorm,
    layers: Vec<Layer>,
    pooler: Linear,
    /// `text_projection` and the normalisation.
    projection: ClapProjection,
}

/// RoBERTa's position ids of one prompt's `ids`: `pad + 1 + (non-pad ids so far)` for a non-pad
/// id, `pad` for a pad id (`create_position_ids_from_input_ids`).
pub fn position_ids(ids: &[u32], pad: u32) -> Vec<u32> {
    let mut seen = 0;
    ids.iter()
        .map(|&id| {
            if id == pad {
                pad
            } else {
                seen += 1;
                pad + seen
            }
        })
        .collect()
}

impl ClapText {
    /// Loads the `{prefix}.text_model.*` and `{prefix}.text_projection.*` tensors with `config`
    /// (`text_model.embeddings.position_ids` and `token_type_ids`, buffers of constants, are not
    /// needed, nor the audio branch).
    pub fn load(gpu: &Gpu, store: &mut Store, prefix: &str, config: &ClapConfig) -> Result<ClapText> {
        let t = &config.text_config;
        let (d, ff, p) = (t.hidden_size, t.intermediate_size, t.projection_dim);
        config.check(prefix)?;
        if t.type_vocab_size == 0 {
            return Err(Error::Config { field: format!("{prefix}.text_config.type_vocab_size"), problem: "must be positive".into() });
        }
        let e = format!("{prefix}.text_model.embeddings");
        let token_types = store.tensor(&format!("{e}.token_type_embeddings.weight"), &[t.type_vocab_size, d])?;
        let token_type = if t.type_vocab_size == 1 {
            token_types
        } else {
            // Row 0 into a tensor of its own.
            let kept = gpu.zeros("clap token type 0", &[1, d], store.dtype())?;
            let first = StridedView { offset: 0, strides: [0, 0, 0, 1] };
            let mut rec = Recorder::new(gpu);
            rec.copy_strided(&token_types, first, &kept, first, &[d])?;
            rec.submit()?;
            kept
        };
        let eps = t.layer_norm_eps;
        let layers = (0..t.num_hidden_layers)
            .map(|i| {
                let l = format!("{prefix}.text_model.encoder.layer.{i}");
                let a = format!("{l}.attention.self");
                let parts = [(format!("{a}.query"), d), (format!("{a}.key"), d), (format!("{a}.value"), d)];
                let parts: Vec<(&str, usize)> = parts.iter().map(|(n, o)| (n.as_str(), *o)).collect();
                Ok(Layer {
                    qkv: Linear::load_fused(gpu, store, &parts, d)?,
                    attention_out: Linear::load(store, &format!("{l}.attention.output.dense"), d, d, true)?,
                    attention_norm: LayerNorm::load(store, &format!("{l}.attention.output.LayerNorm"), d, eps)?,
                    mlp: Mlp::load(store, &format!("{l}.intermediate.dense"), &format!("{l}.output.dense"), d, ff, Unary::of(t.hidden_act), true)?,
                    output_norm: LayerNorm::load(store, &format!("{l}.output.LayerNorm"), d, eps)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(ClapText {
            word: store.tensor(&format!("{e}.word_embeddings.weight"), &[t.vocab_size, d])?,
            position: store.tensor(&format!("{e}.position_embeddings.weight"), &[t.max_position_embeddings, d])?,
            token_type,
            embed_norm: LayerNorm::load(store, &format!("{e}.LayerNorm"), d, eps)?,
            layers,
            pooler: Linear::load(store, &format!("{prefix}.text_model.pooler.dense"), d, d, true)?,
            projection: ClapProjection::load(gpu, store, &format!("{prefix}.text_projection"), d, p, Unary::of(t.projection_hidden_act))?,
            config: config.clone(),
        })
    }

    /// Every tensor [`ClapText::load`] takes under `prefix`, with its shape.
    pub fn tensors(prefix: &str, c: &ClapConfig) -> Vec<(String, Vec<usize>)> {
        let t = &c.text_config;
        let (d, ff, p) = (t.hidden_size, t.intermediate_size, t.projection_dim);
        let e = format!("{prefix}.text_model.embeddings");
        let mut v = vec![
            (format!("{e}.word_embeddings.weight"), vec![t.vocab_size, d]),
            (format!("{e}.position_embeddings.weight"), vec![t.max_position_embeddings, d]),
            (format!("{e}.token_type_embeddings.weight"), vec![t.type_vocab_size, d]),
            (format!("{e}.LayerNorm.weight"), vec![d]),
            (format!("{e}.LayerNorm.bias"), vec![d]),
        ];
        let mut linear = |name: String, out: usize, inp: usize| {
            v.push((format!("{name}.weight"), vec![out, inp]));
            v.push((format!("{name}.bias"), vec![out]));
        };
        for i in 0..t.num_hidden_layers {
            let l = format!("{prefix}.text_model.encoder.layer.{i}");
            for n in ["query", "key", "value"] {
                linear(format!("{l}.attention.self.{n}"), d, d);
            }
            linear(format!("{l}.attention.output.dense"), d, d);
            linear(format!("{l}.intermediate.dense"), ff, d);
            linear(format!("{l}.output.dense"), d, ff);
        }
        linear(format!("{prefix}.text_model.pooler.dense"), d, d);
        for i in 0..t.num_hidden_layers {
            let l = format!("{prefix}.text_model.encoder.layer.{i}");
            for n in ["attention.output.LayerNorm", "output.LayerNorm"] {
                v.push((format!("{l}.{n}.weight"), vec![d]));
                v.push((format!("{l}.{n}.bias"), vec![d]));
            }
        }
        v.extend(ClapProjection::tensors(&format!("{prefix}.text_projection"), d, p));
        v
    }

    /// The configuration.
    pub fn config(&self) -> &ClapConfig {
        &self.config
    }

    /// The normalised text embeddings `(batch, projection_dim)` of `batch` prompts of `len`
    /// token ids each (row-major), `mask` saying which are real tokens (false: padding, which no
    /// token attends to).
    pub fn forward(&self, rec: &mut Recorder, ids: &[u32], mask: &[bool], batch: usize, len: usize) -> Result<GpuTensor> {
        let t = &self.config.text_config;
        let d = t.hidden_size;
        if batch == 0 || len == 0 || ids.len() != batch * len || mask.len() != batch * len {
            return Err(Error::Request(format!("clap: {} ids and {} mask values for {batch} prompts of {len} tokens", ids.len(), mask.len())));
        }
        if let Some(&bad) = ids.iter().find(|&&i| i as usize >= t.vocab_size) {
            return Err(Error::Request(format!("clap: token id {bad} is outside the vocabulary of {}", t.vocab_size)));
        }
        let pad = t.pad_token_id as u32;
        let positions: Vec<u32> = ids.chunks(len).flat_map(|row| position_ids(row, pad)).collect();
        if let Some(&far) = positions.iter().max().filter(|&&p| p as usize >= t.max_position_embeddings) {
            return Err(Error::Request(format!("clap: a prompt of {len} tokens needs position {far}, past the {} positions (pad id {pad} included)", t.max_position_embeddings)));
        }
        let index = rec.upload_u32("clap ids", &[ids.len()], ids)?;
        let words = rec.gather_rows(&self.word, &index)?;
        let index = rec.upload_u32("clap positions", &[positions.len()], &positions)?;
        let places = rec.gather_rows(&self.position, &index)?;
        let x = rec.add(&words, &places)?;
        let x = rec.add(&x, &self.token_type)?;
        let mut h = self.embed_norm.forward(rec, &x)?;
        let bias: Vec<f32> = mask.iter().map(|&m| if m { 0.0 } else { MASKED }).collect();
        let bias = rec.upload("clap attention mask", &[batch * len], DType::F32, &bias)?;
        let bias = Bias { tensor: &bias, per_item: len, per_head: 0, per_row: 0 };
        let shape = HeadShape { heads: t.num_attention_heads, kv_heads: t.num_attention_heads, head_dim: d / t.num_attention_heads };
        for layer in &self.layers {
            let qkv = layer.qkv.forward(rec, &h)?;
            let a = Attention::new(Heads::of(&qkv), Heads { tensor: &qkv, offset: d }, Heads { tensor: &qkv, offset: 2 * d }, shape, 0..len).batch(batch, len).bias(bias);
            let a = rec.attention(&a)?;
            let a = layer.attention_out.forward_residual(rec, &a, Some(&h))?;
            h = layer.attention_norm.forward(rec, &a)?;
            let m = layer.mlp.forward(rec, &h, Some(&h))?;
            h = layer.output_norm.forward(rec, &m)?;
        }
        let first: Vec<u32> = (0..batch).map(|b| (b * len) as u32).collect();
        let first = rec.upload_u32("clap first tokens", &[batch], &first)?;
        let pooled = rec.gather_rows(&h, &first)?;
        let pooled = self.pooler.forward(rec, &pooled)?;
        let pooled = rec.unary(Unary::Tanh, &pooled)?;
        self.projection.forward(rec, &pooled)
    }

    /// Multiply-adds ×2 of one prompt of `len` tokens.
    pub fn flops(c: &ClapConfig, len: usize) -> f64 {
        let t = &c.text_config;
        let (n, d, ff, p) = (len as f64, t.hidden_size as f64, t.intermediate_size as f64, t.projection_dim as f64);
        t.num_hidden_layers as f64 * (8.0 * n * d * d + 4.0 * n * n * d + 4.0 * n * d * ff) + 2.0 * d * d + 2.0 * d * p + 2.0 * p * p
    }
}

#[cfg(test)]
mod tests {
    use super::position_ids;

    #[test]
    fn positions_follow_roberta() {
        // <s> a b </s> pad pad, pad id 1: positions from 2, pads at 1.
        assert_eq!(position_ids(&[0, 7, 9, 2, 1, 1], 1), vec![2, 3, 4, 5, 1, 1]);
        // A pad id in the middle keeps its place and does not count.
        assert_eq!(position_ids(&[0, 1, 9], 1), vec![2, 1, 3]);
    }
}
