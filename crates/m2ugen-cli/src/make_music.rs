//! `m2ugen generate`: music from a prompt (and music, an image or a video) through M2UGen's LLM
//! and a music decoder (MusicGen or AudioLDM 2), or through a decoder alone, written as WAV.
//!
//! The decoder is the model's only one, or MusicGen when it has both (`--decoder` chooses).
//! The conditioning mode says how the decoder hears the request: `caption` (the LLM's answer
//! through the decoder's text side; the default for a model with an LLM), `embedding` (the
//! output projector's states) or `text` (the prompt alone, no LLM; the default for a decoder
//! alone). MusicGen samples codes (`--tracks`, `--music-*`); AudioLDM 2 denoises (`--steps`,
//! `--negative-prompt`, `--waveforms`) and writes 16 kHz audio. Settings, and whether the model
//! can do the decoder and mode asked, are checked before anything loads: a bad one is one line
//! and exit code 2.

use crate::understand::{input, ModelMedia, SamplingArgs};
use m2ugen_core::DType;
use m2ugen_gpu::Gpu;
use m2ugen_media::Limits;
use m2ugen_pipeline::audioldm2::{clap_audio_support, clap_scores, make_audioldm2, make_audioldm2_embedding, ranked, Audioldm2Request, DiffusionSettings, DEFAULT_NEGATIVE};
use m2ugen_pipeline::chat::Conversation;
use m2ugen_pipeline::generate::Cancel;
use m2ugen_pipeline::load::Understanding;
use m2ugen_pipeline::music::{generate_long, Mode, MusicProgress, MusicSettings, FRAME_RATE};
use m2ugen_pipeline::studio::{as_media, conditioning_after_answer, load_projector, mode_problem, projector_states, strip_aud, Abilities, Decoder};
use m2ugen_pipeline::Sampling;
use m2ugen_weights::loader::{load_manifest, LoadOptions};
use m2ugen_weights::native::DirFetcher;
use m2ugen_weights::Manifest;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Longest track, in seconds (MusicGen; AudioLDM 2 makes at most
/// [`m2ugen_pipeline::audioldm2::MAX_SECONDS`]).
pub const MAX_SECONDS: f32 = 300.0;
/// Frames MusicGen generates at once (its 30-second training length).
pub const WINDOW_FRAMES: usize = 30 * FRAME_RATE;
/// Frames of the track so far that prompt each further window (audiocraft's 12 s: windows
/// advance by 18 s).
pub const OVERLAP_FRAMES: usize = 12 * FRAME_RATE;
/// Most tracks at once.
pub const MAX_TRACKS: u32 = 8;
/// AudioLDM 2's denoising steps when none are given (the reference's).
pub const AUDIOLDM2_STEPS: u32 = 200;

/// `m2ugen generate`.
#[derive(clap::Args)]
pub struct GenerateArgs {
    /// The model (with a music decoder: M2UGen, or MusicGen or AudioLDM 2 alone) and the media
    /// the request is about (an image or a video to make music for; music to edit, through MERT).
    #[command(flatten)]
    pub input: ModelMedia,
    /// The music decoder: musicgen or audioldm2 (default: the model's only one; MusicGen when it
    /// has both).
    #[arg(long)]
    pub decoder: Option<String>,
    /// How the decoder is conditioned: caption, embedding or text (default: caption for a model
    /// with an LLM, text for a decoder alone).
    #[arg(long)]
    pub mode: Option<String>,
    /// Length of the track in seconds (MusicGen: past 30 s it is made in windows; AudioLDM 2:
    /// at most 60 s).
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f32,
    /// Classifier-free guidance scale; 1 turns it off (default: 3 for MusicGen, 3.5 for
    /// AudioLDM 2).
    #[arg(long)]
    pub guidance: Option<f32>,
    /// MusicGen's sampling: keep this many most likely codes (0: all).
    #[arg(long, default_value_t = 250)]
    pub music_top_k: u32,
    /// MusicGen's sampling temperature; 0 is greedy.
    #[arg(long, default_value_t = 1.0)]
    pub music_temperature: f32,
    /// MusicGen's sampling: keep the most likely codes up to this probability.
    #[arg(long, default_value_t = 1.0)]
    pub music_top_p: f32,
    /// MusicGen: tracks made at once (the same request, different draws): out.wav, out-2.wav, ...
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=MAX_TRACKS as i64))]
    pub tracks: u32,
    /// AudioLDM 2: denoising steps, 1 to 1000 (default 200, the reference's).
    #[arg(long)]
    pub steps: Option<u32>,
    /// AudioLDM 2: the negative prompt of guidance (default "Low quality.", the reference's).
    #[arg(long)]
    pub negative_prompt: Option<String>,
    /// AudioLDM 2: waveforms made from the request, each from its own noise, best first by
    /// CLAP's audio-text score when the model has CLAP's audio branch (else in the order of
    /// their noise): out.wav, out-2.wav, ... (default 1, at most 8).
    #[arg(long)]
    pub waveforms: Option<u32>,
    /// The output WAV file.
    #[arg(short, long)]
    pub output: PathBuf,
    /// The request.
    pub prompt: String,
    /// How the LLM's answer is sampled (greedy by default), and the seed of every draw (the
    /// music's, or AudioLDM 2's initial noise, too).
    #[command(flatten)]
    pub answer: SamplingArgs,
}

