//! LLaMA (Meta layout: RMSNorm, RoPE in Meta's pair convention, SwiGLU, grouped-query attention
//! ready) with M2UGen's LLaMA-Adapter parts: biases on wq, wo, w1, w2, w3 (LoRA already folded
//! by the converter), a per-head `gate`, and the adapter prefix of the last layers.
//!
//! The prefix: adapter layer `i` takes `media feature + prefix_query[i]` (the media of its group:
//! music, image or video, by the model's kind; a missing medium leaves `prefix_query[i]` alone).
//! Being one token, it adds `tanh(gate_h) * wv(prefix)` to head `h`'s attention output, with no
//! softmax over it (as the reference does). The reference's `wv` there is the base weight without
//! its LoRA (checked against the fixture): the converter folds LoRA into `wv` and keeps the pair,
//! which is subtracted again for the prefix. That vector depends only on the media, so it is
//! computed once per sequence ([`Llama::set_media`]) and kept in the [`KvCache`] beside the keys
//! and values; the attention kernel adds it to its output.
//!
//! **A layer is nine launches** (21 before they were fused): the attention norm; the fused q|k|v
//! product; RoPE with the cache write of keys and values; the attention, adding the adapter
//! prefix (a second launch past 256 keys in decoding); `wo` with the residual; the FFN norm; the
//! fused gate|up product; the SwiGLU gate; `w2` with the residual. Folding a norm or the gate
//! into the product that follows was measured slower (every workgroup of the product then
//! re-reads the input row: one more load, and for the gate an exp, per weight and row).
//!
//! Generation keeps keys and values on the GPU: [`Llama::prefill`] runs a prompt (or a
//! continuation) of one sequence slot; [`Llama::decode`] runs one token for every slot at once.

use crate::layers::{FeedForward, Linear, RmsNorm};
use crate::{Error, Result, Store};
use m2ugen_core::config::{LlamaConfig, LlamaParams, ModelKind, Modality};
use m2ugen_core::DType;
use m2ugen_gpu::{Attention, DecodeAttention, Gpu, GpuTensor, HeadShape, Heads, Recorder, RopeTable};

/// One transformer layer.
struct Layer {
    attention_norm: RmsNorm,
    /// wq|wk|wv in one product.
    wqkv: Linear,
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

impl Llama {
    /// The geometry from the stored `params` (the manifest's `llama` component), the model's
    /// kind (which says what its adapter layers take) and the stored tensors' shapes: the
    /// vocabulary from `llm.tok_embeddings`, the FFN width from `w1`.
    pub fn config(params: &LlamaParams, kind: ModelKind, store: &Store, max_seq: usize) -> Result<LlamaConfig> {
        let first = |name: &str| -> Result<usize> { Ok(*store.shape(name)?.first().unwrap_or(&0)) };
        let vocab = first("llm.tok_embeddings.weight")?;
        let ffn_hidden = first("llm.layers.0.feed_forward.w1.weight")?;
        let prefix = kind.adapter_layers();
        let rows = if store.has("llm.prefix_query") { first("llm.prefix_query")? } else { 0 };
        if rows != prefix.len() {
            return Err(Error::Tensor { name: "llm.prefix_query".into(), problem: format!("{rows} rows, but a {kind} model has {} adapter layers", prefix.len()) });
        }
        let config = LlamaConfig::from_params(params, vocab, ffn_hidden, prefix, max_seq)?;
        if !config.prefix.is_empty() && config.n_kv_heads != config.n_heads {
            return Err(Error::Config { field: "llama.n_kv_heads".into(), problem: "the adapter prefix needs as many key/value heads as query heads".into() });
        }
        Ok(config)
    }

