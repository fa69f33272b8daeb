//! The models of M2UGen, written once for every weight type and both targets.
//!
//! Today it holds [`layers`], the blocks the models share. The models themselves (LLaMA with its
//! adapter parts, the output projector, MERT, ViT, ViViT, T5, MusicGen, EnCodec) arrive one file
//! each with the issues that load and check them against the reference.
#![deny(missing_docs)]

pub mod layers;
