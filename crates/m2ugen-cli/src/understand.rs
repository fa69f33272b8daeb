//! `m2ugen chat` and `m2ugen caption`: questions about music (and images and video) answered
//! by a converted M2UGen or MU-LLaMA model.
//!
//! Media files are decoded by `m2ugen-media` (WAV, FLAC, MP3, OGG Vorbis; PNG, JPEG; video as
//! a folder of frames or any file ffmpeg reads). A file that cannot be used is an input error
//! (one line, exit 2) naming it; in `caption`, a bad file is reported and skipped, so one broken
//! file does not stop a dataset.

use crate::InputError;
use m2ugen_core::DType;
use m2ugen_gpu::{Gpu, GpuTensor};
use m2ugen_media::{Limits, MediaError};
use m2ugen_models::llama::Media;
use m2ugen_pipeline::chat::{instruction_prompt, Conversation, Tokenizer};
use m2ugen_pipeline::features::Encoders;
use m2ugen_pipeline::generate::{generate, Cancel, Request, Settings};
use m2ugen_pipeline::load::{load_understanding, Understanding};
use m2ugen_pipeline::Sampling;
use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

/// How the answers are sampled (shared by chat and caption).
#[derive(clap::Args, Clone)]
pub struct SamplingArgs {
    /// Most tokens per answer.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub max_tokens: u32,
    /// Sampling temperature; 0 is greedy (the default, as the reference's captions).
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f32,
    /// Keep this many most likely tokens (0: all).
    #[arg(long, default_value_t = 0)]
    pub top_k: u32,
    /// Keep the most likely tokens up to this probability.
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f32,
    /// Seed of the sampling.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Activations in f16 (needs shader-f16) instead of f32.
    #[arg(long)]
    pub f16: bool,
}

impl SamplingArgs {
    pub(crate) fn settings(&self, eos: Option<u32>) -> Result<Settings, InputError> {
        let sampling = if self.temperature == 0.0 {
            Sampling::Greedy
        } else {
            Sampling::Sample { temperature: self.temperature, top_k: (self.top_k > 0).then_some(self.top_k as usize), top_p: (self.top_p < 1.0).then_some(self.top_p) }
        };
        sampling.validate().map_err(|e| InputError(e.to_string()))?;
        Ok(Settings { sampling, max_new_tokens: self.max_tokens as usize, eos, stop_texts: vec!["\n###".into()] })
    }
}

/// The model and the media a request is about (shared by chat and generate).
#[derive(clap::Args)]
pub struct ModelMedia {
    /// A converted model directory (M2UGen or MU-LLaMA; with a MusicGen for generate).
    #[arg(long)]
    pub model: PathBuf,
    /// Music (WAV, FLAC, MP3, OGG): to ask about, or to edit.
    #[arg(long)]
    pub music: Option<PathBuf>,
    /// An image (PNG, JPEG).
    #[arg(long)]
    pub image: Option<PathBuf>,
    /// A video: a folder of frames (PNG, JPEG), or a file ffmpeg reads.
    #[arg(long)]
    pub video: Option<PathBuf>,
}

impl ModelMedia {
    /// Whether any medium was given.
    pub fn any(&self) -> bool {
        self.music.is_some() || self.image.is_some() || self.video.is_some()
    }

    /// The features of the media given (see [`media_features`]).
    pub(crate) fn features(&self, gpu: &Gpu, u: &Understanding, limits: &Limits) -> anyhow::Result<Vec<(m2ugen_models::Modality, GpuTensor)>> {
        media_features(gpu, u, self.music.as_deref(), self.image.as_deref(), self.video.as_deref(), &self.model, limits)
    }
}

/// `m2ugen chat`.
#[derive(clap::Args)]
pub struct ChatArgs {
    #[command(flatten)]
    pub input: ModelMedia,
    /// Go on turn by turn: each line read from the input is the next question (an empty line
    /// or the end of the input stops); earlier turns stay in the prompt, their keys and values
    /// in the cache.
    #[arg(long)]
    pub interactive: bool,
    /// The question (optional with --interactive).
    pub question: Option<String>,
    #[command(flatten)]
    pub sampling: SamplingArgs,
}

/// `m2ugen caption`.
#[derive(clap::Args)]
pub struct CaptionArgs {
    /// A converted model directory (MU-LLaMA, as the seed's datasets were made, or M2UGen).
    #[arg(long)]
    pub model: PathBuf,
    /// The question asked of every file.
    #[arg(long, default_value = "Describe the music in detail.")]
    pub question: String,
    /// The folder of audio files (WAV, FLAC, MP3, OGG), captioned in name order.
    pub audio_dir: PathBuf,
    /// The captions, `{"file": "caption"}` (MUCaps' format); files already in it are skipped.
    #[arg(short, long)]
    pub output: PathBuf,
    /// Files captioned together (one batched generation).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=8))]
    pub batch: u32,
    #[command(flatten)]
    pub sampling: SamplingArgs,
}

