//! The engine: the GPU device, the loaded model, the conversation and music making, driven by
//! [`ToEngine`] messages and answering with [`FromEngine`] ones.
//!
//! It is plain Rust over a [`Fetcher`]: in the page a `WebFetcher` (and the Cache API), in the
//! native tests a `DirFetcher` on the bundled default model. It runs in the worker
//! (`worker.rs`) or, where a browser offers no WebGPU in workers, on the page's thread; both
//! give it messages one at a time, except [`Controls`] (stop, lose the device), which act at
//! once, while a request is under way.

use crate::protocol::{Attachment, DecoderInfo, Envelope, Failure, FromEngine, Medium, ModelInfo, MusicRequest, ToEngine, TrackInfo, Unit};
use m2ugen_core::config::Modality;
use m2ugen_core::media::Planar;
use m2ugen_core::DType;
use m2ugen_gpu::{F16Mode, Gpu, GpuOptions, GpuTensor, Recorder};
use m2ugen_models::encodec::EncodecDecoder;
use m2ugen_models::OutputProjector;
use m2ugen_pipeline::audioldm2::{make_audioldm2, make_audioldm2_embedding, Audioldm2, Audioldm2Request, Audioldm2Tokenizers, DiffusionSettings};
use m2ugen_pipeline::chat::Conversation;
use m2ugen_pipeline::generate::{Cancel, GenerateError, Settings};
use m2ugen_pipeline::load::{load_audioldm2, load_music, load_understanding_of, LoadError, Understanding};
use m2ugen_pipeline::music::{generate_long, Mode, MusicModel, MusicSettings, FRAME_RATE};
use m2ugen_pipeline::share::{self, Shared, SharedRecipe, SharedTrack};
use m2ugen_pipeline::studio::{self, Abilities, Decoder};
use m2ugen_pipeline::Sampling;
use m2ugen_weights::loader::{load_manifest_with_hash, Event, Fetcher, LoadOptions, TensorCache};
use m2ugen_weights::Manifest;
use std::cell::RefCell;
use std::rc::Rc;

/// Longest track the page makes with MusicGen, in seconds (longer ones are made in windows).
pub const MAX_SECONDS: f32 = 120.0;
/// Longest track the page makes with AudioLDM 2, in seconds (the pipeline's and a recipe's).
pub const MAX_DIFFUSION_SECONDS: f32 = m2ugen_pipeline::audioldm2::MAX_SECONDS;
/// Frames MusicGen makes at once (its 30-second training length).
pub const WINDOW_FRAMES: usize = 30 * FRAME_RATE;
/// Frames of the track so far that prompt each further window (audiocraft's 12 s).
pub const OVERLAP_FRAMES: usize = 12 * FRAME_RATE;
/// Positions of the LLM's KV cache (prompt, media and every turn of a conversation).
pub const MAX_SEQ: usize = 2048;
/// Most tokens of one answer the page allows (the reference's captions are far shorter).
pub const MAX_ANSWER_TOKENS: u32 = 1024;
/// Longest question or music prompt, in bytes.
pub const MAX_PROMPT_BYTES: usize = share::MAX_PROMPT;

/// A failure on its way to the page.
#[derive(Debug)]
pub struct Fail(pub Failure, pub String);

impl Fail {
    fn input(message: impl Into<String>) -> Fail {
        Fail(Failure::Input, message.into())
    }
}

impl From<m2ugen_gpu::Error> for Fail {
    fn from(e: m2ugen_gpu::Error) -> Fail {
        use m2ugen_gpu::Error as E;
        let failure = match &e {
            E::DeviceLost(_) => Failure::DeviceLost,
            E::NoWebGpu | E::NoAdapter { .. } | E::MissingFeature { .. } | E::LimitTooSmall { .. } | E::RequestDevice(_) => Failure::Gpu,
            _ => Failure::Other,
        };
        Fail(failure, e.to_string())
    }
}

impl From<m2ugen_weights::Error> for Fail {
    fn from(e: m2ugen_weights::Error) -> Fail {
        use m2ugen_weights::Error as E;
        let failure = match &e {
            E::Fetch { .. } | E::Interrupted { .. } => Failure::Network,
            E::QuotaFull { .. } | E::Storage(_) => Failure::Storage,
            _ => Failure::Model,
        };
        Fail(failure, e.to_string())
    }
}

impl From<LoadError> for Fail {
    fn from(e: LoadError) -> Fail {
        match e {
            LoadError::Weights(w) => w.into(),
            LoadError::Model(m) => Fail(Failure::Model, m.to_string()),
        }
    }
}

impl From<m2ugen_models::Error> for Fail {
    fn from(e: m2ugen_models::Error) -> Fail {
        Fail(Failure::Other, e.to_string())
    }
}

impl From<GenerateError> for Fail {
    fn from(e: GenerateError) -> Fail {
        match e {
            GenerateError::Request(m) => Fail(Failure::Input, m),
            other => Fail(Failure::Other, other.to_string()),
        }
    }
}

impl From<m2ugen_pipeline::Error> for Fail {
    fn from(e: m2ugen_pipeline::Error) -> Fail {
        use m2ugen_pipeline::Error as E;
        let failure = match &e {
            E::Setting { .. } | E::MusicSetting { .. } | E::Unsupported(_) => Failure::Input,
            _ => Failure::Other,
        };
        Fail(failure, e.to_string())
    }
}

/// What acts at once, while a request is under way: the stop button and the device.
#[derive(Clone, Default)]
pub struct Controls(Rc<RefCell<(Cancel, Option<wgpu::Device>)>>);

impl Controls {
    /// Stops the answer or the music being made.
    pub fn stop(&self) {
        self.0.borrow().0.cancel();
    }

    /// Destroys the GPU device, as a driver reset would (the work under way stops).
    pub fn lose_device(&self) {
        let controls = self.0.borrow();
        controls.0.cancel();
        if let Some(device) = &controls.1 {
            device.destroy();
        }
    }

