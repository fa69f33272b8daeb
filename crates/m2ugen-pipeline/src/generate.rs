//! Text generation with the KV cache: each sequence's prompt is prefilled once, then every
//! sequence advances one token per step together (one decode over all cache slots, so the
//! weights are read once per step for the whole batch).
//!
//! Stops per sequence on the end-of-sequence token, on a stop text (the reference's `\n###`)
//! or at a length; streams each token and its text to the caller as it is produced; a
//! [`Cancel`] flag ends every sequence at the next step.
//!
//! Each step chooses the next tokens on the GPU (greedy, or a draw with a uniform number from
//! each sequence's seeded generator) and reads back only their ids; they feed the next step
//! without leaving the GPU. Text is detokenized incrementally ([`TextStream`]): a step decodes a
//! window of a few tokens, not the whole sequence again.

use crate::sampling::Sampling;
use m2ugen_core::rng::Rng;
use m2ugen_gpu::{Gpu, GpuTensor, Recorder};
use m2ugen_models::llama::{KvCache, Media};
use m2ugen_models::Llama;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Turns token ids into text (the tokenizer, or a stand-in in tests).
pub trait Detokenize {
    /// The text of `tokens`.
    fn decode(&self, tokens: &[u32]) -> String;
}

/// Incremental detokenization: the text each new token adds, decoding only the tokens since the
/// last complete piece of text (two, unless a character is still incomplete), never the whole
/// sequence. Decoding the window with the token before it keeps word-initial spaces right
/// (SentencePiece drops the space of a text's first word).
#[derive(Clone, Debug, Default)]
pub struct TextStream {
    tokens: Vec<u32>,
    prefix: usize,
    read: usize,
}

impl TextStream {
    /// Adds `token`; returns the text it completes (empty while a character is incomplete).
    pub fn push(&mut self, detokenize: &dyn Detokenize, token: u32) -> String {
        self.tokens.push(token);
        let before = detokenize.decode(&self.tokens[self.prefix..self.read]);
        let now = detokenize.decode(&self.tokens[self.prefix..]);
        if now.len() <= before.len() || now.ends_with('\u{FFFD}') {
            return String::new();
        }
        // The window's text normally starts with what it gave before; if a merge changed that,
        // the new text is what follows the common start.
        let common = before.char_indices().zip(now.chars()).take_while(|((_, a), b)| a == b).last().map_or(0, |((i, a), _)| i + a.len_utf8());
        let added = now[common..].to_string();
        self.prefix = self.read;
        self.read = self.tokens.len();
        added
    }

    /// The tokens pushed so far.
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }
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
    /// The new token (the end-of-sequence token when it releases held-back text).
    pub token: u32,
    /// Text added by it: empty while a character is incomplete, and text that may begin a stop
    /// text is held back until the next token says whether it does. The pieces add up to the
    /// output's text.
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
    stream: TextStream,
    text: String,
    /// Bytes of `text` streamed to the caller.
    emitted: usize,
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
    on_token: impl FnMut(Streamed),
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
    let mut rec = Recorder::new(gpu);
    for (slot, r) in requests.iter().enumerate() {
        llama.set_media(&mut rec, &mut cache, slot, r.media)?;
    }
    rec.submit()?;
    let prompts: Vec<&[u32]> = requests.iter().map(|r| r.prompt.as_slice()).collect();
    let seeds: Vec<u64> = requests.iter().map(|r| r.seed).collect();
    generate_in(gpu, llama, &mut cache, &prompts, &seeds, settings, detokenize, cancel, on_token).await
}

