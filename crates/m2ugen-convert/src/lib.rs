//! Conversion (`m2ugen convert`): official M2UGen checkpoints and Hugging Face models into the shard format.
//!
//! Reads `checkpoint.pth` safely (tensor data only, nothing executed; non-tensor objects such as
//! `args` are never touched) and `.safetensors` files by byte range, one tensor at a time, and
//! writes shards as it goes. At conversion:
//! LoRA pairs are folded into their base weights (`W + B·A`), weight-norm pairs into plain
//! weights (`g · v / ‖v‖`), the LLM's linear weights are quantized on request, and everything
//! else is stored as f16 (or f32 with `--dtype f32`, which the parity tests use).
//!
//! AudioLDM 2 comes as a `diffusers` pipeline directory ([`diffusers`]), given like a Hugging
//! Face model under the component name `audioldm2`.
#![deny(missing_docs)]

pub mod diffusers;
pub mod llama;
pub mod names;
pub mod source;
pub mod tokenizer;
pub mod writer;

use anyhow::{bail, Context, Result};
use half::f16;
use m2ugen_core::config::ModelKind;
use m2ugen_core::quant::{quantize, QuantFormat};
use m2ugen_weights::manifest::{Manifest, StoredType};
use names::Role;
use source::{Checkpoint, Safetensors, TensorSource};
use std::collections::BTreeMap;
use std::path::Path;

/// Conversion settings.
pub struct Options {
    /// Storage of unquantized float tensors: f16 or f32.
    pub float: StoredType,
    /// Quantization of the LLM's linear weights, if any.
    pub quant: Option<QuantFormat>,
    /// Shard size bound.
    pub shard_bytes: u64,
    /// Model id written to the manifest.
    pub model: String,
    /// What the model is; by default told from what was converted ([`model_kind`]).
    pub kind: Option<ModelKind>,
}

/// The width of M2UGen-AudioLDM2's projector output: 128 x 1024 `prompt_embeds` then 8 x 768
/// `generated_prompt_embeds` in one row.
pub const AUDIOLDM2_PROJECTOR_WIDTH: usize = 128 * 1024 + 8 * 768;

/// What a set of converted tensors is: M2UGen (18 adapter layers and an output projector; the
/// AudioLDM 2 one by its output width: the published one's, or the one the converted AudioLDM 2
/// takes), MU-LLaMA (20 adapter layers, no projector), a plain LLaMA, MusicGen or AudioLDM 2
/// alone, or components on their own. An LLM with other adapter layers is not one of these: the
/// caller must say (`--kind`).
pub fn model_kind(tensors: &[m2ugen_weights::TensorEntry], components: &BTreeMap<String, serde_json::Value>) -> Result<ModelKind> {
    let shape = |name: &str| tensors.iter().find(|t| t.name == name).map(|t| t.shape.clone());
    let has_llm = tensors.iter().any(|t| t.name.starts_with("llm."));
    let prefix_rows = shape("llm.prefix_query").and_then(|s| s.first().copied()).unwrap_or(0);
    let projector = shape("output_projector.out_proj.weight").and_then(|s| s.first().copied());
    let audioldm2_width = components.get("audioldm2").and_then(|c| m2ugen_core::config::parse("audioldm2", c).ok()).map(|c| diffusers::m2ugen_projector_width(&c));
    let (musicgen, audioldm2) = (components.contains_key("musicgen"), components.contains_key("audioldm2"));
    Ok(match (has_llm, prefix_rows, projector) {
        (true, 18, Some(w)) if w == AUDIOLDM2_PROJECTOR_WIDTH || Some(w) == audioldm2_width => ModelKind::M2ugenAudioldm2,
        (true, 18, Some(_)) => ModelKind::M2ugenMusicgen,
        (true, 20, None) => ModelKind::MuLlama,
        (true, 0, None) => ModelKind::Llama,
        (true, rows, _) => bail!("an LLM with {rows} adapter layers{} is neither M2UGen (18 and an output projector) nor MU-LLaMA (20): give --kind", if projector.is_some() { " and an output projector" } else { "" }),
        (false, ..) if musicgen && !audioldm2 => ModelKind::Musicgen,
        (false, ..) if audioldm2 && !musicgen => ModelKind::Audioldm2,
        (false, ..) => ModelKind::Components,
    })
}

