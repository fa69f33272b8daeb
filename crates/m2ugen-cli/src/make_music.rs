//! `m2ugen generate`: music from a prompt (and music, an image or a video) through M2UGen's LLM
//! and MusicGen, or through MusicGen alone, written as WAV.
//!
//! The conditioning mode says how the decoder hears the request: `caption` (the LLM's answer
//! through T5; the default for a model with an LLM), `embedding` (the output projector's states)
//! or `text` (the prompt through T5, no LLM; the default for MusicGen alone). Settings, and
//! whether the model can do the mode asked, are checked before anything loads: a bad one is one
//! line and exit code 2.

use crate::understand::{input, ModelMedia, SamplingArgs};
use m2ugen_core::DType;
use m2ugen_gpu::Gpu;
use m2ugen_media::Limits;
use m2ugen_pipeline::chat::Conversation;
use m2ugen_pipeline::generate::Cancel;
use m2ugen_pipeline::music::{generate_long, Mode, MusicModel, MusicProgress, MusicSettings, FRAME_RATE};
use m2ugen_pipeline::studio::{as_media, conditioning_after_answer, load_projector};
use m2ugen_pipeline::Sampling;
use m2ugen_weights::loader::{load_manifest, LoadOptions};
use m2ugen_weights::native::DirFetcher;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Longest track, in seconds.
pub const MAX_SECONDS: f32 = 300.0;
/// Frames MusicGen generates at once (its 30-second training length).
pub const WINDOW_FRAMES: usize = 30 * FRAME_RATE;
/// Frames of the track so far that prompt each further window (audiocraft's 12 s: windows
/// advance by 18 s).
pub const OVERLAP_FRAMES: usize = 12 * FRAME_RATE;
/// Most tracks at once.
pub const MAX_TRACKS: u32 = 8;

/// `m2ugen generate`.
#[derive(clap::Args)]
pub struct GenerateArgs {
    /// The model (with a MusicGen: M2UGen, or MusicGen alone) and the media the request is
    /// about (an image or a video to make music for; music to edit, through MERT).
    #[command(flatten)]
    pub input: ModelMedia,
    /// How the decoder is conditioned: caption, embedding or text (default: caption for a model
    /// with an LLM, text for MusicGen alone).
    #[arg(long)]
    pub mode: Option<String>,
    /// Length of the track in seconds (past 30 s it is made in windows).
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f32,
    /// Classifier-free guidance scale (1 turns it off).
    #[arg(long, default_value_t = 3.0)]
    pub guidance: f32,
    /// Music sampling: keep this many most likely codes (0: all).
    #[arg(long, default_value_t = 250)]
    pub music_top_k: u32,
    /// Music sampling temperature; 0 is greedy.
    #[arg(long, default_value_t = 1.0)]
    pub music_temperature: f32,
    /// Music sampling: keep the most likely codes up to this probability.
    #[arg(long, default_value_t = 1.0)]
    pub music_top_p: f32,
    /// Tracks made at once (the same request, different draws): out.wav, out-2.wav, ...
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=MAX_TRACKS as i64))]
    pub tracks: u32,
    /// The output WAV file.
    #[arg(short, long)]
    pub output: PathBuf,
    /// The request.
    pub prompt: String,
    /// How the LLM's answer is sampled (greedy by default), and the seed of every draw (the
    /// music's too).
    #[command(flatten)]
    pub answer: SamplingArgs,
}

