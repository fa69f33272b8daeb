//! AudioLDM 2's denoiser, `AudioLDM2UNet2DConditionModel` (Liu et al., "AudioLDM 2: Learning
//! Holistic Audio Generation with Self-supervised Pretraining", arXiv 2308.05734; diffusers'
//! `pipelines/audioldm2/modeling_audioldm2.py`), and the 2-D blocks the VAE's decoder shares
//! with it ([`crate::vae`]).
//!
//! Latents are channels-last, `(batch, height, width, channels)`: height is time, width the mel
//! bins over the VAE's scale. One forward is `UNet(latents, t, states)`:
//!
//! - **Time.** `Timesteps`: `boc[0]` values, `[cos | sin]` (`flip_sin_to_cos`) of `t · exp(-ln
//!   10000 · i / (half - freq_shift))`, computed in f32 on the CPU as `diffusers` does; then
//!   `TimestepEmbedding` (linear, SiLU, linear). One timestep serves the whole batch (the
//!   pipeline's guidance batch shares it), so each ResNet's `time_emb_proj(silu(emb))` is one row
//!   and rides as the bias of its first convolution (its stored bias folded in at load).
//! - **ResnetBlock2D** (`time_embedding_norm` `default`): GroupNorm, SiLU, 3x3 convolution, plus
//!   the time row, GroupNorm, SiLU, 3x3 convolution, plus the input (through a 1x1 convolution
//!   when the widths differ), over `output_scale_factor` (the mid block's
//!   `mid_block_scale_factor`). GroupNorms take `norm_eps`.
//! - **Attention layers.** After each ResNet of a cross-attention block, one
//!   `Transformer2DModel` per entry `k` of the block's `cross_attention_dim` list, in order:
//!   `null` attends to itself twice (`double_self_attention`: `attn2` is self-attention too);
//!   an entry at `k <= 1` attends in `attn2` to GPT-2's generated states
//!   (`encoder_hidden_states`, unmasked); an entry at `k > 1` to T5's states
//!   (`encoder_hidden_states_1`) with T5's mask as a `-10000` bias on masked keys, as the UNet
//!   turns `encoder_attention_mask_1` into one. Heads are `attention_head_dim` (the `diffusers`
//!   naming quirk: it is read as the number of heads), of `channels / heads` each, scores scaled
//!   by `1/√head_dim`.
//! - **Transformer2DModel**: GroupNorm (`norm_num_groups`, eps 1e-6), `proj_in` (a 1x1
//!   convolution, or a linear layer with `use_linear_projection`: the same product on
//!   channels-last pixels), `BasicTransformerBlock`s (LayerNorm eps 1e-5 before each of
//!   `attn1`, `attn2` and the GEGLU feed-forward `ff.net.2(h · gelu(g))`, `[h | g] =
//!   ff.net.0.proj(x)` of width `2 · 4 · channels`, exact GELU, each with a residual), then
//!   `proj_out` plus the transformer's input. Queries, keys and values carry no bias; `to_out.0`
//!   does.
//! - **Blocks.** Down block `i`: `layers_per_block` ResNets (each followed by its transformers),
//!   every output kept as a skip, then (but the last block) a 3x3 stride-2 convolution padded
//!   `downsample_padding` (`0`: one zero row and column added after), its output kept too. Mid:
//!   ResNet, transformers, ResNet. Up block `i` (the reversed widths, `layers + 1` ResNets): each
//!   ResNet takes `[hidden | skip]` along channels, the skips popped last-first; then (but the
//!   last) nearest 2x upsampling cut to the next skip's size (what `F.interpolate(size=..)`
//!   gives for the `2n - 1` a stride-2 convolution halves to `n`) and a 3x3 convolution. Out:
//!   GroupNorm, SiLU, convolution.

use crate::layers::{join_vectors, LayerNorm, Linear, VectorPart};
use crate::vae::{dims4, pointwise, upsample, Conv, GroupNorm, Listed, Resnet, ResnetKind};
use crate::{Error, Result, Store};
use m2ugen_core::config::audioldm2::UnetConfig;
use m2ugen_core::conv::Conv2d;
use m2ugen_core::DType;
use m2ugen_gpu::ops::MAX_HEAD_DIM;
use m2ugen_gpu::{Attention, Bias, Gpu, GpuTensor, HeadShape, Heads, Recorder, Unary, Weight};

/// The additive bias `diffusers` gives a masked key.
pub const MASKED: f32 = -10000.0;

/// The states a transformer's second attention reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Context {
    /// Its own pixels (`cross_attention_dim` entry `null`: self-attention twice).
    Own,
    /// GPT-2's generated states (`encoder_hidden_states`), unmasked.
    Generated,
    /// T5's states (`encoder_hidden_states_1`) under T5's mask.
    T5,
}

impl Context {
    /// The context of entry `k` of a block's `cross_attention_dim` list, as
    /// `CrossAttnDownBlock2D.forward` picks it.
    pub fn of(k: usize, dim: Option<usize>) -> Context {
        match dim {
            None => Context::Own,
            Some(_) if k <= 1 => Context::Generated,
            Some(_) => Context::T5,
        }
    }
}