/// `W + B·A` for `W` (out, in), `A` (rank, in), `B` (out, rank).
pub fn fold_lora(w: &mut [f32], a: &[f32], b: &[f32], out: usize, inp: usize, rank: usize) {
    for o in 0..out {
        for r in 0..rank {
            let scale = b[o * rank + r];
            if scale != 0.0 {
                let row = &mut w[o * inp..(o + 1) * inp];
                for (wi, &ai) in row.iter_mut().zip(&a[r * inp..(r + 1) * inp]) {
                    *wi += scale * ai;
                }
            }
        }
    }
}

/// `g · v / ‖v‖`, the norm taken over every dimension where `g` has size 1.
pub fn fold_weight_norm(g: &[f32], g_shape: &[usize], v: &[f32], v_shape: &[usize]) -> Result<Vec<f32>> {
    if g_shape.len() != v_shape.len() || g_shape.iter().zip(v_shape).any(|(&a, &b)| a != 1 && a != b) {
        bail!("weight norm: g {g_shape:?} does not broadcast over v {v_shape:?}");
    }
    // Index of the group (position in g) of each element of v.
    let group_of = |mut i: usize| {
        let (mut gi, mut stride) = (0, 1);
        for d in (0..v_shape.len()).rev() {
            let idx = i % v_shape[d];
            i /= v_shape[d];
            if g_shape[d] != 1 {
                gi += idx * stride;
                stride *= g_shape[d];
            }
        }
        gi
    };
    let mut sums = vec![0f64; g.len()];
    for (i, &x) in v.iter().enumerate() {
        sums[group_of(i)] += x as f64 * x as f64;
    }
    Ok(v.iter().enumerate().map(|(i, &x)| {
        let gi = group_of(i);
        (g[gi] as f64 * x as f64 / sums[gi].sqrt()) as f32
    }).collect())
}

fn float_bytes(values: &[f32], dtype: StoredType) -> Vec<u8> {
    match dtype {
        StoredType::F16 => values.iter().flat_map(|&v| f16::from_f32(v).to_le_bytes()).collect(),
        _ => values.iter().flat_map(|&v| v.to_le_bytes()).collect(),
    }
}

/// Whether a converted tensor is a linear weight of the LLM or of the MusicGen decoder (the
/// ones quantized on request; embeddings, norms and everything else stay float).
fn quantizable(ours: &str, shape: &[usize]) -> bool {
    let linear = shape.len() == 2 && ours.ends_with(".weight") && !ours.contains("norm") && !ours.contains("embed") && !ours.contains("lora");
    linear && (ours.starts_with("llm.layers.") || ours.starts_with("musicgen.decoder.model.decoder.layers.") || ours.starts_with("musicgen.decoder.lm_heads."))
}

/// Converts every tensor of `source`, named by `name_of`, into `writer`.
fn convert_source(source: &dyn TensorSource, name_of: &dyn Fn(&str) -> Role, writer: &mut writer::ShardWriter, options: &Options) -> Result<()> {
    let mut keys = source.keys();
    keys.sort();
    let mut folded_norms = std::collections::HashSet::new();
    for name in &keys {
        let (ours, values, shape) = match name_of(name) {
            Role::Skip | Role::LoraPart => continue,
            Role::WeightNormPart => {
                let Some((g, v, weight)) = names::weight_norm_parts(name) else { continue };
                if !folded_norms.insert(weight.clone()) {
                    continue;
                }
                let (gs, vs) = (source.shape(&g)?, source.shape(&v)?);
                let folded = fold_weight_norm(&source.read_f32(&g)?, &gs, &source.read_f32(&v)?, &vs).with_context(|| format!("folding '{weight}'"))?;
                let Role::Rename(ours) = name_of(&weight) else { continue };
                (ours, folded, vs)
            }
            Role::Rename(ours) => {
                let shape = source.shape(name)?;
                let mut values = source.read_f32(name)?;
                if let Some((l1, l2)) = names::lora_pair(name).filter(|(l1, _)| source.has(l1)) {
                    let (a_shape, b_shape) = (source.shape(&l1)?, source.shape(&l2)?);
                    let (&[out_f, in_f], &[rank, a_in], &[b_out, b_rank]) = (shape.as_slice(), a_shape.as_slice(), b_shape.as_slice()) else {
                        bail!("LoRA of '{name}': shapes {shape:?}, {a_shape:?}, {b_shape:?} are not matrices");
                    };
                    if a_in != in_f || b_out != out_f || b_rank != rank {
                        bail!("LoRA of '{name}': {shape:?} = {b_shape:?} x {a_shape:?} does not fit");
                    }
                    let (a, b) = (source.read_f32(&l1)?, source.read_f32(&l2)?);
                    fold_lora(&mut values, &a, &b, out_f, in_f, rank);
                    // The adapter prefix goes through wv without its LoRA (as the reference
                    // computes it): keep the pair so the model can take it back out.
                    if let Some(stem) = ours.strip_suffix(".attention.wv.weight") {
                        writer.add(&format!("{stem}.attention.wv_lora_down.weight"), &a_shape, options.float, &float_bytes(&a, options.float))?;
                        writer.add(&format!("{stem}.attention.wv_lora_up.weight"), &b_shape, options.float, &float_bytes(&b, options.float))?;
                    }
                }
                (ours, values, shape)
            }
        };
        match options.quant {
            Some(format) if quantizable(&ours, &shape) => {
                let q = quantize(format, shape[0], shape[1], &values)?;
                let bytes: Vec<u8> = q.q.iter().chain(&q.scales).flat_map(|w| w.to_le_bytes()).collect();
                let dtype = if format == QuantFormat::Q8 { StoredType::Q8 } else { StoredType::Q4 };
                writer.add(&ours, &shape, dtype, &bytes)?;
            }
            _ => writer.add(&ours, &shape, options.float, &float_bytes(&values, options.float))?,
        }
    }
    Ok(())
}

