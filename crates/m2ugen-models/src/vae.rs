//! AudioLDM 2's spectrogram decoder, `AutoencoderKL.decode` (diffusers'
//! `models/autoencoders/autoencoder_kl.py` and `vae.py`'s `Decoder`), and the 2-D blocks the
//! UNet ([`crate::unet`]) shares with it: GroupNorm, convolutions, `ResnetBlock2D`,
//! `Upsample2D`.
//!
//! Images are channels-last, `(batch, height, width, channels)`; for AudioLDM 2 height is time
//! and width the mel bins, so the decoded one-channel image `(batch, frames, bins, 1)` is the
//! vocoder's `(batch, frames, bins)` as it lies in memory.
//!
//! [`VaeDecoder::decode`] is `AutoencoderKL.decode`: `post_quant_conv` (1x1, with
//! `use_post_quant_conv`), then the `Decoder`: a 3x3 convolution to the innermost width, the mid
//! block (ResNet, attention, ResNet), per up block (the widths reversed) `layers_per_block + 1`
//! ResNets and, but for the last, nearest 2x upsampling and a 3x3 convolution; GroupNorm, SiLU
//! and a 3x3 convolution to `out_channels`. Every GroupNorm has eps 1e-6 and
//! `norm_num_groups` groups; the ResNets take no time embedding. The pipeline decodes
//! `latents / scaling_factor` ([`VaeDecoder::decode_latents`]).
//!
//! The mid block's attention is `diffusers`' `Attention` with its own GroupNorm and one head of
//! all the channels (`attention_head_dim` is the width), biased q, k, v and output projections
//! and a residual. That head is wider than the attention kernel takes (512 channels for the
//! published VAE), so it runs as products per batch row: scores `(q / √c) · kᵀ`, a row softmax,
//! then `p · v` (v transposed into a weight), queries taken in chunks whose score rows fit one
//! binding.
//!
//! `ResnetBlock2D` (time_embedding_norm `default`, as both models use it): GroupNorm, SiLU, 3x3
//! convolution (plus the time embedding's projection, when it has one, carried as the
//! convolution's bias), GroupNorm, SiLU, 3x3 convolution, plus the input (through a 1x1
//! convolution when the widths differ), over `output_scale_factor`.

use crate::layers::Linear;
use crate::{Error, Result, Store};
use m2ugen_core::config::audioldm2::VaeConfig;
use m2ugen_core::conv::Conv2d;
use m2ugen_core::DType;
use m2ugen_gpu::{Gpu, GpuTensor, Recorder, Unary, Weight};

/// Names and shapes of tensors, as the models' `tensors` functions list them.
pub(crate) type Listed = Vec<(String, Vec<usize>)>;

/// `[batch, height, width, channels]` of an image tensor.
pub(crate) fn dims4(op: &str, x: &GpuTensor) -> Result<[usize; 4]> {
    match *x.shape() {
        [b, h, w, c] => Ok([b, h, w, c]),
        _ => Err(Error::Request(format!("{op}: expected (batch, height, width, channels), got {:?}", x.shape()))),
    }
}

/// A one-element tensor of `value` (a scale applied by `rec.mul`).
pub(crate) fn scalar(gpu: &Gpu, what: &str, dtype: DType, value: f32) -> Result<GpuTensor> {
    Ok(gpu.upload(what, &[1], dtype, &[value])?)
}

/// GroupNorm with an affine scale and shift per channel.
pub(crate) struct GroupNorm {
    weight: GpuTensor,
    bias: GpuTensor,
    groups: usize,
    eps: f32,
}

impl GroupNorm {
    /// `{name}.weight` and `{name}.bias` `(channels)`.
    pub(crate) fn load(store: &Store, name: &str, channels: usize, groups: usize, eps: f32) -> Result<GroupNorm> {
        if groups == 0 || !channels.is_multiple_of(groups) {
            return Err(Error::Config { field: "norm_num_groups".into(), problem: format!("{groups} groups do not divide the {channels} channels of {name}") });
        }
        Ok(GroupNorm { weight: store.tensor(&format!("{name}.weight"), &[channels])?, bias: store.tensor(&format!("{name}.bias"), &[channels])?, groups, eps })
    }

