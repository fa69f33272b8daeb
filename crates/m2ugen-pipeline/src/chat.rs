//! Conversations: the reference's prompt (Alpaca's), turn after turn, keeping earlier turns in
//! the prompt and their keys and values in the cache.
//!
//! The reference answers one instruction at a time and keeps no history. Here each turn's
//! prompt is the whole conversation so far, tokenized afresh (so it is exactly what a fresh run
//! would see), and the cache keeps the longest prefix it shares with what the cache already
//! holds: only the new instruction (and the few tokens where the previous answer's end
//! tokenizes differently) are computed. The media are set once per conversation: the adapter
//! prefix shapes every earlier token's keys, so other media start a new conversation.

use crate::generate::{generate_in, Cancel, Detokenize, GenerateError, Output, Settings};
use crate::tokenizer::TextTokenizer;
use m2ugen_gpu::{Gpu, GpuTensor, Recorder};
use m2ugen_models::llama::{KvCache, Media};
use m2ugen_models::Llama;

/// Text to tokens and back: LLaMA's tokenizer ([`TextTokenizer`]), or any other.
pub trait Tokenizer: Detokenize {
    /// The ids of `text`, with the beginning-of-sequence token.
    fn encode_text(&self, text: &str) -> Result<Vec<u32>, String>;
}

impl Tokenizer for TextTokenizer {
    fn encode_text(&self, text: &str) -> Result<Vec<u32>, String> {
        self.encode(text).map_err(|e| e.to_string())
    }
}

/// The first line of the reference's prompt.
pub const PREAMBLE: &str = "Below is an instruction that describes a task. Write a response that appropriately completes the request.";

/// The reference's prompt for one instruction.
pub fn instruction_prompt(instruction: &str) -> String {
    format!("{PREAMBLE}{}", turn(instruction))
}

fn turn(instruction: &str) -> String {
    format!("\n\n### Instruction:\n{instruction}\n\n### Response:")
}

/// A conversation with one set of media.
pub struct Conversation {
    cache: KvCache,
    /// The conversation's text so far (prompts and answers).
    text: String,
    /// The tokens whose keys and values the cache holds, in order.
    held: Vec<u32>,
    /// Prompt tokens the last turn took from the cache instead of computing.
    reused: usize,
}

impl Conversation {
    /// A conversation about `media` of up to `max_seq` tokens in all.
    pub fn new(gpu: &Gpu, llama: &Llama, media: Media, max_seq: usize) -> Result<Conversation, GenerateError> {
        let mut cache = llama.new_cache(gpu, 1, max_seq.min(llama.config.max_seq))?;
        let mut rec = Recorder::new(gpu);
        llama.set_media(&mut rec, &mut cache, 0, media)?;
        rec.submit()?;
        Ok(Conversation { cache, text: String::new(), held: Vec::new(), reused: 0 })
    }

    /// The text of the prompt `question` would make: the conversation so far and the new turn.
    pub fn prompt_for(&self, question: &str) -> String {
        if self.text.is_empty() { instruction_prompt(question) } else { format!("{}{}", self.text, turn(question)) }
    }

    /// Asks `question`; `on_text` receives the answer as it streams. The answer (cut before a
    /// stop text) becomes part of the conversation.
    #[allow(clippy::too_many_arguments)]
    pub async fn ask(&mut self, gpu: &Gpu, llama: &Llama, tokenizer: &dyn Tokenizer, question: &str, settings: &Settings, seed: u64, cancel: &Cancel, mut on_text: impl FnMut(&str)) -> Result<Output, GenerateError> {
        let text = self.prompt_for(question);
        let tokens = tokenizer.encode_text(&text).map_err(GenerateError::Request)?;
        if tokens.len() + 1 >= self.cache.max_seq {
            return Err(GenerateError::Request(format!("the conversation has grown to {} tokens, past the {} this one holds: start a new conversation", tokens.len(), self.cache.max_seq)));
        }
        // Keep what the cache shares with the new prompt; at least the last token is computed
        // (its logits choose the first answer token).
        let common = self.held.iter().zip(&tokens).take_while(|(a, b)| a == b).count().min(tokens.len() - 1);
        self.cache.lens[0] = common;
        let out = generate_in(gpu, llama, &mut self.cache, &[&tokens[common..]], &[seed], settings, tokenizer as &dyn Detokenize, cancel, |s| on_text(s.text)).await?;
        let answer = out.into_iter().next().ok_or_else(|| GenerateError::Request("no answer".into()))?;
        let fed = self.cache.lens[0].saturating_sub(tokens.len()).min(answer.tokens.len());
        self.held = tokens;
        self.held.extend_from_slice(&answer.tokens[..fed]);
        self.text = text + &answer.text;
        self.reused = common;
        Ok(answer)
    }

    /// The LLM's states for M2UGen's output projector after the last answer: the answer is
    /// followed by `[AUD0]`..`[AUD7]` (`aud`), and the hidden states (before the final norm) at
    /// the 8 positions whose next token is `[AUDi]` are returned `(8, dim)`, with those tokens'
    /// embeddings `(8, dim)`. The `[AUD]` tokens are not kept; the answer's last token is
    /// recomputed with them, so the conversation's next turn computes it again.
    pub fn aud_states(&mut self, gpu: &Gpu, llama: &Llama, aud: &[u32]) -> Result<(GpuTensor, GpuTensor), GenerateError> {
        let Some(&last) = self.held.last() else {
            return Err(GenerateError::Request("ask something first: the [AUD] states follow an answer".into()));
        };
        if aud.is_empty() || self.held.len() + aud.len() >= self.cache.max_seq {
            return Err(GenerateError::Request(format!("the conversation has no room for {} [AUD] tokens (it holds {} of {})", aud.len(), self.held.len(), self.cache.max_seq)));
        }
        let keep = self.held.len() - 1;
        self.cache.lens[0] = keep;
        let mut tokens = vec![last];
        tokens.extend_from_slice(&aud[..aud.len() - 1]);
        let mut rec = Recorder::new(gpu);
        let hidden = llama.prefill(&mut rec, &mut self.cache, 0, &tokens)?;
        let embeddings = llama.embed(&mut rec, aud)?;
        rec.submit()?;
        self.cache.lens[0] = keep;
        self.held.truncate(keep);
        Ok((hidden, embeddings))
    }

    /// Prompt tokens the last turn reused from the cache.
    pub fn reused(&self) -> usize {
        self.reused
    }

    /// Tokens the cache holds.
    pub fn held(&self) -> &[u32] {
        &self.held
    }

    /// The conversation's text so far.
    pub fn text(&self) -> &str {
        &self.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prompt_is_the_references() {
        assert_eq!(
            instruction_prompt("Describe the music."),
            "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n### Instruction:\nDescribe the music.\n\n### Response:"
        );
    }
}