impl GenerateArgs {
    /// MusicGen's settings, checked (before anything loads); AudioLDM 2's options refused.
    fn settings(&self) -> anyhow::Result<MusicSettings> {
        for (given, option) in [(self.steps.is_some(), "--steps"), (self.negative_prompt.is_some(), "--negative-prompt"), (self.waveforms.is_some(), "--waveforms")] {
            if given {
                return Err(input(format!("{option} is AudioLDM 2's, and this request uses MusicGen: give --decoder audioldm2 (with a model that has it), or leave {option} out")));
            }
        }
        if !(self.seconds > 0.0 && self.seconds <= MAX_SECONDS) {
            return Err(input(format!("--seconds {}: give a length above 0 and at most {MAX_SECONDS} s", self.seconds)));
        }
        let guidance = self.guidance.unwrap_or(Decoder::Musicgen.default_guidance());
        if !(guidance.is_finite() && guidance >= 0.0) {
            return Err(input(format!("--guidance {guidance}: give a scale of 0 or more (1 turns guidance off)")));
        }
        if !(self.music_temperature.is_finite() && self.music_temperature >= 0.0) {
            return Err(input(format!("--music-temperature {}: give 0 (greedy) or more", self.music_temperature)));
        }
        if !(self.music_top_p > 0.0 && self.music_top_p <= 1.0) {
            return Err(input(format!("--music-top-p {}: give a share of probability above 0 and at most 1", self.music_top_p)));
        }
        let sampling = if self.music_temperature == 0.0 {
            Sampling::Greedy
        } else {
            Sampling::Sample { temperature: self.music_temperature, top_k: (self.music_top_k > 0).then_some(self.music_top_k as usize), top_p: (self.music_top_p < 1.0).then_some(self.music_top_p) }
        };
        sampling.validate().map_err(input)?;
        let frames = ((self.seconds * FRAME_RATE as f32).round() as usize).max(1);
        Ok(MusicSettings { frames, guidance, sampling, seed: self.answer.seed })
    }

    /// AudioLDM 2's settings, checked (before anything loads); MusicGen's `--tracks` refused.
    fn diffusion_settings(&self) -> anyhow::Result<DiffusionSettings> {
        use m2ugen_pipeline::audioldm2::{MAX_SECONDS, MAX_WAVEFORMS};
        if self.tracks > 1 {
            return Err(input("--tracks is MusicGen's: give --waveforms for several AudioLDM 2 waveforms"));
        }
        if !(self.seconds > 0.0 && self.seconds <= MAX_SECONDS) {
            return Err(input(format!("--seconds {}: give a length above 0 and at most {MAX_SECONDS} s (AudioLDM 2)", self.seconds)));
        }
        let guidance = self.guidance.unwrap_or(Decoder::Audioldm2.default_guidance());
        if !(guidance.is_finite() && (0.0..=30.0).contains(&guidance)) {
            return Err(input(format!("--guidance {guidance}: give a scale of 0 or more, at most 30 for AudioLDM 2 (1 turns guidance off)")));
        }
        let steps = self.steps.unwrap_or(AUDIOLDM2_STEPS) as usize;
        if steps == 0 || steps > m2ugen_pipeline::diffusion::MAX_STEPS {
            return Err(input(format!("--steps {steps}: give 1 to {} denoising steps", m2ugen_pipeline::diffusion::MAX_STEPS)));
        }
        let waveforms = self.waveforms.unwrap_or(1) as usize;
        if waveforms == 0 || waveforms > MAX_WAVEFORMS {
            return Err(input(format!("--waveforms {waveforms}: give 1 to {MAX_WAVEFORMS}")));
        }
        let settings = DiffusionSettings { seconds: self.seconds, steps, guidance, seed: self.answer.seed, waveforms };
        settings.check().map_err(input)?;
        Ok(settings)
    }

