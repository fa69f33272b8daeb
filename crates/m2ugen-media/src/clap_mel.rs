//! The audio front end of CLAP's audio branch, as Hugging Face transformers computes it: a clip
//! at 48 kHz becomes the log-mel spectrogram `ClapFeatureExtractor` makes with truncation
//! "fusion" and padding "repeatpad" ([`clap_mel`]), and the bicubic stretch of the encoder's
//! `reshape_mel2img` to the frames the model reads ([`stretch_frames`]; the folding into an
//! image that follows is a permute on the GPU, `m2ugen_models::clap_audio`).
//!
//! The spectrogram is computed in `f64` and rounded to `f32` where the reference rounds (the
//! FFT's output, kept in complex64 there, and the result in dB): given the same samples it
//! equals transformers' to the bit in the cases tested. The one departure from the reference: a
//! clip longer than the window is fused from crops at fixed starts, where `ClapFeatureExtractor`
//! draws them at random.

use realfft::RealFftPlanner;

/// Spectrogram channels [`clap_mel`] gives: the fusion form's four (copies, or the fused whole
/// and three crops).
pub const CHANNELS: usize = 4;

/// The feature extractor's settings (`ClapFeatureExtractor`'s `sampling_rate`,
/// `fft_window_size`, `hop_length`, `feature_size`, `frequency_min`, `frequency_max`, and the
/// `max_length` it pads or cuts to).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClapMelSettings {
    /// Sample rate of the clips, in Hz (the filter bank's frequencies depend on it).
    pub sampling_rate: u32,
    /// Samples per FFT frame (the Hann window has this length too).
    pub fft_size: usize,
    /// Samples between the starts of consecutive frames.
    pub hop: usize,
    /// Mel filters, so values per frame.
    pub mel_bins: usize,
    /// Lower edge of the lowest mel filter, in Hz.
    pub min_hz: f64,
    /// Upper edge of the highest mel filter, in Hz.
    pub max_hz: f64,
    /// Samples per clip: shorter clips are repeated and padded to it, longer ones cut to it.
    pub max_samples: usize,
}

impl ClapMelSettings {
    /// The settings of AudioLDM 2's CLAP: 48 kHz, a 1024-sample FFT, a hop of 480, 64 mel bins
    /// from 50 to 14000 Hz, and 10-second clips (480000 samples, 1001 frames).
    pub fn audioldm2() -> Self {
        ClapMelSettings {
            sampling_rate: 48_000,
            fft_size: 1024,
            hop: 480,
            mel_bins: 64,
            min_hz: 50.0,
            max_hz: 14_000.0,
            max_samples: 480_000,
        }
    }

    /// Frames in the spectrogram of one clip: `1 + max_samples / hop` for an even FFT size (the
    /// frames are centred, so the clip is padded by half a frame on each side).
    pub fn frames(&self) -> usize {
        let padded = self.max_samples + 2 * (self.fft_size / 2);
        if padded < self.fft_size || self.hop == 0 {
            return 0;
        }
        1 + (padded - self.fft_size) / self.hop
    }
}

/// The log-mel spectrogram of a mono clip as `ClapFeatureExtractor` computes it with truncation
/// "fusion" and padding "repeatpad": shape `(4, frames, mel_bins)` row-major, with
/// `frames` = [`ClapMelSettings::frames`], in dB.
///
/// A clip of at most `max_samples` is repeated `floor(max_samples / len)` times and padded with
/// zeros to `max_samples`, and its spectrogram stacked four times. A longer one is fused as the
/// reference fuses it: its whole spectrogram shrunk to `frames` (bilinear, `align_corners=False`)
/// then three crops of `frames`, one from each third of the possible starts; where the reference
/// draws each crop's start at random, this takes the first start of each third, so the same
/// clip always gives the same features.
/// The spectrogram uses a periodic Hann window, centred frames with reflect padding, the power
/// spectrum, HTK-scale triangular mel filters without normalisation, a floor of 1e-10 and
/// `10 log10`, so its values are at least -100 dB.
///
/// An empty clip gives an empty `Vec`.
pub fn clap_mel(samples: &[f32], settings: &ClapMelSettings) -> Vec<f32> {
    if samples.is_empty() {
        return Vec::new();
    }
    let s = settings;
    debug_assert!(s.fft_size >= 2 && s.hop >= 1 && s.mel_bins >= 1 && s.max_samples >= 1, "{s:?}");
    if samples.len() <= s.max_samples {
        return log_mel(&repeat_pad(samples, s.max_samples), s).repeat(CHANNELS);
    }
    let whole: Vec<f64> = samples.iter().map(|&x| f64::from(x)).collect();
    let mel = log_mel(&whole, s);
    let (bins, chunk) = (s.mel_bins, s.frames());
    let total = mel.len() / bins;
    if total <= chunk {
        return mel[..chunk.min(total) * bins].repeat(CHANNELS);
    }
    let mut out = shrink_frames(&mel, total, bins, chunk);
    for start in third_starts(total - chunk + 1) {
        out.extend_from_slice(&mel[start * bins..(start + chunk) * bins]);
    }
    out
}

