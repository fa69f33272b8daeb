//! CLAP's audio branch: HTSAT, unfused (as transformers' `ClapAudioModel` and
//! `ClapModel.get_audio_features` compute it, with Hugging Face `ClapModel` names under a prefix:
//! `audioldm2.clap` in a converted AudioLDM 2). AudioLDM 2 uses it to rank the waveforms it makes
//! for one prompt by their audio-text score.
//!
//! The input is the feature extractor's log-mel spectrogram, `(channels, frames, bins)` (the
//! CPU front end, `m2ugen_media::clap_mel`, stretched to [`ClapAudioConfig::frames`]). Then:
//!
//! - BatchNorm over the mel bins, with the stored running statistics (`batch_norm`);
//! - the spectrogram folded into a square image (`reshape_mel2img`: `freq_ratio` time segments
//!   stacked along frequency), channels-last, by one permute;
//! - the patch embedding (a strided 2-D convolution, then a LayerNorm), tokens in row-major
//!   grid order;
//! - Swin stages: each block is a LayerNorm, attention within windows (odd blocks over windows
//!   shifted by half a window, cyclically, with the mask that keeps regions the roll brought
//!   together apart), its output projection plus the residual, and a LayerNorm-MLP plus the
//!   residual; between stages, patch merging (each 2x2 neighbourhood's four tokens side by
//!   side, a LayerNorm, a product to twice the width);
//! - the last LayerNorm, the mean over tokens (the reference's reshape and permute before its
//!   average pool only reorder them), the projection (linear, ReLU, linear) and L2 normalisation.
//!
//! The cyclic shift, the window partition and their inverse are one row gather each, by index
//! tables made once at load; so is patch merging. Each window is a batch item of the attention
//! kernel, and the relative position bias (the stored table looked up by the offset between two
//! tokens) is added to its scores together with the shifted windows' mask (-100, as the
//! reference adds), both precomputed at load per block: `(windows, heads, n, n)` for shifted
//! blocks, `(heads, n, n)` shared by every window otherwise.

use crate::clap::ClapProjection;
use crate::layers::{LayerNorm, Linear, Mlp};
use crate::{Error, Result, Store};
use m2ugen_core::config::audioldm2::ClapAudioConfig;
use m2ugen_core::conv::Conv2d;
use m2ugen_core::DType;
use m2ugen_gpu::{Attention, Bias, Gpu, GpuTensor, HeadShape, Heads, Recorder, Unary};

/// What the reference adds to the scores of two tokens the cyclic shift brought together.
pub const SHIFT_MASK: f32 = -100.0;

/// PyTorch's default LayerNorm and BatchNorm epsilon (the patch embedding's norm, patch
/// merging's, the last one, the input BatchNorm).
const TORCH_EPS: f32 = 1e-5;

struct Block {
    norm_before: LayerNorm,
    /// query|key|value in one product.
    qkv: Linear,
    attention_out: Linear,
    norm_after: LayerNorm,
    mlp: Mlp,
    /// Relative position bias (and shift mask) on the scores, f32.
    bias: GpuTensor,
    /// Stride of `bias` per window (0: shared).
    bias_per_window: usize,
    /// Grid rows in window order, and back.
    partition: GpuTensor,
    merge_back: GpuTensor,
}

struct Stage {
    side: usize,
    window: usize,
    heads: usize,
    blocks: Vec<Block>,
    /// Patch merging after the stage: the 2x2 gather, the LayerNorm over 4x the width, the
    /// product to 2x.
    merging: Option<(GpuTensor, LayerNorm, Linear)>,
}

/// CLAP's audio branch with its projection, loaded.
pub struct ClapAudio {
    config: ClapAudioConfig,
    /// BatchNorm over mel bins: running mean, running variance, weight, bias.
    batch_norm: [GpuTensor; 4],
    patch: (GpuTensor, GpuTensor),
    patch_norm: Option<LayerNorm>,
    stages: Vec<Stage>,
    norm: LayerNorm,
    projection: ClapProjection,
}

/// Row `r` of the windows (window after window, `window²` rows each, row-major inside) is token
/// `rows[r]` of a `side x side` grid rolled back by `shift` on both axes (`torch.roll(x, -shift)`
/// then `window_partition`).
pub fn window_rows(side: usize, window: usize, shift: usize) -> Vec<u32> {
    let per = side / window;
    let mut rows = Vec::with_capacity(side * side);
    for wh in 0..per {
        for ww in 0..per {
            for i in 0..window {
                for j in 0..window {
                    let (h, w) = ((wh * window + i + shift) % side, (ww * window + j + shift) % side);
                    rows.push((h * side + w) as u32);
                }
            }
        }
    }
    rows
}