    pub(crate) fn list(t: &mut Listed, name: &str, channels: usize) {
        t.push((format!("{name}.weight"), vec![channels]));
        t.push((format!("{name}.bias"), vec![channels]));
    }

    /// GroupNorm of `x` `(batch, height, width, channels)`, then SiLU when `silu`.
    pub(crate) fn forward(&self, rec: &mut Recorder, x: &GpuTensor, silu: bool) -> Result<GpuTensor> {
        let [b, h, w, c] = dims4("group_norm", x)?;
        let y = rec.group_norm(&x.reshape(&[b, h * w, c])?, self.groups, &self.weight, &self.bias, self.eps)?;
        let y = if silu { rec.unary(Unary::Silu, &y)? } else { y };
        Ok(y.reshape(&[b, h, w, c])?)
    }
}

/// A 2-D convolution with a bias.
pub(crate) struct Conv {
    weight: GpuTensor,
    bias: GpuTensor,
    conv: Conv2d,
}

impl Conv {
    /// `{name}.weight` `(c_out, c_in, kernel, kernel)` and `{name}.bias` `(c_out)`.
    pub(crate) fn load(store: &Store, name: &str, c_out: usize, c_in: usize, kernel: usize, conv: Conv2d) -> Result<Conv> {
        Ok(Conv { weight: store.tensor(&format!("{name}.weight"), &[c_out, c_in, kernel, kernel])?, bias: store.tensor(&format!("{name}.bias"), &[c_out])?, conv })
    }

    pub(crate) fn list(t: &mut Listed, name: &str, c_out: usize, c_in: usize, kernel: usize) {
        t.push((format!("{name}.weight"), vec![c_out, c_in, kernel, kernel]));
        t.push((format!("{name}.bias"), vec![c_out]));
    }

    pub(crate) fn forward(&self, rec: &mut Recorder, x: &GpuTensor) -> Result<GpuTensor> {
        Ok(rec.conv2d(x, &self.weight, Some(&self.bias), &self.conv)?)
    }
}

/// A 1x1 convolution `{name}` `(c_out, c_in, 1, 1)` as a linear layer over channels.
pub(crate) fn pointwise(store: &Store, name: &str, c_out: usize, c_in: usize) -> Result<Linear> {
    let weight = store.tensor(&format!("{name}.weight"), &[c_out, c_in, 1, 1])?.reshape(&[c_out, c_in])?;
    Ok(Linear { weight: Weight::Dense(weight), bias: Some(store.tensor(&format!("{name}.bias"), &[c_out])?) })
}

/// `ResnetBlock2D` with `time_embedding_norm` `default`.
pub(crate) struct Resnet {
    norm1: GroupNorm,
    conv1: Conv,
    /// `time_emb_proj`, its bias plus `conv1`'s: its output is `conv1`'s bias.
    time: Option<Linear>,
    norm2: GroupNorm,
    conv2: Conv,
    shortcut: Option<Linear>,
    /// `1 / output_scale_factor`, when it is not 1.
    scale: Option<GpuTensor>,
}

/// What a ResNet is built from, besides its name and widths.
#[derive(Clone, Copy)]
pub(crate) struct ResnetKind {
    pub groups: usize,
    pub eps: f32,
    /// Width of the time embedding, when the ResNet takes one.
    pub temb: Option<usize>,
    pub output_scale: f32,
}

