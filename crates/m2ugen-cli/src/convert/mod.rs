//! `m2ugen convert`: official M2UGen (and MU-LLaMA) checkpoints into the shard format.
//!
//! Reads `checkpoint.pth` safely (tensor data only, nothing executed; non-tensor objects such as
//! `args` are never touched), one tensor at a time, and writes shards as it goes. At conversion:
//! LoRA pairs are folded into their base weights (`W + B·A`), weight-norm pairs into plain
//! weights (`g · v / ‖v‖`), the LLM's linear weights are quantized on request, and everything
//! else is stored as f16 (or f32 with `--dtype f32`, which the parity tests use).

pub mod names;
pub mod writer;

use anyhow::{bail, Context, Result};
use half::f16;
use m2ugen_core::quant::{quantize, QuantFormat};
use m2ugen_weights::manifest::{Manifest, StoredType};
use names::Role;
use pytorch_reader::{DType as TorchType, PytorchReader};
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
}

/// A checkpoint's tensors, read lazily.
struct Checkpoint {
    path: String,
    reader: PytorchReader,
}

impl Checkpoint {
    fn open(path: &Path) -> Result<Self> {
        if !path.is_file() {
            bail!("{}: no such file", path.display());
        }
        let reader = PytorchReader::with_top_level_key(path, "model")
            .map_err(|e| anyhow::anyhow!("{}: not a readable PyTorch checkpoint with a 'model' state dict ({e})", path.display()))?;
        Ok(Checkpoint { path: path.display().to_string(), reader })
    }

    fn shape(&self, name: &str) -> Result<Vec<usize>> {
        Ok(self.reader.get(name).with_context(|| format!("{}: no tensor '{name}'", self.path))?.shape().to_vec())
    }

    /// A float tensor as f32 values.
    fn read_f32(&self, name: &str) -> Result<Vec<f32>> {
        let t = self.reader.get(name).with_context(|| format!("{}: no tensor '{name}'", self.path))?;
        let bytes = t.read().with_context(|| format!("{}: reading '{name}'", self.path))?;
        Ok(match t.dtype() {
            TorchType::F32 => bytes.chunks_exact(4).map(|b| f32::from_ne_bytes([b[0], b[1], b[2], b[3]])).collect(),
            TorchType::F16 => bytes.chunks_exact(2).map(|b| f16::from_ne_bytes([b[0], b[1]]).to_f32()).collect(),
            TorchType::BF16 => bytes.chunks_exact(2).map(|b| half::bf16::from_ne_bytes([b[0], b[1]]).to_f32()).collect(),
            TorchType::F64 => bytes.chunks_exact(8).map(|b| f64::from_ne_bytes(b.try_into().unwrap_or([0; 8])) as f32).collect(),
            other => bail!("{}: '{name}' is {other:?}, expected a float tensor", self.path),
        })
    }
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

/// Whether a converted tensor is one of the LLM's linear weights (quantized on request).
fn is_llm_linear(ours: &str, shape: &[usize]) -> bool {
    shape.len() == 2 && ours.starts_with("llm.layers.") && ours.ends_with(".weight") && !ours.contains("norm")
}

/// Converts an M2UGen checkpoint (with its Meta `params.json`) into `out`.
pub fn convert_m2ugen(checkpoint: &Path, params: &Path, out: &Path, options: &Options) -> Result<Manifest> {
    let params_text = std::fs::read_to_string(params).with_context(|| format!("{}: cannot read", params.display()))?;
    let llama: serde_json::Value = serde_json::from_str(&params_text).with_context(|| format!("{}: not valid JSON", params.display()))?;
    for field in ["dim", "n_layers", "n_heads"] {
        if !llama.get(field).is_some_and(|v| v.is_u64()) {
            bail!("{}: field '{field}' is missing or not a positive integer", params.display());
        }
    }
    let ckpt = Checkpoint::open(checkpoint)?;
    let mut writer = writer::ShardWriter::new(out, options.shard_bytes)?;
    let mut keys = ckpt.reader.keys();
    keys.sort();
    let mut folded_norms = std::collections::HashSet::new();
    for name in &keys {
        let (ours, values, shape) = match names::role(name) {
            Role::Skip | Role::LoraPart => continue,
            Role::WeightNormPart => {
                let Some((g, v, weight)) = names::weight_norm_parts(name) else { continue };
                if !folded_norms.insert(weight.clone()) {
                    continue;
                }
                let (gs, vs) = (ckpt.shape(&g)?, ckpt.shape(&v)?);
                let folded = fold_weight_norm(&ckpt.read_f32(&g)?, &gs, &ckpt.read_f32(&v)?, &vs).with_context(|| format!("folding '{weight}'"))?;
                let Role::Rename(ours) = names::role(&weight) else { continue };
                (ours, folded, vs)
            }
            Role::Rename(ours) => {
                let shape = ckpt.shape(name)?;
                let mut values = ckpt.read_f32(name)?;
                if let Some((l1, l2)) = names::lora_pair(name).filter(|(l1, _)| ckpt.reader.get(l1).is_some()) {
                    let (a_shape, b_shape) = (ckpt.shape(&l1)?, ckpt.shape(&l2)?);
                    let (&[out_f, in_f], &[rank, a_in], &[b_out, b_rank]) = (shape.as_slice(), a_shape.as_slice(), b_shape.as_slice()) else {
                        bail!("LoRA of '{name}': shapes {shape:?}, {a_shape:?}, {b_shape:?} are not matrices");
                    };
                    if a_in != in_f || b_out != out_f || b_rank != rank {
                        bail!("LoRA of '{name}': {shape:?} = {b_shape:?} x {a_shape:?} does not fit");
                    }
                    fold_lora(&mut values, &ckpt.read_f32(&l1)?, &ckpt.read_f32(&l2)?, out_f, in_f, rank);
                }
                (ours, values, shape)
            }
        };
        match options.quant {
            Some(format) if is_llm_linear(&ours, &shape) => {
                let q = quantize(format, shape[0], shape[1], &values)?;
                let bytes: Vec<u8> = q.q.iter().chain(&q.scales).flat_map(|w| w.to_le_bytes()).collect();
                let dtype = if format == QuantFormat::Q8 { StoredType::Q8 } else { StoredType::Q4 };
                writer.add(&ours, &shape, dtype, &bytes)?;
            }
            _ => writer.add(&ours, &shape, options.float, &float_bytes(&values, options.float))?,
        }
    }
    let mut components = BTreeMap::new();
    components.insert("llama".to_string(), llama);
    writer.finish(&options.model, env!("CARGO_PKG_VERSION"), components)
}