/// The inverse of a permutation of rows.
fn inverse(rows: &[u32]) -> Vec<u32> {
    let mut back = vec![0u32; rows.len()];
    for (r, &t) in rows.iter().enumerate() {
        back[t as usize] = r as u32;
    }
    back
}

/// Patch merging's gather: token `(i, j)` of the halved grid takes tokens `(2i, 2j)`,
/// `(2i + 1, 2j)`, `(2i, 2j + 1)` and `(2i + 1, 2j + 1)` of a `side x side` grid, in that order
/// (the reference's `cat` over columns, then rows).
pub fn merge_rows(side: usize) -> Vec<u32> {
    let half = side / 2;
    let mut rows = Vec::with_capacity(side * side);
    for i in 0..half {
        for j in 0..half {
            for (di, dj) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
                rows.push(((2 * i + di) * side + 2 * j + dj) as u32);
            }
        }
    }
    rows
}

/// The scores' bias of one block: `table` `((2w - 1)², heads)` looked up by the offset between
/// two tokens of a `w x w` window, `(heads, n, n)` with `n = w²`; with `shift`, per window of a
/// `side x side` grid plus the mask of regions the roll brought together: `(windows, heads, n,
/// n)`.
pub fn window_bias(table: &[f32], heads: usize, window: usize, side: usize, shift: usize) -> Vec<f32> {
    let n = window * window;
    let span = 2 * window - 1;
    let mut bias = vec![0f32; heads * n * n];
    for a in 0..n {
        for b in 0..n {
            let (dh, dw) = ((a / window) as isize - (b / window) as isize, (a % window) as isize - (b % window) as isize);
            let index = (dh + window as isize - 1) as usize * span + (dw + window as isize - 1) as usize;
            for h in 0..heads {
                bias[(h * n + a) * n + b] = table[index * heads + h];
            }
        }
    }
    if shift == 0 {
        return bias;
    }
    // Regions of the rolled grid along one axis: before side - window, before side - shift, the
    // rest.
    let region = |x: usize| (x >= side - window) as usize + (x >= side - shift) as usize;
    let per = side / window;
    let mut out = Vec::with_capacity(per * per * bias.len());
    for wh in 0..per {
        for ww in 0..per {
            let label = |t: usize| region(wh * window + t / window) * 3 + region(ww * window + t % window);
            for h in 0..heads {
                for a in 0..n {
                    for b in 0..n {
                        let mask = if label(a) == label(b) { 0.0 } else { SHIFT_MASK };
                        out.push(bias[(h * n + a) * n + b] + mask);
                    }
                }
            }
        }
    }
    out
}

fn encoder(prefix: &str) -> String {
    format!("{prefix}.audio_model.audio_encoder")
}

