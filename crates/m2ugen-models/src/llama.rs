//! LLaMA (Meta layout: RMSNorm, RoPE in Meta's pair convention, SwiGLU, grouped-query attention
//! ready) with M2UGen's LLaMA-Adapter parts: biases on wq, wo, w1, w2, w3 (LoRA already folded
//! by the converter), a per-head `gate`, and the adapter prefix of the last layers.
//!
//! The prefix: adapter layer `i` takes `media feature + prefix_query[i]` (the media of its group:
//! music, image or video; a missing medium leaves `prefix_query[i]` alone). Being one token,
//! it adds `tanh(gate_h) * wv(prefix)` to head `h`'s attention output, with no softmax over it
//! (as the reference does). The reference's `wv` there is the base weight without its LoRA
//! (checked against the fixture): the converter folds LoRA into `wv` and keeps the pair, which
//! is subtracted again for the prefix. That vector depends only on the media, so it is computed once per
//! sequence ([`Llama::set_media`]) and kept in the [`KvCache`] beside the keys and values.
//!
//! Generation keeps keys and values on the GPU: [`Llama::prefill`] runs a prompt (or a
//! continuation) of one sequence slot; [`Llama::decode`] runs one token for every slot at once.

use crate::layers::{FeedForward, Linear, RmsNorm};
use crate::{Error, Result, Store};
use m2ugen_core::config::{LlamaConfig, Modality};
use m2ugen_core::DType;
use m2ugen_gpu::{Gpu, GpuTensor, HeadShape, Heads, Recorder, RopeTable};

/// One transformer layer.
struct Layer {
    attention_norm: RmsNorm,
    wq: Linear,
    wk: Linear,
    wv: Linear,
    wo: Linear,
    ffn_norm: RmsNorm,
    feed_forward: FeedForward,
    /// `tanh(gate_h)` repeated over each head's width, `(dim)`.
    gate: GpuTensor,
    /// wv's LoRA pair `(down, up)`, folded into `wv` but not applied to the adapter prefix.
    wv_lora: Option<(Linear, Linear)>,
}

/// LLaMA with M2UGen's adapter parts, on the GPU.
pub struct Llama {
    /// The geometry.
    pub config: LlamaConfig,
    tok_embeddings: GpuTensor,
    layers: Vec<Layer>,
    norm: RmsNorm,
    output: Linear,
    prefix_query: GpuTensor,
    rope: RopeTable,
    dtype: DType,
}

/// Keys, values and adapter prefixes of `slots` sequences, on the GPU.
pub struct KvCache {
    /// Sequences held.
    pub slots: usize,
    /// Longest sequence per slot.
    pub max_seq: usize,
    /// Tokens held per slot.
    pub lens: Vec<usize>,
    k: Vec<GpuTensor>,
    v: Vec<GpuTensor>,
    /// Per adapter layer, `(slots, dim)`: `tanh(gate) * wv(prefix)` of each slot's media.
    prefix: Vec<GpuTensor>,
}

/// The media features of one sequence, each `(1, dim)` (the adapters' outputs).
#[derive(Clone, Copy, Default)]
pub struct Media<'a> {
    /// Music.
    pub music: Option<&'a GpuTensor>,
    /// Image.
    pub image: Option<&'a GpuTensor>,
    /// Video.
    pub video: Option<&'a GpuTensor>,
}

impl<'a> Media<'a> {
    fn get(&self, m: Modality) -> Option<&'a GpuTensor> {
        match m {
            Modality::Music => self.music,
            Modality::Image => self.image,
            Modality::Video => self.video,
        }
    }
}

fn field(params: &serde_json::Value, name: &str) -> Result<usize> {
    params
        .get(name)
        .and_then(|v| v.as_u64())
        .filter(|&v| v > 0)
        .map(|v| v as usize)
        .ok_or_else(|| Error::Config { field: format!("llama.{name}"), problem: "missing or not a positive integer".into() })
}

