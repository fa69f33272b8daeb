//! GPT-2 (Radford et al. 2019; as transformers' `modeling_gpt2.py` computes it, with Hugging Face
//! `GPT2LMHeadModel` names under a prefix: `audioldm2.gpt2` in a converted AudioLDM 2) run on
//! embeddings, as AudioLDM 2's "language model": it continues the projected text encodings by
//! `steps` hidden states, each step's final state fed back as the next input
//! (`AudioLDM2Pipeline.generate_language_model`).
//!
//! Pre-norm layers: LayerNorm, causal self-attention scaled by 1/√head_dim from one fused
//! `c_attn` (q|k|v), `c_proj` plus the residual; LayerNorm, `c_fc`, the activation (GELU in its
//! tanh form, `gelu_new`), `c_proj` plus the residual; `ln_f` at the end. Learned absolute positions are
//! added to the inputs. The token embedding `wte` and the LM head are not used.
//!
//! GPT-2's `Conv1D` stores weights `(in, out)`, the transpose of a linear layer's; they are
//! stored so (the Hugging Face layout) and transposed once on the GPU when loaded.
//!
//! Padding, as `transformers` does it for this call: positions are `0, 1, …` along the whole
//! sequence whatever the mask (no position ids are passed, so they follow the cache), padding
//! keys are masked for every query, and each generated step is a real key for the steps after
//! it (the mask is extended with ones). The prompt is run once (prefill) and each later step
//! attends to the keys and values kept on the GPU.

use crate::layers::{LayerNorm, Linear};
use crate::{Error, Result, Store};
use m2ugen_core::config::audioldm2::Gpt2Config;
use m2ugen_core::DType;
use m2ugen_gpu::{Attention, Bias, DecodeAttention, Gpu, GpuTensor, HeadShape, Heads, Recorder, StridedView, Unary, Weight};

/// Added to the scores of padding keys.
pub const MASKED: f32 = -1e30;

struct Layer {
    ln_1: LayerNorm,
    /// `c_attn`, `width -> 3 width` (q|k|v).
    c_attn: Linear,
    /// `attn.c_proj`.
    attn_proj: Linear,
    ln_2: LayerNorm,
    c_fc: Linear,
    /// `mlp.c_proj`.
    mlp_proj: Linear,
}

/// GPT-2 on embeddings, loaded.
pub struct Gpt2 {
    config: Gpt2Config,
    wpe: GpuTensor,
    layers: Vec<Layer>,
    ln_f: LayerNorm,
    act: Unary,
}

/// A `Conv1D` at `name`: `{name}.weight` `(in, out)`, transposed into a linear weight of its own
/// (the stored one taken out of the store), and `{name}.bias` `(out)`.
fn conv1d(gpu: &Gpu, store: &mut Store, name: &str, in_features: usize, out_features: usize) -> Result<Linear> {
    let weight_name = format!("{name}.weight");
    let stored = store.tensor(&weight_name, &[in_features, out_features])?;
    let transposed = gpu.zeros(&weight_name, &[out_features, in_features], store.dtype())?;
    let mut rec = Recorder::new(gpu);
    // transposed[o, i] = stored[i, o].
    let from = StridedView { offset: 0, strides: [0, 0, 1, out_features] };
    let to = StridedView { offset: 0, strides: [0, 0, in_features, 1] };
    rec.copy_strided(&stored, from, &transposed, to, &[out_features, in_features])?;
    rec.submit()?;
    store.remove(&weight_name);
    Ok(Linear { weight: Weight::Dense(transposed), bias: Some(store.tensor(&format!("{name}.bias"), &[out_features])?) })
}

