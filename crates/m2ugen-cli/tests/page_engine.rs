//! The page's engine (crates/m2ugen-app/src/engine.rs), driven natively by the messages the page
//! sends, on the model `m2ugen default-model` makes (the page's bundled one): it loads with
//! progress, hears an attachment, answers, makes music in each mode, gives a share link that
//! decodes to the same samples, refuses what it must with the right kind of failure, and after
//! a lost device recreates it and reloads; with AudioLDM 2, makes a track per request in each
//! mode it has, with a progress message per denoising step, whose share link is the recipe that
//! makes the same samples again, in this engine or a fresh one.
//!
//! It lives here because this crate's tests make the default model (`common::bundled_model`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::bundled_model;
use m2ugen_app::engine::{Controls, Engine};
use m2ugen_app::protocol::{Attachment, DecoderInfo, Envelope, Failure, FromEngine, Medium, MusicRequest, ToEngine, TrackInfo, Unit};
use m2ugen_pipeline::share::{self, Shared};
use m2ugen_weights::native::DirFetcher;

struct Run {
    engine: Engine<DirFetcher>,
    controls: Controls,
}

impl Run {
    fn new() -> Run {
        let controls = Controls::default();
        Run { engine: Engine::new(|url: &str| DirFetcher(url.into()), None, false, controls.clone()), controls }
    }

    /// The replies to one message.
    fn send(&mut self, msg: ToEngine, data: Option<Vec<f32>>) -> Vec<Envelope<FromEngine>> {
        let mut replies = Vec::new();
        pollster::block_on(self.engine.handle(Envelope { msg, data }, &mut |r| replies.push(r)));
        replies
    }
}

fn failures(replies: &[Envelope<FromEngine>]) -> Vec<(Failure, String)> {
    replies.iter().filter_map(|r| if let FromEngine::Failed { failure, message, .. } = &r.msg { Some((*failure, message.clone())) } else { None }).collect()
}

fn no_failure(replies: &[Envelope<FromEngine>]) {
    let f = failures(replies);
    assert!(f.is_empty(), "{f:?}");
}

/// The track of the replies: its share fragment and its samples.
fn track(replies: &[Envelope<FromEngine>]) -> (String, Vec<f32>, u32) {
    no_failure(replies);
    let r = replies.iter().find(|r| matches!(r.msg, FromEngine::Track(_))).expect("a track");
    let FromEngine::Track(info) = &r.msg else { unreachable!() };
    (info.share.clone().expect("shareable"), r.data.clone().expect("samples"), info.rate)
}

fn request(mode: &str, seed: u64) -> MusicRequest {
    MusicRequest { prompt: "a calm piano piece".into(), mode: Some(mode.into()), seconds: 0.2, guidance: 3.0, seed, temperature: 1.0, top_k: 250, answer_tokens: 24, decoder: None, steps: 200, negative: "Low quality.".into() }
}

/// An AudioLDM 2 request: 0.04 s (640 samples at 16 kHz), 3 steps.
fn diffusion(mode: &str, seed: u64) -> MusicRequest {
    MusicRequest { decoder: Some("audioldm2".into()), seconds: 0.04, steps: 3, guidance: 3.5, ..request(mode, seed) }
}

/// The track's details.
fn info(replies: &[Envelope<FromEngine>]) -> TrackInfo {
    replies.iter().find_map(|r| if let FromEngine::Track(i) = &r.msg { Some(i.clone()) } else { None }).expect("a track")
}

fn chord() -> Vec<f32> {
    (0..48_000).map(|i| (i as f32 * 2.0 * std::f32::consts::PI * 220.0 / 24_000.0).sin() * 0.5).collect()
}