/// Continues the sequences already in `cache` (slot `i` by `prompts[i]`, which must not be
/// empty; a fresh slot starts with its whole prompt), each sampled with its own seed, until each
/// finishes. What the slots held stays: a conversation's earlier turns are not computed again.
/// The cache holds every token fed back in: the prompt and each generated token but the last
/// (the end-of-sequence token, or the one that reached the stop text or the length).
#[allow(clippy::too_many_arguments)]
pub async fn generate_in(
    gpu: &Gpu,
    llama: &Llama,
    cache: &mut KvCache,
    prompts: &[&[u32]],
    seeds: &[u64],
    settings: &Settings,
    detokenize: &dyn Detokenize,
    cancel: &Cancel,
    mut on_token: impl FnMut(Streamed),
) -> Result<Vec<Output>, GenerateError> {
    settings.sampling.validate()?;
    if prompts.is_empty() || prompts.len() != cache.slots || seeds.len() != prompts.len() || prompts.iter().any(|p| p.is_empty()) {
        return Err(GenerateError::Request(format!("every one of the cache's {} sequences needs a prompt of at least one token and a seed", cache.slots)));
    }
    let max_seq = cache.max_seq;
    if let Some((slot, p)) = prompts.iter().enumerate().find(|(i, p)| cache.lens[*i] + p.len() >= max_seq) {
        return Err(GenerateError::Request(format!("a prompt of {} tokens after {} leaves no room in the cache's {max_seq} positions", p.len(), cache.lens[slot])));
    }
    let mut seqs: Vec<Sequence> = seeds.iter().map(|&seed| Sequence { rng: Rng::new(seed), stream: TextStream::default(), text: String::new(), emitted: 0, finish: None }).collect();
    let choose = settings.sampling.on_gpu();
    let longest_stop = settings.stop_texts.iter().map(String::len).max().unwrap_or(0);

    // Prefill each prompt; the last position's logits give its first token.
    let mut chosen = Vec::with_capacity(prompts.len());
    for (slot, prompt) in prompts.iter().enumerate() {
        let mut rec = Recorder::new(gpu);
        let hidden = llama.prefill(&mut rec, cache, slot, prompt)?;
        let last = llama.rows(&mut rec, &hidden, &[prompt.len() as u32 - 1])?;
        let l = llama.logits(&mut rec, &last)?;
        let draw = seqs[slot].draw(&settings.sampling);
        let ids = rec.choose_tokens(&l, &choose, &[draw])?;
        rec.submit()?;
        chosen.extend(gpu.read_u32(&ids).await?);
    }
    let mut next_ids: Option<GpuTensor> = None;
    loop {
        // Read once per step, so a cancel ends every sequence after the same step.
        let cancelled = cancel.is_cancelled();
        for (i, s) in seqs.iter_mut().enumerate() {
            if s.finish.is_some() {
                continue;
            }
            let token = chosen[i];
            if cancelled || Some(token) == settings.eos {
                s.finish = Some(if cancelled { Finish::Cancelled } else { Finish::Eos });
                // Text held back as a possible stop text's start is the sequence's after all.
                if s.emitted < s.text.len() {
                    on_token(Streamed { sequence: i, token, text: &s.text[s.emitted..] });
                    s.emitted = s.text.len();
                }
                continue;
            }
            let added = s.stream.push(detokenize, token);
            // A stop text can only end in the newest text: search its tail.
            let from = floor_char(&s.text, s.text.len().saturating_sub(longest_stop));
            s.text.push_str(&added);
            if let Some(at) = settings.stop_texts.iter().filter_map(|t| s.text[from..].find(t.as_str()).map(|at| from + at)).min() {
                s.text.truncate(at);
                s.finish = Some(Finish::StopText);
            } else if s.stream.tokens().len() >= settings.max_new_tokens || cache.lens[i] + 1 >= max_seq {
                s.finish = Some(Finish::Length);
            }
            // Stream what cannot be the start of a stop text (all of it once finished).
            let end = if s.finish.is_some() { s.text.len() } else { s.text.len() - held_back(&s.text, &settings.stop_texts) };
            let shown = &s.text[s.emitted.min(end)..end];
            on_token(Streamed { sequence: i, token, text: shown });
            s.emitted = s.emitted.max(end);
        }
        if seqs.iter().all(|s| s.finish.is_some()) {
            break;
        }
        // Every slot advances; finished ones ride along and their tokens are ignored.
        let mut rec = Recorder::new(gpu);
        let hidden = match &next_ids {
            Some(ids) => llama.decode_ids(&mut rec, cache, ids)?,
            None => llama.decode(&mut rec, cache, &chosen)?,
        };
        let l = llama.logits(&mut rec, &hidden)?;
        let draws: Vec<f32> = seqs.iter_mut().map(|s| if s.finish.is_some() { 0.0 } else { s.draw(&settings.sampling) }).collect();
        let ids = rec.choose_tokens(&l, &choose, &draws)?;
        rec.submit()?;
        chosen = gpu.read_u32(&ids).await?;
        next_ids = Some(ids);
    }
    Ok(seqs.into_iter().map(|s| Output { tokens: s.stream.tokens().to_vec(), text: s.text, finish: s.finish.unwrap_or(Finish::Length) }).collect())
}

