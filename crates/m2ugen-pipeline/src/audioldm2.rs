//! AudioLDM 2 as `diffusers`' `AudioLDM2Pipeline` runs it: the text side (CLAP, T5, the
//! projection, GPT-2's 8 states) or M2UGen's projector in their place, DDIM over the UNet with
//! classifier-free guidance in one batch (the negative prompt's rows first), the VAE's mel
//! spectrogram and HiFi-GAN's 16 kHz audio, cut to the length asked for.
//!
//! Latents are channels-last `(waveforms, height, width, channels)`, height the time axis.
//! The initial noise is this crate's own seeded Gaussian, the same on every target (not
//! PyTorch's generator: a seed here makes another track than in `diffusers`).
//!
//! From a request to audio: [`Audioldm2Tokenizers`] turns the prompt and the negative prompt
//! into CLAP's and T5's ids as `encode_prompt` does, and [`make_audioldm2`] (text and caption
//! modes) or [`make_audioldm2_embedding`] (M2UGen's projector states) runs the rest. Several
//! waveforms per prompt come back in the order of their noise (what a share link's "waveform n
//! of N" counts); [`clap_scores`] scores them against the text with CLAP's audio branch, as
//! `diffusers` ranks them (`score_waveforms`), when the model has it.

use crate::diffusion::{guide, Ddim};
use crate::generate::Cancel;
use crate::{Error, Result};
use m2ugen_core::config::audioldm2::Audioldm2Config;
use m2ugen_core::rng::Rng;
use m2ugen_gpu::{Gpu, GpuTensor, Recorder};
use m2ugen_media::clap_mel::{clap_mel, stretch_frames, ClapMelSettings, CHANNELS};
use m2ugen_models::audioldm2_text::{Prompts, TextConditioning, TextEncoders};
use m2ugen_models::clap_audio::ClapAudio;
use m2ugen_models::hifigan::Hifigan;
use m2ugen_models::unet::{Unet, UnetConditioning};
use m2ugen_models::vae::VaeDecoder;
use m2ugen_models::Store;

/// Where a converted model keeps AudioLDM 2's tensors (`audioldm2.unet.*`, ...).
pub const PREFIX: &str = "audioldm2";
/// Longest track.
pub const MAX_SECONDS: f32 = 60.0;
/// Most waveforms per prompt.
pub const MAX_WAVEFORMS: usize = 8;

/// AudioLDM 2, loaded.
pub struct Audioldm2 {
    /// Every part's configuration.
    pub config: Audioldm2Config,
    /// CLAP, T5, the projection and GPT-2 (absent when only M2UGen's projector conditions).
    pub text: Option<TextEncoders>,
    /// CLAP's audio branch, which scores waveforms against their text (absent when the model
    /// has none, or one this port does not run: see [`Audioldm2::build`]).
    pub clap_audio: Option<ClapAudio>,
    /// The denoiser.
    pub unet: Unet,
    /// Latents to a mel spectrogram.
    pub vae: VaeDecoder,
    /// Mel spectrogram to audio.
    pub vocoder: Hifigan,
    dtype: m2ugen_core::DType,
}

/// A request's diffusion settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DiffusionSettings {
    /// Length of each waveform.
    pub seconds: f32,
    /// Denoising steps (the reference uses 200).
    pub steps: usize,
    /// Classifier-free guidance (1 or less: none, no negative rows).
    pub guidance: f32,
    /// Seed of the initial noise.
    pub seed: u64,
    /// Waveforms per prompt (each from its own noise).
    pub waveforms: usize,
}

impl DiffusionSettings {
    /// The reference's settings (200 steps, guidance 3.5) for `seconds`.
    pub fn reference(seconds: f32, seed: u64) -> Self {
        DiffusionSettings { seconds, steps: 200, guidance: 3.5, seed, waveforms: 1 }
    }

    /// Fails naming the first setting out of range.
    pub fn check(&self) -> Result<()> {
        let bad = |setting: &'static str, value: String, range: &'static str| Err(Error::MusicSetting { setting, value, range });
        if !(self.seconds.is_finite() && self.seconds > 0.0 && self.seconds <= MAX_SECONDS) {
            return bad("length", format!("{} s", self.seconds), "more than 0 and at most 60 s");
        }
        if !(self.guidance.is_finite() && (0.0..=30.0).contains(&self.guidance)) {
            return bad("guidance", self.guidance.to_string(), "0 to 30");
        }
        if self.waveforms == 0 || self.waveforms > MAX_WAVEFORMS {
            return bad("waveforms", self.waveforms.to_string(), "1 to 8");
        }
        if self.steps == 0 || self.steps > crate::diffusion::MAX_STEPS {
            return bad("steps", self.steps.to_string(), "1 to 1000");
        }
        Ok(())
    }

    /// Whether the batch carries the negative prompt's rows.
    pub fn guided(&self) -> bool {
        self.guidance > 1.0
    }
}

