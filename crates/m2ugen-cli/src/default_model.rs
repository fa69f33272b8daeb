//! `m2ugen default-model`: the model the page bundles, so that it works offline out of the box.
//!
//! **This model is untrained.** It is the repository's tiny test fixtures converted into the real
//! format: the reference M2UGen fixture (`tests/data/reference-m2ugen`: its LLM, MERT/ViT/ViViT
//! encoders and adapters, output projector) with a byte tokenizer, and a MusicGen made from
//! `tests/data/musicgen` (its decoder and EnCodec, random EnCodec codebooks, a random T5 as wide
//! as the projector's output) with the tiny T5 tokenizer of `tests/data/t5-tokenizer`, and
//! AudioLDM 2 from `tests/data/audioldm2` (its whole `diffusers` pipeline, with a byte-level
//! RoBERTa tokenizer for CLAP and the same T5 tokenizer), so that the page offers both
//! decoders. Every
//! component is there and runs, but what it answers is gibberish and the music it makes is
//! noise. It is what the CLI's tests run `generate` on, and a stand-in until trained small
//! weights exist.
//!
//! For real music, convert the official weights instead and point the page at them:
//!
//! ```sh
//! m2ugen convert --checkpoint M2UGen-MusicGen-small/checkpoint.pth --llama llama-2-7b \
//!     --tokenizer llama-2-7b/tokenizer.model --hf musicgen=facebook-musicgen-small \
//!     --quant q4 --out models/m2ugen-musicgen-small
//! m2ugen serve models/m2ugen-musicgen-small    # or upload the directory to any static host
//! ```
//!
//! then open the page with `?model=URL` (e.g. `?model=http://127.0.0.1:8081`), the base URL the
//! `manifest.json` is served under.
//!
//! The output is built in `DIR.partial` and renamed to `DIR` when complete (an old `DIR` is
//! removed first), so an interrupted run never leaves a half-written model; the intermediate
//! files (the byte tokenizer, the MusicGen in Hugging Face's layout) go to a temporary directory
//! that is removed afterwards.

use crate::InputError;
use anyhow::{bail, Context, Result};
use m2ugen_convert as convert;
use std::path::{Path, PathBuf};

/// The model id written into the manifest.
pub const MODEL_ID: &str = "m2ugen-tiny-untrained";

#[derive(clap::Args)]
pub struct DefaultModelArgs {
    /// Output directory (manifest.json, shards, tokenizers); replaced if it exists.
    #[arg(long)]
    out: PathBuf,
    /// The repository's test data, holding reference-m2ugen/, musicgen/ and t5-tokenizer/.
    #[arg(long, default_value = "tests/data")]
    data: PathBuf,
    /// The reference M2UGen fixture: checkpoint.pth, params.json (or llama/params.json) and
    /// mert/, vit/, vivit/ config.json (default: DATA/reference-m2ugen).
    #[arg(long)]
    reference: Option<PathBuf>,
    /// The MusicGen fixture: a directory holding musicgen/model.safetensors, or the model
    /// directory itself (config.json, model.safetensors) (default: DATA/musicgen).
    #[arg(long)]
    musicgen: Option<PathBuf>,
    /// Width of the random T5: the M2UGen's projector output, so that embedding mode runs.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=4096))]
    t5_width: u32,
    /// The AudioLDM 2 fixture: a `diffusers` pipeline directory (model_index.json and a folder
    /// per part) (default: DATA/audioldm2).
    #[arg(long)]
    audioldm2: Option<PathBuf>,
    /// Leave both music decoders out: the M2UGen alone, which understands media but makes no
    /// music (the tests' model for questions).
    #[arg(long, hide = true)]
    without_music: bool,
    /// Leave AudioLDM 2 out: M2UGen with MusicGen alone (the tests' model for MusicGen).
    #[arg(long, hide = true)]
    without_audioldm2: bool,
}

/// The input files, each checked to exist.
struct Sources {
    checkpoint: PathBuf,
    params: PathBuf,
    configs: Vec<(String, PathBuf)>,
    /// The MusicGen model directory and the T5 tokenizer, unless left out.
    music: Option<(PathBuf, PathBuf)>,
    /// The AudioLDM 2 pipeline directory, unless left out.
    audioldm2: Option<PathBuf>,
}

/// `path` when it is a file; otherwise the one-line input error naming it.
fn need(path: PathBuf) -> Result<PathBuf> {
    if path.is_file() {
        Ok(path)
    } else {
        Err(InputError(format!("{}: not found (give --data the repository's tests/data, or --reference / --musicgen / --audioldm2)", path.display())).into())
    }
}