    /// Builds the model from uploaded tensors (names as the converter writes them), taking the
    /// ones it fuses out of the store.
    pub fn load(gpu: &Gpu, store: &mut Store, config: LlamaConfig) -> Result<Llama> {
        let c = &config;
        let (dim, hd) = (c.dim, c.head_dim());
        let kv_dim = c.n_kv_heads * hd;
        let mut layers = Vec::with_capacity(c.n_layers);
        for i in 0..c.n_layers {
            let at = |s: &str| format!("llm.layers.{i}.{s}");
            let gate_name = at("attention.gate");
            let gate: Vec<f32> = if store.has(&gate_name) { store.values(&gate_name, &[1, c.n_heads, 1, 1])? } else { vec![0.0; c.n_heads] };
            let gate: Vec<f32> = gate.iter().flat_map(|g| std::iter::repeat_n(g.tanh(), hd)).collect();
            let has_bias = store.has(&at("attention.wo.bias"));
            let wv_lora = match store.shape(&at("attention.wv_lora_down.weight")) {
                Ok(&[rank, _]) => Some((Linear::load(store, &at("attention.wv_lora_down"), rank, dim, false)?, Linear::load(store, &at("attention.wv_lora_up"), kv_dim, rank, false)?)),
                _ => None,
            };
            layers.push(Layer {
                attention_norm: RmsNorm::load(store, &at("attention_norm"), dim, c.norm_eps)?,
                wqkv: Linear::load_fused(gpu, store, &[(&at("attention.wq"), dim), (&at("attention.wk"), kv_dim), (&at("attention.wv"), kv_dim)], dim)?,
                wo: Linear::load(store, &at("attention.wo"), dim, dim, has_bias)?,
                ffn_norm: RmsNorm::load(store, &at("ffn_norm"), dim, c.norm_eps)?,
                feed_forward: FeedForward::load(gpu, store, &at("feed_forward"), dim, c.ffn_hidden, has_bias)?,
                gate: gpu.upload(&gate_name, &[dim], store.dtype(), &gate)?,
                wv_lora,
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
        // A table of [zeros, music, image, video] rows; adapter layer i picks its medium's row.
        let table = rec.alloc("media", &[4, c.dim], self.dtype)?;
        rec.fill(&table, 0.0)?;
        let mut pick = vec![0u32; c.prefix.len()];
        for (row, m) in Modality::ALL.iter().enumerate() {
            if let Some(feature) = media.get(*m) {
                if feature.numel() != c.dim || feature.dtype() != self.dtype {
                    return Err(Error::Request(format!("{m:?} feature: shape {:?} {}, expected (1, {}) {}", feature.shape(), feature.dtype().name(), c.dim, self.dtype.name())));
                }
                let to = rec.upload_u32("media row", &[1], &[row as u32 + 1])?;
                rec.scatter_rows(&feature.reshape(&[1, c.dim])?, &table, &to)?;
                for (i, p) in c.prefix.iter().enumerate() {
                    if p == m {
                        pick[i] = row as u32 + 1;
                    }
                }
            }
        }
        let pick = rec.upload_u32("media per adapter layer", &[pick.len()], &pick)?;
        let features = rec.gather_rows(&table, &pick)?;
        let prefix = rec.add(&features, &self.prefix_query)?;
        let slot_row = rec.upload_u32("slot", &[1], &[slot as u32])?;
        let kv_dim = c.n_kv_heads * c.head_dim();
        for (i, layer) in self.layers[self.first_adapter()..].iter().enumerate() {
            let row = rec.upload_u32("adapter layer", &[1], &[i as u32])?;
            let p = rec.gather_rows(&prefix, &row)?;
            let qkv = layer.wqkv.forward(rec, &p)?;
            let mut value = rec.slice(&qkv, 1, c.dim + kv_dim..c.dim + 2 * kv_dim)?;
            if let Some((down, up)) = &layer.wv_lora {
                let low = down.forward(rec, &p)?;
                let lora = up.forward(rec, &low)?;
                value = rec.sub(&value, &lora)?;
            }
            let gated = rec.mul(&value, &layer.gate)?;
            rec.scatter_rows(&gated, &cache.prefix[i], &slot_row)?;
        }
        Ok(())
    }

    /// Token embeddings of `tokens`, `(n, dim)` (also the output projector's second input).
    pub fn embed(&self, rec: &mut Recorder, tokens: &[u32]) -> Result<GpuTensor> {
        if let Some(&t) = tokens.iter().find(|&&t| t as usize >= self.config.vocab) {
            return Err(Error::Request(format!("token {t} is past the vocabulary of {}", self.config.vocab)));
        }
        let ids = rec.upload_u32("tokens", &[tokens.len()], tokens)?;
        Ok(rec.gather_rows(&self.tok_embeddings, &ids)?)
    }

    /// Runs `tokens` of sequence `slot` after what its cache holds, storing their keys and
    /// values. Returns the hidden states `(tokens, dim)` before the final norm.
    pub fn prefill(&self, rec: &mut Recorder, cache: &mut KvCache, slot: usize, tokens: &[u32]) -> Result<GpuTensor> {
        let seq = tokens.len();
        let pos0 = *cache.lens.get(slot).ok_or_else(|| Error::Request(format!("sequence slot {slot} is past the cache's {}", cache.slots)))?;
        if seq == 0 || pos0 + seq > cache.max_seq {
            return Err(Error::Request(format!("{seq} tokens after {pos0} do not fit the cache's {} per sequence", cache.max_seq)));
        }
        let base = slot * cache.max_seq;
        let rows: Vec<u32> = (base + pos0..base + pos0 + seq).map(|r| r as u32).collect();
        let rows = rec.upload_u32("cache rows", &[seq], &rows)?;
        let positions: Vec<u32> = (pos0..pos0 + seq).map(|p| p as u32).collect();
        let positions = rec.upload_u32("positions", &[seq], &positions)?;
        let shape = self.heads();
        let mut x = self.embed(rec, tokens)?;
        for (l, layer) in self.layers.iter().enumerate() {
            let h = layer.attention_norm.forward(rec, &x)?;
            let qkv = layer.wqkv.forward(rec, &h)?;
            let q = rec.rope_kv(&qkv, shape, &self.rope, &positions, pos0 + seq, &cache.k[l], &cache.v[l], &rows)?;
            let mut a = Attention::new(Heads::of(&q), Heads::of(&cache.k[l]), Heads::of(&cache.v[l]), shape, base..base + pos0 + seq).causal(pos0);
            if let Some(i) = l.checked_sub(self.first_adapter()) {
                a = a.addend(&cache.prefix[i], slot, 0);
            }
            let attn = rec.attention(&a)?;
            x = self.finish_layer(rec, layer, &x, &attn)?;
        }
        cache.lens[slot] += seq;
        Ok(x)
    }

    /// Runs one token for every slot (`tokens[s]` for slot `s`) after what each holds. Returns
    /// the hidden states `(slots, dim)` before the final norm.
    pub fn decode(&self, rec: &mut Recorder, cache: &mut KvCache, tokens: &[u32]) -> Result<GpuTensor> {
        if let Some(&t) = tokens.iter().find(|&&t| t as usize >= self.config.vocab) {
            return Err(Error::Request(format!("token {t} is past the vocabulary of {}", self.config.vocab)));
        }
        let ids = rec.upload_u32("tokens", &[tokens.len()], tokens)?;
        self.decode_ids(rec, cache, &ids)
    }

    /// [`Llama::decode`] of token ids already on the GPU (`(slots)` u32, such as the last
    /// step's sampled tokens); ids past the vocabulary embed as zeros.
    pub fn decode_ids(&self, rec: &mut Recorder, cache: &mut KvCache, ids: &GpuTensor) -> Result<GpuTensor> {
        if ids.numel() != cache.slots {
            return Err(Error::Request(format!("decode: {} tokens for {} sequence slots", ids.numel(), cache.slots)));
        }
        if let Some(s) = cache.lens.iter().position(|&l| l >= cache.max_seq) {
            return Err(Error::Request(format!("sequence {s} is full ({} tokens)", cache.max_seq)));
        }
        let slots = cache.slots;
        let rows: Vec<u32> = cache.lens.iter().enumerate().map(|(s, &l)| (s * cache.max_seq + l) as u32).collect();
        let rows = rec.upload_u32("cache rows", &[slots], &rows)?;
        let positions: Vec<u32> = cache.lens.iter().map(|&l| l as u32).collect();
        let positions = rec.upload_u32("positions", &[slots], &positions)?;
        let lens: Vec<u32> = cache.lens.iter().map(|&l| l as u32 + 1).collect();
        let lens = rec.upload_u32("keys per slot", &[slots], &lens)?;
        let max_len = cache.lens.iter().max().copied().unwrap_or(0) + 1;
        let shape = self.heads();
        let mut x = rec.gather_rows(&self.tok_embeddings, ids)?;
        for (l, layer) in self.layers.iter().enumerate() {
            let h = layer.attention_norm.forward(rec, &x)?;
            let qkv = layer.wqkv.forward(rec, &h)?;
            let q = rec.rope_kv(&qkv, shape, &self.rope, &positions, max_len, &cache.k[l], &cache.v[l], &rows)?;
            let mut a = DecodeAttention::new(Heads::of(&q), &cache.k[l], &cache.v[l], shape, cache.max_seq, &lens, max_len);
            if let Some(i) = l.checked_sub(self.first_adapter()) {
                a = a.addend(&cache.prefix[i], 0, 1);
            }
            let attn = rec.attention_decode(&a)?;
            x = self.finish_layer(rec, layer, &x, &attn)?;
        }
        for l in &mut cache.lens {
            *l += 1;
        }
        Ok(x)
    }

    /// `wo` with the residual, then the FFN norm and the feed-forward block with its
    /// residual.
    fn finish_layer(&self, rec: &mut Recorder, layer: &Layer, x: &GpuTensor, attn: &GpuTensor) -> Result<GpuTensor> {
        let x = layer.wo.forward_residual(rec, attn, Some(x))?;
        let h = layer.ffn_norm.forward(rec, &x)?;
        layer.feed_forward.forward(rec, &h, Some(&x))
    }

    /// Rows `rows` of `hidden`.
    pub fn rows(&self, rec: &mut Recorder, hidden: &GpuTensor, rows: &[u32]) -> Result<GpuTensor> {
        let ids = rec.upload_u32("rows", &[rows.len()], rows)?;
        Ok(rec.gather_rows(hidden, &ids)?)
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

    /// Bytes of weights a decoding step reads: every layer's and the output head, not the
    /// embedding table (one row per token).
    pub fn weight_bytes_per_step(&self) -> u64 {
        let layer: u64 = self
            .layers
            .iter()
            .map(|l| [&l.wqkv, &l.wo, &l.feed_forward.w13, &l.feed_forward.w2].iter().map(|lin| lin.weight.bytes() + lin.bias.as_ref().map_or(0, GpuTensor::bytes)).sum::<u64>() + l.attention_norm.weight.bytes() + l.ffn_norm.weight.bytes())
            .sum();
        layer + self.output.weight.bytes() + self.norm.weight.bytes()
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