    fn output_path(&self, track: usize) -> PathBuf {
        if track == 0 {
            return self.output.clone();
        }
        let stem = self.output.file_stem().and_then(|s| s.to_str()).unwrap_or("track");
        let ext = self.output.extension().and_then(|s| s.to_str()).unwrap_or("wav");
        self.output.with_file_name(format!("{stem}-{}.{ext}", track + 1))
    }

    fn model_error(&self, e: impl std::fmt::Display) -> anyhow::Error {
        input(format!("{}: {e}", self.input.model.display()))
    }
}

/// Prints progress to stderr: steps, seconds of audio done, time left; at most twice a second.
struct Progress {
    started: std::time::Instant,
    shown: f64,
    live: bool,
}

impl Progress {
    fn new() -> Self {
        Progress { started: std::time::Instant::now(), shown: f64::NEG_INFINITY, live: std::io::IsTerminal::is_terminal(&std::io::stderr()) }
    }

    fn show(&mut self, p: MusicProgress, frames: usize, total: usize) {
        let elapsed = self.started.elapsed().as_secs_f64();
        let done = frames == total;
        if !done && elapsed - self.shown < 0.5 {
            return;
        }
        self.shown = elapsed;
        let left = if frames > 0 { elapsed * (total - frames) as f64 / frames as f64 } else { f64::NAN };
        let line = format!("music: {:.1} of {:.1} s of audio (window step {}/{}), {:.0} s left", frames as f64 / FRAME_RATE as f64, total as f64 / FRAME_RATE as f64, p.step, p.steps, left.max(0.0));
        if self.live {
            eprint!("\r{line}   ");
            if done {
                eprintln!();
            }
        } else if done || frames.is_multiple_of(FRAME_RATE) {
            eprintln!("{line}");
        }
    }
}

/// Prints a diffusion's progress to stderr: a line per denoising step (rewritten in place on a
/// terminal), with the time left.
struct StepProgress {
    started: std::time::Instant,
    live: bool,
}

impl StepProgress {
    fn new() -> Self {
        StepProgress { started: std::time::Instant::now(), live: std::io::IsTerminal::is_terminal(&std::io::stderr()) }
    }

    fn show(&mut self, done: usize, of: usize) {
        let elapsed = self.started.elapsed().as_secs_f64();
        let left = elapsed * (of - done.min(of)) as f64 / done.max(1) as f64;
        let line = format!("audioldm2: step {done}/{of}, {left:.0} s left");
        if self.live {
            eprint!("\r{line}   ");
            if done == of {
                eprintln!();
            }
        } else {
            eprintln!("{line}");
        }
    }
}