impl Resnet {
    pub(crate) fn load(gpu: &Gpu, store: &Store, name: &str, c_in: usize, c_out: usize, kind: ResnetKind) -> Result<Resnet> {
        let same = Conv2d::same(3);
        let conv1 = Conv::load(store, &format!("{name}.conv1"), c_out, c_in, 3, same)?;
        let time = match kind.temb {
            Some(temb) => {
                let t = Linear::load(store, &format!("{name}.time_emb_proj"), c_out, temb, true)?;
                let mut rec = Recorder::new(gpu);
                let bias = t.bias.as_ref().map(|b| rec.add(b, &conv1.bias)).transpose()?;
                rec.submit()?;
                Some(Linear { weight: t.weight, bias })
            }
            None => None,
        };
        let scale = if kind.output_scale == 1.0 { None } else { Some(scalar(gpu, &format!("{name} 1/output_scale_factor"), store.dtype(), 1.0 / kind.output_scale)?) };
        Ok(Resnet {
            norm1: GroupNorm::load(store, &format!("{name}.norm1"), c_in, kind.groups, kind.eps)?,
            conv1,
            time,
            norm2: GroupNorm::load(store, &format!("{name}.norm2"), c_out, kind.groups, kind.eps)?,
            conv2: Conv::load(store, &format!("{name}.conv2"), c_out, c_out, 3, same)?,
            shortcut: if c_in != c_out { Some(pointwise(store, &format!("{name}.conv_shortcut"), c_out, c_in)?) } else { None },
            scale,
        })
    }

    pub(crate) fn list(t: &mut Listed, name: &str, c_in: usize, c_out: usize, temb: Option<usize>) {
        GroupNorm::list(t, &format!("{name}.norm1"), c_in);
        Conv::list(t, &format!("{name}.conv1"), c_out, c_in, 3);
        if let Some(temb) = temb {
            t.push((format!("{name}.time_emb_proj.weight"), vec![c_out, temb]));
            t.push((format!("{name}.time_emb_proj.bias"), vec![c_out]));
        }
        GroupNorm::list(t, &format!("{name}.norm2"), c_out);
        Conv::list(t, &format!("{name}.conv2"), c_out, c_out, 3);
        if c_in != c_out {
            Conv::list(t, &format!("{name}.conv_shortcut"), c_out, c_in, 1);
        }
    }

    /// `x` `(batch, height, width, c_in)` with `temb` (`silu` of the time embedding, one row)
    /// when the ResNet takes one: `(batch, height, width, c_out)`.
    pub(crate) fn forward(&self, rec: &mut Recorder, x: &GpuTensor, temb: Option<&GpuTensor>) -> Result<GpuTensor> {
        let h = self.norm1.forward(rec, x, true)?;
        let h = match (&self.time, temb) {
            (Some(time), Some(temb)) => {
                let bias = time.forward(rec, temb)?;
                let bias = bias.reshape(&[bias.numel()])?;
                rec.conv2d(&h, &self.conv1.weight, Some(&bias), &self.conv1.conv)?
            }
            (Some(_), None) => return Err(Error::Request("unet: a ResNet with a time projection needs the time embedding".into())),
            (None, _) => self.conv1.forward(rec, &h)?,
        };
        let h = self.norm2.forward(rec, &h, true)?;
        let h = self.conv2.forward(rec, &h)?;
        let out = match &self.shortcut {
            Some(s) => s.forward_residual(rec, x, Some(&h))?,
            None => rec.add(x, &h)?,
        };
        Ok(match &self.scale {
            Some(s) => rec.mul(&out, s)?,
            None => out,
        })
    }
}

/// PyTorch's `F.interpolate(x, size=target, mode="nearest")` of `x` `(batch, h, w, c)` for a
/// `target` of `2h` or `2h - 1` rows and `2w` or `2w - 1` columns (what an up block meets after
/// a stride-2 convolution): nearest 2x, the last row or column cut when odd (source `floor(dst ·
/// h / target) = dst / 2` for both sizes).
pub fn upsample_nearest_to(rec: &mut Recorder, x: &GpuTensor, target: (usize, usize)) -> Result<GpuTensor> {
    let [_, h, w, _] = dims4("upsample", x)?;
    let fits = |size: usize, to: usize| size > 0 && (to == 2 * size || to + 1 == 2 * size);
    if !fits(h, target.0) || !fits(w, target.1) {
        return Err(Error::Request(format!("upsample: {h}x{w} pixels to {}x{}: only twice the size, or one less, is implemented", target.0, target.1)));
    }
    let mut y = rec.upsample_nearest2d(x, 2)?;
    if target.0 < 2 * h {
        y = rec.slice(&y, 1, 0..target.0)?;
    }
    if target.1 < 2 * w {
        y = rec.slice(&y, 2, 0..target.1)?;
    }
    Ok(y)
}