impl Llama {
    /// The geometry from Meta's `params.json` (the manifest's `llama` component) and the shapes
    /// of the stored tensors: vocabulary from `llm.tok_embeddings`, FFN width from `w1`, and the
    /// adapter layers from `llm.prefix_query` (18: M2UGen's music/image/video groups; otherwise
    /// every adapter layer takes music, as MU-LLaMA's 20 do).
    pub fn config_from(manifest: &m2ugen_weights::Manifest, store: &Store, max_seq: usize) -> Result<LlamaConfig> {
        let params = manifest.components.get("llama").ok_or_else(|| Error::Config { field: "llama".into(), problem: "the manifest has no 'llama' component".into() })?;
        let dim = field(params, "dim")?;
        let n_layers = field(params, "n_layers")?;
        let n_heads = field(params, "n_heads")?;
        let n_kv_heads = params.get("n_kv_heads").and_then(|v| v.as_u64()).map_or(n_heads, |v| v as usize);
        let norm_eps = params.get("norm_eps").and_then(|v| v.as_f64()).unwrap_or(1e-5) as f32;
        let rope_theta = params.get("rope_theta").and_then(|v| v.as_f64()).unwrap_or(10000.0) as f32;
        let vocab = *store.shape("llm.tok_embeddings.weight")?.first().unwrap_or(&0);
        let ffn_hidden = *store.shape("llm.layers.0.feed_forward.w1.weight")?.first().unwrap_or(&0);
        let n_prefix = if store.has("llm.prefix_query") { *store.shape("llm.prefix_query")?.first().unwrap_or(&0) } else { 0 };
        let prefix = if n_prefix == 18 { Modality::m2ugen_prefix() } else { vec![Modality::Music; n_prefix] };
        if dim % n_heads != 0 || n_heads % n_kv_heads.max(1) != 0 || n_prefix > n_layers {
            return Err(Error::Config { field: "llama".into(), problem: format!("dim {dim}, {n_heads} heads, {n_kv_heads} kv heads, {n_prefix} adapter layers of {n_layers} do not fit together") });
        }
        Ok(LlamaConfig { dim, n_layers, n_heads, n_kv_heads, ffn_hidden, vocab, norm_eps, rope_theta, max_seq, prefix })
    }

    /// Builds the model from uploaded tensors (names as the converter writes them).
    pub fn load(gpu: &Gpu, store: &Store, config: LlamaConfig) -> Result<Llama> {
        let c = &config;
        let (dim, hd) = (c.dim, c.head_dim());
        let kv_dim = c.n_kv_heads * hd;
        let mut layers = Vec::with_capacity(c.n_layers);
        for i in 0..c.n_layers {
            let at = |s: &str| format!("llm.layers.{i}.{s}");
            let gate_name = at("attention.gate");
            let gate: Vec<f32> = if store.has(&gate_name) {
                store.values(&gate_name, &[1, c.n_heads, 1, 1])?
            } else {
                vec![0.0; c.n_heads]
            };
            let gate: Vec<f32> = gate.iter().flat_map(|g| std::iter::repeat_n(g.tanh(), hd)).collect();
            let has_bias = store.has(&at("attention.wq.bias"));
            layers.push(Layer {
                attention_norm: RmsNorm::load(store, &at("attention_norm"), dim, c.norm_eps)?,
                wq: Linear::load(store, &at("attention.wq"), dim, dim, has_bias)?,
                wk: Linear::load(store, &at("attention.wk"), kv_dim, dim, store.has(&at("attention.wk.bias")))?,
                wv: Linear::load(store, &at("attention.wv"), kv_dim, dim, store.has(&at("attention.wv.bias")))?,
                wo: Linear::load(store, &at("attention.wo"), dim, dim, has_bias)?,
                ffn_norm: RmsNorm::load(store, &at("ffn_norm"), dim, c.norm_eps)?,
                feed_forward: FeedForward::load(store, &at("feed_forward"), dim, c.ffn_hidden, has_bias)?,
                gate: gpu.upload(&gate_name, &[dim], store.dtype(), &gate)?,
                wv_lora: match store.shape(&at("attention.wv_lora_down.weight")) {
                    Ok(&[rank, _]) => Some((
                        Linear::load(store, &at("attention.wv_lora_down"), rank, dim, false)?,
                        Linear::load(store, &at("attention.wv_lora_up"), kv_dim, rank, false)?,
                    )),
                    _ => None,
                },
            });
        }
        let n_prefix = c.prefix.len();
        let prefix_query = if n_prefix > 0 { store.tensor("llm.prefix_query", &[n_prefix, dim])? } else { gpu.zeros("no prefix", &[1, dim], store.dtype())? };
        Ok(Llama {
            tok_embeddings: store.tensor("llm.tok_embeddings.weight", &[c.vocab, dim])?,
            norm: RmsNorm::load(store, "llm.norm", dim, c.norm_eps)?,
            output: Linear::load(store, "llm.output", c.vocab, dim, false)?,
            rope: RopeTable::new(gpu, c.max_seq, hd, c.rope_theta)?,
            prefix_query,
            layers,
            dtype: store.dtype(),
            config,
        })
    }