impl GenerateArgs {
    /// The music settings, checked (before anything loads).
    fn settings(&self) -> anyhow::Result<MusicSettings> {
        if !(self.seconds > 0.0 && self.seconds <= MAX_SECONDS) {
            return Err(input(format!("--seconds {}: give a length above 0 and at most {MAX_SECONDS} s", self.seconds)));
        }
        if !(self.guidance.is_finite() && self.guidance >= 0.0) {
            return Err(input(format!("--guidance {}: give a scale of 0 or more (1 turns guidance off)", self.guidance)));
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
        Ok(MusicSettings { frames, guidance: self.guidance, sampling, seed: self.answer.seed })
    }

    fn output_path(&self, track: usize) -> PathBuf {
        if track == 0 {
            return self.output.clone();
        }
        let stem = self.output.file_stem().and_then(|s| s.to_str()).unwrap_or("track");
        let ext = self.output.extension().and_then(|s| s.to_str()).unwrap_or("wav");
        self.output.with_file_name(format!("{stem}-{}.{ext}", track + 1))
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

pub async fn run(args: GenerateArgs) -> anyhow::Result<()> {
    let settings = args.settings()?;
    let mode = args.mode.as_deref().map(|m| m.parse::<Mode>().map_err(|_| input(format!("--mode {m}: give caption, embedding or text")))).transpose()?;
    let limits = Limits::default();
    let fetcher = DirFetcher(args.input.model.clone());
    let manifest = load_manifest(&fetcher).await.map_err(|e| input(format!("{}: {e}", args.input.model.display())))?;
    if !manifest.components.contains_key("musicgen") {
        return Err(input(format!("{}: the model '{}' has no music decoder (convert it with --hf musicgen=DIR)", args.input.model.display(), manifest.model)));
    }
    let has_llm = manifest.components.contains_key("llama");
    let mode = mode.unwrap_or(if has_llm { Mode::Caption } else { Mode::Text });
    if mode != Mode::Text && !has_llm {
        return Err(input(format!("{}: --mode {} needs an LLM, and this model is MusicGen alone: use --mode text", args.input.model.display(), mode.name())));
    }
    if mode == Mode::Text && args.input.any() {
        return Err(input("--mode text is MusicGen alone, which hears no media: use --mode caption or embedding with --music, --image or --video"));
    }
    if let Some(problem) = m2ugen_pipeline::studio::mode_problem(&manifest, mode) {
        return Err(input(format!("{}: --mode {}: {problem}", args.input.model.display(), mode.name())));
    }
    let f16 = if args.answer.f16 { m2ugen_gpu::F16Mode::Require } else { m2ugen_gpu::F16Mode::Auto };
    let gpu = Gpu::new(m2ugen_gpu::GpuOptions { f16, ..Default::default() }).await?;
    let dtype = if args.answer.f16 { DType::F16 } else { DType::F32 };
    let clock = m2ugen_gpu::now_ms;
    let options = LoadOptions { in_flight: 4, max_resumes: 3, clock: &clock, cache: None };
    let music = m2ugen_pipeline::load::load_music(&gpu, dtype, &fetcher, &manifest, WINDOW_FRAMES + 8, &options, |_| {}).await.map_err(|e| input(format!("{}: {e}", args.input.model.display())))?;
    let tracks = args.tracks as usize;
    let guided = settings.guidance > 1.0;
    let cond = match mode {
        Mode::Text => {
            let prompts = vec![args.prompt.as_str(); tracks];
            music.text_conditioning(&gpu, &prompts, guided).map_err(music_error)?
        }
        Mode::Caption | Mode::Embedding => llm_conditioning(&gpu, &args, &music, mode, dtype, &limits, tracks, guided).await?,
    };
    let cancel = Cancel::default();
    let mut progress = Progress::new();
    let total = settings.frames;
    let k = music.config.decoder.num_codebooks;
    let window = WINDOW_FRAMES.min(music.decoder.max_steps() - k);
    let codes = generate_long(&gpu, &music.decoder, &cond, tracks, &settings, window, OVERLAP_FRAMES.min(window / 2).max(1), &cancel, |_, p| progress.show(p, p.frames, total)).await.map_err(music_error)?;
    let frames = codes.len() / (tracks * k);
    let audio = music.decode_audio(&gpu, &codes, tracks, frames).await.map_err(music_error)?;
    for (t, samples) in audio.iter().enumerate() {
        let path = args.output_path(t);
        let bytes = m2ugen_media::wav_bytes(samples, music.sampling_rate() as u32, 1).map_err(|e| anyhow::anyhow!("{e}"))?;
        write_file(&path, &bytes)?;
        eprintln!("wrote {} ({:.2} s at {} Hz, {} mode, seed {})", path.display(), samples.len() as f64 / music.sampling_rate() as f64, music.sampling_rate(), mode.name(), args.answer.seed);
    }
    Ok(())
}

/// A music error: the user's (a setting, or what the model cannot do: exit 2) or the work's.
fn music_error(e: m2ugen_pipeline::Error) -> anyhow::Error {
    match e {
        m2ugen_pipeline::Error::MusicSetting { .. } | m2ugen_pipeline::Error::Unsupported(_) | m2ugen_pipeline::Error::Setting { .. } => input(e),
        other => anyhow::anyhow!("{other}"),
    }
}

/// Writes to a temporary file beside `path`, then renames it: never a half-written WAV.
fn write_file(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("wav.partial");
    std::fs::write(&tmp, bytes).map_err(|e| input(format!("{}: cannot be written ({e})", tmp.display())))?;
    std::fs::rename(&tmp, path).map_err(|e| input(format!("{}: cannot be written ({e})", path.display())))?;
    Ok(())
}

/// The LLM answers the prompt about the media (printed as it streams); its answer through T5
/// (caption) or its `[AUD]` states through the output projector (embedding) condition the
/// decoder.
#[allow(clippy::too_many_arguments)]
async fn llm_conditioning(gpu: &Gpu, args: &GenerateArgs, music: &MusicModel, mode: Mode, dtype: DType, limits: &Limits, tracks: usize, guided: bool) -> anyhow::Result<m2ugen_models::musicgen::Conditioning> {
    let fetcher = DirFetcher(args.input.model.clone());
    let clock = m2ugen_gpu::now_ms;
    let options = LoadOptions { in_flight: 4, max_resumes: 3, clock: &clock, cache: None };
    let max_seq = 2048;
    let u = m2ugen_pipeline::load::load_understanding(gpu, dtype, &fetcher, max_seq, &options).await.map_err(|e| input(format!("{}: {e}", args.input.model.display())))?;
    let features = args.input.features(gpu, &u, limits)?;
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
    let aud = u.tokenizer.aud_tokens().map_err(|e| input(format!("{}: {e}", args.input.model.display())))?;
    let projector = match mode {
        Mode::Embedding => Some(load_projector(gpu, dtype, &fetcher, &u.manifest, &options, |_| {}).await.map_err(|e| input(format!("{}: {e}", args.input.model.display())))?),
        _ => None,
    };
    conditioning_after_answer(gpu, music, mode, &answer.text, &mut chat, &u.llama, &aud, projector.as_ref(), tracks, guided).map_err(music_error)
}
