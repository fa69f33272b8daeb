//! M2UGen's (and MU-LLaMA's) adapter from an encoder to the LLM's width, one per medium
//! (`music_adapter`, `image_adapter`, `video_adapter`), as the reference computes it:
//!
//! 1. `aggregate`: a `Conv1d(rows, 1, 1)` across rows — MERT's hidden states (after their time
//!    means), or ViT's and ViViT's tokens — so `y = b + Σ_t w[t] · x[t]`;
//! 2. L2 normalisation, times the modality weight `w / (w + 1e-6)` with `w = 1`;
//! 3. `proj` to the LLM's width;
//! 4. blocks of `x + w2(silu(w1 n) · w3 n)` with `n = RMSNorm(x)` (eps 1e-6): three in M2UGen;
//!    MU-LLaMA's are four times as wide, which the weights' shapes say.
//!
//! The output `(1, dim)` stays on the GPU and goes to [`crate::Llama::set_media`].

use crate::layers::{FeedForward, Linear, RmsNorm};
use crate::{Result, Store};
use m2ugen_gpu::{Gpu, GpuTensor, Recorder};

/// The modality weight after normalisation: `w / (w + 1e-6)` with the reference's `w = 1`.
pub const MODALITY_WEIGHT: f32 = 1.0 / (1.0 + 1e-6);

/// `F.normalize`'s floor on the norm.
const NORMALIZE_EPS: f32 = 1e-12;

/// One medium's adapter, loaded.
pub struct MediaAdapter {
    aggregate_weight: GpuTensor,
    aggregate_bias: GpuTensor,
    scale: GpuTensor,
    proj: Linear,
    blocks: Vec<(RmsNorm, FeedForward)>,
}

impl MediaAdapter {
    /// Loads `{name}.*` for `rows` aggregated rows of `width` values, giving `dim` wide features.
    /// The number of blocks and their width come from the stored tensors.
    pub fn load(gpu: &Gpu, store: &mut Store, name: &str, rows: usize, width: usize, dim: usize) -> Result<MediaAdapter> {
        let aggregate_weight = store.tensor(&format!("{name}.aggregate.weight"), &[1, rows, 1])?.reshape(&[rows])?;
        let aggregate_bias = store.tensor(&format!("{name}.aggregate.bias"), &[1])?;
        let scale = gpu.upload(&format!("{name} modality weight"), &[width], store.dtype(), &vec![MODALITY_WEIGHT; width])?;
        let proj = Linear::load(store, &format!("{name}.proj"), dim, width, true)?;
        let mut blocks = Vec::new();
        while store.has(&format!("{name}.blocks.{}.norm.weight", blocks.len())) {
            let b = format!("{name}.blocks.{}", blocks.len());
            let hidden = store.shape(&format!("{b}.w1.weight"))?.first().copied().unwrap_or(0);
            let norm = RmsNorm::load(store, &format!("{b}.norm"), dim, 1e-6)?;
            blocks.push((norm, FeedForward::load(gpu, store, &b, dim, hidden, false)?));
        }
        Ok(MediaAdapter { aggregate_weight, aggregate_bias, scale, proj, blocks })
    }

    /// The tensors of an M2UGen adapter `name` (three blocks of `hidden`: `dim` in M2UGen, four
    /// times that in MU-LLaMA), with their shapes.
    pub fn tensors(name: &str, rows: usize, width: usize, dim: usize, hidden: usize) -> Vec<(String, Vec<usize>)> {
        let mut t = vec![
            (format!("{name}.aggregate.weight"), vec![1, rows, 1]),
            (format!("{name}.aggregate.bias"), vec![1]),
            (format!("{name}.proj.weight"), vec![dim, width]),
            (format!("{name}.proj.bias"), vec![dim]),
        ];
        for b in 0..3 {
            let p = format!("{name}.blocks.{b}");
            t.push((format!("{p}.norm.weight"), vec![dim]));
            t.push((format!("{p}.w1.weight"), vec![hidden, dim]));
            t.push((format!("{p}.w2.weight"), vec![dim, hidden]));
            t.push((format!("{p}.w3.weight"), vec![hidden, dim]));
        }
        t
    }

    /// The activation type it was loaded in.
    pub fn dtype(&self) -> m2ugen_core::DType {
        self.scale.dtype()
    }

    /// Rows the aggregate takes.
    pub fn rows(&self) -> usize {
        self.aggregate_weight.numel()
    }

    /// The feature `(1, dim)` of `x` `(rows, width)`.
    pub fn forward(&self, rec: &mut Recorder, x: &GpuTensor) -> Result<GpuTensor> {
        let a = rec.sum_rows(x, Some(&self.aggregate_weight), Some(&self.aggregate_bias), 1.0)?;
        let a = rec.l2_norm(&a, &self.scale, NORMALIZE_EPS)?;
        let mut h = self.proj.forward(rec, &a)?;
        for (norm, ffn) in &self.blocks {
            let n = norm.forward(rec, &h)?;
            h = ffn.forward(rec, &n, Some(&h))?;
        }
        Ok(h)
    }
}