impl ClapAudio {
    /// Loads the `{prefix}.audio_model.*` and `{prefix}.audio_projection.*` tensors with
    /// `config` (checked first).
    pub fn load(gpu: &Gpu, store: &mut Store, prefix: &str, config: &ClapAudioConfig) -> Result<ClapAudio> {
        let c = config;
        c.check(&format!("{prefix}.audio_config"))?;
        let e = encoder(prefix);
        let bins = c.num_mel_bins;
        let bn = format!("{e}.batch_norm");
        let batch_norm = [
            store.tensor(&format!("{bn}.running_mean"), &[bins])?,
            store.tensor(&format!("{bn}.running_var"), &[bins])?,
            store.tensor(&format!("{bn}.weight"), &[bins])?,
            store.tensor(&format!("{bn}.bias"), &[bins])?,
        ];
        let width = c.patch_embeds_hidden_size;
        let p = format!("{e}.patch_embed");
        let patch = (
            store.tensor(&format!("{p}.proj.weight"), &[width, c.patch_embed_input_channels, c.patch_size, c.patch_size])?,
            store.tensor(&format!("{p}.proj.bias"), &[width])?,
        );
        let patch_norm = if c.enable_patch_layer_norm { Some(LayerNorm::load(store, &format!("{p}.norm"), width, TORCH_EPS)?) } else { None };
        let act = Unary::of(c.hidden_act);
        let mut stages = Vec::with_capacity(c.depths.len());
        for (i, (&depth, &heads)) in c.depths.iter().zip(&c.num_attention_heads).enumerate() {
            let d = c.stage_width(i);
            let side = c.grid() >> i;
            let (window, shift) = c.stage_window(i);
            let hidden = (c.mlp_ratio * d as f64) as usize;
            let span = 2 * c.window_size - 1;
            // The window tables (rows into windows, and back): the even blocks' unshifted ones
            // and the odd blocks' shifted ones, uploaded once for the stage.
            let tables = |s: usize| -> Result<(GpuTensor, GpuTensor)> {
                let rows = window_rows(side, window, s);
                let name = format!("{e}.layers.{i} windows shifted by {s}");
                Ok((gpu.upload_u32(&name, &[rows.len()], &rows)?, gpu.upload_u32(&format!("{name}, back"), &[rows.len()], &inverse(&rows))?))
            };
            let unshifted = tables(0)?;
            let shifted = if shift > 0 { tables(shift)? } else { unshifted.clone() };
            let mut blocks = Vec::with_capacity(depth);
            for j in 0..depth {
                let b = format!("{e}.layers.{i}.blocks.{j}");
                let a = format!("{b}.attention.self");
                let parts = [(format!("{a}.query"), d), (format!("{a}.key"), d), (format!("{a}.value"), d)];
                let parts: Vec<(&str, usize)> = parts.iter().map(|(n, o)| (n.as_str(), *o)).collect();
                let shift = if j % 2 == 1 { shift } else { 0 };
                let table = store.values(&format!("{a}.relative_position_bias_table"), &[span * span, heads])?;
                let bias = window_bias(&table, heads, window, side, shift);
                let (partition, merge_back) = if j % 2 == 1 { shifted.clone() } else { unshifted.clone() };
                blocks.push(Block {
                    norm_before: LayerNorm::load(store, &format!("{b}.layernorm_before"), d, c.layer_norm_eps)?,
                    qkv: Linear::load_fused(gpu, store, &parts, d)?,
                    attention_out: Linear::load(store, &format!("{b}.attention.output.dense"), d, d, true)?,
                    norm_after: LayerNorm::load(store, &format!("{b}.layernorm_after"), d, c.layer_norm_eps)?,
                    mlp: Mlp::load(store, &format!("{b}.intermediate.dense"), &format!("{b}.output.dense"), d, hidden, act, true)?,
                    bias_per_window: if shift > 0 { heads * window.pow(4) } else { 0 },
                    bias: gpu.upload(&format!("{a} bias"), &[bias.len()], DType::F32, &bias)?,
                    partition,
                    merge_back,
                });
            }
            let merging = if i + 1 < c.depths.len() {
                let m = format!("{e}.layers.{i}.downsample");
                let rows = merge_rows(side);
                Some((
                    gpu.upload_u32(&format!("{m} gather"), &[rows.len()], &rows)?,
                    LayerNorm::load(store, &format!("{m}.norm"), 4 * d, TORCH_EPS)?,
                    Linear::load(store, &format!("{m}.reduction"), 2 * d, 4 * d, false)?,
                ))
            } else {
                None
            };
            stages.push(Stage { side, window, heads, blocks, merging });
        }
        let (h, pd) = (c.hidden_size, c.projection_dim);
        Ok(ClapAudio {
            batch_norm,
            patch,
            patch_norm,
            stages,
            norm: LayerNorm::load(store, &format!("{e}.norm"), h, TORCH_EPS)?,
            projection: ClapProjection::load(gpu, store, &format!("{prefix}.audio_projection"), h, pd, Unary::of(c.projection_hidden_act))?,
            config: config.clone(),
        })
    }

