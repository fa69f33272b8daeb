//! Parity of EnCodec's decoder with `transformers` on the MusicGen fixture (`io.safetensors`),
//! whole and decoded in chunks, and with a plain-loop reference on random weights (the fixture's
//! codebooks are zeros, so its audio does not depend on the codes; see [`check_random`]): shared
//! by the native suite (f32 and f16) and the browser suite (f32). Nothing here reads files.

use crate::parity::close;
use crate::{Result, Tol};
use anyhow::{ensure, Context as _};
use m2ugen_core::config::{EncodecConfig, MusicgenConfig};
use m2ugen_gpu::registry::Elem;
use m2ugen_gpu::{Gpu, Recorder};
use m2ugen_models::encodec::EncodecDecoder;
use m2ugen_models::Store;
use m2ugen_weights::loader::{load_manifest, Fetcher, LoadOptions};
use m2ugen_weights::safetensors::InMemory;
use std::collections::HashMap;

/// Where a converted MusicGen keeps EnCodec.
pub const PREFIX: &str = "musicgen.audio_encoder";

/// Tolerance of the audio, `|ours - reference| <= atol`: the fixture's `atol 1e-4` in f32. In
/// f16 every activation and weight is rounded to 11 bits through some 20 layers; the fixture's
/// samples (0.27 to 0.46) were measured within 4.5e-4 of the reference on lavapipe.
pub fn audio_tol(elem: Elem) -> Tol {
    match elem {
        Elem::F32 => Tol { atol: 1e-4, rtol: 0.0 },
        Elem::F16 => Tol { atol: 2e-3, rtol: 0.0 },
    }
}

/// How close chunked decoding stays to whole decoding: the 1e-4 in f32; in f16 the
/// chunks' products of other shapes (matrix-vector for a few frames) round differently, a few
/// f16 steps (measured within 6e-3 on random-weight samples up to 3.7).
pub fn streaming_tol(elem: Elem) -> Tol {
    match elem {
        Elem::F32 => Tol { atol: 1e-4, rtol: 0.0 },
        Elem::F16 => Tol { atol: 1e-2, rtol: 1e-2 },
    }
}

/// Loads EnCodec's decoder from the converted MusicGen at `fetcher` in element type `elem`.
pub async fn load_encodec<F: Fetcher>(gpu: &Gpu, elem: Elem, fetcher: &F) -> Result<EncodecDecoder> {
    let manifest = load_manifest(fetcher).await?;
    let clock = m2ugen_gpu::now_ms;
    let options = LoadOptions { in_flight: 4, max_resumes: 3, clock: &clock, cache: None };
    let mut store = m2ugen_pipeline::load::load_store(gpu, elem.dtype(), fetcher, &manifest, |n| EncodecDecoder::needs(PREFIX, n), &options, |_| {}).await?;
    let config: MusicgenConfig = m2ugen_core::config::parse("musicgen", manifest.components.get("musicgen").context("no musicgen component")?)?;
    Ok(EncodecDecoder::load(gpu, &mut store, PREFIX, &config.audio_encoder)?)
}

/// The tensors the loader picks for EnCodec from the converted MusicGen at `fetcher` are, with
/// their shapes, exactly those [`EncodecDecoder::tensors`] lists for its configuration and
/// `codebooks` codebooks (what benchmarks with random weights rely on).
pub async fn check_tensor_list<F: Fetcher>(fetcher: &F, codebooks: usize) -> Result<()> {
    let manifest = load_manifest(fetcher).await?;
    let config: MusicgenConfig = m2ugen_core::config::parse("musicgen", manifest.components.get("musicgen").context("no musicgen component")?)?;
    let mut stored: Vec<(String, Vec<usize>)> = manifest.tensors.iter().filter(|t| EncodecDecoder::needs(PREFIX, &t.name)).map(|t| (t.name.clone(), t.shape.clone())).collect();
    let mut listed = EncodecDecoder::tensors(PREFIX, &config.audio_encoder, codebooks);
    stored.sort();
    listed.sort();
    let missing: Vec<_> = listed.iter().filter(|t| !stored.contains(t)).collect();
    let extra: Vec<_> = stored.iter().filter(|t| !listed.contains(t)).collect();
    ensure!(missing.is_empty() && extra.is_empty(), "EncodecDecoder::tensors lists {missing:?} that the converted model does not hold, and misses {extra:?}");
    ensure!(manifest.tensors.iter().any(|t| t.name.starts_with(&format!("{PREFIX}.encoder."))) && !manifest.tensors.iter().any(|t| t.name.starts_with(&format!("{PREFIX}.encoder.")) && EncodecDecoder::needs(PREFIX, &t.name)), "the loader filter should leave the EnCodec encoder out");
    Ok(())
}

