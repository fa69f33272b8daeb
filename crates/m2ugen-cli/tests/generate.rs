//! `m2ugen generate` end to end on tiny models in the real format: the reference M2UGen fixture
//! converted with a MusicGen (the fixture's decoder and EnCodec, a T5 as wide as the projector's
//! output), from a prompt alone and with music, an image or a video, in each conditioning mode,
//! to a WAV file whose header and samples are checked by the format's definition; bad settings
//! are one line and exit code 2.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use std::path::{Path, PathBuf};

/// A WAV file's format and samples, read by the format's definition (44-byte PCM header).
struct Wav {
    format: u16,
    channels: u16,
    rate: u32,
    bits: u16,
    samples: Vec<i16>,
}

fn read_wav(path: &Path) -> Wav {
    let b = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!((&b[0..4], &b[8..16], &b[36..40]), (&b"RIFF"[..], &b"WAVEfmt "[..], &b"data"[..]), "{}: not a canonical WAV", path.display());
    assert_eq!(u32::from_le_bytes(b[4..8].try_into().unwrap()) as usize, b.len() - 8, "RIFF size");
    let data = u32::from_le_bytes(b[40..44].try_into().unwrap()) as usize;
    assert_eq!(data, b.len() - 44, "data size");
    let u16_at = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
    Wav { format: u16_at(20), channels: u16_at(22), rate: u32::from_le_bytes(b[24..28].try_into().unwrap()), bits: u16_at(34), samples: b[44..].chunks_exact(2).map(|c| i16::from_le_bytes([c[0], c[1]])).collect() }
}

/// The fixture's image 0 as a PNG.
fn fixture_png(dir: &Path, name: &str) -> PathBuf {
    let io = m2ugen_weights::safetensors::InMemory::parse("io.safetensors", std::fs::read(fixture().join("io.safetensors")).unwrap()).unwrap();
    let (v, shape) = io.f32("in.image_chw01.0").unwrap();
    let (h, w) = (shape[1], shape[2]);
    let img = image::RgbImage::from_fn(w as u32, h as u32, |x, y| image::Rgb(std::array::from_fn(|c| (v[(c * h + y as usize) * w + x as usize] * 255.0).round() as u8)));
    let path = dir.join(name);
    img.save(&path).unwrap();
    path
}

/// A video as a folder of frames (the image, darkening).
fn frames_dir(dir: &Path, image: &Path) -> PathBuf {
    let out = dir.join("frames");
    std::fs::create_dir_all(&out).unwrap();
    let img = image::open(image).unwrap().to_rgb8();
    for i in 0..4u8 {
        let mut f = img.clone();
        f.pixels_mut().for_each(|p| p.0.iter_mut().for_each(|c| *c = c.saturating_sub(20 * i)));
        f.save(out.join(format!("frame-{i}.png"))).unwrap();
    }
    out
}

/// Runs `generate` on the music model, 0.2 s (10 frames), a short answer: the output's path.
fn generate(dir: &Path, name: &str, extra: &[&std::ffi::OsStr]) -> (PathBuf, String) {
    let out = dir.join(name);
    let mut args = vec![os("generate"), os("--model"), music_model().as_os_str(), os("--seconds"), os("0.2"), os("--max-tokens"), os("4"), os("-o"), out.as_os_str()];
    args.extend_from_slice(extra);
    let run = m2ugen(&args, None);
    assert!(run.status.success(), "{name}: {}", String::from_utf8_lossy(&run.stderr));
    let stderr = String::from_utf8_lossy(&run.stderr).to_string();
    assert!(stderr.contains("0.2 of 0.2 s of audio") && stderr.contains(&format!("wrote {}", out.display())), "{name}: progress and the file: {stderr}");
    (out, String::from_utf8_lossy(&run.stdout).to_string())
}