impl Sequence {
    /// The uniform number of this sequence's next draw (none is taken when greedy).
    fn draw(&mut self, sampling: &Sampling) -> f32 {
        match sampling {
            Sampling::Greedy => 0.0,
            Sampling::Sample { .. } => self.rng.uniform(),
        }
    }
}

/// Bytes at the end of `text` that could be the start of a stop text (held back from the
/// stream until the next token tells).
fn held_back(text: &str, stops: &[String]) -> usize {
    stops
        .iter()
        .flat_map(|stop| (1..stop.len()).rev().filter(|&n| stop.is_char_boundary(n) && text.ends_with(&stop[..n])).take(1))
        .max()
        .unwrap_or(0)
}

/// The largest char boundary of `s` at or before `i`.
fn floor_char(s: &str, mut i: usize) -> usize {
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    /// SentencePiece-like: pieces with `▁` for a space (dropped at the very start of a text),
    /// byte tokens joined into UTF-8 (U+FFFD while incomplete). Records each call's length.
    struct Pieces(RefCell<Vec<usize>>);

    impl Detokenize for Pieces {
        fn decode(&self, tokens: &[u32]) -> String {
            self.0.borrow_mut().push(tokens.len());
            let mut bytes = Vec::new();
            for &t in tokens {
                match t {
                    0 => bytes.extend("▁hello".as_bytes()),
                    1 => bytes.extend("▁world".as_bytes()),
                    2 => bytes.push(0xC3),
                    3 => bytes.push(0xA9),
                    _ => bytes.extend("!".as_bytes()),
                }
            }
            let text = String::from_utf8_lossy(&bytes).replace('▁', " ");
            text.strip_prefix(' ').map_or(text.clone(), str::to_string)
        }
    }

    #[test]
    fn streamed_text_adds_up_to_the_whole_and_decodes_short_windows() {
        let tokens = [0u32, 1, 2, 3, 4, 0, 2, 3, 2, 3, 1, 4];
        let pieces = Pieces(RefCell::new(Vec::new()));
        let mut stream = TextStream::default();
        let mut streamed = String::new();
        let mut shown = Vec::new();
        for &t in &tokens {
            let added = stream.push(&pieces, t);
            shown.push(added.clone());
            streamed.push_str(&added);
        }
        let whole = pieces.decode(&tokens);
        assert_eq!(streamed, whole);
        assert_eq!(whole, "hello world\u{e9}! hello\u{e9}\u{e9} world!");
        // The first byte of é shows nothing; the second shows the character.
        assert_eq!(shown[2], "");
        assert_eq!(shown[3], "\u{e9}");
        assert_eq!(shown[1], " world");
        // A step decodes from the start of the text the step before gave, never the whole
        // sequence: here at most 4 tokens (é then é: the first one's two bytes and the second's),
        // however long the text grows.
        let longest = pieces.0.borrow().iter().take(2 * tokens.len()).max().copied().unwrap_or(0);
        assert!(longest <= 4, "a step decoded {longest} tokens");
    }

    #[test]
    fn text_that_may_begin_a_stop_text_is_held_back() {
        let stops = vec!["\n###".to_string(), "END".to_string()];
        assert_eq!(held_back("an answer\n#", &stops), 2);
        assert_eq!(held_back("an answer\n", &stops), 1);
        assert_eq!(held_back("an answer E", &stops), 1);
        assert_eq!(held_back("an answer", &stops), 0);
        assert_eq!(held_back("", &stops), 0);
        assert_eq!(floor_char("aé", 2), 1);
    }
}