/// Codes of the fixture, `(1, batch, codebooks, frames)` as transformers' `audio_codes`: the
/// `(batch, codebooks, frames)` codes, batch and frames.
pub fn fixture_codes(io: &InMemory, name: &str) -> Result<(Vec<u32>, usize, usize)> {
    let (v, shape) = io.i64(name)?;
    ensure!(shape.len() == 4 && shape[0] == 1, "{name}: shape {shape:?}, expected (1, batch, codebooks, frames)");
    let codes = v.iter().map(|&c| u32::try_from(c).with_context(|| format!("{name}: code {c}"))).collect::<Result<Vec<_>>>()?;
    Ok((codes, shape[1], shape[3]))
}

/// The fixture's audio `(batch, 1, samples)` as `(batch, samples)` rows.
fn fixture_audio(io: &InMemory, name: &str) -> Result<Vec<f32>> {
    let (v, shape) = io.f32(name)?;
    ensure!(shape.len() == 3 && shape[1] == 1, "{name}: shape {shape:?}, expected (batch, 1, samples)");
    Ok(v)
}

/// Decodes `codes` whole and reads the samples back, `(batch, samples)`.
pub async fn decode(gpu: &Gpu, decoder: &EncodecDecoder, codes: &[u32], batch: usize, frames: usize) -> Result<Vec<f32>> {
    let mut rec = Recorder::new(gpu);
    let audio = decoder.decode(&mut rec, codes, batch, frames)?;
    rec.submit()?;
    Ok(gpu.read(&audio).await?)
}

/// `in.encodec_codes`, `out.greedy_codes` and `out.greedy_codes_cfg3` through the decoder give
/// `out.encodec_audio`, `out.greedy_audio` and `out.greedy_audio_cfg3`. (With the fixture's zero
/// codebooks this checks every layer after the quantizer on a zero latent: biases, the LSTM's
/// start, trims and edge padding; [`check_random`] covers the codes.)
pub async fn check_encodec(gpu: &Gpu, elem: Elem, decoder: &EncodecDecoder, io: &InMemory) -> Result<()> {
    for (codes, audio) in [("in.encodec_codes", "out.encodec_audio"), ("out.greedy_codes", "out.greedy_audio"), ("out.greedy_codes_cfg3", "out.greedy_audio_cfg3")] {
        let (c, batch, frames) = fixture_codes(io, codes)?;
        let ours = decode(gpu, decoder, &c, batch, frames).await?;
        ensure!(ours.len() == batch * frames * decoder.hop(), "{audio}: {} samples for {batch} x {frames} frames", ours.len());
        close(audio, &ours, &fixture_audio(io, audio)?, audio_tol(elem))?;
    }
    Ok(())
}

/// Decodes `codes` `(batch, codebooks, frames)` through a stream fed `chunks` frames at a time
/// (cycled), checking after every push that the samples returned so far are whole frames and
/// lag the frames received by at most `max_lag`: `(batch, samples)`.
async fn decode_streamed(gpu: &Gpu, decoder: &EncodecDecoder, codes: &[u32], batch: usize, frames: usize, chunks: &[usize], max_lag: usize) -> Result<Vec<f32>> {
    let k = decoder.codebooks();
    let hop = decoder.hop();
    let mut stream = decoder.stream(batch)?;
    let mut tracks = vec![Vec::new(); batch];
    let (mut at, mut i) = (0, 0);
    while at <= frames {
        let last = at == frames;
        let n = if last { 0 } else { chunks[i % chunks.len()].min(frames - at) };
        let mut rec = Recorder::new(gpu);
        let piece = if last {
            stream.finish(&mut rec)?
        } else {
            let part: Vec<u32> = (0..batch * k).flat_map(|row| codes[row * frames + at..row * frames + at + n].iter().copied()).collect();
            stream.push(&mut rec, &part, n)?
        };
        rec.submit()?;
        if let Some(piece) = piece {
            let values = gpu.read(&piece).await?;
            let per_track = values.len() / batch;
            ensure!(per_track.is_multiple_of(hop) && per_track > 0, "a piece of {per_track} samples per track is not whole frames of {hop}");
            for (b, track) in tracks.iter_mut().enumerate() {
                track.extend_from_slice(&values[b * per_track..(b + 1) * per_track]);
            }
        }
        at += n;
        let returned = tracks[0].len() / hop;
        ensure!(returned == stream.emitted(), "{returned} frames of samples returned, the stream says {}", stream.emitted());
        if last {
            ensure!(returned == frames, "after finish: {returned} of {frames} frames returned");
            break;
        }
        ensure!(returned + max_lag >= at, "after {at} frames in chunks of {chunks:?}, only {returned} frames of samples were final (latency above {max_lag})");
        i += 1;
    }
    Ok(tracks.concat())
}

