//! AudioLDM 2 as `diffusers` publishes it (`cvssp/audioldm2-music`): a pipeline directory with
//! `model_index.json` and one folder per part, each saved by `diffusers` or `transformers`
//! itself (`config.json` beside `model.safetensors` or `diffusion_pytorch_model.safetensors`, or
//! shards listed in its `.index.json`), `scheduler/scheduler_config.json`, and optionally the
//! tokenizers: `tokenizer/` (CLAP's, RoBERTa's) and `tokenizer_2/` (T5's).
//!
//! The parts' tensors keep their names under `audioldm2.<role>.` ([`crate::names::audioldm2_role`]);
//! their configurations go into the manifest's `audioldm2` component, one entry per role, checked
//! here as the models will read them
//! ([`m2ugen_core::config::audioldm2::Audioldm2Config`]), so a bad file fails at conversion,
//! naming the file and the field.

use crate::llama::Overlay;
use crate::names::AUDIOLDM2_PARTS;
use crate::read_json;
use crate::source::{Safetensors, TensorSource};
use anyhow::{bail, Context, Result};
use m2ugen_core::config::audioldm2::Audioldm2Config;
use std::path::{Path, PathBuf};

/// Components read from a `diffusers` pipeline directory (`--diffusers NAME=DIR`).
pub const PIPELINES: [&str; 1] = ["audioldm2"];

/// The rows of T5 states in M2UGen-AudioLDM2's projector output, before the GPT-2 states.
pub const AUDIOLDM2_PROMPT_ROWS: usize = 128;

/// The width of the output projector of an M2UGen made for this AudioLDM 2: 128 rows of T5's
/// width (`prompt_embeds`), then GPT-2's generated states (`generated_prompt_embeds`).
pub fn m2ugen_projector_width(config: &Audioldm2Config) -> usize {
    AUDIOLDM2_PROMPT_ROWS * config.t5.d_model + config.gpt2.new_tokens() * config.gpt2.n_embd
}

