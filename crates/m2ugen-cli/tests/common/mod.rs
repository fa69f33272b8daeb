//! What the command's test files share: the fixtures, a byte tokenizer for the fixture LLM,
//! media files written from the fixture, the converted model, and running the command.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

pub fn fixture() -> PathBuf {
    std::env::var_os("M2UGEN_REFERENCE_FIXTURE").map(PathBuf::from).unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/reference-m2ugen"))
}

pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("m2ugen-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A Hugging Face tokenizer of bytes: `<unk>`, `<s>`, `</s>`, then `<0x00>`..`<0xFC>` (ids
/// 3..255; UTF-8 never uses 0xFD-0xFF), BPE without merges and with byte fallback, `<s>` first.
/// The converter adds `[AUD0]`..`[AUD7]` as 256..263, the fixture LLM's output rows.
pub fn byte_tokenizer(path: &Path) {
    let mut vocab = serde_json::Map::new();
    for (i, t) in ["<unk>", "<s>", "</s>"].iter().enumerate() {
        vocab.insert(t.to_string(), i.into());
    }
    for b in 0..=0xFCu32 {
        vocab.insert(format!("<0x{b:02X}>"), (b + 3).into());
    }
    let special = |id: u32, content: &str| serde_json::json!({"id": id, "content": content, "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true});
    let json = serde_json::json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": [special(0, "<unk>"), special(1, "<s>"), special(2, "</s>")],
        "normalizer": null,
        "pre_tokenizer": null,
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}
        },
        "decoder": {"type": "Sequence", "decoders": [{"type": "ByteFallback"}, {"type": "Fuse"}]},
        "model": {"type": "BPE", "dropout": null, "unk_token": "<unk>", "continuing_subword_prefix": null, "end_of_word_suffix": null, "fuse_unk": true, "byte_fallback": true, "ignore_merges": false, "vocab": vocab, "merges": []}
    });
    std::fs::write(path, serde_json::to_vec(&json).unwrap()).unwrap();
}

/// The fixture converted once for every test here (f32, its tiny encoders, the byte tokenizer).
pub fn model() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| convert_reference("model", false))
}

/// The reference M2UGen fixture with a MusicGen whose T5 is as wide as its projector's output
/// (32), converted once (f32, the byte tokenizer, the tiny T5 tokenizer).
pub fn music_model() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| convert_reference("music-model", true))
}

/// Converts the reference fixture (f32, its encoders' configurations, the byte tokenizer) into
/// a fresh directory named by `tag`, with a MusicGen ([`musicgen_dir`], T5 width 32) when
/// `with_music`.
fn convert_reference(tag: &str, with_music: bool) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("m2ugen-cli-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let tokenizer = dir.join("bytes-tokenizer.json");
    byte_tokenizer(&tokenizer);
    let f = fixture();
    let params = if f.join("params.json").is_file() { f.join("params.json") } else { f.join("llama/params.json") };
    let out = dir.join("model");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_m2ugen"));
    cmd.args(["convert", "--dtype", "f32", "--checkpoint"]).arg(f.join("checkpoint.pth")).arg("--params").arg(params).arg("--tokenizer").arg(&tokenizer).arg("--out").arg(&out);
    for c in ["mert", "vit", "vivit"] {
        cmd.arg("--config").arg(format!("{c}={}", f.join(c).join("config.json").display()));
    }
    if with_music {
        cmd.arg("--hf").arg(format!("musicgen={}", musicgen_dir(&dir, 32).display()));
    }
    let run = cmd.output().unwrap();
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
    let dir = std::env::var_os("M2UGEN_MUSICGEN_FIXTURE").map(PathBuf::from).unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/musicgen"));
    if dir.join("musicgen/model.safetensors").is_file() { dir.join("musicgen") } else { dir }
}

/// The tiny T5 tokenizer of the test data.
pub fn t5_tokenizer() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/t5-tokenizer/tokenizer.json")
}

