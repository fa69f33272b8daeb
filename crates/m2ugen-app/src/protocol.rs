//! The one message type the page and the engine exchange.
//!
//! The engine (the GPU device, the models, generation) runs in a dedicated module Web Worker
//! (`worker.rs`); where the browser offers no WebGPU in workers it runs on the page's thread
//! with the same code. Either way the page sends [`ToEngine`] and receives [`FromEngine`]. Over
//! `postMessage` each is serialised with `serde-wasm-bindgen`, and the bulky payload that goes
//! with some (decoded audio or pixels, a track's samples) travels beside it as a transferred
//! `Float32Array` ([`Envelope::data`]), never as a JS array of numbers.

use serde::{Deserialize, Serialize};

/// A message and the samples that go with it.
#[derive(Clone, Debug, PartialEq)]
pub struct Envelope<T> {
    /// The message.
    pub msg: T,
    /// Audio samples or planar pixels, where the message says it carries them.
    pub data: Option<Vec<f32>>,
}

impl<T> Envelope<T> {
    /// A message without samples.
    pub fn bare(msg: T) -> Self {
        Envelope { msg, data: None }
    }
}

/// What a medium the user attached is; its values are [`Envelope::data`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Medium {
    /// Mono 24 kHz samples.
    Music,
    /// Planar RGB in [0, 1], one frame.
    Image,
    /// Planar RGB bytes (0..=255), several frames.
    Video,
}

/// An attachment: what it is, its name, and the shape of its values.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Attachment {
    /// The medium.
    pub medium: Medium,
    /// The file's name (for messages).
    pub name: String,
    /// Frames, channels, height, width (images and video); zeros for music.
    pub shape: [usize; 4],
}

/// How music is made.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MusicRequest {
    /// The request in words.
    pub prompt: String,
    /// Conditioning mode: `caption`, `embedding` or `text` (`None`: the model's default).
    pub mode: Option<String>,
    /// Length in seconds.
    pub seconds: f32,
    /// Classifier-free guidance scale (1 turns it off).
    pub guidance: f32,
    /// Seed of every draw.
    pub seed: u64,
    /// Sampling temperature (0 is greedy).
    pub temperature: f32,
    /// Keep this many most likely codes (0: all).
    pub top_k: u32,
    /// Most tokens of the LLM's answer that conditions the music (caption and embedding modes).
    pub answer_tokens: u32,
    /// The music decoder: `musicgen` or `audioldm2` (`None`: the model's default, MusicGen
    /// when it has both).
    pub decoder: Option<String>,
    /// AudioLDM 2: denoising steps (MusicGen ignores it).
    pub steps: u32,
    /// AudioLDM 2: the negative prompt of guidance (MusicGen ignores it).
    pub negative: String,
}

/// Page to engine.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ToEngine {
    /// Find the GPU; answered by [`FromEngine::Gpu`] or a failure.
    Start {
        /// Compute in f16 when the GPU has `shader-f16`.
        f16: bool,
    },
    /// Load the model whose `manifest.json` is under `url` (what the page offers follows
    /// [`FromEngine::Loaded`]).
    Load {
        /// The model's base URL.
        url: String,
    },
    /// Attach a medium to the conversation (the values are the envelope's data); the next
    /// question starts a conversation about it.
    Attach(Attachment),
    /// Forget the attachment.
    Detach,
    /// Ask the LLM about the attachment; the answer streams as [`FromEngine::Text`].
    Ask {
        /// The turn's number (replies carry it).
        turn: u32,
        /// The question.
        question: String,
        /// Seed of the answer's sampling (greedy answers ignore it).
        seed: u64,
        /// Most tokens of the answer.
        max_tokens: u32,
    },
    /// Make music for the attachment (if any) and the request.
    Generate {
        /// The job's number (replies carry it).
        job: u32,
        /// What to make.
        request: MusicRequest,
    },
    /// Open a share link with the model under `url`: a MusicGen track's codes are decoded
    /// (EnCodec only), an AudioLDM 2 track's recipe is made again (AudioLDM 2 only).
    OpenShared {
        /// The job's number.
        job: u32,
        /// The model's base URL.
        url: String,
        /// The link (or its fragment).
        link: String,
    },
    /// Stop the answer or the music being made (what is done so far is kept).
    Stop,
    /// Destroy the GPU device, as a driver reset would (for the lost-device test).
    LoseDevice,
}