/// One `Transformer2DModel`'s geometry.
#[derive(Clone, Copy)]
struct TransformerSpec {
    channels: usize,
    heads: usize,
    layers: usize,
    /// Width of the context (`cross_attention_dim` entry), `None` for self-attention.
    context_dim: Option<usize>,
    context: Context,
}

/// An attention layer: `proj` gives the queries (and, for self-attention, keys and values
/// beside them); cross-attention's keys and values come from [`UnetConditioning`].
struct Attn {
    proj: Linear,
    /// Index of this layer's keys and values in [`UnetConditioning`] (cross-attention).
    cross: Option<usize>,
    out: Linear,
}

struct BasicBlock {
    norm1: LayerNorm,
    attn1: Attn,
    norm2: LayerNorm,
    attn2: Attn,
    norm3: LayerNorm,
    /// The first half of GEGLU's projection, and the gate (second half).
    ff_hidden: Linear,
    ff_gate: Linear,
    ff_out: Linear,
}

struct Transformer {
    context: Context,
    shape: HeadShape,
    norm: GroupNorm,
    proj_in: Linear,
    blocks: Vec<BasicBlock>,
    proj_out: Linear,
}

/// A cross-attention's key and value projection of its context, computed once per generation.
struct CrossKeys {
    context: Context,
    kv: Linear,
}

/// What a [`Builder`] makes of each part of the walk (`level`: halvings below full size).
trait Builder {
    type Resnet;
    type Transformer;
    type Conv;
    fn conv(&mut self, name: &str, c_out: usize, c_in: usize, kernel: usize, conv: Conv2d, out_level: usize) -> Result<Self::Conv>;
    fn resnet(&mut self, name: &str, c_in: usize, c_out: usize, output_scale: f32, level: usize) -> Result<Self::Resnet>;
    fn transformer(&mut self, name: &str, spec: TransformerSpec, level: usize) -> Result<Self::Transformer>;
}

struct DownBlock<R, T, C> {
    resnets: Vec<R>,
    /// The transformers after each ResNet.
    attentions: Vec<Vec<T>>,
    downsample: Option<C>,
}

struct MidBlock<R, T> {
    first: R,
    layers: Vec<(Vec<T>, R)>,
}

struct UpBlock<R, T, C> {
    resnets: Vec<R>,
    attentions: Vec<Vec<T>>,
    upsample: Option<C>,
}

struct Blocks<R, T, C> {
    conv_in: C,
    down: Vec<DownBlock<R, T, C>>,
    mid: MidBlock<R, T>,
    up: Vec<UpBlock<R, T, C>>,
    conv_out: C,
}

/// Walks the UNet's structure from its configuration (once for loading, listing tensors and
/// counting FLOPs), naming each part as `diffusers` does.
fn walk<B: Builder>(c: &UnetConfig, b: &mut B) -> Result<Blocks<B::Resnet, B::Transformer, B::Conv>> {
    c.check("unet")?;
    let n = c.blocks();
    let boc = &c.block_out_channels;
    let transformers = |b: &mut B, name: &str, block: usize, channels: usize, first: usize, level: usize| -> Result<Vec<B::Transformer>> {
        let dims = c.cross_attention_dims(block);
        let spec = |k: usize, d: Option<usize>| TransformerSpec { channels, heads: c.heads(block), layers: c.transformer_layers(block), context_dim: d, context: Context::of(k, d) };
        dims.iter().enumerate().map(|(k, &d)| b.transformer(&format!("{name}.attentions.{}", first * dims.len() + k), spec(k, d), level)).collect()
    };
    let (k_in, k_out) = (c.conv_in_kernel, c.conv_out_kernel);
    let conv_in = b.conv("conv_in", boc[0], c.in_channels, k_in, Conv2d::same(k_in), 0)?;
    let mut down = Vec::with_capacity(n);
    let mut out = boc[0];
    for (i, &width) in boc.iter().enumerate() {
        let (c_in, name) = (out, format!("down_blocks.{i}"));
        out = width;
        let cross = c.down_block_types[i] == "CrossAttnDownBlock2D";
        let (mut resnets, mut attentions) = (Vec::new(), Vec::new());
        for j in 0..c.layers(i) {
            resnets.push(b.resnet(&format!("{name}.resnets.{j}"), if j == 0 { c_in } else { out }, out, 1.0, i)?);
            attentions.push(if cross { transformers(b, &name, i, out, j, i)? } else { Vec::new() });
        }
        let p = c.downsample_padding;
        let downsample = if i + 1 < n { Some(b.conv(&format!("{name}.downsamplers.0.conv"), out, out, 3, Conv2d { stride: [2, 2], padding: [p, p], ..Conv2d::plain() }, i + 1)?) } else { None };
        down.push(DownBlock { resnets, attentions, downsample });
    }
    let last = n - 1;
    let first = b.resnet("mid_block.resnets.0", boc[last], boc[last], c.mid_block_scale_factor, last)?;
    let ts = transformers(b, "mid_block", last, boc[last], 0, last)?;
    let mid = MidBlock { first, layers: vec![(ts, b.resnet("mid_block.resnets.1", boc[last], boc[last], c.mid_block_scale_factor, last)?)] };
    let mut up = Vec::with_capacity(n);
    let mut out = boc[last];
    for i in 0..n {
        let block = last - i;
        let (prev, name) = (out, format!("up_blocks.{i}"));
        out = boc[block];
        let input = boc[block.saturating_sub(1)];
        let cross = c.up_block_types[i] == "CrossAttnUpBlock2D";
        let layers = c.layers(block) + 1;
        let (mut resnets, mut attentions) = (Vec::new(), Vec::new());
        for j in 0..layers {
            let skip = if j + 1 == layers { input } else { out };
            let c_in = if j == 0 { prev } else { out };
            resnets.push(b.resnet(&format!("{name}.resnets.{j}"), c_in + skip, out, 1.0, block)?);
            attentions.push(if cross { transformers(b, &name, block, out, j, block)? } else { Vec::new() });
        }
        let upsample = if i + 1 < n { Some(b.conv(&format!("{name}.upsamplers.0.conv"), out, out, 3, Conv2d::same(3), block - 1)?) } else { None };
        up.push(UpBlock { resnets, attentions, upsample });
    }
    let conv_out = b.conv("conv_out", c.out_channels, boc[0], k_out, Conv2d::same(k_out), 0)?;
    Ok(Blocks { conv_in, down, mid, up, conv_out })
}