    fn fresh_cancel(&self) -> Cancel {
        let cancel = Cancel::default();
        self.0.borrow_mut().0 = cancel.clone();
        cancel
    }
}

/// A model loaded from `url`.
struct Loaded {
    url: String,
    manifest: Manifest,
    sha256: [u8; 32],
    abilities: Abilities,
    info: ModelInfo,
    understanding: Option<Understanding>,
    music: Option<MusicModel>,
    /// AudioLDM 2, with CLAP's and T5's tokenizers when the model has its text side.
    audioldm2: Option<(Audioldm2, Option<Audioldm2Tokenizers>)>,
    projector: Option<OutputProjector>,
}

/// AudioLDM 2 loaded to make a shared recipe again, for another model than the one loaded:
/// the model's URL and id, the pipeline, its tokenizers.
type SharedAudioldm2 = (String, String, Audioldm2, Audioldm2Tokenizers);

/// A request's settings, checked for its decoder.
enum DecoderSettings {
    Musicgen(MusicSettings),
    Audioldm2(DiffusionSettings),
}

/// What conditions AudioLDM 2: a text (the prompt, or the LLM's caption) or the output
/// projector's states.
enum Described {
    Text(String),
    States(GpuTensor),
}

/// The engine's state.
pub struct Engine<F: Fetcher> {
    open: Box<dyn Fn(&str) -> F>,
    cache: Option<Box<dyn TensorCache>>,
    in_worker: bool,
    controls: Controls,
    want_f16: bool,
    gpu: Option<Gpu>,
    dtype: DType,
    model: Option<Loaded>,
    /// The attachment's description and values (kept to hear it again after a device loss).
    attachment: Option<(Attachment, Vec<f32>)>,
    features: Vec<(Modality, GpuTensor)>,
    chat: Option<Conversation>,
    /// EnCodec loaded for a share link of another model than the one loaded: `(url, id)`.
    shared: Option<(String, String, EncodecDecoder, usize)>,
    /// AudioLDM 2 loaded for a share link of another model than the one loaded.
    shared_audioldm2: Option<SharedAudioldm2>,
}

/// Where replies go.
pub type Out<'a> = &'a mut dyn FnMut(Envelope<FromEngine>);

fn say(out: Out<'_>, msg: FromEngine) {
    out(Envelope::bare(msg));
}

impl<F: Fetcher> Engine<F> {
    /// An engine reading models through `open(url)`, keeping verified weights in `cache`.
    pub fn new(open: impl Fn(&str) -> F + 'static, cache: Option<Box<dyn TensorCache>>, in_worker: bool, controls: Controls) -> Self {
        Engine { open: Box::new(open), cache, in_worker, controls, want_f16: true, gpu: None, dtype: DType::F32, model: None, attachment: None, features: Vec::new(), chat: None, shared: None, shared_audioldm2: None }
    }

    /// Handles one message; every failure becomes a [`FromEngine::Failed`]. A lost device is
    /// recreated and the model reloaded (from the cache), the attachment heard again.
    pub async fn handle(&mut self, env: Envelope<ToEngine>, out: Out<'_>) {
        let job = match &env.msg {
            ToEngine::Ask { turn, .. } => Some(*turn),
            ToEngine::Generate { job, .. } | ToEngine::OpenShared { job, .. } => Some(*job),
            _ => None,
        };
        let result = self.dispatch(env, out).await;
        // A lost device may show as a failure (a read fails before the browser says the device
        // is lost: waited for), or, where reads on a lost device give zeros, not at all.
        let lost = match &result {
            Err(Fail(Failure::Other | Failure::DeviceLost, _)) => self.device_gone().await,
            _ => self.lost(),
        };
        match result {
            Err(Fail(failure, message)) if failure == Failure::DeviceLost || lost.is_some() => self.report_lost(job, lost.unwrap_or(message), out).await,
            Err(Fail(failure, message)) => say(out, FromEngine::Failed { job, failure, message }),
            Ok(()) => {
                if let Some(message) = lost {
                    self.report_lost(job, message, out).await;
                }
            }
        }
    }

    /// After a failure: whether the device is gone (the browser says it was lost, or it no
    /// longer reads back a number written to it), and why.
    async fn device_gone(&self) -> Option<String> {
        let gpu = self.gpu.as_ref()?;
        if let Some(reason) = gpu.loss_after_failure().await {
            return Some(reason);
        }
        let probe = async {
            let rec = Recorder::new(gpu);
            let t = rec.upload("device probe", &[1], DType::F32, &[1.0])?;
            rec.submit()?;
            gpu.read(&t).await
        };
        match probe.await {
            Ok(v) if v == [1.0] => None,
            Ok(v) => Some(format!("the GPU read back {v:?} for 1.0")),
            Err(e) => Some(format!("the GPU stopped answering: {e}")),
        }
    }

    /// Why the device was lost, if it was.
    fn lost(&self) -> Option<String> {
        self.gpu.as_ref().and_then(Gpu::lost)
    }

    /// Fails with [`Failure::DeviceLost`] when the device was lost (before a result is sent: a
    /// lost device's reads may be zeros).
    fn healthy(&self) -> Result<(), Fail> {
        match self.lost() {
            Some(message) => Err(Fail(Failure::DeviceLost, message)),
            None => Ok(()),
        }
    }

    async fn report_lost(&mut self, job: Option<u32>, message: String, out: Out<'_>) {
        say(out, FromEngine::Failed { job, failure: Failure::DeviceLost, message: format!("The GPU was reset ({message}). Reloading the model from the browser's cache; the conversation stays on the page, and the model starts it afresh.") });
        self.recover(out).await;
    }