/// Chunked decoding of `in.encodec_codes` and `out.greedy_codes` in irregular chunks (and through
/// `decode_chunked`) gives whole decoding's samples, and the fixture's; samples come out at most
/// 4 frames (the overlap worked out for MusicGen's geometry) after their codes. (On the fixture's
/// zero latent only the LSTM's start varies over time; [`check_random`] decodes varying input
/// one frame at a time too.)
pub async fn check_streaming(gpu: &Gpu, elem: Elem, decoder: &EncodecDecoder, io: &InMemory) -> Result<()> {
    let c = decoder.config();
    let musicgen_geometry = c.upsampling_ratios == [8, 5, 4, 4] && c.kernel_size == 7 && c.last_kernel_size == 7 && c.residual_kernel_size == 3 && c.num_residual_layers == 1 && !c.use_causal_conv;
    ensure!(musicgen_geometry, "the fixture's EnCodec is not MusicGen's geometry: {c:?}");
    let max_lag = 4;
    for (codes, audio, plans) in [
        ("in.encodec_codes", "out.encodec_audio", &[&[7usize, 13, 1, 2, 27][..]][..]),
        ("out.greedy_codes", "out.greedy_audio", &[&[3usize, 1, 4][..]][..]),
    ] {
        let (codes_v, batch, frames) = fixture_codes(io, codes)?;
        let whole = decode(gpu, decoder, &codes_v, batch, frames).await?;
        let reference = fixture_audio(io, audio)?;
        for plan in plans {
            let streamed = decode_streamed(gpu, decoder, &codes_v, batch, frames, plan, max_lag).await?;
            close(&format!("{codes} in chunks of {plan:?} against whole decoding"), &streamed, &whole, streaming_tol(elem))?;
            close(&format!("{codes} in chunks of {plan:?} against {audio}"), &streamed, &reference, audio_tol(elem))?;
        }
        // The same through `decode_chunked`, as `decode` takes clips too long for one pass.
        let mut rec = Recorder::new(gpu);
        let chunked = decoder.decode_chunked(&mut rec, &codes_v, batch, frames, 6)?;
        rec.submit()?;
        close(&format!("{codes} through decode_chunked(6)"), &gpu.read(&chunked).await?, &whole, streaming_tol(elem))?;
    }
    Ok(())
}