/// Sizes for a length of audio, as the reference computes them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    /// Mel frames decoded (a multiple of the VAE's scale).
    pub frames: usize,
    /// Latent rows (time).
    pub height: usize,
    /// Latent columns (mel bins / the VAE's scale).
    pub width: usize,
    /// Latent channels.
    pub channels: usize,
    /// Samples kept of each waveform.
    pub samples: usize,
}

impl Geometry {
    /// Values in one waveform's latents.
    pub fn latent_len(&self) -> usize {
        self.height * self.width * self.channels
    }
}

/// The UNet's conditioning for one request: the guidance batch's rows, projected once.
pub struct Conditioning {
    unet: UnetConditioning,
    rows: usize,
}

impl Audioldm2 {
    /// Builds the parts from `store` (`audioldm2.*`); the text side only when its tensors are
    /// there (M2UGen's embedding mode needs none of it).
    pub fn build(gpu: &Gpu, store: &mut Store, config: Audioldm2Config) -> Result<Audioldm2, m2ugen_models::Error> {
        config.check()?;
        let gpt2 = format!("{PREFIX}.gpt2.");
        let text = if store.names().any(|n| n.starts_with(&gpt2)) { Some(TextEncoders::load(gpu, store, PREFIX, &config)?) } else { None };
        // CLAP's audio branch, with the text side, when its weights were loaded (for ranking)
        // and its feature extractor is the one implemented (fusion: four spectrogram channels).
        let clap = format!("{PREFIX}.clap");
        let loaded = text.is_some() && store.has(&format!("{clap}.audio_model.audio_encoder.patch_embed.proj.weight"));
        let clap_audio = match clap_audio_support(&config) {
            Ok(audio) if loaded => Some(ClapAudio::load(gpu, store, &clap, &audio)?),
            _ => None,
        };
        let unet = Unet::load(gpu, store, &format!("{PREFIX}.unet"), &config.unet)?;
        let vae = VaeDecoder::load(gpu, store, &format!("{PREFIX}.vae"), &config.vae)?;
        let vocoder = Hifigan::load(gpu, store, &format!("{PREFIX}.vocoder"), &config.vocoder)?;
        Ok(Audioldm2 { config, text, clap_audio, unet, vae, vocoder, dtype: store.dtype() })
    }

    /// Samples per second of the audio.
    pub fn sampling_rate(&self) -> usize {
        self.config.vocoder.sampling_rate
    }

    /// The sizes for `seconds` of audio: mel frames `seconds / (hop / rate)` rounded up to the
    /// VAE's scale, latents that over the scale, samples `seconds x rate`. The length is taken
    /// to the microsecond, as written: 0.04 (an f32 a little under it) is 640 samples at 16 kHz,
    /// as `diffusers` computes from the decimal.
    pub fn geometry(&self, seconds: f32) -> Geometry {
        let c = &self.config;
        let scale = c.vae.scale_factor();
        let hop_seconds = c.vocoder.hop() as f64 / c.vocoder.sampling_rate as f64;
        let seconds = (seconds as f64 * 1e6).round() / 1e6;
        let frames = ((seconds / hop_seconds) as usize).div_ceil(scale) * scale;
        Geometry { frames, height: frames / scale, width: c.vocoder.model_in_dim / scale, channels: c.unet.in_channels, samples: (seconds * c.vocoder.sampling_rate as f64) as usize }
    }

    /// The initial latents of `waveforms` tracks from `seed`, channels-last.
    pub fn noise(&self, seed: u64, waveforms: usize, g: &Geometry) -> Vec<f32> {
        let mut rng = Rng::new(seed);
        (0..waveforms * g.latent_len()).map(|_| rng.normal()).collect()
    }

    /// The text side on `prompts` (one batch; the negative prompt is a row like any other).
    pub fn encode_text(&self, rec: &mut Recorder, prompts: &Prompts) -> Result<TextConditioning> {
        let text = self.text.as_ref().ok_or_else(|| Error::Unsupported("this AudioLDM 2 has no text encoders (CLAP, T5, GPT-2): only M2UGen's embedding mode can condition it".into()))?;
        Ok(text.encode(rec, prompts)?)
    }

