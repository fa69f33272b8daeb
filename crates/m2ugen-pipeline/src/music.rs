//! Music generation with MusicGen's decoder: codes frame by frame over the delay pattern, with
//! classifier-free guidance, seeded sampling, several tracks at once, continuation of a prompt's
//! codes, and windowed continuation past the decoder's trained length.
//!
//! **Guidance.** With a scale above 1 the conditioning carries `2 × tracks` sequences: the
//! conditional ones, then as many null ones (every conditioning row masked, so cross-attention
//! adds nothing: what `transformers` does with its zeroed, masked copy). One forward runs both;
//! the next-code logits are `null + scale · (conditional - null)` (`transformers`'
//! `ClassifierFreeGuidanceLogitsProcessor`), chosen on the GPU; a step reads back one id per
//! track and codebook.
//!
//! **Windows.** MusicGen was trained on 30-second clips (1500 frames). Longer tracks are made
//! window by window ([`generate_long`]): each new window is prompted with the last `overlap`
//! frames of the track so far (their codes, exactly as generated), generates the rest, and only
//! the new frames are appended. The track is one sequence of codes, decoded by EnCodec as a
//! whole (or streamed), so there is no seam in the audio: the joins are only where the decoder's
//! context restarts.

use crate::generate::Cancel;
use crate::sampling::Sampling;
use crate::{Error, Result};
use m2ugen_core::rng::Rng;
use m2ugen_gpu::{Gpu, Recorder};
use m2ugen_models::musicgen::{Conditioning, DelayPattern, MusicgenDecoder};

/// Frames per second of MusicGen's EnCodec (32 kHz, hop 640).
pub const FRAME_RATE: usize = 50;

/// Longest prompt T5 takes, in its tokens (its trained length).
pub const MAX_TEXT_TOKENS: usize = 512;

/// How a track is generated.
#[derive(Clone, Debug, PartialEq)]
pub struct MusicSettings {
    /// Frames to generate (50 a second).
    pub frames: usize,
    /// Classifier-free guidance scale; 1 (or less) turns it off.
    pub guidance: f32,
    /// How each code is chosen.
    pub sampling: Sampling,
    /// Seed of the draws (tracks and codebooks draw from one generator, in order).
    pub seed: u64,
}

impl MusicSettings {
    /// MusicGen's published generation config: sampling with top-k 250 at temperature 1,
    /// guidance 3.
    pub fn musicgen(seconds: f32, seed: u64) -> Self {
        MusicSettings { frames: (seconds * FRAME_RATE as f32).round() as usize, guidance: 3.0, sampling: Sampling::Sample { temperature: 1.0, top_k: Some(250), top_p: None }, seed }
    }

    /// Checks the settings against `decoder`, naming the first one out of range.
    pub fn validate(&self, decoder: &MusicgenDecoder, prompt_frames: usize) -> Result<()> {
        self.sampling.validate()?;
        let k = decoder.config().num_codebooks;
        let most = decoder.max_steps().saturating_sub(k);
        if self.frames == 0 || prompt_frames + self.frames > most {
            return Err(Error::MusicSetting { setting: "frames", value: format!("{} (with a prompt of {prompt_frames})", self.frames), range: "at least 1, and with the prompt at most the decoder's positions less its codebooks" });
        }
        if !self.guidance.is_finite() {
            return Err(Error::MusicSetting { setting: "guidance", value: self.guidance.to_string(), range: "a finite number" });
        }
        Ok(())
    }

    fn guided(&self) -> bool {
        self.guidance > 1.0
    }
}

/// Where a generation stands, for progress displays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MusicProgress {
    /// Decoder steps done (in the current window, for a long track).
    pub step: usize,
    /// Decoder steps in all (of the current window).
    pub steps: usize,
    /// Frames complete in every codebook (of the whole track).
    pub frames: usize,
}

