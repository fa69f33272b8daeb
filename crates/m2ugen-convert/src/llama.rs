//! LLaMA weights in the two published layouts, presented as the reference's names
//! (`llama.layers.0.attention.wq.weight`, Meta's RoPE pairing) so that one naming table
//! ([`crate::names`]) and one model serve both:
//!
//! - Meta: `consolidated.00.pth` (more files for model-parallel checkpoints, concatenated per
//!   tensor along the axis Meta split it on) and `params.json`;
//! - Hugging Face: `config.json` and `model.safetensors` (or shards listed in
//!   `model.safetensors.index.json`), whose q/k rows are permuted for rotate-half RoPE and are
//!   put back in Meta's order here.
//!
//! [`Overlay`] lays an M2UGen or MU-LLaMA checkpoint (its LoRA pairs, biases, gates and adapters)
//! over such a base: the checkpoint's tensors win, the base fills in the rest.

use crate::source::{Safetensors, TensorSource};
use anyhow::{bail, Context, Result};
use pytorch_reader::PytorchReader;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The axis along which Meta's model-parallel checkpoints split a tensor (`None`: replicated).
pub fn meta_split_axis(name: &str) -> Option<usize> {
    let w = name.strip_suffix(".weight")?;
    let last = w.rsplit('.').next()?;
    match last {
        "wq" | "wk" | "wv" | "w1" | "w3" | "output" => Some(0),
        "wo" | "w2" | "tok_embeddings" => Some(1),
        _ => None,
    }
}

/// Concatenates row-major tensors of equal shape but for `axis`.
pub fn concat(parts: &[(Vec<usize>, Vec<f32>)], axis: usize) -> Result<(Vec<usize>, Vec<f32>)> {
    let Some((first, _)) = parts.first() else { bail!("nothing to concatenate") };
    if axis >= first.len() || parts.iter().any(|(s, _)| s.len() != first.len() || s.iter().enumerate().any(|(d, &n)| d != axis && n != first[d])) {
        bail!("shapes {:?} do not concatenate along axis {axis}", parts.iter().map(|p| &p.0).collect::<Vec<_>>());
    }
    let outer: usize = first[..axis].iter().product();
    let mut shape = first.clone();
    shape[axis] = parts.iter().map(|(s, _)| s[axis]).sum();
    let mut out = Vec::with_capacity(shape.iter().product());
    for o in 0..outer {
        for (s, v) in parts {
            let inner: usize = s[axis..].iter().product();
            out.extend_from_slice(&v[o * inner..(o + 1) * inner]);
        }
    }
    Ok((shape, out))
}

/// Meta's layout: `consolidated.NN.pth` files, tensors named as in Meta's code.
pub struct MetaLlama {
    dir: String,
    files: Vec<PytorchReader>,
}

impl MetaLlama {
    /// Opens every `consolidated.*.pth` in `dir`.
    pub fn open(dir: &Path) -> Result<Self> {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
            .with_context(|| format!("{}: cannot list", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("consolidated.") && n.ends_with(".pth")))
            .collect();
        paths.sort();
        if paths.is_empty() {
            bail!("{}: no consolidated.*.pth here", dir.display());
        }
        let files = paths.iter().map(|p| PytorchReader::new(p).map_err(|e| anyhow::anyhow!("{}: not a readable PyTorch state dict ({e})", p.display()))).collect::<Result<_>>()?;
        Ok(MetaLlama { dir: dir.display().to_string(), files })
    }

    fn part(&self, file: usize, name: &str) -> Result<(Vec<usize>, Vec<f32>)> {
        let t = self.files[file].get(name).with_context(|| format!("{}: consolidated file {file} has no tensor '{name}'", self.dir))?;
        Ok((t.shape().to_vec(), crate::source::torch_floats(t, &self.dir, name)?))
    }
}

impl TensorSource for MetaLlama {
    fn keys(&self) -> Vec<String> {
        // `rope.freqs` (old checkpoints) is recomputed, not stored.
        self.files[0].keys().into_iter().filter(|k| k != "rope.freqs").map(|k| format!("llama.{k}")).collect()
    }

    fn has(&self, name: &str) -> bool {
        name.strip_prefix("llama.").is_some_and(|n| self.files[0].get(n).is_some())
    }