    async fn dispatch(&mut self, env: Envelope<ToEngine>, out: Out<'_>) -> Result<(), Fail> {
        match env.msg {
            ToEngine::Start { f16 } => {
                self.want_f16 = f16;
                self.start(out).await
            }
            ToEngine::Load { url } => self.load(&url, out).await,
            ToEngine::Attach(attachment) => {
                let values = env.data.ok_or_else(|| Fail::input(format!("{}: the attachment came without its samples", attachment.name)))?;
                self.attach(attachment, values, out)
            }
            ToEngine::Detach => {
                self.attachment = None;
                self.features.clear();
                self.chat = None;
                Ok(())
            }
            ToEngine::Ask { turn, question, seed, max_tokens } => self.ask(turn, &question, seed, max_tokens, out).await,
            ToEngine::Generate { job, request } => self.generate(job, &request, out).await,
            ToEngine::OpenShared { job, url, link } => self.open_shared(job, &url, &link, out).await,
            ToEngine::Stop => {
                self.controls.stop();
                Ok(())
            }
            ToEngine::LoseDevice => {
                self.controls.lose_device();
                Ok(())
            }
        }
    }

    async fn start(&mut self, out: Out<'_>) -> Result<(), Fail> {
        let f16 = if self.want_f16 { F16Mode::Auto } else { F16Mode::Off };
        let gpu = Gpu::new(GpuOptions { f16, ..Default::default() }).await?;
        self.dtype = if gpu.has_f16() { DType::F16 } else { DType::F32 };
        if self.want_f16 && !gpu.has_f16() {
            say(out, FromEngine::Notice("This GPU has no shader-f16: the models compute in f32 (twice the memory of activations, and slower).".into()));
        }
        say(out, FromEngine::Gpu { description: gpu.describe(), f16: gpu.has_f16(), in_worker: self.in_worker });
        self.controls.0.borrow_mut().1 = Some(gpu.device.clone());
        self.gpu = Some(gpu);
        Ok(())
    }

    fn gpu(&self) -> Result<&Gpu, Fail> {
        self.gpu.as_ref().ok_or_else(|| Fail(Failure::Gpu, "the GPU is not started yet".into()))
    }

    async fn recover(&mut self, out: Out<'_>) {
        self.gpu = None;
        self.chat = None;
        self.features.clear();
        self.shared = None;
        self.shared_audioldm2 = None;
        let url = self.model.take().map(|m| m.url);
        let attachment = self.attachment.take();
        let result = async {
            self.start(out).await?;
            if let Some(url) = url {
                self.load(&url, out).await?;
                if let Some((a, values)) = attachment {
                    self.attach(a, values, out)?;
                }
            }
            Ok::<(), Fail>(())
        }
        .await;
        if let Err(Fail(failure, message)) = result {
            // Not DeviceLost again: that would promise another recovery.
            let failure = if failure == Failure::DeviceLost { Failure::Gpu } else { failure };
            say(out, FromEngine::Failed { job: None, failure, message: format!("The GPU could not be recovered: {message}. Reload the page.") });
        }
    }

    fn options<'a>(&'a self, clock: &'a dyn Fn() -> f64) -> LoadOptions<'a> {
        LoadOptions { in_flight: 4, max_resumes: 3, clock, cache: self.cache.as_deref() }
    }

    async fn load(&mut self, url: &str, out: Out<'_>) -> Result<(), Fail> {
        if self.gpu.is_none() {
            self.start(out).await?;
        }
        // The old model's memory first (and what was heard or decoded with it).
        self.model = None;
        self.chat = None;
        self.features.clear();
        self.attachment = None;
        self.shared = None;
        self.shared_audioldm2 = None;
        let fetcher = (self.open)(url);
        let (manifest, sha256, offline) = load_manifest_with_hash(&fetcher, self.cache.as_deref()).await.map_err(|e| Fail::from(e).named(url))?;
        if offline {
            say(out, FromEngine::Notice(format!("{url} cannot be reached: using the copy of the model kept by this browser.")));
        }
        let gpu = self.gpu()?;
        check_fits(&manifest, self.dtype, gpu.limits.max_buffer_size).map_err(|e| Fail(Failure::Model, format!("{url}: {e}")))?;
        let abilities = Abilities::of(&manifest);
        if !abilities.chat && abilities.decoders.is_empty() {
            return Err(Fail(Failure::Model, format!("{url}: the model '{}' has neither an LLM with its tokenizer nor a music decoder: there is nothing this page can do with it", manifest.model)));
        }
        let clock = m2ugen_gpu::now_ms;
        let options = self.options(&clock);
        let gpu = self.gpu()?;
        let dtype = self.dtype;
        let mut bytes = 0u64;
        let mut progress = |part: &str, e: Event, out: &mut dyn FnMut(Envelope<FromEngine>)| match e {
            Event::Progress(p) => {
                if p.done == p.total {
                    bytes += p.total;
                }
                say(out, FromEngine::Progress { part: part.into(), done: p.done, total: p.total, cached: p.cached, rate: p.rate(), eta_s: p.eta_s() });
            }
            Event::Notice(n) => say(out, FromEngine::Notice(n)),
        };
        let understanding = if abilities.chat {
            Some(load_understanding_of(gpu, dtype, &fetcher, manifest.clone(), MAX_SEQ, &options, |e| progress("language model and encoders", e, out)).await?)
        } else {
            None
        };
        let music = if abilities.has(Decoder::Musicgen) { Some(load_music(gpu, dtype, &fetcher, &manifest, WINDOW_FRAMES + 8, &options, |e| progress("music decoder", e, out)).await?) } else { None };
        let audioldm2 = if abilities.has(Decoder::Audioldm2) { Some(load_audioldm2(gpu, dtype, &fetcher, &manifest, false, &options, |e| progress("AudioLDM 2", e, out)).await?) } else { None };
        let projector = if abilities.decoders.iter().any(|d| abilities.modes_for(*d).contains(&Mode::Embedding)) {
            Some(studio::load_projector(gpu, dtype, &fetcher, &manifest, &options, |e| progress("output projector", e, out)).await?)
        } else {
            None
        };
        let hears = abilities.hears.iter().map(|m| medium_of(*m)).collect();
        let info = ModelInfo {
            id: manifest.model.clone(),
            manifest_sha256: sha256.iter().map(|b| format!("{b:02x}")).collect(),
            kind: format!("{:?}", manifest.kind),
            untrained: manifest.model.contains("untrained"),
            chat: abilities.chat,
            hears,
            music: !abilities.decoders.is_empty(),
            decoders: abilities.decoders.iter().map(|&d| DecoderInfo { name: d.name().into(), title: d.title().into(), modes: abilities.modes_for(d).iter().map(|m| m.name().to_string()).collect() }).collect(),
            video_frames: understanding.as_ref().and_then(|u| u.encoders.video_frames()),
            bytes,
        };
        say(out, FromEngine::Loaded(info.clone()));
        self.model = Some(Loaded { url: url.to_string(), manifest, sha256, abilities, info, understanding, music, audioldm2, projector });
        Ok(())
    }