/// The first of each third of `n` crop starts, split as numpy's `array_split(range(n), 3)`
/// splits them (the first `n % 3` parts one longer); an empty third (fewer than 3 starts)
/// starts at 0, as the reference replaces it with `[0]`.
fn third_starts(n: usize) -> [usize; 3] {
    let sizes: [usize; 3] = std::array::from_fn(|i| n / 3 + usize::from(i < n % 3));
    [0, if sizes[1] > 0 { sizes[0] } else { 0 }, if sizes[2] > 0 { sizes[0] + sizes[1] } else { 0 }]
}

/// PyTorch's bilinear interpolation with `align_corners=False` along the frame axis of a
/// `(frames, bins)` spectrogram to `out_frames` frames, in `f32` as PyTorch computes it for an
/// `f32` tensor (the frequency axis keeps its size, where its weights are the identity).
fn shrink_frames(mel: &[f32], frames: usize, bins: usize, out_frames: usize) -> Vec<f32> {
    let scale = frames as f32 / out_frames as f32;
    let mut out = Vec::with_capacity(out_frames * bins);
    for o in 0..out_frames {
        let source = (scale * (o as f32 + 0.5) - 0.5).max(0.0);
        let i0 = source as usize;
        let i1 = if i0 + 1 < frames { i0 + 1 } else { i0 };
        let l1 = source - i0 as f32;
        let l0 = 1.0 - l1;
        out.extend((0..bins).map(|b| l0 * mel[i0 * bins + b] + l1 * mel[i1 * bins + b]));
    }
    out
}

/// The log-mel spectrogram `(frames, mel_bins)` of a waveform, every frame centred on a
/// multiple of the hop (`1 + len / hop` frames for an even FFT size).
fn log_mel(waveform: &[f64], s: &ClapMelSettings) -> Vec<f32> {
    let fft_size = s.fft_size;
    let half = fft_size / 2;
    let padded = waveform.len() + 2 * half;
    if padded < fft_size {
        return Vec::new();
    }
    let frames = 1 + (padded - fft_size) / s.hop;
    let window = periodic_hann(fft_size);
    let filters = mel_filters(fft_size / 2 + 1, s.mel_bins, s.min_hz, s.max_hz, s.sampling_rate);
    let fft = RealFftPlanner::<f64>::new().plan_fft_forward(fft_size);
    let mut input = fft.make_input_vec();
    let mut spectrum = fft.make_output_vec();
    let mut scratch = fft.make_scratch_vec();
    let mut power = vec![0.0f64; spectrum.len()];
    let mut mel = vec![0.0f32; frames * s.mel_bins];
    for frame in 0..frames {
        let start = frame * s.hop;
        for (i, x) in input.iter_mut().enumerate() {
            *x = waveform[reflect(start + i, half, waveform.len())] * window[i];
        }
        // The lengths come from the plan, so this cannot fail.
        if fft.process_with_scratch(&mut input, &mut spectrum, &mut scratch).is_err() {
            return Vec::new();
        }
        for (p, c) in power.iter_mut().zip(&spectrum) {
            // transformers keeps the spectrum in complex64 before taking its magnitude.
            let (re, im) = (f64::from(c.re as f32), f64::from(c.im as f32));
            *p = re * re + im * im;
        }
        for (m, filter) in filters.iter().enumerate() {
            let energy: f64 = filter.weights.iter().zip(&power[filter.first..]).map(|(w, p)| w * p).sum();
            // The mel floor, then power_to_db's own floor (the same 1e-10), reference 1.
            mel[frame * s.mel_bins + m] = (10.0 * energy.max(1e-10).log10()) as f32;
        }
    }
    mel
}