    /// The UNet's conditioning from the `generated` `(rows, n, d1)` and `t5` `(rows, len, d2)`
    /// states with `t5_mask`: with guidance, `rows` is 2 (the negative prompt's, then the
    /// prompt's); each row is repeated for `waveforms` tracks, negative rows first.
    pub fn condition(&self, rec: &mut Recorder, generated: &GpuTensor, t5: &GpuTensor, t5_mask: &[bool], waveforms: usize) -> Result<Conditioning> {
        let rows = generated.shape().first().copied().unwrap_or(0);
        let t5_len = t5.shape().get(1).copied().unwrap_or(0);
        if rows == 0 || t5.shape().first() != Some(&rows) || t5_mask.len() != rows * t5_len {
            return Err(Error::Music(format!("audioldm2: conditioning of {:?} and {:?} with {} mask values do not match", generated.shape(), t5.shape(), t5_mask.len())));
        }
        let (generated, t5, mask) = if waveforms > 1 {
            let mut g = Vec::new();
            let mut t = Vec::new();
            let mut mask = Vec::new();
            for r in 0..rows {
                let gr = rec.slice(generated, 0, r..r + 1)?;
                let tr = rec.slice(t5, 0, r..r + 1)?;
                for _ in 0..waveforms {
                    g.push(gr.clone());
                    t.push(tr.clone());
                    mask.extend_from_slice(&t5_mask[r * t5_len..(r + 1) * t5_len]);
                }
            }
            let g: Vec<&GpuTensor> = g.iter().collect();
            let t: Vec<&GpuTensor> = t.iter().collect();
            (rec.concat(&g, 0)?, rec.concat(&t, 0)?, mask)
        } else {
            (generated.clone(), t5.clone(), t5_mask.to_vec())
        };
        Ok(Conditioning { unet: self.unet.condition(rec, &generated, &t5, &mask)?, rows: rows * waveforms })
    }

    /// DDIM from `latents` (one or more tracks, channels-last) under `cond`: guidance when
    /// `cond` has twice the tracks' rows (the negative ones first). `settings` gives the steps
    /// and the guidance scale. `on_step(done, of)` after each step; `cancel`
    /// stops between steps.
    #[allow(clippy::too_many_arguments)]
    pub async fn denoise(&self, gpu: &Gpu, cond: &Conditioning, mut latents: Vec<f32>, g: &Geometry, settings: &DiffusionSettings, mut on_step: impl FnMut(usize, usize), cancel: Option<&Cancel>) -> Result<Vec<f32>> {
        let waveforms = latents.len() / g.latent_len().max(1);
        let guided = cond.rows == 2 * waveforms;
        if waveforms == 0 || latents.len() != waveforms * g.latent_len() || (!guided && cond.rows != waveforms) {
            return Err(Error::Music(format!("audioldm2: {} latent values of {g:?} under a conditioning of {} rows", latents.len(), cond.rows)));
        }
        let ddim = Ddim::new(&self.config.scheduler, settings.steps)?;
        let sigma = ddim.init_noise_sigma();
        if sigma != 1.0 {
            latents.iter_mut().for_each(|v| *v *= sigma);
        }
        let shape = [cond.rows, g.height, g.width, g.channels];
        let steps = ddim.timesteps().len();
        for (i, &t) in ddim.timesteps().iter().enumerate() {
            if cancel.is_some_and(Cancel::is_cancelled) {
                return Err(Error::Music("stopped".into()));
            }
            let input = if guided { latents.repeat(2) } else { latents.clone() };
            let x = gpu.upload("audioldm2 latents", &shape, self.unet_dtype(), &input)?;
            let mut rec = Recorder::new(gpu);
            let noise = self.unet.forward_conditioned(&mut rec, &x, t as f32, &cond.unet)?;
            rec.submit()?;
            let noise = gpu.read(&noise).await?;
            let noise = if guided { guide(&noise, settings.guidance) } else { noise };
            latents = ddim.step(i, &noise, &latents);
            on_step(i + 1, steps);
        }
        Ok(latents)
    }

    /// The mel spectrogram `(waveforms, frames, bins)` of `latents` (divided by the VAE's
    /// scaling factor first), on the GPU.
    pub fn mel(&self, rec: &mut Recorder, latents: &GpuTensor) -> Result<GpuTensor> {
        let mel = self.vae.decode_latents(rec, latents)?;
        let &[b, frames, bins, _] = mel.shape() else { return Err(Error::Music(format!("audioldm2: the VAE gave {:?}", mel.shape()))) };
        Ok(mel.reshape(&[b, frames, bins])?)
    }

    /// Each waveform's audio from its latents, cut to `g.samples`.
    pub async fn decode(&self, gpu: &Gpu, latents: &[f32], g: &Geometry) -> Result<Vec<Vec<f32>>> {
        let waveforms = latents.len() / g.latent_len().max(1);
        let x = gpu.upload("audioldm2 latents", &[waveforms, g.height, g.width, g.channels], self.unet_dtype(), latents)?;
        let mut rec = Recorder::new(gpu);
        let mel = self.mel(&mut rec, &x)?;
        let audio = self.vocoder.forward(&mut rec, &mel)?;
        rec.submit()?;
        let values = gpu.read(&audio).await?;
        let per = values.len() / waveforms.max(1);
        Ok(values.chunks(per.max(1)).map(|w| w[..g.samples.min(w.len())].to_vec()).collect())
    }

    fn unet_dtype(&self) -> m2ugen_core::DType {
        self.dtype
    }
}

