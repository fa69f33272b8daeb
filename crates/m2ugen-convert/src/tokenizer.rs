//! LLaMA's tokenizer as the browser loads it: a Hugging Face `tokenizer.json` with M2UGen's
//! `[AUD0]`..`[AUD7]` added after the base vocabulary (ids 32000..32007 for LLaMA-2), as the
//! reference adds them.
//!
//! A model without output tokens (MU-LLaMA: an embedding row per base token, no more) gets none:
//! its tokenizer must not make ids the model has no row for.
//!
//! From `tokenizer.json` the tokens are added. From SentencePiece's `tokenizer.model` (a protobuf
//! of pieces, scores and types) the BPE model is rebuilt the way Hugging Face's LLaMA converter
//! does: the vocabulary is the pieces; the merges are every split of a piece into two pieces,
//! ordered by the merged piece's score; byte fallback; a `▁` prepended and spaces turned into `▁`;
//! `<s>` before each text.
//!
//! AudioLDM 2's CLAP reads RoBERTa's tokens: [`roberta_tokenizer`] builds its `tokenizer.json`
//! from the slow tokenizer's `vocab.json` and `merges.txt` where a directory has no
//! `tokenizer.json`.

use anyhow::{bail, Context, Result};
use serde_json::json;
use std::path::Path;

/// M2UGen's output tokens.
pub const AUD_TOKENS: [&str; 8] = ["[AUD0]", "[AUD1]", "[AUD2]", "[AUD3]", "[AUD4]", "[AUD5]", "[AUD6]", "[AUD7]"];

/// A SentencePiece piece's type.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum PieceType {
    /// A normal piece.
    Normal,
    /// `<unk>`.
    Unknown,
    /// `<s>`, `</s>`.
    Control,
    /// Added by the user.
    UserDefined,
    /// Never produced.
    Unused,
    /// `<0xNN>`.
    Byte,
}

/// What a `tokenizer.model` holds that the conversion needs.
#[derive(Debug, PartialEq)]
pub struct SentencePiece {
    /// Pieces in id order: text, score, type.
    pub pieces: Vec<(String, f32, PieceType)>,
    /// 1 unigram, 2 BPE (LLaMA's).
    pub model_type: u64,
    /// Unknown bytes become `<0xNN>` pieces.
    pub byte_fallback: bool,
}

/// A protobuf reader over untrusted bytes: every read is bounds-checked.
struct Proto<'a> {
    bytes: &'a [u8],
    at: usize,
    file: &'a str,
}

enum Value<'a> {
    Int(u64),
    Bytes(&'a [u8]),
    Fixed32(u32),
}

impl<'a> Proto<'a> {
    fn varint(&mut self) -> Result<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let Some(&b) = self.bytes.get(self.at) else { bail!("{}: cut off inside a number at byte {}", self.file, self.at) };
            self.at += 1;
            v |= ((b & 0x7f) as u64) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        bail!("{}: a number longer than 64 bits at byte {}", self.file, self.at)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len()).with_context(|| format!("{}: a field of {n} bytes runs past the end (byte {})", self.file, self.at))?;
        let s = &self.bytes[self.at..end];
        self.at = end;
        Ok(s)
    }

    /// The next field, or `None` at the end.
    fn field(&mut self) -> Result<Option<(u64, Value<'a>)>> {
        if self.at >= self.bytes.len() {
            return Ok(None);
        }
        let key = self.varint()?;
        let value = match key & 7 {
            0 => Value::Int(self.varint()?),
            1 => {
                self.take(8)?;
                Value::Int(0)
            }
            2 => {
                let n = self.varint()? as usize;
                Value::Bytes(self.take(n)?)
            }
            5 => Value::Fixed32(u32::from_le_bytes(self.take(4)?.try_into()?)),
            w => bail!("{}: wire type {w} at byte {} is not in SentencePiece's format", self.file, self.at),
        };
        Ok(Some((key >> 3, value)))
    }
}

