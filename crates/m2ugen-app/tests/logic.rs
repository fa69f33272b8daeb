//! The page's plain-Rust parts, natively: forms, the waveform, words for sizes and times, the
//! messages' serialisation.
#![cfg(not(target_arch = "wasm32"))]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use m2ugen_app::display::{format_bytes, format_duration, format_eta, format_progress, peaks, waveform_path};
use m2ugen_app::engine::music_settings;
use m2ugen_app::engine::{check_request, diffusion_settings};
use m2ugen_app::forms::{answer_length, check_model_url, medium_of_file, music_request, profile_url, MusicForm, MAX_SEED, PROFILES};
use m2ugen_pipeline::studio::Decoder;
use m2ugen_app::protocol::{Failure, FromEngine, Medium, MusicRequest, ToEngine};
use m2ugen_pipeline::Sampling;

fn request() -> MusicRequest {
    MusicRequest { prompt: "calm piano".into(), mode: None, seconds: 2.0, guidance: 3.0, seed: 1, temperature: 1.0, top_k: 250, answer_tokens: 64, decoder: None, steps: 200, negative: "Low quality.".into() }
}

#[test]
fn music_settings_name_the_field_out_of_range() {
    let ok = music_settings(&request()).unwrap();
    assert_eq!((ok.frames, ok.guidance, ok.seed), (100, 3.0, 1));
    for (r, field) in [
        (MusicRequest { seconds: 0.0, ..request() }, "length 0 s"),
        (MusicRequest { seconds: 121.0, ..request() }, "at most 120 s"),
        (MusicRequest { seconds: f32::NAN, ..request() }, "length NaN"),
        (MusicRequest { guidance: -1.0, ..request() }, "guidance -1"),
        (MusicRequest { temperature: f32::INFINITY, ..request() }, "temperature inf"),
        (MusicRequest { prompt: "  ".into(), ..request() }, "music prompt is empty"),
        (MusicRequest { prompt: "x".repeat(2001), ..request() }, "bytes long"),
        (MusicRequest { answer_tokens: 0, ..request() }, "answer length 0"),
    ] {
        let e = music_settings(&r).unwrap_err();
        assert_eq!(e.0, Failure::Input);
        assert!(e.1.contains(field), "{}", e.1);
    }
    assert_eq!(music_settings(&MusicRequest { temperature: 0.0, ..request() }).unwrap().sampling, Sampling::Greedy);
}

#[test]
fn audioldm2_settings_name_the_field_out_of_range() {
    let r = MusicRequest { decoder: Some("audioldm2".into()), seconds: 10.0, steps: 50, guidance: 3.5, ..request() };
    let ok = diffusion_settings(&r).unwrap();
    assert_eq!((ok.seconds, ok.steps, ok.guidance, ok.seed, ok.waveforms), (10.0, 50, 3.5, 1, 1));
    for (bad, field) in [
        (MusicRequest { seconds: 61.0, ..r.clone() }, "length 61 s: give a length above 0 and at most 60 s with AudioLDM 2"),
        (MusicRequest { steps: 0, ..r.clone() }, "steps 0: give 1 to 1000"),
        (MusicRequest { steps: 1001, ..r.clone() }, "steps 1001"),
        (MusicRequest { guidance: 31.0, ..r.clone() }, "guidance 31: give a scale from 0 to 30"),
        (MusicRequest { negative: "x".repeat(2001), ..r.clone() }, "negative prompt is 2001 bytes"),
        (MusicRequest { prompt: "".into(), ..r.clone() }, "music prompt is empty"),
    ] {
        let e = check_request(&bad, Decoder::Audioldm2).unwrap_err();
        assert_eq!(e.0, Failure::Input);
        assert!(e.1.contains(field), "{}", e.1);
    }
    // 100 s is MusicGen's to make, not AudioLDM 2's.
    let long = MusicRequest { seconds: 100.0, ..r };
    assert!(check_request(&long, Decoder::Musicgen).is_ok());
    assert!(check_request(&long, Decoder::Audioldm2).is_err());
}

