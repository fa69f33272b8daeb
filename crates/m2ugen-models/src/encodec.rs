//! EnCodec's decoder as MusicGen uses it (the `audio_encoder` of a Hugging Face
//! `MusicgenForConditionalGeneration`; Défossez et al., "High Fidelity Neural Audio
//! Compression", arXiv 2210.13438; transformers' `models/encodec/modeling_encodec.py`): codebook
//! codes to a waveform, as `EncodecModel.decode` does without audio scales.
//!
//! The residual quantizer's decoding (each codebook's embedding of its code, summed over the
//! codebooks), then the SEANet decoder: a convolution to `2^len(ratios) · num_filters`
//! channels, a unidirectional LSTM with a skip connection, and per upsampling ratio `r` an ELU,
//! a transposed convolution (kernel `2r`, stride `r`, trimmed as `EncodecConvTranspose1d` does)
//! and residual units (ELU, convolution of `residual_kernel_size` dilated
//! `dilation_growth_rate^j`, ELU, convolution of 1, plus a 1x1 shortcut convolution or the
//! identity); an ELU and the last convolution. Convolutions pad as `EncodecConv1d` does: the
//! dilated kernel minus one, split `total - total / 2` left and `total / 2` right (all of it
//! left when causal), in the configured mode, reflection extended by zeros on inputs no longer
//! than the padding. Weight norm is folded by the converter. Sequences are channels-last
//! `(batch, time, channels)`.
//!
//! Codes are `(batch, codebooks, frames)` row-major, the way MusicGen generates them (for each
//! track, each codebook's run of frames); audio is `(batch, frames · hop)` (channels interleaved
//! when there are several), one row per track.
//!
//! # Decoding in chunks
//!
//! [`StreamingDecoder`] takes frames as they arrive, in any chunk sizes, and returns the samples
//! that no later frame can change; their concatenation is [`EncodecDecoder::decode`]'s output
//! for the whole clip. Only the LSTM carries state across chunks (its `h` and `c`, one step per
//! frame, exactly as over the whole clip). The convolutions around it are not causal, so each
//! chunk re-decodes an overlap, sized from the configuration ([`Context`]):
//!
//! - The first convolution reads `first` frames either side of each frame. The LSTM runs
//!   `first` frames behind the codes received, on that convolution recomputed over the codes
//!   from `first` frames before the first step it takes (at least `first_window` of them, so a
//!   reflection never needs transformers' zero extension where the whole clip would not).
//! - The upsampling stack (transposed convolutions and residual units up to the last
//!   convolution) gives a frame's `hop` samples from LSTM outputs `before` frames before it to
//!   `after` frames after it. Its dependency cone is traced back from one frame's samples
//!   through every layer: a convolution widens it by `max(pad_left, pad_right)` on both sides
//!   (the larger side also bounds where a reflection at an end of the clip reads), a transposed
//!   convolution of stride `r`, kernel `k` and left trim `t` maps outputs `[lo, hi]` to inputs
//!   `[⌈(lo + t - k + 1) / r⌉, ⌊(hi + t) / r⌋]`. Each chunk reruns the stack on the kept LSTM
//!   outputs from `before` frames before the first frame it emits and emits up to `after` frames
//!   before the last LSTM output.
//!
//! A sample is emitted only when every value its cone reads lies inside the window and at least
//! as far from a window edge that is not an end of the clip; inside that region the window's
//! intermediate values are the whole clip's, shifted by a whole number of frames, so the samples
//! are the same up to float rounding. At the clip's ends the window's padding is the clip's.
//!
//! MusicGen's EnCodec (ratios 8, 5, 4, 4, kernel 7, residual kernel 3, one residual unit,
//! dilation 1, last kernel 7): `first = 3` (kernel 7 pads 3 each side), `before = 1`,
//! `after = 1` (the cone of one frame's 640 samples: last convolution ±3 samples, then per
//! block the residual unit's ±1 and the transposed convolution: 32 kHz `[-4, 643]` → 8 kHz
//! `[-2, 161]` → 2 kHz `[-2, 41]` → 400 Hz `[-1, 9]` → frames `[-1, 1]`), `first_window = 4`,
//! `stack_window = 1`. So samples are final 4 frames (80 ms) after their codes arrive, and
//! each chunk re-embeds and re-convolves up to 6 frames of codes and reruns the stack on 2
//! frames more than it emits.

use crate::layers::Linear;
use crate::{Error, Result, Store};
use m2ugen_core::config::EncodecConfig;
use m2ugen_core::conv::{Conv1d, ConvTranspose1d, Padding};
use m2ugen_gpu::{Gpu, GpuTensor, Recorder, Unary, Weight};

