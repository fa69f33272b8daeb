//! ViT (images) and ViViT (video): one pre-norm transformer behind two embeddings. A token
//! is a patch (ViT: `Conv2d` with kernel and stride `patch`) or a tubelet (ViViT: `Conv3d`
//! over `tubelet` frames too); the embedding is that convolution as a product over the rows
//! [`m2ugen_core::media::Planar::token_rows`] cuts, then the CLS token before them and the
//! learned position embeddings added. Blocks are `h + attn(LN(h))`, `h + mlp(LN(h))`, and the
//! last hidden state is after the final LayerNorm (what M2UGen aggregates).

use crate::layers::{LayerNorm, Linear, Mlp, MultiHeadAttention};
use crate::{Error, Result, Store};
use m2ugen_core::config::{Activation, VitConfig, VivitConfig};
use m2ugen_gpu::{Gpu, GpuTensor, HeadShape, Recorder, Unary, Weight};

/// The geometry shared by ViT and ViViT.
#[derive(Clone, Debug, PartialEq)]
pub struct VisionConfig {
    /// Width.
    pub hidden: usize,
    /// Blocks.
    pub layers: usize,
    /// Attention heads.
    pub heads: usize,
    /// MLP width.
    pub intermediate: usize,
    /// MLP activation.
    pub act: Activation,
    /// LayerNorm epsilon.
    pub eps: f32,
    /// Frame side in pixels (input frames are square).
    pub image_size: usize,
    /// Patch side in pixels.
    pub patch: usize,
    /// Frames per tubelet (1: ViT).
    pub tubelet: usize,
    /// Frames per input (1: ViT).
    pub frames: usize,
    /// Colour channels.
    pub channels: usize,
    /// Biases on q, k, v.
    pub qkv_bias: bool,
}

impl VisionConfig {
    /// ViT's.
    pub fn vit(c: &VitConfig) -> Self {
        VisionConfig { hidden: c.hidden_size, layers: c.num_hidden_layers, heads: c.num_attention_heads, intermediate: c.intermediate_size, act: c.hidden_act, eps: c.layer_norm_eps, image_size: c.image_size, patch: c.patch_size, tubelet: 1, frames: 1, channels: c.num_channels, qkv_bias: c.qkv_bias }
    }

    /// ViViT's (square tubelets).
    pub fn vivit(c: &VivitConfig) -> Self {
        VisionConfig { hidden: c.hidden_size, layers: c.num_hidden_layers, heads: c.num_attention_heads, intermediate: c.intermediate_size, act: c.hidden_act, eps: c.layer_norm_eps, image_size: c.image_size, patch: c.tubelet_size[1], tubelet: c.tubelet_size[0], frames: c.num_frames, channels: c.num_channels, qkv_bias: c.qkv_bias }
    }

    /// Tokens without the CLS token.
    pub fn patches(&self) -> usize {
        (self.frames / self.tubelet) * (self.image_size / self.patch).pow(2)
    }

    /// Values in one token row.
    pub fn token_width(&self) -> usize {
        self.channels * self.tubelet * self.patch * self.patch
    }

    /// Every tensor [`VisionEncoder::load`] takes under `prefix`, with its shape.
    pub fn tensors(&self, prefix: &str) -> Vec<(String, Vec<usize>)> {
        let (h, p) = (self.hidden, self.patch);
        let mut t = Vec::new();
        let mut add = |name: String, shape: Vec<usize>| t.push((format!("{prefix}.{name}"), shape));
        let w = if self.tubelet == 1 && self.frames == 1 { vec![h, self.channels, p, p] } else { vec![h, self.channels, self.tubelet, p, p] };
        add("embeddings.patch_embeddings.projection.weight".into(), w);
        add("embeddings.patch_embeddings.projection.bias".into(), vec![h]);
        add("embeddings.cls_token".into(), vec![1, 1, h]);
        add("embeddings.position_embeddings".into(), vec![1, self.patches() + 1, h]);
        for i in 0..self.layers {
            let l = format!("layers.{i}");
            for q in ["q_proj", "k_proj", "v_proj", "o_proj"] {
                add(format!("{l}.attention.{q}.weight"), vec![h, h]);
                if self.qkv_bias || q == "o_proj" {
                    add(format!("{l}.attention.{q}.bias"), vec![h]);
                }
            }
            for n in ["layernorm_before", "layernorm_after"] {
                add(format!("{l}.{n}.weight"), vec![h]);
                add(format!("{l}.{n}.bias"), vec![h]);
            }
            add(format!("{l}.mlp.fc1.weight"), vec![self.intermediate, h]);
            add(format!("{l}.mlp.fc1.bias"), vec![self.intermediate]);
            add(format!("{l}.mlp.fc2.weight"), vec![h, self.intermediate]);
            add(format!("{l}.mlp.fc2.bias"), vec![h]);
        }
        add("layernorm.weight".into(), vec![h]);
        add("layernorm.bias".into(), vec![h]);
        t
    }

