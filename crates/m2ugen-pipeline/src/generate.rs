//! Text generation with the KV cache: each sequence's prompt is prefilled once, then every
//! sequence advances one token per step together (one decode over all cache slots, so the
//! weights are read once per step for the whole batch).
//!
//! Stops per sequence on the end-of-sequence token, on a stop text (the reference's `\n###`)
//! or at a length; streams each token and its text to the caller as it is produced; a
//! [`Cancel`] flag ends every sequence at the next step.

use crate::sampling::{sample, Sampling};
use m2ugen_core::rng::Rng;
use m2ugen_gpu::{Gpu, Recorder};
use m2ugen_models::llama::Media;
use m2ugen_models::Llama;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Turns token ids into text (the tokenizer, or a stand-in in tests).
pub trait Detokenize {
    /// The text of `tokens`.
    fn decode(&self, tokens: &[u32]) -> String;
}

/// One sequence to generate.
#[derive(Clone)]
pub struct Request<'a> {
    /// Prompt token ids.
    pub prompt: Vec<u32>,
    /// Its media features.
    pub media: Media<'a>,
    /// Seed of its sampling.
    pub seed: u64,
}

/// Settings shared by the sequences of one call.
#[derive(Clone, Debug)]
pub struct Settings {
    /// How each next token is chosen.
    pub sampling: Sampling,
    /// Most tokens generated per sequence.
    pub max_new_tokens: usize,
    /// End-of-sequence token, if the vocabulary has one.
    pub eos: Option<u32>,
    /// Texts that end a sequence (not included in its text), e.g. `"\n###"`.
    pub stop_texts: Vec<String>,
}

impl Default for Settings {
    /// Greedy, 256 tokens, LLaMA's `</s>` (2) and the reference's `\n###`.
    fn default() -> Self {
        Settings { sampling: Sampling::Greedy, max_new_tokens: 256, eos: Some(2), stop_texts: vec!["\n###".into()] }
    }
}

/// Why a sequence ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Finish {
    /// It produced the end-of-sequence token.
    Eos,
    /// Its text reached a stop text.
    StopText,
    /// It reached `max_new_tokens` or the cache's length.
    Length,
    /// The caller cancelled.
    Cancelled,
}

/// A generated sequence.
#[derive(Clone, Debug, PartialEq)]
pub struct Output {
    /// Generated token ids (the end-of-sequence token excluded).
    pub tokens: Vec<u32>,
    /// Their text, cut before a stop text.
    pub text: String,
    /// Why it ended.
    pub finish: Finish,
}

/// A cancel flag shared with whoever may stop the generation (a button, a timeout).
#[derive(Clone, Default)]
pub struct Cancel(Arc<AtomicBool>);

impl Cancel {
    /// Asks the generation to stop at its next step.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    /// Whether it was asked to stop.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// What the caller is told as tokens arrive.
#[derive(Clone, Debug, PartialEq)]
pub struct Streamed<'a> {
    /// Which request.
    pub sequence: usize,
    /// The new token.
    pub token: u32,
    /// Text added by it (may be empty while a character is incomplete).
    pub text: &'a str,
}

/// Errors of generation: the model's, or a request that cannot run.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    /// The model or the GPU failed.
    #[error(transparent)]
    Model(#[from] m2ugen_models::Error),
    /// A sampling setting is out of range.
    #[error(transparent)]
    Sampling(#[from] crate::Error),
    /// The request is unusable.
    #[error("generate: {0}")]
    Request(String),
}

impl From<m2ugen_gpu::Error> for GenerateError {
    fn from(e: m2ugen_gpu::Error) -> Self {
        GenerateError::Model(e.into())
    }
}

struct Sequence {
    rng: Rng,
    tokens: Vec<u32>,
    text: String,
    finish: Option<Finish>,
}

/// Generates a continuation of every request at once. `on_token` sees each token as it comes.
pub async fn generate(
    gpu: &Gpu,
    llama: &Llama,
    requests: &[Request<'_>],
    settings: &Settings,
    detokenize: &dyn Detokenize,
    cancel: &Cancel,
    mut on_token: impl FnMut(Streamed),
) -> Result<Vec<Output>, GenerateError> {
    settings.sampling.validate()?;
    if requests.is_empty() || requests.iter().any(|r| r.prompt.is_empty()) {
        return Err(GenerateError::Request("every request needs a prompt of at least one token".into()));
    }
    let longest = requests.iter().map(|r| r.prompt.len()).max().unwrap_or(0);
    let max_seq = (longest + settings.max_new_tokens).min(llama.config.max_seq);
    if longest >= max_seq {
        return Err(GenerateError::Request(format!("a prompt of {longest} tokens leaves no room in the model's {} positions", llama.config.max_seq)));
    }
    let mut cache = llama.new_cache(gpu, requests.len(), max_seq)?;
    let mut seqs: Vec<Sequence> = requests.iter().map(|r| Sequence { rng: Rng::new(r.seed), tokens: Vec::new(), text: String::new(), finish: None }).collect();
    let vocab = llama.config.vocab;

    // Prefill each prompt; the last position's logits give its first token.
    let mut logits = Vec::with_capacity(requests.len() * vocab);
    for (slot, r) in requests.iter().enumerate() {
        let mut rec = Recorder::new(gpu);
        llama.set_media(&mut rec, &mut cache, slot, r.media)?;
        let hidden = llama.prefill(&mut rec, &mut cache, slot, &r.prompt)?;
        let last = llama.rows(&mut rec, &hidden, &[r.prompt.len() as u32 - 1])?;
        let l = llama.logits(&mut rec, &last)?;
        rec.submit()?;
        logits.extend(gpu.read(&l).await?);
    }
    loop {
        // Read once per step, so a cancel ends every sequence after the same step.
        let cancelled = cancel.is_cancelled();
        let mut next = Vec::with_capacity(seqs.len());
        for (i, s) in seqs.iter_mut().enumerate() {
            if s.finish.is_some() {
                // A finished sequence rides along with its last token; its output is ignored.
                next.push(s.tokens.last().copied().unwrap_or(requests[i].prompt[0]));
                continue;
            }
            if cancelled {
                s.finish = Some(Finish::Cancelled);
                next.push(requests[i].prompt[0]);
                continue;
            }
            let token = sample(&logits[i * vocab..(i + 1) * vocab], &settings.sampling, &mut s.rng)? as u32;
            next.push(token);
            if Some(token) == settings.eos {
                s.finish = Some(Finish::Eos);
                continue;
            }
            s.tokens.push(token);
            let text = detokenize.decode(&s.tokens);
            let stop = settings.stop_texts.iter().filter_map(|t| text.find(t.as_str())).min();
            let shown = &text[..stop.unwrap_or(text.len())];
            let added = shown.get(s.text.len()..).unwrap_or("");
            on_token(Streamed { sequence: i, token, text: added });
            s.text = shown.to_string();
            if stop.is_some() {
                s.finish = Some(Finish::StopText);
            } else if s.tokens.len() >= settings.max_new_tokens || cache.lens[i] + 1 >= max_seq {
                s.finish = Some(Finish::Length);
            }
        }
        if seqs.iter().all(|s| s.finish.is_some()) {
            break;
        }
        let mut rec = Recorder::new(gpu);
        let hidden = llama.decode(&mut rec, &mut cache, &next)?;
        let l = llama.logits(&mut rec, &hidden)?;
        rec.submit()?;
        logits = gpu.read(&l).await?;
    }
    Ok(seqs.into_iter().map(|s| Output { tokens: s.tokens, text: s.text, finish: s.finish.unwrap_or(Finish::Length) }).collect())
}