/// Bad codes fail naming the problem: a code at the codebook size, a codebook too few, and a
/// push after the end.
pub fn check_bad_codes(gpu: &Gpu, decoder: &EncodecDecoder, io: &InMemory) -> Result<()> {
    let (mut codes, batch, frames) = fixture_codes(io, "out.greedy_codes")?;
    let size = decoder.config().codebook_size;
    let k = decoder.codebooks();
    let mut rec = Recorder::new(gpu);
    let index = (k + 2) * frames + 5; // track 1, codebook 2, frame 5
    codes[index] = size as u32;
    let e = decoder.decode(&mut rec, &codes, batch, frames).err().context("a code at the codebook size was accepted")?.to_string();
    ensure!(e.contains(&format!("code {size}")) && e.contains("track 1, codebook 2, frame 5") && e.contains("codebook size"), "unclear error: {e}");
    let short = &codes[..batch * (k - 1) * frames];
    let e = decoder.decode(&mut rec, short, batch, frames).err().context(format!("{} codebooks were accepted", k - 1))?.to_string();
    ensure!(e.contains(&format!("{k} codebooks")), "unclear error: {e}");
    let mut stream = decoder.stream(batch)?;
    let mut frame = vec![0; batch * k];
    frame[batch * k - 1] = size as u32 + 7;
    let e = stream.push(&mut rec, &frame, 1).err().context("a bad code was accepted by push")?.to_string();
    ensure!(e.contains("codebook size"), "unclear error: {e}");
    stream.finish(&mut rec)?;
    let e = stream.push(&mut rec, &vec![0; batch * k], 1).err().context("a push after finish was accepted")?.to_string();
    ensure!(e.contains("after the stream was finished"), "unclear error: {e}");
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Random weights against a plain-loop reference.
//
// The fixture's codebooks are all zeros (transformers initialises the codebook buffers to zeros
// and the fixture's weight scaling left them so), so its audio does not depend on the codes: it
// checks the decoder's structure on a zero latent, not the codebook lookup, the first
// convolution's weights or chunked decoding of varying input. These checks give a small EnCodec
// random weights and codebooks and compare with a reference written from transformers'
// `modeling_encodec.py` in plain loops, channels-first as PyTorch holds them.

/// A small EnCodec with random weights: its configuration, codebook count, the weights by name
/// (as the GPU sees them) and the decoder built from them.
pub struct RandomEncodec {
    /// The configuration.
    pub config: EncodecConfig,
    /// Codebooks.
    pub codebooks: usize,
    /// Every tensor's values.
    pub weights: HashMap<String, Vec<f32>>,
    /// The decoder, loaded from `weights`.
    pub decoder: EncodecDecoder,
}

/// xorshift64*: uniform values in [-1, 1).
struct Draw(u64);

impl Draw {
    fn next(&mut self) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let v = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 40;
        v as f32 / (1u64 << 23) as f32 - 1.0
    }
}

/// Random weights for `config` with `codebooks` codebooks (scaled so that activations stay
/// around unit size through the decoder), loaded as `elem`.
pub fn random_encodec(gpu: &Gpu, elem: Elem, config: &EncodecConfig, codebooks: usize, seed: u64) -> Result<RandomEncodec> {
    let mut draw = Draw(seed.max(1));
    let mut store = Store::new(elem.dtype());
    let mut weights = HashMap::new();
    let transposed = transposed_weights(config);
    for (name, shape) in EncodecDecoder::tensors(PREFIX, config, codebooks) {
        let scale = if name.ends_with("codebook.embed") {
            1.5
        } else if name.ends_with("bias") || name.contains(".lstm.bias") {
            0.1
        } else if name.contains(".lstm.") {
            // PyTorch's LSTM initialisation, 1 / sqrt(hidden), made livelier.
            1.5 / (shape[1] as f32).sqrt()
        } else if transposed.contains(&name) {
            // `(c_in, c_out, 2 r)` at stride r: each output sums 2 taps of every input channel.
            1.7 / ((2 * shape[0]) as f32).sqrt()
        } else {
            1.7 / ((shape[1] * shape[2]) as f32).sqrt()
        };
        let values: Vec<f32> = (0..shape.iter().product::<usize>()).map(|_| draw.next() * scale).collect();
        let values = crate::round_to(elem, &values);
        store.insert_f32(gpu, &name, &shape, &values)?;
        weights.insert(name, values);
    }
    let decoder = EncodecDecoder::load(gpu, &mut store, PREFIX, config)?;
    Ok(RandomEncodec { config: config.clone(), codebooks, weights, decoder })
}

/// The names of the transposed convolutions' weights.
fn transposed_weights(c: &EncodecConfig) -> Vec<String> {
    (0..c.upsampling_ratios.len()).map(|i| format!("{PREFIX}.decoder.layers.{}.conv.weight", 3 + i * (2 + c.num_residual_layers))).collect()
}

/// transformers' `_pad1d`: `row` extended by `left` and `right` in `mode`, reflection over zeros
/// appended when the row is no longer than the padding.
fn pad1d(row: &[f32], left: usize, right: usize, mode: &str) -> Vec<f32> {
    let n = row.len();
    match mode {
        "reflect" => {
            let extra = if n <= left.max(right) { left.max(right) - n + 1 } else { 0 };
            let mut x = row.to_vec();
            x.extend(std::iter::repeat_n(0.0, extra));
            let m = x.len();
            let mut out: Vec<f32> = (1..=left).rev().map(|i| x[i]).collect();
            out.extend_from_slice(&x);
            out.extend((1..=right).map(|i| x[m - 1 - i]));
            out.truncate(out.len() - extra);
            out
        }
        "replicate" => {
            let mut out = vec![row[0]; left];
            out.extend_from_slice(row);
            out.extend(std::iter::repeat_n(row[n - 1], right));
            out
        }
        _ => {
            let mut out = vec![0.0; left];
            out.extend_from_slice(row);
            out.extend(std::iter::repeat_n(0.0, right));
            out
        }
    }
}

