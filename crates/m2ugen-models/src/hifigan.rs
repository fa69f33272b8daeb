//! SpeechT5's HiFi-GAN vocoder as AudioLDM 2 uses it (`SpeechT5HifiGan`, transformers'
//! `models/speecht5/modeling_speecht5.py`; Kong et al., "HiFi-GAN", arXiv 2010.05646): a mel
//! spectrogram `(batch, frames, bins)` to a waveform `(batch, samples)`.
//!
//! With `normalize_before`, the mel is first normalised per bin by the stored statistics,
//! `(x - mean) / scale`. Then `conv_pre` (kernel 7, padding 3) to `upsample_initial_channel`
//! channels, and per stage `i`: leaky ReLU (`leaky_relu_slope`), a transposed convolution of
//! stride `upsample_rates[i]` and kernel `upsample_kernel_sizes[i]` padded `(kernel - rate) /
//! 2` on both sides (PyTorch's `padding`, which trims the output), halving the channels, then
//! the mean of one `HifiGanResidualBlock` per `resblock_kernel_sizes` entry. A residual block
//! runs, per dilation `d`: leaky ReLU, convolution dilated `d` (padding `(kernel · d - d) /
//! 2`), leaky ReLU, convolution (padding `(kernel - 1) / 2`), plus its input. Last: leaky ReLU
//! with PyTorch's default slope 0.01 (not the configured one: `nn.functional.leaky_relu(h)`),
//! `conv_post` (kernel 7, padding 3) to one channel, tanh.
//!
//! The AudioLDM 2 pipeline hands the VAE's `(batch, 1, frames, bins)` spectrogram over with the
//! channel squeezed; channels-last, the VAE's `(batch, frames, bins, 1)` output is already
//! this `(batch, frames, bins)`. Sequences are channels-last `(batch, time, channels)`, as the
//! 1-D convolutions take them. Weight norm, if a checkpoint had it, is folded by the converter.

use crate::{Error, Result, Store};
use m2ugen_core::config::audioldm2::HifiganConfig;
use m2ugen_core::conv::{Conv1d, ConvTranspose1d, Padding};
use m2ugen_gpu::{Gpu, GpuTensor, Recorder, Unary};

/// PyTorch's default slope of `leaky_relu`, which the last activation uses.
const DEFAULT_SLOPE: f32 = 0.01;

/// A 1-D convolution with a bias, zero-padded to keep the length.
struct Conv {
    weight: GpuTensor,
    bias: GpuTensor,
    conv: Conv1d,
}

impl Conv {
    /// `{name}.weight` `(c_out, c_in, kernel)`, padded `(kernel · dilation - dilation) / 2`.
    fn load(store: &Store, name: &str, c_out: usize, c_in: usize, kernel: usize, dilation: usize) -> Result<Conv> {
        let pad = (kernel * dilation - dilation) / 2;
        let conv = Conv1d { stride: 1, dilation, groups: 1, pad_left: pad, pad_right: pad, padding: Padding::Zeros };
        Ok(Conv { weight: store.tensor(&format!("{name}.weight"), &[c_out, c_in, kernel])?, bias: store.tensor(&format!("{name}.bias"), &[c_out])?, conv })
    }

    fn forward(&self, rec: &mut Recorder, x: &GpuTensor) -> Result<GpuTensor> {
        Ok(rec.conv1d(x, &self.weight, Some(&self.bias), &self.conv)?)
    }
}

/// `{name}.weight` of `shape` and `{name}.bias` of `channels`.
fn list(t: &mut Vec<(String, Vec<usize>)>, name: String, shape: Vec<usize>, channels: usize) {
    t.push((format!("{name}.weight"), shape));
    t.push((format!("{name}.bias"), vec![channels]));
}

/// `HifiGanResidualBlock`: `(convs1[j], convs2[j])` per dilation.
struct ResBlock {
    convs: Vec<(Conv, Conv)>,
}

/// One upsampling stage: the transposed convolution and its residual blocks.
struct Stage {
    weight: GpuTensor,
    bias: GpuTensor,
    up: ConvTranspose1d,
    blocks: Vec<ResBlock>,
}

/// The vocoder, loaded.
pub struct Hifigan {
    config: HifiganConfig,
    /// `mean` and `1 / scale`, with `normalize_before`.
    normalize: Option<(GpuTensor, GpuTensor)>,
    conv_pre: Conv,
    stages: Vec<Stage>,
    conv_post: Conv,
    /// `1 / len(resblock_kernel_sizes)`.
    mean_of_blocks: GpuTensor,
}

/// Channels after stage `i` (`upsample_initial_channel / 2^(i+1)`).
fn channels(c: &HifiganConfig, i: usize) -> usize {
    c.upsample_initial_channel >> (i + 1).min(usize::BITS as usize - 1)
}

