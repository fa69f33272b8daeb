//! What the media test files share.

use std::path::PathBuf;

/// This crate's directory, from the environment cargo runs the test in: `env!` would give the
/// directory it was built in, which a build cached from another checkout does not share.
pub fn manifest_dir() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}