/// `EncodecConv1d` (stride 1) of `x` `(c_in, len)` with weight `(c_out, c_in, k)`.
fn ref_conv(c: &EncodecConfig, w: &HashMap<String, Vec<f32>>, name: &str, x: &[Vec<f32>], c_out: usize, k: usize, dilation: usize) -> Vec<Vec<f32>> {
    let (weight, bias) = (&w[&format!("{name}.conv.weight")], &w[&format!("{name}.conv.bias")]);
    let (len, c_in) = (x[0].len(), x.len());
    let effective = (k - 1) * dilation + 1;
    let total = effective - 1;
    // `_get_extra_padding_for_conv1d` at stride 1.
    let frames = ((len + total) as f64 - effective as f64 + 1.0).ceil() as usize;
    let extra = (frames - 1 + effective - total) - len;
    let (left, right) = if c.use_causal_conv { (total, extra) } else { (total - total / 2, total / 2 + extra) };
    let padded: Vec<Vec<f32>> = x.iter().map(|row| pad1d(row, left, right, &c.pad_mode)).collect();
    let out_len = padded[0].len() - effective + 1;
    (0..c_out)
        .map(|co| {
            (0..out_len)
                .map(|t| {
                    let mut s = bias[co] as f64;
                    for (ci, row) in padded.iter().enumerate().take(c_in) {
                        for j in 0..k {
                            s += weight[(co * c_in + ci) * k + j] as f64 * row[t + j * dilation] as f64;
                        }
                    }
                    s as f32
                })
                .collect()
        })
        .collect()
}

fn elu(x: &[Vec<f32>]) -> Vec<Vec<f32>> {
    x.iter().map(|row| row.iter().map(|&v| if v > 0.0 { v } else { v.exp_m1() }).collect()).collect()
}

fn add(a: &[Vec<f32>], b: &[Vec<f32>]) -> Vec<Vec<f32>> {
    a.iter().zip(b).map(|(x, y)| x.iter().zip(y).map(|(p, q)| p + q).collect()).collect()
}

