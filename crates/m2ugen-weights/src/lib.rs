//! Weights as a CDN serves them: a JSON [`Manifest`] and shard files, and the loader that
//! streams and verifies them.
//!
//! - [`manifest`]: the format, and its checks on a manifest as untrusted input.
//! - [`loader`]: range requests, several in flight, resume, fallback, hash checks, progress;
//!   the same code for every [`loader::Fetcher`].
//! - [`safetensors`]: the `.safetensors` layout, parsed as untrusted input.
//! - `native` (not in the browser): fetchers for a directory and for HTTP(S), and the static
//!   server `m2ugen serve` runs.
//! - `web` (in the browser): the `fetch` fetcher, the Cache API cache, and storage (usage,
//!   persistence, clearing).
//!
//! It depends on the core crate only: it yields verified bytes by tensor name, and the app and
//! the CLI hand them to the models.
#![deny(missing_docs)]

pub mod loader;
pub mod manifest;
pub mod safetensors;
#[cfg(not(target_arch = "wasm32"))]
pub mod native;
#[cfg(target_arch = "wasm32")]
pub mod web;

pub use manifest::{FileEntry, Manifest, StoredType, TensorEntry};

/// Errors of the weights crate, each naming the file, field or tensor.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum Error {
    /// The manifest is not valid JSON of the expected shape.
    #[error("manifest: {0}")]
    Json(String),
    /// The manifest is larger than any real one.
    #[error("manifest: {bytes} bytes is over the {limit}-byte limit")]
    TooLarge {
        /// Its size.
        bytes: usize,
        /// The limit.
        limit: usize,
    },
    /// A field of the manifest is wrong.
    #[error("manifest: {field}: {problem}")]
    Field {
        /// Where, e.g. `tensors[3] (llm.norm).offset`.
        field: String,
        /// What is wrong.
        problem: String,
    },
    /// A file is not in the format it should be.
    #[error("{file}: {problem}")]
    Format {
        /// The file, with the part at fault (e.g. `model.safetensors: header length`).
        file: String,
        /// What is wrong.
        problem: String,
    },
    /// A file could not be fetched at all.
    #[error("{file}: {problem}")]
    Fetch {
        /// The file (URL or path).
        file: String,
        /// What went wrong.
        problem: String,
    },
    /// A transfer kept breaking off.
    #[error("{file}: the download broke off at byte {offset} {attempts} times; check the connection and try again")]
    Interrupted {
        /// The file.
        file: String,
        /// Where it last broke.
        offset: u64,
        /// Attempts made.
        attempts: usize,
    },
    /// A tensor's bytes do not match the manifest's hash, twice.
    #[error("tensor '{tensor}' in {file} does not match its SHA-256 (fetched twice): the server's copy is corrupt or not the one the manifest describes")]
    HashMismatch {
        /// The tensor.
        tensor: String,
        /// Its shard.
        file: String,
    },
    /// A file beside the shards (the tokenizer) does not match the manifest's hash, twice.
    #[error("{file} does not match its SHA-256 (fetched twice): the server's copy is corrupt or not the one the manifest describes")]
    FileHashMismatch {
        /// The file.
        file: String,
    },
    /// The consumer of a tensor refused it.
    #[error("tensor '{tensor}': {problem}")]
    Consume {
        /// The tensor.
        tensor: String,
        /// Why.
        problem: String,
    },
    /// The browser's storage has no room left.
    #[error("browser storage is full ({detail}): the model still loads, but will be downloaded again next visit; free space with 'Clear downloaded weights' or allow this site more storage")]
    QuotaFull {
        /// What the browser said.
        detail: String,
    },
    /// The browser's storage failed otherwise (private browsing, storage disabled).
    #[error("browser storage: {0}")]
    Storage(String),
    /// A tensor the model needs is not in the manifest.
    #[error("manifest: no tensor named '{0}'")]
    MissingTensor(String),
}

/// Result with the weights [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