/// `(pad_left, pad_right)` of a stride-1 `EncodecConv1d` of `kernel` taps dilated by
/// `dilation` (its extra padding for the last frame is zero at stride 1).
fn conv_pads(kernel: usize, dilation: usize, causal: bool) -> (usize, usize) {
    let total = (kernel.max(1) - 1) * dilation;
    if causal { (total, 0) } else { (total - total / 2, total / 2) }
}

/// `(trim_left, trim_right)` of an `EncodecConvTranspose1d` of stride `ratio`, kernel `2 ratio`.
fn trims(ratio: usize, causal: bool, trim_right_ratio: f32) -> (usize, usize) {
    let total = ratio;
    let right = if causal { ((total as f32) * trim_right_ratio).ceil() as usize } else { total / 2 };
    (total - right.min(total), right.min(total))
}

/// Shortest input (steps) whose padding never needs transformers' zero extension.
fn min_len(pads: (usize, usize), padding: Padding) -> usize {
    if padding == Padding::Reflect { pads.0.max(pads.1) + 1 } else { 1 }
}

/// How far the convolutions around the LSTM reach, in frames: the overlap chunked decoding
/// re-decodes (see the module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Context {
    /// Frames either side of a frame that the first convolution reads: the LSTM runs this far
    /// behind the codes received.
    pub first: usize,
    /// Fewest frames the first convolution is run on (short of the whole clip).
    pub first_window: usize,
    /// LSTM outputs before a frame that its samples depend on.
    pub before: usize,
    /// LSTM outputs after a frame that its samples depend on.
    pub after: usize,
    /// Fewest frames the upsampling stack is run on (short of the whole clip).
    pub stack_window: usize,
}

impl Context {
    /// The context of a configuration (checked by [`EncodecDecoder::load`]).
    pub fn of(c: &EncodecConfig) -> Result<Context> {
        let padding = padding_of(c)?;
        let causal = c.use_causal_conv;
        let first_pads = conv_pads(c.kernel_size, 1, causal);
        let hop: usize = c.upsampling_ratios.iter().product();
        // The cone of frame 0's samples, traced back from the output, at each resolution.
        let last_pads = conv_pads(c.last_kernel_size, 1, causal);
        let mut stack_window = min_len(last_pads, padding).div_ceil(hop.max(1));
        let (mut lo, mut hi) = (-(last_pads.0.max(last_pads.1) as i64), (hop + last_pads.0.max(last_pads.1)) as i64 - 1);
        let mut per_frame = hop.max(1);
        for &ratio in c.upsampling_ratios.iter().rev() {
            for j in 0..c.num_residual_layers {
                let pads = conv_pads(c.residual_kernel_size, c.dilation_growth_rate.saturating_pow(j as u32), causal);
                let reach = pads.0.max(pads.1) as i64;
                lo -= reach;
                hi += reach;
                stack_window = stack_window.max(min_len(pads, padding).div_ceil(per_frame));
            }
            let (r, k, t) = (ratio.max(1) as i64, 2 * ratio as i64, trims(ratio, causal, c.trim_right_ratio).0 as i64);
            lo = -(-(lo + t - k + 1)).div_euclid(r);
            hi = (hi + t).div_euclid(r);
            per_frame /= ratio.max(1);
        }
        Ok(Context { first: first_pads.0.max(first_pads.1), first_window: min_len(first_pads, padding), before: (-lo).max(0) as usize, after: hi.max(0) as usize, stack_window: stack_window.max(1) })
    }

    /// Frames between a frame's codes arriving and its samples being final.
    pub fn latency(&self) -> usize {
        self.first + self.after
    }
}

fn padding_of(c: &EncodecConfig) -> Result<Padding> {
    match c.pad_mode.as_str() {
        "reflect" => Ok(Padding::Reflect),
        "constant" | "zeros" | "zero" => Ok(Padding::Zeros),
        "replicate" => Ok(Padding::Replicate),
        other => Err(Error::Config { field: "audio_encoder.pad_mode".into(), problem: format!("'{other}' is not one of reflect, constant, replicate") }),
    }
}

/// A stride-1 `EncodecConv1d`: its weight and how it pads.
struct Conv {
    weight: GpuTensor,
    bias: GpuTensor,
    conv: Conv1d,
}

impl Conv {
    #[allow(clippy::too_many_arguments)]
    fn load(store: &Store, name: &str, c_out: usize, c_in: usize, kernel: usize, dilation: usize, causal: bool, padding: Padding) -> Result<Conv> {
        let weight = store.tensor(&format!("{name}.conv.weight"), &[c_out, c_in, kernel])?;
        let bias = store.tensor(&format!("{name}.conv.bias"), &[c_out])?;
        let (pad_left, pad_right) = conv_pads(kernel, dilation, causal);
        Ok(Conv { weight, bias, conv: Conv1d { stride: 1, dilation, groups: 1, pad_left, pad_right, padding } })
    }