    fn shape(&self, name: &str) -> Result<Vec<usize>> {
        let n = name.strip_prefix("llama.").with_context(|| format!("{}: no tensor '{name}'", self.dir))?;
        let first = self.files[0].get(n).with_context(|| format!("{}: no tensor '{n}'", self.dir))?.shape().to_vec();
        match meta_split_axis(n) {
            Some(axis) if self.files.len() > 1 && axis < first.len() => {
                let mut shape = first;
                shape[axis] *= self.files.len();
                Ok(shape)
            }
            _ => Ok(first),
        }
    }

    fn read_f32(&self, name: &str) -> Result<Vec<f32>> {
        let n = name.strip_prefix("llama.").with_context(|| format!("{}: no tensor '{name}'", self.dir))?;
        match meta_split_axis(n) {
            Some(axis) if self.files.len() > 1 => {
                let parts = (0..self.files.len()).map(|f| self.part(f, n)).collect::<Result<Vec<_>>>()?;
                Ok(concat(&parts, axis).with_context(|| format!("{}: '{n}'", self.dir))?.1)
            }
            _ => Ok(self.part(0, n)?.1),
        }
    }
}

/// Hugging Face's layout, named and ordered as Meta's.
pub struct HfLlama {
    files: Vec<Safetensors>,
    /// Meta name (`llama.…`) → (file, HF name, heads of a q/k weight to un-permute).
    map: BTreeMap<String, (usize, String, Option<usize>)>,
}

/// The Meta name of a Hugging Face LLaMA tensor, if the model uses it.
pub fn meta_name_of_hf(name: &str) -> Option<String> {
    let ours = match name {
        "model.embed_tokens.weight" => "tok_embeddings.weight".to_string(),
        "model.norm.weight" => "norm.weight".to_string(),
        "lm_head.weight" => "output.weight".to_string(),
        _ => {
            let rest = name.strip_prefix("model.layers.")?;
            let (layer, part) = rest.split_once('.')?;
            layer.parse::<usize>().ok()?;
            let (module, param) = part.rsplit_once('.')?;
            let meta = match module {
                "self_attn.q_proj" => "attention.wq",
                "self_attn.k_proj" => "attention.wk",
                "self_attn.v_proj" => "attention.wv",
                "self_attn.o_proj" => "attention.wo",
                "mlp.gate_proj" => "feed_forward.w1",
                "mlp.down_proj" => "feed_forward.w2",
                "mlp.up_proj" => "feed_forward.w3",
                "input_layernorm" => "attention_norm",
                "post_attention_layernorm" => "ffn_norm",
                _ => return None,
            };
            format!("layers.{layer}.{meta}.{param}")
        }
    };
    Some(format!("llama.{ours}"))
}

/// Undoes Hugging Face's q/k permutation: its row `h·d + p·d/2 + i` is Meta's row `h·d + 2i + p`
/// (`d` the head size), for a weight `(heads·d, cols)` or a bias `(heads·d)`.
pub fn unpermute_rows(hf: &[f32], rows: usize, cols: usize, heads: usize) -> Result<Vec<f32>> {
    if heads == 0 || rows % heads != 0 || (rows / heads) % 2 != 0 || hf.len() != rows * cols {
        bail!("cannot un-permute {rows}x{cols} rows for {heads} heads");
    }
    let d = rows / heads;
    let mut meta = vec![0f32; hf.len()];
    for h in 0..heads {
        for i in 0..d / 2 {
            for p in 0..2 {
                let (from, to) = (h * d + p * d / 2 + i, h * d + 2 * i + p);
                meta[to * cols..(to + 1) * cols].copy_from_slice(&hf[from * cols..(from + 1) * cols]);
            }
        }
    }
    Ok(meta)
}

fn uint(config: &serde_json::Value, field: &str, file: &str) -> Result<usize> {
    config.get(field).and_then(|v| v.as_u64()).map(|v| v as usize).with_context(|| format!("{file}: field '{field}' is missing or not a positive integer"))
}