    /// Every tensor [`ClapAudio::load`] takes under `prefix`, with its shape.
    pub fn tensors(prefix: &str, c: &ClapAudioConfig) -> Vec<(String, Vec<usize>)> {
        let e = encoder(prefix);
        let mut v: Vec<(String, Vec<usize>)> = ["running_mean", "running_var", "weight", "bias"].iter().map(|part| (format!("{e}.batch_norm.{part}"), vec![c.num_mel_bins])).collect();
        let linear = |v: &mut Vec<(String, Vec<usize>)>, name: String, out: usize, inp: usize, bias: bool| {
            v.push((format!("{name}.weight"), vec![out, inp]));
            if bias {
                v.push((format!("{name}.bias"), vec![out]));
            }
        };
        let norm = |v: &mut Vec<(String, Vec<usize>)>, name: String, n: usize| {
            v.push((format!("{name}.weight"), vec![n]));
            v.push((format!("{name}.bias"), vec![n]));
        };
        let width = c.patch_embeds_hidden_size;
        v.push((format!("{e}.patch_embed.proj.weight"), vec![width, c.patch_embed_input_channels, c.patch_size, c.patch_size]));
        v.push((format!("{e}.patch_embed.proj.bias"), vec![width]));
        if c.enable_patch_layer_norm {
            norm(&mut v, format!("{e}.patch_embed.norm"), width);
        }
        let span = 2 * c.window_size - 1;
        for (i, (&depth, &heads)) in c.depths.iter().zip(&c.num_attention_heads).enumerate() {
            let d = c.stage_width(i);
            let hidden = (c.mlp_ratio * d as f64) as usize;
            for j in 0..depth {
                let b = format!("{e}.layers.{i}.blocks.{j}");
                norm(&mut v, format!("{b}.layernorm_before"), d);
                for n in ["query", "key", "value"] {
                    linear(&mut v, format!("{b}.attention.self.{n}"), d, d, c.qkv_bias);
                }
                v.push((format!("{b}.attention.self.relative_position_bias_table"), vec![span * span, heads]));
                linear(&mut v, format!("{b}.attention.output.dense"), d, d, true);
                norm(&mut v, format!("{b}.layernorm_after"), d);
                linear(&mut v, format!("{b}.intermediate.dense"), hidden, d, true);
                linear(&mut v, format!("{b}.output.dense"), d, hidden, true);
            }
            if i + 1 < c.depths.len() {
                norm(&mut v, format!("{e}.layers.{i}.downsample.norm"), 4 * d);
                linear(&mut v, format!("{e}.layers.{i}.downsample.reduction"), 2 * d, 4 * d, false);
            }
        }
        norm(&mut v, format!("{e}.norm"), c.hidden_size);
        v.extend(ClapProjection::tensors(&format!("{prefix}.audio_projection"), c.hidden_size, c.projection_dim));
        v
    }

    /// The configuration.
    pub fn config(&self) -> &ClapAudioConfig {
        &self.config
    }

    /// What the patch embedding sees of one clip's spectrogram `features` `(channels, frames,
    /// bins)`, already stretched to [`ClapAudioConfig::frames`] frames: normalised per mel bin
    /// and folded (`reshape_mel2img`: time segment `q` of `frames / freq_ratio` frames becomes
    /// rows `q · bins ..`, transposed), channels last: `(1, spec_size, spec_size, channels)`.
    pub fn image(&self, rec: &mut Recorder, features: &GpuTensor) -> Result<GpuTensor> {
        let c = &self.config;
        let (channels, frames, bins, r) = (c.patch_embed_input_channels, c.frames(), c.num_mel_bins, c.freq_ratio());
        if features.shape() != [channels, frames, bins] {
            return Err(Error::Request(format!("clap audio: a spectrogram of shape {:?}, where the model reads ({channels}, {frames}, {bins})", features.shape())));
        }
        let [mean, variance, weight, bias] = &self.batch_norm;
        let x = rec.batch_norm(&features.reshape(&[channels * frames, bins])?, mean, variance, weight, bias, TORCH_EPS)?;
        let image = rec.permute(&x.reshape(&[channels, r, frames / r, bins])?, &[1, 3, 2, 0])?;
        Ok(image.reshape(&[1, r * bins, frames / r, channels])?)
    }

