//! The weight format, version `m2ugen-weights/2`.
//!
//! A model is a `manifest.json` beside shard files, all served from one base URL (or directory):
//!
//! ```json
//! {
//!   "format": "m2ugen-weights/2",
//!   "model": "m2ugen-musicgen-small", "version": "2026-11-24", "kind": "m2ugen-musicgen",
//!   "components": { "llama": { ... } },
//!   "tokenizer": { "file": "tokenizer.json", "bytes": 1842767, "sha256": "…" },
//!   "shards": [ { "file": "shard-00000.bin", "bytes": 67108864, "sha256": "…" } ],
//!   "tensors": [ { "name": "llm.layers.0.attention.wq", "shape": [4096, 4096], "dtype": "q4",
//!                  "shard": 0, "offset": 0, "bytes": 9437184, "sha256": "…" } ]
//! }
//! ```
//!
//! - `kind`: what the model is (`m2ugen-musicgen`, `m2ugen-audioldm2`, `mu-llama`, `musicgen`,
//!   `llama`, `components`: `m2ugen_core::config::ModelKind`), written by the converter.
//! - `components`: each model's configuration as its original file has it (Meta's
//!   `params.json`, Hugging Face's `config.json`), read into typed structs by
//!   `m2ugen_core::config`.
//! - `shards`: files of at most [`DEFAULT_SHARD_BYTES`] by default. A tensor lies inside one
//!   shard, at `offset`, `bytes` long, so one HTTP range request fetches it; a tensor larger than
//!   a shard is cut into pieces over consecutive shards: the rest of it is listed, in order, in
//!   `"continued": [ { "shard": 5, "offset": 0, "bytes": 67108864 }, … ]` and the first
//!   `bytes` minus theirs lie at `offset` in `shard` (see [`TensorEntry::pieces`]). Its hash is
//!   the whole tensor's. Nothing in a shard overlaps.
//! - `dtype`: `f32`, `f16`, `u32` (little-endian, row-major), or `q8` / `q4` in the group-wise
//!   format of `m2ugen_core::quant`: the packed values of all rows, then the packed scales of all
//!   rows. `bytes` must equal what `shape` and `dtype` imply.
//! - `tokenizer`, `text_tokenizer`, `clap_tokenizer` (optional): Hugging Face `tokenizer.json`
//!   files beside the shards: the LLM's, the music decoder's text encoder's (T5's), and AudioLDM
//!   2's CLAP's (RoBERTa's).
//! - `sha256`: lower-case hex of the tensor's bytes (and of each shard and tokenizer file),
//!   checked before anything is used or cached.
//! - File names are plain names (letters, digits, `.`, `_`, `-`), never paths: a manifest from a
//!   CDN cannot point the loader anywhere else.

use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};
use std::ops::Range;

/// The format tag this code reads and writes.
pub const FORMAT: &str = "m2ugen-weights/2";
/// Default upper bound of a shard (fits WebGPU's default 128 MiB binding with room to spare).
pub const DEFAULT_SHARD_BYTES: u64 = 64 << 20;
/// Largest manifest accepted (the 7B model's is well under 1 MiB).
pub const MAX_MANIFEST_BYTES: usize = 16 << 20;

pub use m2ugen_core::StoredType;

/// A file beside the manifest.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Plain file name.
    pub file: String,
    /// Size.
    pub bytes: u64,
    /// SHA-256, lower-case hex.
    pub sha256: String,
}

/// One tensor: where its bytes are and what they hold.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TensorEntry {
    /// Name, as the models ask for it (`llm.layers.0.attention.wq`).
    pub name: String,
    /// Shape.
    pub shape: Vec<usize>,
    /// Storage type.
    pub dtype: StoredType,
    /// Index into `shards`.
    pub shard: usize,
    /// Byte offset in the shard.
    pub offset: u64,
    /// Byte length (of the whole tensor, all pieces together).
    pub bytes: u64,
    /// SHA-256 of the bytes, lower-case hex.
    pub sha256: String,
    /// The pieces after the first, in order, of a tensor cut over several shards.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub continued: Vec<Piece>,
}