    fn loaded(&self) -> Result<&Loaded, Fail> {
        self.model.as_ref().ok_or_else(|| Fail::input("no model is loaded yet: load one first"))
    }

    fn attach(&mut self, attachment: Attachment, values: Vec<f32>, out: Out<'_>) -> Result<(), Fail> {
        let gpu = self.gpu()?;
        let m = self.loaded()?;
        let u = m.understanding.as_ref().ok_or_else(|| Fail::input(format!("{}: the model '{}' answers no questions, so it cannot hear an attachment", attachment.name, m.info.id)))?;
        let modality = modality_of(attachment.medium);
        if !u.encoders.has(modality) {
            return Err(Fail::input(format!("{}: the model '{}' has no {} encoder", attachment.name, m.info.id, format!("{modality:?}").to_lowercase())));
        }
        let [frames, channels, height, width] = attachment.shape;
        let planar = || -> Result<Planar, Fail> {
            let filled = frames.checked_mul(channels).and_then(|n| n.checked_mul(height)).and_then(|n| n.checked_mul(width));
            if filled != Some(values.len()) || values.is_empty() {
                return Err(Fail(Failure::Media, format!("{}: {} values do not fill {frames}×{channels}×{height}×{width}", attachment.name, values.len())));
            }
            Ok(Planar { frames, channels, height, width, values: values.clone() })
        };
        let named = |e: m2ugen_models::Error| Fail(Failure::Media, format!("{}: {e}", attachment.name));
        let feature = match attachment.medium {
            Medium::Music => u.encoders.music(gpu, &values).map_err(named)?,
            Medium::Image => u.encoders.image(gpu, &planar()?).map_err(named)?,
            Medium::Video => u.encoders.video(gpu, &planar()?).map_err(named)?,
        };
        self.features = vec![(modality, feature)];
        self.chat = None;
        say(out, FromEngine::Attached { name: attachment.name.clone() });
        self.attachment = Some((attachment, values));
        Ok(())
    }

    /// The conversation about the attachment, begun if there is none.
    fn conversation(&mut self) -> Result<(), Fail> {
        if self.chat.is_none() {
            let gpu = self.gpu.as_ref().ok_or_else(|| Fail(Failure::Gpu, "the GPU is not started yet".into()))?;
            let m = self.model.as_ref().ok_or_else(|| Fail::input("no model is loaded yet"))?;
            let u = m.understanding.as_ref().ok_or_else(|| Fail::input(format!("the model '{}' is MusicGen alone: it makes music from text, and answers no questions", m.info.id)))?;
            self.chat = Some(Conversation::new(gpu, &u.llama, studio::as_media(&self.features), MAX_SEQ)?);
        }
        Ok(())
    }

    async fn ask(&mut self, turn: u32, question: &str, seed: u64, max_tokens: u32, out: Out<'_>) -> Result<(), Fail> {
        check_prompt("question", question)?;
        check_answer_tokens(max_tokens)?;
        self.conversation()?;
        let cancel = self.controls.fresh_cancel();
        let (Some(gpu), Some(m), Some(chat)) = (self.gpu.as_ref(), self.model.as_ref(), self.chat.as_mut()) else { return Err(Fail::input("no model is loaded yet")) };
        let Some(u) = m.understanding.as_ref() else { return Err(Fail::input("this model answers no questions")) };
        let settings = answer_settings(u, max_tokens);
        chat.ask(gpu, &u.llama, &u.tokenizer, question, &settings, seed, &cancel, |t| say(out, FromEngine::Text { turn, delta: t.to_string() })).await?;
        self.healthy()?;
        say(out, FromEngine::Answered { turn, stopped: cancel.is_cancelled() });
        Ok(())
    }

    async fn generate(&mut self, job: u32, request: &MusicRequest, out: Out<'_>) -> Result<(), Fail> {
        let m = self.loaded()?;
        let decoder = match &request.decoder {
            Some(name) => name.parse::<Decoder>().map_err(|_| Fail::input(format!("decoder '{name}': choose musicgen or audioldm2")))?,
            None => m.abilities.default_decoder().ok_or_else(|| Fail::input(format!("the model '{}' has no music decoder: load M2UGen, MusicGen or AudioLDM 2 to make music", m.info.id)))?,
        };
        // The settings first, checked once: a bad one is named whatever the mode.
        let settings = match decoder {
            Decoder::Musicgen => DecoderSettings::Musicgen(music_settings(request)?),
            Decoder::Audioldm2 => DecoderSettings::Audioldm2(diffusion_settings(request)?),
        };
        let mode = match &request.mode {
            Some(name) => name.parse::<Mode>().map_err(|_| Fail::input(format!("mode '{name}': choose caption, embedding or text")))?,
            None => m.abilities.default_mode_for(decoder).ok_or_else(|| Fail::input(studio::mode_problem(&m.manifest, decoder, Mode::Text).unwrap_or_else(|| "this model can make music in no mode".into())))?,
        };
        if let Some(problem) = studio::mode_problem(&m.manifest, decoder, mode) {
            return Err(Fail::input(problem));
        }
        if mode == Mode::Text && self.attachment.is_some() {
            return Err(Fail::input(format!("text mode is {} alone, which hears no attachment: remove the attachment, or choose caption or embedding mode", decoder.title())));
        }
        match settings {
            DecoderSettings::Musicgen(settings) => self.generate_musicgen(job, request, mode, settings, out).await,
            DecoderSettings::Audioldm2(settings) => self.generate_audioldm2(job, request, mode, settings, out).await,
        }
    }