/// M2UGen-AudioLDM2's projector output `(1, 128 x t5 width + steps x gpt2 width)` split into
/// the T5-like states `(1, 128, t5 width)` (`prompt_embeds`) and GPT-2-like states
/// `(1, steps, gpt2 width)` (`generated_prompt_embeds`), as the reference splits it.
pub fn split_projector(rec: &mut Recorder, config: &Audioldm2Config, states: &GpuTensor) -> Result<(GpuTensor, GpuTensor)> {
    let (t5w, gw, steps) = (config.t5.d_model, config.gpt2.n_embd, config.gpt2.new_tokens());
    let want = PROJECTOR_ROWS * t5w + steps * gw;
    if states.numel() != want {
        return Err(Error::Unsupported(format!("the output projector gives {} values, AudioLDM 2 takes {PROJECTOR_ROWS} x {t5w} + {steps} x {gw} = {want}", states.numel())));
    }
    let flat = states.reshape(&[want])?;
    let t5 = rec.slice(&flat, 0, 0..PROJECTOR_ROWS * t5w)?.reshape(&[1, PROJECTOR_ROWS, t5w])?;
    let generated = rec.slice(&flat, 0, PROJECTOR_ROWS * t5w..want)?.reshape(&[1, steps, gw])?;
    Ok((t5, generated))
}

/// T5-like rows M2UGen-AudioLDM2's projector writes.
pub const PROJECTOR_ROWS: usize = 128;

/// The guidance batch of M2UGen's embedding mode: the negative prompt's row of `negative`
/// (its T5 part zero-padded to [`PROJECTOR_ROWS`] with mask 0) first when given, then the
/// projector's states (every row real). Gives `(generated, t5, t5_mask)` for
/// [`Audioldm2::condition`].
pub fn embedding_batch(rec: &mut Recorder, config: &Audioldm2Config, negative: Option<&TextConditioning>, states: &GpuTensor) -> Result<(GpuTensor, GpuTensor, Vec<bool>)> {
    let (t5, generated) = split_projector(rec, config, states)?;
    let Some(neg) = negative else { return Ok((generated, t5, vec![true; PROJECTOR_ROWS])) };
    if neg.t5_len > PROJECTOR_ROWS {
        return Err(Error::MusicSetting { setting: "negative prompt", value: format!("{} T5 tokens", neg.t5_len), range: "at most 128" });
    }
    let neg_t5 = rec.slice(&neg.t5, 0, 0..1)?;
    let neg_t5 = rec.pad(&neg_t5, 1, 0, PROJECTOR_ROWS - neg.t5_len, 0.0)?;
    let neg_generated = rec.slice(&neg.generated, 0, 0..1)?;
    let mut mask: Vec<bool> = neg.t5_mask[..neg.t5_len].to_vec();
    mask.resize(PROJECTOR_ROWS, false);
    mask.extend(std::iter::repeat_n(true, PROJECTOR_ROWS));
    Ok((rec.concat(&[&neg_generated, &generated], 0)?, rec.concat(&[&neg_t5, &t5], 0)?, mask))
}

/// The negative prompt of guidance when none is given: the one of AudioLDM 2's published
/// example and of M2UGen's `generate_music` (`diffusers` itself defaults to "").
pub const DEFAULT_NEGATIVE: &str = "Low quality.";

/// Most tokens T5 takes from a prompt, `</s>` included (its tokenizer's `model_max_length`).
pub const MAX_T5_TOKENS: usize = 512;

/// CLAP's (RoBERTa's) and T5's tokenizers, checked against the model they feed, tokenizing as
/// `diffusers`' `encode_prompt`: CLAP's ids `<s> … </s>` padded with CLAP's padding id (1) and
/// cut to what CLAP's positions allow (512 for the published model); T5's ending with `</s>`,
/// padded with `<pad>` (0), cut to [`MAX_T5_TOKENS`], the negative prompt's padded *and cut* to
/// the prompts' T5 length (`diffusers` pads `uncond_input` to `prompt_embeds.shape[1]`).
///
/// CLAP's rows are padded to the longest row of the batch rather than to 512: with the mask
/// and RoBERTa's positions (counted over real tokens only), padding changes nothing.
pub struct Audioldm2Tokenizers {
    clap: tokenizers::Tokenizer,
    t5: tokenizers::Tokenizer,
    /// Most CLAP tokens, `<s>` and `</s>` included.
    clap_max: usize,
    clap_pad: u32,
    t5_pad: u32,
}

/// A batch of prompts as both encoders' ids, owned; [`PromptIds::prompts`] lends it to
/// [`Audioldm2::encode_text`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PromptIds {
    /// Rows (prompts).
    pub batch: usize,
    /// CLAP's ids `(batch, clap_len)`.
    pub clap_ids: Vec<u32>,
    /// Which of them are real tokens.
    pub clap_mask: Vec<bool>,
    /// CLAP tokens per row.
    pub clap_len: usize,
    /// T5's ids `(batch, t5_len)`.
    pub t5_ids: Vec<u32>,
    /// Which of them are real tokens.
    pub t5_mask: Vec<bool>,
    /// T5 tokens per row.
    pub t5_len: usize,
}

