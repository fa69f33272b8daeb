//! AudioLDM 2 against `diffusers` / `transformers` on the AudioLDM 2 fixture: natively (f32 and
//! f16: `text.rs`, `decoder.rs`, `pipeline.rs`; CLAP's audio branch on its own fixture,
//! `clap_audio.rs`) and in headless Chromium over HTTP (f32, `web.rs`).
//! A suite of its own, so the browser run has its own time limit.
#![allow(clippy::unwrap_used)]

#[cfg(not(target_arch = "wasm32"))]
mod clap_audio;
#[cfg(not(target_arch = "wasm32"))]
mod decoder;
#[cfg(not(target_arch = "wasm32"))]
mod text;
#[cfg(not(target_arch = "wasm32"))]
mod pipeline;
#[cfg(target_arch = "wasm32")]
mod web;