impl DefaultModelArgs {
    fn sources(&self) -> Result<Sources> {
        let reference = self.reference.clone().unwrap_or_else(|| self.data.join("reference-m2ugen"));
        let checkpoint = need(reference.join("checkpoint.pth"))?;
        let nested = reference.join("llama/params.json");
        let params = if nested.is_file() { nested } else { need(reference.join("params.json"))? };
        let configs = ["mert", "vit", "vivit"].iter().map(|c| Ok((c.to_string(), need(reference.join(c).join("config.json"))?))).collect::<Result<_>>()?;
        let music = if self.without_music {
            None
        } else {
            let fixture = self.musicgen.clone().unwrap_or_else(|| self.data.join("musicgen"));
            let dir = if fixture.join("musicgen/model.safetensors").is_file() { fixture.join("musicgen") } else { fixture };
            need(dir.join("config.json"))?;
            need(dir.join("model.safetensors"))?;
            Some((dir, need(self.data.join("t5-tokenizer/tokenizer.json"))?))
        };
        let audioldm2 = if self.without_music || self.without_audioldm2 {
            None
        } else {
            let dir = self.audioldm2.clone().unwrap_or_else(|| self.data.join("audioldm2"));
            need(dir.join("model_index.json"))?;
            Some(dir)
        };
        Ok(Sources { checkpoint, params, configs, music, audioldm2 })
    }
}

/// A directory removed (with what it holds) when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(path: PathBuf) -> Result<Self> {
        remove(&path)?;
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Scratch(path))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Removes a directory or file at `path`, if any.
fn remove(path: &Path) -> Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(_) => Ok(()),
    }
    .with_context(|| format!("removing {}", path.display()))
}

/// `m2ugen default-model`: checks the inputs, then converts them into `--out`, atomically.
pub fn run(args: &DefaultModelArgs) -> Result<()> {
    let sources = args.sources()?;
    let work = Scratch::new(std::env::temp_dir().join(format!("m2ugen-default-model-{}", std::process::id())))?;
    let tokenizer = work.0.join("bytes-tokenizer.json");
    std::fs::write(&tokenizer, serde_json::to_vec(&byte_tokenizer())?).with_context(|| format!("writing {}", tokenizer.display()))?;
    // One T5 tokenizer for the model: AudioLDM 2's tokenizer_2/ when it is there, else MusicGen's.
    let musicgen = match &sources.music {
        Some((src, t5_tokenizer)) => {
            let tokenizer = sources.audioldm2.is_none().then_some(t5_tokenizer.as_path());
            Some(musicgen_dir(src, tokenizer, &work.0.join("musicgen"), args.t5_width as usize).map_err(|e| InputError(format!("{e:#}")))?)
        }
        None => None,
    };
    let audioldm2 = match (&sources.audioldm2, &sources.music) {
        (Some(src), Some((_, t5_tokenizer))) => Some(audioldm2_dir(src, t5_tokenizer, &work.0.join("audioldm2")).map_err(|e| InputError(format!("{e:#}")))?),
        _ => None,
    };
    let name = args.out.file_name().with_context(|| format!("--out {}: give a directory name", args.out.display()))?;
    let mut partial_name = name.to_os_string();
    partial_name.push(".partial");
    let partial = Scratch::new(args.out.with_file_name(partial_name))?;
    let options = convert::Options { float: m2ugen_weights::StoredType::F32, quant: None, shard_bytes: 64 << 20, model: MODEL_ID.into(), kind: None };
    let inputs = convert::Inputs {
        checkpoint: Some(&sources.checkpoint),
        params: Some(&sources.params),
        llama: None,
        tokenizer: Some(&tokenizer),
        hf: musicgen.iter().map(|dir| ("musicgen".to_string(), dir.as_path())).chain(audioldm2.iter().map(|dir| ("audioldm2".to_string(), dir.as_path()))).collect(),
        configs: sources.configs.iter().map(|(name, file)| (name.clone(), file.as_path())).collect(),
    };
    let manifest = convert::convert(&inputs, &partial.0, &options).map_err(|e| InputError(format!("{e:#}")))?;
    remove(&args.out)?;
    std::fs::rename(&partial.0, &args.out).with_context(|| format!("renaming {} to {}", partial.0.display(), args.out.display()))?;
    let bytes: u64 = manifest.shards.iter().map(|s| s.bytes).sum();
    println!("wrote {MODEL_ID} (untrained: it makes noise) to {}: {} tensors, {:.1} MiB", args.out.display(), manifest.tensors.len(), bytes as f64 / (1 << 20) as f64);
    Ok(())
}