#[test]
fn the_page_engine_loads_answers_makes_shares_and_recovers() {
    let model = bundled_model().display().to_string();
    let mut run = Run::new();

    // Before a model: a request says to load one.
    let early = run.send(ToEngine::Generate { job: 1, request: request("text", 1) }, None);
    assert!(failures(&early).iter().any(|(k, m)| *k == Failure::Input && m.contains("no model is loaded")), "{early:?}");

    let started = run.send(ToEngine::Start { f16: false }, None);
    assert!(started.iter().any(|r| matches!(&r.msg, FromEngine::Gpu { in_worker: false, .. })), "{started:?}");

    let loaded = run.send(ToEngine::Load { url: model.clone() }, None);
    no_failure(&loaded);
    let parts: std::collections::BTreeSet<String> = loaded.iter().filter_map(|r| if let FromEngine::Progress { part, .. } = &r.msg { Some(part.clone()) } else { None }).collect();
    assert_eq!(parts.into_iter().collect::<Vec<_>>(), ["AudioLDM 2", "language model and encoders", "music decoder", "output projector"]);
    let info = loaded.iter().find_map(|r| if let FromEngine::Loaded(i) = &r.msg { Some(i.clone()) } else { None }).expect("loaded");
    assert_eq!(info.id, "m2ugen-tiny-untrained");
    assert!(info.untrained && info.chat && info.music && info.bytes > 0, "{info:?}");
    assert_eq!(info.hears, [Medium::Music, Medium::Image, Medium::Video]);
    let decoder = |name: &str, title: &str, modes: &[&str]| DecoderInfo { name: name.into(), title: title.into(), modes: modes.iter().map(|m| m.to_string()).collect() };
    // MusicGen first (the default); AudioLDM 2 without embedding mode (the projector is 32 wide).
    assert_eq!(info.decoders, [decoder("musicgen", "MusicGen", &["caption", "text", "embedding"]), decoder("audioldm2", "AudioLDM 2", &["caption", "text"])]);
    assert_eq!(info.manifest_sha256.len(), 64);

    // Text mode, twice: the same seed gives the same samples; another seed, others.
    let (link, samples, rate) = track(&run.send(ToEngine::Generate { job: 2, request: request("text", 5) }, None));
    assert_eq!(rate, 32_000);
    assert_eq!(samples.len(), 10 * 640, "0.2 s = 10 frames of 640 samples");
    assert!(samples.iter().all(|v| v.is_finite()) && samples.iter().any(|v| *v != 0.0));
    let (_, again, _) = track(&run.send(ToEngine::Generate { job: 3, request: request("text", 5) }, None));
    assert_eq!(again, samples);
    let (_, other, _) = track(&run.send(ToEngine::Generate { job: 4, request: request("text", 6) }, None));
    assert_ne!(other, samples);

    // The share link decodes to the very samples.
    let opened = run.send(ToEngine::OpenShared { job: 5, url: model.clone(), link: link.clone() }, None);
    let (_, shared, _) = track(&opened);
    assert_eq!(shared, samples);
    // A malformed link, and a link of other weights, are link failures.
    let bad = run.send(ToEngine::OpenShared { job: 6, url: model.clone(), link: "#m2ugen=1.AAAA".into() }, None);
    assert_eq!(failures(&bad).first().map(|f| f.0), Some(Failure::Link), "{bad:?}");
    let mut track_of_other = m2ugen_pipeline::share::parse(&link).unwrap();
    track_of_other.manifest_sha256[0] ^= 1;
    let other_link = m2ugen_pipeline::share::link(&track_of_other).unwrap();
    let refused = run.send(ToEngine::OpenShared { job: 7, url: model.clone(), link: other_link }, None);
    let f = failures(&refused);
    assert!(f.len() == 1 && f[0].0 == Failure::Link && f[0].1.contains("with other weights"), "{f:?}");

    // An attachment: heard; text mode then refuses it; a question is answered, streamed.
    let attached = run.send(ToEngine::Attach(Attachment { medium: Medium::Music, name: "chord.wav".into(), shape: [0; 4] }), Some(chord()));
    no_failure(&attached);
    assert!(attached.iter().any(|r| matches!(&r.msg, FromEngine::Attached { name } if name == "chord.wav")));
    let refused = run.send(ToEngine::Generate { job: 8, request: request("text", 5) }, None);
    assert!(failures(&refused).iter().any(|(k, m)| *k == Failure::Input && m.contains("hears no attachment")), "{refused:?}");
    let answer = run.send(ToEngine::Ask { turn: 9, question: "What instruments are playing?".into(), seed: 0, max_tokens: 24 }, None);
    no_failure(&answer);
    assert!(matches!(answer.last().map(|r| &r.msg), Some(FromEngine::Answered { turn: 9, stopped: false })), "{answer:?}");
    // Pixels that do not fill their shape are a media failure naming the file.
    let bad = run.send(ToEngine::Attach(Attachment { medium: Medium::Image, name: "cat.png".into(), shape: [1, 3, 16, 16] }), Some(vec![0.5; 10]));
    assert!(failures(&bad).iter().any(|(k, m)| *k == Failure::Media && m.starts_with("cat.png")), "{bad:?}");

    // Caption and embedding modes about the clip (the edit of a clip by instruction).
    let attached = run.send(ToEngine::Attach(Attachment { medium: Medium::Music, name: "chord.wav".into(), shape: [0; 4] }), Some(chord()));
    no_failure(&attached);
    let edit = MusicRequest { prompt: "Make it faster.".into(), ..request("caption", 5) };
    let caption = run.send(ToEngine::Generate { job: 10, request: edit.clone() }, None);
    let (_, edited, _) = track(&caption);
    assert_eq!(edited.len(), samples.len());
    let (_, embedded, _) = track(&run.send(ToEngine::Generate { job: 11, request: MusicRequest { mode: Some("embedding".into()), ..edit.clone() } }, None));
    assert_ne!(embedded, edited, "embedding mode conditions otherwise than caption mode");
    // The clip is heard: the same request and seed without it give other music.
    no_failure(&run.send(ToEngine::Detach, None));
    let (_, unheard, _) = track(&run.send(ToEngine::Generate { job: 15, request: edit }, None));
    assert_ne!(unheard, edited, "caption mode with the clip and without it gave the same music");
    let attached = run.send(ToEngine::Attach(Attachment { medium: Medium::Music, name: "chord.wav".into(), shape: [0; 4] }), Some(chord()));
    no_failure(&attached);

    // Bad settings name the field.
    let bad = run.send(ToEngine::Generate { job: 12, request: MusicRequest { seconds: 0.0, ..request("text", 1) } }, None);
    assert!(failures(&bad).iter().any(|(k, m)| *k == Failure::Input && m.contains("length 0 s")), "{bad:?}");

    // The device is lost: the failure says so, the device is recreated, the model reloaded, the
    // attachment heard again, and the same request gives the same samples.
    run.controls.lose_device();
    let run_after = run.send(ToEngine::Ask { turn: 13, question: "And now?".into(), seed: 0, max_tokens: 24 }, None);
    let f = failures(&run_after);
    assert_eq!(f.first().map(|f| f.0), Some(Failure::DeviceLost), "{run_after:?}");
    assert!(f[0].1.contains("GPU was reset"), "{f:?}");
    assert!(run_after.iter().any(|r| matches!(r.msg, FromEngine::Loaded(_))), "reloaded: {run_after:?}");
    assert!(run_after.iter().any(|r| matches!(&r.msg, FromEngine::Attached { name } if name == "chord.wav")), "the attachment heard again");
    run.send(ToEngine::Detach, None);
    let (_, recovered, _) = track(&run.send(ToEngine::Generate { job: 14, request: request("text", 5) }, None));
    assert_eq!(recovered, samples);
}