pub(crate) fn input<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow::Error::new(InputError(e.to_string()))
}

pub(crate) async fn load(args: &SamplingArgs, model: &Path, max_seq: usize) -> anyhow::Result<(Gpu, Understanding)> {
    let f16 = if args.f16 { m2ugen_gpu::F16Mode::Require } else { m2ugen_gpu::F16Mode::Auto };
    let gpu = Gpu::new(m2ugen_gpu::GpuOptions { f16, ..Default::default() }).await?;
    let dtype = if args.f16 { DType::F16 } else { DType::F32 };
    let fetcher = m2ugen_weights::native::DirFetcher(model.to_path_buf());
    let clock = m2ugen_gpu::now_ms;
    let options = m2ugen_weights::loader::LoadOptions { in_flight: 4, max_resumes: 3, clock: &clock, cache: None };
    let u = load_understanding(&gpu, dtype, &fetcher, max_seq, &options).await.map_err(|e| input(format!("{}: {e}", model.display())))?;
    Ok((gpu, u))
}

fn read(path: &Path, limits: &Limits) -> Result<Vec<u8>, MediaError> {
    let name = path.display().to_string();
    let meta = std::fs::metadata(path).map_err(|e| MediaError::new(&name, format!("cannot be read ({e})")))?;
    if meta.len() > limits.max_file_bytes {
        return Err(MediaError::new(&name, format!("is {} MiB; the limit is {} MiB", meta.len() >> 20, limits.max_file_bytes >> 20)));
    }
    std::fs::read(path).map_err(|e| MediaError::new(&name, format!("cannot be read ({e})")))
}

/// The music feature of an audio file.
fn music_feature(gpu: &Gpu, encoders: &Encoders, path: &Path, limits: &Limits) -> anyhow::Result<GpuTensor> {
    let name = path.display().to_string();
    let samples = m2ugen_media::audio::music_from_bytes(&name, &read(path, limits).map_err(input)?, limits).map_err(input)?;
    encoders.music(gpu, &samples).map_err(|e| input(format!("{name}: {e}")))
}

/// What the model has for `what`, or an input error saying it has none.
fn needs(encoders: &Encoders, modality: m2ugen_models::Modality, model: &Path) -> anyhow::Result<()> {
    if encoders.has(modality) {
        Ok(())
    } else {
        Err(input(format!("{}: this model has no {} encoder", model.display(), format!("{modality:?}").to_lowercase())))
    }
}

/// The features of the media files given (music, image, video), each an input error when the
/// file cannot be used or the model has no encoder for it.
pub(crate) fn media_features(gpu: &Gpu, u: &Understanding, music: Option<&Path>, image: Option<&Path>, video: Option<&Path>, model: &Path, limits: &Limits) -> anyhow::Result<Vec<(m2ugen_models::Modality, GpuTensor)>> {
    use m2ugen_models::Modality;
    let mut features: Vec<(Modality, GpuTensor)> = Vec::new();
    if let Some(path) = music {
        needs(&u.encoders, Modality::Music, model)?;
        features.push((Modality::Music, music_feature(gpu, &u.encoders, path, limits)?));
    }
    if let Some(path) = image {
        needs(&u.encoders, Modality::Image, model)?;
        let name = path.display().to_string();
        let image = m2ugen_media::image::decode_image(&name, &read(path, limits).map_err(input)?, limits).map_err(input)?;
        features.push((Modality::Image, u.encoders.image(gpu, &image).map_err(|e| input(format!("{name}: {e}")))?));
    }
    if let Some(path) = video {
        needs(&u.encoders, Modality::Video, model)?;
        let count = u.encoders.video_frames().unwrap_or(32);
        let frames = if path.is_dir() { m2ugen_media::video::frames_from_dir(path, count, limits) } else { m2ugen_media::video::frames_from_file(path, count, limits) }.map_err(input)?;
        features.push((Modality::Video, u.encoders.video(gpu, &frames).map_err(|e| input(format!("{}: {e}", path.display())))?));
    }
    Ok(features)
}

pub async fn run_chat(args: ChatArgs) -> anyhow::Result<()> {
    if args.question.is_none() && !args.interactive {
        return Err(input("give a question, or --interactive"));
    }
    let limits = Limits::default();
    let max_seq = 2048;
    let (gpu, u) = load(&args.sampling, &args.input.model, max_seq).await?;
    let features = args.input.features(&gpu, &u, &limits)?;
    let media = m2ugen_pipeline::studio::as_media(&features);
    let settings = args.sampling.settings(u.tokenizer.token_id("</s>"))?;
    let mut chat = Conversation::new(&gpu, &u.llama, media, max_seq)?;
    let cancel = Cancel::default();
    let mut out = std::io::stdout();
    let stdin = std::io::stdin();
    let mut next = args.question.clone();
    loop {
        let question = match next.take() {
            Some(q) => q,
            None if args.interactive => {
                eprint!("> ");
                let mut line = String::new();
                if stdin.lock().read_line(&mut line)? == 0 || line.trim().is_empty() {
                    break;
                }
                line.trim_end().to_string()
            }
            None => break,
        };
        chat.ask(&gpu, &u.llama, &u.tokenizer, &question, &settings, args.sampling.seed, &cancel, |t| {
            let _ = out.write_all(t.as_bytes());
            let _ = out.flush();
        })
        .await?;
        println!();
        if args.interactive {
            eprintln!("({} tokens of earlier turns reused from the cache)", chat.reused());
        }
    }
    Ok(())
}