#[test]
fn generate_makes_music_from_a_prompt_music_an_image_or_a_video_in_every_mode() {
    let dir = scratch("generate");
    let music = fixture_wav(&dir, 0, "clip.wav");
    let image = fixture_png(&dir, "picture.png");
    let video = frames_dir(&dir, &image);
    let cases: Vec<(&str, Vec<&std::ffi::OsStr>)> = vec![
        ("prompt.wav", vec![os("upbeat rock")]),
        ("music.wav", vec![os("--music"), music.as_os_str(), os("make it calm jazz")]),
        ("image.wav", vec![os("--image"), image.as_os_str(), os("music for this picture")]),
        ("video.wav", vec![os("--video"), video.as_os_str(), os("music for this video")]),
        ("embedding.wav", vec![os("--mode"), os("embedding"), os("--music"), music.as_os_str(), os("make it calm jazz")]),
        ("text.wav", vec![os("--mode"), os("text"), os("calm jazz piano")]),
    ];
    let mut audio = Vec::new();
    for (name, extra) in &cases {
        let (path, stdout) = generate(&dir, name, extra);
        // The LLM's answer is printed (one line); MusicGen alone prints none.
        assert_eq!(stdout.lines().count(), if *name == "text.wav" { 0 } else { 1 }, "{name}: {stdout:?}");
        let wav = read_wav(&path);
        assert_eq!((wav.format, wav.channels, wav.rate, wav.bits), (1, 1, 32000, 16), "{name}: 16-bit PCM mono at 32 kHz");
        assert_eq!(wav.samples.len(), 10 * 640, "{name}: 10 frames of 640 samples");
        assert!(wav.samples.iter().any(|&s| s != 0), "{name}: not silence");
        audio.push(wav.samples);
    }
    // The same request twice gives the same samples; another seed other ones. (That each mode's
    // conditioning reaches the decoder is shown on logits and greedy codes in the library's
    // tests: a draw from a tiny random decoder can come out the same.)
    let (again, _) = generate(&dir, "again.wav", &cases[1].1);
    assert!(read_wav(&again).samples == audio[1], "the same request and seed give the same samples");
    let (other_seed, _) = generate(&dir, "seed.wav", &[os("--seed"), os("9"), os("--mode"), os("text"), os("calm jazz piano")]);
    assert!(read_wav(&other_seed).samples != audio[5], "another seed, another draw");
    // Several tracks at once, each with its own draws, written as tracks.wav and tracks-2.wav.
    let (first, _) = generate(&dir, "tracks.wav", &[os("--tracks"), os("2"), os("--mode"), os("text"), os("calm jazz piano")]);
    let second = read_wav(&dir.join("tracks-2.wav")).samples;
    assert_eq!(second.len(), 10 * 640);
    assert!(second != read_wav(&first).samples, "two tracks, two draws");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn bad_music_settings_are_one_line_and_exit_code_2() {
    let dir = scratch("generate-bad");
    let out = dir.join("x.wav");
    let m = music_model();
    let run = |extra: &[&str], model: &Path| {
        let mut args = vec![os("generate"), os("--model"), model.as_os_str(), os("-o"), out.as_os_str()];
        args.extend(extra.iter().map(|s| os(s)));
        one_line_exit_2(&m2ugen(&args, None))
    };
    for (extra, expected) in [
        (&["--seconds", "0", "hi"][..], "--seconds 0: give a length above 0 and at most 300 s"),
        (&["--seconds", "301", "hi"][..], "--seconds 301: give a length above 0 and at most 300 s"),
        (&["--mode", "loud", "hi"][..], "--mode loud: give caption, embedding or text"),
        (&["--guidance=-1", "hi"][..], "--guidance -1: give a scale of 0 or more"),
        (&["--music-top-p", "0", "hi"][..], "--music-top-p 0: give a share of probability above 0 and at most 1"),
        (&["--music-top-p", "1.5", "hi"][..], "--music-top-p 1.5: give a share"),
        (&["--music-temperature=-1", "hi"][..], "--music-temperature -1: give 0 (greedy) or more"),
        (&["--mode", "text", "--music", "a.wav", "hi"][..], "--mode text is MusicGen alone, which hears no media"),
        (&["--tracks", "9", "hi"][..], "--tracks"),
    ] {
        let line = run(extra, m);
        assert!(line.contains(expected), "{extra:?}: {line}");
    }
    // A model without a music decoder (the plain fixture) says how to get one.
    let line = run(&["hi"], model());
    assert!(line.contains("has no music decoder") && line.contains("--hf musicgen=DIR"), "{line}");
    // MusicGen alone (converted here) has no LLM for caption mode and no projector for embedding.
    let alone = dir.join("musicgen-alone");
    let conv = m2ugen(&[os("convert"), os("--hf"), os(&format!("musicgen={}", musicgen_dir(&dir, 24).display())), os("--out"), alone.as_os_str()], None);
    assert!(conv.status.success(), "{}", String::from_utf8_lossy(&conv.stderr));
    let line = run(&["--mode", "caption", "hi"], &alone);
    assert!(line.contains("--mode caption needs an LLM, and this model is MusicGen alone: use --mode text"), "{line}");
    let line = run(&["--mode", "embedding", "hi"], &alone);
    assert!(line.contains("--mode embedding needs an LLM"), "{line}");
    assert!(!out.exists(), "nothing written");
    let _ = std::fs::remove_dir_all(dir);
}
