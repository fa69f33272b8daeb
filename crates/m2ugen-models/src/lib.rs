//! The models of M2UGen, written once for every weight type and both targets, one file each.
//!
//! - [`layers`]: the blocks the models share (linear, RMSNorm, LayerNorm, SwiGLU, the GELU/ReLU
//!   MLP, multi-head attention).
//! - [`store`]: tensors uploaded as they arrive, taken by name by a model. This crate takes
//!   tensors by name and fetches nothing (the pipeline drives the loader).
//! - [`llama`]: LLaMA with M2UGen's adapter parts, its KV cache, prefill and decode.
//! - [`projector`]: the output projector (LLM states to the music decoder's conditioning).
//!
//! - [`mert`]: MERT-v1, the music encoder (every hidden state, or their time means).
//! - [`vision`]: ViT (images) and ViViT (video), one transformer behind two embeddings.
//! - [`adapter`]: the adapter from an encoder to the LLM's width, one per medium.
//!
//! - [`t5`]: T5's encoder (MusicGen's text conditioning).
//! - [`musicgen`]: MusicGen's decoder (codebook tokens over a KV cache, cross-attention to the
//!   conditioning), its delay pattern and classifier-free guidance.
//! - [`encodec`]: EnCodec's decoder (codes to a 32 kHz waveform), whole or in chunks.
//! - [`clap`]: CLAP's text branch (AudioLDM 2's first text encoder).
//! - [`gpt2`]: GPT-2 on embeddings with a KV cache (AudioLDM 2's language model).
//! - [`audioldm2_text`]: AudioLDM 2's text side: CLAP, T5, the projection and GPT-2 to the
//!   UNet's conditioning.
//! - [`unet`]: AudioLDM 2's denoiser (the UNet whose transformers attend to GPT-2's and T5's
//!   states).
//! - [`vae`]: the VAE's decoder (latents to a mel spectrogram), with the 2-D blocks the UNet
//!   shares.
//! - [`hifigan`]: SpeechT5's HiFi-GAN vocoder (mel spectrogram to 16 kHz audio).
#![deny(missing_docs)]

pub mod adapter;
pub mod audioldm2_text;
pub mod clap;
pub mod clap_audio;
pub mod encodec;
pub mod gpt2;
pub mod hifigan;
pub mod layers;
pub mod llama;
pub mod mert;
pub mod musicgen;
pub mod projector;
pub mod store;
pub mod t5;
pub mod unet;
pub mod vae;
pub mod vision;

pub use llama::{KvCache, Llama, Media};
pub use m2ugen_core::config::{LlamaConfig, ModelKind, Modality};
pub use projector::OutputProjector;
pub use store::Store;

/// Errors of the models, each naming the tensor or setting at fault.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A GPU operation failed.
    #[error(transparent)]
    Gpu(#[from] m2ugen_gpu::Error),
    /// The model needs a tensor the weights do not have.
    #[error("weights: no tensor named '{0}'")]
    MissingTensor(String),
    /// A tensor is not what the model expects.
    #[error("weights: tensor '{name}' {problem}")]
    Tensor {
        /// The tensor.
        name: String,
        /// What is wrong.
        problem: String,
    },
    /// The model's configuration is unusable.
    #[error("config: {field}: {problem}")]
    Config {
        /// The field.
        field: String,
        /// What is wrong.
        problem: String,
    },
    /// A stored configuration is unusable (a field named by the core crate).
    #[error(transparent)]
    Core(#[from] m2ugen_core::Error),
    /// A request does not fit the model or its cache.
    #[error("{0}")]
    Request(String),
}

/// Result with the models' [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
