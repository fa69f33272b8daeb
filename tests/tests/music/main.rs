//! MusicGen, T5 and EnCodec against `transformers`' outputs on the MusicGen fixture: natively
//! (f32 and f16, `native.rs`), and in headless Chromium over HTTP (f32, `web.rs`). A suite of its
//! own, so the browser run has its own time limit.
#![allow(clippy::unwrap_used)]

#[cfg(not(target_arch = "wasm32"))]
mod native;
#[cfg(target_arch = "wasm32")]
mod web;
