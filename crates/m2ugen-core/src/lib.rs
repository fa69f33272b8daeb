//! Core types of m2ugen-web, shared by every other crate and free of GPU and I/O.
//!
//! - [`DType`]: the element types a tensor can hold on the GPU.
//! - [`config`]: model configurations with the paper's sizes and `tiny()` test sizes, and the
//!   typed form of each component's stored configuration.
//! - [`conv`]: how 1-D and 2-D convolutions are described (layout, padding, output lengths).
//! - [`quant`]: the group-wise 8-bit and 4-bit weight format (the one place it is defined).
//! - [`split`]: how a tensor larger than one storage binding is cut into row chunks.
//! - [`media`]: the encoders' preprocessing (waveform normalisation, resizing, cropping,
//!   patch and tubelet rows).
//! - [`cpu`]: plain-Rust reference implementations (the "CPU twins") of every GPU kernel.
//! - [`rng`]: a small seeded random number generator for tests, benchmarks and sampling.
//!
//! What this crate does not do: run anything on a GPU, read files or talk to the network.
#![deny(missing_docs)]

pub mod config;
pub mod conv;
pub mod cpu;
mod dtype;
mod error;
pub mod media;
pub mod quant;
pub mod rng;
pub mod split;

pub use dtype::{DType, StoredType};
pub use error::{Error, Result};
