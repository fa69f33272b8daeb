//! AudioLDM 2's text side (Liu et al. 2024, arXiv 2308.05734; as `diffusers`'
//! `pipeline_audioldm2.py` `encode_prompt` computes it): what the UNet is conditioned on.
//!
//! CLAP's text embedding `(batch, 1, clap)` and T5's states `(batch, len, t5)` are each projected
//! to GPT-2's width and wrapped in learned start and end rows ([`Projection`],
//! `AudioLDM2ProjectionModel`), then joined: `[sos, clap, eos, sos₁, t5 …, eos₁]`, `len + 5` rows.
//! The mask follows: CLAP's row and the four added rows are real; T5's rows keep T5's mask, so
//! a shorter prompt's padding sits *between* its last token and `eos₁`. GPT-2 continues that
//! sequence by 8 states ([`Gpt2::generate_from_embeddings`]). The UNet attends to those 8
//! states and to T5's states with T5's mask ([`TextConditioning`]).
//!
//! Names under one prefix (`audioldm2` in a converted model): `{prefix}.clap.*`
//! (`ClapModel`), `{prefix}.t5.*` (`T5EncoderModel`), `{prefix}.projection.*`,
//! `{prefix}.gpt2.*` (`GPT2LMHeadModel`).

use crate::clap::ClapText;
use crate::gpt2::Gpt2;
use crate::layers::Linear;
use crate::t5::T5Encoder;
use crate::{Error, Result, Store};
use m2ugen_core::config::audioldm2::{Audioldm2Config, ProjectionConfig};
use m2ugen_gpu::{Gpu, GpuTensor, Recorder, StridedView};

/// `AudioLDM2ProjectionModel`: both encodings into GPT-2's width, each between learned start
/// and end rows, side by side.
pub struct Projection {
    config: ProjectionConfig,
    /// CLAP's width to GPT-2's.
    projection: Linear,
    /// T5's width to GPT-2's.
    projection_1: Linear,
    /// `sos_embed`, `eos_embed`, `sos_embed_1`, `eos_embed_1`, each `(width)`.
    marks: [GpuTensor; 4],
}

impl Projection {
    /// Loads `{prefix}.projection{,_1}.{weight,bias}` and `{prefix}.{sos,eos}_embed{,_1}`.
    pub fn load(store: &Store, prefix: &str, config: &ProjectionConfig) -> Result<Projection> {
        config.check(prefix)?;
        let w = config.language_model_dim;
        let mark = |n: &str| store.tensor(&format!("{prefix}.{n}"), &[w]);
        Ok(Projection {
            projection: Linear::load(store, &format!("{prefix}.projection"), w, config.text_encoder_dim, true)?,
            projection_1: Linear::load(store, &format!("{prefix}.projection_1"), w, config.text_encoder_1_dim, true)?,
            marks: [mark("sos_embed")?, mark("eos_embed")?, mark("sos_embed_1")?, mark("eos_embed_1")?],
            config: config.clone(),
        })
    }

    /// Every tensor [`Projection::load`] takes under `prefix`, with its shape.
    pub fn tensors(prefix: &str, c: &ProjectionConfig) -> Vec<(String, Vec<usize>)> {
        let w = c.language_model_dim;
        let mut v = vec![
            (format!("{prefix}.projection.weight"), vec![w, c.text_encoder_dim]),
            (format!("{prefix}.projection.bias"), vec![w]),
            (format!("{prefix}.projection_1.weight"), vec![w, c.text_encoder_1_dim]),
            (format!("{prefix}.projection_1.bias"), vec![w]),
        ];
        v.extend(["sos_embed", "eos_embed", "sos_embed_1", "eos_embed_1"].map(|n| (format!("{prefix}.{n}"), vec![w])));
        v
    }

    /// The configuration.
    pub fn config(&self) -> &ProjectionConfig {
        &self.config
    }

    /// Joins `clap` `(batch, text_encoder_dim)` (one row per prompt) and `t5` `(batch * len,
    /// text_encoder_1_dim)` with `t5_mask` `(batch * len)`: the hidden states `(batch * (len + 5),
    /// width)`, row-major per prompt, and their mask.
    pub fn forward(&self, rec: &mut Recorder, clap: &GpuTensor, t5: &GpuTensor, t5_mask: &[bool], batch: usize, len: usize) -> Result<(GpuTensor, Vec<bool>)> {
        let c = &self.config;
        let w = c.language_model_dim;
        if batch == 0 || len == 0 || clap.shape() != [batch, c.text_encoder_dim] || t5.numel() != batch * len * c.text_encoder_1_dim || t5_mask.len() != batch * len {
            return Err(Error::Request(format!(
                "projection: CLAP {:?} and T5 {:?} with {} mask values, for {batch} prompts of {len} T5 rows (widths {} and {})",
                clap.shape(),
                t5.shape(),
                t5_mask.len(),
                c.text_encoder_dim,
                c.text_encoder_1_dim
            )));
        }
        let rows = len + 5;
        let p0 = self.projection.forward(rec, clap)?;
        let p1 = self.projection_1.forward(rec, &t5.reshape(&[batch * len, c.text_encoder_1_dim])?)?;
        let out = rec.alloc("projected text", &[batch * rows, w], clap.dtype())?;
        // Row `at` of every prompt: a mark (the same for all) or one row per prompt.
        let every = |at: usize| StridedView { offset: at * w, strides: [0, 0, rows * w, 1] };
        let repeated = StridedView { offset: 0, strides: [0, 0, 0, 1] };
        let [sos, eos, sos_1, eos_1] = &self.marks;
        rec.copy_strided(sos, repeated, &out, every(0), &[batch, w])?;
        rec.copy_strided(&p0, StridedView { offset: 0, strides: [0, 0, w, 1] }, &out, every(1), &[batch, w])?;
        rec.copy_strided(eos, repeated, &out, every(2), &[batch, w])?;
        rec.copy_strided(sos_1, repeated, &out, every(3), &[batch, w])?;
        let t5_rows = StridedView { offset: 4 * w, strides: [0, rows * w, w, 1] };
        rec.copy_strided(&p1, StridedView { offset: 0, strides: [0, len * w, w, 1] }, &out, t5_rows, &[batch, len, w])?;
        rec.copy_strided(eos_1, repeated, &out, every(rows - 1), &[batch, w])?;
        let mask = t5_mask.chunks(len).flat_map(|m| [true; 4].into_iter().chain(m.iter().copied()).chain([true])).collect();
        Ok((out, mask))
    }
}

