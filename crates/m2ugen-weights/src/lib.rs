//! Weights as a CDN serves them: a JSON [`Manifest`] and shard files, and (with issue #3) the
//! loader that streams, verifies and caches them.
//!
//! Today it holds the format: [`manifest`] defines it and checks a manifest as untrusted input.
//! It depends on the core crate only: it yields verified bytes by tensor name, and the app and
//! the CLI hand them to the models.
#![deny(missing_docs)]

pub mod manifest;

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
    /// A tensor the model needs is not in the manifest.
    #[error("manifest: no tensor named '{0}'")]
    MissingTensor(String),
}

/// Result with the weights [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