/// Builds the loaded parts.
struct Load<'a> {
    gpu: &'a Gpu,
    store: &'a mut Store,
    prefix: &'a str,
    config: &'a UnetConfig,
    cross: Vec<CrossKeys>,
}

impl Load<'_> {
    /// `{name}.to_q|to_k|to_v|to_out.0`: queries, keys and values fused for self-attention;
    /// for cross-attention the key and value projection of `context` goes to the conditioning.
    fn attn(&mut self, name: &str, channels: usize, context: Context, context_dim: Option<usize>) -> Result<Attn> {
        let out = Linear::load(self.store, &format!("{name}.to_out.0"), channels, channels, true)?;
        let (q, k, v) = (format!("{name}.to_q"), format!("{name}.to_k"), format!("{name}.to_v"));
        if context == Context::Own {
            let proj = Linear::load_fused(self.gpu, self.store, &[(&q, channels), (&k, channels), (&v, channels)], channels)?;
            return Ok(Attn { proj, cross: None, out });
        }
        let proj = Linear::load(self.store, &q, channels, channels, false)?;
        let kv = Linear::load_fused(self.gpu, self.store, &[(&k, channels), (&v, channels)], context_dim.unwrap_or(channels))?;
        self.cross.push(CrossKeys { context, kv });
        Ok(Attn { proj, cross: Some(self.cross.len() - 1), out })
    }
}

impl Builder for Load<'_> {
    type Resnet = Resnet;
    type Transformer = Transformer;
    type Conv = Conv;

    fn conv(&mut self, name: &str, c_out: usize, c_in: usize, kernel: usize, conv: Conv2d, _: usize) -> Result<Conv> {
        Conv::load(self.store, &format!("{}.{name}", self.prefix), c_out, c_in, kernel, conv)
    }

    fn resnet(&mut self, name: &str, c_in: usize, c_out: usize, output_scale: f32, _: usize) -> Result<Resnet> {
        let c = self.config;
        let kind = ResnetKind { groups: c.norm_num_groups, eps: c.norm_eps, temb: Some(c.time_embed_dim()), output_scale };
        Resnet::load(self.gpu, self.store, &format!("{}.{name}", self.prefix), c_in, c_out, kind)
    }

    fn transformer(&mut self, name: &str, s: TransformerSpec, _: usize) -> Result<Transformer> {
        let name = format!("{}.{name}", self.prefix);
        let ch = s.channels;
        let head_dim = if s.heads > 0 && ch.is_multiple_of(s.heads) { ch / s.heads } else { 0 };
        if head_dim == 0 || head_dim % 4 != 0 || head_dim > MAX_HEAD_DIM {
            return Err(Error::Config { field: "unet.attention_head_dim".into(), problem: format!("{} heads of {ch} channels ({name}): the attention kernel takes heads of a multiple of 4 up to {MAX_HEAD_DIM} values", s.heads) });
        }
        let project = |store: &Store, what: &str| if self.config.use_linear_projection { Linear::load(store, &format!("{name}.{what}"), ch, ch, true) } else { pointwise(store, &format!("{name}.{what}"), ch, ch) };
        let (proj_in, proj_out) = (project(self.store, "proj_in")?, project(self.store, "proj_out")?);
        let norm = GroupNorm::load(self.store, &format!("{name}.norm"), ch, self.config.norm_num_groups, 1e-6)?;
        let mut blocks = Vec::with_capacity(s.layers);
        for l in 0..s.layers {
            let bn = format!("{name}.transformer_blocks.{l}");
            let ln = |store: &Store, what: &str| LayerNorm::load(store, &format!("{bn}.{what}"), ch, 1e-5);
            let attn1 = self.attn(&format!("{bn}.attn1"), ch, Context::Own, None)?;
            let attn2 = self.attn(&format!("{bn}.attn2"), ch, s.context, s.context_dim)?;
            let geglu = self.store.weight(&format!("{bn}.ff.net.0.proj.weight"), 8 * ch, ch)?;
            let geglu_bias = self.store.tensor(&format!("{bn}.ff.net.0.proj.bias"), &[8 * ch])?;
            let half = |range: std::ops::Range<usize>| -> Result<Linear> {
                let weight = Weight::gather_rows(self.gpu, &format!("{bn}.ff.net.0.proj"), &[(&geglu, range.clone())])?;
                let bias = join_vectors(self.gpu, &format!("{bn}.ff.net.0.proj bias"), self.store.dtype(), &[VectorPart::Slice(&geglu_bias, range)])?;
                Ok(Linear { weight, bias: Some(bias) })
            };
            let (ff_hidden, ff_gate) = (half(0..4 * ch)?, half(4 * ch..8 * ch)?);
            self.store.remove(&format!("{bn}.ff.net.0.proj.weight"));
            self.store.remove(&format!("{bn}.ff.net.0.proj.bias"));
            blocks.push(BasicBlock {
                norm1: ln(self.store, "norm1")?,
                attn1,
                norm2: ln(self.store, "norm2")?,
                attn2,
                norm3: ln(self.store, "norm3")?,
                ff_hidden,
                ff_gate,
                ff_out: Linear::load(self.store, &format!("{bn}.ff.net.2"), ch, 4 * ch, true)?,
            });
        }
        Ok(Transformer { context: s.context, shape: HeadShape { heads: s.heads, kv_heads: s.heads, head_dim }, norm, proj_in, blocks, proj_out })
    }
}