    fn heads(&self) -> HeadShape {
        HeadShape { heads: self.config.n_heads, kv_heads: self.config.n_kv_heads, head_dim: self.config.head_dim() }
    }

    /// Index of the first adapter layer.
    fn first_adapter(&self) -> usize {
        self.config.n_layers - self.config.prefix.len()
    }

    /// An empty cache for `slots` sequences of up to `max_seq` tokens (at most the config's),
    /// every slot's prefix set for no media.
    pub fn new_cache(&self, gpu: &Gpu, slots: usize, max_seq: usize) -> Result<KvCache> {
        if slots == 0 || max_seq == 0 || max_seq > self.config.max_seq {
            return Err(Error::Request(format!("KV cache: {slots} slots of {max_seq} tokens; the model allows 1 or more slots of up to {} tokens", self.config.max_seq)));
        }
        let c = &self.config;
        let kv_dim = c.n_kv_heads * c.head_dim();
        let mut cache = KvCache {
            slots,
            max_seq,
            lens: vec![0; slots],
            k: (0..c.n_layers).map(|_| gpu.zeros("k cache", &[slots * max_seq, kv_dim], self.dtype)).collect::<Result<_, _>>()?,
            v: (0..c.n_layers).map(|_| gpu.zeros("v cache", &[slots * max_seq, kv_dim], self.dtype)).collect::<Result<_, _>>()?,
            prefix: (0..c.prefix.len()).map(|_| gpu.zeros("adapter prefix", &[slots, c.dim], self.dtype)).collect::<Result<_, _>>()?,
        };
        let mut rec = Recorder::new(gpu);
        for slot in 0..slots {
            self.set_media(&mut rec, &mut cache, slot, Media::default())?;
        }
        rec.submit()?;
        Ok(cache)
    }

    /// Sets the media of sequence `slot`: each adapter layer's `tanh(gate) * wv(feature +
    /// prefix_query[i])`.
    pub fn set_media(&self, rec: &mut Recorder, cache: &mut KvCache, slot: usize, media: Media) -> Result<()> {
        let c = &self.config;
        if slot >= cache.slots {
            return Err(Error::Request(format!("sequence slot {slot} is past the cache's {}", cache.slots)));
        }
        if c.prefix.is_empty() {
            return Ok(());
        }
        let gpu = rec.gpu;
        // A table of [zeros, music, image, video] rows; adapter layer i picks its medium's row.
        let table = gpu.zeros("media", &[4, c.dim], self.dtype)?;
        let mut pick = vec![0u32; c.prefix.len()];
        for (row, m) in Modality::ALL.iter().enumerate() {
            if let Some(feature) = media.get(*m) {
                if feature.numel() != c.dim || feature.dtype() != self.dtype {
                    return Err(Error::Request(format!("{m:?} feature: shape {:?} {}, expected (1, {}) {}", feature.shape(), feature.dtype().name(), c.dim, self.dtype.name())));
                }
                let to = gpu.upload_u32("media row", &[1], &[row as u32 + 1])?;
                rec.kv_write(&feature.reshape(&[1, c.dim])?, &table, &to)?;
                for (i, p) in c.prefix.iter().enumerate() {
                    if p == m {
                        pick[i] = row as u32 + 1;
                    }
                }
            }
        }
        let pick = gpu.upload_u32("media per adapter layer", &[pick.len()], &pick)?;
        let features = rec.embedding(&table, &pick)?;
        let prefix = rec.add(&features, &self.prefix_query)?;
        let slot_row = gpu.upload_u32("slot", &[1], &[slot as u32])?;
        for (i, layer) in self.layers[self.first_adapter()..].iter().enumerate() {
            let row = gpu.upload_u32("adapter layer", &[1], &[i as u32])?;
            let p = rec.embedding(&prefix, &row)?;
            let mut value = layer.wv.forward(rec, &p)?;
            if let Some((down, up)) = &layer.wv_lora {
                let low = down.forward(rec, &p)?;
                let lora = up.forward(rec, &low)?;
                value = rec.sub(&value, &lora)?;
            }
            let gated = rec.mul(&value, &layer.gate)?;
            rec.kv_write(&gated, &cache.prefix[i], &slot_row)?;
        }
        Ok(())
    }