    fn forward(&self, rec: &mut Recorder, x: &GpuTensor) -> Result<GpuTensor> {
        let len = x.shape()[1];
        let max_pad = self.conv.pad_left.max(self.conv.pad_right);
        if self.conv.padding == Padding::Reflect && len <= max_pad {
            // transformers' `_pad1d`: zeros appended so that the reflection fits, and the padded
            // sequence cut back to `len + padding`, which leaves the first `len` outputs.
            let padded = rec.pad(x, 1, 0, max_pad - len + 1, 0.0)?;
            let y = rec.conv1d(&padded, &self.weight, Some(&self.bias), &self.conv)?;
            return Ok(rec.slice(&y, 1, 0..len)?);
        }
        Ok(rec.conv1d(x, &self.weight, Some(&self.bias), &self.conv)?)
    }
}

/// One residual unit: ELU, dilated convolution, ELU, 1x1 convolution, plus the shortcut.
struct Residual {
    conv: Conv,
    /// The 1x1 convolution as a product, the shortcut added in the same launch.
    project: Linear,
    /// The 1x1 shortcut convolution (`use_conv_shortcut`), else the identity.
    shortcut: Option<Linear>,
}

/// A kernel-1 convolution `{name}.conv` `(c_out, c_in, 1)` as a linear layer.
fn pointwise(store: &Store, name: &str, c_out: usize, c_in: usize) -> Result<Linear> {
    let weight = store.tensor(&format!("{name}.conv.weight"), &[c_out, c_in, 1])?.reshape(&[c_out, c_in])?;
    Ok(Linear { weight: Weight::Dense(weight), bias: Some(store.tensor(&format!("{name}.conv.bias"), &[c_out])?) })
}

impl Residual {
    fn forward(&self, rec: &mut Recorder, x: &GpuTensor) -> Result<GpuTensor> {
        let h = rec.unary(Unary::Elu, x)?;
        let h = self.conv.forward(rec, &h)?;
        let h = rec.unary(Unary::Elu, &h)?;
        let skip = match &self.shortcut {
            Some(s) => s.forward(rec, x)?,
            None => x.clone(),
        };
        self.project.forward_residual(rec, &h, Some(&skip))
    }
}

/// ELU, a trimmed transposed convolution, then residual units.
struct Block {
    weight: GpuTensor,
    bias: GpuTensor,
    up: ConvTranspose1d,
    units: Vec<Residual>,
}

/// EnCodec's decoder, loaded.
pub struct EncodecDecoder {
    config: EncodecConfig,
    codebooks: usize,
    /// Every codebook's entries, one after the other: `(codebooks · codebook_size, dim)`.
    table: GpuTensor,
    first: Conv,
    /// `(input product, recurrent product)` per layer, biases included.
    lstm: Vec<(Linear, Linear)>,
    blocks: Vec<Block>,
    last: Conv,
    context: Context,
}

impl EncodecDecoder {
    /// Whether the decoder takes the tensor `name` of a model whose EnCodec sits at `prefix`
    /// (the loader's filter: the encoder's tensors and the codebooks' statistics are left out).
    pub fn needs(prefix: &str, name: &str) -> bool {
        name.strip_prefix(prefix).and_then(|n| n.strip_prefix('.')).is_some_and(|n| n.starts_with("decoder.") || (n.starts_with("quantizer.") && n.ends_with(".codebook.embed")))
    }