    /// Multiply-adds ×2 of one input: the embedding product and the blocks.
    pub fn flops(&self) -> f64 {
        let (n, h, i) = ((self.patches() + 1) as f64, self.hidden as f64, self.intermediate as f64);
        2.0 * self.patches() as f64 * self.token_width() as f64 * h + self.layers as f64 * (8.0 * n * h * h + 4.0 * n * n * h + 4.0 * n * h * i)
    }

    fn check(&self, what: &str) -> Result<()> {
        let ok = self.patch > 0 && self.tubelet > 0 && self.image_size % self.patch == 0 && self.frames % self.tubelet == 0 && self.heads > 0 && self.hidden % self.heads == 0;
        if ok { Ok(()) } else { Err(Error::Request(format!("{what} config: image_size {} by patch {}, {} frames by tubelet {}, hidden {} by {} heads must divide", self.image_size, self.patch, self.frames, self.tubelet, self.hidden, self.heads))) }
    }
}

struct Block {
    norm_before: LayerNorm,
    attention: MultiHeadAttention,
    norm_after: LayerNorm,
    mlp: Mlp,
}

/// ViT or ViViT, loaded.
pub struct VisionEncoder {
    config: VisionConfig,
    embed: Linear,
    cls: GpuTensor,
    positions: GpuTensor,
    blocks: Vec<Block>,
    norm: LayerNorm,
}

impl VisionEncoder {
    /// Loads the `{prefix}.*` tensors (`vit` or `vivit` in a converted model).
    pub fn load(gpu: &Gpu, store: &mut Store, prefix: &str, config: VisionConfig) -> Result<VisionEncoder> {
        config.check(prefix)?;
        let c = &config;
        let (h, p) = (c.hidden, c.patch);
        let e = format!("{prefix}.embeddings");
        let w_shape: Vec<usize> = if c.tubelet == 1 && c.frames == 1 { vec![h, c.channels, p, p] } else { vec![h, c.channels, c.tubelet, p, p] };
        let w = store.tensor(&format!("{e}.patch_embeddings.projection.weight"), &w_shape)?;
        let embed = Linear { weight: Weight::Dense(w.reshape(&[h, c.token_width()])?), bias: Some(store.tensor(&format!("{e}.patch_embeddings.projection.bias"), &[h])?) };
        let cls = store.tensor(&format!("{e}.cls_token"), &[1, 1, h])?.reshape(&[1, h])?;
        let tokens = c.patches() + 1;
        let positions = store.tensor(&format!("{e}.position_embeddings"), &[1, tokens, h])?.reshape(&[tokens, h])?;
        let shape = HeadShape { heads: c.heads, kv_heads: c.heads, head_dim: h / c.heads };
        let blocks = (0..c.layers)
            .map(|i| {
                let l = format!("{prefix}.layers.{i}");
                let a = format!("{l}.attention");
                let names = [format!("{a}.q_proj"), format!("{a}.k_proj"), format!("{a}.v_proj")];
                let mut attention = MultiHeadAttention::load_separate(gpu, store, [&names[0], &names[1], &names[2], &format!("{a}.o_proj")], h, shape, c.qkv_bias)?;
                if !c.qkv_bias {
                    attention.out.bias = Some(store.tensor(&format!("{a}.o_proj.bias"), &[h])?);
                }
                Ok(Block {
                    norm_before: LayerNorm::load(store, &format!("{l}.layernorm_before"), h, c.eps)?,
                    attention,
                    norm_after: LayerNorm::load(store, &format!("{l}.layernorm_after"), h, c.eps)?,
                    mlp: Mlp::load(store, &format!("{l}.mlp.fc1"), &format!("{l}.mlp.fc2"), h, c.intermediate, Unary::of(c.act), true)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let norm = LayerNorm::load(store, &format!("{prefix}.layernorm"), h, c.eps)?;
        Ok(VisionEncoder { config, embed, cls, positions, blocks, norm })
    }

    /// The geometry.
    pub fn config(&self) -> &VisionConfig {
        &self.config
    }

    /// The last hidden state `(patches + 1, hidden)` of one input given as token rows
    /// `(patches, token_width)` (uploaded from `Planar::token_rows`).
    pub fn forward(&self, rec: &mut Recorder, tokens: &GpuTensor) -> Result<GpuTensor> {
        let c = &self.config;
        if tokens.shape() != [c.patches(), c.token_width()] {
            return Err(Error::Request(format!("vision input: token rows {:?}, expected [{}, {}]", tokens.shape(), c.patches(), c.token_width())));
        }
        let patches = self.embed.forward(rec, tokens)?;
        let x = rec.concat(&[&self.cls, &patches], 0)?;
        let mut x = rec.add(&x, &self.positions)?;
        for b in &self.blocks {
            let n = b.norm_before.forward(rec, &x)?;
            let kv = b.attention.keys(rec, &n)?;
            x = b.attention.attend(rec, &n, &kv, Some(&x))?;
            let n = b.norm_after.forward(rec, &x)?;
            x = b.mlp.forward(rec, &n, Some(&x))?;
        }
        self.norm.forward(rec, &x)
    }
}
