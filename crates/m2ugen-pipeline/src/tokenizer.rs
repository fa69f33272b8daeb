//! Text to tokens and back with LLaMA's tokenizer (`tokenizer.json` as the converter writes it,
//! with `[AUD0]`..`[AUD7]` for M2UGen, without them for MU-LLaMA), in the browser and natively
//! alike; and T5's, MusicGen's text encoder's (the manifest's `text_tokenizer`).

use crate::generate::Detokenize;

/// Output tokens the tokenizer must hold.
pub const AUD_TOKENS: usize = 8;

/// Why a tokenizer file cannot be used.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TokenizerError {
    /// The file does not load.
    #[error("tokenizer.json: {0}")]
    Load(String),
    /// `[AUDi]` is missing: some are there but not all, or music generation needs them and
    /// there are none.
    #[error("tokenizer.json: no [AUD{0}] token (convert the tokenizer with m2ugen convert --tokenizer; a model without output tokens, such as MU-LLaMA, cannot make music)")]
    NoAudToken(usize),
    /// Encoding failed.
    #[error("tokenizer: {0}")]
    Encode(String),
}

/// LLaMA's tokenizer, with M2UGen's output tokens when the model has them.
pub struct TextTokenizer {
    inner: tokenizers::Tokenizer,
    aud: Option<[u32; AUD_TOKENS]>,
}

impl TextTokenizer {
    /// Loads `tokenizer.json` bytes.
    pub fn from_bytes(json: &[u8]) -> Result<Self, TokenizerError> {
        let inner = tokenizers::Tokenizer::from_bytes(json).map_err(|e| TokenizerError::Load(e.to_string()))?;
        let ids: Vec<Option<u32>> = (0..AUD_TOKENS).map(|i| inner.token_to_id(&format!("[AUD{i}]"))).collect();
        let aud = match ids.iter().position(Option::is_none) {
            None => Some(std::array::from_fn(|i| ids[i].unwrap_or_default())),
            Some(_) if ids.iter().all(Option::is_none) => None,
            Some(missing) => return Err(TokenizerError::NoAudToken(missing)),
        };
        Ok(TextTokenizer { inner, aud })
    }

    /// Token ids of `text`, `<s>` first.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, TokenizerError> {
        Ok(self.inner.encode(text, true).map_err(|e| TokenizerError::Encode(e.to_string()))?.get_ids().to_vec())
    }

    /// The ids of `[AUD0]`..`[AUD7]`; an error naming `[AUD0]` for a tokenizer without them.
    pub fn aud_tokens(&self) -> Result<[u32; AUD_TOKENS], TokenizerError> {
        self.aud.ok_or(TokenizerError::NoAudToken(0))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t5s_tokenizer_loads_too_and_appends_its_end_token() {
        // tests/data/t5-tokenizer: <pad> </s> <unk> = 0 1 2, "▁" 3, letters a..z 4..29, whole
        // words 30..39 (jazz piano calm music rock guitar with a drums upbeat).
        let t = TextTokenizer::from_bytes(include_bytes!("../../../tests/data/t5-tokenizer/tokenizer.json")).unwrap();
        assert_eq!(t.encode("jazz piano").unwrap(), [30, 31, 1]);
        assert_eq!(t.encode("a calm jazz").unwrap(), [37, 32, 30, 1]);
        // An unknown word is spelled: "▁" b o p.
        assert_eq!(t.encode("bop").unwrap(), [3, 5, 18, 19, 1]);
        assert!(t.aud_tokens().is_err(), "T5's tokenizer has no [AUD] tokens");
    }
}
