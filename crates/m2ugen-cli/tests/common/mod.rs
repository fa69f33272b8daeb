//! What the command's test files share: the fixtures, media files written from the fixture, the
//! converted models (made by `m2ugen default-model`), and running the command.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

pub fn fixture() -> PathBuf {
    std::env::var_os("M2UGEN_REFERENCE_FIXTURE").map(PathBuf::from).unwrap_or_else(|| data().join("reference-m2ugen"))
}

/// The repository's test data, found from the directory cargo runs the test in (a build cached
/// from another checkout keeps that checkout's path in `env!`).
pub fn data() -> PathBuf {
    manifest_dir().join("../../tests/data")
}

/// This crate's directory at run time.
pub fn manifest_dir() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("m2ugen-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The fixture converted once for every test here by `m2ugen default-model --without-music`
/// (f32, its tiny encoders, the byte tokenizer).
pub fn model() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| default_model("model", &["--without-music"]))
}

/// The reference M2UGen fixture with a MusicGen whose T5 is as wide as its projector's output
/// (32), converted once by `m2ugen default-model --without-audioldm2` (the page's bundled model
/// without AudioLDM 2: f32, the byte tokenizer, random EnCodec codebooks, the tiny T5 tokenizer).
pub fn music_model() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| default_model("music-model", &["--without-audioldm2"]))
}

/// The page's bundled model, converted once by `m2ugen default-model`: [`music_model`] and
/// AudioLDM 2 (the fixture's, with a byte-level RoBERTa tokenizer for CLAP and the tiny T5
/// tokenizer); MusicGen is its default decoder.
pub fn bundled_model() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| default_model("bundled-model", &[]))
}

/// Runs `m2ugen default-model` on the test data (the fixtures named by the environment, when
/// set) into a fresh directory named by `tag`: the model's path.
fn default_model(tag: &str, extra: &[&str]) -> PathBuf {
    let out = scratch(tag).join("model");
    let run = Command::new(env!("CARGO_BIN_EXE_m2ugen"))
        .arg("default-model")
        .arg("--data")
        .arg(data())
        .arg("--reference")
        .arg(fixture())
        .arg("--musicgen")
        .arg(musicgen_fixture())
        .arg("--audioldm2")
        .arg(audioldm2_fixture())
        .arg("--out")
        .arg(&out)
        .args(extra)
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    out
}

/// A 16-bit PCM WAV of `samples` at `rate`.
pub fn wav(path: &Path, samples: &[f32], rate: u32) {
    let data: Vec<u8> = samples.iter().flat_map(|&s| ((s.clamp(-1.0, 1.0) * 32767.0).round() as i16).to_le_bytes()).collect();
    let mut f = Vec::new();
    f.extend(b"RIFF");
    f.extend((36 + data.len() as u32).to_le_bytes());
    f.extend(b"WAVEfmt ");
    f.extend(16u32.to_le_bytes());
    f.extend(1u16.to_le_bytes()); // PCM
    f.extend(1u16.to_le_bytes()); // mono
    f.extend(rate.to_le_bytes());
    f.extend((rate * 2).to_le_bytes());
    f.extend(2u16.to_le_bytes());
    f.extend(16u16.to_le_bytes());
    f.extend(b"data");
    f.extend((data.len() as u32).to_le_bytes());
    f.extend(data);
    std::fs::write(path, f).unwrap();
}

/// The fixture's waveform `i` (24 kHz), as a WAV in `dir`.
pub fn fixture_wav(dir: &Path, i: usize, name: &str) -> PathBuf {
    let io = m2ugen_weights::safetensors::InMemory::parse("io.safetensors", std::fs::read(fixture().join("io.safetensors")).unwrap()).unwrap();
    let (samples, _) = io.f32(&format!("in.audio_24k.{i}")).unwrap();
    // Scaled into 16 bits' range (the normalisation before MERT takes the scale away).
    let peak = samples.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
    let scaled: Vec<f32> = samples.iter().map(|v| v / peak * 0.9).collect();
    let path = dir.join(name);
    wav(&path, &scaled, 24_000);
    path
}

