//! MusicGen's decoder (Copet et al. 2023, arXiv 2306.05284; as transformers'
//! `modeling_musicgen.py` computes it, with `MusicgenForConditionalGeneration` names under
//! `musicgen.`):
//! the codebooks' embeddings summed, sinusoidal positions, pre-norm layers of causal
//! self-attention over a KV cache, cross-attention to the conditioning (its keys and values
//! computed once per generation, [`MusicgenDecoder::condition`]) and a GELU feed-forward, the
//! final LayerNorm, and one head per codebook. `enc_to_dec_proj` takes conditioning of the text
//! encoder's width to the decoder's.
//!
//! [`DelayPattern`] is MusicGen's codebook interleaving (codebook `k` runs `k` steps late), applied
//! and undone exactly as `transformers` does.

use crate::layers::{LayerNorm, Linear, Mlp, MultiHeadAttention};
use crate::{Error, Result, Store};
use m2ugen_core::config::{MusicgenConfig, MusicgenDecoderConfig};
use m2ugen_core::DType;
use m2ugen_gpu::{Attention, Bias, Gpu, GpuTensor, HeadShape, Heads, Recorder, Unary};

/// MusicGen's LayerNorm epsilon (PyTorch's default).
const EPS: f32 = 1e-5;

/// Added to the scores of masked conditioning rows.
pub const MASKED: f32 = -1e30;

struct Layer {
    self_norm: LayerNorm,
    self_attn: MultiHeadAttention,
    cross_norm: LayerNorm,
    cross_attn: MultiHeadAttention,
    final_norm: LayerNorm,
    mlp: Mlp,
}

/// MusicGen's decoder, loaded.
pub struct MusicgenDecoder {
    config: MusicgenDecoderConfig,
    embed: Vec<GpuTensor>,
    positions: GpuTensor,
    layers: Vec<Layer>,
    norm: LayerNorm,
    /// The heads side by side, `width -> codebooks * vocab`.
    heads: Linear,
    /// Conditioning width to the decoder's, when they differ.
    enc_to_dec: Option<Linear>,
    memory_width: usize,
}

/// The conditioning's keys and values for every layer, computed once per generation.
pub struct Conditioning {
    kv: Vec<GpuTensor>,
    bias: Option<GpuTensor>,
    batch: usize,
    len: usize,
}

impl Conditioning {
    /// Sequences conditioned.
    pub fn batch(&self) -> usize {
        self.batch
    }
}

/// The self-attention keys and values of every step so far, one slot per sequence.
pub struct DecoderCache {
    kv: Vec<GpuTensor>,
    batch: usize,
    slot_rows: usize,
    len: usize,
}

impl DecoderCache {
    /// Steps held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no step is held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Steps it can hold.
    pub fn capacity(&self) -> usize {
        self.slot_rows
    }
}

/// MusicGen's sinusoidal position table `(positions, dim)`: `[cos(p·f_i) | sin(p·f_i)]` with
/// `f_i = exp(-i · ln(10000) / (dim/2 - 1))`, in f32 as `transformers` builds it (a zero column
/// for an odd width).
pub fn sinusoids(positions: usize, dim: usize) -> Vec<f32> {
    let half = dim / 2;
    let step = (10000f64.ln() / (half.max(2) - 1) as f64) as f32;
    let freqs: Vec<f32> = (0..half).map(|i| (i as f32 * -step).exp()).collect();
    let mut t = Vec::with_capacity(positions * dim);
    for p in 0..positions {
        let args: Vec<f32> = freqs.iter().map(|&f| p as f32 * f).collect();
        t.extend(args.iter().map(|a| a.cos()));
        t.extend(args.iter().map(|a| a.sin()));
        if dim % 2 == 1 {
            t.push(0.0);
        }
    }
    t
}

