//! How far a quantized model is from its float original: both read the same token sequence (the
//! prompt and the original's greedy continuation, so both see the same context at every
//! position), and their logits are compared position by position.

use crate::generate::GenerateError;
use crate::sampling::argmax;
use m2ugen_gpu::{Gpu, Recorder};
use m2ugen_models::Llama;

/// The comparison's figures.
#[derive(Clone, Debug, PartialEq)]
pub struct Quality {
    /// Positions compared.
    pub positions: usize,
    /// Largest absolute logit difference.
    pub max_logit_error: f32,
    /// Mean absolute logit difference.
    pub mean_logit_error: f32,
    /// Fraction of positions where both pick the same greedy token.
    pub top1_agreement: f32,
}

async fn logits_of(gpu: &Gpu, llama: &Llama, tokens: &[u32], from: usize) -> Result<Vec<f32>, GenerateError> {
    let mut cache = llama.new_cache(gpu, 1, tokens.len())?;
    let mut rec = Recorder::new(gpu);
    let hidden = llama.prefill(&mut rec, &mut cache, 0, tokens)?;
    let rows: Vec<u32> = (from as u32..tokens.len() as u32).collect();
    let picked = llama.rows(&mut rec, &hidden, &rows)?;
    let logits = llama.logits(&mut rec, &picked)?;
    rec.submit()?;
    Ok(gpu.read(&logits).await?)
}

/// Compares `candidate` with `reference` on `prompt` followed by `new_tokens` greedy tokens of
/// the reference (no media).
pub async fn compare(gpu: &Gpu, reference: &Llama, candidate: &Llama, prompt: &[u32], new_tokens: usize) -> Result<Quality, GenerateError> {
    if prompt.is_empty() || reference.config.vocab != candidate.config.vocab {
        return Err(GenerateError::Request("quality: an empty prompt, or models of different vocabularies".into()));
    }
    let vocab = reference.config.vocab;
    let mut tokens = prompt.to_vec();
    for _ in 0..new_tokens {
        let l = logits_of(gpu, reference, &tokens, tokens.len() - 1).await?;
        tokens.push(argmax(&l) as u32);
    }
    let from = prompt.len() - 1;
    let ours = logits_of(gpu, candidate, &tokens, from).await?;
    let theirs = logits_of(gpu, reference, &tokens, from).await?;
    let positions = tokens.len() - from;
    let mut max = 0f32;
    let mut sum = 0f64;
    let mut agree = 0;
    for (a, b) in ours.chunks(vocab).zip(theirs.chunks(vocab)) {
        for (x, y) in a.iter().zip(b) {
            max = max.max((x - y).abs());
            sum += (x - y).abs() as f64;
        }
        agree += (argmax(a) == argmax(b)) as usize;
    }
    Ok(Quality { positions, max_logit_error: max, mean_logit_error: (sum / (positions * vocab) as f64) as f32, top1_agreement: agree as f32 / positions as f32 })
}