/// A Hugging Face tokenizer of bytes: `<unk>`, `<s>`, `</s>`, then `<0x00>`..`<0xFC>` (ids
/// 3..255; UTF-8 never uses 0xFD-0xFF), BPE without merges and with byte fallback, `<s>` first.
/// The converter adds `[AUD0]`..`[AUD7]` as 256..263, the fixture LLM's output rows.
fn byte_tokenizer() -> serde_json::Value {
    let mut vocab = serde_json::Map::new();
    for (i, t) in ["<unk>", "<s>", "</s>"].iter().enumerate() {
        vocab.insert(t.to_string(), i.into());
    }
    for b in 0..=0xFCu32 {
        vocab.insert(format!("<0x{b:02X}>"), (b + 3).into());
    }
    let special = |id: u32, content: &str| serde_json::json!({"id": id, "content": content, "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true});
    serde_json::json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": [special(0, "<unk>"), special(1, "<s>"), special(2, "</s>")],
        "normalizer": null,
        "pre_tokenizer": null,
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}
        },
        "decoder": {"type": "Sequence", "decoders": [{"type": "ByteFallback"}, {"type": "Fuse"}]},
        "model": {"type": "BPE", "dropout": null, "unk_token": "<unk>", "continuing_subword_prefix": null, "end_of_word_suffix": null, "fuse_unk": true, "byte_fallback": true, "ignore_merges": false, "vocab": vocab, "merges": []}
    })
}

/// RoBERTa's byte-level vocabulary at its smallest, as `vocab.json`: `<s>`, `<pad>`, `</s>`,
/// `<unk>` (0..3), the 256 characters that stand for bytes (4..259, in character order), `<mask>`
/// (260); with no merges every text is spelled byte by byte, within the fixture CLAP's 300 rows.
fn byte_roberta_vocab() -> serde_json::Value {
    let mut vocab = serde_json::Map::new();
    for (i, t) in ["<s>", "<pad>", "</s>", "<unk>"].iter().enumerate() {
        vocab.insert(t.to_string(), i.into());
    }
    let mut alphabet: Vec<char> = tokenizers::pre_tokenizers::byte_level::ByteLevel::alphabet().into_iter().collect();
    alphabet.sort_unstable();
    for (i, c) in alphabet.iter().enumerate() {
        vocab.insert(c.to_string(), (4 + i).into());
    }
    vocab.insert("<mask>".into(), (4 + alphabet.len()).into());
    serde_json::Value::Object(vocab)
}

/// Copies the directory tree `from` to `to`.
fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to).with_context(|| format!("creating {}", to.display()))?;
    for entry in std::fs::read_dir(from).with_context(|| format!("{}: cannot list", from.display()))? {
        let entry = entry.with_context(|| format!("{}: cannot list", from.display()))?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target).with_context(|| format!("copying {}", entry.path().display()))?;
        }
    }
    Ok(())
}

/// AudioLDM 2's pipeline directory `src` (its parts) copied to `out` with its tokenizers: CLAP's
/// ([`byte_roberta_vocab`], no merges, as `tokenizer/vocab.json` and `merges.txt`; the converter
/// builds its tokenizer.json) and T5's (`t5_tokenizer` as `tokenizer_2/tokenizer.json`).
fn audioldm2_dir(src: &Path, t5_tokenizer: &Path, out: &Path) -> Result<PathBuf> {
    // model_index.json and the parts' folders (not what else the fixture holds beside them).
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    std::fs::copy(src.join("model_index.json"), out.join("model_index.json")).with_context(|| format!("copying {}", src.join("model_index.json").display()))?;
    for part in ["unet", "vae", "vocoder", "text_encoder", "text_encoder_2", "projection_model", "language_model", "scheduler"] {
        copy_dir(&src.join(part), &out.join(part))?;
    }
    let clap = out.join("tokenizer");
    std::fs::create_dir_all(&clap).with_context(|| format!("creating {}", clap.display()))?;
    std::fs::write(clap.join("vocab.json"), serde_json::to_vec(&byte_roberta_vocab())?).with_context(|| format!("writing {}", clap.display()))?;
    std::fs::write(clap.join("merges.txt"), "#version: 0.2\n").with_context(|| format!("writing {}", clap.display()))?;
    let t5 = out.join("tokenizer_2");
    std::fs::create_dir_all(&t5).with_context(|| format!("creating {}", t5.display()))?;
    std::fs::copy(t5_tokenizer, t5.join("tokenizer.json")).with_context(|| format!("copying {}", t5_tokenizer.display()))?;
    Ok(out.to_path_buf())
}

/// One f32 tensor: name, shape, values.
type Tensor = (String, Vec<usize>, Vec<f32>);

