//! `m2ugen chat` and `m2ugen caption` on the reference fixture converted with a byte tokenizer
//! (every id a row of the fixture LLM's 264): answers checked against the library's, turn-by-turn
//! chat, captions resumed, and unusable input named with exit code 2.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use std::path::Path;

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

#[test]
fn chat_reads_real_encoders_files_and_a_video_through_ffmpeg() {
    // The media crate's files from real encoders (its tests/data/make.sh).
    let data = manifest_dir().join("../m2ugen-media/tests/data");
    let m = model();
    for music in ["tone.flac", "tone.mp3", "tone.ogg"] {
        let out = m2ugen(&[os("chat"), os("--model"), m.as_os_str(), os("--music"), data.join(music).as_os_str(), os("--max-tokens"), os("2"), os("hi")], None);
        assert!(out.status.success(), "{music}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let ffmpeg = std::process::Command::new("ffprobe").arg("-version").output().is_ok_and(|o| o.status.success());
    if !ffmpeg {
        assert!(std::env::var_os("CI").is_none(), "CI runs the real-ffmpeg check: install ffmpeg (scripts/setup.sh does)");
        return;
    }
    let out = m2ugen(&[os("chat"), os("--model"), m.as_os_str(), os("--video"), data.join("clip.mp4").as_os_str(), os("--max-tokens"), os("2"), os("hi")], None);
    assert!(out.status.success(), "clip.mp4: {}", String::from_utf8_lossy(&out.stderr));
    let line = one_line_exit_2(&m2ugen(&[os("chat"), os("--model"), m.as_os_str(), os("--video"), data.join("tone.mp3").as_os_str(), os("hi")], None));
    assert!(line.contains("tone.mp3: has no video track"), "{line}");
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