    /// The pooled output `(1, hidden_size)` of one clip's spectrogram (see
    /// [`ClapAudio::image`]).
    pub fn pooled(&self, rec: &mut Recorder, features: &GpuTensor) -> Result<GpuTensor> {
        let c = &self.config;
        let image = self.image(rec, features)?;
        let pad = (c.patch_size - c.patch_stride) / 2;
        let conv = Conv2d { stride: [c.patch_stride; 2], padding: [pad; 2], ..Conv2d::plain() };
        let patches = rec.conv2d(&image, &self.patch.0, Some(&self.patch.1), &conv)?;
        let grid = c.grid();
        let mut h = patches.reshape(&[grid * grid, c.patch_embeds_hidden_size])?;
        if let Some(norm) = &self.patch_norm {
            h = norm.forward(rec, &h)?;
        }
        for (i, stage) in self.stages.iter().enumerate() {
            let d = c.stage_width(i);
            let n = stage.window * stage.window;
            let windows = (stage.side / stage.window).pow(2);
            let shape = HeadShape { heads: stage.heads, kv_heads: stage.heads, head_dim: d / stage.heads };
            for block in &stage.blocks {
                let normed = block.norm_before.forward(rec, &h)?;
                let rows = rec.gather_rows(&normed, &block.partition)?;
                let qkv = block.qkv.forward(rec, &rows)?;
                let bias = Bias { tensor: &block.bias, per_item: block.bias_per_window, per_head: n * n, per_row: n };
                let a = Attention::new(Heads::of(&qkv), Heads { tensor: &qkv, offset: d }, Heads { tensor: &qkv, offset: 2 * d }, shape, 0..n).batch(windows, n).bias(bias);
                let a = rec.attention(&a)?;
                let a = rec.gather_rows(&a, &block.merge_back)?;
                h = block.attention_out.forward_residual(rec, &a, Some(&h))?;
                let normed = block.norm_after.forward(rec, &h)?;
                h = block.mlp.forward(rec, &normed, Some(&h))?;
            }
            if let Some((gather, norm, reduction)) = &stage.merging {
                let quarter = stage.side * stage.side / 4;
                let merged = rec.gather_rows(&h, gather)?.reshape(&[quarter, 4 * d])?;
                let merged = norm.forward(rec, &merged)?;
                h = reduction.forward(rec, &merged)?;
            }
        }
        let h = self.norm.forward(rec, &h)?;
        Ok(rec.sum_rows(&h, None, None, 1.0 / h.rows() as f32)?)
    }

    /// The normalised audio embeddings `(rows, projection_dim)` of pooled outputs `(rows,
    /// hidden_size)` (see [`ClapAudio::pooled`]).
    pub fn project(&self, rec: &mut Recorder, pooled: &GpuTensor) -> Result<GpuTensor> {
        self.projection.forward(rec, pooled)
    }

    /// The normalised audio embedding `(1, projection_dim)` of one clip's spectrogram: what
    /// CLAP compares with a text's embedding.
    pub fn embed(&self, rec: &mut Recorder, features: &GpuTensor) -> Result<GpuTensor> {
        let pooled = self.pooled(rec, features)?;
        self.project(rec, &pooled)
    }
}

#[cfg(test)]
mod tests {
    use super::{inverse, merge_rows, window_bias, window_rows, SHIFT_MASK};

    #[test]
    fn windows_of_a_4x4_grid_by_hand() {
        // Windows of 2: the top-left window holds tokens 0, 1, 4, 5; the next 2, 3, 6, 7.
        assert_eq!(&window_rows(4, 2, 0)[..8], &[0, 1, 4, 5, 2, 3, 6, 7]);
        // Rolled back by 1: the first window starts at token (1, 1) = 5 and wraps at the edges.
        assert_eq!(&window_rows(4, 2, 1)[..4], &[5, 6, 9, 10]);
        assert_eq!(&window_rows(4, 2, 1)[4..8], &[7, 4, 11, 8]);
        let rows = window_rows(4, 2, 1);
        let back = inverse(&rows);
        assert!((0..16).all(|t| rows[back[t] as usize] == t as u32));
    }

    #[test]
    fn merging_takes_each_2x2_neighbourhood_in_the_reference_order() {
        // Token (0, 0) of the halved 4x4 grid: (0, 0), (1, 0), (0, 1), (1, 1) = 0, 4, 1, 5.
        assert_eq!(&merge_rows(4)[..8], &[0, 4, 1, 5, 2, 6, 3, 7]);
    }

    #[test]
    fn relative_bias_and_shift_mask_by_hand() {
        // Windows of 2, one head: the table has 9 offsets; token a=(0,0), b=(1,1) is offset
        // (-1, -1), index 0; b to a is (+1, +1), index 8; a token to itself, index 4.
        let table: Vec<f32> = (0..9).map(|i| i as f32).collect();
        let bias = window_bias(&table, 1, 2, 4, 0);
        assert_eq!(bias.len(), 16);
        assert_eq!((bias[3], bias[12], bias[0]), (0.0, 8.0, 4.0));
        // Shifted by 1 on a 4x4 grid: the last window (1, 1) mixes regions: its token 0 sits at
        // (2, 2), region (1, 1); its token 3 at (3, 3), region (2, 2): masked.
        let shifted = window_bias(&table, 1, 2, 4, 1);
        assert_eq!(shifted.len(), 4 * 16);
        let last = &shifted[3 * 16..];
        assert_eq!(last[3], 0.0 + SHIFT_MASK);
        // The first window (0, 0) lies in one region: the bias alone.
        assert_eq!(&shifted[..16], bias.as_slice());
    }
}