/// A piece of a tensor cut over several shards.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Piece {
    /// Index into `shards`.
    pub shard: usize,
    /// Byte offset in the shard.
    pub offset: u64,
    /// Byte length.
    pub bytes: u64,
}

impl TensorEntry {
    /// Where the tensor's bytes lie, in order: `(shard, byte range)`; one piece unless the tensor
    /// is cut over several shards. Meaningful for a validated manifest.
    pub fn pieces(&self) -> Vec<(usize, Range<u64>)> {
        let rest = self.continued.iter().fold(0u64, |n, p| n.saturating_add(p.bytes));
        let first = self.bytes.saturating_sub(rest);
        std::iter::once((self.shard, self.offset..self.offset.saturating_add(first)))
            .chain(self.continued.iter().map(|p| (p.shard, p.offset..p.offset.saturating_add(p.bytes))))
            .collect()
    }
}

/// A model's manifest.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Must be [`FORMAT`].
    pub format: String,
    /// Model id.
    pub model: String,
    /// Version of the converted weights.
    pub version: String,
    /// What the model is.
    pub kind: m2ugen_core::config::ModelKind,
    /// Per-component configuration.
    #[serde(default)]
    pub components: BTreeMap<String, serde_json::Value>,
    /// The tokenizer file, if the model has one.
    #[serde(default)]
    pub tokenizer: Option<FileEntry>,
    /// The music decoder's text-encoder tokenizer (T5's `tokenizer.json`), if the model has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text_tokenizer: Option<FileEntry>,
    /// AudioLDM 2's CLAP text tokenizer (RoBERTa's `tokenizer.json`), if the model has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clap_tokenizer: Option<FileEntry>,
    /// The shard files.
    pub shards: Vec<FileEntry>,
    /// The tensors.
    pub tensors: Vec<TensorEntry>,
}

fn field(field: impl Into<String>, problem: impl Into<String>) -> Error {
    Error::Field { field: field.into(), problem: problem.into() }
}

fn check_file_name(at: &str, name: &str) -> Result<()> {
    let plain = !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if plain { Ok(()) } else { Err(field(at, format!("'{name}' is not a plain file name (letters, digits, '.', '_', '-')"))) }
}

fn check_sha256(at: &str, hex: &str) -> Result<()> {
    let ok = hex.len() == 64 && hex.chars().all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c));
    if ok { Ok(()) } else { Err(field(at, "sha256 must be 64 lower-case hex digits")) }
}