    /// Token embeddings of `tokens`, `(n, dim)` (also the output projector's second input).
    pub fn embed(&self, rec: &mut Recorder, tokens: &[u32]) -> Result<GpuTensor> {
        if let Some(&t) = tokens.iter().find(|&&t| t as usize >= self.config.vocab) {
            return Err(Error::Request(format!("token {t} is past the vocabulary of {}", self.config.vocab)));
        }
        let ids = rec.gpu.upload_u32("tokens", &[tokens.len()], tokens)?;
        Ok(rec.embedding(&self.tok_embeddings, &ids)?)
    }

    /// Runs `tokens` of sequence `slot` after what its cache holds, storing their keys and
    /// values. Returns the hidden states `(tokens, dim)` before the final norm.
    pub fn prefill(&self, rec: &mut Recorder, cache: &mut KvCache, slot: usize, tokens: &[u32]) -> Result<GpuTensor> {
        let seq = tokens.len();
        let pos0 = *cache.lens.get(slot).ok_or_else(|| Error::Request(format!("sequence slot {slot} is past the cache's {}", cache.slots)))?;
        if seq == 0 || pos0 + seq > cache.max_seq {
            return Err(Error::Request(format!("{seq} tokens after {pos0} do not fit the cache's {} per sequence", cache.max_seq)));
        }
        let gpu = rec.gpu;
        let base = slot * cache.max_seq;
        let rows: Vec<u32> = (base + pos0..base + pos0 + seq).map(|r| r as u32).collect();
        let rows = gpu.upload_u32("cache rows", &[seq], &rows)?;
        let positions: Vec<u32> = (pos0..pos0 + seq).map(|p| p as u32).collect();
        let positions = gpu.upload_u32("positions", &[seq], &positions)?;
        let slot_row = gpu.upload_u32("slot", &[1], &[slot as u32])?;
        let mut x = self.embed(rec, tokens)?;
        for (l, layer) in self.layers.iter().enumerate() {
            let attn = self.attend(rec, layer, l, cache, &x, &rows, &positions, pos0 + seq, |rec, q, k, v, shape| {
                Ok(rec.attention(Heads::of(q), Heads::of(k), Heads::of(v), shape, base..base + pos0 + seq, Some(pos0))?)
            })?;
            let attn = match l.checked_sub(self.first_adapter()) {
                Some(i) => {
                    let prefix = rec.embedding(&cache.prefix[i], &slot_row)?;
                    rec.add(&attn, &prefix)?
                }
                None => attn,
            };
            x = self.finish_layer(rec, layer, &x, &attn)?;
        }
        cache.lens[slot] += seq;
        Ok(x)
    }