/// Codes `(tracks, codebooks, prompt + frames)` for `tracks` tracks conditioned by `cond`
/// (`2 × tracks` sequences under guidance: conditional, then null), continuing `prompt` codes
/// `(tracks, codebooks, prompt_frames)` when given. `on_frame` gets each new frame's codes
/// `(tracks, codebooks)` as soon as every codebook has it (for streaming EnCodec), and the
/// progress; `cancel` stops at the next step with the frames complete so far.
#[allow(clippy::too_many_arguments)]
pub async fn generate_codes(
    gpu: &Gpu,
    decoder: &MusicgenDecoder,
    cond: &Conditioning,
    tracks: usize,
    settings: &MusicSettings,
    prompt: Option<(&[u32], usize)>,
    cancel: &Cancel,
    mut on_frame: impl FnMut(&[u32], MusicProgress),
) -> Result<Vec<u32>> {
    let c = decoder.config();
    let (k, pad) = (c.num_codebooks, c.pad_token_id as u32);
    let prompt_frames = prompt.map_or(0, |(_, f)| f);
    settings.validate(decoder, prompt_frames)?;
    let sequences = if settings.guided() { 2 * tracks } else { tracks };
    if tracks == 0 || cond.batch() != sequences {
        return Err(Error::Music(format!("{} conditioned sequences for {tracks} tracks{}", cond.batch(), if settings.guided() { " with guidance (which needs twice as many: conditional, then null)" } else { "" })));
    }
    if let Some((codes, frames)) = prompt {
        if codes.len() != tracks * k * frames {
            return Err(Error::Music(format!("a prompt of {} codes is not {tracks} tracks x {k} codebooks x {frames} frames", codes.len())));
        }
        if let Some(bad) = codes.iter().find(|&&x| x as usize >= c.vocab_size) {
            return Err(Error::Music(format!("prompt code {bad} is outside the codebook of {}", c.vocab_size)));
        }
    }
    let total = prompt_frames + settings.frames;
    let pattern = DelayPattern::for_frames(k, total);
    let len = pattern.len;
    // The delayed sequences, and which positions are fixed (pad, or a prompt code).
    let mut seq = vec![pad; tracks * k * len];
    let mut fixed = vec![false; tracks * k * len];
    for t in 0..tracks {
        for cb in 0..k {
            for p in 0..len {
                let at = (t * k + cb) * len + p;
                if pattern.forced(cb, p) {
                    fixed[at] = true;
                } else if let Some((codes, frames)) = prompt.filter(|_| p - cb - 1 < prompt_frames) {
                    seq[at] = codes[(t * k + cb) * frames + p - cb - 1];
                    fixed[at] = true;
                }
            }
        }
    }
    // Inputs through position `start - 1` are prefilled in one forward: the start token and
    // every position whose codes are all known.
    let start = (0..len).find(|&p| (0..tracks).any(|t| !fixed[(t * k) * len + p])).unwrap_or(len);
    let mut cache = decoder.new_cache(gpu, sequences, len - 1)?;
    let choose = settings.sampling.on_gpu();
    // The guidance scale as a one-value tensor, uploaded once for every step.
    let scale = gpu.upload("guidance", &[1], decoder.dtype(), &[settings.guidance])?;
    let mut rng = Rng::new(settings.seed);
    let steps = len - 1;
    let mut frames_done = prompt_frames;
    let mut pos = 0;
    while pos + 1 < len {
        if cancel.is_cancelled() {
            break;
        }
        let n = if pos == 0 { start.max(1) } else { 1 };
        let mut ids = Vec::with_capacity(sequences * k * n);
        for s in 0..sequences {
            let t = s % tracks;
            for cb in 0..k {
                ids.extend_from_slice(&seq[(t * k + cb) * len + pos..(t * k + cb) * len + pos + n]);
            }
        }
        let mut rec = Recorder::new(gpu);
        let logits = decoder.forward(&mut rec, &mut cache, cond, &ids, n)?;
        // The last input step's rows: (sequence, step, codebook) order.
        let rows = tracks * k;
        let vocab = c.vocab_size;
        let last = if n == 1 {
            logits
        } else {
            let l = logits.reshape(&[sequences, n, k * vocab])?;
            rec.slice(&l, 1, n - 1..n)?.reshape(&[sequences * k, vocab])?
        };
        let guided = if settings.guided() {
            let cond_rows = rec.slice(&last, 0, 0..rows)?;
            let null_rows = rec.slice(&last, 0, rows..2 * rows)?;
            let diff = rec.sub(&cond_rows, &null_rows)?;
            let scaled = rec.mul(&diff, &scale)?;
            rec.add(&null_rows, &scaled)?
        } else {
            last
        };
        let draws: Vec<f32> = (0..rows).map(|_| rng.uniform()).collect();
        let chosen = rec.choose_tokens(&guided, &choose, &draws)?;
        rec.submit()?;
        let chosen = gpu.read_u32(&chosen).await?;
        pos += n;
        for t in 0..tracks {
            for cb in 0..k {
                let at = (t * k + cb) * len + pos;
                if !fixed[at] {
                    seq[at] = chosen[t * k + cb];
                }
            }
        }
        // Frame f is complete once the last codebook's position f + k is written.
        while frames_done < total && frames_done + k <= pos {
            let f = frames_done;
            let frame: Vec<u32> = (0..tracks).flat_map(|t| (0..k).map(move |cb| (t, cb))).map(|(t, cb)| seq[(t * k + cb) * len + f + cb + 1]).collect();
            frames_done += 1;
            on_frame(&frame, MusicProgress { step: pos, steps, frames: frames_done });
        }
    }
    let mut codes = pattern.undo(&seq, tracks);
    if frames_done < total {
        // Cancelled: keep the complete frames.
        codes = (0..tracks * k).flat_map(|row| codes[row * total..row * total + frames_done].to_vec()).collect();
    }
    Ok(codes)
}