impl Manifest {
    /// Parses and checks a manifest from untrusted bytes.
    pub fn parse(bytes: &[u8]) -> Result<Manifest> {
        if bytes.len() > MAX_MANIFEST_BYTES {
            return Err(Error::TooLarge { bytes: bytes.len(), limit: MAX_MANIFEST_BYTES });
        }
        // The format first, so an older manifest is named as such rather than by a field it lacks.
        let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| Error::Json(e.to_string()))?;
        match value.get("format").and_then(|f| f.as_str()) {
            Some(FORMAT) => {}
            other => return Err(field("format", format!("'{}' is not '{FORMAT}' (convert the model again with this version)", other.unwrap_or("(none)")))),
        }
        let manifest: Manifest = serde_json::from_value(value).map_err(|e| Error::Json(e.to_string()))?;
        manifest.validate()?;
        Ok(manifest)
    }

    /// Checks every field against the format's rules, naming the first one broken.
    pub fn validate(&self) -> Result<()> {
        if self.format != FORMAT {
            return Err(field("format", format!("'{}' is not '{FORMAT}' (convert the model again with this version)", self.format)));
        }
        if let Some(t) = &self.tokenizer {
            check_file_name("tokenizer.file", &t.file)?;
            check_sha256("tokenizer.sha256", &t.sha256)?;
        }
        for (at, entry) in [("text_tokenizer", &self.text_tokenizer), ("clap_tokenizer", &self.clap_tokenizer)] {
            if let Some(t) = entry {
                check_file_name(&format!("{at}.file"), &t.file)?;
                check_sha256(&format!("{at}.sha256"), &t.sha256)?;
            }
        }
        for (i, s) in self.shards.iter().enumerate() {
            check_file_name(&format!("shards[{i}].file"), &s.file)?;
            check_sha256(&format!("shards[{i}].sha256"), &s.sha256)?;
        }
        let mut names = HashSet::new();
        let mut spans: Vec<Vec<(u64, u64, usize)>> = vec![Vec::new(); self.shards.len()];
        for (i, t) in self.tensors.iter().enumerate() {
            let at = |f: &str| format!("tensors[{i}] ({}).{f}", t.name);
            if t.name.is_empty() || !names.insert(t.name.as_str()) {
                return Err(field(format!("tensors[{i}].name"), format!("'{}' is empty or repeated", t.name)));
            }
            check_sha256(&at("sha256"), &t.sha256)?;
            let expected = t.dtype.bytes_for(&t.shape).ok_or_else(|| field(at("shape"), format!("{:?} overflows", t.shape)))?;
            if t.bytes != expected {
                return Err(field(at("bytes"), format!("{} but shape {:?} as {:?} takes {expected}", t.bytes, t.shape, t.dtype)));
            }
            let rest = t.continued.iter().try_fold(0u64, |n, p| n.checked_add(p.bytes).filter(|_| p.bytes > 0));
            let Some(first) = rest.and_then(|rest| t.bytes.checked_sub(rest)).filter(|&first| first > 0 || t.continued.is_empty()) else {
                return Err(field(at("continued"), format!("its pieces are empty or hold more than the tensor's {} bytes", t.bytes)));
            };
            let pieces = std::iter::once((String::new(), t.shard, t.offset, first)).chain(t.continued.iter().enumerate().map(|(j, p)| (format!("continued[{j}]."), p.shard, p.offset, p.bytes)));
            for (piece, shard_index, offset, len) in pieces {
                let shard = self.shards.get(shard_index).ok_or_else(|| field(at(&format!("{piece}shard")), format!("{shard_index} but there are {} shards", self.shards.len())))?;
                let end = offset.checked_add(len).filter(|&e| e <= shard.bytes);
                let Some(end) = end else {
                    return Err(field(at(&format!("{piece}offset")), format!("{offset} + {len} bytes runs past shard '{}' ({} bytes)", shard.file, shard.bytes)));
                };
                spans[shard_index].push((offset, end, i));
            }
        }
        for (s, spans) in spans.iter_mut().enumerate() {
            spans.sort_unstable();
            for pair in spans.windows(2) {
                let ((_, end_a, a), (start_b, _, b)) = (pair[0], pair[1]);
                if start_b < end_a {
                    let (na, nb) = (&self.tensors[a].name, &self.tensors[b].name);
                    return Err(field(format!("tensors[{b}] ({nb}).offset"), format!("overlaps '{na}' in shard {s}")));
                }
            }
        }
        Ok(())
    }

    /// The entry of tensor `name`.
    pub fn tensor(&self, name: &str) -> Result<&TensorEntry> {
        self.tensors.iter().find(|t| t.name == name).ok_or_else(|| Error::MissingTensor(name.to_string()))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

    fn good() -> Manifest {
        let tensor = |name: &str, shape: Vec<usize>, dtype, offset| {
            let bytes = StoredType::bytes_for(dtype, &shape).unwrap();
            TensorEntry { name: name.into(), shape, dtype, shard: 0, offset, bytes, sha256: HASH.into(), continued: vec![] }
        };
        Manifest {
            format: FORMAT.into(),
            model: "tiny".into(),
            version: "1".into(),
            kind: m2ugen_core::config::ModelKind::Components,
            components: BTreeMap::new(),
            tokenizer: Some(FileEntry { file: "tokenizer.json".into(), bytes: 10, sha256: HASH.into() }),
            text_tokenizer: None,
            clap_tokenizer: None,
            shards: vec![FileEntry { file: "shard-00000.bin".into(), bytes: 4096, sha256: HASH.into() }],
            // q4 (3, 33): padded to 64 columns = 8 words + 1 scale word per row = 108 bytes.
            tensors: vec![tensor("norm", vec![64], StoredType::F32, 0), tensor("wq", vec![3, 33], StoredType::Q4, 256)],
        }
    }

    fn error_of(edit: impl FnOnce(&mut Manifest)) -> String {
        let mut m = good();
        edit(&mut m);
        let json = serde_json::to_vec(&m).unwrap();
        Manifest::parse(&json).unwrap_err().to_string()
    }

    #[test]
    fn a_good_manifest_round_trips() {
        let m = good();
        assert_eq!(m.tensors[1].bytes, 108);
        let parsed = Manifest::parse(&serde_json::to_vec(&m).unwrap()).unwrap();
        assert_eq!(parsed, m);
        assert_eq!(parsed.tensor("wq").unwrap().offset, 256);
        assert_eq!(parsed.tensor("wq").unwrap().pieces(), vec![(0, 256..364)]);
        // A tensor cut over two shards: 50 bytes at the end of one, 58 at the start of the next.
        let mut cut = m.clone();
        cut.shards.push(FileEntry { file: "shard-00001.bin".into(), bytes: 100, sha256: HASH.into() });
        cut.tensors[1].offset = 4096 - 50;
        cut.tensors[1].continued = vec![Piece { shard: 1, offset: 0, bytes: 58 }];
        let json = serde_json::to_string(&cut).unwrap();
        // Written only where there are pieces.
        assert!(json.contains(r#""continued":[{"shard":1,"offset":0,"bytes":58}]"#) && json.matches("continued").count() == 1, "{json}");
        let parsed = Manifest::parse(json.as_bytes()).unwrap();
        assert_eq!(parsed.tensor("wq").unwrap().pieces(), vec![(0, 4046..4096), (1, 0..58)]);
        assert_eq!(parsed.tensor("wk").unwrap_err().to_string(), "manifest: no tensor named 'wk'");
        // The optional tokenizers are written only when there, and read back.
        assert!(!serde_json::to_string(&m).unwrap().contains("clap_tokenizer"));
        let mut with_clap = m.clone();
        with_clap.clap_tokenizer = Some(FileEntry { file: "clap-tokenizer.json".into(), bytes: 7, sha256: HASH.into() });
        assert_eq!(Manifest::parse(&serde_json::to_vec(&with_clap).unwrap()).unwrap(), with_clap);
    }

    #[test]
    fn each_broken_rule_is_named() {
        assert!(error_of(|m| m.format = "m2ugen-weights/1".into()).starts_with("manifest: format: 'm2ugen-weights/1' is not 'm2ugen-weights/2'"));
        assert!(error_of(|m| m.shards[0].file = "../../etc/passwd".into()).starts_with("manifest: shards[0].file: '../../etc/passwd' is not a plain file name"));
        assert!(error_of(|m| m.tokenizer.as_mut().unwrap().file = "https://evil.example/t.json".into()).starts_with("manifest: tokenizer.file:"));
        let clap = |file: &str| Some(FileEntry { file: file.into(), bytes: 10, sha256: HASH.into() });
        assert!(error_of(|m| m.clap_tokenizer = clap("../clap.json")).starts_with("manifest: clap_tokenizer.file: '../clap.json' is not a plain file name"));
        assert!(error_of(|m| m.text_tokenizer = clap("a/t5.json")).starts_with("manifest: text_tokenizer.file:"));
        assert!(error_of(|m| m.clap_tokenizer = Some(FileEntry { file: "c.json".into(), bytes: 1, sha256: "0".into() })).starts_with("manifest: clap_tokenizer.sha256: sha256 must be 64"));
        assert!(error_of(|m| m.shards[0].sha256 = "ABC".into()).starts_with("manifest: shards[0].sha256: sha256 must be 64"));
        assert_eq!(error_of(|m| m.tensors[1].bytes = 100), "manifest: tensors[1] (wq).bytes: 100 but shape [3, 33] as Q4 takes 108");
        assert_eq!(error_of(|m| m.tensors[1].shard = 3), "manifest: tensors[1] (wq).shard: 3 but there are 1 shards");
        assert_eq!(
            error_of(|m| m.tensors[1].offset = 4000),
            "manifest: tensors[1] (wq).offset: 4000 + 108 bytes runs past shard 'shard-00000.bin' (4096 bytes)"
        );
        assert_eq!(error_of(|m| m.tensors[1].offset = u64::MAX - 10), format!("manifest: tensors[1] (wq).offset: {} + 108 bytes runs past shard 'shard-00000.bin' (4096 bytes)", u64::MAX - 10));
        assert_eq!(error_of(|m| m.tensors[1].offset = 200), "manifest: tensors[1] (wq).offset: overlaps 'norm' in shard 0");
        assert_eq!(error_of(|m| m.tensors[1].name = "norm".into()), "manifest: tensors[1].name: 'norm' is empty or repeated");
        // Pieces of a tensor cut over shards: each inside its shard, none overlapping, none empty,
        // together no more than the tensor.
        let cut = |m: &mut Manifest, pieces: Vec<Piece>| {
            m.shards.push(FileEntry { file: "shard-00001.bin".into(), bytes: 100, sha256: HASH.into() });
            m.tensors[1].offset = 4096 - 50;
            m.tensors[1].continued = pieces;
        };
        assert_eq!(error_of(|m| cut(m, vec![Piece { shard: 1, offset: 60, bytes: 58 }])), "manifest: tensors[1] (wq).continued[0].offset: 60 + 58 bytes runs past shard 'shard-00001.bin' (100 bytes)");
        assert_eq!(error_of(|m| cut(m, vec![Piece { shard: 2, offset: 0, bytes: 58 }])), "manifest: tensors[1] (wq).continued[0].shard: 2 but there are 2 shards");
        assert_eq!(error_of(|m| cut(m, vec![Piece { shard: 1, offset: 0, bytes: 108 }])), "manifest: tensors[1] (wq).continued: its pieces are empty or hold more than the tensor's 108 bytes");
        assert_eq!(error_of(|m| cut(m, vec![Piece { shard: 1, offset: 0, bytes: 0 }, Piece { shard: 1, offset: 0, bytes: 58 }])), "manifest: tensors[1] (wq).continued: its pieces are empty or hold more than the tensor's 108 bytes");
        assert_eq!(error_of(|m| cut(m, vec![Piece { shard: 0, offset: 0, bytes: 58 }])), "manifest: tensors[0] (norm).offset: overlaps 'wq' in shard 0");
        assert!(error_of(|m| m.tensors[0].shape = vec![usize::MAX, usize::MAX]).contains("overflows"));
    }

    #[test]
    fn malformed_and_oversized_input_is_refused() {
        assert!(Manifest::parse(b"{\"format\": 1").unwrap_err().to_string().starts_with("manifest: "));
        assert!(Manifest::parse(b"[]").is_err());
        let unknown = br#"{"format":"m2ugen-weights/2","model":"m","version":"1","kind":"llama","shards":[],"tensors":[],"extra":1}"#;
        assert!(Manifest::parse(unknown).unwrap_err().to_string().contains("unknown field `extra`"));
        // An older manifest is named by its format, not by the field it lacks.
        let old = br#"{"format":"m2ugen-weights/1","model":"m","version":"1","shards":[],"tensors":[]}"#;
        assert!(Manifest::parse(old).unwrap_err().to_string().contains("'m2ugen-weights/1' is not 'm2ugen-weights/2' (convert the model again"));
        let no_kind = br#"{"format":"m2ugen-weights/2","model":"m","version":"1","shards":[],"tensors":[]}"#;
        assert!(Manifest::parse(no_kind).unwrap_err().to_string().contains("missing field `kind`"));
        assert!(Manifest::parse(unknown).unwrap_err().to_string().contains("unknown field `extra`"));
        let big = vec![b' '; MAX_MANIFEST_BYTES + 1];
        assert_eq!(Manifest::parse(&big).unwrap_err(), Error::TooLarge { bytes: MAX_MANIFEST_BYTES + 1, limit: MAX_MANIFEST_BYTES });
    }
}