pub fn m2ugen(args: &[&std::ffi::OsStr], stdin: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_m2ugen"));
    cmd.args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

pub fn os(s: &str) -> &std::ffi::OsStr {
    s.as_ref()
}

pub fn one_line_exit_2(out: &Output) -> String {
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<String> = String::from_utf8_lossy(&out.stderr).lines().filter(|l| l.starts_with("m2ugen:")).map(str::to_string).collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    lines[0].clone()
}


/// The MusicGen fixture's model directory (`config.json`, `model.safetensors`).
pub fn musicgen_fixture() -> PathBuf {
    let dir = std::env::var_os("M2UGEN_MUSICGEN_FIXTURE").map(PathBuf::from).unwrap_or_else(|| data().join("musicgen"));
    if dir.join("musicgen/model.safetensors").is_file() { dir.join("musicgen") } else { dir }
}

/// The tiny T5 tokenizer of the test data.
pub fn t5_tokenizer() -> PathBuf {
    data().join("t5-tokenizer/tokenizer.json")
}

/// The MusicGen fixture alone in the Hugging Face layout in `dir`, with the tiny T5 tokenizer
/// (its EnCodec codebooks are the fixture's zeros). Only the fixture's own T5 width is offered
/// here; a T5 of another width, and random codebooks, are `m2ugen default-model --t5-width`'s.
pub fn musicgen_dir(dir: &Path, t5_width: usize) -> PathBuf {
    let src = musicgen_fixture();
    let config: serde_json::Value = serde_json::from_slice(&std::fs::read(src.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["text_encoder"]["d_model"], t5_width, "the MusicGen fixture's T5 width");
    let out = dir.join("musicgen");
    std::fs::create_dir_all(&out).unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(src.join(f), out.join(f)).unwrap();
    }
    std::fs::copy(t5_tokenizer(), out.join("tokenizer.json")).unwrap();
    out
}

/// The AudioLDM 2 fixture (`tests/data/audioldm2`, a `diffusers` pipeline directory without
/// tokenizers).
pub fn audioldm2_fixture() -> PathBuf {
    std::env::var_os("M2UGEN_AUDIOLDM2_FIXTURE").map(PathBuf::from).unwrap_or_else(|| data().join("audioldm2"))
}

/// GPT-2's byte-to-character table (RoBERTa's byte-level alphabet): printable bytes stand for
/// themselves, the others for characters from U+0100 on (space is "Ġ").
pub fn byte_level(b: u8) -> char {
    let printable = |b: u8| (b'!'..=b'~').contains(&b) || (0xA1..=0xAC).contains(&b) || (0xAE..=0xFF).contains(&b);
    if printable(b) {
        return char::from(b);
    }
    let n = (0..b).filter(|&x| !printable(x)).count() as u32;
    char::from_u32(256 + n).unwrap()
}

/// A tiny RoBERTa vocabulary (`vocab.json`, `merges.txt` text) that spells any text: `<s>`,
/// `<pad>`, `</s>`, `<unk>` (0..3), the 256 bytes (4..259), "ja", "jaz", "jazz", "Ġjazz"
/// (260..263) by four merges, `<mask>` (264): within CLAP's 300 rows in the fixture. `extra`
/// adds tokens at given ids.
pub fn roberta_vocab(extra: &[(&str, u32)]) -> (String, String) {
    let mut vocab = serde_json::Map::new();
    for (i, t) in ["<s>", "<pad>", "</s>", "<unk>"].iter().enumerate() {
        vocab.insert(t.to_string(), i.into());
    }
    for b in 0..=255u8 {
        vocab.insert(byte_level(b).to_string(), (4 + b as u32).into());
    }
    for (i, t) in ["ja", "jaz", "jazz", "\u{120}jazz", "<mask>"].iter().enumerate() {
        vocab.insert(t.to_string(), (260 + i as u32).into());
    }
    for (t, id) in extra {
        vocab.insert(t.to_string(), (*id).into());
    }
    (serde_json::Value::Object(vocab).to_string(), "#version: 0.2\nj a\nja z\njaz z\n\u{120} jazz\n".into())
}

/// Copies a directory tree.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// The AudioLDM 2 fixture as a pipeline directory in `dir`, with tokenizers when `tokenizers`:
/// RoBERTa's as `tokenizer/vocab.json` and `merges.txt` ([`roberta_vocab`] with `extra`; the
/// converter builds its tokenizer.json) and the tiny T5 tokenizer as `tokenizer_2/`.
pub fn audioldm2_dir(dir: &Path, tokenizers: bool, extra: &[(&str, u32)]) -> PathBuf {
    let out = dir.join("audioldm2");
    let src = audioldm2_fixture();
    std::fs::create_dir_all(&out).unwrap();
    std::fs::copy(src.join("model_index.json"), out.join("model_index.json")).unwrap();
    for part in ["unet", "vae", "vocoder", "text_encoder", "text_encoder_2", "projection_model", "language_model", "scheduler"] {
        copy_dir(&src.join(part), &out.join(part));
    }
    if tokenizers {
        let (vocab, merges) = roberta_vocab(extra);
        std::fs::create_dir_all(out.join("tokenizer")).unwrap();
        std::fs::write(out.join("tokenizer/vocab.json"), vocab).unwrap();
        std::fs::write(out.join("tokenizer/merges.txt"), merges).unwrap();
        std::fs::create_dir_all(out.join("tokenizer_2")).unwrap();
        std::fs::copy(t5_tokenizer(), out.join("tokenizer_2/tokenizer.json")).unwrap();
    }
    out
}

/// Runs `m2ugen convert` (f32) with `args` into `out`, which it returns.
pub fn convert(args: &[&std::ffi::OsStr], out: PathBuf) -> PathBuf {
    let mut all = vec![os("convert"), os("--dtype"), os("f32"), os("--out"), out.as_os_str()];
    all.extend_from_slice(args);
    let run = m2ugen(&all, None);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    out
}

/// The AudioLDM 2 fixture alone with its tokenizers, converted once
/// (`--diffusers audioldm2=DIR`).
pub fn audioldm2_model() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = scratch("audioldm2-model");
        let pipeline = audioldm2_dir(&dir, true, &[]);
        convert(&[os("--diffusers"), os(&format!("audioldm2={}", pipeline.display()))], dir.join("model"))
    })
}