    async fn generate_musicgen(&mut self, job: u32, request: &MusicRequest, mode: Mode, settings: MusicSettings, out: Out<'_>) -> Result<(), Fail> {
        let m = self.loaded()?;
        let music = m.music.as_ref().ok_or_else(|| Fail::input(format!("the model '{}' has no MusicGen", m.info.id)))?;
        let guided = settings.guidance > 1.0;
        // One stop for the whole request: the description and the music.
        let cancel = self.controls.fresh_cancel();
        let cond = if mode == Mode::Text {
            music.text_conditioning(self.gpu()?, &[request.prompt.as_str()], guided)?
        } else {
            // A fresh conversation about the attachment: the same request and seed give the
            // same track; it is not the question-and-answer one, and is dropped however it ends.
            self.chat = None;
            let cond = self.describe_for_musicgen(job, request, mode, guided, &cancel, out).await;
            self.chat = None;
            cond?
        };
        if cancel.is_cancelled() {
            say(out, FromEngine::Stopped { job });
            return Ok(());
        }
        let (gpu, m) = (self.gpu()?, self.loaded()?);
        let Some(music) = m.music.as_ref() else { return Err(Fail::input("no music decoder")) };
        let total = settings.frames;
        let window = WINDOW_FRAMES.min(music.decoder.max_steps() - music.config.decoder.num_codebooks);
        let mut shown = 0usize;
        let codes = generate_long(gpu, &music.decoder, &cond, 1, &settings, window, OVERLAP_FRAMES.min(window / 2).max(1), &cancel, |_, p| {
            // About a hundred updates a track.
            if p.frames == total || p.frames >= shown + total.div_ceil(100) {
                shown = p.frames;
                say(out, FromEngine::Making { job, done: p.frames, total, unit: Unit::Frames });
            }
        })
        .await?;
        let k = music.config.decoder.num_codebooks;
        let frames = codes.len() / k;
        if frames == 0 {
            say(out, FromEngine::Stopped { job });
            return Ok(());
        }
        self.healthy()?;
        let audio = music.decode_audio(gpu, &codes, 1, frames).await?.pop().unwrap_or_default();
        self.healthy()?;
        let track = SharedTrack { model: m.manifest.model.clone(), manifest_sha256: m.sha256, prompt: request.prompt.clone(), codebooks: k, codebook_size: music.config.decoder.vocab_size, codes };
        let info = TrackInfo {
            job,
            rate: music.sampling_rate() as u32,
            prompt: request.prompt.clone(),
            mode: mode.name().into(),
            decoder: Decoder::Musicgen.title().into(),
            seed: request.seed,
            stopped: frames < total,
            share: share::link(&track).map_err(|e| e.to_string()),
        };
        out(Envelope { msg: FromEngine::Track(info), data: Some(audio) });
        Ok(())
    }

    /// Caption and embedding modes: the LLM answers the request about the attachment in a fresh
    /// conversation (streamed as the job's text); the answer's text.
    async fn answer_request(&mut self, job: u32, request: &MusicRequest, cancel: &Cancel, out: Out<'_>) -> Result<String, Fail> {
        self.conversation()?;
        let (Some(gpu), Some(m), Some(chat)) = (self.gpu.as_ref(), self.model.as_ref(), self.chat.as_mut()) else { return Err(Fail::input("no model is loaded yet")) };
        let Some(u) = m.understanding.as_ref() else { return Err(Fail::input("this model answers no questions")) };
        let answer = chat.ask(gpu, &u.llama, &u.tokenizer, &request.prompt, &answer_settings(u, request.answer_tokens), request.seed, cancel, |t| say(out, FromEngine::Text { turn: job, delta: t.to_string() })).await?;
        Ok(answer.text)
    }

    /// The LLM's `[AUD]` states of the conversation just answered, through the output projector.
    fn projector_states(&mut self) -> Result<GpuTensor, Fail> {
        let (Some(gpu), Some(m), Some(chat)) = (self.gpu.as_ref(), self.model.as_ref(), self.chat.as_mut()) else { return Err(Fail::input("no model is loaded yet")) };
        let Some(u) = m.understanding.as_ref() else { return Err(Fail::input("this model answers no questions")) };
        let aud = u.tokenizer.aud_tokens().map_err(|e| Fail(Failure::Model, e.to_string()))?;
        Ok(studio::projector_states(gpu, chat, &u.llama, &aud, m.projector.as_ref())?)
    }

    /// MusicGen's caption and embedding modes: the LLM's answer or its `[AUD]` states condition
    /// the decoder.
    async fn describe_for_musicgen(&mut self, job: u32, request: &MusicRequest, mode: Mode, guided: bool, cancel: &Cancel, out: Out<'_>) -> Result<m2ugen_models::musicgen::Conditioning, Fail> {
        let text = self.answer_request(job, request, cancel, out).await?;
        let (Some(gpu), Some(m), Some(chat)) = (self.gpu.as_ref(), self.model.as_ref(), self.chat.as_mut()) else { return Err(Fail::input("no model is loaded yet")) };
        let (Some(u), Some(music)) = (m.understanding.as_ref(), m.music.as_ref()) else { return Err(Fail::input("this model cannot do that")) };
        let aud = u.tokenizer.aud_tokens().map_err(|e| Fail(Failure::Model, e.to_string()))?;
        Ok(studio::conditioning_after_answer(gpu, music, mode, &text, chat, &u.llama, &aud, m.projector.as_ref(), 1, guided)?)
    }