/// Every tensor of a safetensors file: name, shape, f32 values (F32 files only).
pub fn read_safetensors(path: &Path) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let bytes = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let mut out = Vec::new();
    for (name, e) in header {
        if name == "__metadata__" {
            continue;
        }
        assert_eq!(e["dtype"], "F32", "{name}");
        let shape = e["shape"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect();
        let (a, b) = (e["data_offsets"][0].as_u64().unwrap() as usize, e["data_offsets"][1].as_u64().unwrap() as usize);
        let values = bytes[8 + n + a..8 + n + b].chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
        out.push((name, shape, values));
    }
    out
}

/// Writes f32 tensors as a safetensors file, by the format's definition.
pub fn write_safetensors(path: &Path, tensors: &[(String, Vec<usize>, Vec<f32>)]) {
    let mut header = serde_json::Map::new();
    let mut data = Vec::new();
    for (name, shape, values) in tensors {
        let start = data.len();
        data.extend(values.iter().flat_map(|v| v.to_le_bytes()));
        header.insert(name.clone(), serde_json::json!({"dtype": "F32", "shape": shape, "data_offsets": [start, data.len()]}));
    }
    let mut h = serde_json::to_vec(&header).unwrap();
    while !h.len().is_multiple_of(8) {
        h.push(b' ');
    }
    let mut f = (h.len() as u64).to_le_bytes().to_vec();
    f.extend(h);
    f.extend(data);
    std::fs::write(path, f).unwrap();
}

/// A MusicGen in the Hugging Face layout in `dir`: the fixture's decoder and EnCodec (random
/// codebooks), with a T5 of width `t5_width` (random, seeded; the fixture's own T5 when it is the fixture's
/// width), and the tiny T5 tokenizer. A T5 as wide as the fixture M2UGen's projector output
/// lets embedding mode run end to end.
pub fn musicgen_dir(dir: &Path, t5_width: usize) -> PathBuf {
    let src = musicgen_fixture();
    let out = dir.join("musicgen");
    std::fs::create_dir_all(&out).unwrap();
    let mut config: serde_json::Value = serde_json::from_slice(&std::fs::read(src.join("config.json")).unwrap()).unwrap();
    let mut tensors = read_safetensors(&src.join("model.safetensors"));
    // The fixture's EnCodec codebooks are zeros (transformers initialises them so, and the
    // fixture's script did not scale them): random ones make the audio depend on the codes.
    let mut rng = m2ugen_core::rng::Rng::new(13);
    for (name, _, values) in tensors.iter_mut().filter(|(n, _, _)| n.ends_with(".codebook.embed")) {
        assert!(name.starts_with("audio_encoder.quantizer."), "{name}");
        *values = rng.vec(values.len(), -2.0, 2.0);
    }
    if config["text_encoder"]["d_model"] != t5_width {
        config["text_encoder"]["d_model"] = t5_width.into();
        tensors.retain(|(n, _, _)| !n.starts_with("text_encoder.") && !n.starts_with("enc_to_dec_proj."));
        let t5: m2ugen_core::config::T5Config = serde_json::from_value(config["text_encoder"].clone()).unwrap();
        let mut rng = m2ugen_core::rng::Rng::new(11);
        for (name, shape) in m2ugen_models::t5::T5Encoder::tensors("text_encoder", &t5) {
            let n: usize = shape.iter().product();
            let values = if name.contains("layer_norm") { vec![1.0; n] } else { rng.vec(n, -0.5, 0.5) };
            tensors.push((name, shape, values));
        }
        let decoder_width = config["decoder"]["hidden_size"].as_u64().unwrap() as usize;
        if decoder_width != t5_width {
            tensors.push(("enc_to_dec_proj.weight".into(), vec![decoder_width, t5_width], rng.vec(decoder_width * t5_width, -0.3, 0.3)));
            tensors.push(("enc_to_dec_proj.bias".into(), vec![decoder_width], vec![0.0; decoder_width]));
        }
    }
    std::fs::write(out.join("config.json"), serde_json::to_vec_pretty(&config).unwrap()).unwrap();
    write_safetensors(&out.join("model.safetensors"), &tensors);
    std::fs::copy(t5_tokenizer(), out.join("tokenizer.json")).unwrap();
    out
}