/// `Upsample2D` with a convolution: [`upsample_nearest_to`] `target`, then `conv`.
pub(crate) fn upsample(rec: &mut Recorder, conv: &Conv, x: &GpuTensor, target: (usize, usize)) -> Result<GpuTensor> {
    let y = upsample_nearest_to(rec, x, target)?;
    conv.forward(rec, &y)
}

/// The mid block's attention: one head of all the channels, as products.
struct MidAttention {
    norm: GroupNorm,
    q: Linear,
    k: Linear,
    v: Linear,
    out: Linear,
    /// `1/√channels`.
    scale: GpuTensor,
}

impl MidAttention {
    fn load(gpu: &Gpu, store: &Store, name: &str, channels: usize, groups: usize) -> Result<MidAttention> {
        let linear = |what: &str| Linear::load(store, &format!("{name}.{what}"), channels, channels, true);
        Ok(MidAttention {
            norm: GroupNorm::load(store, &format!("{name}.group_norm"), channels, groups, 1e-6)?,
            q: linear("to_q")?,
            k: linear("to_k")?,
            v: linear("to_v")?,
            out: linear("to_out.0")?,
            scale: scalar(gpu, &format!("{name} scale"), store.dtype(), 1.0 / (channels as f32).sqrt())?,
        })
    }

    fn list(t: &mut Listed, name: &str, channels: usize) {
        GroupNorm::list(t, &format!("{name}.group_norm"), channels);
        for what in ["to_q", "to_k", "to_v", "to_out.0"] {
            t.push((format!("{name}.{what}.weight"), vec![channels, channels]));
            t.push((format!("{name}.{what}.bias"), vec![channels]));
        }
    }

    /// `rows`: queries per chunk (default: as many as one binding holds scores for).
    fn forward(&self, rec: &mut Recorder, x: &GpuTensor, rows: Option<usize>) -> Result<GpuTensor> {
        let [b, h, w, c] = dims4("vae attention", x)?;
        let len = h * w;
        let input = x.reshape(&[b * len, c])?;
        let n = self.norm.forward(rec, x, false)?.reshape(&[b * len, c])?;
        let q = self.q.forward(rec, &n)?;
        let q = rec.mul(&q, &self.scale)?;
        let (k, v) = (self.k.forward(rec, &n)?, self.v.forward(rec, &n)?);
        // Query rows per chunk: a chunk's scores `(rows, len)` sit in one binding.
        let per_row = (len * x.dtype().size()).max(1) as u64;
        let chunk = rows.unwrap_or((rec.gpu.split_at() / per_row) as usize).clamp(1, len);
        let mut parts = Vec::new();
        for item in 0..b {
            let rows = item * len..(item + 1) * len;
            let (kb, vb) = if b == 1 { (k.clone(), v.clone()) } else { (rec.slice(&k, 0, rows.clone())?, rec.slice(&v, 0, rows.clone())?) };
            let keys = Weight::Dense(kb);
            let values = Weight::Dense(rec.permute(&vb, &[1, 0])?);
            let mut start = 0;
            while start < len {
                let end = (start + chunk).min(len);
                let qc = if b == 1 && start == 0 && end == len { q.clone() } else { rec.slice(&q, 0, rows.start + start..rows.start + end)? };
                let scores = rec.linear(&qc, &keys, None)?;
                let p = rec.softmax(&scores)?;
                parts.push(rec.linear(&p, &values, None)?);
                start = end;
            }
        }
        let o = match parts.len() {
            1 => parts.remove(0),
            _ => rec.concat(&parts.iter().collect::<Vec<_>>(), 0)?,
        };
        Ok(self.out.forward_residual(rec, &o, Some(&input))?.reshape(&[b, h, w, c])?)
    }
}