/// "repeatpad": the clip tiled `floor(len_out / len)` times then zero-padded to `len_out`, or
/// its first `len_out` samples when it is longer; in `f64`.
fn repeat_pad(samples: &[f32], len_out: usize) -> Vec<f64> {
    let mut out = Vec::with_capacity(len_out);
    if samples.len() >= len_out {
        out.extend(samples[..len_out].iter().map(|&x| f64::from(x)));
    } else {
        for _ in 0..len_out / samples.len() {
            out.extend(samples.iter().map(|&x| f64::from(x)));
        }
        out.resize(len_out, 0.0);
    }
    out
}

/// The sample of a clip of `len` samples at `position` in the clip padded by `pad` samples on
/// each side with numpy's "reflect" mode (mirrored about the end samples, which are not
/// repeated; repeatedly for pads longer than the clip).
fn reflect(position: usize, pad: usize, len: usize) -> usize {
    if len == 1 {
        return 0;
    }
    let period = 2 * (len - 1) as i64;
    let i = (position as i64 - pad as i64).rem_euclid(period) as usize;
    if i < len { i } else { period as usize - i }
}

/// numpy's `hanning(n + 1)[:-1]`: the periodic Hann window of `n` samples, with numpy's formula.
fn periodic_hann(n: usize) -> Vec<f64> {
    (0..n).map(|k| 0.5 + 0.5 * (std::f64::consts::PI * (2.0 * k as f64 - n as f64) / n as f64).cos()).collect()
}

/// One triangular mel filter: its weights for FFT bins `first..first + weights.len()` (zero
/// elsewhere).
struct MelFilter {
    first: usize,
    weights: Vec<f64>,
}

/// The HTK-scale mel scale (`hertz_to_mel(..., "htk")`).
fn hz_to_mel(hz: f64) -> f64 {
    2595.0 * (1.0 + hz / 700.0).log10()
}

/// The inverse of [`hz_to_mel`].
fn mel_to_hz(mel: f64) -> f64 {
    700.0 * (10f64.powf(mel / 2595.0) - 1.0)
}

/// numpy's `linspace(start, stop, n)` (`start + i * step`, the last value exactly `stop`).
fn linspace(start: f64, stop: f64, n: usize) -> Vec<f64> {
    if n == 1 {
        return vec![start];
    }
    let step = (stop - start) / (n - 1) as f64;
    let mut out: Vec<f64> = (0..n).map(|i| i as f64 * step + start).collect();
    if let Some(last) = out.last_mut() {
        *last = stop;
    }
    out
}

/// transformers' `mel_filter_bank(bins, mel_bins, min_hz, max_hz, rate, norm=None,
/// mel_scale="htk")`, one filter per mel bin, zeros left out.
fn mel_filters(bins: usize, mel_bins: usize, min_hz: f64, max_hz: f64, rate: u32) -> Vec<MelFilter> {
    let centres: Vec<f64> = linspace(hz_to_mel(min_hz), hz_to_mel(max_hz), mel_bins + 2).into_iter().map(mel_to_hz).collect();
    // The FFT bins' frequencies run up to rate // 2, an integer division as in the reference.
    let fft_hz = linspace(0.0, f64::from(rate / 2), bins);
    (0..mel_bins)
        .map(|m| {
            let (below, centre, above) = (centres[m], centres[m + 1], centres[m + 2]);
            let weight = |hz: f64| {
                let down = -(below - hz) / (centre - below);
                let up = (above - hz) / (above - centre);
                0f64.max(down.min(up))
            };
            let all: Vec<f64> = fft_hz.iter().map(|&hz| weight(hz)).collect();
            let first = all.iter().position(|&w| w != 0.0).unwrap_or(0);
            let end = all.iter().rposition(|&w| w != 0.0).map_or(first, |last| last + 1);
            MelFilter { first, weights: all[first..end].to_vec() }
        })
        .collect()
}

