//! `m2ugen chat` and `m2ugen caption` on the reference fixture converted with a byte tokenizer
//! (every id a row of the fixture LLM's 264): answers checked against the library's, turn-by-turn
//! chat, captions resumed, and unusable input named with exit code 2.
#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

fn fixture() -> PathBuf {
    std::env::var_os("M2UGEN_REFERENCE_FIXTURE").map(PathBuf::from).unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/reference-m2ugen"))
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("m2ugen-understand-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A Hugging Face tokenizer of bytes: `<unk>`, `<s>`, `</s>`, then `<0x00>`..`<0xFC>` (ids
/// 3..255; UTF-8 never uses 0xFD-0xFF), BPE without merges and with byte fallback, `<s>` first.
/// The converter adds `[AUD0]`..`[AUD7]` as 256..263, the fixture LLM's output rows.
fn byte_tokenizer(path: &Path) {
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
fn model() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("m2ugen-understand-model-{}", std::process::id()));
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
        let run = cmd.output().unwrap();
        assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
        out
    })
}

/// A 16-bit PCM WAV of `samples` at `rate`.
fn wav(path: &Path, samples: &[f32], rate: u32) {
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
fn fixture_wav(dir: &Path, i: usize, name: &str) -> PathBuf {
    let io = m2ugen_weights::safetensors::InMemory::parse("io.safetensors", std::fs::read(fixture().join("io.safetensors")).unwrap()).unwrap();
    let (samples, _) = io.f32(&format!("in.audio_24k.{i}")).unwrap();
    // Scaled into 16 bits' range (the normalisation before MERT takes the scale away).
    let peak = samples.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
    let scaled: Vec<f32> = samples.iter().map(|v| v / peak * 0.9).collect();
    let path = dir.join(name);
    wav(&path, &scaled, 24_000);
    path
}

fn m2ugen(args: &[&std::ffi::OsStr], stdin: Option<&str>) -> Output {
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

fn os(s: &str) -> &std::ffi::OsStr {
    s.as_ref()
}

/// The library's answer to `question` about the music of `wav` (greedy, `max_tokens`).
fn library_answer(wav: &Path, question: &str, max_tokens: usize) -> String {
    use m2ugen_pipeline::chat::Conversation;
    use m2ugen_pipeline::generate::{Cancel, Settings};
    let (wav, question, dir) = (wav.to_path_buf(), question.to_string(), model().to_path_buf());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        pollster::block_on(async move {
            let gpu = m2ugen_gpu::Gpu::new(m2ugen_gpu::GpuOptions::default()).await.unwrap();
            let clock = m2ugen_gpu::now_ms;
            let options = m2ugen_weights::loader::LoadOptions { in_flight: 4, max_resumes: 0, clock: &clock, cache: None };
            let u = m2ugen_pipeline::load::load_understanding(&gpu, m2ugen_core::DType::F32, &m2ugen_weights::native::DirFetcher(dir), 2048, &options).await.unwrap();
            let samples = m2ugen_media::audio::music_from_bytes("a.wav", &std::fs::read(&wav).unwrap(), &m2ugen_media::Limits::default()).unwrap();
            let music = u.encoders.music(&gpu, &samples).unwrap();
            let media = m2ugen_models::llama::Media { music: Some(&music), ..Default::default() };
            let mut chat = Conversation::new(&gpu, &u.llama, media, 2048).unwrap();
            let settings = Settings { sampling: m2ugen_pipeline::Sampling::Greedy, max_new_tokens: max_tokens, eos: u.tokenizer.token_id("</s>"), stop_texts: vec!["\n###".into()] };
            let answer = chat.ask(&gpu, &u.llama, &u.tokenizer, &question, &settings, 0, &Cancel::default(), |_| {}).await.unwrap();
            tx.send(answer.text).unwrap();
        })
    });
    rx.recv_timeout(std::time::Duration::from_secs(300)).unwrap()
}

#[test]
fn chat_answers_as_the_library_and_goes_on_turn_by_turn() {
    let dir = scratch("chat");
    let a = fixture_wav(&dir, 0, "a.wav");
    let m = model();
    let one = m2ugen(&[os("chat"), os("--model"), m.as_os_str(), os("--music"), a.as_os_str(), os("--max-tokens"), os("6"), os("hello")], None);
    assert!(one.status.success(), "{}", String::from_utf8_lossy(&one.stderr));
    let expected = library_answer(&a, "hello", 6);
    assert_eq!(String::from_utf8_lossy(&one.stdout), format!("{expected}\n"), "the command prints the library's answer");

    let two = m2ugen(&[os("chat"), os("--model"), m.as_os_str(), os("--music"), a.as_os_str(), os("--max-tokens"), os("6"), os("--interactive"), os("hello")], Some("world\n\n"));
    assert!(two.status.success(), "{}", String::from_utf8_lossy(&two.stderr));
    let stdout = String::from_utf8_lossy(&two.stdout);
    assert!(stdout.starts_with(&format!("{expected}\n")), "the first turn as the one-shot answer: {stdout:?}");
    let stderr = String::from_utf8_lossy(&two.stderr);
    let reused: Vec<usize> = stderr.lines().filter_map(|l| l.split_once('(')?.1.split(' ').next()?.parse().ok()).collect();
    assert_eq!(reused.len(), 2, "one note per turn: {stderr}");
    assert!(reused[0] == 0 && reused[1] > 100, "the second turn reuses the first's keys and values: {reused:?}");
    let _ = std::fs::remove_dir_all(dir);
}