pub async fn run(args: GenerateArgs) -> anyhow::Result<()> {
    let decoder = args.decoder.as_deref().map(|d| d.parse::<Decoder>().map_err(|_| input(format!("--decoder {d}: give musicgen or audioldm2")))).transpose()?;
    let mode = args.mode.as_deref().map(|m| m.parse::<Mode>().map_err(|_| input(format!("--mode {m}: give caption, embedding or text")))).transpose()?;
    let fetcher = DirFetcher(args.input.model.clone());
    let manifest = load_manifest(&fetcher).await.map_err(|e| args.model_error(e))?;
    let abilities = Abilities::of(&manifest);
    let Some(decoder) = decoder.or(abilities.default_decoder()) else {
        return Err(args.model_error(format!("the model '{}' has no music decoder (convert MusicGen into it with --hf musicgen=DIR, or AudioLDM 2 with --diffusers audioldm2=DIR)", manifest.model)));
    };
    let has_llm = manifest.components.contains_key("llama");
    let mode = mode.or(abilities.default_mode_for(decoder)).unwrap_or(if has_llm { Mode::Caption } else { Mode::Text });
    // The settings first: a bad one is named whatever the model.
    let settings = match decoder {
        Decoder::Musicgen => Settings::Musicgen(args.settings()?),
        Decoder::Audioldm2 => Settings::Audioldm2(args.diffusion_settings()?),
    };
    if abilities.has(decoder) && mode != Mode::Text && !has_llm {
        return Err(args.model_error(format!("--mode {} needs an LLM, and this model is {} alone: use --mode text", mode.name(), decoder.title())));
    }
    if mode == Mode::Text && args.input.any() {
        return Err(input(format!("--mode text is {} alone, which hears no media: use --mode caption or embedding with --music, --image or --video", decoder.title())));
    }
    if let Some(problem) = mode_problem(&manifest, decoder, mode) {
        return Err(args.model_error(format!("--decoder {} --mode {}: {problem}", decoder.name(), mode.name())));
    }
    let f16 = if args.answer.f16 { m2ugen_gpu::F16Mode::Require } else { m2ugen_gpu::F16Mode::Auto };
    let gpu = Gpu::new(m2ugen_gpu::GpuOptions { f16, ..Default::default() }).await?;
    let dtype = if args.answer.f16 { DType::F16 } else { DType::F32 };
    match settings {
        Settings::Musicgen(settings) => musicgen(&gpu, &args, &manifest, mode, dtype, settings).await,
        Settings::Audioldm2(settings) => audioldm2(&gpu, &args, &manifest, mode, dtype, settings).await,
    }
}

/// The chosen decoder's settings.
enum Settings {
    Musicgen(MusicSettings),
    Audioldm2(DiffusionSettings),
}

/// `generate` with MusicGen: codes in windows, EnCodec, one WAV per track at 32 kHz.
async fn musicgen(gpu: &Gpu, args: &GenerateArgs, manifest: &Manifest, mode: Mode, dtype: DType, settings: MusicSettings) -> anyhow::Result<()> {
    let fetcher = DirFetcher(args.input.model.clone());
    let clock = m2ugen_gpu::now_ms;
    let options = LoadOptions { in_flight: 4, max_resumes: 3, clock: &clock, cache: None };
    let music = m2ugen_pipeline::load::load_music(gpu, dtype, &fetcher, manifest, WINDOW_FRAMES + 8, &options, |_| {}).await.map_err(|e| args.model_error(e))?;
    let tracks = args.tracks as usize;
    let guided = settings.guidance > 1.0;
    let cond = match mode {
        Mode::Text => {
            let prompts = vec![args.prompt.as_str(); tracks];
            music.text_conditioning(gpu, &prompts, guided).map_err(music_error)?
        }
        Mode::Caption | Mode::Embedding => {
            let mut answered = ask_llm(gpu, args, dtype).await?;
            let projector = match mode {
                Mode::Embedding => Some(load_projector(gpu, dtype, &fetcher, &answered.u.manifest, &options, |_| {}).await.map_err(|e| args.model_error(e))?),
                _ => None,
            };
            let a = &mut answered;
            conditioning_after_answer(gpu, &music, mode, &a.text, &mut a.chat, &a.u.llama, &a.aud, projector.as_ref(), tracks, guided).map_err(music_error)?
        }
    };
    let cancel = Cancel::default();
    let mut progress = Progress::new();
    let total = settings.frames;
    let k = music.config.decoder.num_codebooks;
    let window = WINDOW_FRAMES.min(music.decoder.max_steps() - k);
    let codes = generate_long(gpu, &music.decoder, &cond, tracks, &settings, window, OVERLAP_FRAMES.min(window / 2).max(1), &cancel, |_, p| progress.show(p, p.frames, total)).await.map_err(music_error)?;
    let frames = codes.len() / (tracks * k);
    let audio = music.decode_audio(gpu, &codes, tracks, frames).await.map_err(music_error)?;
    let rate = music.sampling_rate() as u32;
    for (t, samples) in audio.iter().enumerate() {
        let path = args.output_path(t);
        write_wav(&path, samples, rate)?;
        eprintln!("wrote {} ({:.2} s at {rate} Hz, {} mode, seed {})", path.display(), samples.len() as f64 / rate as f64, mode.name(), args.answer.seed);
    }
    Ok(())
}

