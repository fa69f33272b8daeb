//! AudioLDM 2 as `diffusers`' `AudioLDM2Pipeline` runs it: the text side (CLAP, T5, the
//! projection, GPT-2's 8 states) or M2UGen's projector in their place, DDIM over the UNet with
//! classifier-free guidance in one batch (the negative prompt's rows first), the VAE's mel
//! spectrogram and HiFi-GAN's 16 kHz audio, cut to the length asked for.
//!
//! Latents are channels-last `(waveforms, height, width, channels)`, height the time axis.
//! The initial noise is this crate's own seeded Gaussian, the same on every target (not
//! PyTorch's generator: a seed here makes another track than in `diffusers`).

use crate::diffusion::{guide, Ddim};
use crate::generate::Cancel;
use crate::{Error, Result};
use m2ugen_core::config::audioldm2::Audioldm2Config;
use m2ugen_core::rng::Rng;
use m2ugen_gpu::{Gpu, GpuTensor, Recorder};
use m2ugen_models::audioldm2_text::{Prompts, TextConditioning, TextEncoders};
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
        let unet = Unet::load(gpu, store, &format!("{PREFIX}.unet"), &config.unet)?;
        let vae = VaeDecoder::load(gpu, store, &format!("{PREFIX}.vae"), &config.vae)?;
        let vocoder = Hifigan::load(gpu, store, &format!("{PREFIX}.vocoder"), &config.vocoder)?;
        Ok(Audioldm2 { config, text, unet, vae, vocoder, dtype: store.dtype() })
    }

    /// Samples per second of the audio.
    pub fn sampling_rate(&self) -> usize {
        self.config.vocoder.sampling_rate
    }

    /// The sizes for `seconds` of audio: mel frames `seconds / (hop / rate)` rounded up to the
    /// VAE's scale, latents that over the scale, samples `seconds x rate`.
    pub fn geometry(&self, seconds: f32) -> Geometry {
        let c = &self.config;
        let scale = c.vae.scale_factor();
        let hop_seconds = c.vocoder.hop() as f64 / c.vocoder.sampling_rate as f64;
        let seconds = seconds as f64;
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