/// Lists the tensors of the walk.
struct List<'a> {
    prefix: &'a str,
    config: &'a UnetConfig,
    t: Listed,
}

impl Builder for List<'_> {
    type Resnet = ();
    type Transformer = ();
    type Conv = ();

    fn conv(&mut self, name: &str, c_out: usize, c_in: usize, kernel: usize, _: Conv2d, _: usize) -> Result<()> {
        Conv::list(&mut self.t, &format!("{}.{name}", self.prefix), c_out, c_in, kernel);
        Ok(())
    }

    fn resnet(&mut self, name: &str, c_in: usize, c_out: usize, _: f32, _: usize) -> Result<()> {
        Resnet::list(&mut self.t, &format!("{}.{name}", self.prefix), c_in, c_out, Some(self.config.time_embed_dim()));
        Ok(())
    }

    fn transformer(&mut self, name: &str, s: TransformerSpec, _: usize) -> Result<()> {
        let (name, ch, t) = (format!("{}.{name}", self.prefix), s.channels, &mut self.t);
        let linear = |t: &mut Listed, name: String, out: usize, inp: usize, bias: bool| {
            t.push((format!("{name}.weight"), vec![out, inp]));
            if bias {
                t.push((format!("{name}.bias"), vec![out]));
            }
        };
        GroupNorm::list(t, &format!("{name}.norm"), ch);
        for what in ["proj_in", "proj_out"] {
            if self.config.use_linear_projection {
                linear(t, format!("{name}.{what}"), ch, ch, true);
            } else {
                Conv::list(t, &format!("{name}.{what}"), ch, ch, 1);
            }
        }
        for l in 0..s.layers {
            let bn = format!("{name}.transformer_blocks.{l}");
            for (attn, kv_in) in [("attn1", ch), ("attn2", s.context_dim.unwrap_or(ch))] {
                linear(t, format!("{bn}.{attn}.to_q"), ch, ch, false);
                linear(t, format!("{bn}.{attn}.to_k"), ch, kv_in, false);
                linear(t, format!("{bn}.{attn}.to_v"), ch, kv_in, false);
                linear(t, format!("{bn}.{attn}.to_out.0"), ch, ch, true);
            }
            for norm in ["norm1", "norm2", "norm3"] {
                GroupNorm::list(t, &format!("{bn}.{norm}"), ch);
            }
            linear(t, format!("{bn}.ff.net.0.proj"), 8 * ch, ch, true);
            linear(t, format!("{bn}.ff.net.2"), ch, 4 * ch, true);
        }
        Ok(())
    }
}

/// Counts multiply-adds ×2 of the walk at `sizes[level]` pixels.
struct Count {
    sizes: Vec<(usize, usize)>,
    generated: usize,
    t5: usize,
    flops: f64,
}

impl Count {
    fn pixels(&self, level: usize) -> f64 {
        self.sizes.get(level).map_or(0.0, |&(h, w)| (h * w) as f64)
    }
}

impl Builder for Count {
    type Resnet = ();
    type Transformer = ();
    type Conv = ();

