//! The page's engine (crates/m2ugen-app/src/engine.rs), driven natively by the messages the page
//! sends, on the model `m2ugen default-model` makes (the page's bundled one): it loads with
//! progress, hears an attachment, answers, makes music in each mode, gives a share link that
//! decodes to the same samples, refuses what it must with the right kind of failure, and after
//! a lost device recreates it and reloads.
//!
//! It lives here because this crate's tests make the default model (`common::music_model`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::music_model;
use m2ugen_app::engine::{Controls, Engine};
use m2ugen_app::protocol::{Attachment, Envelope, Failure, FromEngine, Medium, MusicRequest, ToEngine};
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
    MusicRequest { prompt: "a calm piano piece".into(), mode: Some(mode.into()), seconds: 0.2, guidance: 3.0, seed, temperature: 1.0, top_k: 250, answer_tokens: 24 }
}

fn chord() -> Vec<f32> {
    (0..48_000).map(|i| (i as f32 * 2.0 * std::f32::consts::PI * 220.0 / 24_000.0).sin() * 0.5).collect()
}

#[test]
fn the_page_engine_loads_answers_makes_shares_and_recovers() {
    let model = music_model().display().to_string();
    let mut run = Run::new();

    // Before a model: a request says to load one.
    let early = run.send(ToEngine::Generate { job: 1, request: request("text", 1) }, None);
    assert!(failures(&early).iter().any(|(k, m)| *k == Failure::Input && m.contains("no model is loaded")), "{early:?}");

    let started = run.send(ToEngine::Start { f16: false }, None);
    assert!(started.iter().any(|r| matches!(&r.msg, FromEngine::Gpu { in_worker: false, .. })), "{started:?}");

    let loaded = run.send(ToEngine::Load { url: model.clone() }, None);
    no_failure(&loaded);
    let parts: std::collections::BTreeSet<String> = loaded.iter().filter_map(|r| if let FromEngine::Progress { part, .. } = &r.msg { Some(part.clone()) } else { None }).collect();
    assert_eq!(parts.into_iter().collect::<Vec<_>>(), ["language model and encoders", "music decoder", "output projector"]);
    let info = loaded.iter().find_map(|r| if let FromEngine::Loaded(i) = &r.msg { Some(i.clone()) } else { None }).expect("loaded");
    assert_eq!(info.id, "m2ugen-tiny-untrained");
    assert!(info.untrained && info.chat && info.music && info.bytes > 0, "{info:?}");
    assert_eq!(info.hears, [Medium::Music, Medium::Image, Medium::Video]);
    assert_eq!(info.modes, ["caption", "text", "embedding"]);
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