/// transformers' EnCodec decoding of one track's codes `(codebooks, frames)`: `(channels, samples)`.
fn ref_track(c: &EncodecConfig, w: &HashMap<String, Vec<f32>>, codes: &[Vec<u32>]) -> Vec<Vec<f32>> {
    let (dim, frames) = (c.hidden_size, codes[0].len());
    // quantizer.decode: the codebooks' embeddings summed, in codebook order.
    let mut x = vec![vec![0f32; frames]; dim];
    for (k, book) in codes.iter().enumerate() {
        let embed = &w[&format!("{PREFIX}.quantizer.layers.{k}.codebook.embed")];
        for (t, &code) in book.iter().enumerate() {
            for (d, row) in x.iter_mut().enumerate() {
                row[t] += embed[code as usize * dim + d];
            }
        }
    }
    let layers = format!("{PREFIX}.decoder.layers");
    let mut scaling = 1 << c.upsampling_ratios.len();
    let width = scaling * c.num_filters;
    let mut x = ref_conv(c, w, &format!("{layers}.0"), &x, width, c.kernel_size, 1);
    // EncodecLSTM: nn.LSTM over time, plus its input.
    let mut input = x.clone();
    for l in 0..c.num_lstm_layers {
        let p = |n: &str| &w[&format!("{layers}.1.lstm.{n}_l{l}")];
        let (wih, whh, bih, bhh) = (p("weight_ih"), p("weight_hh"), p("bias_ih"), p("bias_hh"));
        let (mut h, mut cell) = (vec![0f64; width], vec![0f64; width]);
        let mut out = vec![vec![0f32; frames]; width];
        for t in 0..frames {
            let gates: Vec<f64> = (0..4 * width)
                .map(|g| bih[g] as f64 + bhh[g] as f64 + (0..width).map(|i| wih[g * width + i] as f64 * input[i][t] as f64 + whh[g * width + i] as f64 * h[i]).sum::<f64>())
                .collect();
            let sig = |v: f64| 1.0 / (1.0 + (-v).exp());
            for u in 0..width {
                cell[u] = sig(gates[width + u]) * cell[u] + sig(gates[u]) * gates[2 * width + u].tanh();
                h[u] = sig(gates[3 * width + u]) * cell[u].tanh();
                out[u][t] = h[u] as f32;
            }
        }
        input = out;
    }
    x = add(&input, &x);
    let mut index = 2;
    for &r in &c.upsampling_ratios {
        let c_out = scaling * c.num_filters / 2;
        let h = elu(&x);
        let name = format!("{layers}.{}.conv", index + 1);
        let (weight, bias) = (&w[&format!("{name}.weight")], &w[&format!("{name}.bias")]);
        let (len, k) = (h[0].len(), 2 * r);
        let full = (len - 1) * r + k;
        let mut y: Vec<Vec<f32>> = (0..c_out).map(|co| vec![bias[co]; full]).collect();
        for (ci, row) in h.iter().enumerate() {
            for (s, &v) in row.iter().enumerate() {
                for (co, out) in y.iter_mut().enumerate() {
                    for j in 0..k {
                        out[s * r + j] += weight[(ci * c_out + co) * k + j] * v;
                    }
                }
            }
        }
        let total = k - r;
        let right = if c.use_causal_conv { (total as f32 * c.trim_right_ratio).ceil() as usize } else { total / 2 };
        x = y.into_iter().map(|row| row[total - right..full - right].to_vec()).collect();
        for j in 0..c.num_residual_layers {
            let unit = format!("{layers}.{}", index + 2 + j);
            let hidden = c_out / c.compress;
            let h = ref_conv(c, w, &format!("{unit}.block.1"), &elu(&x), hidden, c.residual_kernel_size, c.dilation_growth_rate.pow(j as u32));
            let h = ref_conv(c, w, &format!("{unit}.block.3"), &elu(&h), c_out, 1, 1);
            let skip = if c.use_conv_shortcut { ref_conv(c, w, &format!("{unit}.shortcut"), &x, c_out, 1, 1) } else { x.clone() };
            x = add(&skip, &h);
        }
        index += 2 + c.num_residual_layers;
        scaling /= 2;
    }
    ref_conv(c, w, &format!("{layers}.{}", index + 1), &elu(&x), c.audio_channels, c.last_kernel_size, 1)
}

/// The reference's decoding of `codes` `(batch, codebooks, frames)`: `(batch, samples · channels)`,
/// channels interleaved.
pub fn reference_decode(model: &RandomEncodec, codes: &[u32], batch: usize, frames: usize) -> Vec<f32> {
    let k = model.codebooks;
    let mut out = Vec::new();
    for b in 0..batch {
        let track: Vec<Vec<u32>> = (0..k).map(|cb| codes[(b * k + cb) * frames..(b * k + cb + 1) * frames].to_vec()).collect();
        let audio = ref_track(&model.config, &model.weights, &track);
        out.extend((0..audio[0].len()).flat_map(|t| audio.iter().map(move |ch| ch[t])));
    }
    out
}

/// The fixture's EnCodec geometry (MusicGen's, tiny widths), and an odd one: causal
/// convolutions, a right trim ratio of 0.5, an even last kernel, two dilated residual units
/// without shortcut convolutions, one LSTM layer, ratios 3 and 2.
pub fn random_configs() -> Vec<(EncodecConfig, usize)> {
    let musicgen = EncodecConfig {
        audio_channels: 1,
        num_filters: 4,
        kernel_size: 7,
        last_kernel_size: 7,
        residual_kernel_size: 3,
        dilation_growth_rate: 2,
        upsampling_ratios: vec![8, 5, 4, 4],
        hidden_size: 16,
        num_lstm_layers: 2,
        num_residual_layers: 1,
        compress: 2,
        use_causal_conv: false,
        pad_mode: "reflect".into(),
        codebook_size: 64,
        codebook_dim: Some(16),
        sampling_rate: 32000,
        trim_right_ratio: 1.0,
        use_conv_shortcut: true,
    };
    let odd = EncodecConfig {
        kernel_size: 5,
        last_kernel_size: 4,
        dilation_growth_rate: 3,
        upsampling_ratios: vec![3, 2],
        hidden_size: 8,
        codebook_dim: None,
        num_lstm_layers: 1,
        num_residual_layers: 2,
        use_causal_conv: true,
        trim_right_ratio: 0.5,
        use_conv_shortcut: false,
        codebook_size: 16,
        ..musicgen.clone()
    };
    vec![(musicgen, 4), (odd, 2)]
}