fn one_line_exit_2(out: &Output) -> String {
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<String> = String::from_utf8_lossy(&out.stderr).lines().filter(|l| l.starts_with("m2ugen:")).map(str::to_string).collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    lines[0].clone()
}

#[test]
fn unusable_input_is_named_with_exit_code_2() {
    let dir = scratch("bad");
    let m = model();
    let empty = dir.join("empty.wav");
    std::fs::write(&empty, b"").unwrap();
    let line = one_line_exit_2(&m2ugen(&[os("chat"), os("--model"), m.as_os_str(), os("--music"), empty.as_os_str(), os("hi")], None));
    assert!(line.contains("empty.wav: is empty"), "{line}");
    let text = dir.join("notes.wav");
    std::fs::write(&text, b"these are not samples, just words in a file named like audio").unwrap();
    let line = one_line_exit_2(&m2ugen(&[os("chat"), os("--model"), m.as_os_str(), os("--music"), text.as_os_str(), os("hi")], None));
    assert!(line.contains("notes.wav: is not audio"), "{line}");
    let silent = dir.join("silent.wav");
    wav(&silent, &[0.0; 24_000], 24_000);
    let line = one_line_exit_2(&m2ugen(&[os("chat"), os("--model"), m.as_os_str(), os("--music"), silent.as_os_str(), os("hi")], None));
    assert!(line.contains("silent.wav: is silent"), "{line}");
    let missing = dir.join("no-model");
    let line = one_line_exit_2(&m2ugen(&[os("chat"), os("--model"), missing.as_os_str(), os("hi")], None));
    assert!(line.contains("no-model"), "{line}");
    let line = one_line_exit_2(&m2ugen(&[os("chat"), os("--model"), m.as_os_str()], None));
    assert!(line.contains("give a question, or --interactive"), "{line}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn captions_are_written_per_batch_resumed_and_bad_files_skipped() {
    let dir = scratch("caption");
    let audio = dir.join("audio");
    std::fs::create_dir_all(&audio).unwrap();
    fixture_wav(&audio, 0, "a.wav");
    fixture_wav(&audio, 1, "b.wav");
    std::fs::write(audio.join("broken.wav"), b"RIFF\x10\x00\x00\x00WAVEfmt ").unwrap();
    std::fs::write(audio.join("readme.txt"), b"not audio, not listed").unwrap();
    let caps = dir.join("captions.json");
    let m = model();
    let run = |batch: &str| m2ugen(&[os("caption"), os("--model"), m.as_os_str(), os("--max-tokens"), os("5"), os("--batch"), os(batch), audio.as_os_str(), os("-o"), caps.as_os_str()], None);
    let first = run("2");
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let stderr = String::from_utf8_lossy(&first.stderr);
    assert!(stderr.contains("3 audio files, 0 already captioned, 3 to do") && stderr.contains("skipped") && stderr.contains("broken.wav"), "{stderr}");
    let written: std::collections::BTreeMap<String, String> = serde_json::from_slice(&std::fs::read(&caps).unwrap()).unwrap();
    assert_eq!(written.keys().collect::<Vec<_>>(), ["a.wav", "b.wav"]);

    // A rerun does only what is missing: b.wav again, alone, gives the caption it got in a batch.
    let mut partial = written.clone();
    partial.remove("b.wav");
    std::fs::write(&caps, serde_json::to_vec(&partial).unwrap()).unwrap();
    let second = run("1");
    assert!(second.status.success(), "{}", String::from_utf8_lossy(&second.stderr));
    assert!(String::from_utf8_lossy(&second.stderr).contains("3 audio files, 1 already captioned, 2 to do"));
    let again: std::collections::BTreeMap<String, String> = serde_json::from_slice(&std::fs::read(&caps).unwrap()).unwrap();
    assert_eq!(again, written, "the same captions, batched or not");

    // A captions file that is not one is named, and left alone.
    std::fs::write(&caps, b"[1, 2").unwrap();
    let line = one_line_exit_2(&run("1"));
    assert!(line.contains("captions.json: not a captions file"), "{line}");
    let _ = std::fs::remove_dir_all(dir);
}
