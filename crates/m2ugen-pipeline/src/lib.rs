//! The M2UGen pipeline: from a prompt and media to text and music.
//!
//! - [`sampling`]: choosing the next token from logits (greedy, temperature, top-k, top-p) with
//!   a seeded generator, the same on every target.
//! - [`generate`]: KV-cached generation of several sequences at once, with stops, streaming and
//!   cancelling.
//! - [`chat`]: the reference's prompt, and conversations that keep earlier turns' keys and
//!   values.
//! - [`features`]: media to the LLM's one-token features (MERT, ViT, ViViT and their
//!   adapters, music in windows).
//! - [`music`]: MusicGen's codes frame by frame (guidance, sampling, continuation, long tracks
//!   in windows).
//! - [`quality`]: a quantized model against its float original (logit error, top-1 agreement).
//! - [`load`]: streaming a converted model into the models (the loader drives, the store
//!   uploads), and building them from the manifest's typed configurations.
//! - [`share`]: share links carrying a track's codes, parsed as untrusted input.
//! - [`studio`]: what a model can do (from its manifest), loading the parts a request needs,
//!   and the LLM's answer to the music decoder's conditioning; the page and `m2ugen generate`
//!   share it.
//! - [`diffusion`]: DDIM as `diffusers` samples (timesteps, schedule, one step, guidance).
//! - [`audioldm2`]: AudioLDM 2 as diffusers runs it (text side or M2UGen's projector, guided DDIM over
//!   the UNet, the VAE's mel, HiFi-GAN), with seeded noise.
//! - [`tokenizer`]: LLaMA's tokenizer, and incremental detokenization of a stream of tokens.
#![deny(missing_docs)]

pub mod audioldm2;
pub mod chat;
pub mod diffusion;
pub mod features;
pub mod generate;
pub mod load;
pub mod music;
pub mod quality;
pub mod sampling;
pub mod share;
pub mod studio;
pub mod tokenizer;

pub use sampling::{sample, Sampling};

/// Errors of the pipeline, each naming the setting at fault.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum Error {
    /// A sampling setting is out of its range.
    #[error("sampling: {setting} = {value} is out of range ({range})")]
    Setting {
        /// The setting.
        setting: &'static str,
        /// Its value, as given.
        value: String,
        /// The allowed range.
        range: &'static str,
    },
    /// There is nothing to sample from.
    #[error("sampling: the logits are empty")]
    NoLogits,
    /// A music setting is out of its range.
    #[error("music: {setting} = {value} is out of range ({range})")]
    MusicSetting {
        /// The setting.
        setting: &'static str,
        /// Its value, as given.
        value: String,
        /// The allowed range.
        range: &'static str,
    },
    /// The model cannot do what was asked (no tokenizer for T5, a projector of another width).
    #[error("music: {0}")]
    Unsupported(String),
    /// Music generation failed (the model or the GPU).
    #[error("music: {0}")]
    Music(String),
}

impl From<m2ugen_models::Error> for Error {
    fn from(e: m2ugen_models::Error) -> Self {
        Error::Music(e.to_string())
    }
}

impl From<m2ugen_gpu::Error> for Error {
    fn from(e: m2ugen_gpu::Error) -> Self {
        Error::Music(e.to_string())
    }
}

/// Result with the pipeline [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