    /// Runs one token for every slot (`tokens[s]` for slot `s`) after what each holds. Returns
    /// the hidden states `(slots, dim)` before the final norm.
    pub fn decode(&self, rec: &mut Recorder, cache: &mut KvCache, tokens: &[u32]) -> Result<GpuTensor> {
        if tokens.len() != cache.slots {
            return Err(Error::Request(format!("decode: {} tokens for {} sequence slots", tokens.len(), cache.slots)));
        }
        if let Some(s) = cache.lens.iter().position(|&l| l >= cache.max_seq) {
            return Err(Error::Request(format!("sequence {s} is full ({} tokens)", cache.max_seq)));
        }
        let gpu = rec.gpu;
        let rows: Vec<u32> = cache.lens.iter().enumerate().map(|(s, &l)| (s * cache.max_seq + l) as u32).collect();
        let rows = gpu.upload_u32("cache rows", &[tokens.len()], &rows)?;
        let positions: Vec<u32> = cache.lens.iter().map(|&l| l as u32).collect();
        let positions = gpu.upload_u32("positions", &[tokens.len()], &positions)?;
        let lens: Vec<u32> = cache.lens.iter().map(|&l| l as u32 + 1).collect();
        let lens = gpu.upload_u32("keys per slot", &[tokens.len()], &lens)?;
        let max_len = cache.lens.iter().max().copied().unwrap_or(0) + 1;
        let max_seq = cache.max_seq;
        let mut x = self.embed(rec, tokens)?;
        for (l, layer) in self.layers.iter().enumerate() {
            let attn = self.attend(rec, layer, l, cache, &x, &rows, &positions, max_len, |rec, q, k, v, shape| {
                Ok(rec.attention_decode(Heads::of(q), k, v, shape, max_seq, &lens, max_len)?)
            })?;
            let attn = match l.checked_sub(self.first_adapter()) {
                Some(i) => rec.add(&attn, &cache.prefix[i])?,
                None => attn,
            };
            x = self.finish_layer(rec, layer, &x, &attn)?;
        }
        for l in &mut cache.lens {
            *l += 1;
        }
        Ok(x)
    }

    /// Norm, q/k/v, RoPE, the cache write, then `attention` over the cache.
    #[allow(clippy::too_many_arguments)]
    fn attend(
        &self,
        rec: &mut Recorder,
        layer: &Layer,
        l: usize,
        cache: &KvCache,
        x: &GpuTensor,
        rows: &GpuTensor,
        positions: &GpuTensor,
        end: usize,
        attention: impl Fn(&mut Recorder, &GpuTensor, &GpuTensor, &GpuTensor, HeadShape) -> Result<GpuTensor>,
    ) -> Result<GpuTensor> {
        let shape = self.heads();
        let n = x.rows();
        let h = layer.attention_norm.forward(rec, x)?;
        let q = layer.wq.forward(rec, &h)?.reshape(&[n, shape.heads, shape.head_dim])?;
        let k = layer.wk.forward(rec, &h)?.reshape(&[n, shape.kv_heads, shape.head_dim])?;
        let v = layer.wv.forward(rec, &h)?;
        let q = rec.rope_at(&q, &self.rope, positions, end)?.reshape(&[n, shape.heads * shape.head_dim])?;
        let k = rec.rope_at(&k, &self.rope, positions, end)?.reshape(&[n, shape.kv_heads * shape.head_dim])?;
        rec.kv_write(&k, &cache.k[l], rows)?;
        rec.kv_write(&v, &cache.v[l], rows)?;
        attention(rec, &q, &cache.k[l], &cache.v[l], shape)
    }

    /// `wo`, the residual, then the feed-forward block and its residual.
    fn finish_layer(&self, rec: &mut Recorder, layer: &Layer, x: &GpuTensor, attn: &GpuTensor) -> Result<GpuTensor> {
        let o = layer.wo.forward(rec, attn)?;
        let x = rec.add(x, &o)?;
        let h = layer.ffn_norm.forward(rec, &x)?;
        let f = layer.feed_forward.forward(rec, &h)?;
        Ok(rec.add(&x, &f)?)
    }

    /// Rows `rows` of `hidden`.
    pub fn rows(&self, rec: &mut Recorder, hidden: &GpuTensor, rows: &[u32]) -> Result<GpuTensor> {
        let ids = rec.gpu.upload_u32("rows", &[rows.len()], rows)?;
        Ok(rec.embedding(hidden, &ids)?)
    }

    /// Logits `(rows, vocab)` of hidden states `(rows, dim)`: the final norm, then `output`.
    pub fn logits(&self, rec: &mut Recorder, hidden: &GpuTensor) -> Result<GpuTensor> {
        let h = self.norm.forward(rec, hidden)?;
        self.output.forward(rec, &h)
    }

    /// The activation type.
    pub fn dtype(&self) -> DType {
        self.dtype
    }
}

impl KvCache {
    /// Forgets every sequence (keys stay allocated; media prefixes are kept).
    pub fn clear(&mut self) {
        self.lens.iter_mut().for_each(|l| *l = 0);
    }

    /// Bytes of keys and values held on the GPU.
    pub fn bytes(&self) -> u64 {
        self.k.iter().chain(&self.v).map(GpuTensor::bytes).sum()
    }
}
