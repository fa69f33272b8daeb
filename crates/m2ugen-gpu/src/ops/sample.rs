use super::{elem_of, u32_of};
use crate::params::SampleParams;
use crate::pipeline::Layout;
use crate::pipeline::Slot::{Read, Uniform, Write};
use crate::recorder::{grid, Dispatch};
use crate::registry::Kernel;
use crate::{Error, GpuTensor, Recorder, Result};
use m2ugen_core::DType;

const LAYOUT: Layout = &[(0, Uniform), (1, Read), (2, Read), (3, Write)];

/// How the next token is chosen from a row of logits (the semantics of
/// `m2ugen_core::cpu::sample_token`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Choose {
    /// The largest logit, the lowest id of equals.
    Greedy,
    /// A draw after temperature, top-k and top-p.
    Sample {
        /// Divides the logits; above 0.
        temperature: f32,
        /// Keep this many most likely tokens; 0 keeps all.
        top_k: usize,
        /// Keep the most likely tokens up to this share of probability; 1 keeps all.
        top_p: f32,
    },
}

impl Recorder<'_> {
    /// One token per row of `logits` `(rows, vocab)`, chosen on the GPU; `draws` holds one
    /// uniform number in `[0, 1)` per row (ignored when greedy). Output `(rows)` u32: a decoding
    /// step reads back these ids, not the logits.
    pub fn choose_tokens(&mut self, logits: &GpuTensor, choose: &Choose, draws: &[f32]) -> Result<GpuTensor> {
        let op = "choose_tokens";
        let elem = elem_of(self.gpu, op, "logits", logits)?;
        let (rows, vocab) = (logits.rows(), logits.cols());
        let (entry, params, draws) = match *choose {
            Choose::Greedy => ("argmax", SampleParams { rows: u32_of(op, "logits", rows)?, vocab: u32_of(op, "logits", vocab)?, top_k: 0, top_p: 1.0, inv_temperature: 1.0 }, None),
            Choose::Sample { temperature, top_k, top_p } => {
                if !(temperature > 0.0 && temperature.is_finite()) {
                    return Err(Error::Setting { op, setting: "temperature", value: temperature.to_string(), range: "above 0" });
                }
                if !(top_p > 0.0 && top_p <= 1.0) {
                    return Err(Error::Setting { op, setting: "top_p", value: top_p.to_string(), range: "above 0, at most 1" });
                }
                if draws.len() != rows {
                    return Err(Error::Shape { op, what: "draws", expected: format!("{rows} uniform numbers, one per row"), got: vec![draws.len()] });
                }
                let d = self.upload("draws", &[rows], DType::F32, draws)?;
                ("sample", SampleParams { rows: u32_of(op, "logits", rows)?, vocab: u32_of(op, "logits", vocab)?, top_k: u32_of(op, "top_k", top_k)?, top_p, inv_temperature: 1.0 / temperature }, Some(d))
            }
        };
        let ids = self.alloc(op, &[rows], DType::U32)?;
        let mut buffers = vec![(1, logits.single(self.gpu, op, "logits")?), (3, ids.single(self.gpu, op, "ids")?)];
        if let Some(d) = &draws {
            buffers.push((2, d.single(self.gpu, op, "draws")?));
        }
        self.push(Dispatch { kernel: Kernel::Sample, entry, elem, layout: LAYOUT, variant: [0; 2], params: &params, buffers, workgroups: grid(rows) });
        Ok(ids)
    }
}