    fn conv(&mut self, _: &str, c_out: usize, c_in: usize, kernel: usize, _: Conv2d, out_level: usize) -> Result<()> {
        self.flops += 2.0 * self.pixels(out_level) * (c_out * c_in * kernel * kernel) as f64;
        Ok(())
    }

    fn resnet(&mut self, _: &str, c_in: usize, c_out: usize, _: f32, level: usize) -> Result<()> {
        let shortcut = if c_in != c_out { c_in * c_out } else { 0 };
        self.flops += 2.0 * self.pixels(level) * (9 * c_out * c_in + 9 * c_out * c_out + shortcut) as f64;
        Ok(())
    }

    fn transformer(&mut self, _: &str, s: TransformerSpec, level: usize) -> Result<()> {
        let (p, ch) = (self.pixels(level), s.channels as f64);
        let attend = |keys: f64| 4.0 * p * keys * ch;
        let mut f = 2.0 * 2.0 * p * ch * ch;
        for _ in 0..s.layers {
            f += 2.0 * p * 4.0 * ch * ch + attend(p);
            f += match (s.context, s.context_dim) {
                (Context::Own, _) | (_, None) => 2.0 * p * 4.0 * ch * ch + attend(p),
                (context, Some(d)) => {
                    let keys = if context == Context::T5 { self.t5 } else { self.generated } as f64;
                    2.0 * p * 2.0 * ch * ch + attend(keys) + 2.0 * keys * 2.0 * ch * d as f64
                }
            };
            f += 2.0 * p * (8.0 * ch * ch + 4.0 * ch * ch);
        }
        self.flops += f;
        Ok(())
    }
}

/// The states the transformers attend to, projected once per generation: every
/// cross-attention's keys and values of its context, and T5's mask as a bias.
pub struct UnetConditioning {
    batch: usize,
    generated_len: usize,
    t5_len: usize,
    /// Per cross-attention layer (in load order), `(batch · len, 2 · channels)`.
    kv: Vec<GpuTensor>,
    /// `-10000` on masked T5 keys, `(batch · t5_len)` f32; none when nothing is masked.
    t5_bias: Option<GpuTensor>,
}

impl UnetConditioning {
    /// Rows of the batch it was made for.
    pub fn batch(&self) -> usize {
        self.batch
    }
}

/// AudioLDM 2's UNet, loaded.
pub struct Unet {
    config: UnetConfig,
    dtype: DType,
    time1: Linear,
    time2: Linear,
    blocks: Blocks<Resnet, Transformer, Conv>,
    norm_out: GroupNorm,
    cross: Vec<CrossKeys>,
}

/// `(batch, len, width)` of a sequence of states.
fn dims3(what: &str, x: &GpuTensor) -> Result<[usize; 3]> {
    match *x.shape() {
        [b, n, d] if b > 0 && n > 0 => Ok([b, n, d]),
        _ => Err(Error::Request(format!("unet: {what} must be (batch, len, width) with rows, got {:?}", x.shape()))),
    }
}

/// `diffusers`' `get_timestep_embedding` of one timestep for `c` (f32 arithmetic as PyTorch's):
/// `boc[0]` values, `[cos | sin]` with `flip_sin_to_cos`, else `[sin | cos]`.
pub fn timestep_embedding(c: &UnetConfig, t: f32) -> Vec<f32> {
    let dim = c.block_out_channels.first().copied().unwrap_or(0);
    let half = dim / 2;
    let mut out = vec![0.0; dim];
    let log = -(10000f64.ln() as f32);
    for i in 0..half {
        let arg = t * (log * i as f32 / (half as f32 - c.freq_shift)).exp();
        let (sin, cos) = ((arg as f64).sin() as f32, (arg as f64).cos() as f32);
        let (first, second) = if c.flip_sin_to_cos { (cos, sin) } else { (sin, cos) };
        out[i] = first;
        out[half + i] = second;
    }
    out
}

impl Unet {
    /// Loads the `{prefix}.*` tensors (`audioldm2.unet` in a converted AudioLDM 2) for `config`.
    pub fn load(gpu: &Gpu, store: &mut Store, prefix: &str, config: &UnetConfig) -> Result<Unet> {
        let c = config;
        c.check("unet")?;
        let (ted, c0) = (c.time_embed_dim(), c.block_out_channels[0]);
        let time1 = Linear::load(store, &format!("{prefix}.time_embedding.linear_1"), ted, c0, true)?;
        let time2 = Linear::load(store, &format!("{prefix}.time_embedding.linear_2"), ted, ted, true)?;
        let norm_out = GroupNorm::load(store, &format!("{prefix}.conv_norm_out"), c0, c.norm_num_groups, c.norm_eps)?;
        let mut load = Load { gpu, store, prefix, config, cross: Vec::new() };
        let blocks = walk(c, &mut load)?;
        let cross = load.cross;
        Ok(Unet { config: config.clone(), dtype: store.dtype(), time1, time2, blocks, norm_out, cross })
    }