/// Prompts as token ids: `batch` prompts for each encoder, each padded to one length.
#[derive(Clone, Copy, Debug)]
pub struct Prompts<'a> {
    /// Prompts.
    pub batch: usize,
    /// CLAP's (RoBERTa's) ids `(batch, clap_len)`, row-major.
    pub clap_ids: &'a [u32],
    /// Which of them are real tokens.
    pub clap_mask: &'a [bool],
    /// Tokens per prompt for CLAP.
    pub clap_len: usize,
    /// T5's ids `(batch, t5_len)`, row-major.
    pub t5_ids: &'a [u32],
    /// Which of them are real tokens.
    pub t5_mask: &'a [bool],
    /// Tokens per prompt for T5.
    pub t5_len: usize,
}

/// What the UNet is conditioned on, for `batch` prompts.
pub struct TextConditioning {
    /// GPT-2's generated states `(batch, steps, gpt2 width)` (`generated_prompt_embeds`).
    pub generated: GpuTensor,
    /// T5's last hidden state `(batch, len, t5 width)` (`prompt_embeds`).
    pub t5: GpuTensor,
    /// T5's mask `(batch * len)` (`attention_mask`).
    pub t5_mask: Vec<bool>,
    /// Prompts.
    pub batch: usize,
    /// T5 rows per prompt.
    pub t5_len: usize,
}

/// The four text models, loaded.
pub struct TextEncoders {
    /// CLAP's text branch.
    pub clap: ClapText,
    /// Flan-T5's encoder.
    pub t5: T5Encoder,
    /// The projection into GPT-2's width.
    pub projection: Projection,
    /// GPT-2.
    pub gpt2: Gpt2,
}

impl TextEncoders {
    /// Loads `{prefix}.clap`, `{prefix}.t5`, `{prefix}.projection` and `{prefix}.gpt2` with
    /// `config`'s parts.
    pub fn load(gpu: &Gpu, store: &mut Store, prefix: &str, config: &Audioldm2Config) -> Result<TextEncoders> {
        Ok(TextEncoders {
            clap: ClapText::load(gpu, store, &format!("{prefix}.clap"), &config.clap)?,
            t5: T5Encoder::load(gpu, store, &format!("{prefix}.t5"), &config.t5)?,
            projection: Projection::load(store, &format!("{prefix}.projection"), &config.projection)?,
            gpt2: Gpt2::load(gpu, store, &format!("{prefix}.gpt2"), &config.gpt2)?,
        })
    }

    /// Every tensor [`TextEncoders::load`] takes under `prefix`, with its shape.
    pub fn tensors(prefix: &str, config: &Audioldm2Config) -> Vec<(String, Vec<usize>)> {
        let mut t = ClapText::tensors(&format!("{prefix}.clap"), &config.clap);
        t.extend(T5Encoder::tensors(&format!("{prefix}.t5"), &config.t5));
        t.extend(Projection::tensors(&format!("{prefix}.projection"), &config.projection));
        t.extend(Gpt2::tensors(&format!("{prefix}.gpt2"), &config.gpt2));
        t
    }

    /// The conditioning of `prompts`, GPT-2 generating `gpt2.max_new_tokens` states (8), all
    /// recorded in `rec`. The negative prompt of guidance is a prompt like any other (in one
    /// batch with the positive ones when padded to the same lengths, or alone).
    pub fn encode(&self, rec: &mut Recorder, p: &Prompts) -> Result<TextConditioning> {
        let clap = self.clap.forward(rec, p.clap_ids, p.clap_mask, p.batch, p.clap_len)?;
        let t5 = self.t5.forward(rec, p.t5_ids, p.t5_mask, p.batch, p.t5_len)?;
        let (projected, mask) = self.projection.forward(rec, &clap, &t5, p.t5_mask, p.batch, p.t5_len)?;
        let generated = self.gpt2.generate_from_embeddings(rec, &projected, &mask, p.batch, self.gpt2.config().new_tokens())?;
        let width = self.t5.config().d_model;
        Ok(TextConditioning { generated, t5: t5.reshape(&[p.batch, p.t5_len, width])?, t5_mask: p.t5_mask.to_vec(), batch: p.batch, t5_len: p.t5_len })
    }
}
