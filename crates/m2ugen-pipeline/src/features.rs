//! From decoded media to the one-token features the LLM's adapter layers take: the encoders
//! (MERT, ViT, ViViT) and their adapters, built from a converted model's store and manifest,
//! with the processors' preprocessing on the CPU ([`m2ugen_core::media`]).
//!
//! **Music in windows.** The reference encodes the first 60 s of a clip as one window (its
//! chunking reads only the first minute of anything shorter than an hour). Here a clip is cut
//! into windows of [`MUSIC_WINDOW_SECONDS`] (the reference's length, so a clip up to a minute
//! gives the reference's feature), each normalised and encoded on its own, and the time means
//! of every hidden state averaged over all windows, weighted by their frames (the whole clip
//! counts, and GPU memory stays that of one window). A last window shorter than
//! [`MIN_WINDOW_SECONDS`] joins the one before (the processors' own padding is not reproduced).

use crate::load::LoadError;
use m2ugen_core::config::{parse, MertConfig, VitConfig, VivitConfig};
use m2ugen_core::media::{normalize_waveform, vit_pixels, vivit_pixels, Planar};
use m2ugen_gpu::{Gpu, GpuTensor, Recorder};
use m2ugen_models::adapter::MediaAdapter;
use m2ugen_models::mert::Mert;
use m2ugen_models::vision::{VisionConfig, VisionEncoder};
use m2ugen_models::{Error, Modality, Store};
use m2ugen_weights::Manifest;

/// MERT's sample rate.
pub const MUSIC_SAMPLE_RATE: usize = 24_000;
/// Seconds of music per encoded window (the reference's chunk).
pub const MUSIC_WINDOW_SECONDS: usize = 60;
/// The shortest window kept on its own; a shorter tail joins the window before it.
pub const MIN_WINDOW_SECONDS: usize = 5;

/// An encoder and its adapter, for one medium.
pub struct Encoder<E> {
    /// The encoder.
    pub encoder: E,
    /// Its adapter.
    pub adapter: MediaAdapter,
}

/// The media encoders a model has (each present when the manifest has its component).
pub struct Encoders {
    /// MERT and the music adapter.
    pub music: Option<Encoder<Mert>>,
    /// ViT and the image adapter.
    pub image: Option<Encoder<VisionEncoder>>,
    /// ViViT and the video adapter.
    pub video: Option<Encoder<VisionEncoder>>,
}

/// Whether `name` is a tensor of the encoders or their adapters (what [`Encoders::build`] takes).
pub fn is_encoder_tensor(name: &str) -> bool {
    ["mert.", "vit.", "vivit.", "music_adapter.", "image_adapter.", "video_adapter."].iter().any(|p| name.starts_with(p))
}


impl Encoders {
    /// Builds the encoders whose configuration the manifest holds, with their adapters to the
    /// LLM's width `dim`, taking their tensors from `store`. An encoder whose tensors are
    /// stored without its configuration is an error that says so.
    pub fn build(gpu: &Gpu, manifest: &Manifest, store: &mut Store, dim: usize) -> Result<Encoders, LoadError> {
        for (component, prefix) in [("mert", "mert."), ("vit", "vit."), ("vivit", "vivit.")] {
            if !manifest.components.contains_key(component) && store.names().any(|n| n.starts_with(prefix)) {
                return Err(m2ugen_core::Error::Config { field: component.into(), problem: format!("the model '{}' stores {component} weights but not its configuration (convert again with --config {component}=config.json)", manifest.model) }.into());
            }
        }
        let music = match manifest.components.get("mert") {
            Some(v) => {
                let c: MertConfig = parse("mert", v)?;
                let encoder = Mert::load(gpu, store, "mert", &c)?;
                let adapter = MediaAdapter::load(gpu, store, "music_adapter", encoder.states(), c.hidden_size, dim)?;
                Some(Encoder { encoder, adapter })
            }
            None => None,
        };
        let vision = |store: &mut Store, prefix: &str, adapter: &str, config: VisionConfig| -> Result<Encoder<VisionEncoder>, LoadError> {
            let hidden = config.hidden;
            let tokens = config.patches() + 1;
            let encoder = VisionEncoder::load(gpu, store, prefix, config)?;
            let adapter = MediaAdapter::load(gpu, store, adapter, tokens, hidden, dim)?;
            Ok(Encoder { encoder, adapter })
        };
        let image = match manifest.components.get("vit") {
            Some(v) => Some(vision(store, "vit", "image_adapter", VisionConfig::vit(&parse::<VitConfig>("vit", v)?))?),
            None => None,
        };
        let video = match manifest.components.get("vivit") {
            Some(v) => Some(vision(store, "vivit", "video_adapter", VisionConfig::vivit(&parse::<VivitConfig>("vivit", v)?))?),
            None => None,
        };
        Ok(Encoders { music, image, video })
    }

    /// Whether the model can take `modality`.
    pub fn has(&self, modality: Modality) -> bool {
        match modality {
            Modality::Music => self.music.is_some(),
            Modality::Image => self.image.is_some(),
            Modality::Video => self.video.is_some(),
        }
    }