/// Why something failed: each kind has its own message in the page.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Failure {
    /// No WebGPU, no adapter, or limits too small.
    Gpu,
    /// The GPU device was lost; the engine recreates it and reloads from the cache.
    DeviceLost,
    /// A download failed (after its resumptions).
    Network,
    /// The browser's storage refused to keep the weights (full or blocked).
    Storage,
    /// The model's files are wrong (hash, manifest, shapes) or it cannot do what was asked.
    Model,
    /// A setting or request the user can fix.
    Input,
    /// A file that cannot be decoded or heard.
    Media,
    /// A share link that cannot be opened.
    Link,
    /// Anything else.
    Other,
}

/// What a loaded model can do, as the page offers it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    /// The manifest's model id.
    pub id: String,
    /// Its manifest's SHA-256, hex.
    pub manifest_sha256: String,
    /// The manifest's kind, as named in the manifest.
    pub kind: String,
    /// Whether the model is the bundled untrained one (noise, not music).
    pub untrained: bool,
    /// Questions are answered.
    pub chat: bool,
    /// Media the LLM hears.
    pub hears: Vec<Medium>,
    /// Music is made (the model has a decoder).
    pub music: bool,
    /// The music decoders, the default first.
    pub decoders: Vec<DecoderInfo>,
    /// Frames ViViT takes from a video, when the model hears video.
    pub video_frames: Option<usize>,
    /// Bytes of weights loaded.
    pub bytes: u64,
}

/// A music decoder of the loaded model, as the page offers it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DecoderInfo {
    /// What a request names it: `musicgen` or `audioldm2`.
    pub name: String,
    /// Its name in prose.
    pub title: String,
    /// The conditioning modes it can do with this model, the default first.
    pub modes: Vec<String>,
}

/// What music progress counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Unit {
    /// MusicGen's frames (50 a second).
    Frames,
    /// AudioLDM 2's denoising steps.
    Steps,
}

/// Engine to page.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum FromEngine {
    /// The worker is running and takes messages.
    Ready,
    /// The GPU found.
    Gpu {
        /// One line describing it.
        description: String,
        /// Whether models compute in f16.
        f16: bool,
        /// Whether the engine runs in a worker (false: on the page's thread).
        in_worker: bool,
    },
    /// Loading progress of one part of the model.
    Progress {
        /// The part (`language model and encoders`, `music decoder`, ...).
        part: String,
        /// Verified bytes.
        done: u64,
        /// Bytes to load.
        total: u64,
        /// Of `done`, bytes from the cache.
        cached: u64,
        /// Bytes per second from the network.
        rate: f64,
        /// Seconds left, when there is a rate.
        eta_s: Option<f64>,
    },
    /// Something the user should know (a fallback, a retry).
    Notice(String),
    /// The model is ready.
    Loaded(ModelInfo),
    /// The attachment is heard (its features computed).
    Attached {
        /// Its name.
        name: String,
    },
    /// More of an answer.
    Text {
        /// The turn (or music job) it belongs to.
        turn: u32,
        /// The new text.
        delta: String,
    },
    /// An answer is complete.
    Answered {
        /// The turn.
        turn: u32,
        /// Whether it was stopped before its end.
        stopped: bool,
    },
    /// Music progress: frames or denoising steps done of all.
    Making {
        /// The job.
        job: u32,
        /// Done.
        done: usize,
        /// Asked.
        total: usize,
        /// What is counted.
        unit: Unit,
    },
    /// A track (its samples are the envelope's data).
    Track(TrackInfo),
    /// Music making was stopped before any music was made.
    Stopped {
        /// The job.
        job: u32,
    },
    /// Something failed.
    Failed {
        /// The request's turn or job, if it had one.
        job: Option<u32>,
        /// What kind of failure.
        failure: Failure,
        /// The message, naming the file, field or limit.
        message: String,
    },
}

/// A finished track.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrackInfo {
    /// The job.
    pub job: u32,
    /// Samples per second.
    pub rate: u32,
    /// The prompt it was made from.
    pub prompt: String,
    /// The mode it was made in (`shared` for a track opened from a link).
    pub mode: String,
    /// The decoder that made it, in prose (`MusicGen`, `AudioLDM 2`).
    pub decoder: String,
    /// The seed.
    pub seed: u64,
    /// Whether it was stopped before its full length.
    pub stopped: bool,
    /// The share link's fragment (`#m2ugen=1.…`, the codes; `#m2ugen=2.…`, the recipe), or why
    /// it cannot be shared.
    pub share: Result<String, String>,
}