/// A long track made window by window: windows of at most `window` frames, each after the first
/// prompted with the last `overlap` frames so far. Returns `(tracks, codebooks, frames)`.
#[allow(clippy::too_many_arguments)]
pub async fn generate_long(
    gpu: &Gpu,
    decoder: &MusicgenDecoder,
    cond: &Conditioning,
    tracks: usize,
    settings: &MusicSettings,
    window: usize,
    overlap: usize,
    cancel: &Cancel,
    mut on_frame: impl FnMut(&[u32], MusicProgress),
) -> Result<Vec<u32>> {
    // Each window must fit the decoder's positions, not the whole track.
    MusicSettings { frames: settings.frames.min(window), ..settings.clone() }.validate(decoder, 0)?;
    if overlap == 0 || overlap >= window {
        return Err(Error::MusicSetting { setting: "overlap", value: overlap.to_string(), range: "at least 1 frame and less than the window" });
    }
    let k = decoder.config().num_codebooks;
    let total = settings.frames;
    let mut rows: Vec<Vec<u32>> = vec![Vec::with_capacity(total); tracks * k];
    let mut done = 0;
    let mut round = 0u64;
    while done < total && !cancel.is_cancelled() {
        let context = if done == 0 { 0 } else { overlap.min(done) };
        let new = (window - context).min(total - done);
        let prompt: Vec<u32> = rows.iter().flat_map(|r| r[r.len() - context..].to_vec()).collect();
        let s = MusicSettings { frames: new, seed: settings.seed.wrapping_add(round), ..settings.clone() };
        let before = done;
        let codes = generate_codes(gpu, decoder, cond, tracks, &s, (context > 0).then_some((prompt.as_slice(), context)), cancel, |frame, p| {
            if p.frames > context {
                on_frame(frame, MusicProgress { step: p.step, steps: p.steps, frames: before + p.frames - context });
            }
        })
        .await?;
        let got = codes.len() / (tracks * k) - context;
        for (row, out) in rows.iter_mut().enumerate() {
            let per = context + got;
            out.extend_from_slice(&codes[row * per + context..(row + 1) * per]);
        }
        done += got;
        round += 1;
        if got < new {
            break;
        }
    }
    Ok(rows.concat())
}