impl MusicgenDecoder {
    /// Loads `{prefix}.decoder.*` and `{prefix}.enc_to_dec_proj` (when the text encoder's width
    /// differs from the decoder's) with `config`; `max_steps` sizes the position table.
    pub fn load(gpu: &Gpu, store: &mut Store, prefix: &str, config: &MusicgenConfig, max_steps: usize) -> Result<MusicgenDecoder> {
        let c = &config.decoder;
        let (d, k, v) = (c.hidden_size, c.num_codebooks, c.vocab_size);
        if c.audio_channels != 1 {
            return Err(Error::Config { field: "musicgen.decoder.audio_channels".into(), problem: format!("{} channels: only mono MusicGen is supported", c.audio_channels) });
        }
        if c.num_attention_heads == 0 || d % c.num_attention_heads != 0 || k == 0 {
            return Err(Error::Config { field: "musicgen.decoder.num_attention_heads".into(), problem: format!("{} heads must divide the width {d} (hidden_size), with num_codebooks ({k}) at least 1", c.num_attention_heads) });
        }
        if c.pad_token_id != v {
            return Err(Error::Config { field: "musicgen.decoder.pad_token_id".into(), problem: format!("{} is not the codebook size {v}: MusicGen pads (and starts) with the id after the last code, the embeddings' last row", c.pad_token_id) });
        }
        if c.scale_embedding {
            return Err(Error::Config { field: "musicgen.decoder.scale_embedding".into(), problem: "true is not supported (no released MusicGen scales its embeddings)".into() });
        }
        let dec = format!("{prefix}.decoder.model.decoder");
        let embed = (0..k).map(|i| store.tensor(&format!("{dec}.embed_tokens.{i}.weight"), &[v + 1, d])).collect::<Result<Vec<_>>>()?;
        let shape = HeadShape { heads: c.num_attention_heads, kv_heads: c.num_attention_heads, head_dim: d / c.num_attention_heads };
        let act = Unary::of(c.activation_function);
        let layers = (0..c.num_hidden_layers)
            .map(|i| {
                let l = format!("{dec}.layers.{i}");
                let attn = |gpu: &Gpu, store: &mut Store, kind: &str| {
                    let n = ["q_proj", "k_proj", "v_proj", "out_proj"].map(|p| format!("{l}.{kind}.{p}"));
                    MultiHeadAttention::load_separate(gpu, store, [&n[0], &n[1], &n[2], &n[3]], d, shape, false)
                };
                Ok(Layer {
                    self_norm: LayerNorm::load(store, &format!("{l}.self_attn_layer_norm"), d, EPS)?,
                    self_attn: attn(gpu, store, "self_attn")?,
                    cross_norm: LayerNorm::load(store, &format!("{l}.encoder_attn_layer_norm"), d, EPS)?,
                    cross_attn: attn(gpu, store, "encoder_attn")?,
                    final_norm: LayerNorm::load(store, &format!("{l}.final_layer_norm"), d, EPS)?,
                    mlp: Mlp::load(store, &format!("{l}.fc1"), &format!("{l}.fc2"), d, c.ffn_dim, act, false)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let head_names: Vec<(String, usize)> = (0..k).map(|i| (format!("{prefix}.decoder.lm_heads.{i}"), v)).collect();
        let head_refs: Vec<(&str, usize)> = head_names.iter().map(|(n, v)| (n.as_str(), *v)).collect();
        let heads = Linear::load_fused(gpu, store, &head_refs, d)?;
        let memory_width = config.text_encoder.d_model;
        let enc_to_dec = if memory_width != d { Some(Linear::load(store, &format!("{prefix}.enc_to_dec_proj"), d, memory_width, true)?) } else { None };
        let positions = gpu.upload("musicgen positions", &[max_steps, d], store.dtype(), &sinusoids(max_steps, d))?;
        Ok(MusicgenDecoder { config: c.clone(), embed, positions, layers, norm: LayerNorm::load(store, &format!("{dec}.layer_norm"), d, EPS)?, heads, enc_to_dec, memory_width })
    }

    /// Every tensor [`MusicgenDecoder::load`] takes under `prefix`, with its shape.
    pub fn tensors(prefix: &str, config: &MusicgenConfig) -> Vec<(String, Vec<usize>)> {
        let c = &config.decoder;
        let (d, v) = (c.hidden_size, c.vocab_size);
        let dec = format!("{prefix}.decoder.model.decoder");
        let mut t: Vec<(String, Vec<usize>)> = (0..c.num_codebooks).map(|i| (format!("{dec}.embed_tokens.{i}.weight"), vec![v + 1, d])).collect();
        for i in 0..c.num_hidden_layers {
            let l = format!("{dec}.layers.{i}");
            for kind in ["self_attn", "encoder_attn"] {
                for p in ["q_proj", "k_proj", "v_proj", "out_proj"] {
                    t.push((format!("{l}.{kind}.{p}.weight"), vec![d, d]));
                }
            }
            for n in ["self_attn_layer_norm", "encoder_attn_layer_norm", "final_layer_norm"] {
                t.push((format!("{l}.{n}.weight"), vec![d]));
                t.push((format!("{l}.{n}.bias"), vec![d]));
            }
            t.push((format!("{l}.fc1.weight"), vec![c.ffn_dim, d]));
            t.push((format!("{l}.fc2.weight"), vec![d, c.ffn_dim]));
        }
        t.push((format!("{dec}.layer_norm.weight"), vec![d]));
        t.push((format!("{dec}.layer_norm.bias"), vec![d]));
        for i in 0..c.num_codebooks {
            t.push((format!("{prefix}.decoder.lm_heads.{i}.weight"), vec![v, d]));
        }
        let m = config.text_encoder.d_model;
        if m != d {
            t.push((format!("{prefix}.enc_to_dec_proj.weight"), vec![d, m]));
            t.push((format!("{prefix}.enc_to_dec_proj.bias"), vec![d]));
        }
        t
    }

    /// The configuration.
    pub fn config(&self) -> &MusicgenDecoderConfig {
        &self.config
    }

    /// Width of the conditioning it takes (the text encoder's).
    pub fn memory_width(&self) -> usize {
        self.memory_width
    }

    /// The activation type.
    pub fn dtype(&self) -> m2ugen_core::DType {
        self.positions.dtype()
    }

    /// Longest generation the position table covers, in steps.
    pub fn max_steps(&self) -> usize {
        self.positions.rows()
    }

    /// The cross-attention keys and values of every layer for `batch` sequences conditioned on
    /// `memory` `(batch * len, memory width)`: projected to the decoder's width, rows whose
    /// `mask` is false zeroed and never attended to (`mask` absent: every row counts). A
    /// sequence whose rows are all masked gets no conditioning at all (classifier-free
    /// guidance's null rows).
    pub fn condition(&self, rec: &mut Recorder, memory: &GpuTensor, batch: usize, len: usize, mask: Option<&[bool]>) -> Result<Conditioning> {
        if batch == 0 || len == 0 || memory.rows() != batch * len || memory.cols() != self.memory_width {
            return Err(Error::Request(format!("musicgen: conditioning {:?} is not {batch} sequences of {len} rows of width {}", memory.shape(), self.memory_width)));
        }
        if mask.is_some_and(|m| m.len() != batch * len) {
            return Err(Error::Request(format!("musicgen: the conditioning mask has {} values for {batch} x {len} rows", mask.map_or(0, <[bool]>::len))));
        }
        let projected = self.enc_to_dec.as_ref().map(|p| p.forward(rec, memory)).transpose()?;
        let mut m = projected.clone().unwrap_or_else(|| memory.clone());
        let mut bias = None;
        if let Some(mask) = mask {
            let masked: Vec<u32> = mask.iter().enumerate().filter(|(_, keep)| !**keep).map(|(i, _)| i as u32).collect();
            if !masked.is_empty() {
                // transformers multiplies the projected states by the mask: zero those rows.
                let zeros = rec.alloc("musicgen masked rows", &[masked.len(), m.cols()], m.dtype())?;
                rec.fill(&zeros, 0.0)?;
                let index = rec.upload_u32("musicgen masked rows", &[masked.len()], &masked)?;
                if projected.is_none() {
                    // The caller's tensor is not ours to change: zero the rows in a copy.
                    let owned = rec.alloc("musicgen conditioning", m.shape(), m.dtype())?;
                    let whole = m2ugen_gpu::StridedView { offset: 0, strides: [0, 0, 0, 1] };
                    rec.copy_strided(&m, whole, &owned, whole, &[m.numel()])?;
                    m = owned;
                }
                rec.scatter_rows(&zeros, &m, &index)?;
                let values: Vec<f32> = mask.iter().map(|&keep| if keep { 0.0 } else { MASKED }).collect();
                bias = Some(rec.upload("musicgen conditioning mask", &[batch * len], DType::F32, &values)?);
            }
        }
        let kv = self.layers.iter().map(|l| l.cross_attn.keys(rec, &m)).collect::<Result<Vec<_>>>()?;
        Ok(Conditioning { kv, bias, batch, len })
    }

    /// An empty cache for `batch` sequences of up to `max_steps` steps.
    pub fn new_cache(&self, gpu: &Gpu, batch: usize, max_steps: usize) -> Result<DecoderCache> {
        if max_steps > self.max_steps() {
            return Err(Error::Request(format!("musicgen: {max_steps} steps exceed the {} this decoder was loaded for", self.max_steps())));
        }
        let width = 2 * self.config.hidden_size;
        let kv = (0..self.layers.len()).map(|_| Ok(gpu.zeros("musicgen kv cache", &[batch * max_steps, width], self.positions.dtype())?)).collect::<Result<Vec<_>>>()?;
        Ok(DecoderCache { kv, batch, slot_rows: max_steps, len: 0 })
    }

    /// Runs `steps` new steps of every sequence: `ids` `(batch, codebooks, steps)` row-major
    /// (codes, or the pad id), continuing the cache. Logits `(batch * steps * codebooks,
    /// vocab)`, rows in that order.
    pub fn forward(&self, rec: &mut Recorder, cache: &mut DecoderCache, cond: &Conditioning, ids: &[u32], steps: usize) -> Result<GpuTensor> {
        let c = &self.config;
        let (k, d, batch) = (c.num_codebooks, c.hidden_size, cache.batch);
        if cond.batch != batch {
            return Err(Error::Request(format!("musicgen: {} conditioned sequences for a cache of {batch}", cond.batch)));
        }
        if steps == 0 || ids.len() != batch * k * steps {
            return Err(Error::Request(format!("musicgen: {} ids for {batch} sequences of {k} codebooks and {steps} steps", ids.len())));
        }
        if let Some(&bad) = ids.iter().find(|&&i| i as usize > c.vocab_size) {
            return Err(Error::Request(format!("musicgen: code {bad} is outside the codebook of {} (and is not the pad id {})", c.vocab_size, c.pad_token_id)));
        }
        let pos0 = cache.len;
        if pos0 + steps > cache.slot_rows {
            return Err(Error::Request(format!("musicgen: {} steps exceed the cache's {}", pos0 + steps, cache.slot_rows)));
        }
        let rows = batch * steps;
        let mut h: Option<GpuTensor> = None;
        for (i, table) in self.embed.iter().enumerate() {
            let codes: Vec<u32> = (0..batch).flat_map(|b| ids[(b * k + i) * steps..(b * k + i + 1) * steps].iter().copied()).collect();
            let index = rec.upload_u32("musicgen codes", &[rows], &codes)?;
            let e = rec.gather_rows(table, &index)?;
            h = Some(match h {
                None => e,
                Some(sum) => rec.add(&sum, &e)?,
            });
        }
        let Some(h) = h else { return Err(Error::Request("musicgen: no codebooks".into())) };
        let positions: Vec<u32> = (0..batch).flat_map(|_| (pos0..pos0 + steps).map(|p| p as u32)).collect();
        let index = rec.upload_u32("musicgen positions", &[rows], &positions)?;
        let p = rec.gather_rows(&self.positions, &index)?;
        let mut h = rec.add(&h, &p)?;
        let slot_rows = cache.slot_rows;
        let cache_rows: Vec<u32> = (0..batch).flat_map(|b| (pos0..pos0 + steps).map(move |p| (b * slot_rows + p) as u32)).collect();
        let cache_index = rec.upload_u32("musicgen cache rows", &[rows], &cache_rows)?;
        let inner = d;
        for (l, layer) in self.layers.iter().enumerate() {
            let n = layer.self_norm.forward(rec, &h)?;
            let q = layer.self_attn.q.forward(rec, &n)?;
            let kv = layer.self_attn.keys(rec, &n)?;
            rec.scatter_rows(&kv, &cache.kv[l], &cache_index)?;
            let a = Attention::new(Heads::of(&q), Heads { tensor: &cache.kv[l], offset: 0 }, Heads { tensor: &cache.kv[l], offset: inner }, layer.self_attn.shape, 0..pos0 + steps).batch(batch, cache.slot_rows).causal(pos0);
            let a = rec.attention(&a)?;
            h = layer.self_attn.out.forward_residual(rec, &a, Some(&h))?;
            let n = layer.cross_norm.forward(rec, &h)?;
            let q = layer.cross_attn.q.forward(rec, &n)?;
            let mut a = Attention::new(Heads::of(&q), Heads { tensor: &cond.kv[l], offset: 0 }, Heads { tensor: &cond.kv[l], offset: inner }, layer.cross_attn.shape, 0..cond.len).batch(batch, cond.len);
            if let Some(bias) = &cond.bias {
                a = a.bias(Bias { tensor: bias, per_item: cond.len, per_head: 0, per_row: 0 });
            }
            let a = rec.attention(&a)?;
            h = layer.cross_attn.out.forward_residual(rec, &a, Some(&h))?;
            let n = layer.final_norm.forward(rec, &h)?;
            h = layer.mlp.forward(rec, &n, Some(&h))?;
        }
        cache.len += steps;
        let n = self.norm.forward(rec, &h)?;
        let logits = self.heads.forward(rec, &n)?;
        Ok(logits.reshape(&[rows * k, c.vocab_size])?)
    }

    /// Forgets every step (the conditioning stays valid).
    pub fn reset(cache: &mut DecoderCache) {
        cache.len = 0;
    }

    /// Multiply-adds ×2 of one step of one sequence at `position` over `memory` conditioning
    /// rows.
    pub fn step_flops(c: &MusicgenDecoderConfig, position: usize, memory: usize) -> f64 {
        let (d, f, v, k) = (c.hidden_size as f64, c.ffn_dim as f64, c.vocab_size as f64, c.num_codebooks as f64);
        c.num_hidden_layers as f64 * (2.0 * 6.0 * d * d + 4.0 * d * (position as f64 + 1.0 + memory as f64) + 4.0 * d * f) + 2.0 * d * v * k
    }

    /// Bytes of weights one step reads (every layer's matrices and the heads, in `dtype`).
    pub fn step_weight_bytes(c: &MusicgenDecoderConfig, bytes_per_value: usize) -> u64 {
        let (d, f, v, k) = (c.hidden_size, c.ffn_dim, c.vocab_size, c.num_codebooks);
        ((c.num_hidden_layers * (6 * d * d + 2 * d * f) + d * v * k) * bytes_per_value) as u64
    }
}

/// MusicGen's delay pattern for `codebooks` codebooks over sequences of `len` positions
/// (position 0 the start token): codebook `k` is forced to the pad id at positions `0..=k` and
/// at the last `codebooks - 1 - k`, and free between, so each frame's codes are spread over
/// `codebooks` steps. As `build_delay_pattern_mask` / `apply_delay_pattern_mask` in
/// `transformers`, except that transformers leaves the pattern off for sequences shorter than
/// `2 × codebooks - 1` (fewer than `codebooks - 1` frames, 60 ms of MusicGen), where this keeps it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DelayPattern {
    /// Codebooks.
    pub codebooks: usize,
    /// Positions, the start token included.
    pub len: usize,
}

impl DelayPattern {
    /// The pattern for generating `frames` frames: `frames + codebooks` positions.
    pub fn for_frames(codebooks: usize, frames: usize) -> Self {
        DelayPattern { codebooks, len: frames + codebooks }
    }

    /// Whether codebook `k` is forced to the pad id at position `p`.
    pub fn forced(&self, k: usize, p: usize) -> bool {
        p <= k || p + self.codebooks > self.len + k
    }

    /// Frames the pattern holds.
    pub fn frames(&self) -> usize {
        self.len.saturating_sub(self.codebooks)
    }

    /// Codes `(sequences, codebooks, frames)` from delayed sequences `(sequences, codebooks,
    /// len)`: codebook `k`'s frame `f` sits at position `f + k + 1`.
    pub fn undo(&self, delayed: &[u32], sequences: usize) -> Vec<u32> {
        let (k, len, frames) = (self.codebooks, self.len, self.frames());
        let mut out = Vec::with_capacity(sequences * k * frames);
        for s in 0..sequences {
            for cb in 0..k {
                let row = &delayed[(s * k + cb) * len..(s * k + cb + 1) * len];
                out.extend_from_slice(&row[cb + 1..cb + 1 + frames]);
            }
        }
        out
    }

    /// Delayed sequences `(sequences, codebooks, len)` from codes `(sequences, codebooks,
    /// frames)`, forced positions holding `pad`: the inverse of [`DelayPattern::undo`] (a
    /// continuation's prompt).
    pub fn apply(&self, codes: &[u32], sequences: usize, pad: u32) -> Vec<u32> {
        let (k, len, frames) = (self.codebooks, self.len, self.frames());
        let mut out = vec![pad; sequences * k * len];
        for s in 0..sequences {
            for cb in 0..k {
                for f in 0..frames {
                    out[(s * k + cb) * len + f + cb + 1] = codes[(s * k + cb) * frames + f];
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delay_pattern_matches_transformers_mask() {
        // 4 codebooks, 8 positions (as build_delay_pattern_mask for max_length 8): codebook k
        // is pad at 0..=k (the start) and from k + 8 - 4 + 1 on (the end).
        let p = DelayPattern { codebooks: 4, len: 8 };
        let forced: Vec<String> = (0..4).map(|k| (0..8).map(|t| if p.forced(k, t) { 'P' } else { '.' }).collect()).collect();
        assert_eq!(forced, ["P....PPP", "PP....PP", "PPP....P", "PPPP...."]);
        assert_eq!(p.frames(), 4);
        // Frame f of codebook k at position f + k + 1; undo takes them back out.
        let delayed: Vec<u32> = (0..4).flat_map(|k| (0..8).map(move |t| if p.forced(k, t) { 99 } else { (10 * k + t - k - 1) as u32 })).collect();
        assert_eq!(p.undo(&delayed, 1), [0, 1, 2, 3, 10, 11, 12, 13, 20, 21, 22, 23, 30, 31, 32, 33]);
        assert_eq!(p.apply(&p.undo(&delayed, 1), 1, 99), delayed);
        // The fixture's: 24 steps after the start token, 4 codebooks: 21 frames.
        assert_eq!(DelayPattern { codebooks: 4, len: 25 }.frames(), 21);
        assert_eq!(DelayPattern::for_frames(4, 21).len, 25);
    }

    #[test]
    fn sinusoids_put_cosines_first() {
        let t = sinusoids(3, 4);
        // half 2: frequencies 1 and exp(-ln 10000) = 1e-4.
        let expected = [1.0, 1.0, 0.0, 0.0, 1f32.cos(), (1e-4f32).cos(), 1f32.sin(), 1e-4f32.sin(), 2f32.cos(), (2e-4f32).cos(), 2f32.sin(), 2e-4f32.sin()];
        for (a, b) in t.iter().zip(expected) {
            assert!((a - b).abs() < 1e-6, "{t:?}");
        }
    }
}