    /// Every tensor [`Unet::load`] takes under `prefix`, with its shape.
    pub fn tensors(prefix: &str, config: &UnetConfig) -> Result<Vec<(String, Vec<usize>)>> {
        let (ted, c0) = (config.time_embed_dim(), config.block_out_channels.first().copied().unwrap_or(0));
        let mut list = List { prefix, config, t: Vec::new() };
        walk(config, &mut list)?;
        let mut t = list.t;
        for (name, inp) in [("linear_1", c0), ("linear_2", ted)] {
            t.push((format!("{prefix}.time_embedding.{name}.weight"), vec![ted, inp]));
            t.push((format!("{prefix}.time_embedding.{name}.bias"), vec![ted]));
        }
        GroupNorm::list(&mut t, &format!("{prefix}.conv_norm_out"), c0);
        Ok(t)
    }

    /// Multiply-adds ×2 of one call on one sequence of `height x width` latents attending to
    /// `generated` GPT-2 states and `t5` T5 states (convolutions, products and attention; norms
    /// and element-wise work left out). A guidance batch costs twice this.
    pub fn flops(config: &UnetConfig, height: usize, width: usize, generated: usize, t5: usize) -> Result<f64> {
        let p = config.downsample_padding;
        let down = Conv2d { stride: [2, 2], padding: [p, p], ..Conv2d::plain() };
        let mut sizes = vec![(height, width)];
        for _ in 1..config.blocks() {
            let &(h, w) = sizes.last().unwrap_or(&(0, 0));
            let grow = usize::from(p == 0);
            sizes.push(down.out_size(h + grow, w + grow, 3, 3));
        }
        let mut count = Count { sizes, generated, t5, flops: 0.0 };
        walk(config, &mut count)?;
        let (ted, c0) = (config.time_embed_dim() as f64, config.block_out_channels[0] as f64);
        Ok(count.flops + 2.0 * (ted * c0 + ted * ted))
    }

    /// The configuration.
    pub fn config(&self) -> &UnetConfig {
        &self.config
    }

    /// Projects the states every cross-attention reads, for a batch of `batch` rows:
    /// `generated` `(batch, n, GPT-2 width)` (GPT-2's generated states), `t5` `(batch, len, T5
    /// width)` and `t5_mask` (`batch · len`, true where a token is kept).
    pub fn condition(&self, rec: &mut Recorder, generated: &GpuTensor, t5: &GpuTensor, t5_mask: &[bool]) -> Result<UnetConditioning> {
        let [batch, generated_len, gd] = dims3("the generated states", generated)?;
        let [tb, t5_len, td] = dims3("the T5 states", t5)?;
        if tb != batch || t5_mask.len() != batch * t5_len {
            return Err(Error::Request(format!("unet: {batch} rows of generated states, {tb} of T5 states and {} mask values for {t5_len} tokens a row", t5_mask.len())));
        }
        let g = generated.reshape(&[batch * generated_len, gd])?;
        let t = t5.reshape(&[batch * t5_len, td])?;
        let kv = self
            .cross
            .iter()
            .map(|ck| {
                let (memory, what) = match ck.context {
                    Context::T5 => (&t, "T5"),
                    _ => (&g, "generated"),
                };
                let width = ck.kv.weight.dims().1;
                if memory.cols() != width {
                    return Err(Error::Request(format!("unet: the {what} states are {} wide; the transformers attending to them take {width}", memory.cols())));
                }
                ck.kv.forward(rec, memory)
            })
            .collect::<Result<Vec<_>>>()?;
        let t5_bias = if t5_mask.iter().all(|&m| m) {
            None
        } else {
            let values: Vec<f32> = t5_mask.iter().map(|&m| if m { 0.0 } else { MASKED }).collect();
            Some(rec.upload("unet t5 mask", &[values.len()], DType::F32, &values)?)
        };
        Ok(UnetConditioning { batch, generated_len, t5_len, kv, t5_bias })
    }

    /// `silu(TimestepEmbedding(Timesteps(t)))`: the one row every ResNet projects.
    fn time(&self, rec: &mut Recorder, timestep: f32) -> Result<GpuTensor> {
        let t = timestep_embedding(&self.config, timestep);
        let t = rec.upload("unet timestep", &[1, t.len()], self.dtype, &t)?;
        let e = self.time1.forward(rec, &t)?;
        let e = rec.unary(Unary::Silu, &e)?;
        let e = self.time2.forward(rec, &e)?;
        Ok(rec.unary(Unary::Silu, &e)?)
    }

    fn self_attention(rec: &mut Recorder, a: &Attn, x: &GpuTensor, shape: HeadShape, batch: usize, len: usize, residual: &GpuTensor) -> Result<GpuTensor> {
        let qkv = a.proj.forward(rec, x)?;
        let inner = shape.heads * shape.head_dim;
        let att = Attention::new(Heads::of(&qkv), Heads { tensor: &qkv, offset: inner }, Heads { tensor: &qkv, offset: 2 * inner }, shape, 0..len).batch(batch, len);
        let o = rec.attention(&att)?;
        a.out.forward_residual(rec, &o, Some(residual))
    }