impl PromptIds {
    /// Rows of ids, each padded with `pad` to the longest (at least one token).
    fn pack(rows: &[Vec<u32>], pad: u32) -> (Vec<u32>, Vec<bool>, usize) {
        let len = rows.iter().map(Vec::len).max().unwrap_or(0).max(1);
        let mut ids = Vec::with_capacity(rows.len() * len);
        let mut mask = Vec::with_capacity(rows.len() * len);
        for r in rows {
            ids.extend(r.iter().copied().chain(std::iter::repeat_n(pad, len - r.len())));
            mask.extend((0..len).map(|i| i < r.len()));
        }
        (ids, mask, len)
    }

    fn new(clap: &[Vec<u32>], clap_pad: u32, t5: &[Vec<u32>], t5_pad: u32) -> PromptIds {
        let (clap_ids, clap_mask, clap_len) = Self::pack(clap, clap_pad);
        let (t5_ids, t5_mask, t5_len) = Self::pack(t5, t5_pad);
        PromptIds { batch: clap.len(), clap_ids, clap_mask, clap_len, t5_ids, t5_mask, t5_len }
    }

    /// The batch as the text side takes it.
    pub fn prompts(&self) -> Prompts<'_> {
        Prompts { batch: self.batch, clap_ids: &self.clap_ids, clap_mask: &self.clap_mask, clap_len: self.clap_len, t5_ids: &self.t5_ids, t5_mask: &self.t5_mask, t5_len: self.t5_len }
    }
}

/// A `tokenizer.json` for `what`'s encoder, its own truncation and padding left out (the
/// pipeline's apply), refused when an id would fall outside the encoder's `vocab` rows.
fn load_tokenizer(field: &str, json: &[u8], what: &str, vocab: usize, specials: &[&str], folder: &str) -> Result<tokenizers::Tokenizer, m2ugen_core::Error> {
    let problem = |problem: String| m2ugen_core::Error::Config { field: field.into(), problem };
    let mut t = tokenizers::Tokenizer::from_bytes(json).map_err(|e| problem(format!("not a tokenizer the tokenizers library can load ({e})")))?;
    if let Some(missing) = specials.iter().find(|s| t.token_to_id(s).is_none()) {
        return Err(problem(format!("no {missing} token: this is not {what}'s tokenizer (convert AudioLDM 2 from a pipeline directory holding its {folder})")));
    }
    if let Some(top) = t.get_vocab(true).into_values().max().filter(|&id| id as usize >= vocab) {
        return Err(problem(format!("its ids go up to {top}, past the {vocab} rows of {what}'s embedding table: it is not this AudioLDM 2's tokenizer (convert AudioLDM 2 from a pipeline directory holding its own {folder})")));
    }
    t.with_truncation(None).map_err(|e| problem(e.to_string()))?;
    t.with_padding(None);
    Ok(t)
}

/// The ids of `text` with the tokenizer's special tokens, at most `max` of them: the text is
/// cut (from the right) to leave room for them, as `truncation=True` does.
fn encode(t: &tokenizers::Tokenizer, text: &str, max: usize, what: &str) -> Result<Vec<u32>> {
    use tokenizers::PostProcessor;
    let failed = |e: tokenizers::Error| Error::Music(format!("{what}'s tokenizer: {e}"));
    let mut encoding = t.encode(text, false).map_err(failed)?;
    let added = t.get_post_processor().map_or(0, |p| p.added_tokens(false));
    encoding.truncate(max.saturating_sub(added), 0, tokenizers::TruncationDirection::Right);
    Ok(t.post_process(encoding, None, true).map_err(failed)?.get_ids().to_vec())
}

impl Audioldm2Tokenizers {
    /// CLAP's `tokenizer.json` (the manifest's `clap_tokenizer`) and T5's (its
    /// `text_tokenizer`) for the AudioLDM 2 of `config`: refused, naming the file, when one
    /// cannot load, lacks its special tokens, or has ids past its encoder's vocabulary.
    pub fn from_bytes(clap: &[u8], t5: &[u8], config: &Audioldm2Config) -> Result<Audioldm2Tokenizers, m2ugen_core::Error> {
        let text = &config.clap.text_config;
        let clap = load_tokenizer("clap_tokenizer", clap, "CLAP", text.vocab_size, &["<s>", "</s>"], "tokenizer/ (RoBERTa's tokenizer.json, or vocab.json and merges.txt)")?;
        let t5 = load_tokenizer("text_tokenizer", t5, "T5", config.t5.vocab_size, &["</s>"], "tokenizer_2/tokenizer.json")?;
        // RoBERTa's positions start past the padding id: max_position_embeddings - pad - 1.
        let clap_max = text.max_position_embeddings.saturating_sub(text.pad_token_id + 1);
        if clap_max < 3 {
            return Err(m2ugen_core::Error::Config { field: "audioldm2.clap.text_config.max_position_embeddings".into(), problem: format!("{} positions leave no room for a prompt", text.max_position_embeddings) });
        }
        let t5_pad = t5.token_to_id("<pad>").unwrap_or(0);
        Ok(Audioldm2Tokenizers { clap, t5, clap_max, clap_pad: text.pad_token_id as u32, t5_pad })
    }

