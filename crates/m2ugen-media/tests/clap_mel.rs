//! CLAP's audio front end against transformers (the fixture `tests/data/clap-audio/io.safetensors`,
//! made by its `make_fixture.py`), plus hand-computed cases that do not need the fixture.
#![allow(clippy::unwrap_used)]

mod common;

use m2ugen_media::clap_mel::{ClapMelSettings, clap_mel, stretch_frames};
use m2ugen_weights::safetensors::InMemory;
use std::path::PathBuf;

/// A plain reference of `reshape_mel2img`'s folding (the model does it by a permute on the GPU,
/// checked end to end against the reference's pooled output) of a `(channels, frames, bins)` spectrogram whose frames are
/// already `spec_size * freq_ratio`: the frames are cut into `freq_ratio` consecutive chunks,
/// and each chunk, transposed to `(bins, frames / freq_ratio)`, is stacked below the previous
/// one. The result is `(channels, bins * freq_ratio, frames / freq_ratio)` row-major, with
/// `out[c][k * bins + f][t] = x[c][k * (frames / freq_ratio) + t][f]`; with `freq_ratio` 1 it is
/// a transpose per channel. `frames` must be a multiple of `freq_ratio` (checked in debug
/// builds).
fn fold_to_image(x: &[f32], channels: usize, frames: usize, bins: usize, freq_ratio: usize) -> Vec<f32> {
    debug_assert_eq!(x.len(), channels * frames * bins);
    debug_assert!(freq_ratio >= 1 && frames.is_multiple_of(freq_ratio), "{frames} frames, freq_ratio {freq_ratio}");
    let width = frames / freq_ratio.max(1);
    let rows = bins * freq_ratio;
    let mut out = Vec::with_capacity(channels * rows * width);
    for c in 0..channels {
        for row in 0..rows {
            let (chunk, f) = (row / bins, row % bins);
            for t in 0..width {
                out.push(x[(c * frames + chunk * width + t) * bins + f]);
            }
        }
    }
    out
}


/// The fixture directory: `M2UGEN_CLAP_AUDIO_FIXTURE`, else `<repo>/tests/data/clap-audio`.
fn fixture_dir() -> PathBuf {
    match std::env::var_os("M2UGEN_CLAP_AUDIO_FIXTURE") {
        Some(dir) => PathBuf::from(dir),
        None => common::manifest_dir().join("../../tests/data/clap-audio"),
    }
}

/// A tensor from the fixture, with its shape.
struct Tensor {
    shape: Vec<usize>,
    values: Vec<f32>,
}