    /// `a` (of transformer `t`) attending to its context in `cond`.
    fn cross_attention(rec: &mut Recorder, a: &Attn, t: &Transformer, x: &GpuTensor, cond: &UnetConditioning, residual: &GpuTensor) -> Result<GpuTensor> {
        let (context, shape) = (t.context, t.shape);
        let kv = a.cross.and_then(|id| cond.kv.get(id)).ok_or_else(|| Error::Request("unet: conditioning made by another model".into()))?;
        let q = a.proj.forward(rec, x)?;
        let inner = shape.heads * shape.head_dim;
        let (len, bias) = if context == Context::T5 { (cond.t5_len, cond.t5_bias.as_ref()) } else { (cond.generated_len, None) };
        let mut att = Attention::new(Heads::of(&q), Heads { tensor: kv, offset: 0 }, Heads { tensor: kv, offset: inner }, shape, 0..len).batch(cond.batch, len);
        if let Some(tensor) = bias {
            att = att.bias(Bias { tensor, per_item: len, per_head: 0, per_row: 0 });
        }
        let o = rec.attention(&att)?;
        a.out.forward_residual(rec, &o, Some(residual))
    }

    fn transformer(&self, rec: &mut Recorder, t: &Transformer, x: &GpuTensor, cond: &UnetConditioning) -> Result<GpuTensor> {
        let [b, h, w, c] = dims4("unet transformer", x)?;
        let (rows, len) = (b * h * w, h * w);
        let input = x.reshape(&[rows, c])?;
        let n = t.norm.forward(rec, x, false)?.reshape(&[rows, c])?;
        let mut s = t.proj_in.forward(rec, &n)?;
        for blk in &t.blocks {
            let n1 = blk.norm1.forward(rec, &s)?;
            s = Self::self_attention(rec, &blk.attn1, &n1, t.shape, b, len, &s)?;
            let n2 = blk.norm2.forward(rec, &s)?;
            s = match blk.attn2.cross {
                None => Self::self_attention(rec, &blk.attn2, &n2, t.shape, b, len, &s)?,
                Some(_) => Self::cross_attention(rec, &blk.attn2, t, &n2, cond, &s)?,
            };
            let n3 = blk.norm3.forward(rec, &s)?;
            let hidden = blk.ff_hidden.forward(rec, &n3)?;
            let gate = blk.ff_gate.forward(rec, &n3)?;
            let gate = rec.unary(Unary::Gelu, &gate)?;
            let m = rec.mul(&hidden, &gate)?;
            s = blk.ff_out.forward_residual(rec, &m, Some(&s))?;
        }
        Ok(t.proj_out.forward_residual(rec, &s, Some(&input))?.reshape(&[b, h, w, c])?)
    }

    fn layer(&self, rec: &mut Recorder, resnet: &Resnet, transformers: &[Transformer], x: &GpuTensor, temb: &GpuTensor, cond: &UnetConditioning) -> Result<GpuTensor> {
        let mut x = resnet.forward(rec, x, Some(temb))?;
        for t in transformers {
            x = self.transformer(rec, t, &x, cond)?;
        }
        Ok(x)
    }

    /// The predicted noise for `latents` `(batch, height, width, in_channels)` at `timestep`
    /// (the same for every row) under `cond` (made by [`Unet::condition`] for this batch):
    /// `(batch, height, width, out_channels)`.
    pub fn forward_conditioned(&self, rec: &mut Recorder, latents: &GpuTensor, timestep: f32, cond: &UnetConditioning) -> Result<GpuTensor> {
        let [b, _, _, c] = dims4("unet latents", latents)?;
        if c != self.config.in_channels || b != cond.batch {
            return Err(Error::Request(format!("unet: latents {:?}: expected {} channels and the conditioning's {} rows", latents.shape(), self.config.in_channels, cond.batch)));
        }
        let temb = self.time(rec, timestep)?;
        let blocks = &self.blocks;
        let mut x = blocks.conv_in.forward(rec, latents)?;
        let mut skips = vec![x.clone()];
        for d in &blocks.down {
            for (r, ts) in d.resnets.iter().zip(&d.attentions) {
                x = self.layer(rec, r, ts, &x, &temb, cond)?;
                skips.push(x.clone());
            }
            if let Some(conv) = &d.downsample {
                if self.config.downsample_padding == 0 {
                    x = rec.pad(&x, 1, 0, 1, 0.0)?;
                    x = rec.pad(&x, 2, 0, 1, 0.0)?;
                }
                x = conv.forward(rec, &x)?;
                skips.push(x.clone());
            }
        }
        x = blocks.mid.first.forward(rec, &x, Some(&temb))?;
        for (ts, r) in &blocks.mid.layers {
            for t in ts {
                x = self.transformer(rec, t, &x, cond)?;
            }
            x = r.forward(rec, &x, Some(&temb))?;
        }
        for u in &blocks.up {
            for (r, ts) in u.resnets.iter().zip(&u.attentions) {
                let skip = skips.pop().ok_or_else(|| Error::Request("unet: more up-block ResNets than skips".into()))?;
                let joined = rec.concat(&[&x, &skip], 3)?;
                x = self.layer(rec, r, ts, &joined, &temb, cond)?;
            }
            if let Some(conv) = &u.upsample {
                let next = skips.last().ok_or_else(|| Error::Request("unet: no skip left to upsample to".into()))?;
                let [_, th, tw, _] = dims4("unet skip", next)?;
                x = upsample(rec, conv, &x, (th, tw))?;
            }
        }
        let x = self.norm_out.forward(rec, &x, true)?;
        blocks.conv_out.forward(rec, &x)
    }

