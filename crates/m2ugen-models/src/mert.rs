//! MERT-v1 (Hugging Face `HubertModel` names; no CQT, no deepnorm, as the released MERT-v1
//! models are): the strided convolutional feature extractor over the normalised 24 kHz
//! waveform, the feature projection, the grouped positional convolution (its weight norm
//! folded by the converter), and the transformer, post-norm (MERT-v1-95M, the fixture) or
//! pre-norm (`do_stable_layer_norm`, MERT-v1-330M) as the config says. Every hidden state is
//! visited: the input of each layer and the last output (after the encoder's final LayerNorm
//! in the pre-norm form, as transformers 4 returns it).
//!
//! The waveform is channels-last `(1, samples, 1)`; the feature extractor's output
//! `(frames, conv_dim)` is one row per 320 samples at the published strides.
//!
//! **Long windows in chunks.** The first convolution gives one row per 5 samples: for the
//! reference's 60-s window at MERT-330M, 288 000 rows of 512 channels, 590 MB in f32, more than
//! a browser binds. So when a window's first convolution gives more than [`FEATURE_CHUNK_ROWS`]
//! rows, the feature extractor runs in chunks of output frames, each from the slice of the
//! waveform its receptive field covers (every convolution is unpadded, so a chunk's frames are
//! exactly the whole run's), and no intermediate is larger than a chunk: 32 MiB at MERT-330M.
//! The group form's GroupNorm normalises each channel over the whole window, so its statistics
//! come first, in two passes over the same chunks of the first convolution: the mean, then the
//! mean squared deviation from it (as PyTorch computes them); each chunk is then normalised
//! with them ([`Recorder::batch_norm`]).

use crate::layers::{LayerNorm, Linear, Mlp, MultiHeadAttention};
use crate::{Error, Result, Store};
use m2ugen_core::config::MertConfig;
use m2ugen_core::conv::{Conv1d, Padding};
use m2ugen_gpu::ops::MAX_POOL_ROWS;
use m2ugen_gpu::{Gpu, GpuTensor, HeadShape, Recorder, Unary};
use std::ops::Range;

/// Rows of the first convolution's output held at once (see the module's notes): 32 MiB at
/// MERT-330M's 512 channels in f32; longer windows go through the feature extractor in chunks.
pub const FEATURE_CHUNK_ROWS: usize = MAX_POOL_ROWS;

/// One convolution of the feature extractor and the norm after it, if any.
struct FeatureConv {
    weight: GpuTensor,
    bias: Option<GpuTensor>,
    stride: usize,
    norm: FeatureNorm,
}

enum FeatureNorm {
    None,
    /// GroupNorm with one group per channel over the whole clip (the first convolution of the
    /// `group` form).
    Group(GpuTensor, GpuTensor),
    /// LayerNorm over channels per frame (every convolution of the `layer` form).
    Layer(LayerNorm),
}

struct Layer {
    attention: MultiHeadAttention,
    attention_norm: LayerNorm,
    feed_forward: Mlp,
    final_norm: LayerNorm,
}

/// MERT, loaded.
pub struct Mert {
    config: MertConfig,
    convs: Vec<FeatureConv>,
    projection_norm: Option<LayerNorm>,
    projection: Linear,
    pos_conv: (GpuTensor, GpuTensor),
    encoder_norm: LayerNorm,
    layers: Vec<Layer>,
    feature_act: Unary,
    chunk_rows: usize,
}