impl Hifigan {
    /// Loads the `{prefix}.*` tensors (`audioldm2.vocoder` in a converted AudioLDM 2).
    pub fn load(gpu: &Gpu, store: &mut Store, prefix: &str, config: &HifiganConfig) -> Result<Hifigan> {
        let c = config;
        c.check("vocoder")?;
        if c.resblock_kernel_sizes.is_empty() || c.upsample_rates.is_empty() {
            return Err(Error::Config { field: "vocoder.resblock_kernel_sizes".into(), problem: "the vocoder needs at least one stage and one residual block".into() });
        }
        let normalize = if c.normalize_before {
            let mean = store.tensor(&format!("{prefix}.mean"), &[c.model_in_dim])?;
            let scale = store.values(&format!("{prefix}.scale"), &[c.model_in_dim])?;
            let inverse: Vec<f32> = scale.iter().map(|s| 1.0 / s).collect();
            Some((mean, gpu.upload(&format!("{prefix}.scale (inverse)"), &[c.model_in_dim], store.dtype(), &inverse)?))
        } else {
            None
        };
        let k = c.resblock_kernel_sizes.len();
        let mut stages = Vec::with_capacity(c.upsample_rates.len());
        let mut width = c.upsample_initial_channel;
        for (i, (&rate, &kernel)) in c.upsample_rates.iter().zip(&c.upsample_kernel_sizes).enumerate() {
            let out = channels(c, i);
            let trim = (kernel - rate) / 2;
            let blocks = (0..k)
                .map(|j| {
                    let name = format!("{prefix}.resblocks.{}", i * k + j);
                    let kernel = c.resblock_kernel_sizes[j];
                    let convs = c.resblock_dilation_sizes[j]
                        .iter()
                        .enumerate()
                        .map(|(d, &dilation)| Ok((Conv::load(store, &format!("{name}.convs1.{d}"), out, out, kernel, dilation)?, Conv::load(store, &format!("{name}.convs2.{d}"), out, out, kernel, 1)?)))
                        .collect::<Result<Vec<_>>>()?;
                    Ok(ResBlock { convs })
                })
                .collect::<Result<Vec<_>>>()?;
            stages.push(Stage {
                weight: store.tensor(&format!("{prefix}.upsampler.{i}.weight"), &[width, out, kernel])?,
                bias: store.tensor(&format!("{prefix}.upsampler.{i}.bias"), &[out])?,
                up: ConvTranspose1d { stride: rate, dilation: 1, groups: 1, trim_left: trim, trim_right: trim },
                blocks,
            });
            width = out;
        }
        Ok(Hifigan {
            config: config.clone(),
            normalize,
            conv_pre: Conv::load(store, &format!("{prefix}.conv_pre"), c.upsample_initial_channel, c.model_in_dim, 7, 1)?,
            stages,
            conv_post: Conv::load(store, &format!("{prefix}.conv_post"), 1, width, 7, 1)?,
            mean_of_blocks: gpu.upload(&format!("{prefix} 1/blocks"), &[1], store.dtype(), &[1.0 / k as f32])?,
        })
    }

    /// Every tensor [`Hifigan::load`] takes under `prefix`, with its shape (`mean` and `scale`
    /// only with `normalize_before`).
    pub fn tensors(prefix: &str, c: &HifiganConfig) -> Vec<(String, Vec<usize>)> {
        let mut t = Vec::new();
        if c.normalize_before {
            t.push((format!("{prefix}.mean"), vec![c.model_in_dim]));
            t.push((format!("{prefix}.scale"), vec![c.model_in_dim]));
        }
        list(&mut t, format!("{prefix}.conv_pre"), vec![c.upsample_initial_channel, c.model_in_dim, 7], c.upsample_initial_channel);
        let k = c.resblock_kernel_sizes.len();
        let mut width = c.upsample_initial_channel;
        for (i, &kernel) in c.upsample_kernel_sizes.iter().enumerate().take(c.upsample_rates.len()) {
            let out = channels(c, i);
            list(&mut t, format!("{prefix}.upsampler.{i}"), vec![width, out, kernel], out);
            for (j, (&rk, dilations)) in c.resblock_kernel_sizes.iter().zip(&c.resblock_dilation_sizes).enumerate() {
                for d in 0..dilations.len() {
                    for convs in ["convs1", "convs2"] {
                        list(&mut t, format!("{prefix}.resblocks.{}.{convs}.{d}", i * k + j), vec![out, out, rk], out);
                    }
                }
            }
            width = out;
        }
        list(&mut t, format!("{prefix}.conv_post"), vec![1, width, 7], 1);
        t
    }

    /// Samples out for `frames` mel frames: each stage maps `n` steps to `(n - 1) · rate +
    /// kernel - 2 · ((kernel - rate) / 2)`.
    pub fn samples(c: &HifiganConfig, frames: usize) -> usize {
        c.upsample_rates.iter().zip(&c.upsample_kernel_sizes).fold(frames, |n, (&r, &k)| if n == 0 { 0 } else { ((n - 1) * r + k).saturating_sub(2 * ((k - r.min(k)) / 2)) })
    }