    /// Most CLAP tokens a prompt keeps, `<s>` and `</s>` included.
    pub fn clap_max(&self) -> usize {
        self.clap_max
    }

    /// CLAP's ids of `text`: `<s> … </s>`, cut to [`Audioldm2Tokenizers::clap_max`].
    pub fn clap_ids(&self, text: &str) -> Result<Vec<u32>> {
        encode(&self.clap, text, self.clap_max, "CLAP")
    }

    /// T5's ids of `text`: `… </s>`, cut to `max` tokens.
    pub fn t5_ids(&self, text: &str, max: usize) -> Result<Vec<u32>> {
        encode(&self.t5, text, max, "T5")
    }

    /// The guidance batch of `prompts`: with `negative`, its rows first (one per prompt, its T5
    /// ids padded or cut to the prompts' T5 length), then the prompts' rows; without it, the
    /// prompts' rows alone. What [`Audioldm2::encode_text`] and [`Audioldm2::condition`] take.
    pub fn batch(&self, prompts: &[&str], negative: Option<&str>) -> Result<PromptIds> {
        if prompts.is_empty() {
            return Err(Error::Music("audioldm2: no prompt to tokenize".into()));
        }
        let clap: Vec<Vec<u32>> = prompts.iter().map(|p| self.clap_ids(p)).collect::<Result<_>>()?;
        let t5: Vec<Vec<u32>> = prompts.iter().map(|p| self.t5_ids(p, MAX_T5_TOKENS)).collect::<Result<_>>()?;
        let Some(negative) = negative else { return Ok(PromptIds::new(&clap, self.clap_pad, &t5, self.t5_pad)) };
        let t5_len = t5.iter().map(Vec::len).max().unwrap_or(1);
        let (neg_clap, neg_t5) = (self.clap_ids(negative)?, self.t5_ids(negative, t5_len)?);
        let n = prompts.len();
        let clap_rows: Vec<Vec<u32>> = std::iter::repeat_n(neg_clap, n).chain(clap).collect();
        // The negative rows are at most the prompts' T5 length: packing pads them to it.
        let t5_rows: Vec<Vec<u32>> = std::iter::repeat_n(neg_t5, n).chain(t5).collect();
        Ok(PromptIds::new(&clap_rows, self.clap_pad, &t5_rows, self.t5_pad))
    }
}

impl Audioldm2Tokenizers {
    /// The negative prompt alone for embedding mode: one row, its T5 ids cut to
    /// [`PROJECTOR_ROWS`] (the rows of the projector's T5 part it is set beside).
    fn negative_alone(&self, negative: &str) -> Result<PromptIds> {
        let t5 = self.t5_ids(negative, PROJECTOR_ROWS.min(MAX_T5_TOKENS))?;
        Ok(PromptIds::new(&[self.clap_ids(negative)?], self.clap_pad, &[t5], self.t5_pad))
    }
}

/// What [`make_audioldm2`] makes: text, its negative, and the diffusion settings.
#[derive(Clone, Debug, PartialEq)]
pub struct Audioldm2Request {
    /// The text that conditions the track: the prompt (text mode) or the LLM's caption
    /// (caption mode).
    pub prompt: String,
    /// The negative prompt of guidance (not used when `settings.guidance` is 1 or less).
    pub negative: String,
    /// Length, steps, guidance, seed and waveforms.
    pub settings: DiffusionSettings,
}

impl Audioldm2Request {
    /// A request for `prompt` with the default negative prompt, [`DEFAULT_NEGATIVE`].
    pub fn new(prompt: impl Into<String>, settings: DiffusionSettings) -> Audioldm2Request {
        Audioldm2Request { prompt: prompt.into(), negative: DEFAULT_NEGATIVE.into(), settings }
    }
}