    /// The music feature `(1, dim)` of mono samples at 24 kHz.
    pub fn music(&self, gpu: &Gpu, samples: &[f32]) -> Result<GpuTensor, Error> {
        let e = self.music.as_ref().ok_or_else(|| Error::Request("this model has no music encoder".into()))?;
        let windows = music_windows(samples.len());
        let weights: Vec<usize> = windows.iter().map(|w| e.encoder.frames(w.len())).collect();
        let total: usize = weights.iter().sum();
        if total == 0 {
            return Err(Error::Request(format!("music: {} samples are too short to encode (MERT needs at least {} samples, {:.3} s at 24 kHz)", samples.len(), e.encoder.receptive_field(), e.encoder.receptive_field() as f64 / MUSIC_SAMPLE_RATE as f64)));
        }
        let mut sum: Option<GpuTensor> = None;
        for (window, frames) in windows.into_iter().zip(weights) {
            let wave = gpu.upload("music window", &[window.len()], e.adapter.dtype(), &normalize_waveform(&samples[window]))?;
            let mut rec = Recorder::new(gpu);
            let means = e.encoder.state_means(&mut rec, &wave)?;
            // Weighted by frames: the mean over every frame of the clip.
            let share = rec.sum_rows(&means.reshape(&[1, means.numel()])?, None, None, frames as f32 / total as f32)?;
            let share = share.reshape(means.shape())?;
            let next = match &sum {
                Some(s) => rec.add(s, &share)?,
                None => share,
            };
            rec.submit()?;
            sum = Some(next);
        }
        let means = sum.ok_or_else(|| Error::Request("music: no samples".into()))?;
        let mut rec = Recorder::new(gpu);
        let feature = e.adapter.forward(&mut rec, &means)?;
        rec.submit()?;
        Ok(feature)
    }

    /// The image feature `(1, dim)` of a picture given as one planar frame of 3 channels in
    /// `[0, 1]` (what `ToTensor()` gives).
    pub fn image(&self, gpu: &Gpu, image: &Planar) -> Result<GpuTensor, Error> {
        let e = self.image.as_ref().ok_or_else(|| Error::Request("this model has no image encoder".into()))?;
        let c = e.encoder.config();
        if image.frames != 1 || image.channels != c.channels {
            return Err(Error::Request(format!("image: {} frames of {} channels, expected 1 of {}", image.frames, image.channels, c.channels)));
        }
        let pixels = vit_pixels(image, c.image_size);
        self.vision(gpu, e, &pixels)
    }

    /// The video feature `(1, dim)` of frames of bytes (0 to 255, planar), exactly as many as
    /// the encoder takes ([`Encoders::video_frames`]).
    pub fn video(&self, gpu: &Gpu, frames: &Planar) -> Result<GpuTensor, Error> {
        let e = self.video.as_ref().ok_or_else(|| Error::Request("this model has no video encoder".into()))?;
        let c = e.encoder.config();
        if frames.frames != c.frames || frames.channels != c.channels {
            return Err(Error::Request(format!("video: {} frames of {} channels, expected {} of {}", frames.frames, frames.channels, c.frames, c.channels)));
        }
        let pixels = vivit_pixels(frames, c.image_size);
        self.vision(gpu, e, &pixels)
    }

    /// Frames the video encoder takes per clip.
    pub fn video_frames(&self) -> Option<usize> {
        self.video.as_ref().map(|e| e.encoder.config().frames)
    }

    fn vision(&self, gpu: &Gpu, e: &Encoder<VisionEncoder>, pixels: &Planar) -> Result<GpuTensor, Error> {
        let c = e.encoder.config();
        let rows = pixels.token_rows(c.tubelet, c.patch);
        let tokens = gpu.upload("image tokens", &[c.patches(), c.token_width()], e.adapter.dtype(), &rows)?;
        let mut rec = Recorder::new(gpu);
        let hidden = e.encoder.forward(&mut rec, &tokens)?;
        let feature = e.adapter.forward(&mut rec, &hidden)?;
        rec.submit()?;
        Ok(feature)
    }
}

/// Sample ranges of the windows of a clip of `samples` (see the module's notes).
pub fn music_windows(samples: usize) -> Vec<std::ops::Range<usize>> {
    let window = MUSIC_WINDOW_SECONDS * MUSIC_SAMPLE_RATE;
    let min = MIN_WINDOW_SECONDS * MUSIC_SAMPLE_RATE;
    let mut out: Vec<std::ops::Range<usize>> = (0..samples).step_by(window).map(|s| s..(s + window).min(samples)).collect();
    if out.len() > 1 && out.last().map_or(0, |r| r.len()) < min {
        let tail = out.pop().map_or(samples, |r| r.end);
        if let Some(last) = out.last_mut() {
            last.end = tail;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_cover_the_clip_and_a_short_tail_joins_the_last() {
        let w = MUSIC_WINDOW_SECONDS * MUSIC_SAMPLE_RATE;
        assert_eq!(music_windows(100), vec![0..100]);
        assert_eq!(music_windows(w), vec![0..w]);
        assert_eq!(music_windows(2 * w + 10 * MUSIC_SAMPLE_RATE), vec![0..w, w..2 * w, 2 * w..2 * w + 10 * MUSIC_SAMPLE_RATE]);
        assert_eq!(music_windows(w + 100), vec![0..w + 100]);
        assert!(music_windows(0).is_empty());
    }
}
