//! Weights of a linear layer: one type for every storage format, so a model is written once.

use crate::registry::WeightKind;
use crate::tensor::GpuTensor;
use crate::{Gpu, Result};
use m2ugen_core::quant::{scale_words_per_row, QuantFormat, QuantizedMatrix};
use m2ugen_core::split::row_chunks;
use std::ops::Range;

/// Rows of a quantized weight in their own pair of buffers.
#[derive(Clone, Debug)]
pub struct QuantChunk {
    /// The rows.
    pub rows: Range<usize>,
    /// Packed values.
    pub q: wgpu::Buffer,
    /// Packed f16 scales.
    pub scales: wgpu::Buffer,
}

/// A quantized weight on the GPU (format in `m2ugen_core::quant`).
#[derive(Clone, Debug)]
pub struct QuantWeight {
    /// The format.
    pub format: QuantFormat,
    /// Output features.
    pub rows: usize,
    /// Input features.
    pub cols: usize,
    /// The chunks, in row order.
    pub chunks: Vec<QuantChunk>,
}

/// The weight of a linear layer, `(out_features, in_features)`.
#[derive(Clone, Debug)]
pub enum Weight {
    /// Plain f32 or f16 values.
    Dense(GpuTensor),
    /// Group-wise quantized values with f16 scales.
    Quant(QuantWeight),
}

impl Weight {
    /// `(out_features, in_features)`.
    pub fn dims(&self) -> (usize, usize) {
        match self {
            Weight::Dense(t) => (t.rows(), t.cols()),
            Weight::Quant(q) => (q.rows, q.cols),
        }
    }

    /// Which kernel variant reads it.
    pub fn kind(&self) -> WeightKind {
        match self {
            Weight::Dense(_) => WeightKind::Dense,
            Weight::Quant(q) => match q.format {
                QuantFormat::Q8 => WeightKind::Q8,
                QuantFormat::Q4 => WeightKind::Q4,
            },
        }
    }

    /// Bytes it occupies on the GPU.
    pub fn bytes(&self) -> u64 {
        match self {
            Weight::Dense(t) => t.bytes(),
            Weight::Quant(q) => q.format.matrix_bytes(q.rows, q.cols).unwrap_or(u64::MAX),
        }
    }

    /// Each chunk: its rows and the buffers bound at 2 (and 5 for quantized weights).
    pub(crate) fn chunk_bindings(&self) -> Vec<(Range<usize>, Vec<(u32, wgpu::Buffer)>)> {
        match self {
            Weight::Dense(t) => t.chunks().iter().map(|c| (c.rows.clone(), vec![(2, c.buffer.clone())])).collect(),
            Weight::Quant(q) => q.chunks.iter().map(|c| (c.rows.clone(), vec![(2, c.q.clone()), (5, c.scales.clone())])).collect(),
        }
    }
}

impl Gpu {
    /// Uploads a quantized matrix, split between rows where it exceeds a binding.
    pub fn upload_quant(&self, what: &str, m: &QuantizedMatrix) -> Result<Weight> {
        let qw = m.words_per_row();
        let sw = scale_words_per_row(m.cols);
        let plan = row_chunks(what, m.rows, (qw.max(sw) * 4) as u64, self.split_at())?;
        let chunks = plan
            .into_iter()
            .map(|rows| {
                let q = self.upload_u32(what, &[rows.len(), qw], &m.q[rows.start * qw..rows.end * qw])?;
                let scales = self.upload_u32(what, &[rows.len(), sw], &m.scales[rows.start * sw..rows.end * sw])?;
                Ok(QuantChunk { q: q.single(self, "upload_quant", "values")?, scales: scales.single(self, "upload_quant", "scales")?, rows })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Weight::Quant(QuantWeight { format: m.format, rows: m.rows, cols: m.cols, chunks }))
    }
}