/// `request.settings.waveforms` waveforms of `request.prompt` through the text side (CLAP, T5,
/// the projection, GPT-2), with the negative prompt's rows under guidance, each
/// [`Geometry::samples`] long at [`Audioldm2::sampling_rate`] (16 kHz). The waveforms come in
/// the order of their noise (from `settings.seed`); [`clap_scores`] ranks them as `diffusers`
/// does.
/// `on_step(done, of)` after each denoising step; `cancel` stops between steps (an error
/// saying "stopped").
pub async fn make_audioldm2(gpu: &Gpu, model: &Audioldm2, tokenizers: &Audioldm2Tokenizers, request: &Audioldm2Request, on_step: impl FnMut(usize, usize), cancel: Option<&Cancel>) -> Result<Vec<Vec<f32>>> {
    let s = &request.settings;
    s.check()?;
    let g = model.checked_geometry(s.seconds)?;
    let ids = tokenizers.batch(&[request.prompt.as_str()], s.guided().then_some(request.negative.as_str()))?;
    let mut rec = Recorder::new(gpu);
    let text = model.encode_text(&mut rec, &ids.prompts())?;
    let cond = model.condition(&mut rec, &text.generated, &text.t5, &text.t5_mask, s.waveforms)?;
    rec.submit()?;
    model.make(gpu, &cond, &g, s, on_step, cancel).await
}

/// As [`make_audioldm2`], conditioned on M2UGen's output projector `states` for one track
/// (its raw output, `128 x t5 width + 8 x gpt2 width` values): scaled by
/// [`crate::music::EMBEDDING_SCALE`] (the projector was trained on 10 x the decoder's states;
/// the reference divides by 10 before AudioLDM 2) and split by [`embedding_batch`]. Under
/// guidance the `negative` prompt's row goes through the text side, which needs `tokenizers`
/// and the model's text encoders (without them, only guidance 1 or less runs).
#[allow(clippy::too_many_arguments)]
pub async fn make_audioldm2_embedding(
    gpu: &Gpu,
    model: &Audioldm2,
    tokenizers: Option<&Audioldm2Tokenizers>,
    states: &GpuTensor,
    negative: &str,
    settings: &DiffusionSettings,
    on_step: impl FnMut(usize, usize),
    cancel: Option<&Cancel>,
) -> Result<Vec<Vec<f32>>> {
    settings.check()?;
    let g = model.checked_geometry(settings.seconds)?;
    let mut rec = Recorder::new(gpu);
    let scale = rec.upload("embedding scale", &[1], states.dtype(), &[crate::music::EMBEDDING_SCALE])?;
    let states = rec.mul(states, &scale)?;
    let negative = if settings.guided() {
        let (Some(tokenizers), true) = (tokenizers, model.text.is_some()) else {
            return Err(Error::Unsupported("guidance in embedding mode puts the negative prompt through AudioLDM 2's text encoders and tokenizers, and this model has not both: set the guidance to 1 (none)".into()));
        };
        Some(model.encode_text(&mut rec, &tokenizers.negative_alone(negative)?.prompts())?)
    } else {
        None
    };
    let (generated, t5, mask) = embedding_batch(&mut rec, &model.config, negative.as_ref(), &states)?;
    let cond = model.condition(&mut rec, &generated, &t5, &mask, settings.waveforms)?;
    rec.submit()?;
    model.make(gpu, &cond, &g, settings, on_step, cancel).await
}

/// CLAP's audio branch's configuration when this port can rank waveforms with it, or why not
/// (a clause for a note: no branch, a branch `ClapAudioConfig::check` refuses, or a feature
/// extractor other than the fusion form). A branch that cannot run leaves the waveforms
/// unranked; it never stops AudioLDM 2 from loading.
pub fn clap_audio_support(config: &Audioldm2Config) -> std::result::Result<m2ugen_core::config::audioldm2::ClapAudioConfig, String> {
    match config.clap.audio(&format!("{PREFIX}.clap.config")) {
        Ok(None) => Err("this model has no CLAP audio branch to score them with".into()),
        Err(e) => Err(format!("this model's CLAP audio branch is not one this port runs: {e}")),
        Ok(Some(a)) if a.patch_embed_input_channels != CHANNELS => {
            Err(format!("this model's CLAP audio branch reads {} spectrogram channels, and only the feature extractor's fusion form ({CHANNELS}) is implemented", a.patch_embed_input_channels))
        }
        Ok(Some(a)) => Ok(a),
    }
}

/// CLAP's feature extractor for `audio`: `ClapFeatureExtractor` as AudioLDM 2's pipeline
/// configures it (48 kHz, 1024-sample frames every 480, 50 Hz to 14 kHz), its 10-s window cut to
/// what the model's width holds (a spectrogram of [`ClapAudioConfig::frames`] frames at most).
///
/// [`ClapAudioConfig::frames`]: m2ugen_core::config::audioldm2::ClapAudioConfig::frames
pub fn clap_mel_settings(audio: &m2ugen_core::config::audioldm2::ClapAudioConfig) -> ClapMelSettings {
    let mut s = ClapMelSettings::audioldm2();
    s.mel_bins = audio.num_mel_bins;
    s.max_samples = s.max_samples.min(audio.frames().saturating_sub(1) * s.hop);
    s
}