/// One up block: ResNets, then (but the last block) the upsampling convolution.
struct UpBlock {
    resnets: Vec<Resnet>,
    upsample: Option<Conv>,
}

/// AudioLDM 2's VAE decoder, loaded.
pub struct VaeDecoder {
    config: VaeConfig,
    post_quant: Option<Linear>,
    conv_in: Conv,
    mid: (Resnet, Option<MidAttention>, Resnet),
    up: Vec<UpBlock>,
    norm_out: GroupNorm,
    conv_out: Conv,
    /// `1 / scaling_factor`.
    unscale: GpuTensor,
    /// Queries per chunk of the mid block's attention, when set.
    attention_rows: Option<usize>,
}

/// `(name, c_in, c_out)` of a ResNet.
type ResnetPlan = (String, usize, usize);

/// Every ResNet of the decoder (the mid block's two, then each up block's), and each up block's
/// upsampling width (none for the last).
fn layout(c: &VaeConfig) -> (Vec<ResnetPlan>, Vec<Option<usize>>) {
    let boc = &c.block_out_channels;
    let n = boc.len();
    let top = boc.last().copied().unwrap_or(0);
    let mut resnets = vec![("decoder.mid_block.resnets.0".to_string(), top, top), ("decoder.mid_block.resnets.1".to_string(), top, top)];
    let mut ups = Vec::with_capacity(n);
    let mut out = top;
    for (i, &width) in boc.iter().rev().enumerate() {
        let prev = out;
        out = width;
        for j in 0..c.layers_per_block + 1 {
            resnets.push((format!("decoder.up_blocks.{i}.resnets.{j}"), if j == 0 { prev } else { out }, out));
        }
        ups.push((i + 1 < n).then_some(out));
    }
    (resnets, ups)
}

impl VaeDecoder {
    /// Whether the decoder takes the tensor `name` of an AudioLDM 2 whose VAE sits at `prefix`
    /// (the encoder and `quant_conv` are left out).
    pub fn needs(prefix: &str, name: &str) -> bool {
        name.strip_prefix(prefix).and_then(|n| n.strip_prefix('.')).is_some_and(|n| n.starts_with("decoder.") || n.starts_with("post_quant_conv."))
    }

    /// Loads the decoder's `{prefix}.*` tensors (`audioldm2.vae` in a converted AudioLDM 2).
    pub fn load(gpu: &Gpu, store: &mut Store, prefix: &str, config: &VaeConfig) -> Result<VaeDecoder> {
        let c = config;
        c.check("vae")?;
        let (boc, groups, lc) = (&c.block_out_channels, c.norm_num_groups, c.latent_channels);
        let top = boc[boc.len() - 1];
        let kind = ResnetKind { groups, eps: 1e-6, temb: None, output_scale: 1.0 };
        let (resnets, ups) = layout(c);
        let mut resnets = resnets.into_iter().map(|(name, c_in, c_out)| Resnet::load(gpu, store, &format!("{prefix}.{name}"), c_in, c_out, kind)).collect::<Result<Vec<_>>>()?.into_iter();
        let mut next = || resnets.next().ok_or_else(|| Error::Config { field: "vae.layers_per_block".into(), problem: "no ResNets".into() });
        let mid0 = next()?;
        let mid1 = next()?;
        let attention = if c.mid_block_add_attention { Some(MidAttention::load(gpu, store, &format!("{prefix}.decoder.mid_block.attentions.0"), top, groups)?) } else { None };
        let mut up = Vec::with_capacity(ups.len());
        for (i, width) in ups.iter().enumerate() {
            let block = (0..c.layers_per_block + 1).map(|_| next()).collect::<Result<Vec<_>>>()?;
            let upsample = match width {
                Some(w) => Some(Conv::load(store, &format!("{prefix}.decoder.up_blocks.{i}.upsamplers.0.conv"), *w, *w, 3, Conv2d::same(3))?),
                None => None,
            };
            up.push(UpBlock { resnets: block, upsample });
        }
        Ok(VaeDecoder {
            config: config.clone(),
            post_quant: if c.use_post_quant_conv { Some(pointwise(store, &format!("{prefix}.post_quant_conv"), lc, lc)?) } else { None },
            conv_in: Conv::load(store, &format!("{prefix}.decoder.conv_in"), top, lc, 3, Conv2d::same(3))?,
            mid: (mid0, attention, mid1),
            up,
            norm_out: GroupNorm::load(store, &format!("{prefix}.decoder.conv_norm_out"), boc[0], groups, 1e-6)?,
            conv_out: Conv::load(store, &format!("{prefix}.decoder.conv_out"), c.out_channels, boc[0], 3, Conv2d::same(3))?,
            unscale: scalar(gpu, &format!("{prefix} 1/scaling_factor"), store.dtype(), 1.0 / c.scaling_factor)?,
            attention_rows: None,
        })
    }

