//! The output projector: the LLM's hidden states at the 8 positions whose next token is
//! `[AUDi]`, plus those tokens' embeddings, become the music decoder's conditioning.
//!
//! `in_proj` (LLM width to the projector's), a PyTorch `nn.Transformer` (post-norm layers with
//! ReLU feed-forwards, final norms on both stacks) whose decoder attends from learned queries,
//! then `out_proj` to the decoder's conditioning width (MusicGen's T5 states).

use crate::layers::{LayerNorm, Linear, Mlp, MultiHeadAttention};
use crate::{Error, Result, Store};
use m2ugen_gpu::{Gpu, GpuTensor, Recorder, Unary};

/// PyTorch's `nn.Transformer` LayerNorm epsilon.
const EPS: f32 = 1e-5;

/// One post-norm layer: self-attention, (for the decoder) cross-attention, feed-forward, each
/// followed by its residual and norm.
struct TransformerLayer {
    self_attn: MultiHeadAttention,
    cross_attn: Option<MultiHeadAttention>,
    feed_forward: Mlp,
    norms: Vec<LayerNorm>,
}

/// The output projector's geometry.
#[derive(Clone, Debug, PartialEq)]
pub struct ProjectorConfig {
    /// LLM width (input).
    pub llm_dim: usize,
    /// Transformer width.
    pub dim: usize,
    /// Attention heads.
    pub heads: usize,
    /// Feed-forward width.
    pub ffn: usize,
    /// Encoder layers.
    pub encoder_layers: usize,
    /// Decoder layers.
    pub decoder_layers: usize,
    /// Learned queries (output tokens).
    pub queries: usize,
    /// Output width (the music decoder's conditioning width).
    pub out_dim: usize,
}

impl ProjectorConfig {
    /// The paper's: 4096 -> 512 (4 heads, FFN 2048, 4 + 4 layers), 128 queries, -> 768 (T5-base).
    pub fn m2ugen_musicgen() -> Self {
        ProjectorConfig { llm_dim: 4096, dim: 512, heads: 4, ffn: 2048, encoder_layers: 4, decoder_layers: 4, queries: 128, out_dim: 768 }
    }

    /// The reference fixture's: 64 -> 32 (4 heads, FFN 128, 4 + 4 layers), 128 queries, -> 32.
    pub fn tiny() -> Self {
        ProjectorConfig { llm_dim: 64, dim: 32, heads: 4, ffn: 128, encoder_layers: 4, decoder_layers: 4, queries: 128, out_dim: 32 }
    }

    /// The geometry from the stored tensors' shapes; heads are not stored, so they are given
    /// (4 in every released checkpoint).
    pub fn from_store(store: &Store, heads: usize) -> Result<Self> {
        let first = |name: &str| -> Result<usize> { Ok(*store.shape(name)?.first().unwrap_or(&0)) };
        let count = |stack: &str| (0..).take_while(|i| store.has(&format!("output_projector.transformer.{stack}.layers.{i}.linear1.weight"))).count();
        let in_shape = store.shape("output_projector.in_proj.weight")?;
        let queries = store.shape("output_projector.queries")?;
        let dim = first("output_projector.in_proj.weight")?;
        if heads == 0 || dim % heads != 0 {
            return Err(Error::Config { field: "output_projector.heads".into(), problem: format!("{heads} heads do not divide width {dim}") });
        }
        Ok(ProjectorConfig {
            llm_dim: in_shape.get(1).copied().unwrap_or(0),
            dim,
            heads,
            ffn: first("output_projector.transformer.encoder.layers.0.linear1.weight")?,
            encoder_layers: count("encoder"),
            decoder_layers: count("decoder"),
            queries: queries.get(1).copied().unwrap_or(0),
            out_dim: first("output_projector.out_proj.weight")?,
        })
    }
}