    /// [`Unet::condition`] then [`Unet::forward_conditioned`]: one call's predicted noise for
    /// `latents` `(batch, height, width, channels)`, `generated` `(batch, n, d1)`, `t5`
    /// `(batch, len, d2)` and `t5_mask` (`batch · len`).
    pub fn forward(&self, rec: &mut Recorder, latents: &GpuTensor, timestep: f32, generated: &GpuTensor, t5: &GpuTensor, t5_mask: &[bool]) -> Result<GpuTensor> {
        let cond = self.condition(rec, generated, t5, t5_mask)?;
        self.forward_conditioned(rec, latents, timestep, &cond)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn transformers_attend_as_the_blocks_pick_their_states() {
        // [None, GPT-2, T5]: self, encoder_hidden_states (k <= 1), encoder_hidden_states_1.
        assert_eq!(Context::of(0, None), Context::Own);
        assert_eq!(Context::of(1, Some(768)), Context::Generated);
        assert_eq!(Context::of(2, Some(1024)), Context::T5);
        assert_eq!(Context::of(0, Some(768)), Context::Generated);
    }

    #[test]
    fn the_timestep_embedding_puts_cosines_first() {
        let c = UnetConfig::tiny();
        let e = timestep_embedding(&c, 667.0);
        assert_eq!(e.len(), 16);
        // Frequency 1 for i = 0: cos(667), sin(667).
        assert!((e[0] - 667f32.cos()).abs() < 1e-6 && (e[8] - 667f32.sin()).abs() < 1e-6);
        // The last frequency is 10000^(-7/8).
        let f = (-(10000f64.ln()) * 7.0 / 8.0).exp();
        assert!((e[7] as f64 - (667.0 * f).cos()).abs() < 1e-5);
        let flipped = timestep_embedding(&UnetConfig { flip_sin_to_cos: false, ..c }, 667.0);
        assert_eq!(flipped[0], e[8]);
    }

    #[test]
    fn the_tensor_list_follows_the_fixture_layout() {
        let t = Unet::tensors("u", &UnetConfig::tiny()).unwrap();
        let find = |n: &str| t.iter().find(|(name, _)| name == n).map(|(_, s)| s.clone());
        // Down block 1 has 2 layers x 3 transformers; the second of each layer attends to GPT-2 (16).
        assert_eq!(find("u.down_blocks.1.attentions.4.transformer_blocks.0.attn2.to_k.weight"), Some(vec![32, 16]));
        assert_eq!(find("u.down_blocks.1.attentions.5.transformer_blocks.0.attn2.to_k.weight"), Some(vec![32, 32]));
        assert_eq!(find("u.down_blocks.1.attentions.6.norm.weight"), None);
        // Up block 0 (32 channels, 3 ResNets): the first takes 32 + 32, the last 32 + 16 (the skip from block 0).
        assert_eq!(find("u.up_blocks.0.resnets.0.conv1.weight"), Some(vec![32, 64, 3, 3]));
        assert_eq!(find("u.up_blocks.0.resnets.2.conv1.weight"), Some(vec![32, 48, 3, 3]));
        assert_eq!(find("u.up_blocks.1.resnets.0.conv1.weight"), Some(vec![16, 48, 3, 3]));
        assert_eq!(find("u.up_blocks.0.attentions.8.proj_in.weight"), Some(vec![32, 32, 1, 1]));
        assert_eq!(find("u.down_blocks.0.downsamplers.0.conv.weight"), Some(vec![16, 16, 3, 3]));
        assert_eq!(find("u.up_blocks.1.upsamplers.0.conv.weight"), None);
        assert_eq!(find("u.time_embedding.linear_1.weight"), Some(vec![64, 16]));
        assert_eq!(find("u.mid_block.attentions.2.transformer_blocks.0.ff.net.0.proj.weight"), Some(vec![256, 32]));
        // Names are unique.
        let mut names: Vec<_> = t.iter().map(|(n, _)| n.clone()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), t.len());
    }

    #[test]
    fn flops_grow_with_the_latents() {
        let c = UnetConfig::audioldm2_music();
        let small = Unet::flops(&c, 64, 16, 8, 32).unwrap();
        let large = Unet::flops(&c, 256, 16, 8, 32).unwrap();
        assert!(large > 4.0 * small * 0.9 && small > 1e9, "{small} {large}");
    }
}