/// `generate` with AudioLDM 2: the text side on the prompt (text mode) or on the LLM's caption,
/// or M2UGen's projector states (embedding mode); guided DDIM; one WAV per waveform at 16 kHz.
async fn audioldm2(gpu: &Gpu, args: &GenerateArgs, manifest: &Manifest, mode: Mode, dtype: DType, settings: DiffusionSettings) -> anyhow::Result<()> {
    let fetcher = DirFetcher(args.input.model.clone());
    let clock = m2ugen_gpu::now_ms;
    let options = LoadOptions { in_flight: 4, max_resumes: 3, clock: &clock, cache: None };
    let (model, tokenizers) = m2ugen_pipeline::load::load_audioldm2(gpu, dtype, &fetcher, manifest, settings.waveforms > 1 && mode != Mode::Embedding, &options, |_| {}).await.map_err(|e| args.model_error(e))?;
    let negative = args.negative_prompt.clone().unwrap_or_else(|| DEFAULT_NEGATIVE.into());
    let mut progress = StepProgress::new();
    let on_step = |done, of| progress.show(done, of);
    let text_request = |prompt: String| -> anyhow::Result<_> {
        let tokenizers = tokenizers.as_ref().ok_or_else(|| args.model_error("AudioLDM 2's tokenizers are not in the model (convert the pipeline with tokenizer/ and tokenizer_2/)"))?;
        Ok((tokenizers, Audioldm2Request { prompt, negative: negative.clone(), settings }))
    };
    // The text the waveforms are scored against (text and caption modes).
    let mut scored_text = None;
    let audio = match mode {
        Mode::Text => {
            let (tokenizers, request) = text_request(args.prompt.clone())?;
            scored_text = Some((tokenizers, request.prompt.clone()));
            make_audioldm2(gpu, &model, tokenizers, &request, on_step, None).await
        }
        Mode::Caption => {
            let answered = ask_llm(gpu, args, dtype).await?;
            let (tokenizers, request) = text_request(strip_aud(&answered.text))?;
            drop(answered);
            scored_text = Some((tokenizers, request.prompt.clone()));
            make_audioldm2(gpu, &model, tokenizers, &request, on_step, None).await
        }
        Mode::Embedding => {
            let mut a = ask_llm(gpu, args, dtype).await?;
            let projector = load_projector(gpu, dtype, &fetcher, &a.u.manifest, &options, |_| {}).await.map_err(|e| args.model_error(e))?;
            let states = projector_states(gpu, &mut a.chat, &a.u.llama, &a.aud, Some(&projector)).map_err(music_error)?;
            make_audioldm2_embedding(gpu, &model, tokenizers.as_ref(), &states, &negative, &settings, on_step, None).await
        }
    }
    .map_err(music_error)?;
    let audio = if audio.len() > 1 { rank_waveforms(gpu, &model, scored_text, audio).await } else { audio };
    let rate = model.sampling_rate() as u32;
    for (w, samples) in audio.iter().enumerate() {
        let path = args.output_path(w);
        write_wav(&path, samples, rate)?;
        eprintln!("wrote {} ({:.2} s at {rate} Hz, AudioLDM 2, {} mode, seed {}, {} steps)", path.display(), samples.len() as f64 / rate as f64, mode.name(), args.answer.seed, settings.steps);
    }
    Ok(())
}