impl HfLlama {
    /// Opens a Hugging Face LLaMA directory; also gives its Meta-style `params.json`.
    pub fn open(dir: &Path) -> Result<(Self, serde_json::Value)> {
        let config_path = dir.join("config.json");
        let at = config_path.display().to_string();
        let config = crate::read_json(&config_path)?;
        let (dim, n_layers, n_heads) = (uint(&config, "hidden_size", &at)?, uint(&config, "num_hidden_layers", &at)?, uint(&config, "num_attention_heads", &at)?);
        let n_kv_heads = config.get("num_key_value_heads").and_then(|v| v.as_u64()).map_or(n_heads, |v| v as usize);
        let rope_theta = config.get("rope_theta").or_else(|| config.pointer("/rope_parameters/rope_theta")).and_then(|v| v.as_f64()).unwrap_or(10000.0);
        let norm_eps = config.get("rms_norm_eps").and_then(|v| v.as_f64()).unwrap_or(1e-5);
        if config.get("head_dim").and_then(|v| v.as_u64()).is_some_and(|h| h as usize * n_heads != dim) {
            bail!("{at}: head_dim times num_attention_heads is not hidden_size; Meta's layout cannot hold it");
        }
        let params = serde_json::json!({"dim": dim, "n_layers": n_layers, "n_heads": n_heads, "n_kv_heads": n_kv_heads, "norm_eps": norm_eps, "rope_theta": rope_theta, "vocab_size": config.get("vocab_size")});
        let index = dir.join("model.safetensors.index.json");
        let file_names: Vec<String> = if index.is_file() {
            let index = crate::read_json(&index)?;
            let map = index.get("weight_map").and_then(|m| m.as_object()).with_context(|| format!("{}: no 'weight_map'", dir.join("model.safetensors.index.json").display()))?;
            let mut files: Vec<String> = map.values().filter_map(|v| v.as_str().map(str::to_string)).collect();
            files.sort();
            files.dedup();
            files
        } else {
            vec!["model.safetensors".into()]
        };
        let mut files = Vec::new();
        let mut map = BTreeMap::new();
        for (i, f) in file_names.iter().enumerate() {
            if f.contains('/') || f.contains('\\') || f.starts_with('.') {
                bail!("{}: weight_map names '{f}', not a file beside it", dir.display());
            }
            let st = Safetensors::open(&dir.join(f))?;
            for name in st.keys() {
                if let Some(meta) = meta_name_of_hf(&name) {
                    let heads = if name.contains("self_attn.q_proj") { Some(n_heads) } else if name.contains("self_attn.k_proj") { Some(n_kv_heads) } else { None };
                    map.insert(meta, (i, name, heads));
                }
            }
            files.push(st);
        }
        // Tied embeddings: the output head is the embedding table.
        if !map.contains_key("llama.output.weight") {
            if let Some(embed) = map.get("llama.tok_embeddings.weight").cloned() {
                map.insert("llama.output.weight".into(), embed);
            }
        }
        Ok((HfLlama { files, map }, params))
    }

    fn entry(&self, name: &str) -> Result<&(usize, String, Option<usize>)> {
        self.map.get(name).with_context(|| format!("Hugging Face LLaMA: no tensor for '{name}'"))
    }
}

impl TensorSource for HfLlama {
    fn keys(&self) -> Vec<String> {
        self.map.keys().cloned().collect()
    }

    fn has(&self, name: &str) -> bool {
        self.map.contains_key(name)
    }

    fn shape(&self, name: &str) -> Result<Vec<usize>> {
        let (file, hf, _) = self.entry(name)?;
        self.files[*file].shape(hf)
    }

    fn read_f32(&self, name: &str) -> Result<Vec<f32>> {
        let (file, hf, heads) = self.entry(name)?;
        let values = self.files[*file].read_f32(hf)?;
        match heads {
            None => Ok(values),
            Some(heads) => {
                let shape = self.files[*file].shape(hf)?;
                let cols = shape.get(1).copied().unwrap_or(1);
                unpermute_rows(&values, shape[0], cols, *heads).with_context(|| format!("'{hf}'"))
            }
        }
    }
}

/// Several sources as one: the first that has a name gives it.
pub struct Overlay(pub Vec<Box<dyn TensorSource>>);

impl Overlay {
    fn owner(&self, name: &str) -> Result<&dyn TensorSource> {
        self.0.iter().find(|s| s.has(name)).map(|s| s.as_ref()).with_context(|| format!("no source has tensor '{name}'"))
    }
}

impl TensorSource for Overlay {
    fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.0.iter().flat_map(|s| s.keys()).collect();
        keys.sort();
        keys.dedup();
        keys
    }

    fn has(&self, name: &str) -> bool {
        self.0.iter().any(|s| s.has(name))
    }

    fn shape(&self, name: &str) -> Result<Vec<usize>> {
        self.owner(name)?.shape(name)
    }

    fn read_f32(&self, name: &str) -> Result<Vec<f32>> {
        self.owner(name)?.read_f32(name)
    }
}