    /// Loads the `{prefix}.*` tensors (`musicgen.audio_encoder` in a converted MusicGen) with
    /// `config`; the codebooks are the `quantizer.layers.{i}` the weights hold.
    pub fn load(gpu: &Gpu, store: &mut Store, prefix: &str, config: &EncodecConfig) -> Result<EncodecDecoder> {
        let c = config;
        let padding = padding_of(c)?;
        let context = Context::of(c)?;
        let field = |f: &str, problem: String| Error::Config { field: format!("audio_encoder.{f}"), problem };
        if c.upsampling_ratios.is_empty() || c.upsampling_ratios.contains(&0) {
            return Err(field("upsampling_ratios", format!("{:?}: need at least one ratio, none zero", c.upsampling_ratios)));
        }
        if c.codebook_dim.is_some_and(|d| d != c.hidden_size) {
            return Err(field("codebook_dim", format!("{:?} differs from hidden_size {}: the decoder takes the codebooks' sum as is", c.codebook_dim, c.hidden_size)));
        }
        if c.compress == 0 || c.audio_channels == 0 || c.codebook_size == 0 || c.num_filters == 0 {
            return Err(field("compress", "compress, audio_channels, codebook_size and num_filters must be positive".into()));
        }
        if !(0.0..=1.0).contains(&c.trim_right_ratio) || (!c.use_causal_conv && c.trim_right_ratio != 1.0) {
            return Err(field("trim_right_ratio", format!("{} must be 1 (or, causal, between 0 and 1)", c.trim_right_ratio)));
        }
        if store.has(&format!("{prefix}.decoder.layers.0.norm.weight")) {
            return Err(field("norm_type", "time_group_norm is not supported (only weight_norm, folded by the converter)".into()));
        }
        let scaling = 1usize.checked_shl(c.upsampling_ratios.len() as u32).filter(|s| s.checked_mul(c.num_filters).is_some()).ok_or_else(|| field("upsampling_ratios", "too many ratios".into()))?;
        let codebooks = (0..).take_while(|i| store.has(&format!("{prefix}.quantizer.layers.{i}.codebook.embed"))).count();
        if codebooks == 0 {
            return Err(Error::MissingTensor(format!("{prefix}.quantizer.layers.0.codebook.embed")));
        }
        let dim = c.hidden_size;
        let books = (0..codebooks).map(|i| Ok(Weight::Dense(store.tensor(&format!("{prefix}.quantizer.layers.{i}.codebook.embed"), &[c.codebook_size, dim])?))).collect::<Result<Vec<_>>>()?;
        let Weight::Dense(table) = Weight::concat_rows(gpu, &format!("{prefix}.quantizer"), &books.iter().collect::<Vec<_>>())? else {
            return Err(Error::Tensor { name: format!("{prefix}.quantizer.layers.0.codebook.embed"), problem: "is quantized; the codebooks must be float".into() });
        };
        for i in 0..codebooks {
            store.remove(&format!("{prefix}.quantizer.layers.{i}.codebook.embed"));
        }
        let layers = format!("{prefix}.decoder.layers");
        let causal = c.use_causal_conv;
        let width = scaling * c.num_filters;
        let first = Conv::load(store, &format!("{layers}.0"), width, dim, c.kernel_size, 1, causal, padding)?;
        let lstm = (0..c.num_lstm_layers)
            .map(|k| {
                let l = format!("{layers}.1.lstm");
                let part = |kind: &str| -> Result<Linear> { Ok(Linear { weight: store.weight(&format!("{l}.weight_{kind}_l{k}"), 4 * width, width)?, bias: Some(store.tensor(&format!("{l}.bias_{kind}_l{k}"), &[4 * width])?) }) };
                Ok((part("ih")?, part("hh")?))
            })
            .collect::<Result<Vec<_>>>()?;
        let mut blocks = Vec::with_capacity(c.upsampling_ratios.len());
        let (mut index, mut channels) = (2, width);
        for &ratio in &c.upsampling_ratios {
            let out = channels / 2;
            let up = format!("{layers}.{}", index + 1);
            let (trim_left, trim_right) = trims(ratio, causal, c.trim_right_ratio);
            let weight = store.tensor(&format!("{up}.conv.weight"), &[channels, out, 2 * ratio])?;
            let bias = store.tensor(&format!("{up}.conv.bias"), &[out])?;
            let hidden = out / c.compress;
            let units = (0..c.num_residual_layers)
                .map(|j| {
                    let u = format!("{layers}.{}", index + 2 + j);
                    Ok(Residual {
                        conv: Conv::load(store, &format!("{u}.block.1"), hidden, out, c.residual_kernel_size, c.dilation_growth_rate.saturating_pow(j as u32), causal, padding)?,
                        project: pointwise(store, &format!("{u}.block.3"), out, hidden)?,
                        shortcut: if c.use_conv_shortcut { Some(pointwise(store, &format!("{u}.shortcut"), out, out)?) } else { None },
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            blocks.push(Block { weight, bias, up: ConvTranspose1d { stride: ratio, dilation: 1, groups: 1, trim_left, trim_right }, units });
            index += 2 + c.num_residual_layers;
            channels = out;
        }
        let last = Conv::load(store, &format!("{layers}.{}", index + 1), c.audio_channels, c.num_filters, c.last_kernel_size, 1, causal, padding)?;
        Ok(EncodecDecoder { config: config.clone(), codebooks, table, first, lstm, blocks, last, context })
    }

    /// Every tensor [`EncodecDecoder::load`] takes under `prefix` for `codebooks` codebooks, with
    /// its shape (for random weights in benchmarks, and to check a converted model).
    pub fn tensors(prefix: &str, c: &EncodecConfig, codebooks: usize) -> Vec<(String, Vec<usize>)> {
        let mut t = Vec::new();
        // The transposed convolutions' `(c_in, c_out, kernel)` weights and `(c_out)` biases.
        let mut conv_t = Vec::new();
        let mut conv = |name: String, c_out: usize, c_in: usize, k: usize| {
            t.push((format!("{prefix}.{name}.conv.weight"), vec![c_out, c_in, k]));
            t.push((format!("{prefix}.{name}.conv.bias"), vec![c_out]));
        };
        let width = (1usize << c.upsampling_ratios.len().min(16)) * c.num_filters;
        conv("decoder.layers.0".into(), width, c.hidden_size, c.kernel_size);
        let (mut index, mut channels) = (2, width);
        for &ratio in &c.upsampling_ratios {
            let out = channels / 2;
            let up = format!("{prefix}.decoder.layers.{}.conv", index + 1);
            conv_t.push((format!("{up}.weight"), vec![channels, out, 2 * ratio]));
            conv_t.push((format!("{up}.bias"), vec![out]));
            let hidden = out / c.compress.max(1);
            for j in 0..c.num_residual_layers {
                let u = format!("decoder.layers.{}", index + 2 + j);
                conv(format!("{u}.block.1"), hidden, out, c.residual_kernel_size);
                conv(format!("{u}.block.3"), out, hidden, 1);
                if c.use_conv_shortcut {
                    conv(format!("{u}.shortcut"), out, out, 1);
                }
            }
            index += 2 + c.num_residual_layers;
            channels = out;
        }
        conv(format!("decoder.layers.{}", index + 1), c.audio_channels, c.num_filters, c.last_kernel_size);
        t.extend(conv_t);
        for k in 0..c.num_lstm_layers {
            for kind in ["ih", "hh"] {
                t.push((format!("{prefix}.decoder.layers.1.lstm.weight_{kind}_l{k}"), vec![4 * width, width]));
                t.push((format!("{prefix}.decoder.layers.1.lstm.bias_{kind}_l{k}"), vec![4 * width]));
            }
        }
        for i in 0..codebooks {
            t.push((format!("{prefix}.quantizer.layers.{i}.codebook.embed"), vec![c.codebook_size, c.hidden_size]));
        }
        t
    }

    /// Multiply-adds ×2 of decoding `frames` frames of one track: the convolutions (transposed
    /// ones over their untrimmed output), the LSTM's products and the shortcuts.
    pub fn flops(c: &EncodecConfig, frames: usize) -> f64 {
        let width = ((1usize << c.upsampling_ratios.len().min(16)) * c.num_filters) as f64;
        let mut len = frames as f64;
        let mut f = 2.0 * len * width * c.hidden_size as f64 * c.kernel_size as f64;
        f += c.num_lstm_layers as f64 * 2.0 * 2.0 * len * 4.0 * width * width;
        let mut channels = width;
        for &ratio in &c.upsampling_ratios {
            let out = (channels as usize / 2) as f64;
            f += 2.0 * len * channels * out * 2.0 * ratio as f64;
            len *= ratio as f64;
            let hidden = (out as usize / c.compress.max(1)) as f64;
            let shortcut = if c.use_conv_shortcut { out * out } else { 0.0 };
            f += c.num_residual_layers as f64 * 2.0 * len * (hidden * out * c.residual_kernel_size as f64 + out * hidden + shortcut);
            channels = out;
        }
        f + 2.0 * len * c.audio_channels as f64 * c.num_filters as f64 * c.last_kernel_size as f64
    }

    /// The configuration.
    pub fn config(&self) -> &EncodecConfig {
        &self.config
    }

    /// Codebooks per frame.
    pub fn codebooks(&self) -> usize {
        self.codebooks
    }

    /// Samples per frame: the product of the upsampling ratios (640 for MusicGen).
    pub fn hop(&self) -> usize {
        self.config.upsampling_ratios.iter().product()
    }

    /// The overlap chunked decoding re-decodes.
    pub fn context(&self) -> Context {
        self.context
    }

    /// Fails naming the problem unless `codes` are `(batch, codebooks, frames)` codes below the
    /// codebook size.
    fn check_codes(&self, codes: &[u32], batch: usize, frames: usize) -> Result<()> {
        let (k, size) = (self.codebooks, self.config.codebook_size);
        if batch == 0 {
            return Err(Error::Request("encodec: a batch of at least one track is needed".into()));
        }
        let expected = batch.checked_mul(k).and_then(|n| n.checked_mul(frames));
        if expected != Some(codes.len()) {
            return Err(Error::Request(format!("encodec: {} codes for {batch} tracks of {frames} frames; this EnCodec takes {k} codebooks per frame, (batch, codebooks, frames) = {batch} x {k} x {frames} codes", codes.len())));
        }
        if let Some(i) = codes.iter().position(|&code| code as usize >= size) {
            let (b, cb, t) = (i / (k * frames), i / frames % k, i % frames);
            return Err(Error::Request(format!("encodec: code {} (track {b}, codebook {cb}, frame {t}) is not below the codebook size {size}", codes[i])));
        }
        Ok(())
    }

    /// The quantizer's decoding of `frames` frames, `code(b, k, t)` each: `(batch, frames, dim)`.
    fn embed(&self, rec: &mut Recorder, code: impl Fn(usize, usize, usize) -> u32, batch: usize, frames: usize) -> Result<GpuTensor> {
        let (k, size) = (self.codebooks, self.config.codebook_size as u32);
        let mut index = Vec::with_capacity(batch * frames * k);
        for b in 0..batch {
            for t in 0..frames {
                index.extend((0..k).map(|cb| cb as u32 * size + code(b, cb, t)));
            }
        }
        let index = rec.upload_u32("encodec codes", &[index.len()], &index)?;
        let rows = rec.gather_rows(&self.table, &index)?;
        let dim = self.table.cols();
        let sum = rec.sum_rows(&rows.reshape(&[batch * frames, k, dim])?, None, None, 1.0)?;
        Ok(sum.reshape(&[batch, frames, dim])?)
    }

    /// Zeroed `(h, c)` per LSTM layer for `batch` tracks.
    fn lstm_state(&self, rec: &mut Recorder, batch: usize) -> Result<Vec<(GpuTensor, GpuTensor)>> {
        let width = self.first.weight.shape()[0];
        (0..self.lstm.len())
            .map(|_| {
                let (h, c) = (rec.alloc("encodec lstm h", &[batch, width], self.table.dtype())?, rec.alloc("encodec lstm c", &[batch, width], self.table.dtype())?);
                rec.fill(&h, 0.0)?;
                rec.fill(&c, 0.0)?;
                Ok((h, c))
            })
            .collect()
    }

    /// The LSTM over `x` `(batch, steps, width)` from `state` (advanced in place), plus `x`.
    fn lstm_forward(&self, rec: &mut Recorder, x: &GpuTensor, state: &[(GpuTensor, GpuTensor)]) -> Result<GpuTensor> {
        let &[batch, steps, width] = x.shape() else {
            return Err(Error::Request(format!("encodec: LSTM input of shape {:?}", x.shape())));
        };
        let flat = x.reshape(&[batch * steps, width])?;
        let mut input = flat.clone();
        for ((ih, hh), (h, c)) in self.lstm.iter().zip(state) {
            let gx = ih.forward(rec, &input)?;
            let seq = rec.alloc("encodec lstm", &[batch * steps, width], x.dtype())?;
            for t in 0..steps {
                let gh = hh.forward(rec, h)?;
                rec.lstm_cell(&gx, &gh, c, h, &seq, steps, t)?;
            }
            input = seq;
        }
        Ok(rec.add(&input, &flat)?.reshape(&[batch, steps, width])?)
    }

    /// The upsampling stack and the last convolution: `(batch, frames, width)` to
    /// `(batch, frames · hop, channels)`.
    fn upsample(&self, rec: &mut Recorder, y: &GpuTensor) -> Result<GpuTensor> {
        let mut x = y.clone();
        for block in &self.blocks {
            let h = rec.unary(Unary::Elu, &x)?;
            x = rec.conv_transpose1d(&h, &block.weight, Some(&block.bias), &block.up)?;
            for unit in &block.units {
                x = unit.forward(rec, &x)?;
            }
        }
        let h = rec.unary(Unary::Elu, &x)?;
        self.last.forward(rec, &h)
    }

    /// Values per frame of one track in the widest intermediate tensor.
    fn frame_values(&self) -> usize {
        let width = self.first.weight.shape()[0];
        let mut most = (self.codebooks * self.table.cols()).max(4 * width);
        let (mut per_frame, mut channels) = (1, width);
        for block in &self.blocks {
            most = most.max(channels * per_frame);
            per_frame *= block.up.stride;
            channels /= 2;
            most = most.max(channels * per_frame);
        }
        most.max(self.config.audio_channels * per_frame)
    }

    /// Decodes `codes` `(batch, codebooks, frames)` (row-major) into `(batch, frames · hop)`
    /// samples (channels interleaved when there are several). A clip whose intermediate
    /// tensors would not fit one binding is decoded in chunks
    /// ([`EncodecDecoder::decode_chunked`]), which gives the same samples.
    pub fn decode(&self, rec: &mut Recorder, codes: &[u32], batch: usize, frames: usize) -> Result<GpuTensor> {
        self.check_codes(codes, batch, frames)?;
        if frames == 0 {
            return Err(Error::Request("encodec: no frames to decode".into()));
        }
        let bytes_per_frame = (self.frame_values() * batch * self.table.dtype().size()).max(1) as u64;
        let fits = (rec.gpu.split_at() / bytes_per_frame) as usize;
        if frames > fits {
            let c = self.context;
            return self.decode_chunked(rec, codes, batch, frames, fits.saturating_sub(c.before + c.after + c.first + c.stack_window).max(1));
        }
        let x = self.embed(rec, |b, k, t| codes[(b * self.codebooks + k) * frames + t], batch, frames)?;
        let x = self.first.forward(rec, &x)?;
        let state = self.lstm_state(rec, batch)?;
        let y = self.lstm_forward(rec, &x, &state)?;
        let audio = self.upsample(rec, &y)?;
        Ok(audio.reshape(&[batch, frames * self.hop() * self.config.audio_channels])?)
    }

    /// [`EncodecDecoder::decode`] through a [`StreamingDecoder`] fed `chunk` frames at a time,
    /// the pieces joined: for clips too long for one pass.
    pub fn decode_chunked(&self, rec: &mut Recorder, codes: &[u32], batch: usize, frames: usize, chunk: usize) -> Result<GpuTensor> {
        self.check_codes(codes, batch, frames)?;
        let k = self.codebooks;
        let mut stream = self.stream(batch)?;
        let mut pieces = Vec::new();
        let mut at = 0;
        while at < frames {
            let n = chunk.max(1).min(frames - at);
            let part: Vec<u32> = (0..batch * k).flat_map(|row| codes[row * frames + at..row * frames + at + n].iter().copied()).collect();
            pieces.extend(stream.push(rec, &part, n)?);
            at += n;
        }
        pieces.extend(stream.finish(rec)?);
        let refs: Vec<&GpuTensor> = pieces.iter().collect();
        Ok(rec.concat(&refs, 1)?)
    }

    /// A chunked decoding of `batch` tracks.
    pub fn stream(&self, batch: usize) -> Result<StreamingDecoder<'_>> {
        if batch == 0 {
            return Err(Error::Request("encodec: a batch of at least one track is needed".into()));
        }
        Ok(StreamingDecoder { decoder: self, batch, rows: vec![Vec::new(); batch * self.codebooks], codes_start: 0, arrived: 0, state: None, lstm_done: 0, tail: None, tail_start: 0, emitted: 0, finished: false })
    }
}

/// Decodes frames as they arrive: [`StreamingDecoder::push`] returns the samples no later frame
/// can change, [`StreamingDecoder::finish`] the rest. The pieces joined equal
/// [`EncodecDecoder::decode`] of the whole clip (see the module documentation for the overlap).
pub struct StreamingDecoder<'d> {
    decoder: &'d EncodecDecoder,
    batch: usize,
    /// Codes kept for the first convolution: per (track, codebook), frames from `codes_start`.
    rows: Vec<Vec<u32>>,
    codes_start: usize,
    arrived: usize,
    /// The LSTM's `(h, c)` per layer, from the first step on.
    state: Option<Vec<(GpuTensor, GpuTensor)>>,
    /// Frames through the LSTM.
    lstm_done: usize,
    /// LSTM outputs (with the skip) of frames `tail_start..lstm_done`, `(batch, frames, width)`.
    tail: Option<GpuTensor>,
    tail_start: usize,
    /// Frames whose samples were returned.
    emitted: usize,
    finished: bool,
}

impl StreamingDecoder<'_> {
    /// Frames received.
    pub fn frames(&self) -> usize {
        self.arrived
    }

    /// Frames whose samples were returned.
    pub fn emitted(&self) -> usize {
        self.emitted
    }

    /// Takes `frames` more frames, `codes` `(batch, codebooks, frames)` row-major, and returns
    /// the samples that became final, `(batch, new samples)`, if any.
    pub fn push(&mut self, rec: &mut Recorder, codes: &[u32], frames: usize) -> Result<Option<GpuTensor>> {
        if self.finished {
            return Err(Error::Request("encodec: codes pushed after the stream was finished".into()));
        }
        self.decoder.check_codes(codes, self.batch, frames)?;
        for (row, kept) in self.rows.iter_mut().enumerate() {
            kept.extend_from_slice(&codes[row * frames..(row + 1) * frames]);
        }
        self.arrived += frames;
        self.advance(rec, false)
    }

    /// Ends the clip: returns its remaining samples, if any.
    pub fn finish(&mut self, rec: &mut Recorder) -> Result<Option<GpuTensor>> {
        if self.finished {
            return Err(Error::Request("encodec: the stream was already finished".into()));
        }
        self.finished = true;
        self.advance(rec, true)
    }

    fn advance(&mut self, rec: &mut Recorder, last: bool) -> Result<Option<GpuTensor>> {
        let d = self.decoder;
        let ctx = d.context;
        let (n, batch, k) = (self.arrived, self.batch, d.codebooks);
        // The first convolution and the LSTM, up to the last frame whose convolution is final.
        let ready = if last { n } else { n.saturating_sub(ctx.first) };
        if ready > self.lstm_done {
            let w0 = self.lstm_done.saturating_sub(ctx.first).min(n.saturating_sub(ctx.first_window));
            let skip = w0 - self.codes_start;
            let rows = &self.rows;
            let x = d.embed(rec, |b, cb, t| rows[b * k + cb][skip + t], batch, n - w0)?;
            let x = d.first.forward(rec, &x)?;
            let x = rec.slice(&x, 1, self.lstm_done - w0..ready - w0)?;
            if self.state.is_none() {
                self.state = Some(d.lstm_state(rec, batch)?);
            }
            let y = d.lstm_forward(rec, &x, self.state.as_deref().unwrap_or_default())?;
            self.tail = Some(match self.tail.take() {
                Some(tail) => rec.concat(&[&tail, &y], 1)?,
                None => {
                    self.tail_start = self.lstm_done;
                    y
                }
            });
            self.lstm_done = ready;
        }
        // The upsampling stack, for the frames whose samples are final.
        let end = if last { self.lstm_done } else { self.lstm_done.saturating_sub(ctx.after) };
        let mut out = None;
        if let Some(tail) = self.tail.as_ref().filter(|_| end > self.emitted) {
            let s0 = self.emitted.saturating_sub(ctx.before).min(self.lstm_done.saturating_sub(ctx.stack_window));
            let window = if s0 == self.tail_start { tail.clone() } else { rec.slice(tail, 1, s0 - self.tail_start..self.lstm_done - self.tail_start)? };
            let audio = d.upsample(rec, &window)?;
            let hop = d.hop();
            let audio = rec.slice(&audio, 1, (self.emitted - s0) * hop..(end - s0) * hop)?;
            out = Some(audio.reshape(&[batch, (end - self.emitted) * hop * d.config.audio_channels])?);
            self.emitted = end;
        }
        // Keep only what later chunks read.
        let keep = self.emitted.saturating_sub(ctx.before).min(self.lstm_done.saturating_sub(ctx.stack_window));
        if let Some(tail) = self.tail.as_ref().filter(|_| keep > self.tail_start) {
            self.tail = Some(rec.slice(tail, 1, keep - self.tail_start..self.lstm_done - self.tail_start)?);
            self.tail_start = keep;
        }
        let keep = self.lstm_done.saturating_sub(ctx.first).min(n.saturating_sub(ctx.first_window));
        if keep > self.codes_start {
            for row in &mut self.rows {
                row.drain(..keep - self.codes_start);
            }
            self.codes_start = keep;
        }
        Ok(out)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// `facebook/musicgen-small`'s `audio_encoder` (the fixture's geometry too).
    fn musicgen() -> EncodecConfig {
        EncodecConfig::encodec_32khz()
    }

    #[test]
    fn musicgen_overlap_is_the_hand_derived_one() {
        // The cone worked out by hand in the module documentation.
        let c = Context::of(&musicgen()).unwrap();
        assert_eq!(c, Context { first: 3, first_window: 4, before: 1, after: 1, stack_window: 1 });
        assert_eq!(c.latency(), 4);
    }

    #[test]
    fn wider_residual_stacks_need_more_context() {
        // EnCodec 24 kHz's decoder: three residual units dilated 1, 3, 9 per block (kernel 3).
        let c = EncodecConfig { num_residual_layers: 3, dilation_growth_rate: 3, upsampling_ratios: vec![8, 5, 4, 2], ..musicgen() };
        let ctx = Context::of(&c).unwrap();
        // Last block (ratio 2, 320 samples a frame): ±(3 + 1 + 3 + 9) = ±16 samples, then ratio 2
        // (trim 1): [ceil((-16 + 1 - 3) / 2), floor((335 + 1) / 2)] = [-9, 168]; ratio 4 (trim 2):
        // [-22, 181] -> [ceil(-27 / 4), floor(183 / 4)] = [-6, 45]; ratio 5 (trim 3): [-19, 58] ->
        // [ceil(-25 / 5), floor(61 / 5)] = [-5, 12]; ratio 8 (trim 4): [-18, 25] ->
        // [ceil(-29 / 8), floor(29 / 8)] = [-3, 3].
        assert_eq!((ctx.before, ctx.after), (3, 3));
        // Padding 9 at 8 samples a frame: windows of at least 2 frames.
        assert_eq!(ctx.stack_window, 2);
    }

    #[test]
    fn transformers_paddings_and_trims() {
        assert_eq!(conv_pads(7, 1, false), (3, 3));
        assert_eq!(conv_pads(4, 1, false), (2, 1));
        assert_eq!(conv_pads(3, 9, false), (9, 9));
        assert_eq!(conv_pads(7, 1, true), (6, 0));
        assert_eq!(trims(5, false, 1.0), (3, 2));
        assert_eq!(trims(8, false, 1.0), (4, 4));
        assert_eq!(trims(5, true, 1.0), (0, 5));
        assert_eq!(trims(5, true, 0.5), (2, 3));
        assert!(Context::of(&EncodecConfig { pad_mode: "circular".into(), ..musicgen() }).is_err());
    }
}
