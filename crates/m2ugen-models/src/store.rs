//! Tensors uploaded as they arrive, then taken by name when a model is built.
//!
//! Whoever fetches the weights (the pipeline's loader, a test, a benchmark) hands over one
//! verified tensor at a time; [`Store::insert`] uploads it at once (in the activation type, or
//! as a quantized weight), so a model is never held whole in CPU memory. This crate never fetches
//! anything itself. Tensors of at most [`SMALL`] elements are also kept on the CPU, for values a
//! model needs there (the adapter gates).

use crate::{Error, Result};
use half::f16;
use m2ugen_core::quant::{scale_words_per_row, QuantizedMatrix};
use m2ugen_core::{DType, StoredType};
use m2ugen_gpu::{Gpu, GpuTensor, Weight};
use std::collections::HashMap;

/// Tensors up to this many elements are kept on the CPU too (CLAP's largest relative-position
/// table, (2·8 - 1)² positions by 32 heads, is 7200).
pub const SMALL: usize = 8192;

struct Held {
    shape: Vec<usize>,
    weight: Weight,
    values: Option<Vec<f32>>,
}

/// Uploaded tensors by name.
pub struct Store {
    dtype: DType,
    tensors: HashMap<String, Held>,
}

fn f32_of(bytes: &[u8], stored: StoredType) -> Vec<f32> {
    match stored {
        StoredType::F16 => bytes.chunks_exact(2).map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
        _ => bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
    }
}

impl Store {
    /// An empty store whose float tensors are uploaded as `dtype` (the activation type).
    pub fn new(dtype: DType) -> Self {
        Store { dtype, tensors: HashMap::new() }
    }

    /// The activation type.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Uploads one tensor: `bytes` of `shape` stored as `stored` (the weight format's types).
    pub fn insert(&mut self, gpu: &Gpu, name: &str, shape: &[usize], stored: StoredType, bytes: &[u8]) -> Result<()> {
        let numel: usize = shape.iter().product();
        if stored.bytes_for(shape) != Some(bytes.len() as u64) {
            return Err(Error::Tensor { name: name.into(), problem: format!("{} bytes do not hold {shape:?} as {stored:?}", bytes.len()) });
        }
        let (weight, values) = match stored.quant_format() {
            Some(format) => {
                let cols = shape.last().copied().unwrap_or(0);
                let rows = if cols == 0 { 0 } else { numel / cols };
                let words: Vec<u32> = bytes.chunks_exact(4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
                let q_words = rows * format.words_per_row(cols);
                if words.len() != q_words + rows * scale_words_per_row(cols) {
                    return Err(Error::Tensor { name: name.into(), problem: format!("{} bytes do not hold a {rows}x{cols} {} matrix", bytes.len(), format.name()) });
                }
                let m = QuantizedMatrix { format, rows, cols, q: words[..q_words].to_vec(), scales: words[q_words..].to_vec() };
                (gpu.upload_quant(name, &m)?, None)
            }
            None if stored == StoredType::U32 => (Weight::Dense(gpu.upload_bytes(name, shape, DType::U32, bytes)?), None),
            None => {
                let same = (stored == StoredType::F32 && self.dtype == DType::F32) || (stored == StoredType::F16 && self.dtype == DType::F16);
                let small = numel <= SMALL;
                let values = (!same || small).then(|| f32_of(bytes, stored));
                let t = match &values {
                    Some(v) if !same => gpu.upload(name, shape, self.dtype, v)?,
                    _ => gpu.upload_bytes(name, shape, self.dtype, bytes)?,
                };
                (Weight::Dense(t), values.filter(|_| small))
            }
        };
        self.tensors.insert(name.to_string(), Held { shape: shape.to_vec(), weight, values });
        Ok(())
    }

    /// Uploads f32 values as a float tensor of the activation type (random or computed weights).
    pub fn insert_f32(&mut self, gpu: &Gpu, name: &str, shape: &[usize], values: &[f32]) -> Result<()> {
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.insert(gpu, name, shape, StoredType::F32, &bytes)
    }

    fn held(&self, name: &str, shape: &[usize]) -> Result<&Held> {
        let held = self.tensors.get(name).ok_or_else(|| Error::MissingTensor(name.into()))?;
        if held.shape != shape {
            return Err(Error::Tensor { name: name.into(), problem: format!("shape {:?}, expected {shape:?}", held.shape) });
        }
        Ok(held)
    }

    /// Whether `name` was loaded.
    pub fn has(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    /// The names held, in no order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }

    /// The shape of `name`.
    pub fn shape(&self, name: &str) -> Result<&[usize]> {
        Ok(&self.tensors.get(name).ok_or_else(|| Error::MissingTensor(name.into()))?.shape)
    }

    /// A float tensor of shape `shape`.
    pub fn tensor(&self, name: &str, shape: &[usize]) -> Result<GpuTensor> {
        match &self.held(name, shape)?.weight {
            Weight::Dense(t) => Ok(t.clone()),
            Weight::Quant(_) => Err(Error::Tensor { name: name.into(), problem: "is quantized; a float tensor is needed here".into() }),
        }
    }

    /// A linear weight `(out_features, in_features)`, float or quantized.
    pub fn weight(&self, name: &str, out_features: usize, in_features: usize) -> Result<Weight> {
        Ok(self.held(name, &[out_features, in_features])?.weight.clone())
    }

    /// The CPU copy of a small tensor.
    pub fn values(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        self.held(name, shape)?.values.clone().ok_or_else(|| Error::Tensor { name: name.into(), problem: format!("is not a float tensor of at most {SMALL} elements") })
    }

    /// Removes `name` from the store (once a model holds it, or a fused copy of it), so its GPU
    /// memory goes when the model lets go.
    pub fn remove(&mut self, name: &str) {
        self.tensors.remove(name);
    }

    /// Bytes held on the GPU.
    pub fn gpu_bytes(&self) -> u64 {
        self.tensors.values().map(|h| h.weight.bytes()).sum()
    }
}