/// Opens a LLaMA directory in either layout: the source and its Meta-style params.
pub fn open(dir: &Path) -> Result<(Box<dyn TensorSource>, serde_json::Value)> {
    if dir.join("params.json").is_file() {
        let params = crate::read_json(&dir.join("params.json"))?;
        Ok((Box::new(MetaLlama::open(dir)?), params))
    } else if dir.join("config.json").is_file() {
        let (source, params) = HfLlama::open(dir)?;
        Ok((Box::new(source), params))
    } else {
        bail!("{}: neither Meta's layout (params.json + consolidated.*.pth) nor Hugging Face's (config.json + model.safetensors)", dir.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_parallel_parts_join_along_metas_axes() {
        // Two 2x3 halves along rows, then along columns, written out by hand.
        let a = (vec![2, 3], vec![1., 2., 3., 4., 5., 6.]);
        let b = (vec![2, 3], vec![7., 8., 9., 10., 11., 12.]);
        assert_eq!(concat(&[a.clone(), b.clone()], 0).unwrap(), (vec![4, 3], vec![1., 2., 3., 4., 5., 6., 7., 8., 9., 10., 11., 12.]));
        assert_eq!(concat(&[a.clone(), b], 1).unwrap(), (vec![2, 6], vec![1., 2., 3., 7., 8., 9., 4., 5., 6., 10., 11., 12.]));
        assert!(concat(&[a, (vec![3, 3], vec![0.; 9])], 1).is_err());
        assert_eq!(meta_split_axis("layers.3.attention.wq.weight"), Some(0));
        assert_eq!(meta_split_axis("layers.3.feed_forward.w2.weight"), Some(1));
        assert_eq!(meta_split_axis("tok_embeddings.weight"), Some(1));
        assert_eq!(meta_split_axis("layers.3.attention_norm.weight"), None);
    }

    #[test]
    fn hugging_face_q_rows_go_back_to_metas_pairs() {
        // One head of size 4, one column: HF rows [r0 r1 r2 r3] hold Meta rows [0 2 1 3].
        assert_eq!(unpermute_rows(&[10., 12., 11., 13.], 4, 1, 1).unwrap(), vec![10., 11., 12., 13.]);
        // Two heads of size 2 are already in order (one pair each).
        assert_eq!(unpermute_rows(&[1., 2., 3., 4.], 4, 1, 2).unwrap(), vec![1., 2., 3., 4.]);
        assert!(unpermute_rows(&[0.; 6], 6, 1, 4).is_err());
        assert_eq!(meta_name_of_hf("model.layers.2.mlp.gate_proj.weight").as_deref(), Some("llama.layers.2.feed_forward.w1.weight"));
        assert_eq!(meta_name_of_hf("model.layers.0.self_attn.k_proj.bias").as_deref(), Some("llama.layers.0.attention.wk.bias"));
        assert_eq!(meta_name_of_hf("model.rotary_emb.inv_freq"), None);
    }

    /// Tensors in memory: name → values (1-D).
    struct Memory(BTreeMap<String, Vec<f32>>);

    impl TensorSource for Memory {
        fn keys(&self) -> Vec<String> {
            self.0.keys().cloned().collect()
        }
        fn has(&self, name: &str) -> bool {
            self.0.contains_key(name)
        }
        fn shape(&self, name: &str) -> Result<Vec<usize>> {
            Ok(vec![self.0.get(name).context("missing")?.len()])
        }
        fn read_f32(&self, name: &str) -> Result<Vec<f32>> {
            self.0.get(name).cloned().context("missing")
        }
    }

    #[test]
    fn an_overlay_takes_the_top_source_first_and_the_base_for_the_rest() {
        let top = Memory([("llama.a".to_string(), vec![1.0]), ("prefix_query.weight".to_string(), vec![2.0])].into());
        let base = Memory([("llama.a".to_string(), vec![9.0, 9.0]), ("llama.b".to_string(), vec![3.0])].into());
        let o = Overlay(vec![Box::new(top), Box::new(base)]);
        assert_eq!(o.keys(), vec!["llama.a", "llama.b", "prefix_query.weight"]);
        assert_eq!((o.read_f32("llama.a").unwrap(), o.shape("llama.a").unwrap()), (vec![1.0], vec![1]));
        assert_eq!(o.read_f32("llama.b").unwrap(), vec![3.0]);
        assert!(o.read_f32("llama.c").unwrap_err().to_string().contains("no source has tensor 'llama.c'"));
    }
}