/// PyTorch's bicubic interpolation with `align_corners=True` (cubic convolution with A = -0.75,
/// source indices clamped at the borders) along the frame axis only: `(channels, frames, bins)`
/// to `(channels, out_frames, bins)`, row-major. The frequency axis keeps its size, where
/// PyTorch's bicubic weights are the identity.
///
/// The source positions are computed in `f32`, as PyTorch does for `f32` tensors; the weighted
/// sums in `f64`. With `out_frames == frames` the result is a copy. `frames` must be at least 1
/// unless `out_frames` is 0 (checked in debug builds; otherwise the result is empty).
pub fn stretch_frames(mel: &[f32], channels: usize, frames: usize, bins: usize, out_frames: usize) -> Vec<f32> {
    debug_assert_eq!(mel.len(), channels * frames * bins);
    debug_assert!(frames > 0 || out_frames == 0, "no frames to stretch to {out_frames}");
    if out_frames == frames {
        return mel.to_vec();
    }
    if frames == 0 {
        return Vec::new();
    }
    const A: f64 = -0.75;
    let near = |x: f64| ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0;
    let far = |x: f64| ((A * x - 5.0 * A) * x + 8.0 * A) * x - 4.0 * A;
    let scale: f32 = if out_frames > 1 { (frames - 1) as f32 / (out_frames - 1) as f32 } else { 0.0 };
    // For each output frame: the four source frames and their weights.
    let taps: Vec<([usize; 4], [f64; 4])> = (0..out_frames)
        .map(|o| {
            let source = scale * o as f32;
            let index = (source.floor() as i64).clamp(0, frames as i64 - 1);
            let t = f64::from((source - index as f32).clamp(0.0, 1.0));
            let weights = [far(t + 1.0), near(t), near(1.0 - t), far(2.0 - t)];
            let indices = [-1i64, 0, 1, 2].map(|d| (index + d).clamp(0, frames as i64 - 1) as usize);
            (indices, weights)
        })
        .collect();
    let mut out = Vec::with_capacity(channels * out_frames * bins);
    for c in 0..channels {
        let plane = &mel[c * frames * bins..(c + 1) * frames * bins];
        for (indices, weights) in &taps {
            for b in 0..bins {
                let sum: f64 = indices.iter().zip(weights).map(|(&i, w)| w * f64::from(plane[i * bins + b])).sum();
                out.push(sum as f32);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crops_start_at_the_first_of_each_third() {
        // numpy's array_split of range(n) into 3: 109 starts as 37, 36, 36; 4 as 2, 1, 1; fewer
        // than 3 leave empty thirds, which start at 0.
        assert_eq!(third_starts(109), [0, 37, 73]);
        assert_eq!(third_starts(4), [0, 2, 3]);
        assert_eq!(third_starts(2), [0, 1, 0]);
        assert_eq!(third_starts(1), [0, 0, 0]);
    }

    #[test]
    fn shrinking_by_two_averages_pairs() {
        // Bilinear, align_corners=False, 4 frames to 2: sources 0.5 and 2.5, the means of pairs.
        let mel = [0.0, 10.0, 2.0, 20.0, 4.0, 40.0, 8.0, 80.0];
        assert_eq!(shrink_frames(&mel, 4, 2, 2), vec![1.0, 15.0, 6.0, 60.0]);
    }

    #[test]
    fn reflect_matches_numpy() {
        // np.pad(np.arange(4), (5, 5), mode="reflect")
        let expected = [1, 2, 3, 2, 1, 0, 1, 2, 3, 2, 1, 0, 1, 2];
        let got: Vec<usize> = (0..14).map(|p| reflect(p, 5, 4)).collect();
        assert_eq!(got, expected);
        assert_eq!(reflect(3, 2, 1), 0);
    }

    #[test]
    fn repeat_pad_tiles_then_pads() {
        assert_eq!(repeat_pad(&[1.0, 2.0, 3.0], 8), [1.0, 2.0, 3.0, 1.0, 2.0, 3.0, 0.0, 0.0]);
        assert_eq!(repeat_pad(&[1.0, 2.0, 3.0], 2), [1.0, 2.0]);
    }

    #[test]
    fn frames_of_the_audioldm2_window() {
        assert_eq!(ClapMelSettings::audioldm2().frames(), 1001);
    }
}