    /// AudioLDM 2: text mode on the prompt; caption mode on the LLM's answer (without its
    /// `[AUD]` tokens); embedding mode on the output projector's states. One waveform, its
    /// progress a message per denoising step; the share link is the recipe that makes it again
    /// (not for embedding mode, whose states a link cannot carry).
    async fn generate_audioldm2(&mut self, job: u32, request: &MusicRequest, mode: Mode, settings: DiffusionSettings, out: Out<'_>) -> Result<(), Fail> {
        let cancel = self.controls.fresh_cancel();
        let described = match mode {
            Mode::Text => Described::Text(request.prompt.clone()),
            _ => {
                // A fresh conversation, dropped however it ends (as for MusicGen).
                self.chat = None;
                let described = match self.answer_request(job, request, &cancel, out).await {
                    Ok(_) if cancel.is_cancelled() => Ok(None),
                    Ok(text) if mode == Mode::Caption => Ok(Some(Described::Text(studio::strip_aud(&text)))),
                    Ok(_) => self.projector_states().map(|s| Some(Described::States(s))),
                    Err(e) => Err(e),
                };
                self.chat = None;
                match described? {
                    Some(d) => d,
                    None => {
                        say(out, FromEngine::Stopped { job });
                        return Ok(());
                    }
                }
            }
        };
        let (gpu, m) = (self.gpu()?, self.loaded()?);
        let Some((model, tokenizers)) = m.audioldm2.as_ref() else { return Err(Fail::input(format!("the model '{}' has no AudioLDM 2", m.info.id))) };
        let on_step = |done: usize, total: usize| say(out, FromEngine::Making { job, done, total, unit: Unit::Steps });
        let made = match &described {
            Described::Text(text) => {
                let tokenizers = tokenizers.as_ref().ok_or_else(|| Fail(Failure::Model, format!("the model '{}' has no AudioLDM 2 tokenizers", m.info.id)))?;
                let request = Audioldm2Request { prompt: text.clone(), negative: request.negative.clone(), settings };
                make_audioldm2(gpu, model, tokenizers, &request, on_step, Some(&cancel)).await
            }
            Described::States(states) => make_audioldm2_embedding(gpu, model, tokenizers.as_ref(), states, &request.negative, &settings, on_step, Some(&cancel)).await,
        };
        if cancel.is_cancelled() {
            // Diffusion has no partial track.
            say(out, FromEngine::Stopped { job });
            return Ok(());
        }
        let audio = made?.into_iter().next().unwrap_or_default();
        self.healthy()?;
        let share = match described {
            Described::Text(conditioning) => {
                let recipe = SharedRecipe {
                    model: m.manifest.model.clone(),
                    manifest_sha256: m.sha256,
                    prompt: request.prompt.clone(),
                    conditioning,
                    negative: request.negative.clone(),
                    seed: settings.seed,
                    steps: settings.steps,
                    guidance: settings.guidance,
                    seconds: settings.seconds,
                    waveforms: 1,
                    index: 0,
                };
                share::recipe_link(&recipe).map_err(|e| e.to_string())
            }
            Described::States(_) => Err("embedding mode's conditioning is the LLM's hidden states in this conversation, which a link cannot carry: make the track in caption or text mode to share it".into()),
        };
        let info = TrackInfo { job, rate: model.sampling_rate() as u32, prompt: request.prompt.clone(), mode: mode.name().into(), decoder: Decoder::Audioldm2.title().into(), seed: request.seed, stopped: false, share };
        out(Envelope { msg: FromEngine::Track(info), data: Some(audio) });
        Ok(())
    }

    async fn open_shared(&mut self, job: u32, url: &str, link: &str, out: Out<'_>) -> Result<(), Fail> {
        let shared = share::parse_any(link).map_err(|e| Fail(Failure::Link, e.to_string()))?;
        if self.gpu.is_none() {
            self.start(out).await?;
        }
        let fetcher = (self.open)(url);
        let (manifest, sha256, _) = load_manifest_with_hash(&fetcher, self.cache.as_deref()).await.map_err(|e| Fail::from(e).named(url))?;
        let (model, made_with) = match &shared {
            Shared::Codes(t) => (&t.model, t.manifest_sha256),
            Shared::Recipe(r) => (&r.model, r.manifest_sha256),
        };
        if *model != manifest.model || made_with != sha256 {
            return Err(Fail(
                Failure::Link,
                format!("this track was made with the model '{model}', and the model at {url} is '{}'{}: open the link with ?model= set to the model it was made with", manifest.model, if *model == manifest.model { " with other weights" } else { "" }),
            ));
        }
        match shared {
            Shared::Codes(track) => self.open_codes(job, url, &fetcher, &manifest, sha256, track, out).await,
            Shared::Recipe(recipe) => self.open_recipe(job, url, &fetcher, &manifest, sha256, recipe, out).await,
        }
    }