    /// Multiply-adds ×2 of one track of `frames` mel frames (the convolutions).
    pub fn flops(c: &HifiganConfig, frames: usize) -> f64 {
        let mut len = frames as f64;
        let mut f = 2.0 * len * (c.upsample_initial_channel * c.model_in_dim * 7) as f64;
        let mut width = c.upsample_initial_channel;
        let mut steps = frames;
        for (i, (&r, &k)) in c.upsample_rates.iter().zip(&c.upsample_kernel_sizes).enumerate() {
            let out = channels(c, i);
            f += 2.0 * len * (width * out * k) as f64;
            steps = Self::samples(&HifiganConfig { upsample_rates: vec![r], upsample_kernel_sizes: vec![k], ..c.clone() }, steps);
            len = steps as f64;
            for (&rk, dilations) in c.resblock_kernel_sizes.iter().zip(&c.resblock_dilation_sizes) {
                f += 2.0 * 2.0 * len * (out * out * rk * dilations.len()) as f64;
            }
            width = out;
        }
        f + 2.0 * len * (width * 7) as f64
    }

    /// The configuration.
    pub fn config(&self) -> &HifiganConfig {
        &self.config
    }

    /// The waveform of `mel` `(batch, frames, bins)`: `(batch, samples)`, `samples` =
    /// [`Hifigan::samples`] (`frames · hop` for AudioLDM 2's kernels and rates).
    pub fn forward(&self, rec: &mut Recorder, mel: &GpuTensor) -> Result<GpuTensor> {
        let c = &self.config;
        let &[batch, frames, bins] = mel.shape() else {
            return Err(Error::Request(format!("vocoder: the mel must be (batch, frames, bins), got {:?}", mel.shape())));
        };
        if bins != c.model_in_dim || frames == 0 {
            return Err(Error::Request(format!("vocoder: a mel of {frames} frames of {bins} bins; this vocoder takes {} bins", c.model_in_dim)));
        }
        let mut x = match &self.normalize {
            Some((mean, inverse)) => {
                let centred = rec.sub(mel, mean)?;
                rec.mul(&centred, inverse)?
            }
            None => mel.clone(),
        };
        x = self.conv_pre.forward(rec, &x)?;
        let slope = c.leaky_relu_slope;
        for stage in &self.stages {
            let h = rec.leaky_relu(&x, slope)?;
            let h = rec.conv_transpose1d(&h, &stage.weight, Some(&stage.bias), &stage.up)?;
            let mut sum: Option<GpuTensor> = None;
            for block in &stage.blocks {
                let mut r = h.clone();
                for (conv1, conv2) in &block.convs {
                    let y = rec.leaky_relu(&r, slope)?;
                    let y = conv1.forward(rec, &y)?;
                    let y = rec.leaky_relu(&y, slope)?;
                    let y = conv2.forward(rec, &y)?;
                    r = rec.add(&y, &r)?;
                }
                sum = Some(match sum {
                    Some(s) => rec.add(&s, &r)?,
                    None => r,
                });
            }
            let sum = sum.ok_or_else(|| Error::Config { field: "vocoder.resblock_kernel_sizes".into(), problem: "no residual blocks".into() })?;
            x = rec.mul(&sum, &self.mean_of_blocks)?;
        }
        let h = rec.leaky_relu(&x, DEFAULT_SLOPE)?;
        let y = self.conv_post.forward(rec, &h)?;
        let y = rec.unary(Unary::Tanh, &y)?;
        let samples = y.shape()[1];
        Ok(y.reshape(&[batch, samples])?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_follow_pytorch_transposed_convolutions() {
        // The fixture: rates 2, 2 with kernels 4, 4 (padding 1): exactly 4 samples a frame.
        assert_eq!(Hifigan::samples(&HifiganConfig::tiny(), 20), 80);
        // The published vocoder: kernel 16 at rate 5 pads 5 and gives 5n + 1, kernel 16 at rate 4
        // pads 6 (4n), kernels 8 and 4 at rate 2 pad 3 and 1 (2n).
        let c = HifiganConfig::audioldm2_music();
        let one = |r: usize, k: usize, n: usize| Hifigan::samples(&HifiganConfig { upsample_rates: vec![r], upsample_kernel_sizes: vec![k], ..c.clone() }, n);
        assert_eq!((one(5, 16, 10), one(4, 16, 10), one(2, 8, 10), one(2, 4, 10)), (51, 40, 20, 20));
        assert_eq!(Hifigan::samples(&c, 10), ((51 * 4) * 2 * 2) * 2);
        let t = Hifigan::tensors("v", &HifiganConfig::tiny());
        assert_eq!(t.len(), 58);
        assert!(t.contains(&("v.resblocks.3.convs2.2.weight".into(), vec![4, 4, 7])));
        assert!(t.contains(&("v.upsampler.1.weight".into(), vec![8, 4, 4])));
        assert!(t.contains(&("v.upsampler.1.bias".into(), vec![4])));
    }
}