/// Several waveforms of one text, best first by CLAP's audio-text score, as `diffusers` returns
/// them, with a line giving the scores; in the order of their noise, with a note saying why,
/// without a text (embedding mode, as the reference) or without CLAP's audio branch.
async fn rank_waveforms(gpu: &Gpu, model: &m2ugen_pipeline::audioldm2::Audioldm2, text: Option<(&m2ugen_pipeline::audioldm2::Audioldm2Tokenizers, String)>, audio: Vec<Vec<f32>>) -> Vec<Vec<f32>> {
    let n = audio.len();
    let Some((tokenizers, text)) = text else {
        eprintln!("note: the {n} waveforms are in the order of their noise, not ranked (in embedding mode there is no text to score them against, as in the reference)");
        return audio;
    };
    let scores = match clap_scores(gpu, model, tokenizers, &text, &audio).await {
        Ok(Some(scores)) => scores,
        Ok(None) => {
            let why = clap_audio_support(&model.config).err().unwrap_or_else(|| "CLAP's audio branch did not load".into());
            eprintln!("note: the {n} waveforms are in the order of their noise, not ranked ({why})");
            return audio;
        }
        // The waveforms are made: a failure to score them keeps them, unranked.
        Err(e) => {
            eprintln!("note: the {n} waveforms are in the order of their noise, not ranked (scoring them failed: {e})");
            return audio;
        }
    };
    let order = ranked(&scores);
    let listed: Vec<String> = order.iter().map(|&w| format!("{:.4} (noise {})", scores[w], w + 1)).collect();
    eprintln!("ranked by CLAP's audio-text score, best first: {}", listed.join(", "));
    let mut audio = audio;
    order.iter().map(|&w| std::mem::take(&mut audio[w])).collect()
}

/// A music error: the user's (a setting, or what the model cannot do: exit 2) or the work's.
fn music_error(e: m2ugen_pipeline::Error) -> anyhow::Error {
    match e {
        m2ugen_pipeline::Error::MusicSetting { .. } | m2ugen_pipeline::Error::Unsupported(_) | m2ugen_pipeline::Error::Setting { .. } => input(e),
        other => anyhow::anyhow!("{other}"),
    }
}

/// `samples` as 16-bit mono WAV at `rate`, written to a temporary file beside `path`, then
/// renamed: never a half-written WAV.
fn write_wav(path: &Path, samples: &[f32], rate: u32) -> anyhow::Result<()> {
    let bytes = m2ugen_media::wav_bytes(samples, rate, 1).map_err(|e| anyhow::anyhow!("{e}"))?;
    let tmp = path.with_extension("wav.partial");
    std::fs::write(&tmp, bytes).map_err(|e| input(format!("{}: cannot be written ({e})", tmp.display())))?;
    std::fs::rename(&tmp, path).map_err(|e| input(format!("{}: cannot be written ({e})", path.display())))?;
    Ok(())
}

/// The LLM's answer to the request, with what embedding mode reads after it.
struct Answered {
    u: Understanding,
    chat: Conversation,
    text: String,
    aud: [u32; m2ugen_pipeline::tokenizer::AUD_TOKENS],
}

/// The LLM answers the prompt about the media (printed as it streams).
async fn ask_llm(gpu: &Gpu, args: &GenerateArgs, dtype: DType) -> anyhow::Result<Answered> {
    let fetcher = DirFetcher(args.input.model.clone());
    let clock = m2ugen_gpu::now_ms;
    let options = LoadOptions { in_flight: 4, max_resumes: 3, clock: &clock, cache: None };
    let max_seq = 2048;
    let limits = Limits::default();
    let u = m2ugen_pipeline::load::load_understanding(gpu, dtype, &fetcher, max_seq, &options).await.map_err(|e| args.model_error(e))?;
    let features = args.input.features(gpu, &u, &limits)?;
    let settings = args.answer.settings(u.tokenizer.token_id("</s>"))?;
    let mut chat = Conversation::new(gpu, &u.llama, as_media(&features), max_seq)?;
    let mut out = std::io::stdout();
    let answer = chat
        .ask(gpu, &u.llama, &u.tokenizer, &args.prompt, &settings, args.answer.seed, &Cancel::default(), |t| {
            let _ = out.write_all(t.as_bytes());
            let _ = out.flush();
        })
        .await?;
    println!();
    let aud = u.tokenizer.aud_tokens().map_err(|e| args.model_error(e))?;
    Ok(Answered { u, chat, text: answer.text, aud })
}
