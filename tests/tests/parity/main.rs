//! Parity with the reference fixtures. The LLM and output projector against the M2UGen
//! fixture: natively the fixture's checkpoint is converted here (f32, then q8 and q4) and loaded
//! from the directory through the real loader; in the browser the same checks load it over HTTP
//! (see `web.rs`).
//! (MusicGen, T5 and EnCodec have their own suite, `music`.)
#![allow(clippy::unwrap_used)]

#[cfg(not(target_arch = "wasm32"))]
mod native;
#[cfg(target_arch = "wasm32")]
mod web;