/// Checks a Hugging Face component's `config.json` against the typed configuration the models
/// read (for the components they know), so a bad file fails here, naming the field.
fn check_config(component: &str, config: &serde_json::Value) -> Result<()> {
    use m2ugen_core::config::{parse, MertConfig, MusicgenConfig, VitConfig, VivitConfig};
    match component {
        "mert" => parse::<MertConfig>(component, config).map(drop),
        "vit" => parse::<VitConfig>(component, config).map(drop),
        "vivit" => parse::<VivitConfig>(component, config).map(drop),
        "musicgen" => parse::<MusicgenConfig>(component, config).map(drop),
        _ => Ok(()),
    }?;
    Ok(())
}

/// What to convert.
pub struct Inputs<'a> {
    /// An official M2UGen (or MU-LLaMA) `checkpoint.pth`.
    pub checkpoint: Option<&'a Path>,
    /// The LLaMA `params.json` (Meta layout); by default the one of `llama`.
    pub params: Option<&'a Path>,
    /// A LLaMA directory in Meta's or Hugging Face's layout: the model itself, or the base the
    /// checkpoint's tensors are laid over.
    pub llama: Option<&'a Path>,
    /// LLaMA's `tokenizer.model` (SentencePiece) or `tokenizer.json`; `[AUD0]`..`[AUD7]` are added.
    pub tokenizer: Option<&'a Path>,
    /// Hugging Face model directories (`config.json` + `model.safetensors`), each stored under
    /// its component name (e.g. `musicgen`). A `musicgen` directory's `tokenizer.json` (T5's),
    /// when there, is written as the manifest's `text_tokenizer`.
    ///
    /// `audioldm2` names a `diffusers` pipeline directory instead (`model_index.json` and a
    /// folder per part: [`diffusers::open_audioldm2`]); its T5 tokenizer becomes the
    /// `text_tokenizer`, its CLAP tokenizer the `clap_tokenizer`.
    pub hf: Vec<(String, &'a Path)>,
    /// Configurations (`config.json`) of components whose weights come inside `checkpoint`
    /// (`mert`, `vit`, `vivit`); without one, the published model's is written when the
    /// checkpoint's copy has its shapes.
    pub configs: Vec<(String, &'a Path)>,
}

/// The encoders an official checkpoint carries copies of: component, a tensor whose shape tells
/// the published model, that shape, and the published configuration.
fn published_encoders() -> [(&'static str, &'static str, Vec<usize>, serde_json::Value); 3] {
    use m2ugen_core::config::{MertConfig, VitConfig, VivitConfig};
    let json = |v: serde_json::Result<serde_json::Value>| v.unwrap_or(serde_json::Value::Null);
    [
        ("mert", "mert_model.encoder.pos_conv_embed.conv.bias", vec![1024], json(serde_json::to_value(MertConfig::mert_v1_330m()))),
        ("vit", "vit_model.embeddings.position_embeddings", vec![1, 197, 768], json(serde_json::to_value(VitConfig::vit_base_patch16_224()))),
        ("vivit", "vivit_model.embeddings.position_embeddings", vec![1, 3137, 768], json(serde_json::to_value(VivitConfig::vivit_b_16x2_kinetics400()))),
    ]
}

/// Configurations for the encoders inside a checkpoint: given with `--config`, else the
/// published model's when the copy has its shapes, else an error naming what to give.
/// Components given with `--hf` are left to it.
fn checkpoint_encoder_configs(source: &dyn TensorSource, given: &[(String, &Path)], hf: &[(String, &Path)], components: &mut BTreeMap<String, serde_json::Value>) -> Result<()> {
    for (component, probe, shape, published) in published_encoders() {
        if let Some((_, path)) = given.iter().find(|(c, _)| c == component) {
            let config = read_json(path)?;
            check_config(component, &config).with_context(|| path.display().to_string())?;
            components.insert(component.to_string(), config);
            continue;
        }
        let prefix = probe.split('.').next().unwrap_or_default();
        let held = source.keys().iter().any(|n| n.starts_with(prefix));
        if !held || hf.iter().any(|(c, _)| c == component) {
            continue;
        }
        match source.shape(probe) {
            Ok(s) if s == shape => {
                components.insert(component.to_string(), published);
            }
            other => bail!(
                "the checkpoint's {component} ({prefix}.*) is not the published model ({probe} is {}, not {shape:?}): give its configuration with --config {component}=config.json",
                other.map(|s| format!("{s:?}")).unwrap_or_else(|_| "missing".into())
            ),
        }
    }
    Ok(())
}

/// A Hugging Face `tokenizer.json` (T5's, beside a MusicGen or in AudioLDM 2's pipeline; CLAP's),
/// checked to be one: JSON with a `model`.
pub(crate) fn read_text_tokenizer(path: &Path) -> Result<Vec<u8>> {
    let bytes = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
    let value: serde_json::Value = serde_json::from_slice(&bytes).with_context(|| format!("{}: not valid JSON", path.display()))?;
    if !value.get("model").is_some_and(serde_json::Value::is_object) {
        bail!("{}: not a Hugging Face tokenizer.json (no 'model')", path.display());
    }
    Ok(bytes)
}

pub(crate) fn read_json(path: &Path) -> Result<serde_json::Value> {
    let text = std::fs::read_to_string(path).with_context(|| format!("{}: cannot read", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{}: not valid JSON", path.display()))
}

/// Where tensors come from, each with what its names become.
type Sources = Vec<(Box<dyn TensorSource>, Box<dyn Fn(&str) -> Role>)>;

/// An M2UGen checkpoint's output projector (among `sources`, under the reference's name) must
/// write what AudioLDM 2 `config` takes, unless a MusicGen (which it may be for) comes too.
fn check_projector_fits(sources: &Sources, config: &m2ugen_core::config::audioldm2::Audioldm2Config, with_musicgen: bool) -> Result<()> {
    let expected = diffusers::m2ugen_projector_width(config);
    for (source, _) in sources {
        match source.shape("output_projector.model.weight") {
            Ok(shape) if !with_musicgen && shape.first() != Some(&expected) => bail!(
                "the checkpoint's output projector writes {} values, but this AudioLDM 2 takes {} x {} (T5) + {} x {} (GPT-2) = {expected}: the checkpoint is not M2UGen for this AudioLDM 2",
                shape.first().copied().unwrap_or(0),
                diffusers::AUDIOLDM2_PROMPT_ROWS,
                config.t5.d_model,
                config.gpt2.new_tokens(),
                config.gpt2.n_embd
            ),
            _ => {}
        }
    }
    Ok(())
}

/// Converts `inputs` into `out` (manifest.json + shards).
pub fn convert(inputs: &Inputs, out: &Path, options: &Options) -> Result<Manifest> {
    if inputs.checkpoint.is_none() && inputs.llama.is_none() && inputs.hf.is_empty() && inputs.tokenizer.is_none() {
        bail!("nothing to convert: give --checkpoint (with --params or --llama), --llama, --hf NAME=DIR or --diffusers audioldm2=DIR");
    }
    let mut components = BTreeMap::new();
    let mut sources: Sources = Vec::new();
    let base = inputs.llama.map(llama::open).transpose()?;
    // The LLM's embedding rows: whether the tokenizer gets M2UGen's output tokens.
    let mut llm_vocab = None;
    if inputs.checkpoint.is_some() || base.is_some() {
        let (params, at) = match (inputs.params, &base) {
            (Some(path), _) => (read_json(path)?, path.display().to_string()),
            (None, Some((_, params))) => (params.clone(), inputs.llama.map(|p| p.display().to_string()).unwrap_or_default()),
            (None, None) => bail!("--checkpoint needs the LLaMA's params.json: give --params, or --llama with the base model"),
        };
        m2ugen_core::config::parse::<m2ugen_core::config::LlamaParams>("llama", &params).with_context(|| at.clone())?;
        components.insert("llama".to_string(), params);
        // The checkpoint's tensors first: they win over the base's.
        let mut layers: Vec<Box<dyn TensorSource>> = Vec::new();
        if let Some(checkpoint) = inputs.checkpoint {
            layers.push(Box::new(Checkpoint::open(checkpoint)?));
        }
        if let Some((source, _)) = base {
            layers.push(source);
        }
        let source: Box<dyn TensorSource> = if layers.len() == 1 { layers.remove(0) } else { Box::new(llama::Overlay(layers)) };
        llm_vocab = source.shape("llama.tok_embeddings.weight").ok().and_then(|s| s.first().copied());
        if inputs.checkpoint.is_some() {
            checkpoint_encoder_configs(source.as_ref(), &inputs.configs, &inputs.hf, &mut components)?;
        }
        sources.push((source, Box::new(names::role)));
    }
    if let Some((component, _)) = inputs.configs.iter().find(|(c, _)| !matches!(c.as_str(), "mert" | "vit" | "vivit")) {
        bail!("--config {component}=…: only the checkpoint's encoders (mert, vit, vivit) take a configuration this way; give other components with --hf");
    }
    if !inputs.configs.is_empty() && inputs.checkpoint.is_none() {
        bail!("--config needs --checkpoint: it gives the configuration of an encoder inside the checkpoint");
    }
    let mut text_tokenizer = None;
    let mut clap_tokenizer = None;
    for (component, dir) in &inputs.hf {
        if component.is_empty() || !component.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_') {
            bail!("--hf {component}=…: the component name must be lower-case letters, digits or '_'");
        }
        if component == "audioldm2" {
            let pipeline = diffusers::open_audioldm2(dir)?;
            check_projector_fits(&sources, &pipeline.typed, inputs.hf.iter().any(|(c, _)| c == "musicgen"))?;
            components.insert(component.clone(), pipeline.config);
            for (role, source) in pipeline.parts {
                sources.push((source, Box::new(move |n: &str| names::audioldm2_role(role, n))));
            }
            text_tokenizer = pipeline.t5_tokenizer;
            clap_tokenizer = pipeline.clap_tokenizer;
            continue;
        }
        if dir.join("model_index.json").is_file() {
            bail!("--hf {component}=…: {} holds a diffusers pipeline (model_index.json), not a transformers model: give AudioLDM 2 as --diffusers audioldm2=DIR", dir.display());
        }
        let config = read_json(&dir.join("config.json"))?;
        check_config(component, &config).with_context(|| format!("{}", dir.join("config.json").display()))?;
        components.insert(component.clone(), config);
        let component = component.clone();
        sources.push((Box::new(Safetensors::open(&dir.join("model.safetensors"))?), Box::new(move |n: &str| names::hf_role(&component, n))));
    }
    // MusicGen's text encoder tokenizer (T5's), from the same directory when it is there.
    if let Some((_, dir)) = inputs.hf.iter().find(|(c, _)| c == "musicgen").filter(|(_, dir)| dir.join("tokenizer.json").is_file()) {
        if text_tokenizer.is_some() {
            bail!("{}: MusicGen's T5 tokenizer and AudioLDM 2's (tokenizer_2/) cannot both be the model's text tokenizer: convert them separately", dir.join("tokenizer.json").display());
        }
        text_tokenizer = Some(read_text_tokenizer(&dir.join("tokenizer.json"))?);
    }
    let mut writer = writer::ShardWriter::new(out, options.shard_bytes)?;
    for (source, name_of) in &sources {
        convert_source(source.as_ref(), name_of.as_ref(), &mut writer, options)?;
    }
    if let Some(json) = text_tokenizer {
        writer.text_tokenizer(&json)?;
    }
    if let Some(json) = clap_tokenizer {
        writer.clap_tokenizer(&json)?;
    }
    if let Some(path) = inputs.tokenizer {
        writer.tokenizer(&tokenizer::convert_tokenizer(path, llm_vocab)?)?;
    }
    writer.finish(&options.model, env!("CARGO_PKG_VERSION"), options.kind, components)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Shapes only: name → shape.
    struct Shapes(BTreeMap<String, Vec<usize>>);

    impl TensorSource for Shapes {
        fn keys(&self) -> Vec<String> {
            self.0.keys().cloned().collect()
        }
        fn has(&self, name: &str) -> bool {
            self.0.contains_key(name)
        }
        fn shape(&self, name: &str) -> Result<Vec<usize>> {
            self.0.get(name).cloned().context("missing")
        }
        fn read_f32(&self, _: &str) -> Result<Vec<f32>> {
            bail!("shapes only")
        }
    }

    #[test]
    fn a_checkpoint_with_the_published_encoders_gets_their_configurations() {
        let source = Shapes(
            [
                ("mert_model.encoder.pos_conv_embed.conv.bias".to_string(), vec![1024]),
                ("vit_model.embeddings.position_embeddings".to_string(), vec![1, 197, 768]),
                ("llama.norm.weight".to_string(), vec![4096]),
            ]
            .into(),
        );
        let mut components = BTreeMap::new();
        checkpoint_encoder_configs(&source, &[], &[], &mut components).unwrap();
        let mert: m2ugen_core::config::MertConfig = m2ugen_core::config::parse("mert", &components["mert"]).unwrap();
        assert_eq!((mert.hidden_size, mert.num_hidden_layers, mert.do_stable_layer_norm), (1024, 24, true));
        assert_eq!(components["vit"]["image_size"], 224);
        assert!(!components.contains_key("vivit"), "no ViViT in the checkpoint, no configuration");

        // Another width, and no --config: the error names what to give.
        let other = Shapes([("vivit_model.embeddings.position_embeddings".to_string(), vec![1, 9, 32])].into());
        let err = checkpoint_encoder_configs(&other, &[], &[], &mut BTreeMap::new()).unwrap_err().to_string();
        assert!(err.contains("--config vivit=config.json") && err.contains("[1, 9, 32]"), "{err}");
        // Unless the same component comes from a Hugging Face directory, which brings its own.
        let dir = Path::new("vivit-dir");
        let mut from_hf = BTreeMap::new();
        checkpoint_encoder_configs(&other, &[], &[("vivit".to_string(), dir)], &mut from_hf).unwrap();
        assert!(from_hf.is_empty());
    }

    #[test]
    #[allow(clippy::unwrap_used)]
    fn an_m2ugen_projector_as_wide_as_the_audioldm2_takes_makes_m2ugen_audioldm2() {
        let entry = |name: &str, shape: Vec<usize>| m2ugen_weights::TensorEntry { name: name.into(), shape, dtype: StoredType::F32, shard: 0, offset: 0, bytes: 0, sha256: String::new(), continued: vec![] };
        let m2ugen = |width: usize| vec![entry("llm.norm.weight", vec![8]), entry("llm.prefix_query", vec![18, 8]), entry("output_projector.out_proj.weight", vec![width, 8])];
        let tiny = serde_json::to_value(m2ugen_core::config::audioldm2::Audioldm2Config::tiny()).unwrap();
        let with_audioldm2: BTreeMap<String, serde_json::Value> = [("audioldm2".to_string(), tiny)].into();
        // The fixture's AudioLDM 2: 128 x 32 (T5) + 8 x 16 (GPT-2).
        assert_eq!(model_kind(&m2ugen(4224), &with_audioldm2).unwrap(), ModelKind::M2ugenAudioldm2);
        assert_eq!(model_kind(&m2ugen(4224), &BTreeMap::new()).unwrap(), ModelKind::M2ugenMusicgen, "without the AudioLDM 2, 4224 is not its width");
        assert_eq!(model_kind(&m2ugen(AUDIOLDM2_PROJECTOR_WIDTH), &BTreeMap::new()).unwrap(), ModelKind::M2ugenAudioldm2, "the published width");
        assert_eq!(model_kind(&m2ugen(4225), &with_audioldm2).unwrap(), ModelKind::M2ugenMusicgen);
        assert_eq!(model_kind(&[], &with_audioldm2).unwrap(), ModelKind::Audioldm2);
        let mut both = with_audioldm2.clone();
        both.insert("musicgen".into(), serde_json::json!({}));
        assert_eq!(model_kind(&[], &both).unwrap(), ModelKind::Components);
    }
}