/// How the decoder is conditioned, chosen per call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// The LLM's answer (its text, `[AUD]` tokens left out) through T5: what the official
    /// release does. The default: it works with the published checkpoints as they are.
    Caption,
    /// The output projector's `128 × width` states, scaled by [`EMBEDDING_SCALE`], as T5's
    /// states would be (through `enc_to_dec_proj`).
    Embedding,
    /// MusicGen alone: the user's prompt through T5, no LLM.
    Text,
}

impl std::str::FromStr for Mode {
    type Err = Error;

    fn from_str(s: &str) -> Result<Mode> {
        match s {
            "caption" => Ok(Mode::Caption),
            "embedding" => Ok(Mode::Embedding),
            "text" => Ok(Mode::Text),
            other => Err(Error::MusicSetting { setting: "mode", value: other.into(), range: "caption, embedding or text" }),
        }
    }
}

impl Mode {
    /// The mode's name as the command line and the page take it.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Caption => "caption",
            Mode::Embedding => "embedding",
            Mode::Text => "text",
        }
    }
}

/// The projector's output times this is what MusicGen's cross-attention takes in embedding mode.
/// The reference trains the projector to match 10 × T5's states of the caption (its
/// `mse_loss(output, 10 * t5_states)`), so a tenth of the output is on T5's scale, the scale
/// `enc_to_dec_proj` and the decoder were trained on. (The reference divides by 100 at
/// inference, then does not use the result: defect 2 of its notes.)
pub const EMBEDDING_SCALE: f32 = 0.1;

/// MusicGen: T5 and its tokenizer, the decoder, EnCodec.
pub struct MusicModel {
    /// The configuration (the manifest's `musicgen` component).
    pub config: m2ugen_core::config::MusicgenConfig,
    /// T5's encoder.
    pub t5: m2ugen_models::t5::T5Encoder,
    /// T5's tokenizer, when the model has one (needed by caption and text modes).
    pub tokenizer: Option<crate::tokenizer::TextTokenizer>,
    /// The decoder.
    pub decoder: MusicgenDecoder,
    /// EnCodec's decoder.
    pub encodec: m2ugen_models::encodec::EncodecDecoder,
}

impl MusicModel {
    /// Builds the models from `store` (the `musicgen.*` tensors) with `config`, the decoder's
    /// position table sized for `max_steps` steps.
    pub fn build(gpu: &Gpu, store: &mut m2ugen_models::Store, config: m2ugen_core::config::MusicgenConfig, tokenizer: Option<crate::tokenizer::TextTokenizer>, max_steps: usize) -> Result<MusicModel, m2ugen_models::Error> {
        let t5 = m2ugen_models::t5::T5Encoder::load(gpu, store, "musicgen.text_encoder", &config.text_encoder)?;
        let decoder = MusicgenDecoder::load(gpu, store, "musicgen", &config, max_steps)?;
        let encodec = m2ugen_models::encodec::EncodecDecoder::load(gpu, store, "musicgen.audio_encoder", &config.audio_encoder)?;
        Ok(MusicModel { config, t5, tokenizer, decoder, encodec })
    }

    /// Samples per second of the audio.
    pub fn sampling_rate(&self) -> usize {
        self.config.audio_encoder.sampling_rate
    }

