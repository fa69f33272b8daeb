//! `m2ugen convert` on the reference fixture: values survive (LoRA and weight norm folded as
//! the reference computes them), names are ours, hashes hold, quantization stays in its bound,
//! and bad input is named in one line with exit code 2.
#![allow(clippy::unwrap_used)]

mod common;

use m2ugen_core::config::ModelKind;
use m2ugen_core::quant::{padded_cols, scale_words_per_row, QuantFormat, QuantizedMatrix};
use m2ugen_weights::{Manifest, StoredType};
use pytorch_reader::PytorchReader;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixture() -> (PathBuf, PathBuf) {
    let dir = std::env::var_os("M2UGEN_REFERENCE_FIXTURE")
        .map(PathBuf::from)
        .unwrap_or_else(|| common::data().join("reference-m2ugen"));
    let params = if dir.join("params.json").is_file() { dir.join("params.json") } else { dir.join("llama/params.json") };
    (dir.join("checkpoint.pth"), params)
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("m2ugen-convert-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// `--config NAME=FILE` for the fixture's tiny encoders (not the published ones).
fn encoder_configs() -> Vec<(String, PathBuf)> {
    let dir = fixture().0.parent().unwrap().to_path_buf();
    ["mert", "vit", "vivit"].iter().map(|c| (c.to_string(), dir.join(c).join("config.json"))).collect()
}

fn convert(out: &Path, extra: &[&str]) -> Output {
    let (checkpoint, params) = fixture();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_m2ugen"));
    cmd.args(["convert", "--checkpoint"]).arg(&checkpoint).arg("--params").arg(&params).arg("--out").arg(out).args(extra);
    for (c, file) in encoder_configs() {
        cmd.arg("--config").arg(format!("{c}={}", file.display()));
    }
    cmd.output().unwrap()
}

/// The manifest and every tensor's bytes, each checked against its hash.
fn load(out: &Path) -> (Manifest, impl Fn(&str) -> (StoredType, Vec<usize>, Vec<u8>) + use<>) {
    let manifest = Manifest::parse(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    let shards: Vec<Vec<u8>> = manifest.shards.iter().map(|s| std::fs::read(out.join(&s.file)).unwrap()).collect();
    for (s, bytes) in manifest.shards.iter().zip(&shards) {
        assert_eq!(hex(&Sha256::digest(bytes)), s.sha256, "shard {}", s.file);
    }
    let m = manifest.clone();
    let get = move |name: &str| {
        let t = m.tensor(name).unwrap();
        let bytes: Vec<u8> = t.pieces().into_iter().flat_map(|(shard, range)| shards[shard][range.start as usize..range.end as usize].to_vec()).collect();
        assert_eq!(hex(&Sha256::digest(&bytes)), t.sha256, "tensor {name}");
        (t.dtype, t.shape.clone(), bytes)
    };
    (manifest, get)
}

fn hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect()
}

fn source(name: &str) -> (Vec<usize>, Vec<f32>) {
    let r = PytorchReader::with_top_level_key(fixture().0, "model").unwrap();
    let t = r.get(name).unwrap();
    (t.shape().to_vec(), f32s(&t.read().unwrap()))
}

/// `W + l2 · l1` for `W` (out, in), `l1` (rank, in), `l2` (out, rank): the layer's output with
/// its LoRA, `W x + l2 (l1 x)`, as one matrix.
fn lora_folded(w: &[f32], l1: &[f32], l2: &[f32], out_f: usize, in_f: usize, rank: usize) -> Vec<f32> {
    let mut folded = w.to_vec();
    for o in 0..out_f {
        for i in 0..in_f {
            let lora: f64 = (0..rank).map(|r| l2[o * rank + r] as f64 * l1[r * in_f + i] as f64).sum();
            folded[o * in_f + i] = (w[o * in_f + i] as f64 + lora) as f32;
        }
    }
    folded
}

fn assert_near(what: &str, ours: &[f32], expected: &[f32], atol: f32) {
    assert_eq!(ours.len(), expected.len(), "{what}");
    for (i, (a, b)) in ours.iter().zip(expected).enumerate() {
        assert!((a - b).abs() <= atol, "{what} at {i}: {a} vs {b}");
    }
}

#[test]
fn f32_conversion_keeps_every_value_with_lora_and_weight_norm_folded() {
    let out = scratch("f32");
    let run = convert(&out, &["--dtype", "f32", "--shard-mib", "1"]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let (manifest, get) = load(&out);
    assert_eq!(manifest.kind, ModelKind::M2ugenMusicgen, "18 adapter layers and a projector to the T5 width");
    assert!(manifest.shards.len() > 3, "1 MiB shards: the 8 MB checkpoint spans several");
    assert!(manifest.shards.iter().all(|s| s.bytes <= 1 << 20));
    for t in &manifest.tensors {
        for reference_name in [".lora_", "mu_mert", "iu_vit", "iu_vivit", "llama.", "mert_model", "query_embs", "masked_spec_embed"] {
            assert!(!t.name.contains(reference_name), "reference name left in '{}'", t.name);
        }
    }

    // wv's LoRA pair is kept as it is (the adapter prefix needs wv without it).
    for (ours, theirs) in [("llm.layers.5.attention.wv_lora_down.weight", "llama.layers.5.attention.lora_wv_l1.weight"), ("llm.layers.5.attention.wv_lora_up.weight", "llama.layers.5.attention.lora_wv_l2.weight")] {
        assert_eq!(f32s(&get(ours).2), source(theirs).1, "{ours}");
    }

    // LoRA: W + l2 · l1, written out here as the reference computes the layer's output.
    let (shape, w) = source("llama.layers.3.attention.wq.weight");
    let (_, l1) = source("llama.layers.3.attention.lora_wq_l1.weight");
    let (_, l2) = source("llama.layers.3.attention.lora_wq_l2.weight");
    let expected = lora_folded(&w, &l1, &l2, shape[0], shape[1], 16);
    let (dtype, got_shape, bytes) = get("llm.layers.3.attention.wq.weight");
    assert_eq!((dtype, got_shape), (StoredType::F32, shape));
    assert_near("folded wq", &f32s(&bytes), &expected, 1e-5);
    assert!(expected.iter().zip(&w).any(|(a, b)| (a - b).abs() > 1e-3), "the fixture's LoRA is not zero, so folding must show");

    // Renamed tensors are copied exactly.
    for (reference, ours) in [
        ("llama.layers.3.attention.wq.bias", "llm.layers.3.attention.wq.bias"),
        ("llama.layers.7.attention.gate", "llm.layers.7.attention.gate"),
        ("prefix_query.weight", "llm.prefix_query"),
        ("mu_mert_f2_3.weight", "music_adapter.blocks.2.w2.weight"),
        ("iu_vivit_agg.weight", "video_adapter.aggregate.weight"),
        ("output_projector.query_embs", "output_projector.queries"),
    ] {
        assert_eq!(f32s(&get(ours).2), source(reference).1, "{reference} -> {ours}");
    }

    // Weight norm (HuBERT's positional conv, dim=2): weight[o,i,k] = g[k] v[o,i,k] / ‖v[:,:,k]‖.
    let stem = "mert_model.encoder.pos_conv_embed.conv.parametrizations.weight";
    let (gs, g) = source(&format!("{stem}.original0"));
    let (vs, v) = source(&format!("{stem}.original1"));
    assert_eq!(gs, vec![1, 1, vs[2]]);
    let k = vs[2];
    let norms: Vec<f64> = (0..k).map(|kk| v.iter().skip(kk).step_by(k).map(|&x| (x as f64).powi(2)).sum::<f64>().sqrt()).collect();
    let expected: Vec<f32> = v.iter().enumerate().map(|(i, &x)| (g[i % k] as f64 * x as f64 / norms[i % k]) as f32).collect();
    let (_, shape, bytes) = get("mert.encoder.pos_conv_embed.conv.weight");
    assert_eq!(shape, vs);
    assert_near("folded weight norm", &f32s(&bytes), &expected, 1e-6);
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn q4_conversion_quantizes_the_llm_linears_within_the_bound() {
    let out = scratch("q4");
    let run = convert(&out, &["--quant", "q4"]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let (_, get) = load(&out);
    let (dtype, shape, bytes) = get("llm.layers.0.feed_forward.w2.weight");
    assert_eq!(dtype, StoredType::Q4);
    let (rows, cols) = (shape[0], shape[1]);
    let words: Vec<u32> = bytes.chunks_exact(4).map(|b| u32::from_le_bytes(b.try_into().unwrap())).collect();
    let qn = rows * padded_cols(cols) / 8;
    assert_eq!(words.len(), qn + rows * scale_words_per_row(cols));
    let m = QuantizedMatrix { format: QuantFormat::Q4, rows, cols, q: words[..qn].to_vec(), scales: words[qn..].to_vec() };
    let (_, w) = source("llama.layers.0.feed_forward.w2.weight");
    let (_, l1) = source("llama.layers.0.feed_forward.lora_w2_l1.weight");
    let (_, l2) = source("llama.layers.0.feed_forward.lora_w2_l2.weight");
    for r in 0..rows {
        for c in 0..cols {
            let lora: f32 = (0..16).map(|k| l2[r * 16 + k] * l1[k * cols + c]).sum();
            let original = w[r * cols + c] + lora;
            let scale = m.scale(r, c / 32);
            let got = scale * m.value(r, c) as f32;
            assert!((got - original).abs() <= QuantFormat::Q4.error_bound(scale) + 1e-5, "({r},{c}): {got} vs {original}");
        }
    }
    // Norms and embeddings stay float (f16 by default).
    assert_eq!(get("llm.layers.0.attention_norm.weight").0, StoredType::F16);
    assert_eq!(get("llm.tok_embeddings.weight").0, StoredType::F16);
    std::fs::remove_dir_all(&out).unwrap();
}

fn one_line_exit_2(out: &Output) -> String {
    assert_eq!(out.status.code(), Some(2));
    let lines: Vec<String> = String::from_utf8_lossy(&out.stderr).lines().map(str::to_string).collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    lines[0].clone()
}

#[test]
fn unusable_input_is_named_in_one_line() {
    let out = scratch("bad");
    let (_, params) = fixture();
    let run = Command::new(env!("CARGO_BIN_EXE_m2ugen"))
        .args(["convert", "--checkpoint", "/nonexistent/checkpoint.pth", "--params"])
        .arg(&params)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(one_line_exit_2(&run), "m2ugen: convert: /nonexistent/checkpoint.pth: no such file");

    // A file that is not a checkpoint.
    let junk = std::env::temp_dir().join(format!("m2ugen-junk-{}.pth", std::process::id()));
    std::fs::write(&junk, b"not a zip").unwrap();
    let run = Command::new(env!("CARGO_BIN_EXE_m2ugen")).arg("convert").arg("--checkpoint").arg(&junk).arg("--params").arg(&params).arg("--out").arg(&out).output().unwrap();
    let line = one_line_exit_2(&run);
    assert!(line.contains("not a readable PyTorch checkpoint"), "{line}");

    // params.json without its dimensions.
    let bad_params = std::env::temp_dir().join(format!("m2ugen-params-{}.json", std::process::id()));
    std::fs::write(&bad_params, br#"{"n_layers": 2}"#).unwrap();
    let run = Command::new(env!("CARGO_BIN_EXE_m2ugen")).arg("convert").arg("--checkpoint").arg(fixture().0).arg("--params").arg(&bad_params).arg("--out").arg(&out).output().unwrap();
    let line = one_line_exit_2(&run);
    assert!(line.ends_with("config: llama: missing field `dim`"), "{line}");

    // A Hugging Face config whose field has the wrong type is named at conversion.
    let bad_hf = scratch("bad-hf-config");
    std::fs::create_dir_all(&bad_hf).unwrap();
    std::fs::write(bad_hf.join("config.json"), br#"{"hidden_size": "wide"}"#).unwrap();
    let run = Command::new(env!("CARGO_BIN_EXE_m2ugen")).arg("convert").arg("--hf").arg(format!("vit={}", bad_hf.display())).arg("--out").arg(&out).output().unwrap();
    let line = one_line_exit_2(&run);
    assert!(line.contains("config.json") && line.contains("config: vit.hidden_size: invalid type: string \"wide\""), "{line}");
    let _ = std::fs::remove_dir_all(bad_hf);

    // The fixture's tiny encoders are not the published ones: without --config the converter
    // says which configuration to give, and writes nothing.
    let run = Command::new(env!("CARGO_BIN_EXE_m2ugen")).arg("convert").arg("--checkpoint").arg(fixture().0).arg("--params").arg(fixture().1).arg("--out").arg(&out).output().unwrap();
    let line = one_line_exit_2(&run);
    assert!(line.contains("the checkpoint's mert (mert_model.*) is not the published model") && line.contains("--config mert=config.json"), "{line}");
    assert!(!out.join("manifest.json").exists(), "nothing written");
    let _ = std::fs::remove_file(junk);
    let _ = std::fs::remove_file(bad_params);
}

fn musicgen_dir() -> PathBuf {
    let dir = std::env::var_os("M2UGEN_MUSICGEN_FIXTURE")
        .map(PathBuf::from)
        .unwrap_or_else(|| common::data().join("musicgen"));
    if dir.join("musicgen/model.safetensors").is_file() { dir.join("musicgen") } else { dir }
}

/// One tensor of the fixture's safetensors, read with nothing but the format's definition.
fn safetensor(name: &str) -> (Vec<usize>, Vec<f32>) {
    let bytes = std::fs::read(musicgen_dir().join("model.safetensors")).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let e = &header[name];
    assert_eq!(e["dtype"], "F32", "{name}");
    let shape: Vec<usize> = e["shape"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect();
    let (a, b) = (e["data_offsets"][0].as_u64().unwrap() as usize, e["data_offsets"][1].as_u64().unwrap() as usize);
    (shape, f32s(&bytes[8 + n + a..8 + n + b]))
}

/// Converts the MusicGen fixture into `out` and loads the result.
fn convert_musicgen(out: &Path, extra: &[&str]) -> (Manifest, impl Fn(&str) -> (StoredType, Vec<usize>, Vec<u8>)) {
    let run = Command::new(env!("CARGO_BIN_EXE_m2ugen"))
        .args(["convert", "--out"])
        .arg(out)
        .arg("--hf")
        .arg(format!("musicgen={}", musicgen_dir().display()))
        .args(extra)
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    load(out)
}

#[test]
fn hugging_face_musicgen_converts_with_encodec_weight_norm_folded() {
    let out = scratch("musicgen");
    let (manifest, get) = convert_musicgen(&out, &["--dtype", "f32"]);
    assert_eq!(manifest.components["musicgen"]["model_type"], "musicgen");
    assert_eq!(manifest.kind, ModelKind::Musicgen);
    for name in ["decoder.model.decoder.layers.0.self_attn.q_proj.weight", "text_encoder.shared.weight", "enc_to_dec_proj.bias", "audio_encoder.quantizer.layers.0.codebook.embed"] {
        assert_eq!(f32s(&get(&format!("musicgen.{name}")).2), safetensor(name).1, "{name}");
    }
    assert!(manifest.tensors.iter().all(|t| !t.name.contains("embed_avg") && !t.name.contains("cluster_size") && !t.name.contains("parametrizations")));

    // EnCodec conv weight norm (dim 0): weight[o,..] = g[o] v[o,..] / ‖v[o,..]‖.
    let stem = "audio_encoder.decoder.layers.0.conv";
    let (gs, g) = safetensor(&format!("{stem}.parametrizations.weight.original0"));
    let (vs, v) = safetensor(&format!("{stem}.parametrizations.weight.original1"));
    assert_eq!(gs, vec![vs[0], 1, 1]);
    let per = vs[1] * vs[2];
    let expected: Vec<f32> = v
        .chunks(per)
        .zip(&g)
        .flat_map(|(row, &go)| {
            let norm = row.iter().map(|&x| (x as f64).powi(2)).sum::<f64>().sqrt();
            row.iter().map(move |&x| (go as f64 * x as f64 / norm) as f32).collect::<Vec<_>>()
        })
        .collect();
    assert_near("EnCodec folded conv", &f32s(&get(&format!("musicgen.{stem}.weight")).2), &expected, 1e-6);
    std::fs::remove_dir_all(&out).unwrap();

    // With q8, the decoder's linear layers are quantized and its embeddings are not.
    let out = scratch("musicgen-q8");
    let (_, get) = convert_musicgen(&out, &["--quant", "q8"]);
    assert_eq!(get("musicgen.decoder.model.decoder.layers.0.fc1.weight").0, StoredType::Q8);
    assert_eq!(get("musicgen.decoder.lm_heads.0.weight").0, StoredType::Q8);
    assert_eq!(get("musicgen.decoder.model.decoder.embed_tokens.0.weight").0, StoredType::F16);
    assert_eq!(get("musicgen.text_encoder.encoder.block.0.layer.0.SelfAttention.q.weight").0, StoredType::F16);
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn a_broken_safetensors_file_is_named() {
    let dir = scratch("broken-st");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("config.json"), "{}").unwrap();
    let mut bytes = 1_000_000u64.to_le_bytes().to_vec();
    bytes.extend_from_slice(b"{}");
    std::fs::write(dir.join("model.safetensors"), bytes).unwrap();
    let run = Command::new(env!("CARGO_BIN_EXE_m2ugen"))
        .args(["convert", "--out"])
        .arg(dir.join("out"))
        .arg("--hf")
        .arg(format!("extra={}", dir.display()))
        .output()
        .unwrap();
    let line = one_line_exit_2(&run);
    assert!(line.contains("model.safetensors: header length 1000000 does not fit the file"), "{line}");
    let run = Command::new(env!("CARGO_BIN_EXE_m2ugen")).args(["convert", "--out"]).arg(dir.join("out")).output().unwrap();
    assert!(one_line_exit_2(&run).contains("nothing to convert"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_converted_model_verifies_and_a_tampered_one_is_named() {
    let out = scratch("verify");
    assert!(convert(&out, &["--quant", "q8", "--shard-mib", "1"]).status.success());
    let run = Command::new(env!("CARGO_BIN_EXE_m2ugen")).arg("verify").arg(&out).output().unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let (manifest, _) = load(&out);
    assert!(stdout.starts_with(&format!("m2ugen: {} tensors verified", manifest.tensors.len())), "{stdout}");

    // Flip one byte of the first tensor of the second shard: named after two tries.
    let victim = manifest.tensors.iter().find(|t| t.shard == 1 && t.continued.is_empty()).unwrap();
    let path = out.join(&manifest.shards[1].file);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[victim.offset as usize] ^= 1;
    std::fs::write(&path, bytes).unwrap();
    let run = Command::new(env!("CARGO_BIN_EXE_m2ugen")).arg("verify").arg(&out).output().unwrap();
    assert_eq!(run.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains(&format!("tensor '{}' in shard-00001.bin does not match its SHA-256", victim.name)), "{stderr}");
    std::fs::remove_dir_all(&out).unwrap();
}

fn llama_layouts() -> PathBuf {
    std::env::var_os("M2UGEN_LLAMA_FIXTURE").map(PathBuf::from).unwrap_or_else(|| common::data().join("llama-layouts"))
}

fn run_convert(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_m2ugen")).arg("convert").args(args).output().unwrap()
}

#[test]
fn meta_and_hugging_face_llama_become_the_same_tensors() {
    let (meta_out, hf_out) = (scratch("llama-meta"), scratch("llama-hf"));
    for (layout, out) in [("meta", &meta_out), ("hf", &hf_out)] {
        let run = run_convert(&["--llama".as_ref(), llama_layouts().join(layout).as_os_str(), "--dtype".as_ref(), "f32".as_ref(), "--out".as_ref(), out.as_os_str()]);
        assert!(run.status.success(), "{layout}: {}", String::from_utf8_lossy(&run.stderr));
    }
    let ((meta, meta_get), (hf, hf_get)) = (load(&meta_out), load(&hf_out));
    let names = |m: &Manifest| m.tensors.iter().map(|t| t.name.clone()).collect::<std::collections::BTreeSet<_>>();
    assert_eq!(names(&meta), names(&hf));
    assert_eq!((meta.kind, hf.kind), (ModelKind::Llama, ModelKind::Llama));
    assert_eq!(meta.tensors.len(), 2 + 1 + 3 * 9, "embedding, norm, head and 9 per layer");
    for name in names(&meta) {
        assert!(meta_get(&name) == hf_get(&name), "{name} differs between the layouts");
    }
    // Meta's own tensor, read here straight from consolidated.00.pth, is what both hold.
    let reader = PytorchReader::new(llama_layouts().join("meta/consolidated.00.pth")).unwrap();
    let wq = reader.get("layers.1.attention.wq.weight").unwrap().read().unwrap();
    assert_eq!(hf_get("llm.layers.1.attention.wq.weight").2, wq);
    let params = &hf.components["llama"];
    assert_eq!((params["dim"].as_u64(), params["n_heads"].as_u64(), params["n_kv_heads"].as_u64()), (Some(64), Some(4), Some(2)));
    let _ = std::fs::remove_dir_all(meta_out);
    let _ = std::fs::remove_dir_all(hf_out);
}

#[test]
fn a_checkpoint_over_a_base_llama_keeps_the_checkpoints_tensors() {
    // The reference checkpoint holds a whole LLaMA of its own (vocabulary 264); laid over the
    // layouts fixture's (vocabulary 300), every tensor both have must come from the checkpoint.
    let (alone, over) = (scratch("ckpt-alone"), scratch("ckpt-over"));
    assert!(convert(&alone, &["--dtype", "f32"]).status.success());
    let (checkpoint, _) = fixture();
    let configs: Vec<std::ffi::OsString> = encoder_configs().into_iter().flat_map(|(c, f)| ["--config".into(), format!("{c}={}", f.display()).into()]).collect();
    let base = llama_layouts().join("meta");
    let mut args: Vec<&std::ffi::OsStr> = vec!["--checkpoint".as_ref(), checkpoint.as_os_str(), "--llama".as_ref(), base.as_os_str(), "--dtype".as_ref(), "f32".as_ref(), "--out".as_ref(), over.as_os_str()];
    args.extend(configs.iter().map(|a| a.as_os_str()));
    let run = run_convert(&args);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let ((a, a_get), (o, o_get)) = (load(&alone), load(&over));
    for t in &a.tensors {
        assert!(a_get(&t.name) == o_get(&t.name), "{} came from the base", t.name);
    }
    // The base adds nothing the checkpoint lacks here: both are whole LLaMAs with these names.
    assert_eq!(a.tensors.len(), o.tensors.len());
    // Its params.json serves when --params is not given.
    assert_eq!(o.components["llama"]["n_kv_heads"].as_u64(), Some(2));

    let run = run_convert(&["--checkpoint".as_ref(), checkpoint.as_os_str(), "--out".as_ref(), over.as_os_str()]);
    assert_eq!(one_line_exit_2(&run), "m2ugen: convert: --checkpoint needs the LLaMA's params.json: give --params, or --llama with the base model");
    let run = run_convert(&["--llama".as_ref(), "/nonexistent-llama".as_ref(), "--out".as_ref(), over.as_os_str()]);
    assert!(one_line_exit_2(&run).contains("/nonexistent-llama: neither Meta's layout"));
    let _ = std::fs::remove_dir_all(alone);
    let _ = std::fs::remove_dir_all(over);
}

fn mu_llama() -> PathBuf {
    std::env::var_os("M2UGEN_MU_LLAMA_FIXTURE").map(PathBuf::from).unwrap_or_else(|| common::data().join("mu-llama"))
}

#[test]
fn mu_llama_converts_over_its_llama_2_base_with_its_wide_adapter_and_no_output_tokens() {
    let (dir, out) = (mu_llama(), scratch("mu-llama"));
    let tokenizer = common::data().join("tokenizer/tokenizer.model");
    let (checkpoint, base) = (dir.join("checkpoint.pth"), dir.join("base"));
    let run = run_convert(&[
        "--checkpoint".as_ref(), checkpoint.as_os_str(), "--llama".as_ref(), base.as_os_str(), "--tokenizer".as_ref(), tokenizer.as_os_str(),
        "--dtype".as_ref(), "f32".as_ref(), "--out".as_ref(), out.as_os_str(),
    ]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let (manifest, get) = load(&out);
    // The base's params.json, as LLaMA-2 publishes it (vocabulary -1: the tokenizer's).
    let params = &manifest.components["llama"];
    assert_eq!((params["n_layers"].as_u64(), params["vocab_size"].as_i64()), (Some(22), Some(-1)));
    assert_eq!(manifest.kind, ModelKind::MuLlama, "20 adapter layers and no projector");
    for t in &manifest.tensors {
        for reference_name in [".lora_", "mu_mert", "llama.", "prefix_query.weight"] {
            assert!(!t.name.contains(reference_name), "reference name left in '{}'", t.name);
        }
        assert!(t.name.starts_with("llm.") || t.name.starts_with("music_adapter."), "MU-LLaMA has no '{}'", t.name);
    }

    // Its shapes: 20 prefix rows, adapter blocks 4 x dim wide, one embedding row per piece.
    let dim = 16;
    for (name, shape) in [
        ("llm.prefix_query", vec![20, dim]),
        ("llm.tok_embeddings.weight", vec![278, dim]),
        ("music_adapter.aggregate.weight", vec![1, 3, 1]),
        ("music_adapter.proj.weight", vec![dim, 12]),
        ("music_adapter.blocks.0.w1.weight", vec![4 * dim, dim]),
        ("music_adapter.blocks.1.w2.weight", vec![dim, 4 * dim]),
        ("music_adapter.blocks.2.w3.weight", vec![4 * dim, dim]),
    ] {
        assert_eq!(get(name).1, shape, "{name}");
    }

    // The checkpoint's tensors, copied exactly; where both files have one, the checkpoint's.
    let trained = PytorchReader::with_top_level_key(&checkpoint, "model").unwrap();
    let theirs = |name: &str| f32s(&trained.get(name).unwrap().read().unwrap());
    for (reference, ours) in [
        ("prefix_query.weight", "llm.prefix_query"),
        ("mu_mert_agg.bias", "music_adapter.aggregate.bias"),
        ("mu_mert_f2_3.weight", "music_adapter.blocks.2.w2.weight"),
        ("mu_mert_norm_1.weight", "music_adapter.blocks.0.norm.weight"),
        ("llama.layers.21.attention.gate", "llm.layers.21.attention.gate"),
        ("llama.layers.4.feed_forward.w2.bias", "llm.layers.4.feed_forward.w2.bias"),
        ("llama.norm.weight", "llm.norm.weight"),
        ("llama.layers.0.ffn_norm.weight", "llm.layers.0.ffn_norm.weight"),
    ] {
        assert_eq!(f32s(&get(ours).2), theirs(reference), "{reference} -> {ours}");
    }

    // The base's bfloat16 tensors, widened here by hand (the top 16 bits of an f32).
    let meta = PytorchReader::new(base.join("consolidated.00.pth")).unwrap();
    let widened = |name: &str| -> Vec<f32> {
        let t = meta.get(name).unwrap();
        assert_eq!(t.dtype(), pytorch_reader::DType::BF16, "{name}: LLaMA-2 is published in bfloat16");
        t.read().unwrap().chunks_exact(2).map(|b| f32::from_bits((u16::from_le_bytes([b[0], b[1]]) as u32) << 16)).collect()
    };
    assert_eq!(f32s(&get("llm.tok_embeddings.weight").2), widened("tok_embeddings.weight"));
    assert_eq!(f32s(&get("llm.output.weight").2), widened("output.weight"));
    assert_ne!(widened("norm.weight"), theirs("llama.norm.weight"), "the base's norm differs, so the test above tells them apart");

    // LoRA (float32, from the checkpoint) folded into the base's bfloat16 weight.
    let expected = lora_folded(&widened("layers.4.attention.wq.weight"), &theirs("llama.layers.4.attention.lora_wq_l1.weight"), &theirs("llama.layers.4.attention.lora_wq_l2.weight"), dim, dim, 16);
    assert_near("folded wq over bfloat16", &f32s(&get("llm.layers.4.attention.wq.weight").2), &expected, 1e-5);

    // The tokenizer: the model has no rows for [AUD0]..[AUD7], so it has no such tokens.
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("tokenizer.json")).unwrap()).unwrap();
    let added: Vec<&str> = json["added_tokens"].as_array().unwrap().iter().map(|t| t["content"].as_str().unwrap()).collect();
    assert!(!added.iter().any(|t| t.starts_with("[AUD")), "{added:?}");
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn hugging_face_encoders_convert_to_what_the_checkpoints_copies_become() {
    // The official checkpoint carries MERT, ViT and ViViT (`mert_model.*`, ...); the same models
    // in Hugging Face's layout (as published) must give the same names and the same values.
    let (from_checkpoint, from_hf) = (scratch("encoders-ckpt"), scratch("encoders-hf"));
    assert!(convert(&from_checkpoint, &["--dtype", "f32"]).status.success());
    let dir = fixture().0.with_file_name("");
    let mut args: Vec<std::ffi::OsString> = vec!["--dtype".into(), "f32".into(), "--out".into(), from_hf.clone().into()];
    for encoder in ["mert", "vit", "vivit"] {
        args.push("--hf".into());
        args.push(format!("{encoder}={}", dir.join(encoder).display()).into());
    }
    let run = run_convert(&args.iter().map(|a| a.as_os_str()).collect::<Vec<_>>());
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let ((ckpt, ckpt_get), (hf, hf_get)) = (load(&from_checkpoint), load(&from_hf));
    assert_eq!(hf.components["mert"]["model_type"], "hubert");
    assert_eq!(hf.kind, ModelKind::Components);
    assert_eq!(hf.components["vit"]["model_type"], "vit");
    assert_eq!(hf.components["vivit"]["model_type"], "vivit");
    let encoder_names = |m: &Manifest| {
        m.tensors.iter().map(|t| t.name.clone()).filter(|n| ["mert.", "vit.", "vivit."].iter().any(|p| n.starts_with(p))).collect::<std::collections::BTreeSet<_>>()
    };
    let names = encoder_names(&hf);
    assert_eq!(names, encoder_names(&ckpt));
    assert_eq!(names.len(), hf.tensors.len(), "nothing but the three encoders");
    assert!(names.iter().all(|n| !n.contains("masked_spec_embed") && !n.contains("parametrizations")), "{names:?}");
    assert!(names.contains("mert.encoder.pos_conv_embed.conv.weight"), "the weight norm is folded under its plain name");
    for name in &names {
        assert!(ckpt_get(name) == hf_get(name), "{name} differs between the checkpoint's copy and the Hugging Face file");
    }
    let _ = std::fs::remove_dir_all(from_checkpoint);
    let _ = std::fs::remove_dir_all(from_hf);
}

#[test]
fn tensors_larger_than_a_shard_are_cut_over_consecutive_shards() {
    // 8 KiB shards: the embedding table (264 x 64 f32, 66 KiB) and others do not fit one.
    let (whole, cut) = (scratch("shards-whole"), scratch("shards-cut"));
    assert!(convert(&whole, &["--dtype", "f32"]).status.success());
    let (checkpoint, params) = fixture();
    let configs = encoder_configs();
    let inputs = m2ugen_convert::Inputs { checkpoint: Some(&checkpoint), params: Some(&params), llama: None, tokenizer: None, hf: vec![], configs: configs.iter().map(|(c, f)| (c.clone(), f.as_path())).collect() };
    let options = m2ugen_convert::Options { float: StoredType::F32, quant: None, shard_bytes: 8 << 10, model: "m2ugen".into(), kind: None };
    m2ugen_convert::convert(&inputs, &cut, &options).unwrap();
    let ((w, w_get), (c, c_get)) = (load(&whole), load(&cut));
    assert!(c.shards.iter().all(|s| s.bytes <= 8 << 10), "every shard within the bound");
    let embedding = c.tensor("llm.tok_embeddings.weight").unwrap();
    assert_eq!(embedding.pieces().len(), 9, "66 KiB in 8 KiB shards: {:?}", embedding.pieces());
    let pieces = embedding.pieces();
    assert!(pieces.windows(2).all(|p| p[1].0 == p[0].0 + 1 && p[1].1.start == 0), "consecutive shards, each piece opening its shard");
    // Every tensor reads back (hash-checked, pieces joined) as the unsplit conversion has it.
    assert_eq!(w.tensors.len(), c.tensors.len());
    for t in &w.tensors {
        assert!(w_get(&t.name) == c_get(&t.name), "{} differs when cut", t.name);
    }
    let _ = std::fs::remove_dir_all(whole);
    let _ = std::fs::remove_dir_all(cut);
}

#[test]
fn musicgens_t5_tokenizer_is_converted_and_hash_listed() {
    let src = scratch("musicgen-tokenizer-src");
    std::fs::create_dir_all(&src).unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(musicgen_dir().join(f), src.join(f)).unwrap();
    }
    let tokenizer = std::fs::read(common::data().join("t5-tokenizer/tokenizer.json")).unwrap();
    std::fs::write(src.join("tokenizer.json"), &tokenizer).unwrap();
    let out = scratch("musicgen-tokenizer");
    let run = Command::new(env!("CARGO_BIN_EXE_m2ugen")).args(["convert", "--out"]).arg(&out).arg("--hf").arg(format!("musicgen={}", src.display())).output().unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let manifest = Manifest::parse(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    let entry = manifest.text_tokenizer.expect("the manifest lists T5's tokenizer");
    assert_eq!(std::fs::read(out.join(&entry.file)).unwrap(), tokenizer, "copied as it is");
    assert_eq!((entry.bytes, entry.sha256.clone()), (tokenizer.len() as u64, hex(&Sha256::digest(&tokenizer))));
    assert!(manifest.tokenizer.is_none(), "no LLM tokenizer was given");

    // A tokenizer.json that is not one stops the conversion, naming the file.
    std::fs::write(src.join("tokenizer.json"), b"{\"version\": \"1.0\"}").unwrap();
    let bad = scratch("musicgen-tokenizer-bad");
    let run = Command::new(env!("CARGO_BIN_EXE_m2ugen")).args(["convert", "--out"]).arg(&bad).arg("--hf").arg(format!("musicgen={}", src.display())).output().unwrap();
    let line = one_line_exit_2(&run);
    assert!(line.contains("tokenizer.json: not a Hugging Face tokenizer.json"), "{line}");
    assert!(!bad.join("manifest.json").exists());
    for d in [src, out, bad] {
        let _ = std::fs::remove_dir_all(d);
    }
}

fn audioldm2_dir() -> PathBuf {
    std::env::var_os("M2UGEN_AUDIOLDM2_FIXTURE").map(PathBuf::from).unwrap_or_else(|| common::data().join("audioldm2"))
}

/// The parts of AudioLDM 2: role, folder, weights file.
const AUDIOLDM2_PARTS: [(&str, &str, &str); 7] = [
    ("unet", "unet", "diffusion_pytorch_model.safetensors"),
    ("vae", "vae", "diffusion_pytorch_model.safetensors"),
    ("vocoder", "vocoder", "model.safetensors"),
    ("clap", "text_encoder", "model.safetensors"),
    ("t5", "text_encoder_2", "model.safetensors"),
    ("projection", "projection_model", "diffusion_pytorch_model.safetensors"),
    ("gpt2", "language_model", "model.safetensors"),
];

/// A safetensors file's header (name → dtype, shape, byte range) and bytes, read with nothing
/// but the format's definition.
fn safetensors_file(path: &Path) -> (serde_json::Map<String, serde_json::Value>, Vec<u8>) {
    let bytes = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut header: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    header.remove("__metadata__");
    (header, bytes[8 + n..].to_vec())
}

/// One float tensor of part `folder`: shape and values.
fn audioldm2_source(folder: &str, name: &str) -> (Vec<usize>, Vec<f32>) {
    let weights = AUDIOLDM2_PARTS.iter().find(|p| p.1 == folder).unwrap().2;
    let (header, data) = safetensors_file(&audioldm2_dir().join(folder).join(weights));
    let e = &header[name];
    assert_eq!(e["dtype"], "F32", "{folder}/{name}");
    let shape = e["shape"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect();
    let (a, b) = (e["data_offsets"][0].as_u64().unwrap() as usize, e["data_offsets"][1].as_u64().unwrap() as usize);
    (shape, f32s(&data[a..b]))
}

fn convert_audioldm2_cli(out: &Path, flag: &str, dir: &Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_m2ugen")).args(["convert", "--out"]).arg(out).arg(flag).arg(format!("audioldm2={}", dir.display())).args(extra).output().unwrap()
}

#[test]
fn audioldm2_converts_with_every_part_under_its_role() {
    let out = scratch("audioldm2");
    let run = convert_audioldm2_cli(&out, "--diffusers", &audioldm2_dir(), &["--dtype", "f32"]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let (manifest, get) = load(&out);
    assert_eq!(manifest.kind, ModelKind::Audioldm2);
    assert!(manifest.tokenizer.is_none() && manifest.text_tokenizer.is_none() && manifest.clap_tokenizer.is_none(), "the fixture has no tokenizers");

    // Every float tensor of every part, under audioldm2.<role>., except the buffers inference
    // never reads (CLAP's integer buffers here: position and token type ids, the Swin
    // relative position index, BatchNorm's count).
    let mut expected = std::collections::BTreeSet::new();
    for (role, folder, weights) in AUDIOLDM2_PARTS {
        let (header, _) = safetensors_file(&audioldm2_dir().join(folder).join(weights));
        for (name, e) in &header {
            if e["dtype"] == "F32" {
                expected.insert(format!("audioldm2.{role}.{name}"));
            } else {
                assert!(["position_ids", "token_type_ids", "relative_position_index", "num_batches_tracked"].iter().any(|s| name.ends_with(s)), "{folder}: {name} is {}", e["dtype"]);
            }
        }
    }
    let names: std::collections::BTreeSet<String> = manifest.tensors.iter().map(|t| t.name.clone()).collect();
    assert_eq!(names, expected);
    assert_eq!(names.len(), 616 + 124 + 58 + 130 + 21 + 8 + 28);

    // Shapes and values as in the parts' own files (the VAE's encoder and CLAP's audio branch
    // kept; CLAP's logit scales are scalars).
    for (folder, name, ours) in [
        ("unet", "down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.weight", "audioldm2.unet.down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.weight"),
        ("unet", "conv_in.weight", "audioldm2.unet.conv_in.weight"),
        ("vae", "encoder.conv_in.weight", "audioldm2.vae.encoder.conv_in.weight"),
        ("vae", "post_quant_conv.weight", "audioldm2.vae.post_quant_conv.weight"),
        ("vocoder", "upsampler.1.weight", "audioldm2.vocoder.upsampler.1.weight"),
        ("vocoder", "scale", "audioldm2.vocoder.scale"),
        ("text_encoder", "audio_model.audio_encoder.patch_embed.proj.weight", "audioldm2.clap.audio_model.audio_encoder.patch_embed.proj.weight"),
        ("text_encoder", "text_projection.linear1.weight", "audioldm2.clap.text_projection.linear1.weight"),
        ("text_encoder", "logit_scale_t", "audioldm2.clap.logit_scale_t"),
        ("text_encoder_2", "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight", "audioldm2.t5.encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"),
        ("projection_model", "projection_1.weight", "audioldm2.projection.projection_1.weight"),
        ("projection_model", "sos_embed_1", "audioldm2.projection.sos_embed_1"),
        ("language_model", "transformer.h.1.attn.c_attn.weight", "audioldm2.gpt2.transformer.h.1.attn.c_attn.weight"),
        ("language_model", "transformer.wte.weight", "audioldm2.gpt2.transformer.wte.weight"),
    ] {
        let (shape, values) = audioldm2_source(folder, name);
        let (dtype, got_shape, bytes) = get(ours);
        assert_eq!((dtype, &got_shape), (StoredType::F32, &shape), "{ours}");
        assert_eq!(f32s(&bytes), values, "{ours}");
    }
    assert_eq!(get("audioldm2.clap.logit_scale_a").1, Vec::<usize>::new());
    assert_eq!(get("audioldm2.unet.down_blocks.1.attentions.0.proj_in.weight").1, vec![32, 32, 1, 1]);

    // The component: each part's file as it is, under its role, typed as the models read it.
    let component = &manifest.components["audioldm2"];
    let json = |p: &str| -> serde_json::Value { serde_json::from_slice(&std::fs::read(audioldm2_dir().join(p)).unwrap()).unwrap() };
    for (role, file) in [
        ("unet", "unet/config.json"),
        ("vae", "vae/config.json"),
        ("vocoder", "vocoder/config.json"),
        ("clap", "text_encoder/config.json"),
        ("t5", "text_encoder_2/config.json"),
        ("projection", "projection_model/config.json"),
        ("gpt2", "language_model/config.json"),
        ("scheduler", "scheduler/scheduler_config.json"),
    ] {
        assert_eq!(component[role], json(file), "{role}");
    }
    assert_eq!(component.as_object().unwrap().len(), 8);
    let c: m2ugen_core::config::audioldm2::Audioldm2Config = m2ugen_core::config::parse("audioldm2", component).unwrap();
    c.check().unwrap();
    assert_eq!((c.unet.block_out_channels.clone(), c.unet.heads(1), c.unet.cross_attention_dims(1)), (vec![16, 32], 4, vec![None, Some(16), Some(32)]));
    assert_eq!((c.vae.latent_channels, c.vae.scaling_factor), (4, 0.6));
    assert_eq!((c.vocoder.model_in_dim, c.vocoder.upsample_rates.clone(), c.vocoder.sampling_rate), (8, vec![2, 2], 16000));
    assert_eq!((c.clap.projection_dim, c.clap.text_config.hidden_size, c.clap.text_config.vocab_size), (16, 24, 300));
    assert_eq!((c.t5.d_model, c.t5.num_layers, c.t5.vocab_size), (32, 2, 320));
    assert_eq!((c.projection.text_encoder_dim, c.projection.text_encoder_1_dim, c.projection.language_model_dim), (16, 32, 16));
    assert_eq!((c.gpt2.n_embd, c.gpt2.n_layer, c.gpt2.new_tokens()), (16, 2, 8));
    assert_eq!((c.scheduler.beta_end, c.scheduler.steps_offset), (0.0195, 1));
    std::fs::remove_dir_all(&out).unwrap();

    // --hf audioldm2=DIR reads the pipeline too, into the same model.
    let again = scratch("audioldm2-hf");
    let run = convert_audioldm2_cli(&again, "--hf", &audioldm2_dir(), &["--dtype", "f32"]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    assert_eq!(load(&again).0.tensors.len(), manifest.tensors.len());
    std::fs::remove_dir_all(&again).unwrap();
}

#[test]
fn audioldm2_in_f16_halves_the_float_bytes() {
    let (f32_out, f16_out) = (scratch("audioldm2-f32"), scratch("audioldm2-f16"));
    assert!(convert_audioldm2_cli(&f32_out, "--diffusers", &audioldm2_dir(), &["--dtype", "f32"]).status.success());
    assert!(convert_audioldm2_cli(&f16_out, "--diffusers", &audioldm2_dir(), &[]).status.success());
    let ((full, _), (half, get)) = (load(&f32_out), load(&f16_out));
    assert_eq!(full.tensors.len(), half.tensors.len());
    assert!(half.tensors.iter().all(|t| t.dtype == StoredType::F16), "every AudioLDM 2 tensor is float, none quantized");
    let bytes = |m: &Manifest| m.tensors.iter().map(|t| t.bytes).sum::<u64>();
    assert_eq!(bytes(&full), 2 * bytes(&half));
    let (_, values) = audioldm2_source("vae", "decoder.conv_out.weight");
    let stored: Vec<f32> = get("audioldm2.vae.decoder.conv_out.weight").2.chunks_exact(2).map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()).collect();
    assert_eq!(stored, values.iter().map(|&v| half::f16::from_f32(v).to_f32()).collect::<Vec<_>>());
    let _ = std::fs::remove_dir_all(f32_out);
    let _ = std::fs::remove_dir_all(f16_out);
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

#[test]
fn a_broken_audioldm2_pipeline_is_named_in_one_line() {
    let (dir, out) = (scratch("audioldm2-broken"), scratch("audioldm2-broken-out"));
    copy_dir(&audioldm2_dir(), &dir);
    let fails = |flag: &str| {
        let line = one_line_exit_2(&convert_audioldm2_cli(&out, flag, &dir, &[]));
        assert!(!out.join("manifest.json").exists(), "nothing written: {line}");
        line
    };
    let edit_json = |file: &str, edit: &dyn Fn(&mut serde_json::Value)| {
        let path = dir.join(file);
        let original = std::fs::read(&path).unwrap();
        let mut value: serde_json::Value = serde_json::from_slice(&original).unwrap();
        edit(&mut value);
        std::fs::write(&path, serde_json::to_vec(&value).unwrap()).unwrap();
        original
    };

    // A missing folder, and a missing weights file, are named by their paths.
    std::fs::rename(dir.join("vae"), dir.join("vae-away")).unwrap();
    let line = fails("--diffusers");
    assert!(line.starts_with(&format!("m2ugen: convert: {}/vae/: missing", dir.display())), "{line}");
    std::fs::rename(dir.join("vae-away"), dir.join("vae")).unwrap();
    let weights = dir.join("unet/diffusion_pytorch_model.safetensors");
    std::fs::rename(&weights, dir.join("unet/away")).unwrap();
    let line = fails("--hf");
    assert!(line.contains(&format!("{}: missing", weights.display())), "{line}");
    std::fs::rename(dir.join("unet/away"), &weights).unwrap();

    // Another pipeline, and AudioLDM 2 for speech (VITS as its second encoder).
    let original = edit_json("model_index.json", &|v| v["_class_name"] = "StableDiffusionPipeline".into());
    let line = fails("--diffusers");
    assert!(line.ends_with(&format!("{}: _class_name is 'StableDiffusionPipeline', not AudioLDM2Pipeline (the only diffusers pipeline read)", dir.join("model_index.json").display())), "{line}");
    std::fs::write(dir.join("model_index.json"), &original).unwrap();
    edit_json("model_index.json", &|v| v["text_encoder_2"][1] = "VitsModel".into());
    assert!(fails("--diffusers").contains("text_encoder_2 is VitsModel: only T5EncoderModel"));
    std::fs::write(dir.join("model_index.json"), &original).unwrap();

    // A field of the wrong type, and widths that do not meet, each named with its file.
    let original = edit_json("vae/config.json", &|v| v["scaling_factor"] = "large".into());
    let line = fails("--diffusers");
    assert!(line.contains(&format!("{}: config: audioldm2.vae.scaling_factor: invalid type: string \"large\"", dir.join("vae/config.json").display())), "{line}");
    std::fs::write(dir.join("vae/config.json"), &original).unwrap();
    let original = edit_json("projection_model/config.json", &|v| v["text_encoder_1_dim"] = 33.into());
    let line = fails("--diffusers");
    assert!(line.contains(&format!("{}: config: audioldm2.projection.text_encoder_1_dim: 33 is not T5's width 32", dir.join("projection_model/config.json").display())), "{line}");
    std::fs::write(dir.join("projection_model/config.json"), &original).unwrap();

    // Restored, it converts.
    assert!(convert_audioldm2_cli(&out, "--diffusers", &dir, &[]).status.success());
    let _ = std::fs::remove_dir_all(&out);

    // Not a pipeline directory; none at all; a pipeline given as a transformers model; a name
    // that is not a pipeline.
    let line = one_line_exit_2(&convert_audioldm2_cli(&out, "--diffusers", &musicgen_dir(), &[]));
    assert!(line.contains(&format!("{}: no model_index.json here", musicgen_dir().display())), "{line}");
    let line = one_line_exit_2(&convert_audioldm2_cli(&out, "--diffusers", Path::new("/nonexistent-audioldm2"), &[]));
    assert_eq!(line, "m2ugen: convert: /nonexistent-audioldm2: no such directory");
    let run = Command::new(env!("CARGO_BIN_EXE_m2ugen")).args(["convert", "--out"]).arg(&out).arg("--hf").arg(format!("vae={}", dir.display())).output().unwrap();
    assert!(one_line_exit_2(&run).contains("holds a diffusers pipeline (model_index.json), not a transformers model: give AudioLDM 2 as --diffusers audioldm2=DIR"));
    let run = Command::new(env!("CARGO_BIN_EXE_m2ugen")).args(["convert", "--out"]).arg(&out).arg("--diffusers").arg(format!("musicgen={}", dir.display())).output().unwrap();
    assert!(one_line_exit_2(&run).contains("'musicgen' is not a diffusers pipeline the converter reads (audioldm2)"));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn audioldm2s_tokenizers_are_written_and_hash_listed() {
    let (dir, out) = (scratch("audioldm2-tokenizers"), scratch("audioldm2-tokenizers-out"));
    copy_dir(&audioldm2_dir(), &dir);
    // CLAP's as the slow RoBERTa files: "Ġ" is the byte-level space; "hello" merges into one
    // token, " world" into Ġw o r l d.
    std::fs::create_dir_all(dir.join("tokenizer")).unwrap();
    let vocab = r#"{"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3, "h": 4, "e": 5, "l": 6, "o": 7, "\u0120": 8, "w": 9, "r": 10, "d": 11, "he": 12, "ll": 13, "llo": 14, "hello": 15, "\u0120w": 16}"#;
    std::fs::write(dir.join("tokenizer/vocab.json"), vocab).unwrap();
    std::fs::write(dir.join("tokenizer/merges.txt"), "#version: 0.2\nh e\nl l\nll o\nhe llo\n\u{120} w\n").unwrap();
    std::fs::create_dir_all(dir.join("tokenizer_2")).unwrap();
    let t5 = std::fs::read(common::data().join("t5-tokenizer/tokenizer.json")).unwrap();
    std::fs::write(dir.join("tokenizer_2/tokenizer.json"), &t5).unwrap();
    let run = convert_audioldm2_cli(&out, "--diffusers", &dir, &[]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let manifest = Manifest::parse(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    let entry = manifest.text_tokenizer.clone().expect("T5's tokenizer");
    assert_eq!(std::fs::read(out.join(&entry.file)).unwrap(), t5, "copied as it is");
    let clap = manifest.clap_tokenizer.clone().expect("CLAP's tokenizer");
    let json = std::fs::read(out.join(&clap.file)).unwrap();
    assert_eq!((clap.bytes, clap.sha256.clone()), (json.len() as u64, hex(&Sha256::digest(&json))));
    let tokenizer = m2ugen_pipeline::tokenizer::TextTokenizer::from_bytes(&json).unwrap();
    assert_eq!(tokenizer.encode("hello world").unwrap(), [0, 15, 16, 7, 10, 6, 11, 2], "<s> hello Ġw o r l d </s>");
    assert!(manifest.tokenizer.is_none());
    let _ = std::fs::remove_dir_all(&out);

    // A tokenizer.json is taken as it is.
    std::fs::write(dir.join("tokenizer/tokenizer.json"), &json).unwrap();
    assert!(convert_audioldm2_cli(&out, "--diffusers", &dir, &[]).status.success());
    assert_eq!(std::fs::read(out.join("clap-tokenizer.json")).unwrap(), json);
    let _ = std::fs::remove_dir_all(&out);

    // T5's SentencePiece model alone is not read: the error says what to do.
    std::fs::remove_file(dir.join("tokenizer_2/tokenizer.json")).unwrap();
    std::fs::write(dir.join("tokenizer_2/spiece.model"), b"\x0a").unwrap();
    let line = one_line_exit_2(&convert_audioldm2_cli(&out, "--diffusers", &dir, &[]));
    assert!(line.contains(&format!("{}: no tokenizer.json", dir.join("tokenizer_2").display())) && line.contains("convert the tokenizer to tokenizer.json"), "{line}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn an_m2ugen_whose_projector_does_not_fit_the_audioldm2_is_refused() {
    // The reference fixture is M2UGen for MusicGen: its projector writes the T5 width of
    // MusicGen, not 128 x 32 + 8 x 16 = 4224 values.
    let out = scratch("audioldm2-checkpoint");
    let hf = format!("audioldm2={}", audioldm2_dir().display());
    let line = one_line_exit_2(&convert(&out, &["--diffusers", &hf]));
    assert!(line.contains("the checkpoint's output projector writes") && line.contains("this AudioLDM 2 takes 128 x 32 (T5) + 8 x 16 (GPT-2) = 4224"), "{line}");
    assert!(!out.join("manifest.json").exists());
}