/// Every tensor of a float safetensors file, as f32, in name order.
fn read_safetensors(path: &Path) -> Result<Vec<Tensor>> {
    use m2ugen_weights::safetensors::{floats, header_len, parse_header};
    let file = path.display().to_string();
    let bytes = std::fs::read(path).with_context(|| format!("{file}: cannot read"))?;
    let first8: [u8; 8] = bytes.get(..8).and_then(|b| b.try_into().ok()).with_context(|| format!("{file}: too short for a safetensors header"))?;
    let n = header_len(first8, bytes.len() as u64, &file)? as usize;
    let mut out = Vec::new();
    for (name, e) in parse_header(&bytes[8..8 + n], bytes.len() as u64, &file)? {
        let values = floats(&bytes[e.range.start as usize..e.range.end as usize], &e.dtype).with_context(|| format!("{file}: '{name}' is {}, expected a float tensor", e.dtype))?;
        out.push((name, e.shape, values));
    }
    Ok(out)
}

/// Writes f32 tensors as a safetensors file, by the format's definition.
fn write_safetensors(path: &Path, tensors: &[Tensor]) -> Result<()> {
    let mut header = serde_json::Map::new();
    let mut data = Vec::new();
    for (name, shape, values) in tensors {
        let start = data.len();
        data.extend(values.iter().flat_map(|v| v.to_le_bytes()));
        header.insert(name.clone(), serde_json::json!({"dtype": "F32", "shape": shape, "data_offsets": [start, data.len()]}));
    }
    let mut h = serde_json::to_vec(&header)?;
    while !h.len().is_multiple_of(8) {
        h.push(b' ');
    }
    let mut f = (h.len() as u64).to_le_bytes().to_vec();
    f.extend(h);
    f.extend(data);
    std::fs::write(path, f).with_context(|| format!("writing {}", path.display()))
}

/// A MusicGen in the Hugging Face layout in `out`, from the fixture's model directory `src`: its
/// decoder and EnCodec with random codebooks (the fixture's are zeros, as `transformers`
/// initialises them, so the audio would not depend on the codes), a T5 of width `t5_width`
/// (random, seeded; the fixture's own T5 when it is the fixture's width) with `enc_to_dec_proj`
/// when the decoder is wider, and `t5_tokenizer` as its tokenizer.json (none when another part
/// brings the model's T5 tokenizer).
fn musicgen_dir(src: &Path, t5_tokenizer: Option<&Path>, out: &Path, t5_width: usize) -> Result<PathBuf> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let config_path = src.join("config.json");
    let mut config: serde_json::Value = serde_json::from_slice(&std::fs::read(&config_path).with_context(|| format!("{}: cannot read", config_path.display()))?)
        .with_context(|| format!("{}: not valid JSON", config_path.display()))?;
    let mut tensors = read_safetensors(&src.join("model.safetensors"))?;
    let mut rng = m2ugen_core::rng::Rng::new(13);
    for (name, _, values) in tensors.iter_mut().filter(|(n, _, _)| n.ends_with(".codebook.embed")) {
        if !name.starts_with("audio_encoder.quantizer.") {
            bail!("{}: '{name}' is a codebook outside EnCodec's quantizer", src.display());
        }
        *values = rng.vec(values.len(), -2.0, 2.0);
    }
    if config["text_encoder"]["d_model"] != t5_width {
        config["text_encoder"]["d_model"] = t5_width.into();
        tensors.retain(|(n, _, _)| !n.starts_with("text_encoder.") && !n.starts_with("enc_to_dec_proj."));
        let t5: m2ugen_core::config::T5Config = serde_json::from_value(config["text_encoder"].clone()).with_context(|| format!("{}: text_encoder", config_path.display()))?;
        let mut rng = m2ugen_core::rng::Rng::new(11);
        for (name, shape) in m2ugen_models::t5::T5Encoder::tensors("text_encoder", &t5) {
            let n: usize = shape.iter().product();
            let values = if name.contains("layer_norm") { vec![1.0; n] } else { rng.vec(n, -0.5, 0.5) };
            tensors.push((name, shape, values));
        }
        let decoder_width = config["decoder"]["hidden_size"].as_u64().with_context(|| format!("{}: decoder.hidden_size", config_path.display()))? as usize;
        if decoder_width != t5_width {
            tensors.push(("enc_to_dec_proj.weight".into(), vec![decoder_width, t5_width], rng.vec(decoder_width * t5_width, -0.3, 0.3)));
            tensors.push(("enc_to_dec_proj.bias".into(), vec![decoder_width], vec![0.0; decoder_width]));
        }
    }
    std::fs::write(out.join("config.json"), serde_json::to_vec_pretty(&config)?).with_context(|| format!("writing {}", out.display()))?;
    write_safetensors(&out.join("model.safetensors"), &tensors)?;
    if let Some(t5_tokenizer) = t5_tokenizer {
        std::fs::copy(t5_tokenizer, out.join("tokenizer.json")).with_context(|| format!("copying {}", t5_tokenizer.display()))?;
    }
    Ok(out.to_path_buf())
}
