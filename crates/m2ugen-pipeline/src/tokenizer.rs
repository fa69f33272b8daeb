//! Text to tokens and back with LLaMA's tokenizer (`tokenizer.json` as the converter writes it,
//! `[AUD0]`..`[AUD7]` included), in the browser and natively alike.

use crate::generate::Detokenize;

/// Output tokens the tokenizer must hold.
pub const AUD_TOKENS: usize = 8;

/// Why a tokenizer file cannot be used.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TokenizerError {
    /// The file does not load.
    #[error("tokenizer.json: {0}")]
    Load(String),
    /// `[AUDi]` is missing.
    #[error("tokenizer.json: no [AUD{0}] token (convert the tokenizer with m2ugen convert --tokenizer)")]
    NoAudToken(usize),
    /// Encoding failed.
    #[error("tokenizer: {0}")]
    Encode(String),
}

/// LLaMA's tokenizer with M2UGen's output tokens.
pub struct TextTokenizer {
    inner: tokenizers::Tokenizer,
    aud: [u32; AUD_TOKENS],
}

impl TextTokenizer {
    /// Loads `tokenizer.json` bytes.
    pub fn from_bytes(json: &[u8]) -> Result<Self, TokenizerError> {
        let inner = tokenizers::Tokenizer::from_bytes(json).map_err(|e| TokenizerError::Load(e.to_string()))?;
        let mut aud = [0; AUD_TOKENS];
        for (i, slot) in aud.iter_mut().enumerate() {
            *slot = inner.token_to_id(&format!("[AUD{i}]")).ok_or(TokenizerError::NoAudToken(i))?;
        }
        Ok(TextTokenizer { inner, aud })
    }

    /// Token ids of `text`, `<s>` first.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, TokenizerError> {
        Ok(self.inner.encode(text, true).map_err(|e| TokenizerError::Encode(e.to_string()))?.get_ids().to_vec())
    }

    /// The ids of `[AUD0]`..`[AUD7]`.
    pub fn aud_tokens(&self) -> [u32; AUD_TOKENS] {
        self.aud
    }

    /// The id of a token's text, if it is one.
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }
}

impl Detokenize for TextTokenizer {
    /// The text of `tokens`, special tokens (`<s>`, `[AUDi]`) left out.
    fn decode(&self, tokens: &[u32]) -> String {
        self.inner.decode(tokens, true).unwrap_or_default()
    }
}