/// AudioLDM 2, opened and checked: nothing read but the headers and the JSON files.
pub struct Audioldm2 {
    /// Each part's role (`unet`, `vae`, ...) and its tensors, named as in its file.
    pub parts: Vec<(&'static str, Box<dyn TensorSource>)>,
    /// The manifest's `audioldm2` component: each part's configuration under its role, and the
    /// scheduler's under `scheduler`.
    pub config: serde_json::Value,
    /// The same, typed.
    pub typed: Audioldm2Config,
    /// CLAP's tokenizer (RoBERTa's) as `tokenizer.json` bytes, when the directory has one.
    pub clap_tokenizer: Option<Vec<u8>>,
    /// T5's `tokenizer.json`, when the directory has one.
    pub t5_tokenizer: Option<Vec<u8>>,
}

/// The folder of `role`, and the file its configuration is read from.
fn config_file(dir: &Path, role: &str) -> PathBuf {
    match AUDIOLDM2_PARTS.iter().find(|p| p.0 == role) {
        Some((_, folder, _)) => dir.join(folder).join("config.json"),
        None if role == "scheduler" => dir.join("scheduler/scheduler_config.json"),
        None => dir.join("model_index.json"),
    }
}

/// Opens and checks the AudioLDM 2 pipeline directory `dir`: `model_index.json` says
/// `AudioLDM2Pipeline` with a T5 second encoder, every part's files are there (an error lists
/// each missing path), and the configurations parse and fit together.
pub fn open_audioldm2(dir: &Path) -> Result<Audioldm2> {
    let index_path = dir.join("model_index.json");
    if !dir.is_dir() {
        bail!("{}: no such directory", dir.display());
    }
    if !index_path.is_file() {
        bail!("{}: no model_index.json here: AudioLDM 2 is read from a diffusers pipeline directory (model_index.json and a folder per part, as cvssp/audioldm2-music is published)", dir.display());
    }
    let index = read_json(&index_path)?;
    let class = index.get("_class_name").and_then(|c| c.as_str()).unwrap_or("(none)");
    if class != "AudioLDM2Pipeline" {
        bail!("{}: _class_name is '{class}', not AudioLDM2Pipeline (the only diffusers pipeline read)", index_path.display());
    }
    let second = index.pointer("/text_encoder_2/1").and_then(|c| c.as_str());
    if let Some(other) = second.filter(|&c| c != "T5EncoderModel") {
        bail!("{}: text_encoder_2 is {other}: only T5EncoderModel (AudioLDM 2 for audio and music) is read, not the speech pipeline's", index_path.display());
    }

    // Every file, before anything is read: a whole folder missing is named once.
    let mut missing = Vec::new();
    let mut need = |path: PathBuf, alternative: Option<PathBuf>| {
        let folder = path.parent().map(Path::to_path_buf).unwrap_or_default();
        if !folder.is_dir() {
            let shown = format!("{}/", folder.display());
            if !missing.contains(&shown) {
                missing.push(shown);
            }
        } else if !path.is_file() && !alternative.is_some_and(|a| a.is_file()) {
            missing.push(path.display().to_string());
        }
    };
    for (_, folder, weights) in AUDIOLDM2_PARTS {
        need(dir.join(folder).join("config.json"), None);
        need(dir.join(folder).join(weights), Some(dir.join(folder).join(format!("{weights}.index.json"))));
    }
    need(dir.join("scheduler/scheduler_config.json"), None);
    if !missing.is_empty() {
        bail!("{}: missing (an AudioLDM 2 pipeline has unet/, vae/, vocoder/, text_encoder/, text_encoder_2/, projection_model/, language_model/ and scheduler/)", missing.join(", "));
    }

    let mut config = serde_json::Map::new();
    for (role, ..) in AUDIOLDM2_PARTS {
        config.insert(role.to_string(), read_json(&config_file(dir, role))?);
    }
    config.insert("scheduler".into(), read_json(&config_file(dir, "scheduler"))?);
    let config = serde_json::Value::Object(config);
    let typed = m2ugen_core::config::parse::<Audioldm2Config>("audioldm2", &config).and_then(|c| c.check().map(|()| c)).map_err(|e| {
        // The field says which part: `audioldm2.vae.scaling_factor` is vae/config.json's.
        let file = match &e {
            m2ugen_core::Error::Config { field, .. } => config_file(dir, field.split('.').nth(1).unwrap_or_default()),
            _ => index_path.clone(),
        };
        anyhow::anyhow!("{}: {e}", file.display())
    })?;

    let mut parts: Vec<(&'static str, Box<dyn TensorSource>)> = Vec::new();
    for (role, folder, weights) in AUDIOLDM2_PARTS {
        parts.push((role, open_weights(&dir.join(folder), weights)?));
    }
    Ok(Audioldm2 { parts, config, typed, clap_tokenizer: clap_tokenizer(&dir.join("tokenizer"))?, t5_tokenizer: t5_tokenizer(&dir.join("tokenizer_2"))? })
}

/// `folder/weights`, or the shards its `.index.json` lists.
fn open_weights(folder: &Path, weights: &str) -> Result<Box<dyn TensorSource>> {
    let index = folder.join(format!("{weights}.index.json"));
    if folder.join(weights).is_file() || !index.is_file() {
        return Ok(Box::new(Safetensors::open(&folder.join(weights))?));
    }
    let map = read_json(&index)?;
    let map = map.get("weight_map").and_then(|m| m.as_object()).with_context(|| format!("{}: no 'weight_map'", index.display()))?;
    let mut files: Vec<&str> = map.values().filter_map(|v| v.as_str()).collect();
    files.sort_unstable();
    files.dedup();
    let mut shards: Vec<Box<dyn TensorSource>> = Vec::new();
    for f in files {
        if f.contains('/') || f.contains('\\') || f.starts_with('.') {
            bail!("{}: weight_map names '{f}', not a file beside it", index.display());
        }
        shards.push(Box::new(Safetensors::open(&folder.join(f))?));
    }
    Ok(Box::new(Overlay(shards)))
}

/// CLAP's tokenizer from `tokenizer/`: its `tokenizer.json`, or one built from RoBERTa's
/// `vocab.json` and `merges.txt`; nothing when the folder is not there.
fn clap_tokenizer(folder: &Path) -> Result<Option<Vec<u8>>> {
    if !folder.is_dir() {
        return Ok(None);
    }
    if folder.join("tokenizer.json").is_file() {
        return crate::read_text_tokenizer(&folder.join("tokenizer.json")).map(Some);
    }
    if folder.join("vocab.json").is_file() && folder.join("merges.txt").is_file() {
        return crate::tokenizer::roberta_tokenizer(&folder.join("vocab.json"), &folder.join("merges.txt")).map(Some);
    }
    bail!("{}: neither tokenizer.json nor vocab.json and merges.txt: convert the tokenizer to tokenizer.json (RobertaTokenizerFast's save_pretrained writes it)", folder.display())
}

/// T5's tokenizer from `tokenizer_2/`: its `tokenizer.json`; nothing when the folder is not there.
fn t5_tokenizer(folder: &Path) -> Result<Option<Vec<u8>>> {
    if !folder.is_dir() {
        return Ok(None);
    }
    if folder.join("tokenizer.json").is_file() {
        return crate::read_text_tokenizer(&folder.join("tokenizer.json")).map(Some);
    }
    bail!("{}: no tokenizer.json (T5's spiece.model is not read): convert the tokenizer to tokenizer.json (T5TokenizerFast's save_pretrained writes it)", folder.display())
}