/// CLAP's audio-text score of each of `waveforms` (this model's audio, 16 kHz) against `text`,
/// as `diffusers`' `score_waveforms` ranks several waveforms of one prompt: the cosine of the
/// normalised text and audio embeddings (the reference's logits without `logit_scale`, which
/// does not change the order). `None` when the model has no audio branch it can run.
///
/// Each waveform is resampled to 48 kHz (by the band-limited resampler of `m2ugen_media`; the
/// reference uses librosa's), goes through the feature extractor ([`clap_mel`]: a waveform
/// longer than the window is fused from crops at fixed starts, where the reference draws them at
/// random), is stretched to the model's frames and embedded.
pub async fn clap_scores(gpu: &Gpu, model: &Audioldm2, tokenizers: &Audioldm2Tokenizers, text: &str, waveforms: &[Vec<f32>]) -> Result<Option<Vec<f32>>> {
    let (Some(audio), Some(encoders)) = (&model.clap_audio, &model.text) else { return Ok(None) };
    if waveforms.is_empty() {
        return Ok(Some(Vec::new()));
    }
    let c = audio.config();
    let settings = clap_mel_settings(c);
    let (bins, frames) = (c.num_mel_bins, c.frames());
    let ids = tokenizers.clap_ids(text)?;
    let mut rec = Recorder::new(gpu);
    let text_embed = encoders.clap.forward(&mut rec, &ids, &vec![true; ids.len()], 1, ids.len())?;
    let mut embeds = Vec::with_capacity(waveforms.len());
    for (w, samples) in waveforms.iter().enumerate() {
        let at_48k = m2ugen_media::resample::resample(samples, model.sampling_rate() as u32, settings.sampling_rate);
        let mel = clap_mel(&at_48k, &settings);
        if mel.is_empty() {
            return Err(Error::Unsupported(format!("waveform {} is empty: CLAP cannot score it", w + 1)));
        }
        let stretched = stretch_frames(&mel, CHANNELS, settings.frames(), bins, frames);
        let features = rec.upload("clap spectrogram", &[CHANNELS, frames, bins], model.dtype, &stretched)?;
        embeds.push(audio.embed(&mut rec, &features)?);
    }
    let refs: Vec<&GpuTensor> = embeds.iter().collect();
    let audio_embeds = rec.concat(&refs, 0)?;
    rec.submit()?;
    let t = gpu.read(&text_embed).await?;
    let a = gpu.read(&audio_embeds).await?;
    Ok(Some(a.chunks(t.len()).map(|row| row.iter().zip(&t).map(|(x, y)| x * y).sum()).collect()))
}

/// The order of `scores`, best first (ties keep the noise order; a score that is not a number
/// comes last).
pub fn ranked(scores: &[f32]) -> Vec<usize> {
    let key = |i: usize| if scores[i].is_nan() { f32::NEG_INFINITY } else { scores[i] };
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| key(b).total_cmp(&key(a)));
    order
}

impl Audioldm2 {
    /// [`Audioldm2::geometry`], refused when `seconds` make no latent row.
    fn checked_geometry(&self, seconds: f32) -> Result<Geometry> {
        let g = self.geometry(seconds);
        if g.height == 0 || g.samples == 0 {
            return Err(Error::MusicSetting { setting: "length", value: format!("{seconds} s"), range: "at least one latent row of the VAE (10 ms for AudioLDM 2's published model)" });
        }
        Ok(g)
    }

    /// Noise from the seed, denoised under `cond`, decoded.
    async fn make(&self, gpu: &Gpu, cond: &Conditioning, g: &Geometry, s: &DiffusionSettings, on_step: impl FnMut(usize, usize), cancel: Option<&Cancel>) -> Result<Vec<Vec<f32>>> {
        let latents = self.noise(s.seed, s.waveforms, g);
        let latents = self.denoise(gpu, cond, latents, g, s, on_step, cancel).await?;
        self.decode(gpu, &latents, g).await
    }
}

#[cfg(test)]
mod tests {
    use super::{clap_mel_settings, ranked};
    use m2ugen_core::config::audioldm2::ClapAudioConfig;

    #[test]
    fn ranking_is_best_first_and_ties_keep_the_noise_order() {
        assert_eq!(ranked(&[0.1, 0.7, -0.2, 0.7]), vec![1, 3, 0, 2]);
        assert_eq!(ranked(&[f32::NAN, -0.5, 0.2]), vec![2, 1, 0]);
        assert!(ranked(&[]).is_empty());
    }

    #[test]
    fn the_feature_extractor_window_fits_the_model() {
        // HTSAT-tiny reads 1024 frames: the reference's 10 s (1001 frames) fit.
        let s = clap_mel_settings(&ClapAudioConfig::htsat_tiny());
        assert_eq!((s.max_samples, s.frames()), (480_000, 1001));
        // The fixture's 64 frames: 63 hops of 480 samples.
        let s = clap_mel_settings(&ClapAudioConfig::tiny());
        assert_eq!((s.max_samples, s.frames()), (30_240, 64));
    }
}