    /// A MusicGen track's codes, decoded with the loaded model's EnCodec or EnCodec alone.
    #[allow(clippy::too_many_arguments)]
    async fn open_codes(&mut self, job: u32, url: &str, fetcher: &F, manifest: &Manifest, sha256: [u8; 32], track: SharedTrack, out: Out<'_>) -> Result<(), Fail> {
        let config = m2ugen_pipeline::load::musicgen_config(manifest)?;
        if track.codebooks != config.decoder.num_codebooks || track.codes.iter().any(|&c| c as usize >= config.decoder.vocab_size) {
            return Err(Fail(Failure::Link, format!("this share link's codes ({} codebooks) do not fit the model '{}' ({} codebooks of {} codes)", track.codebooks, manifest.model, config.decoder.num_codebooks, config.decoder.vocab_size)));
        }
        let same_model = self.model.as_ref().is_some_and(|m| m.sha256 == sha256 && m.music.is_some());
        if !same_model && !self.shared.as_ref().is_some_and(|s| s.0 == url && s.1 == manifest.model) {
            let clock = m2ugen_gpu::now_ms;
            let options = self.options(&clock);
            let (decoder, rate) = studio::load_encodec(self.gpu()?, self.dtype, fetcher, manifest, &options, |e| match e {
                Event::Progress(p) => say(out, FromEngine::Progress { part: "EnCodec (to play the shared track)".into(), done: p.done, total: p.total, cached: p.cached, rate: p.rate(), eta_s: p.eta_s() }),
                Event::Notice(n) => say(out, FromEngine::Notice(n)),
            })
            .await?;
            self.shared = Some((url.to_string(), manifest.model.clone(), decoder, rate));
        }
        let (decoder, rate) = match (&self.model, &self.shared) {
            (Some(m), _) if same_model => {
                let music = m.music.as_ref().ok_or_else(|| Fail::input("no music decoder"))?;
                (&music.encodec, music.sampling_rate())
            }
            (_, Some((_, _, d, r))) => (d, *r),
            _ => return Err(Fail(Failure::Other, "EnCodec is not loaded".into())),
        };
        let gpu = self.gpu()?;
        let frames = track.frames();
        let mut rec = Recorder::new(gpu);
        let audio = decoder.decode(&mut rec, &track.codes, 1, frames)?;
        rec.submit()?;
        let samples = gpu.read(&audio).await?;
        self.healthy()?;
        let info = TrackInfo { job, rate: rate as u32, prompt: track.prompt.clone(), mode: "shared".into(), decoder: Decoder::Musicgen.title().into(), seed: 0, stopped: false, share: share::link(&track).map_err(|e| e.to_string()) };
        out(Envelope { msg: FromEngine::Track(info), data: Some(samples) });
        Ok(())
    }

    /// An AudioLDM 2 recipe made again: with the loaded model's AudioLDM 2 when it is the
    /// recipe's, else with AudioLDM 2 alone loaded from `url` (its text side and tokenizers;
    /// not the LLM). Every waveform of the recipe is made, as its noise is drawn for all of them,
    /// and the one it names returned.
    #[allow(clippy::too_many_arguments)]
    async fn open_recipe(&mut self, job: u32, url: &str, fetcher: &F, manifest: &Manifest, sha256: [u8; 32], recipe: SharedRecipe, out: Out<'_>) -> Result<(), Fail> {
        if let Some(problem) = studio::mode_problem(manifest, Decoder::Audioldm2, Mode::Text) {
            return Err(Fail(Failure::Link, format!("this share link is an AudioLDM 2 recipe, and the model '{}' cannot make it again: {problem}", manifest.model)));
        }
        let settings = DiffusionSettings { seconds: recipe.seconds, steps: recipe.steps, guidance: recipe.guidance, seed: recipe.seed, waveforms: recipe.waveforms };
        settings.check().map_err(|e| Fail(Failure::Link, format!("this share link is damaged: {e}")))?;
        let same_model = self.model.as_ref().is_some_and(|m| m.sha256 == sha256 && m.audioldm2.as_ref().is_some_and(|(_, t)| t.is_some()));
        if !same_model && !self.shared_audioldm2.as_ref().is_some_and(|s| s.0 == url && s.1 == manifest.model) {
            self.shared_audioldm2 = None;
            let clock = m2ugen_gpu::now_ms;
            let options = self.options(&clock);
            let (model, tokenizers) = load_audioldm2(self.gpu()?, self.dtype, fetcher, manifest, false, &options, |e| match e {
                Event::Progress(p) => say(out, FromEngine::Progress { part: "AudioLDM 2 (to make the shared track again)".into(), done: p.done, total: p.total, cached: p.cached, rate: p.rate(), eta_s: p.eta_s() }),
                Event::Notice(n) => say(out, FromEngine::Notice(n)),
            })
            .await?;
            let tokenizers = tokenizers.ok_or_else(|| Fail(Failure::Model, format!("{url}: AudioLDM 2's tokenizers did not load")))?;
            self.shared_audioldm2 = Some((url.to_string(), manifest.model.clone(), model, tokenizers));
        }
        let (model, tokenizers) = match (&self.model, &self.shared_audioldm2) {
            (Some(Loaded { audioldm2: Some((model, Some(tokenizers))), .. }), _) if same_model => (model, tokenizers),
            (_, Some((_, _, model, tokenizers))) => (model, tokenizers),
            _ => return Err(Fail(Failure::Other, "AudioLDM 2 is not loaded".into())),
        };
        let cancel = self.controls.fresh_cancel();
        let gpu = self.gpu()?;
        let request = Audioldm2Request { prompt: recipe.conditioning.clone(), negative: recipe.negative.clone(), settings };
        let made = make_audioldm2(gpu, model, tokenizers, &request, |done, total| say(out, FromEngine::Making { job, done, total, unit: Unit::Steps }), Some(&cancel)).await;
        if cancel.is_cancelled() {
            say(out, FromEngine::Stopped { job });
            return Ok(());
        }
        let audio = made?.into_iter().nth(recipe.index).ok_or_else(|| Fail(Failure::Link, format!("this share link names waveform {} of {}", recipe.index + 1, recipe.waveforms)))?;
        self.healthy()?;
        let info = TrackInfo { job, rate: model.sampling_rate() as u32, prompt: recipe.prompt.clone(), mode: "shared".into(), decoder: Decoder::Audioldm2.title().into(), seed: recipe.seed, stopped: false, share: share::recipe_link(&recipe).map_err(|e| e.to_string()) };
        out(Envelope { msg: FromEngine::Track(info), data: Some(audio) });
        Ok(())
    }
}

impl Fail {
    /// The message prefixed by where it happened (a model's URL), unless it names it already.
    fn named(self, url: &str) -> Fail {
        if self.1.contains(url) { self } else { Fail(self.0, format!("{url}: {}", self.1)) }
    }
}

