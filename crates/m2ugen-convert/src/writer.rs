//! Writes tensors into bounded shard files and the manifest, in the format of
//! `m2ugen_weights::manifest`. Each file is written under a temporary name and renamed when
//! complete, so an interrupted conversion never leaves a file that looks finished.

use anyhow::{Context, Result};
use m2ugen_weights::manifest::{FileEntry, Manifest, Piece, StoredType, TensorEntry, FORMAT};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Hex SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes a file atomically (temporary name, then rename).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("partial");
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))
}

/// Collects tensors into shards of at most `shard_bytes`; a larger tensor is cut into pieces
/// that fill consecutive shards.
pub struct ShardWriter {
    dir: PathBuf,
    shard_bytes: u64,
    current: Vec<u8>,
    shards: Vec<FileEntry>,
    tensors: Vec<TensorEntry>,
    tokenizer: Option<FileEntry>,
    text_tokenizer: Option<FileEntry>,
    clap_tokenizer: Option<FileEntry>,
}

impl ShardWriter {
    /// A writer into `dir` (created if missing).
    pub fn new(dir: &Path, shard_bytes: u64) -> Result<Self> {
        if shard_bytes < 16 {
            anyhow::bail!("a shard must hold at least 16 bytes, not {shard_bytes}");
        }
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(ShardWriter { dir: dir.to_path_buf(), shard_bytes, current: Vec::new(), shards: Vec::new(), tensors: Vec::new(), tokenizer: None, text_tokenizer: None, clap_tokenizer: None })
    }

    /// Adds one tensor's bytes, 16-byte aligned within its shard.
    pub fn add(&mut self, name: &str, shape: &[usize], dtype: StoredType, bytes: &[u8]) -> Result<()> {
        let aligned = self.current.len().div_ceil(16) * 16;
        if !self.current.is_empty() && (aligned + bytes.len()) as u64 > self.shard_bytes {
            self.flush()?;
        }
        self.current.resize(self.current.len().div_ceil(16) * 16, 0);
        // Pieces: as much as the shard has room for, then whole shards, the rest left open.
        let mut pieces = Vec::new();
        let mut rest = bytes;
        loop {
            let room = (self.shard_bytes as usize).saturating_sub(self.current.len());
            let take = room.min(rest.len());
            pieces.push(Piece { shard: self.shards.len(), offset: self.current.len() as u64, bytes: take as u64 });
            self.current.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if rest.is_empty() {
                break;
            }
            self.flush()?;
        }
        let first = pieces.remove(0);
        self.tensors.push(TensorEntry {
            name: name.to_string(),
            shape: shape.to_vec(),
            dtype,
            shard: first.shard,
            offset: first.offset,
            bytes: bytes.len() as u64,
            sha256: sha256(bytes),
            continued: pieces,
        });
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        let file = format!("shard-{:05}.bin", self.shards.len());
        write_atomic(&self.dir.join(&file), &self.current)?;
        self.shards.push(FileEntry { file, bytes: self.current.len() as u64, sha256: sha256(&self.current) });
        self.current.clear();
        Ok(())
    }

    /// Writes `tokenizer.json` beside the shards.
    pub fn tokenizer(&mut self, json: &[u8]) -> Result<()> {
        write_atomic(&self.dir.join("tokenizer.json"), json)?;
        self.tokenizer = Some(FileEntry { file: "tokenizer.json".into(), bytes: json.len() as u64, sha256: sha256(json) });
        Ok(())
    }

    /// Writes the music decoder's text-encoder tokenizer (T5's `tokenizer.json`) beside the
    /// shards, as `text-tokenizer.json`.
    pub fn text_tokenizer(&mut self, json: &[u8]) -> Result<()> {
        write_atomic(&self.dir.join("text-tokenizer.json"), json)?;
        self.text_tokenizer = Some(FileEntry { file: "text-tokenizer.json".into(), bytes: json.len() as u64, sha256: sha256(json) });
        Ok(())
    }

    /// Writes AudioLDM 2's CLAP text tokenizer (RoBERTa's `tokenizer.json`) beside the shards, as
    /// `clap-tokenizer.json`.
    pub fn clap_tokenizer(&mut self, json: &[u8]) -> Result<()> {
        write_atomic(&self.dir.join("clap-tokenizer.json"), json)?;
        self.clap_tokenizer = Some(FileEntry { file: "clap-tokenizer.json".into(), bytes: json.len() as u64, sha256: sha256(json) });
        Ok(())
    }

    /// Writes the last shard and the manifest, checked by the same code that will read it.
    pub fn finish(mut self, model: &str, version: &str, kind: Option<m2ugen_core::config::ModelKind>, components: BTreeMap<String, serde_json::Value>) -> Result<Manifest> {
        if !self.current.is_empty() || self.shards.is_empty() {
            self.flush()?;
        }
        let kind = match kind {
            Some(k) => k,
            None => crate::model_kind(&self.tensors, &components)?,
        };
        let manifest = Manifest {
            format: FORMAT.into(),
            model: model.into(),
            version: version.into(),
            kind,
            components,
            tokenizer: self.tokenizer,
            text_tokenizer: self.text_tokenizer,
            clap_tokenizer: self.clap_tokenizer,
            shards: self.shards,
            tensors: self.tensors,
        };
        manifest.validate().context("the converter produced an invalid manifest (a bug)")?;
        write_atomic(&self.dir.join("manifest.json"), &serde_json::to_vec_pretty(&manifest)?)?;
        Ok(manifest)
    }
}