    /// Every tensor [`VaeDecoder::load`] takes under `prefix`, with its shape.
    pub fn tensors(prefix: &str, c: &VaeConfig) -> Vec<(String, Vec<usize>)> {
        let mut t = Vec::new();
        let (boc, lc) = (&c.block_out_channels, c.latent_channels);
        let (Some(&first), Some(&top)) = (boc.first(), boc.last()) else { return t };
        if c.use_post_quant_conv {
            Conv::list(&mut t, &format!("{prefix}.post_quant_conv"), lc, lc, 1);
        }
        Conv::list(&mut t, &format!("{prefix}.decoder.conv_in"), top, lc, 3);
        let (resnets, ups) = layout(c);
        for (name, c_in, c_out) in resnets {
            Resnet::list(&mut t, &format!("{prefix}.{name}"), c_in, c_out, None);
        }
        if c.mid_block_add_attention {
            MidAttention::list(&mut t, &format!("{prefix}.decoder.mid_block.attentions.0"), top);
        }
        for (i, width) in ups.iter().enumerate() {
            if let Some(w) = width {
                Conv::list(&mut t, &format!("{prefix}.decoder.up_blocks.{i}.upsamplers.0.conv"), *w, *w, 3);
            }
        }
        GroupNorm::list(&mut t, &format!("{prefix}.decoder.conv_norm_out"), first);
        Conv::list(&mut t, &format!("{prefix}.decoder.conv_out"), c.out_channels, first, 3);
        t
    }

    /// Multiply-adds ×2 of decoding one `height x width` latent image (convolutions, the
    /// attention's products; norms and element-wise work left out).
    pub fn flops(c: &VaeConfig, height: usize, width: usize) -> f64 {
        let (boc, lc) = (&c.block_out_channels, c.latent_channels as f64);
        let (Some(&first), Some(&top)) = (boc.first(), boc.last()) else { return 0.0 };
        let conv = |p: f64, c_out: usize, c_in: usize, k: usize| 2.0 * p * (c_out * c_in * k * k) as f64;
        let resnet = |p: f64, c_in: usize, c_out: usize| conv(p, c_out, c_in, 3) + conv(p, c_out, c_out, 3) + if c_in != c_out { conv(p, c_out, c_in, 1) } else { 0.0 };
        let mut p = (height * width) as f64;
        let mut f = 2.0 * p * lc * lc + conv(p, top, lc as usize, 3);
        let t = top as f64;
        f += 2.0 * resnet(p, top, top) + 4.0 * 2.0 * p * t * t + 4.0 * p * p * t;
        let (resnets, ups) = layout(c);
        for (_, c_in, c_out) in resnets.iter().skip(2).take(c.layers_per_block + 1) {
            f += resnet(p, *c_in, *c_out);
        }
        for (i, width) in ups.iter().enumerate() {
            if let Some(w) = width {
                p *= 4.0;
                f += conv(p, *w, *w, 3);
                for (_, c_in, c_out) in resnets.iter().skip(2 + (i + 1) * (c.layers_per_block + 1)).take(c.layers_per_block + 1) {
                    f += resnet(p, *c_in, *c_out);
                }
            }
        }
        f + conv(p, c.out_channels, first, 3)
    }