impl SentencePiece {
    /// Parses a `tokenizer.model` (`file` names it in errors).
    pub fn parse(bytes: &[u8], file: &str) -> Result<Self> {
        let mut model = SentencePiece { pieces: Vec::new(), model_type: 1, byte_fallback: false };
        let mut top = Proto { bytes, at: 0, file };
        while let Some((field, value)) = top.field()? {
            match (field, value) {
                (1, Value::Bytes(b)) => {
                    let mut p = Proto { bytes: b, at: 0, file };
                    let (mut text, mut score, mut kind) = (None, 0.0, PieceType::Normal);
                    while let Some((f, v)) = p.field()? {
                        match (f, v) {
                            (1, Value::Bytes(t)) => text = Some(std::str::from_utf8(t).with_context(|| format!("{file}: piece {} is not UTF-8", model.pieces.len()))?.to_string()),
                            (2, Value::Fixed32(s)) => score = f32::from_bits(s),
                            (3, Value::Int(t)) => {
                                kind = match t {
                                    1 => PieceType::Normal,
                                    2 => PieceType::Unknown,
                                    3 => PieceType::Control,
                                    4 => PieceType::UserDefined,
                                    5 => PieceType::Unused,
                                    6 => PieceType::Byte,
                                    other => bail!("{file}: piece {} has unknown type {other}", model.pieces.len()),
                                }
                            }
                            _ => {}
                        }
                    }
                    let text = text.with_context(|| format!("{file}: piece {} has no text", model.pieces.len()))?;
                    model.pieces.push((text, score, kind));
                }
                (2, Value::Bytes(b)) => {
                    let mut p = Proto { bytes: b, at: 0, file };
                    while let Some((f, v)) = p.field()? {
                        match (f, v) {
                            (3, Value::Int(t)) => model.model_type = t,
                            (35, Value::Int(b)) => model.byte_fallback = b != 0,
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        if model.pieces.is_empty() {
            bail!("{file}: no pieces: not a SentencePiece model");
        }
        Ok(model)
    }

    /// The Hugging Face `tokenizer.json` of this model (without `[AUD]` tokens).
    pub fn to_hf_json(&self, file: &str) -> Result<serde_json::Value> {
        if self.model_type != 2 {
            bail!("{file}: model type {} is not BPE (LLaMA's tokenizer is BPE)", self.model_type);
        }
        let find = |text: &str| self.pieces.iter().position(|p| p.0 == text);
        let (Some(unk), Some(bos), Some(eos)) = (find("<unk>"), find("<s>"), find("</s>")) else {
            bail!("{file}: LLaMA's <unk>, <s> and </s> pieces are not all there");
        };
        let vocab: serde_json::Map<String, serde_json::Value> = self.pieces.iter().enumerate().map(|(i, p)| (p.0.clone(), json!(i))).collect();
        let ids: std::collections::HashMap<&str, usize> = self.pieces.iter().enumerate().filter(|(_, p)| matches!(p.2, PieceType::Normal | PieceType::UserDefined)).map(|(i, p)| (p.0.as_str(), i)).collect();
        // Every split of a piece into two pieces; by the merged piece's score (best first), then by
        // the parts' ids.
        let mut merges: Vec<(f32, usize, usize, usize, String, String)> = Vec::new();
        for (id, (text, score, kind)) in self.pieces.iter().enumerate() {
            if !matches!(kind, PieceType::Normal | PieceType::UserDefined) {
                continue;
            }
            for (cut, _) in text.char_indices().skip(1) {
                let (l, r) = text.split_at(cut);
                if let (Some(&li), Some(&ri)) = (ids.get(l), ids.get(r)) {
                    merges.push((*score, id, li, ri, l.to_string(), r.to_string()));
                }
            }
        }
        merges.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)).then(a.3.cmp(&b.3)));
        let merges: Vec<serde_json::Value> = merges.into_iter().map(|m| json!([m.4, m.5])).collect();
        let special = |id: usize| json!({"id": id, "content": self.pieces[id].0, "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true});
        Ok(json!({
            "version": "1.0",
            "truncation": null,
            "padding": null,
            "added_tokens": [special(unk), special(bos), special(eos)],
            "normalizer": {"type": "Sequence", "normalizers": [
                {"type": "Prepend", "prepend": "\u{2581}"},
                {"type": "Replace", "pattern": {"String": " "}, "content": "\u{2581}"}
            ]},
            "pre_tokenizer": null,
            "post_processor": {
                "type": "TemplateProcessing",
                "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
                "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": "<s>", "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
                "special_tokens": {"<s>": {"id": "<s>", "ids": [bos], "tokens": ["<s>"]}}
            },
            "decoder": {"type": "Sequence", "decoders": [
                {"type": "Replace", "pattern": {"String": "\u{2581}"}, "content": " "},
                {"type": "ByteFallback"},
                {"type": "Fuse"},
                {"type": "Strip", "content": " ", "start": 1, "stop": 0}
            ]},
            "model": {"type": "BPE", "dropout": null, "unk_token": "<unk>", "continuing_subword_prefix": null, "end_of_word_suffix": null, "fuse_unk": true, "byte_fallback": self.byte_fallback, "ignore_merges": false, "vocab": vocab, "merges": merges}
        }))
    }
}

/// The `tokenizer.json` bytes for `path` (`tokenizer.model` or `tokenizer.json`), with the
/// `[AUD]` tokens added after the base vocabulary, unless the LLM's vocabulary (`llm_vocab`, its
/// embedding rows) is the base vocabulary: such a model (MU-LLaMA) has no output tokens.
pub fn convert_tokenizer(path: &Path, llm_vocab: Option<usize>) -> Result<Vec<u8>> {
    let file = path.display().to_string();
    let bytes = std::fs::read(path).with_context(|| format!("{file}: cannot read"))?;
    let json = if bytes.first() == Some(&b'{') {
        String::from_utf8(bytes).with_context(|| format!("{file}: not UTF-8"))?
    } else {
        SentencePiece::parse(&bytes, &file)?.to_hf_json(&file)?.to_string()
    };
    let mut tokenizer: tokenizers::Tokenizer = json.parse().map_err(|e| anyhow::anyhow!("{file}: not a tokenizer the tokenizers library can load ({e})"))?;
    let present: Vec<&str> = AUD_TOKENS.iter().copied().filter(|t| tokenizer.token_to_id(t).is_some()).collect();
    if !present.is_empty() && present.len() != AUD_TOKENS.len() {
        bail!("{file}: has {present:?} but not all of [AUD0]..[AUD7]");
    }
    let model_has_output_tokens = llm_vocab != Some(tokenizer.get_vocab_size(true));
    if present.is_empty() && model_has_output_tokens {
        let added: Vec<tokenizers::AddedToken> = AUD_TOKENS.iter().map(|t| tokenizers::AddedToken::from(t.to_string(), true)).collect();
        tokenizer.add_special_tokens(added).map_err(|e| anyhow::anyhow!("{file}: adding [AUD0]..[AUD7]: {e}"))?;
    }
    Ok(tokenizer.to_string(false).map_err(|e| anyhow::anyhow!("{file}: writing tokenizer.json: {e}"))?.into_bytes())
}

/// RoBERTa's tokenizer (CLAP's, in AudioLDM 2) as `tokenizer.json` bytes, from `vocab.json` (token
/// to id) and `merges.txt` (`#version` line, then one merge `a b` per line), built as Hugging
/// Face's converter builds it: byte-level BPE without a prefix space, `<s> … </s>` around a text
/// (`</s></s>` between a pair), `<s>`, `<pad>`, `</s>`, `<unk>` and `<mask>` (the ones the
/// vocabulary has) as special tokens.
pub fn roberta_tokenizer(vocab: &Path, merges: &Path) -> Result<Vec<u8>> {
    let (vocab_file, merges_file) = (vocab.display().to_string(), merges.display().to_string());
    let bytes = std::fs::read(vocab).with_context(|| format!("{vocab_file}: cannot read"))?;
    let vocab: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&bytes).with_context(|| format!("{vocab_file}: not a JSON object of token ids"))?;
    if let Some((token, _)) = vocab.iter().find(|(_, id)| !id.is_u64()) {
        bail!("{vocab_file}: the id of '{token}' is not a non-negative integer");
    }
    let id = |t: &str| vocab.get(t).and_then(serde_json::Value::as_u64);
    let (Some(bos), Some(eos)) = (id("<s>"), id("</s>")) else {
        bail!("{vocab_file}: no <s> or </s>: not RoBERTa's vocabulary");
    };
    let text = std::fs::read_to_string(merges).with_context(|| format!("{merges_file}: cannot read"))?;
    let mut pairs = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.is_empty() || (i == 0 && line.starts_with("#version")) {
            continue;
        }
        let Some((a, b)) = line.split_once(' ').filter(|(a, b)| !a.is_empty() && !b.is_empty() && !b.contains(' ')) else {
            bail!("{merges_file}: line {} is not a merge of two tokens ('{line}')", i + 1);
        };
        pairs.push(json!([a, b]));
    }
    let added: Vec<serde_json::Value> = [("<s>", false), ("<pad>", false), ("</s>", false), ("<unk>", false), ("<mask>", true)]
        .into_iter()
        .filter_map(|(t, lstrip)| id(t).map(|i| json!({"id": i, "content": t, "single_word": false, "lstrip": lstrip, "rstrip": false, "normalized": false, "special": true})))
        .collect();
    let byte_level = json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true});
    let json = json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": byte_level,
        "post_processor": {"type": "RobertaProcessing", "sep": ["</s>", eos], "cls": ["<s>", bos], "trim_offsets": true, "add_prefix_space": false},
        "decoder": byte_level,
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": "", "end_of_word_suffix": "", "fuse_unk": false, "byte_fallback": false, "ignore_merges": false, "vocab": vocab, "merges": pairs}
    });
    let tokenizer: tokenizers::Tokenizer = json.to_string().parse().map_err(|e| anyhow::anyhow!("{vocab_file} and {merges_file}: not a tokenizer the tokenizers library can load ({e})"))?;
    Ok(tokenizer.to_string(false).map_err(|e| anyhow::anyhow!("{vocab_file}: writing tokenizer.json: {e}"))?.into_bytes())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn fixture() -> std::path::PathBuf {
        // The directory cargo runs the test in, not the one it was built in (a build cached from
        // another checkout of the repository keeps that checkout's path).
        std::env::var_os("CARGO_MANIFEST_DIR").map(std::path::PathBuf::from).unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()).join("../../tests/data/tokenizer/tokenizer.model")
    }

    #[test]
    fn the_sentencepiece_model_is_read_as_written() {
        let m = SentencePiece::parse(&std::fs::read(fixture()).unwrap(), "tokenizer.model").unwrap();
        assert_eq!((m.pieces.len(), m.model_type, m.byte_fallback), (278, 2, true));
        assert_eq!(m.pieces[1], ("<s>".to_string(), 0.0, PieceType::Control));
        assert_eq!(m.pieces[3 + 0x41], ("<0x41>".to_string(), 0.0, PieceType::Byte));
        assert_eq!(m.pieces[272], ("\u{2581}hello".to_string(), -13.0, PieceType::Normal));
    }

    #[test]
    fn output_tokens_are_added_unless_the_model_has_no_rows_for_them() {
        let aud0 = |llm_vocab| {
            let json = convert_tokenizer(&fixture(), llm_vocab).unwrap();
            let t: tokenizers::Tokenizer = String::from_utf8(json).unwrap().parse().unwrap();
            (t.get_vocab_size(true), t.token_to_id("[AUD0]"))
        };
        // 278 pieces: M2UGen's 278 + 8 rows get [AUD0] at 278; so does an unknown model.
        assert_eq!(aud0(Some(286)), (286, Some(278)));
        assert_eq!(aud0(None), (286, Some(278)));
        // MU-LLaMA: one row per piece, no output tokens.
        assert_eq!(aud0(Some(278)), (278, None));
    }

    #[test]
    fn damaged_models_are_named() {
        let bytes = std::fs::read(fixture()).unwrap();
        let e = SentencePiece::parse(&bytes[..bytes.len() - 7], "t.model").unwrap_err().to_string();
        assert!(e.starts_with("t.model: a field of"), "{e}");
        assert!(SentencePiece::parse(b"", "t.model").unwrap_err().to_string().contains("no pieces"));
        assert!(SentencePiece::parse(&[0x0f], "t.model").unwrap_err().to_string().contains("wire type 7"));
    }

    #[test]
    fn robertas_vocab_and_merges_become_a_byte_level_tokenizer() {
        let dir = std::env::temp_dir().join(format!("m2ugen-roberta-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // "Ġ" is the byte-level space. "hello": h e l l o, merged by rank into one token;
        // " world": Ġw o r l d (no further merges).
        let vocab = r#"{"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3, "h": 4, "e": 5, "l": 6, "o": 7, "\u0120": 8, "w": 9, "r": 10, "d": 11,
            "he": 12, "ll": 13, "llo": 14, "hello": 15, "\u0120w": 16, "<mask>": 17}"#;
        std::fs::write(dir.join("vocab.json"), vocab).unwrap();
        std::fs::write(dir.join("merges.txt"), "#version: 0.2\nh e\nl l\nll o\nhe llo\n\u{120} w\n").unwrap();
        let json = roberta_tokenizer(&dir.join("vocab.json"), &dir.join("merges.txt")).unwrap();
        let t: tokenizers::Tokenizer = String::from_utf8(json).unwrap().parse().unwrap();
        let e = t.encode("hello world", true).unwrap();
        assert_eq!(e.get_ids(), [0, 15, 16, 7, 10, 6, 11, 2]);
        assert_eq!(t.decode(e.get_ids(), true).unwrap(), "hello world");
        assert_eq!(t.encode("<mask>", false).unwrap().get_ids(), [17], "special tokens stay whole");

        std::fs::write(dir.join("merges.txt"), "#version: 0.2\nh e\nhello\n").unwrap();
        let e = roberta_tokenizer(&dir.join("vocab.json"), &dir.join("merges.txt")).unwrap_err().to_string();
        assert!(e.ends_with("merges.txt: line 3 is not a merge of two tokens ('hello')"), "{e}");
        std::fs::write(dir.join("vocab.json"), r#"{"a": 0}"#).unwrap();
        let e = roberta_tokenizer(&dir.join("vocab.json"), &dir.join("merges.txt")).unwrap_err().to_string();
        assert!(e.contains("not RoBERTa's vocabulary"), "{e}");
        let _ = std::fs::remove_dir_all(dir);
    }
}