/// Audio files of `dir` this build decodes, by name.
fn audio_files(dir: &Path) -> anyhow::Result<Vec<String>> {
    let entries = std::fs::read_dir(dir).map_err(|e| input(format!("{}: cannot be read as a folder ({e})", dir.display())))?;
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_file())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| matches!(Path::new(n).extension().and_then(|x| x.to_str()).map(str::to_ascii_lowercase).as_deref(), Some("wav" | "flac" | "mp3" | "ogg")))
        .collect();
    names.sort();
    Ok(names)
}

/// The captions file as far as it was written (none yet: empty).
fn read_captions(path: &Path) -> anyhow::Result<BTreeMap<String, String>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| input(format!("{}: not a captions file ({{\"file\": \"caption\"}}): {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(e) => Err(input(format!("{}: cannot be read ({e})", path.display()))),
    }
}

/// Writes the captions whole to a temporary file beside `path`, then renames it over `path`:
/// an interrupted run leaves the last complete file.
fn write_captions(path: &Path, captions: &BTreeMap<String, String>) -> anyhow::Result<()> {
    let tmp = path.with_extension("json.partial");
    let json = serde_json::to_vec_pretty(captions)?;
    std::fs::write(&tmp, json).map_err(|e| input(format!("{}: cannot be written ({e})", tmp.display())))?;
    std::fs::rename(&tmp, path).map_err(|e| input(format!("{}: cannot be written ({e})", path.display())))?;
    Ok(())
}

pub async fn run_caption(args: CaptionArgs) -> anyhow::Result<()> {
    let limits = Limits::default();
    let files = audio_files(&args.audio_dir)?;
    let mut captions = read_captions(&args.output)?;
    let todo: Vec<&String> = files.iter().filter(|f| !captions.contains_key(*f)).collect();
    eprintln!("{} audio files, {} already captioned, {} to do", files.len(), files.len() - todo.len(), todo.len());
    if todo.is_empty() {
        return Ok(());
    }
    let prompt_text = instruction_prompt(&args.question);
    let (gpu, u) = load(&args.sampling, &args.model, 2048).await?;
    if !u.encoders.has(m2ugen_models::Modality::Music) {
        return Err(input(format!("{}: this model has no music encoder", args.model.display())));
    }
    let prompt = u.tokenizer.encode_text(&prompt_text).map_err(input)?;
    let settings = args.sampling.settings(u.tokenizer.token_id("</s>"))?;
    let cancel = Cancel::default();
    let started = std::time::Instant::now();
    let (mut done, mut skipped) = (0usize, 0usize);
    for batch in todo.chunks(args.batch as usize) {
        let mut features = Vec::new();
        let mut names = Vec::new();
        for name in batch {
            match music_feature(&gpu, &u.encoders, &args.audio_dir.join(name), &limits) {
                Ok(f) => {
                    features.push(f);
                    names.push((*name).clone());
                }
                Err(e) if e.downcast_ref::<InputError>().is_some() => {
                    eprintln!("skipped {e}");
                    skipped += 1;
                }
                Err(e) => return Err(e),
            }
        }
        if !names.is_empty() {
            let requests: Vec<Request> = features.iter().map(|f| Request { prompt: prompt.clone(), media: Media { music: Some(f), ..Media::default() }, seed: args.sampling.seed }).collect();
            let outputs = generate(&gpu, &u.llama, &requests, &settings, &u.tokenizer, &cancel, |_| {}).await?;
            for (name, out) in names.into_iter().zip(outputs) {
                captions.insert(name, out.text.trim().to_string());
            }
            write_captions(&args.output, &captions)?;
        }
        done += batch.len();
        let elapsed = started.elapsed().as_secs_f64();
        let rate = done as f64 / elapsed.max(1e-9);
        let left = (todo.len() - done) as f64 / rate.max(1e-9);
        eprintln!("[{done}/{}] {:.2} files/s, {:.0} s left", todo.len(), rate, left);
    }
    eprintln!("wrote {} captions to {}{}", captions.len(), args.output.display(), if skipped > 0 { format!(" ({skipped} files skipped)") } else { String::new() });
    Ok(())
}