/// The output projector on the GPU.
pub struct OutputProjector {
    /// The geometry.
    pub config: ProjectorConfig,
    in_proj: Linear,
    encoder: Vec<TransformerLayer>,
    encoder_norm: LayerNorm,
    decoder: Vec<TransformerLayer>,
    decoder_norm: LayerNorm,
    queries: GpuTensor,
    out_proj: Linear,
}

impl OutputProjector {
    /// Builds the projector from uploaded tensors (`output_projector.*`).
    pub fn load(gpu: &Gpu, store: &Store, config: ProjectorConfig) -> Result<Self> {
        let c = &config;
        let t = "output_projector.transformer";
        let layer = |stack: &str, i: usize, decoder: bool| -> Result<TransformerLayer> {
            let at = format!("{t}.{stack}.layers.{i}");
            Ok(TransformerLayer {
                self_attn: MultiHeadAttention::load_pytorch(gpu, store, &format!("{at}.self_attn"), c.dim, c.heads)?,
                cross_attn: if decoder { Some(MultiHeadAttention::load_pytorch(gpu, store, &format!("{at}.multihead_attn"), c.dim, c.heads)?) } else { None },
                feed_forward: Mlp::load(store, &format!("{at}.linear1"), &format!("{at}.linear2"), c.dim, c.ffn, Unary::Relu, true)?,
                norms: (1..=if decoder { 3 } else { 2 }).map(|n| LayerNorm::load(store, &format!("{at}.norm{n}"), c.dim, EPS)).collect::<Result<_>>()?,
            })
        };
        Ok(OutputProjector {
            in_proj: Linear::load(store, "output_projector.in_proj", c.dim, c.llm_dim, true)?,
            encoder: (0..c.encoder_layers).map(|i| layer("encoder", i, false)).collect::<Result<_>>()?,
            encoder_norm: LayerNorm::load(store, &format!("{t}.encoder.norm"), c.dim, EPS)?,
            decoder: (0..c.decoder_layers).map(|i| layer("decoder", i, true)).collect::<Result<_>>()?,
            decoder_norm: LayerNorm::load(store, &format!("{t}.decoder.norm"), c.dim, EPS)?,
            queries: store.tensor("output_projector.queries", &[1, c.queries, c.dim])?.reshape(&[c.queries, c.dim])?,
            out_proj: Linear::load(store, "output_projector.out_proj", c.out_dim, c.dim, true)?,
            config,
        })
    }

    /// `hidden` `(n, llm_dim)` (states before the LLM's final norm) and the `[AUD]` embeddings
    /// `(n, llm_dim)` to the conditioning `(queries, out_dim)`.
    pub fn forward(&self, rec: &mut Recorder, hidden: &GpuTensor, aud_embeddings: &GpuTensor) -> Result<GpuTensor> {
        let x = rec.add(hidden, aud_embeddings)?;
        let mut x = self.in_proj.forward(rec, &x)?;
        for l in &self.encoder {
            let a = l.self_attn.forward(rec, &x, None)?;
            x = l.norms[0].add_norm(rec, &x, &a)?;
            let f = l.feed_forward.forward(rec, &x, None)?;
            x = l.norms[1].add_norm(rec, &x, &f)?;
        }
        let memory = self.encoder_norm.forward(rec, &x)?;
        let mut y = self.queries.clone();
        for l in &self.decoder {
            let a = l.self_attn.forward(rec, &y, None)?;
            y = l.norms[0].add_norm(rec, &y, &a)?;
            if let Some(cross) = &l.cross_attn {
                let a = cross.forward(rec, &y, Some(&memory))?;
                y = l.norms[1].add_norm(rec, &y, &a)?;
            }
            let f = l.feed_forward.forward(rec, &y, None)?;
            y = l.norms[2].add_norm(rec, &y, &f)?;
        }
        let y = self.decoder_norm.forward(rec, &y)?;
        self.out_proj.forward(rec, &y)
    }
}

