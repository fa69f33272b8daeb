//! The LLM and output projector against the reference fixture. Natively the fixture's
//! checkpoint is converted here (f32, then q8 and q4) and loaded from the directory through the
//! real loader; in the browser the same checks load it over HTTP (see `web.rs`).
#![allow(clippy::unwrap_used)]

#[cfg(not(target_arch = "wasm32"))]
mod native;
#[cfg(target_arch = "wasm32")]
mod web;