impl Gpt2 {
    /// Loads the `{prefix}.transformer.*` tensors (`wpe`, `h.N.*`, `ln_f`) with `config`,
    /// transposing the `Conv1D` weights (taken out of the store).
    pub fn load(gpu: &Gpu, store: &mut Store, prefix: &str, config: &Gpt2Config) -> Result<Gpt2> {
        let c = config;
        let d = c.n_embd;
        c.check(prefix)?;
        let inner = c.inner();
        let eps = c.layer_norm_epsilon;
        let t = format!("{prefix}.transformer");
        let layers = (0..c.n_layer)
            .map(|i| {
                let l = format!("{t}.h.{i}");
                Ok(Layer {
                    ln_1: LayerNorm::load(store, &format!("{l}.ln_1"), d, eps)?,
                    c_attn: conv1d(gpu, store, &format!("{l}.attn.c_attn"), d, 3 * d)?,
                    attn_proj: conv1d(gpu, store, &format!("{l}.attn.c_proj"), d, d)?,
                    ln_2: LayerNorm::load(store, &format!("{l}.ln_2"), d, eps)?,
                    c_fc: conv1d(gpu, store, &format!("{l}.mlp.c_fc"), d, inner)?,
                    mlp_proj: conv1d(gpu, store, &format!("{l}.mlp.c_proj"), inner, d)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Gpt2 { wpe: store.tensor(&format!("{t}.wpe.weight"), &[c.n_positions, d])?, ln_f: LayerNorm::load(store, &format!("{t}.ln_f"), d, eps)?, layers, act: Unary::of(c.activation_function), config: config.clone() })
    }

    /// Every tensor [`Gpt2::load`] takes under `prefix`, with its shape (`Conv1D` weights
    /// `(in, out)`, as stored).
    pub fn tensors(prefix: &str, c: &Gpt2Config) -> Vec<(String, Vec<usize>)> {
        let d = c.n_embd;
        let inner = c.inner();
        let t = format!("{prefix}.transformer");
        let mut v = vec![(format!("{t}.wpe.weight"), vec![c.n_positions, d])];
        for i in 0..c.n_layer {
            let l = format!("{t}.h.{i}");
            for n in ["ln_1", "ln_2"] {
                v.push((format!("{l}.{n}.weight"), vec![d]));
                v.push((format!("{l}.{n}.bias"), vec![d]));
            }
            for (n, inp, out) in [("attn.c_attn", d, 3 * d), ("attn.c_proj", d, d), ("mlp.c_fc", d, inner), ("mlp.c_proj", inner, d)] {
                v.push((format!("{l}.{n}.weight"), vec![inp, out]));
                v.push((format!("{l}.{n}.bias"), vec![out]));
            }
        }
        v.push((format!("{t}.ln_f.weight"), vec![d]));
        v.push((format!("{t}.ln_f.bias"), vec![d]));
        v
    }

    /// The configuration.
    pub fn config(&self) -> &Gpt2Config {
        &self.config
    }

    fn heads(&self) -> HeadShape {
        let c = &self.config;
        HeadShape { heads: c.n_head, kv_heads: c.n_head, head_dim: c.n_embd / c.n_head }
    }

    /// Layer `l`'s score scale: 1/√head_dim when `scale_attn_weights`, divided by `l + 1` when
    /// `scale_attn_by_inverse_layer_idx`.
    fn scale(&self, l: usize) -> f32 {
        let c = &self.config;
        let base = if c.scale_attn_weights { 1.0 / ((c.n_embd / c.n_head) as f32).sqrt() } else { 1.0 };
        if c.scale_attn_by_inverse_layer_idx {
            base / (l + 1) as f32
        } else {
            base
        }
    }

    /// Runs `x` `(batch * n, width)` (inputs with their positions added), `n` new rows per
    /// sequence from position `pos0`, through every layer: keys and values go to rows
    /// `b * slot_rows + pos0 ..` of the caches; the prefill kernel when `pos0` is 0, else the
    /// decode kernel (`n` is 1). Returns the states before `ln_f`.
    fn layers(&self, rec: &mut Recorder, cache: &Cache, mut x: GpuTensor, n: usize, pos0: usize, bias: Bias) -> Result<GpuTensor> {
        let d = self.config.n_embd;
        let shape = self.heads();
        let (batch, slot_rows) = (cache.batch, cache.slot_rows);
        // qkv (batch, n, 3d) columns [d, 2d) and [2d, 3d) into the caches' rows (batch, slot_rows, d).
        let to = StridedView { offset: pos0 * d, strides: [0, slot_rows * d, d, 1] };
        let lens = if pos0 > 0 { Some(rec.upload_u32("gpt2 keys per sequence", &[batch], &vec![(pos0 + 1) as u32; batch])?) } else { None };
        for (l, layer) in self.layers.iter().enumerate() {
            let h = layer.ln_1.forward(rec, &x)?;
            let qkv = layer.c_attn.forward(rec, &h)?;
            for (part, kept) in [(1, &cache.k[l]), (2, &cache.v[l])] {
                let from = StridedView { offset: part * d, strides: [0, n * 3 * d, 3 * d, 1] };
                rec.copy_strided(&qkv, from, kept, to, &[batch, n, d])?;
            }
            let a = match &lens {
                None => rec.attention(&Attention::new(Heads::of(&qkv), Heads::of(&cache.k[l]), Heads::of(&cache.v[l]), shape, 0..n).batch(batch, slot_rows).causal(0).scale(self.scale(l)).bias(bias))?,
                Some(lens) => rec.attention_decode(&DecodeAttention::new(Heads::of(&qkv), &cache.k[l], &cache.v[l], shape, slot_rows, lens, pos0 + 1).scale(self.scale(l)).bias(bias))?,
            };
            x = layer.attn_proj.forward_residual(rec, &a, Some(&x))?;
            let h = layer.ln_2.forward(rec, &x)?;
            let h = layer.c_fc.forward(rec, &h)?;
            let h = rec.unary(self.act, &h)?;
            x = layer.mlp_proj.forward_residual(rec, &h, Some(&x))?;
        }
        Ok(x)
    }

    /// `x` plus the position embeddings of `positions` (one per row).
    fn add_positions(&self, rec: &mut Recorder, x: &GpuTensor, positions: &[u32]) -> Result<GpuTensor> {
        let index = rec.upload_u32("gpt2 positions", &[positions.len()], positions)?;
        let p = rec.gather_rows(&self.wpe, &index)?;
        Ok(rec.add(x, &p)?)
    }

    /// `steps` hidden states `(batch, steps, width)` generated after `embeds` `(batch * len,
    /// width)` (`batch` sequences of `len` rows, row-major), `mask` `(batch * len)` saying which
    /// rows are real (false: padding, never attended to). Each step is `ln_f` of the last
    /// position's state, appended as the next input: one prefill of the prompt, then `steps - 1`
    /// single steps over the KV cache, all recorded in `rec` (nothing is read back).
    pub fn generate_from_embeddings(&self, rec: &mut Recorder, embeds: &GpuTensor, mask: &[bool], batch: usize, steps: usize) -> Result<GpuTensor> {
        let c = &self.config;
        let d = c.n_embd;
        let rows = embeds.rows();
        if batch == 0 || steps == 0 || !rows.is_multiple_of(batch) || rows == 0 || embeds.cols() != d || mask.len() != rows {
            return Err(Error::Request(format!("gpt2: embeddings {:?} and {} mask values for {batch} sequences of width {d}, {steps} steps", embeds.shape(), mask.len())));
        }
        let len = rows / batch;
        let slot_rows = len + steps - 1;
        if slot_rows > c.n_positions {
            return Err(Error::Request(format!("gpt2: {len} prompt rows and {steps} steps need {slot_rows} positions; the model has {}", c.n_positions)));
        }
        let dtype = embeds.dtype();
        let cache = Cache {
            k: (0..c.n_layer).map(|_| rec.alloc("gpt2 k cache", &[batch * slot_rows, d], dtype)).collect::<Result<_, _>>()?,
            v: (0..c.n_layer).map(|_| rec.alloc("gpt2 v cache", &[batch * slot_rows, d], dtype)).collect::<Result<_, _>>()?,
            batch,
            slot_rows,
        };
        // Padding keys of the prompt masked; generated steps are real keys.
        let bias: Vec<f32> = (0..batch).flat_map(|b| (0..slot_rows).map(move |t| if t < len && !mask[b * len + t] { MASKED } else { 0.0 })).collect();
        let bias = rec.upload("gpt2 attention mask", &[batch * slot_rows], DType::F32, &bias)?;
        let bias = Bias { tensor: &bias, per_item: slot_rows, per_head: 0, per_row: 0 };
        let out = rec.alloc("gpt2 generated", &[batch * steps, d], dtype)?;

        let positions: Vec<u32> = (0..batch).flat_map(|_| 0..len as u32).collect();
        let x = self.add_positions(rec, embeds, &positions)?;
        let x = self.layers(rec, &cache, x, len, 0, bias)?;
        let last: Vec<u32> = (0..batch).map(|b| (b * len + len - 1) as u32).collect();
        let last = rec.upload_u32("gpt2 last rows", &[batch], &last)?;
        let x = rec.gather_rows(&x, &last)?;
        let mut state = self.ln_f.forward(rec, &x)?;
        for step in 0..steps {
            let at: Vec<u32> = (0..batch).map(|b| (b * steps + step) as u32).collect();
            let at = rec.upload_u32("gpt2 step rows", &[batch], &at)?;
            rec.scatter_rows(&state, &out, &at)?;
            if step + 1 == steps {
                break;
            }
            let pos = len + step;
            let x = self.add_positions(rec, &state, &vec![pos as u32; batch])?;
            let x = self.layers(rec, &cache, x, 1, pos, bias)?;
            state = self.ln_f.forward(rec, &x)?;
        }
        Ok(out.reshape(&[batch, steps, d])?)
    }

    /// Multiply-adds ×2 of generating `steps` states after `len` rows, for one sequence.
    pub fn flops(c: &Gpt2Config, len: usize, steps: usize) -> f64 {
        let (d, inner) = (c.n_embd as f64, c.inner() as f64);
        let per_row = c.n_layer as f64 * (8.0 * d * d + 4.0 * d * inner);
        let rows = (len + steps.saturating_sub(1)) as f64;
        // Attention: each row against the keys up to it.
        let keys: f64 = (1..=len + steps.saturating_sub(1)).map(|k| k as f64).sum();
        rows * per_row + c.n_layer as f64 * 4.0 * d * keys
    }
}

/// Keys and values of one generation, `(batch * slot_rows, width)` per layer.
struct Cache {
    k: Vec<GpuTensor>,
    v: Vec<GpuTensor>,
    batch: usize,
    slot_rows: usize,
}