#[test]
fn a_model_that_cannot_be_read_is_a_model_or_network_failure() {
    let mut run = Run::new();
    run.send(ToEngine::Start { f16: false }, None);
    let missing = run.send(ToEngine::Load { url: "/nonexistent/model".into() }, None);
    let f = failures(&missing);
    assert_eq!(f.len(), 1, "{missing:?}");
    assert!(f[0].0 == Failure::Network && f[0].1.contains("/nonexistent/model"), "{f:?}");
}

#[test]
fn the_page_engine_makes_audioldm2_tracks_whose_links_make_them_again() {
    let model = bundled_model().display().to_string();
    let mut run = Run::new();
    no_failure(&run.send(ToEngine::Start { f16: false }, None));
    no_failure(&run.send(ToEngine::Load { url: model.clone() }, None));

    // Text mode: 640 samples at 16 kHz, a progress message per denoising step.
    let replies = run.send(ToEngine::Generate { job: 1, request: diffusion("text", 5) }, None);
    let steps: Vec<(usize, usize)> = replies.iter().filter_map(|r| if let FromEngine::Making { done, total, unit: Unit::Steps, .. } = r.msg { Some((done, total)) } else { None }).collect();
    assert_eq!(steps, [(1, 3), (2, 3), (3, 3)]);
    let (link, samples, rate) = track(&replies);
    let made = info(&replies);
    assert_eq!((rate, samples.len(), made.decoder.as_str(), made.mode.as_str()), (16_000, 640, "AudioLDM 2", "text"));
    assert!(samples.iter().all(|v| v.is_finite()) && samples.iter().any(|v| *v != 0.0));
    // The link is the recipe, short whatever the length: the prompt, the settings, the seed.
    assert!(link.starts_with("#m2ugen=2.") && link.len() < 300, "{} characters: {link}", link.len());
    let Ok(Shared::Recipe(recipe)) = share::parse_any(&link) else { panic!("not a recipe: {link}") };
    assert_eq!((recipe.prompt.as_str(), recipe.conditioning.as_str(), recipe.negative.as_str()), ("a calm piano piece", "a calm piano piece", "Low quality."));
    assert_eq!((recipe.seed, recipe.steps, recipe.guidance, recipe.seconds, recipe.waveforms, recipe.index), (5, 3, 3.5, 0.04, 1, 0));

    // The same request and seed: the same samples; another seed or negative prompt: others.
    let (_, again, _) = track(&run.send(ToEngine::Generate { job: 2, request: diffusion("text", 5) }, None));
    assert_eq!(again, samples);
    let (_, other, _) = track(&run.send(ToEngine::Generate { job: 3, request: diffusion("text", 6) }, None));
    assert_ne!(other, samples);
    let (_, negative, _) = track(&run.send(ToEngine::Generate { job: 4, request: MusicRequest { negative: "drums".into(), ..diffusion("text", 5) } }, None));
    assert_ne!(negative, samples);

    // The link makes the very samples again, with the loaded model.
    let opened = run.send(ToEngine::OpenShared { job: 5, url: model.clone(), link: link.clone() }, None);
    let (relink, shared, _) = track(&opened);
    assert_eq!(shared, samples);
    assert_eq!((relink, info(&opened).mode), (link.clone(), "shared".to_string()));

    // Caption mode: the LLM's answer (streamed) conditions AudioLDM 2 and is what the recipe
    // carries beside the prompt; its link makes the same samples.
    let replies = run.send(ToEngine::Generate { job: 6, request: diffusion("caption", 5) }, None);
    let answer: String = replies.iter().filter_map(|r| if let FromEngine::Text { turn: 6, delta } = &r.msg { Some(delta.clone()) } else { None }).collect();
    let (caption_link, captioned, _) = track(&replies);
    assert_ne!(captioned, samples, "the caption, not the prompt, conditioned caption mode");
    let Ok(Shared::Recipe(recipe)) = share::parse_any(&caption_link) else { panic!("not a recipe") };
    assert_eq!(recipe.prompt, "a calm piano piece");
    assert_eq!(recipe.conditioning, m2ugen_pipeline::studio::strip_aud(&answer), "the answer without its [AUD] tokens");
    let (_, reopened, _) = track(&run.send(ToEngine::OpenShared { job: 7, url: model.clone(), link: caption_link }, None));
    assert_eq!(reopened, captioned);

    // Refusals: embedding mode (a projector of the wrong width), bad settings, other weights.
    let refused = run.send(ToEngine::Generate { job: 8, request: diffusion("embedding", 5) }, None);
    assert!(failures(&refused).iter().any(|(k, m)| *k == Failure::Input && m.contains("4224")), "{refused:?}");
    let refused = run.send(ToEngine::Generate { job: 9, request: MusicRequest { steps: 0, ..diffusion("text", 5) } }, None);
    assert!(failures(&refused).iter().any(|(k, m)| *k == Failure::Input && m.contains("steps 0")), "{refused:?}");
    let refused = run.send(ToEngine::Generate { job: 10, request: MusicRequest { seconds: 61.0, ..diffusion("text", 5) } }, None);
    assert!(failures(&refused).iter().any(|(k, m)| *k == Failure::Input && m.contains("at most 60 s")), "{refused:?}");
    let mut other_weights = recipe.clone();
    other_weights.manifest_sha256[0] ^= 1;
    let refused = run.send(ToEngine::OpenShared { job: 11, url: model.clone(), link: share::recipe_link(&other_weights).unwrap() }, None);
    let f = failures(&refused);
    assert!(f.len() == 1 && f[0].0 == Failure::Link && f[0].1.contains("with other weights"), "{f:?}");

    // In a fresh engine with no model loaded, computing in the same precision (f32 here; a
    // recipe is exact within one precision), the link loads AudioLDM 2 alone and makes the same
    // samples; the second of two waveforms is another track.
    let mut fresh = Run::new();
    no_failure(&fresh.send(ToEngine::Start { f16: false }, None));
    let opened = fresh.send(ToEngine::OpenShared { job: 1, url: model.clone(), link: link.clone() }, None);
    let parts: std::collections::BTreeSet<String> = opened.iter().filter_map(|r| if let FromEngine::Progress { part, .. } = &r.msg { Some(part.clone()) } else { None }).collect();
    assert_eq!(parts.into_iter().collect::<Vec<_>>(), ["AudioLDM 2 (to make the shared track again)"]);
    let (_, shared, _) = track(&opened);
    assert_eq!(shared, samples);
    let Ok(Shared::Recipe(mut second)) = share::parse_any(&link) else { panic!("not a recipe") };
    (second.waveforms, second.index) = (2, 1);
    let (_, second_samples, _) = track(&fresh.send(ToEngine::OpenShared { job: 2, url: model.clone(), link: share::recipe_link(&second).unwrap() }, None));
    assert_eq!(second_samples.len(), 640);
    assert_ne!(second_samples, samples, "waveform 2 of 2 has its own noise");
}