    /// The configuration.
    pub fn config(&self) -> &VaeConfig {
        &self.config
    }

    /// Queries per chunk of the mid block's attention (`None`: as many as one binding holds
    /// the score rows of): fewer bounds the memory of a long clip's scores.
    pub fn set_attention_rows(&mut self, rows: Option<usize>) {
        self.attention_rows = rows;
    }

    /// `AutoencoderKL.decode` of `latents` `(batch, height, width, latent_channels)`:
    /// `(batch, height · s, width · s, out_channels)`, `s` = [`VaeConfig::scale_factor`].
    pub fn decode(&self, rec: &mut Recorder, latents: &GpuTensor) -> Result<GpuTensor> {
        let [_, _, _, c] = dims4("vae latents", latents)?;
        if c != self.config.latent_channels {
            return Err(Error::Request(format!("vae: latents {:?} do not have the {} latent channels", latents.shape(), self.config.latent_channels)));
        }
        let z = match &self.post_quant {
            Some(p) => p.forward(rec, latents)?,
            None => latents.clone(),
        };
        let mut x = self.conv_in.forward(rec, &z)?;
        x = self.mid.0.forward(rec, &x, None)?;
        if let Some(a) = &self.mid.1 {
            x = a.forward(rec, &x, self.attention_rows)?;
        }
        x = self.mid.2.forward(rec, &x, None)?;
        for block in &self.up {
            for r in &block.resnets {
                x = r.forward(rec, &x, None)?;
            }
            if let Some(conv) = &block.upsample {
                let [_, h, w, _] = dims4("vae", &x)?;
                x = upsample(rec, conv, &x, (2 * h, 2 * w))?;
            }
        }
        let x = self.norm_out.forward(rec, &x, true)?;
        self.conv_out.forward(rec, &x)
    }

    /// What the pipeline decodes: [`VaeDecoder::decode`] of `latents / scaling_factor`.
    pub fn decode_latents(&self, rec: &mut Recorder, latents: &GpuTensor) -> Result<GpuTensor> {
        let z = rec.mul(latents, &self.unscale)?;
        self.decode(rec, &z)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_to_a_size_is_doubling_then_cutting() {
        // PyTorch's `F.interpolate(size=out, mode="nearest")` reads source `floor(dst · in / out)`
        // (the scale in f32); for the `2n` and `2n - 1` an up block meets (a stride-2
        // convolution padded 1 halves `s` to `ceil(s / 2)`), that is `dst / 2`:
        // [`upsample_nearest_to`]'s 2x, cut.
        for n in 1..300usize {
            for out in [2 * n, 2 * n - 1] {
                let scale = n as f32 / out as f32;
                assert!((0..out).all(|dst| ((dst as f32 * scale).floor() as usize).min(n - 1) == dst / 2), "{n} -> {out}");
            }
            let down = Conv2d { stride: [2, 2], ..Conv2d::same(3) };
            assert_eq!(down.out_size(2 * n - 1, 2 * n, 3, 3), (n, n));
        }
    }

    #[test]
    fn the_tensor_list_leaves_the_encoder_out() {
        let t = VaeDecoder::tensors("v", &VaeConfig::tiny());
        assert!(t.iter().all(|(n, _)| VaeDecoder::needs("v", n)));
        assert!(t.contains(&("v.decoder.up_blocks.1.resnets.0.conv_shortcut.weight".into(), vec![16, 32, 1, 1])));
        assert!(t.contains(&("v.decoder.mid_block.attentions.0.to_out.0.bias".into(), vec![32])));
        assert!(t.contains(&("v.post_quant_conv.weight".into(), vec![4, 4, 1, 1])));
        assert!(!VaeDecoder::needs("v", "v.encoder.conv_in.weight") && !VaeDecoder::needs("v", "v.quant_conv.weight"));
        // 16 channels at 24 x 8 dominate; the attention's scores grow with the square of the pixels.
        let c = VaeConfig::tiny();
        assert!(VaeDecoder::flops(&c, 24, 8) > 3.5 * VaeDecoder::flops(&c, 12, 4));
    }
}