/// Whether every tensor of `manifest` fits one GPU buffer of at most `max_buffer` bytes once
/// uploaded (floats in `dtype`, quantized weights as stored); the error names the largest that
/// does not, and the limit.
pub fn check_fits(manifest: &Manifest, dtype: DType, max_buffer: u64) -> Result<(), String> {
    use m2ugen_weights::StoredType;
    let uploaded = |t: &m2ugen_weights::TensorEntry| match t.dtype {
        StoredType::F32 | StoredType::F16 => t.shape.iter().map(|&d| d as u64).product::<u64>().saturating_mul(dtype.size() as u64),
        _ => t.bytes,
    };
    match manifest.tensors.iter().map(|t| (uploaded(t), t)).filter(|(b, _)| *b > max_buffer).max_by_key(|(b, _)| *b) {
        Some((bytes, t)) => Err(format!(
            "this GPU's buffers are too small for the model '{}': its tensor '{}' needs {} in one buffer, and the GPU allows {} (maxBufferSize); use a quantized conversion (--quant q4) or a GPU with more memory",
            manifest.model,
            t.name,
            crate::display::format_bytes(bytes),
            crate::display::format_bytes(max_buffer)
        )),
        None => Ok(()),
    }
}

/// How answers are sampled: greedy, as the reference's captions, stopping at `</s>` or the
/// next `###` turn.
fn answer_settings(u: &Understanding, max_tokens: u32) -> Settings {
    Settings { sampling: Sampling::Greedy, max_new_tokens: max_tokens as usize, eos: u.tokenizer.token_id("</s>"), stop_texts: vec!["\n###".into()] }
}

fn check_prompt(what: &str, text: &str) -> Result<(), Fail> {
    if text.trim().is_empty() {
        return Err(Fail::input(format!("the {what} is empty: write something first")));
    }
    if text.len() > MAX_PROMPT_BYTES {
        return Err(Fail::input(format!("the {what} is {} bytes long; the limit is {MAX_PROMPT_BYTES}", text.len())));
    }
    Ok(())
}

fn check_answer_tokens(n: u32) -> Result<(), Fail> {
    if (1..=MAX_ANSWER_TOKENS).contains(&n) { Ok(()) } else { Err(Fail::input(format!("answer length {n}: give 1 to {MAX_ANSWER_TOKENS} tokens"))) }
}

/// A request's settings checked for `decoder`, each named when out of range.
pub fn check_request(r: &MusicRequest, decoder: Decoder) -> Result<(), Fail> {
    match decoder {
        Decoder::Musicgen => music_settings(r).map(drop),
        Decoder::Audioldm2 => diffusion_settings(r).map(drop),
    }
}

/// AudioLDM 2's settings of a request (one waveform), each checked and named when out of range.
pub fn diffusion_settings(r: &MusicRequest) -> Result<DiffusionSettings, Fail> {
    check_prompt("music prompt", &r.prompt)?;
    check_answer_tokens(r.answer_tokens)?;
    if !(r.seconds > 0.0 && r.seconds <= MAX_DIFFUSION_SECONDS) {
        return Err(Fail::input(format!("length {} s: give a length above 0 and at most {MAX_DIFFUSION_SECONDS} s with AudioLDM 2", r.seconds)));
    }
    if !(r.guidance.is_finite() && (0.0..=30.0).contains(&r.guidance)) {
        return Err(Fail::input(format!("guidance {}: give a scale from 0 to 30 (1 turns guidance off)", r.guidance)));
    }
    let most = m2ugen_pipeline::diffusion::MAX_STEPS;
    if r.steps == 0 || r.steps as usize > most {
        return Err(Fail::input(format!("steps {}: give 1 to {most} denoising steps", r.steps)));
    }
    if r.negative.len() > MAX_PROMPT_BYTES {
        return Err(Fail::input(format!("the negative prompt is {} bytes long; the limit is {MAX_PROMPT_BYTES}", r.negative.len())));
    }
    let settings = DiffusionSettings { seconds: r.seconds, steps: r.steps as usize, guidance: r.guidance, seed: r.seed, waveforms: 1 };
    settings.check()?;
    Ok(settings)
}

/// MusicGen's settings of a request, each checked and named when out of range.
pub fn music_settings(r: &MusicRequest) -> Result<MusicSettings, Fail> {
    check_prompt("music prompt", &r.prompt)?;
    check_answer_tokens(r.answer_tokens)?;
    if !(r.seconds > 0.0 && r.seconds <= MAX_SECONDS) {
        return Err(Fail::input(format!("length {} s: give a length above 0 and at most {MAX_SECONDS} s", r.seconds)));
    }
    if !(r.guidance.is_finite() && r.guidance >= 0.0) {
        return Err(Fail::input(format!("guidance {}: give a scale of 0 or more (1 turns guidance off)", r.guidance)));
    }
    if !(r.temperature.is_finite() && r.temperature >= 0.0) {
        return Err(Fail::input(format!("temperature {}: give 0 (greedy) or more", r.temperature)));
    }
    let sampling = if r.temperature == 0.0 { Sampling::Greedy } else { Sampling::Sample { temperature: r.temperature, top_k: (r.top_k > 0).then_some(r.top_k as usize), top_p: None } };
    let frames = ((r.seconds * FRAME_RATE as f32).round() as usize).max(1);
    Ok(MusicSettings { frames, guidance: r.guidance, sampling, seed: r.seed })
}

fn modality_of(m: Medium) -> Modality {
    match m {
        Medium::Music => Modality::Music,
        Medium::Image => Modality::Image,
        Medium::Video => Modality::Video,
    }
}

fn medium_of(m: Modality) -> Medium {
    match m {
        Modality::Music => Medium::Music,
        Modality::Image => Medium::Image,
        Modality::Video => Medium::Video,
    }
}