impl Mert {
    /// Loads the `{prefix}.*` tensors (`mert` in a converted model) with `config`.
    pub fn load(gpu: &Gpu, store: &mut Store, prefix: &str, config: &MertConfig) -> Result<Mert> {
        let c = config;
        let n = c.conv_dim.len();
        if n == 0 || c.conv_kernel.len() != n || c.conv_stride.len() != n {
            return Err(Error::Request(format!("mert config: conv_dim, conv_kernel and conv_stride must have the same non-zero length ({}, {}, {})", n, c.conv_kernel.len(), c.conv_stride.len())));
        }
        let layer_form = match c.feat_extract_norm.as_str() {
            "group" => false,
            "layer" => true,
            other => return Err(Error::Request(format!("mert config: feat_extract_norm '{other}' is neither 'group' nor 'layer'"))),
        };
        let eps = c.layer_norm_eps;
        let mut convs = Vec::with_capacity(n);
        let mut c_in = 1;
        for i in 0..n {
            let name = format!("{prefix}.feature_extractor.conv_layers.{i}");
            let weight = store.tensor(&format!("{name}.conv.weight"), &[c.conv_dim[i], c_in, c.conv_kernel[i]])?;
            let bias = if c.conv_bias { Some(store.tensor(&format!("{name}.conv.bias"), &[c.conv_dim[i]])?) } else { None };
            let norm = if layer_form {
                FeatureNorm::Layer(LayerNorm::load(store, &format!("{name}.layer_norm"), c.conv_dim[i], 1e-5)?)
            } else if i == 0 {
                let ln = LayerNorm::load(store, &format!("{name}.layer_norm"), c.conv_dim[i], 1e-5)?;
                FeatureNorm::Group(ln.weight, ln.bias)
            } else {
                FeatureNorm::None
            };
            convs.push(FeatureConv { weight, bias, stride: c.conv_stride[i], norm });
            c_in = c.conv_dim[i];
        }
        let h = c.hidden_size;
        let projection_norm = if c.feat_proj_layer_norm { Some(LayerNorm::load(store, &format!("{prefix}.feature_projection.layer_norm"), c_in, eps)?) } else { None };
        let projection = Linear::load(store, &format!("{prefix}.feature_projection.projection"), h, c_in, true)?;
        let groups = c.num_conv_pos_embedding_groups;
        if groups == 0 || h % groups != 0 || c.num_attention_heads == 0 || h % c.num_attention_heads != 0 {
            return Err(Error::Request(format!("mert config: hidden_size {h} must divide by num_conv_pos_embedding_groups {groups} and num_attention_heads {}", c.num_attention_heads)));
        }
        let pos = format!("{prefix}.encoder.pos_conv_embed.conv");
        let pos_conv = (store.tensor(&format!("{pos}.weight"), &[h, h / groups, c.num_conv_pos_embeddings])?, store.tensor(&format!("{pos}.bias"), &[h])?);
        let encoder_norm = LayerNorm::load(store, &format!("{prefix}.encoder.layer_norm"), h, eps)?;
        let shape = HeadShape { heads: c.num_attention_heads, kv_heads: c.num_attention_heads, head_dim: h / c.num_attention_heads };
        let act = Unary::of(c.hidden_act);
        let layers = (0..c.num_hidden_layers)
            .map(|i| {
                let l = format!("{prefix}.encoder.layers.{i}");
                let a = format!("{l}.attention");
                let names = [format!("{a}.q_proj"), format!("{a}.k_proj"), format!("{a}.v_proj"), format!("{a}.out_proj")];
                Ok(Layer {
                    attention: MultiHeadAttention::load_separate(gpu, store, [&names[0], &names[1], &names[2], &names[3]], h, shape, true)?,
                    attention_norm: LayerNorm::load(store, &format!("{l}.layer_norm"), h, eps)?,
                    feed_forward: Mlp::load(store, &format!("{l}.feed_forward.intermediate_dense"), &format!("{l}.feed_forward.output_dense"), h, c.intermediate_size, act, true)?,
                    final_norm: LayerNorm::load(store, &format!("{l}.final_layer_norm"), h, eps)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let mut mert = Mert { config: config.clone(), convs, projection_norm, projection, pos_conv, encoder_norm, layers, feature_act: Unary::of(c.feat_extract_activation), chunk_rows: FEATURE_CHUNK_ROWS };
        // At least one frame per chunk, whatever the kernels.
        mert.chunk_rows = mert.chunk_rows.max(mert.rows_for_frames(1));
        Ok(mert)
    }

    /// Every tensor [`Mert::load`] takes under `prefix`, with its shape (for random weights in
    /// benchmarks, and to check a converted model against the configuration).
    pub fn tensors(prefix: &str, c: &MertConfig) -> Vec<(String, Vec<usize>)> {
        let mut t = Vec::new();
        let mut add = |name: String, shape: Vec<usize>| t.push((format!("{prefix}.{name}"), shape));
        let mut c_in = 1;
        for (i, ((&dim, &k), _)) in c.conv_dim.iter().zip(&c.conv_kernel).zip(&c.conv_stride).enumerate() {
            let name = format!("feature_extractor.conv_layers.{i}");
            add(format!("{name}.conv.weight"), vec![dim, c_in, k]);
            if c.conv_bias {
                add(format!("{name}.conv.bias"), vec![dim]);
            }
            if c.feat_extract_norm == "layer" || i == 0 {
                add(format!("{name}.layer_norm.weight"), vec![dim]);
                add(format!("{name}.layer_norm.bias"), vec![dim]);
            }
            c_in = dim;
        }
        let h = c.hidden_size;
        if c.feat_proj_layer_norm {
            add("feature_projection.layer_norm.weight".into(), vec![c_in]);
            add("feature_projection.layer_norm.bias".into(), vec![c_in]);
        }
        add("feature_projection.projection.weight".into(), vec![h, c_in]);
        add("feature_projection.projection.bias".into(), vec![h]);
        add("encoder.pos_conv_embed.conv.weight".into(), vec![h, h / c.num_conv_pos_embedding_groups.max(1), c.num_conv_pos_embeddings]);
        add("encoder.pos_conv_embed.conv.bias".into(), vec![h]);
        add("encoder.layer_norm.weight".into(), vec![h]);
        add("encoder.layer_norm.bias".into(), vec![h]);
        for i in 0..c.num_hidden_layers {
            let l = format!("encoder.layers.{i}");
            for p in ["q_proj", "k_proj", "v_proj", "out_proj"] {
                add(format!("{l}.attention.{p}.weight"), vec![h, h]);
                add(format!("{l}.attention.{p}.bias"), vec![h]);
            }
            for n in ["layer_norm", "final_layer_norm"] {
                add(format!("{l}.{n}.weight"), vec![h]);
                add(format!("{l}.{n}.bias"), vec![h]);
            }
            add(format!("{l}.feed_forward.intermediate_dense.weight"), vec![c.intermediate_size, h]);
            add(format!("{l}.feed_forward.intermediate_dense.bias"), vec![c.intermediate_size]);
            add(format!("{l}.feed_forward.output_dense.weight"), vec![h, c.intermediate_size]);
            add(format!("{l}.feed_forward.output_dense.bias"), vec![h]);
        }
        t
    }

    /// Multiply-adds ×2 of one window of `samples` samples: the convolutions, the projection,
    /// the positional convolution and the transformer (what a benchmark divides by its time).
    pub fn flops(c: &MertConfig, samples: usize) -> f64 {
        let mut len = samples;
        let mut c_in = 1;
        let mut f = 0.0;
        for ((&dim, &k), &s) in c.conv_dim.iter().zip(&c.conv_kernel).zip(&c.conv_stride) {
            len = if len < k { 0 } else { (len - k) / s + 1 };
            f += 2.0 * (len * dim * c_in * k) as f64;
            c_in = dim;
        }
        let (t, h, i) = (len as f64, c.hidden_size as f64, c.intermediate_size as f64);
        f += 2.0 * t * c_in as f64 * h;
        f += 2.0 * t * h * (h / c.num_conv_pos_embedding_groups.max(1) as f64) * c.num_conv_pos_embeddings as f64;
        f + c.num_hidden_layers as f64 * (8.0 * t * h * h + 4.0 * t * t * h + 4.0 * t * h * i)
    }

    /// The configuration.
    pub fn config(&self) -> &MertConfig {
        &self.config
    }

    /// Hidden states per clip: layers + 1.
    pub fn states(&self) -> usize {
        self.layers.len() + 1
    }

    /// Input samples the feature extractor needs for one frame.
    pub fn receptive_field(&self) -> usize {
        self.input_of(0, &(0..1)).len()
    }

    /// Frames for `samples` input samples (0 when too short for one).
    pub fn frames(&self, samples: usize) -> usize {
        self.rows_after(self.convs.len(), samples)
    }

    /// Rows out of the first `convs` convolutions for `len` input rows (0 when too short).
    fn rows_after(&self, convs: usize, len: usize) -> usize {
        self.convs[..convs].iter().zip(&self.config.conv_kernel).fold(len, |len, (conv, &k)| if len < k { 0 } else { (len - k) / conv.stride + 1 })
    }

    /// The input rows of convolution `from` that `rows` of the feature extractor's output read
    /// (every convolution is unpadded).
    fn input_of(&self, from: usize, rows: &Range<usize>) -> Range<usize> {
        self.convs[from..].iter().zip(&self.config.conv_kernel[from..]).rev().fold(rows.clone(), |r, (conv, &k)| r.start * conv.stride..(r.end - 1) * conv.stride + k)
    }

    /// Sets how many rows of the first convolution's output one chunk of the feature extractor
    /// holds (default [`FEATURE_CHUNK_ROWS`]): at least what one frame needs, at most
    /// [`MAX_POOL_ROWS`]. Smaller chunks only cost dispatches; the tests use them to run short
    /// clips through the chunked path.
    pub fn set_chunk_rows(&mut self, rows: usize) -> Result<()> {
        let least = self.rows_for_frames(1);
        if rows < least || rows > MAX_POOL_ROWS {
            return Err(Error::Request(format!("mert: a chunk of the feature extractor holds {least} to {MAX_POOL_ROWS} rows of the first convolution, not {rows}")));
        }
        self.chunk_rows = rows;
        Ok(())
    }

    /// Rows of the first convolution's output that `frames` consecutive frames need.
    fn rows_for_frames(&self, frames: usize) -> usize {
        self.input_of(1, &(0..frames)).len()
    }

    /// Frames per chunk: as many as [`Self::set_chunk_rows`]'s rows cover.
    fn chunk_frames(&self) -> usize {
        let stride: usize = self.convs[1..].iter().map(|c| c.stride).product();
        (self.chunk_rows - self.rows_for_frames(1)) / stride + 1
    }

    /// The samples that frames `frames` of the feature extractor read.
    fn samples_for(&self, frames: &Range<usize>) -> Range<usize> {
        self.input_of(0, frames)
    }

    /// `samples` of the waveform `(1, len, 1)`, as a tensor of its own unless they are all of it.
    fn waveform_slice(rec: &mut Recorder, waveform: &GpuTensor, samples: Range<usize>) -> Result<GpuTensor> {
        let len = waveform.numel();
        let whole = waveform.reshape(&[1, len, 1])?;
        if samples == (0..len) {
            return Ok(whole);
        }
        Ok(rec.slice(&whole, 1, samples)?)
    }

    /// The first convolution over `samples` of the waveform, as rows `(rows, conv_dim)`.
    fn first_conv(&self, rec: &mut Recorder, waveform: &GpuTensor, samples: Range<usize>) -> Result<GpuTensor> {
        let conv = &self.convs[0];
        let x = Self::waveform_slice(rec, waveform, samples)?;
        let y = rec.conv1d(&x, &conv.weight, conv.bias.as_ref(), &Conv1d { stride: conv.stride, ..Conv1d::plain() })?;
        Ok(y.reshape(&[y.shape()[1], y.cols()])?)
    }

    /// The group form's GroupNorm statistics over every row of the first convolution, `rows`
    /// of them, gathered chunk by chunk: the per-channel mean, then the mean squared deviation
    /// from it (sums in f32).
    fn first_conv_statistics(&self, rec: &mut Recorder, waveform: &GpuTensor, rows: usize) -> Result<(GpuTensor, GpuTensor)> {
        let (stride, kernel) = (self.convs[0].stride, self.config.conv_kernel[0]);
        let chunks: Vec<Range<usize>> = (0..rows).step_by(self.chunk_rows).map(|r| r * stride..((r + self.chunk_rows).min(rows) - 1) * stride + kernel).collect();
        let scale = 1.0 / rows as f32;
        let mean = self.sum_over_chunks(rec, waveform, &chunks, |rec, y| Ok(rec.sum_rows(y, None, None, scale)?))?;
        let variance = self.sum_over_chunks(rec, waveform, &chunks, |rec, y| Ok(rec.sum_squared_deviations(y, &mean, scale)?))?;
        Ok((mean, variance))
    }

    /// The sum over `chunks` (never empty) of `part` of each chunk's first convolution, as one
    /// row `(conv_dim)`.
    fn sum_over_chunks(&self, rec: &mut Recorder, waveform: &GpuTensor, chunks: &[Range<usize>], part: impl Fn(&mut Recorder, &GpuTensor) -> Result<GpuTensor>) -> Result<GpuTensor> {
        let mut sum: Option<GpuTensor> = None;
        for samples in chunks {
            let y = self.first_conv(rec, waveform, samples.clone())?;
            let p = part(rec, &y)?;
            sum = Some(match sum {
                Some(s) => rec.add(&s, &p)?,
                None => p,
            });
        }
        let sum = sum.expect("a window of at least one row has at least one chunk");
        Ok(sum.reshape(&[sum.numel()])?)
    }

    /// Frames `frames` of the feature extractor `(frames, conv_dim)`, from `samples` of the
    /// waveform. A chunk reads only the samples its frames need, and `statistics` are then the
    /// group form's GroupNorm statistics over the whole window. Without them the GroupNorm
    /// normalises over this run, which must then be the whole window, every sample of it (the
    /// last samples may feed rows of the first convolution that no frame reads, but they count
    /// in its statistics).
    fn feature_rows(&self, rec: &mut Recorder, waveform: &GpuTensor, samples: Range<usize>, frames: Range<usize>, statistics: Option<&(GpuTensor, GpuTensor)>) -> Result<GpuTensor> {
        let mut x = Self::waveform_slice(rec, waveform, samples)?;
        for conv in &self.convs {
            let c = Conv1d { stride: conv.stride, ..Conv1d::plain() };
            x = rec.conv1d(&x, &conv.weight, conv.bias.as_ref(), &c)?;
            x = match (&conv.norm, statistics) {
                (FeatureNorm::None, _) => x,
                (FeatureNorm::Group(w, b), Some((mean, variance))) => {
                    let shape = x.shape().to_vec();
                    rec.batch_norm(&x.reshape(&[shape[1], shape[2]])?, mean, variance, w, b, 1e-5)?.reshape(&shape)?
                }
                (FeatureNorm::Group(w, b), None) => rec.group_norm(&x, x.cols(), w, b, 1e-5)?,
                (FeatureNorm::Layer(ln), _) => ln.forward(rec, &x)?,
            };
            x = rec.unary(self.feature_act, &x)?;
        }
        let rows = x.shape()[1];
        if rows != frames.len() {
            return Err(Error::Request(format!("mert: the feature extractor gave {rows} frames for frames {frames:?} (a bug)")));
        }
        Ok(x.reshape(&[rows, x.cols()])?)
    }

    /// The feature extractor and projection: a normalised waveform `(samples)` (one binding)
    /// to frames `(frames, hidden)`. Long windows run in chunks (see the module's notes).
    pub fn features(&self, rec: &mut Recorder, waveform: &GpuTensor) -> Result<GpuTensor> {
        let samples = waveform.numel();
        let frames = self.frames(samples);
        if frames == 0 {
            return Err(Error::Request(format!("music: {samples} samples are too short for MERT, which needs at least {} (at 24 kHz)", self.receptive_field())));
        }
        let first_rows = self.rows_after(1, samples);
        let mut x = if first_rows <= self.chunk_rows {
            self.feature_rows(rec, waveform, 0..samples, 0..frames, None)?
        } else {
            let statistics = match self.convs[0].norm {
                FeatureNorm::Group(..) => Some(self.first_conv_statistics(rec, waveform, first_rows)?),
                _ => None,
            };
            let per_chunk = self.chunk_frames();
            let parts = (0..frames).step_by(per_chunk).map(|f| {
                    let chunk = f..(f + per_chunk).min(frames);
                    self.feature_rows(rec, waveform, self.samples_for(&chunk), chunk, statistics.as_ref())
                }).collect::<Result<Vec<_>>>()?;
            let refs: Vec<&GpuTensor> = parts.iter().collect();
            rec.concat(&refs, 0)?
        };
        if let Some(ln) = &self.projection_norm {
            x = ln.forward(rec, &x)?;
        }
        self.projection.forward(rec, &x)
    }

    /// Runs the model on a normalised waveform, calling `visit` with each hidden state
    /// `(frames, hidden)` in order (layers + 1 of them), so a caller keeps what it needs (all
    /// of them, or their means) and the rest goes back to the pool.
    pub fn forward(&self, rec: &mut Recorder, waveform: &GpuTensor, visit: &mut dyn FnMut(&mut Recorder, &GpuTensor) -> Result<()>) -> Result<()> {
        let x = self.features(rec, waveform)?;
        let frames = x.rows();
        let k = self.config.num_conv_pos_embeddings;
        // PyTorch pads k/2 on both sides, then drops the last frame when k is even (the "same
        // pad" layer): the same as k/2 - 1 on the right.
        let pos = Conv1d { groups: self.config.num_conv_pos_embedding_groups, pad_left: k / 2, pad_right: k / 2 - (k % 2 == 0) as usize, padding: Padding::Zeros, ..Conv1d::plain() };
        let p = rec.conv1d(&x.reshape(&[1, frames, x.cols()])?, &self.pos_conv.0, Some(&self.pos_conv.1), &pos)?;
        let p = rec.unary(self.feature_act, &p)?;
        let mut h = rec.add(&x, &p.reshape(&[frames, x.cols()])?)?;
        let pre_norm = self.config.do_stable_layer_norm;
        if !pre_norm {
            h = self.encoder_norm.forward(rec, &h)?;
        }
        for layer in &self.layers {
            visit(rec, &h)?;
            h = if pre_norm {
                let n = layer.attention_norm.forward(rec, &h)?;
                let kv = layer.attention.keys(rec, &n)?;
                let h = layer.attention.attend(rec, &n, &kv, Some(&h))?;
                let n = layer.final_norm.forward(rec, &h)?;
                layer.feed_forward.forward(rec, &n, Some(&h))?
            } else {
                let kv = layer.attention.keys(rec, &h)?;
                let a = layer.attention.attend(rec, &h, &kv, Some(&h))?;
                let h = layer.attention_norm.forward(rec, &a)?;
                let f = layer.feed_forward.forward(rec, &h, Some(&h))?;
                layer.final_norm.forward(rec, &f)?
            };
        }
        if pre_norm {
            h = self.encoder_norm.forward(rec, &h)?;
        }
        visit(rec, &h)
    }

    /// The time mean of every hidden state, `(layers + 1, hidden)`: what M2UGen's music
    /// adapter aggregates.
    pub fn state_means(&self, rec: &mut Recorder, waveform: &GpuTensor) -> Result<GpuTensor> {
        let mut means = Vec::with_capacity(self.states());
        self.forward(rec, waveform, &mut |rec, h| {
            means.push(rec.sum_rows(h, None, None, 1.0 / h.rows() as f32)?);
            Ok(())
        })?;
        let refs: Vec<&GpuTensor> = means.iter().collect();
        Ok(rec.concat(&refs, 0)?)
    }
}
