//! Loading a converted model: the loader (m2ugen-weights) streams and verifies each tensor, and
//! the store (m2ugen-models) uploads it as it arrives; then the models are built from the store
//! and the manifest's typed configurations.

use m2ugen_core::config::{parse, LlamaParams};
use m2ugen_core::DType;
use m2ugen_gpu::Gpu;
use m2ugen_models::{Llama, Store};
use m2ugen_weights::loader::{load_manifest, load_tensors, Event, Fetcher, LoadOptions};
use m2ugen_weights::Manifest;

/// Why loading failed: the weights (download, hash, manifest), or the model they make.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Fetching or checking the weights failed.
    #[error(transparent)]
    Weights(#[from] m2ugen_weights::Error),
    /// The weights do not make the model.
    #[error(transparent)]
    Model(#[from] m2ugen_models::Error),
}

impl From<m2ugen_core::Error> for LoadError {
    fn from(e: m2ugen_core::Error) -> Self {
        LoadError::Model(e.into())
    }
}

/// Streams the manifest's tensors whose names `wanted` accepts from `fetcher`, verifying each,
/// and uploads them as they arrive. `on_event` receives progress and notices.
pub async fn load_store<F: Fetcher>(
    gpu: &Gpu,
    dtype: DType,
    fetcher: &F,
    manifest: &Manifest,
    wanted: impl Fn(&str) -> bool,
    options: &LoadOptions<'_>,
    on_event: impl FnMut(Event),
) -> Result<Store, LoadError> {
    let names: Vec<&str> = manifest.tensors.iter().map(|t| t.name.as_str()).filter(|n| wanted(n)).collect();
    let mut store = Store::new(dtype);
    load_tensors(fetcher, manifest, Some(&names), options, on_event, |entry, bytes| {
        store
            .insert(gpu, &entry.name, &entry.shape, entry.dtype, &bytes)
            .map_err(|e| m2ugen_weights::Error::Consume { tensor: entry.name.clone(), problem: e.to_string() })
    })
    .await?;
    Ok(store)
}

/// The LLM's stored `params.json` (the manifest's `llama` component), typed.
pub fn llama_params(manifest: &Manifest) -> Result<LlamaParams, LoadError> {
    let value = manifest.components.get("llama").ok_or_else(|| m2ugen_core::Error::Config { field: "llama".into(), problem: format!("the manifest of '{}' has no 'llama' component", manifest.model) })?;
    Ok(parse("llama", value)?)
}

/// Builds the LLM of `manifest` from `store` (taking its tensors), with a KV cache of up to
/// `max_seq` positions.
pub fn build_llama(gpu: &Gpu, manifest: &Manifest, store: &mut Store, max_seq: usize) -> Result<Llama, LoadError> {
    let config = Llama::config(&llama_params(manifest)?, manifest.kind, store, max_seq)?;
    Ok(Llama::load(gpu, store, config)?)
}

/// Loads the LLM (`llm.*`) of the model at `fetcher`: manifest, tensors, model. Returns the
/// manifest too.
pub async fn load_llama<F: Fetcher>(gpu: &Gpu, dtype: DType, fetcher: &F, max_seq: usize, options: &LoadOptions<'_>) -> Result<(Manifest, Llama), LoadError> {
    let manifest = load_manifest(fetcher).await?;
    let mut store = load_store(gpu, dtype, fetcher, &manifest, |n| n.starts_with("llm."), options, |_| {}).await?;
    let llama = build_llama(gpu, &manifest, &mut store, max_seq)?;
    Ok((manifest, llama))
}

/// What answering questions about media needs: the LLM, the encoders the model has, and its
/// tokenizer.
pub struct Understanding {
    /// The manifest.
    pub manifest: Manifest,
    /// The LLM.
    pub llama: Llama,
    /// The media encoders and adapters the model has.
    pub encoders: crate::features::Encoders,
    /// The tokenizer (the manifest's, hash-checked).
    pub tokenizer: crate::tokenizer::TextTokenizer,
}

/// Loads the LLM, the encoders and the tokenizer of the model at `fetcher` (not its music
/// decoder), with a KV cache of up to `max_seq` positions per sequence.
pub async fn load_understanding<F: Fetcher>(gpu: &Gpu, dtype: DType, fetcher: &F, max_seq: usize, options: &LoadOptions<'_>) -> Result<Understanding, LoadError> {
    let manifest = load_manifest(fetcher).await?;
    load_understanding_of(gpu, dtype, fetcher, manifest, max_seq, options, |_| {}).await
}

/// As [`load_understanding`], with the manifest already read; `on_event` receives progress.
pub async fn load_understanding_of<F: Fetcher>(gpu: &Gpu, dtype: DType, fetcher: &F, manifest: Manifest, max_seq: usize, options: &LoadOptions<'_>, on_event: impl FnMut(Event)) -> Result<Understanding, LoadError> {
    let entry = manifest.tokenizer.clone().ok_or_else(|| m2ugen_core::Error::Config { field: "tokenizer".into(), problem: format!("the model '{}' has no tokenizer (convert it with --tokenizer)", manifest.model) })?;
    let bytes = m2ugen_weights::loader::load_file(fetcher, &entry, options.cache).await?;
    let tokenizer = crate::tokenizer::TextTokenizer::from_bytes(&bytes).map_err(|e| m2ugen_core::Error::Config { field: "tokenizer".into(), problem: e.to_string() })?;
    let mut store = load_store(gpu, dtype, fetcher, &manifest, |n| n.starts_with("llm.") || crate::features::is_encoder_tensor(n), options, on_event).await?;
    let llama = build_llama(gpu, &manifest, &mut store, max_seq)?;
    let encoders = crate::features::Encoders::build(gpu, &manifest, &mut store, llama.config.dim)?;
    Ok(Understanding { manifest, llama, encoders, tokenizer })
}

/// The `musicgen` component's configuration, typed.
pub fn musicgen_config(manifest: &Manifest) -> Result<m2ugen_core::config::MusicgenConfig, LoadError> {
    let value = manifest.components.get("musicgen").ok_or_else(|| m2ugen_core::Error::Config { field: "musicgen".into(), problem: format!("the model '{}' has no music decoder (no 'musicgen' component): convert it with --hf musicgen=DIR", manifest.model) })?;
    Ok(parse("musicgen", value)?)
}

/// Loads MusicGen (T5 and its tokenizer, the decoder, EnCodec) of the model at `fetcher`, the
/// decoder's positions sized for `max_steps` steps. `on_event` receives progress.
pub async fn load_music<F: Fetcher>(gpu: &Gpu, dtype: DType, fetcher: &F, manifest: &Manifest, max_steps: usize, options: &LoadOptions<'_>, on_event: impl FnMut(Event)) -> Result<crate::music::MusicModel, LoadError> {
    let config = musicgen_config(manifest)?;
    let tokenizer = match &manifest.text_tokenizer {
        Some(entry) => {
            let bytes = m2ugen_weights::loader::load_file(fetcher, entry, options.cache).await?;
            Some(crate::tokenizer::TextTokenizer::from_bytes(&bytes).map_err(|e| m2ugen_core::Error::Config { field: "text_tokenizer".into(), problem: e.to_string() })?)
        }
        None => None,
    };
    // EnCodec's encoder and quantizer statistics are not needed to make music: not fetched.
    let wanted = |n: &str| n.starts_with("musicgen.") && (!n.starts_with("musicgen.audio_encoder.") || m2ugen_models::encodec::EncodecDecoder::needs("musicgen.audio_encoder", n));
    let mut store = load_store(gpu, dtype, fetcher, manifest, wanted, options, on_event).await?;
    Ok(crate::music::MusicModel::build(gpu, &mut store, config, tokenizer, max_steps)?)
}

/// The `audioldm2` component's configuration (every part's), typed and checked.
pub fn audioldm2_config(manifest: &Manifest) -> Result<m2ugen_core::config::audioldm2::Audioldm2Config, LoadError> {
    let value = manifest.components.get("audioldm2").ok_or_else(|| m2ugen_core::Error::Config { field: "audioldm2".into(), problem: format!("the model '{}' has no AudioLDM 2 (no 'audioldm2' component): convert it with --diffusers audioldm2=DIR", manifest.model) })?;
    let config: m2ugen_core::config::audioldm2::Audioldm2Config = parse("audioldm2", value)?;
    config.check()?;
    Ok(config)
}

/// Loads AudioLDM 2 (of `audioldm2.*`, what makes audio: the UNet, the VAE's decoder,
/// HiFi-GAN, and CLAP's text branch, T5, the projection and GPT-2 when the model has them) of
/// the model at `fetcher`, with CLAP's and T5's tokenizers when the manifest has both
/// (`clap_tokenizer`, `text_tokenizer`) and the model its text side. With `ranking`, CLAP's
/// audio branch too, when the model has one this port runs (it only scores several waveforms
/// of one text: [`crate::audioldm2::clap_scores`]). The tokenizers are read and checked first,
/// before any tensor is fetched. `on_event` receives progress.
pub async fn load_audioldm2<F: Fetcher>(
    gpu: &Gpu,
    dtype: DType,
    fetcher: &F,
    manifest: &Manifest,
    ranking: bool,
    options: &LoadOptions<'_>,
    on_event: impl FnMut(Event),
) -> Result<(crate::audioldm2::Audioldm2, Option<crate::audioldm2::Audioldm2Tokenizers>), LoadError> {
    let config = audioldm2_config(manifest)?;
    let p = crate::audioldm2::PREFIX;
    let has_text = manifest.tensors.iter().any(|t| t.name.starts_with(&format!("{p}.gpt2.")));
    let tokenizers = match (&manifest.clap_tokenizer, &manifest.text_tokenizer) {
        (Some(clap), Some(t5)) if has_text => {
            let clap = m2ugen_weights::loader::load_file(fetcher, clap, options.cache).await?;
            let t5 = m2ugen_weights::loader::load_file(fetcher, t5, options.cache).await?;
            Some(crate::audioldm2::Audioldm2Tokenizers::from_bytes(&clap, &t5, &config)?)
        }
        _ => None,
    };
    // What the models take: not the VAE's encoder, nor CLAP's audio branch unless ranking.
    let mut text: std::collections::HashSet<String> = if has_text { m2ugen_models::audioldm2_text::TextEncoders::tensors(p, &config).into_iter().map(|(n, _)| n).collect() } else { Default::default() };
    let clap = format!("{p}.clap");
    // A branch this port cannot run leaves the waveforms unranked (clap_audio_support says why).
    let audio = if ranking && has_text { crate::audioldm2::clap_audio_support(&config).ok() } else { None };
    if let Some(audio) = audio {
        text.extend(m2ugen_models::clap_audio::ClapAudio::tensors(&clap, &audio).into_iter().map(|(n, _)| n));
    }
    let (unet, vocoder, vae) = (format!("{p}.unet."), format!("{p}.vocoder."), format!("{p}.vae"));
    let wanted = |n: &str| n.starts_with(&unet) || n.starts_with(&vocoder) || m2ugen_models::vae::VaeDecoder::needs(&vae, n) || text.contains(n);
    let mut store = load_store(gpu, dtype, fetcher, manifest, wanted, options, on_event).await?;
    let model = crate::audioldm2::Audioldm2::build(gpu, &mut store, config)?;
    Ok((model, tokenizers))
}