/// The fixture, read by the weights crate's safetensors reader.
fn load_fixture() -> InMemory {
    let path = fixture_dir().join("io.safetensors");
    InMemory::parse("io.safetensors", std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

fn tensor(fixture: &InMemory, name: &str) -> Tensor {
    let (values, shape) = fixture.f32(name).unwrap();
    Tensor { shape, values }
}

fn max_abs_difference(got: &[f32], expected: &[f32]) -> f64 {
    assert_eq!(got.len(), expected.len());
    got.iter().zip(expected).map(|(&g, &e)| (f64::from(g) - f64::from(e)).abs()).fold(0.0, f64::max)
}

/// The fixture's settings: AudioLDM 2's, with a window of `meta.max_length` samples and the
/// fixture's mel bins.
fn fixture_settings(fixture: &InMemory) -> ClapMelSettings {
    let max_samples = fixture.i64("meta.max_length").unwrap().0[0] as usize;
    let mel_bins = tensor(fixture, "out.input_features.0").shape[2];
    ClapMelSettings { max_samples, mel_bins, ..ClapMelSettings::audioldm2() }
}

#[test]
fn log_mel_matches_the_feature_extractor() {
    let fixture = load_fixture();
    let settings = fixture_settings(&fixture);
    let mut fused = 0;
    for i in 0..3 {
        // Clip 2 is longer than the window: four different channels (the whole spectrogram
        // shrunk, three crops), which the fixture took at the starts clap_mel takes.
        let clip = tensor(&fixture, &format!("in.waveform_48k.{i}")).values;
        let expected = tensor(&fixture, &format!("out.input_features.{i}"));
        assert_eq!(expected.shape, [4, settings.frames(), settings.mel_bins]);
        let mel = clap_mel(&clip, &settings);
        assert_eq!(mel.len(), expected.values.len());
        let plane = mel.len() / 4;
        if clip.len() > settings.max_samples {
            fused += 1;
            assert!(mel[..plane] != mel[plane..2 * plane], "clip {i}: the fused channels differ");
        }
        let all = max_abs_difference(&mel, &expected.values);
        println!("clip {i} ({} samples): largest difference {all:.2e} dB", clip.len());
        assert!(all < 1e-4, "clip {i}: {all} dB");
    }
    assert_eq!(fused, 1, "the fixture has one clip longer than its window");
}

#[test]
fn image_matches_reshape_mel2img() {
    let fixture = load_fixture();
    for i in 0..3 {
        let normalized = tensor(&fixture, &format!("out.normalized_features.{i}"));
        let &[channels, frames, bins] = normalized.shape.as_slice() else { panic!("{:?}", normalized.shape) };
        let expected = tensor(&fixture, &format!("out.image.{i}"));
        // The image is (channels, bins · freq_ratio, frames the model reads / freq_ratio).
        let &[_, height, width] = expected.shape.as_slice() else { panic!("{:?}", expected.shape) };
        let ratio = height / bins;
        assert!(ratio > 1, "the fixture folds the spectrogram");
        let stretched = stretch_frames(&normalized.values, channels, frames, bins, width * ratio);
        let image = fold_to_image(&stretched, channels, width * ratio, bins, ratio);
        let difference = max_abs_difference(&image, &expected.values);
        println!("clip {i}: largest difference {difference:.2e}");
        assert!(difference < 1e-4, "clip {i}: {difference}");
    }
}

#[test]
fn an_empty_clip_gives_nothing() {
    assert!(clap_mel(&[], &ClapMelSettings::audioldm2()).is_empty());
}

#[test]
fn silence_is_minus_100_db() {
    let settings = ClapMelSettings { max_samples: 4800, ..ClapMelSettings::audioldm2() };
    let mel = clap_mel(&[0.0; 100], &settings);
    assert_eq!(mel.len(), 4 * 11 * 64);
    assert!(mel.iter().all(|&v| v == -100.0));
}

/// `(1, frames, 2)`: each frame holds its value in both bins (the bins must not mix).
fn two_bins(values: &[f32]) -> Vec<f32> {
    values.iter().flat_map(|&v| [v, -v]).collect()
}

#[test]
fn two_frames_to_three_puts_the_mean_in_the_middle() {
    // Scale 1/2: the middle frame sits halfway, t = 1/2, with weights (from the kernel with
    // A = -0.75) -0.09375, 0.59375, 0.59375, -0.09375 on frames 0 (clamped), 0, 1, 1 (clamped).
    let out = stretch_frames(&two_bins(&[2.0, 6.0]), 1, 2, 2, 3);
    assert_eq!(out, two_bins(&[2.0, 4.0, 6.0]));
}

#[test]
fn an_impulse_shows_the_kernel() {
    // 4 frames to 7: frame o sits at o / 2. At 1/2 the impulse (frame 2) is the far tap:
    // ((A t - 5A) t + 8A) t - 4A at t = 3/2 is -0.09375; at 3/2 and 5/2 it is a near tap:
    // ((A + 2) t - (A + 3)) t^2 + 1 at t = 1/2 is 0.59375.
    let out = stretch_frames(&two_bins(&[0.0, 0.0, 1.0, 0.0]), 1, 4, 2, 7);
    assert_eq!(out, two_bins(&[0.0, -0.09375, 0.0, 0.59375, 1.0, 0.59375, 0.0]));
}

#[test]
fn a_ramp_stays_straight_away_from_the_borders() {
    // 5 frames to 9, two channels: 1, 3, 5, 7, 9 and its negative. Where all four taps are inside,
    // the cubic reproduces the line; at 1/2 the clamped tap repeats frame 0: 0.5 * 1 + 0.59375 * 3
    // - 0.09375 * 5 = 1.8125 (and 8.1875 at the other end).
    let ramp = [1.0, 3.0, 5.0, 7.0, 9.0];
    let input: Vec<f32> = [two_bins(&ramp), two_bins(&ramp.map(|v: f32| -v))].concat();
    let out = stretch_frames(&input, 2, 5, 2, 9);
    let line = [1.0, 1.8125, 3.0, 4.0, 5.0, 6.0, 7.0, 8.1875, 9.0];
    let expected: Vec<f32> = [two_bins(&line), two_bins(&line.map(|v: f32| -v))].concat();
    assert_eq!(out, expected);
}

#[test]
fn the_same_number_of_frames_is_a_copy() {
    let x: Vec<f32> = (0..24).map(|i| i as f32 * 0.37).collect();
    assert_eq!(stretch_frames(&x, 2, 4, 3, 4), x);
}

#[test]
fn folding_by_two_stacks_the_halves() {
    // x[c][t][f] = 100c + 10t + f, shape (2, 4, 3). torch: reshape to (4, 2, 3) (channel c, half
    // k becomes channel 2c + k), permute to (4, 3, 2) (rows f, columns the half's 2 frames),
    // reshape to (2, 6, 2): each channel has its first half's 3 rows, then its second half's.
    let x: Vec<f32> = (0..2).flat_map(|c| (0..4).flat_map(move |t| (0..3).map(move |f| (100 * c + 10 * t + f) as f32))).collect();
    let expected: [f32; 24] = [
        0.0, 10.0, 1.0, 11.0, 2.0, 12.0, 20.0, 30.0, 21.0, 31.0, 22.0, 32.0, //
        100.0, 110.0, 101.0, 111.0, 102.0, 112.0, 120.0, 130.0, 121.0, 131.0, 122.0, 132.0,
    ];
    assert_eq!(fold_to_image(&x, 2, 4, 3, 2), expected);
}

#[test]
fn folding_by_one_transposes() {
    // (1, 2, 3) to (1, 3, 2).
    let x = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
    assert_eq!(fold_to_image(&x, 1, 2, 3, 1), [1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
}