/// Random codes `(batch, codebooks, frames)` below `size`.
fn random_codes(batch: usize, codebooks: usize, frames: usize, size: usize, seed: u64) -> Vec<u32> {
    let mut draw = Draw(seed);
    (0..batch * codebooks * frames).map(|_| (((draw.next() + 1.0) / 2.0 * size as f32) as u32).min(size as u32 - 1)).collect()
}

/// Tolerance against the reference: the fixture's 1e-4 in f32 (the reference sums in f64); in
/// f16 the decoder's activations are rounded to 11 bits (the reference sees the same rounded
/// weights), measured within 5e-3 on samples up to 3.7.
pub fn random_tol(elem: Elem) -> Tol {
    match elem {
        Elem::F32 => Tol { atol: 1e-4, rtol: 1e-4 },
        Elem::F16 => Tol { atol: 3e-2, rtol: 1e-2 },
    }
}

/// For both of [`random_configs`] with random weights and codes (2 tracks): whole decoding of
/// 1, 2 and 23 frames (clips shorter than the first convolution's padding take transformers'
/// zero extension) gives the reference's samples, which depend on the codes; chunked decoding
/// of the 23 frames in irregular chunks gives the same.
pub async fn check_random(gpu: &Gpu, elem: Elem) -> Result<()> {
    for (i, (config, codebooks)) in random_configs().into_iter().enumerate() {
        let model = random_encodec(gpu, elem, &config, codebooks, 7 + i as u64)?;
        let batch = 2;
        for frames in [1, 2, 23] {
            let what = format!("config {i}, {frames} frames");
            let codes = random_codes(batch, codebooks, frames, config.codebook_size, 99 + frames as u64);
            let reference = reference_decode(&model, &codes, batch, frames);
            let ours = decode(gpu, &model.decoder, &codes, batch, frames).await?;
            close(&format!("{what}: whole against the reference"), &ours, &reference, random_tol(elem))?;
            // The test has power only if the audio depends on the codes and varies over time.
            let half = reference.len() / 2;
            let spread = reference[..half].iter().zip(&reference[half..]).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
            ensure!(spread > 0.05, "{what}: the two tracks' reference audio differs by {spread} at most: the check would not see the codes");
            if frames == 23 {
                let swing = reference.iter().fold(f32::MIN, |m, &v| m.max(v)) - reference.iter().fold(f32::MAX, |m, &v| m.min(v));
                ensure!(swing > 0.5, "{what}: the reference audio swings by {swing} only");
                for plan in [&[1usize][..], &[4, 1, 9, 2]] {
                    let streamed = decode_streamed(gpu, &model.decoder, &codes, batch, frames, plan, model.decoder.context().latency()).await?;
                    close(&format!("{what} in chunks of {plan:?} against whole decoding"), &streamed, &ours, streaming_tol(elem))?;
                    close(&format!("{what} in chunks of {plan:?} against the reference"), &streamed, &reference, random_tol(elem))?;
                }
            }
        }
    }
    Ok(())
}

/// On a device whose bindings hold 160 KiB, 23 frames of two tracks of the fixture's geometry
/// (last stage `(2, 14720, 4)`, 471 KB in f32) do not fit one pass: `decode` goes through
/// chunks and still gives the reference's samples.
pub async fn check_decode_in_pieces(elem: Elem) -> Result<()> {
    let f16 = if elem == Elem::F16 { m2ugen_gpu::F16Mode::Require } else { m2ugen_gpu::F16Mode::Auto };
    let gpu = crate::gpu_with(m2ugen_gpu::GpuOptions { f16, split_at: Some(160 << 10), ..Default::default() }).await;
    let (config, codebooks) = random_configs().swap_remove(0);
    let model = random_encodec(&gpu, elem, &config, codebooks, 7)?;
    let (batch, frames) = (2, 23);
    let codes = random_codes(batch, codebooks, frames, config.codebook_size, 5);
    let ours = decode(&gpu, &model.decoder, &codes, batch, frames).await?;
    close("23 frames on 160 KiB bindings", &ours, &reference_decode(&model, &codes, batch, frames), random_tol(elem))
}
