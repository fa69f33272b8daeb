//! The AudioLDM 2 fixture (`tests/data/audioldm2/`, a `diffusers` pipeline directory with
//! `io.safetensors`) as the parity suites use it: where it is, its expected outputs, converted
//! through the real converter, and loaded back through the pipeline's loader.

use crate::Result;
use anyhow::Context;
use m2ugen_core::config::audioldm2::Audioldm2Config;
use m2ugen_gpu::registry::Elem;
use m2ugen_gpu::Gpu;
use m2ugen_weights::loader::{load_manifest, Fetcher, LoadOptions};
use m2ugen_weights::Manifest;

/// The AudioLDM 2 fixture directory (`model_index.json`, the part folders and `io.safetensors`):
/// `M2UGEN_AUDIOLDM2_FIXTURE`, or the repository's copy.
#[cfg(not(target_arch = "wasm32"))]
pub fn audioldm2_fixture() -> std::path::PathBuf {
    std::env::var_os("M2UGEN_AUDIOLDM2_FIXTURE").map(std::path::PathBuf::from).unwrap_or_else(|| crate::data_dir().join("audioldm2"))
}

/// The AudioLDM 2 fixture's `io.safetensors` (inputs `in.*`, `diffusers`' outputs `out.*`).
#[cfg(not(target_arch = "wasm32"))]
pub fn audioldm2_io() -> m2ugen_weights::safetensors::InMemory {
    let path = audioldm2_fixture().join("io.safetensors");
    m2ugen_weights::safetensors::InMemory::parse("io.safetensors", std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

/// Converts the AudioLDM 2 fixture (`--diffusers audioldm2=…`, floats as `float`) into a fresh
/// directory named by `tag`, through the real converter.
#[cfg(not(target_arch = "wasm32"))]
pub fn convert_audioldm2(tag: &str, float: m2ugen_weights::StoredType) -> std::path::PathBuf {
    let pipeline = audioldm2_fixture();
    let out = std::env::temp_dir().join(format!("m2ugen-audioldm2-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let inputs = m2ugen_convert::Inputs { checkpoint: None, params: None, llama: None, tokenizer: None, hf: vec![("audioldm2".into(), pipeline.as_path())], configs: vec![] };
    let options = m2ugen_convert::Options { float, quant: None, shard_bytes: 256 << 10, model: "audioldm2-fixture".into(), kind: None };
    m2ugen_convert::convert(&inputs, &out, &options).unwrap_or_else(|e| panic!("converting {}: {e:#}", pipeline.display()));
    out
}

/// Loads every `audioldm2.*` tensor of the converted model at `fetcher` in element type `elem`
/// (through the pipeline's loader, hashes checked), with the typed, checked `audioldm2`
/// component and the manifest.
pub async fn load_audioldm2_store<F: Fetcher>(gpu: &Gpu, elem: Elem, fetcher: &F) -> Result<(m2ugen_models::Store, Audioldm2Config, Manifest)> {
    let manifest = load_manifest(fetcher).await?;
    let value = manifest.components.get("audioldm2").with_context(|| format!("the model '{}' has no 'audioldm2' component: convert it with --diffusers audioldm2=DIR", manifest.model))?;
    let config: Audioldm2Config = m2ugen_core::config::parse("audioldm2", value)?;
    config.check()?;
    let clock = m2ugen_gpu::now_ms;
    let options = LoadOptions { in_flight: 4, max_resumes: 3, clock: &clock, cache: None };
    let store = m2ugen_pipeline::load::load_store(gpu, elem.dtype(), fetcher, &manifest, |n| n.starts_with("audioldm2."), &options, |_| {}).await?;
    Ok((store, config, manifest))
}