    /// Conditioning on `prompts` through T5 (one track each; guidance adds the null rows). The
    /// same prompt for every track goes through T5 once.
    pub fn text_conditioning(&self, gpu: &Gpu, prompts: &[&str], guided: bool) -> Result<Conditioning> {
        let tokenizer = self.tokenizer.as_ref().ok_or_else(|| Error::Unsupported("this model has no text tokenizer for T5 (convert MusicGen from a directory with its tokenizer.json)".into()))?;
        let tracks = prompts.len();
        let same = prompts.windows(2).all(|w| w[0] == w[1]);
        let distinct = if same { &prompts[..tracks.min(1)] } else { prompts };
        let encoded = distinct.iter().map(|p| tokenizer.encode(p).map_err(|e| Error::Unsupported(e.to_string()))).collect::<Result<Vec<_>>>()?;
        let len = encoded.iter().map(Vec::len).max().unwrap_or(0).max(1);
        if len > MAX_TEXT_TOKENS {
            return Err(Error::MusicSetting { setting: "prompt", value: format!("{len} tokens"), range: "at most 512 of T5's tokens" });
        }
        let rows = encoded.len();
        let mut ids = vec![0u32; rows * len];
        let mut mask = vec![false; rows * len];
        for (t, e) in encoded.iter().enumerate() {
            ids[t * len..t * len + e.len()].copy_from_slice(e);
            mask[t * len..t * len + e.len()].fill(true);
        }
        let mut rec = Recorder::new(gpu);
        let mut states = self.t5.forward(&mut rec, &ids, &mask, rows, len)?;
        if rows < tracks {
            states = rec.concat(&vec![&states; tracks], 0)?;
            mask = mask.repeat(tracks);
        }
        let cond = self.condition(&mut rec, &states, tracks, len, mask, guided)?;
        rec.submit()?;
        Ok(cond)
    }

    /// Conditioning on the output projector's states `(tracks * rows, width)`, scaled by
    /// [`EMBEDDING_SCALE`].
    pub fn embedding_conditioning(&self, gpu: &Gpu, states: &m2ugen_gpu::GpuTensor, tracks: usize, guided: bool) -> Result<Conditioning> {
        let width = self.decoder.memory_width();
        if tracks == 0 || states.cols() != width || !states.rows().is_multiple_of(tracks) {
            return Err(Error::Unsupported(format!("the output projector gives states of width {} ({:?}), but this MusicGen's text encoder is {width} wide: the model's projector and decoder do not belong together", states.cols(), states.shape())));
        }
        let len = states.rows() / tracks;
        let mut rec = Recorder::new(gpu);
        let scale = rec.upload("embedding scale", &[1], states.dtype(), &[EMBEDDING_SCALE])?;
        let scaled = rec.mul(states, &scale)?;
        let cond = self.condition(&mut rec, &scaled, tracks, len, vec![true; tracks * len], guided)?;
        rec.submit()?;
        Ok(cond)
    }

    /// The decoder's conditioning for `tracks` sequences of `len` rows, with guidance's null
    /// rows (every row masked) after them when `guided`.
    fn condition(&self, rec: &mut Recorder, states: &m2ugen_gpu::GpuTensor, tracks: usize, len: usize, mut mask: Vec<bool>, guided: bool) -> Result<Conditioning> {
        if !guided {
            return Ok(self.decoder.condition(rec, states, tracks, len, Some(&mask))?);
        }
        let zeros = rec.alloc("null conditioning", states.shape(), states.dtype())?;
        rec.fill(&zeros, 0.0)?;
        let both = rec.concat(&[states, &zeros], 0)?;
        mask.extend(std::iter::repeat_n(false, tracks * len));
        Ok(self.decoder.condition(rec, &both, 2 * tracks, len, Some(&mask))?)
    }

    /// The waveforms of `tracks` tracks of codes `(tracks, codebooks, frames)`, one per track.
    pub async fn decode_audio(&self, gpu: &Gpu, codes: &[u32], tracks: usize, frames: usize) -> Result<Vec<Vec<f32>>> {
        if frames == 0 {
            return Ok(vec![Vec::new(); tracks]);
        }
        let mut rec = Recorder::new(gpu);
        let audio = self.encodec.decode(&mut rec, codes, tracks, frames)?;
        rec.submit()?;
        let samples = gpu.read(&audio).await?;
        let per = samples.len() / tracks.max(1);
        Ok(samples.chunks(per.max(1)).map(<[f32]>::to_vec).collect())
    }
}