#[test]
fn the_music_form_is_read_and_checked_field_by_field() {
    let form = |seconds: &str, seed: &str, guidance: &str, mode: &str| MusicForm { seconds: seconds.into(), seed: seed.into(), guidance: guidance.into(), mode: mode.into(), ..MusicForm::default() };
    let r = music_request("drums", &form(" 2.5 ", "42", "3", "caption"), "64").unwrap();
    assert_eq!((r.seconds, r.seed, r.guidance, r.mode.as_deref(), r.answer_tokens, r.decoder.as_deref()), (2.5, 42, 3.0, Some("caption"), 64, None));
    assert_eq!(music_request("drums", &form("1", "0", "1", ""), "8").unwrap().mode, None);
    for (args, expected) in [
        (["x", "0", "3", "", "8"], "length 'x'"),
        (["1", "-1", "3", "", "8"], "seed '-1'"),
        (["1", &(MAX_SEED + 1).to_string(), "3", "", "8"], "seed '9007199254740992'"),
        (["1", "0", "loud", "", "8"], "guidance 'loud'"),
        (["1", "0", "3", "", "0"], "answer length '0'"),
        (["500", "0", "3", "", "8"], "at most 120 s"),
    ] {
        let e = music_request("drums", &form(args[0], args[1], args[2], args[3]), args[4]).unwrap_err();
        assert!(e.contains(expected), "{args:?}: {e}");
    }
    // AudioLDM 2: its steps and negative prompt are read; its limits apply; MusicGen ignores them.
    let diffusion = MusicForm { decoder: "audioldm2".into(), steps: " 25 ".into(), negative: "noise".into(), ..form("10", "7", "3.5", "text") };
    let r = music_request("drums", &diffusion, "8").unwrap();
    assert_eq!((r.decoder.as_deref(), r.steps, r.negative.as_str(), r.seconds), (Some("audioldm2"), 25, "noise", 10.0));
    for (f, expected) in [
        (MusicForm { steps: "0".into(), ..diffusion.clone() }, "steps '0': give a whole number of denoising steps from 1 to 1000"),
        (MusicForm { steps: "many".into(), ..diffusion.clone() }, "steps 'many'"),
        (MusicForm { seconds: "90".into(), ..diffusion.clone() }, "at most 60 s with AudioLDM 2"),
        (MusicForm { decoder: "wavenet".into(), ..diffusion.clone() }, "decoder 'wavenet': choose musicgen or audioldm2"),
    ] {
        let e = music_request("drums", &f, "8").unwrap_err();
        assert!(e.contains(expected), "{f:?}: {e}");
    }
    let musicgen = MusicForm { decoder: "musicgen".into(), steps: "many".into(), seconds: "90".into(), ..diffusion };
    assert_eq!(music_request("drums", &musicgen, "8").unwrap().steps, 0, "MusicGen takes 90 s and no steps");
    // A form saved before the decoder fields existed still reads, with their defaults.
    let old: MusicForm = serde_json::from_str(r#"{"seconds":"4","seed":"1","guidance":"3","mode":"text"}"#).unwrap();
    assert_eq!((old.seconds.as_str(), old.decoder.as_str(), old.steps.as_str(), old.negative.as_str()), ("4", "", "200", "Low quality."));
    assert_eq!(answer_length("1024"), Ok(1024));
    assert!(answer_length("1025").is_err());
}

#[test]
fn model_urls_are_paths_or_origins_the_policy_allows() {
    let allowed = vec!["https://CDN.example.org".to_string()];
    assert_eq!(check_model_url("model", &allowed), Ok("model"));
    assert_eq!(check_model_url(" models/m2ugen-small/ ", &allowed), Ok("models/m2ugen-small/"));
    assert!(check_model_url("https://cdn.example.org/m2ugen", &allowed).is_ok());
    assert!(check_model_url("HTTPS://CDN.EXAMPLE.ORG/m2ugen", &allowed).is_ok());
    for (url, expected) in [
        ("https://evil.example.com/m", "origin https://evil.example.com is not allowed"),
        ("https://cdn.example.org.evil.com/m", "origin https://cdn.example.org.evil.com is not allowed"),
        ("javascript:alert(1)", "neither a path on this site nor an http(s) URL"),
        ("//evil.example.com/m", "neither a path"),
        ("/\\evil.example.com/m", "backslashes"),
        ("/\t/evil.example.com/m", "control characters"),
        ("", "1 to 2048 characters"),
    ] {
        let e = check_model_url(url, &allowed).unwrap_err();
        assert!(e.contains(expected), "{url}: {e}");
    }
    assert!(check_model_url(&"a".repeat(2049), &allowed).is_err());
}

#[test]
fn uploads_are_told_apart_by_type_or_name() {
    assert_eq!(medium_of_file("a.bin", "audio/mpeg"), Some(Medium::Music));
    assert_eq!(medium_of_file("Song.FLAC", ""), Some(Medium::Music));
    assert_eq!(medium_of_file("cat.jpeg", ""), Some(Medium::Image));
    assert_eq!(medium_of_file("clip", "video/webm"), Some(Medium::Video));
    assert_eq!(medium_of_file("notes.txt", "text/plain"), None);
}

#[test]
fn the_waveform_outlines_each_stretch() {
    let samples: Vec<f32> = (0..1000).map(|i| if i < 500 { 0.5 } else { -0.25 }).collect();
    let p = peaks(&samples, 4);
    assert_eq!(p, vec![(0.0, 0.5), (0.0, 0.5), (-0.25, 0.0), (-0.25, 0.0)]);
    assert_eq!(peaks(&samples[..3], 10).len(), 3);
    assert!(peaks(&[], 10).is_empty());
    assert_eq!(peaks(&[f32::NAN, 1.0], 1), vec![(0.0, 1.0)]);
    // Bars at the centre of each stretch: 0.5 reaches a quarter of the way down from the top.
    let d = waveform_path(&[(0.0, 0.5), (-1.0, 0.0)], 100.0, 80.0);
    assert_eq!(d, "M25.0 20.0V40.5M75.0 39.5V80.0");
}

#[test]
fn sizes_rates_and_times_in_words() {
    assert_eq!(format_bytes(512), "512 B");
    assert_eq!(format_bytes(1536), "1.5 KiB");
    assert_eq!(format_bytes(3 << 30), "3.0 GiB");
    assert_eq!(format_eta(Some(5.4)), "5 s");
    assert_eq!(format_eta(Some(185.0)), "3 min 5 s");
    assert_eq!(format_eta(Some(7260.0)), "2 h 1 min");
    assert_eq!(format_eta(None), "—");
    assert_eq!(format_eta(Some(f64::INFINITY)), "—");
    assert_eq!(format_progress(1 << 20, 4 << 20, 0, 524288.0, Some(6.0)), "1.0 MiB of 4.0 MiB (25%), 512.0 KiB/s, 6 s left");
    assert_eq!(format_progress(2048, 2048, 2048, 0.0, None), "2.0 KiB of 2.0 KiB (100%), 2.0 KiB from this browser's cache");
    assert_eq!(format_duration(7.5), "0:07.5");
    assert_eq!(format_duration(123.0), "2:03.0");
}

#[test]
fn messages_survive_serialisation() {
    // serde_json stands in for serde-wasm-bindgen here: the same derive, another format.
    let to = ToEngine::Generate { job: 3, request: request() };
    assert_eq!(serde_json::from_str::<ToEngine>(&serde_json::to_string(&to).unwrap()).unwrap(), to);
    let from = FromEngine::Failed { job: Some(2), failure: Failure::Link, message: "damaged".into() };
    assert_eq!(serde_json::from_str::<FromEngine>(&serde_json::to_string(&from).unwrap()).unwrap(), from);
}

#[test]
fn a_model_whose_tensor_exceeds_the_gpu_buffer_limit_is_refused_by_name() {
    use m2ugen_weights::{Manifest, StoredType, TensorEntry};
    let tensor = |name: &str, shape: Vec<usize>, dtype: StoredType, bytes: u64| TensorEntry { name: name.into(), shape, dtype, shard: 0, offset: 0, bytes, sha256: "0".repeat(64), continued: Vec::new() };
    let manifest = Manifest {
        format: m2ugen_weights::manifest::FORMAT.into(),
        model: "big".into(),
        version: "1".into(),
        kind: m2ugen_core::config::ModelKind::M2ugenMusicgen,
        components: Default::default(),
        tokenizer: None,
        text_tokenizer: None,
        clap_tokenizer: None,
        shards: Vec::new(),
        // Stored in f16 (2 MiB), uploaded in f32: 4 MiB; a 4-bit weight counts as stored.
        tensors: vec![tensor("llm.tok_embeddings.weight", vec![1024, 1024], StoredType::F16, 2 << 20), tensor("llm.layers.0.attention.wq", vec![4096, 4096], StoredType::Q4, 9 << 20)],
    };
    use m2ugen_app::engine::check_fits;
    use m2ugen_core::DType;
    assert!(check_fits(&manifest, DType::F32, 16 << 20).is_ok());
    let e = check_fits(&manifest, DType::F32, 8 << 20).unwrap_err();
    assert!(e.contains("'llm.layers.0.attention.wq' needs 9.0 MiB") && e.contains("allows 8.0 MiB (maxBufferSize)"), "{e}");
    let e = check_fits(&manifest, DType::F32, 3 << 20).unwrap_err();
    assert!(e.contains("'llm.layers.0.attention.wq'"), "the largest is named: {e}");
    assert!(check_fits(&manifest, DType::F16, 2 << 20).unwrap_err().contains("'llm.layers.0.attention.wq'"));
    let only_embedding = Manifest { tensors: manifest.tensors[..1].to_vec(), ..manifest.clone() };
    assert!(check_fits(&only_embedding, DType::F16, 2 << 20).is_ok(), "f16 halves the upload");
    assert!(check_fits(&only_embedding, DType::F32, 2 << 20).unwrap_err().contains("needs 4.0 MiB"));
}

#[test]
fn profiles_point_under_the_model_origin_and_pass_the_url_check() {
    let origin = vec!["https://models.example.org".to_string()];
    let urls: Vec<String> = PROFILES.iter().map(|p| profile_url(p, &origin)).collect();
    assert_eq!(urls[0], "https://models.example.org/m2ugen-musicgen-small/");
    assert_eq!(urls[3], "https://models.example.org/mu-llama/");
    // Built without a model origin: folders under models/ on the page's own site.
    assert_eq!(profile_url(&PROFILES[4], &[]), "models/musicgen-small/");
    // Every profile's URL is one the page will load (the CSP allows it), with either base.
    for p in &PROFILES {
        for allowed in [&origin[..], &[]] {
            let url = profile_url(p, allowed);
            assert_eq!(check_model_url(&url, allowed), Ok(url.as_str()), "{}", p.label);
        }
    }
    let folders: std::collections::BTreeSet<_> = PROFILES.iter().map(|p| p.folder).collect();
    assert_eq!(folders.len(), PROFILES.len(), "two profiles share a folder");
}
