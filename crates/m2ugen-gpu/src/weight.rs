//! Weights of a linear layer: one type for every storage format, so a model is written once.

use crate::buffer::Buf;
use crate::registry::WeightKind;
use crate::tensor::GpuTensor;
use crate::{Error, Gpu, Result};
use m2ugen_core::quant::{scale_words_per_row, QuantFormat, QuantizedMatrix};
use m2ugen_core::split::row_chunks;
use std::ops::Range;

/// Rows of a quantized weight in their own pair of buffers.
#[derive(Clone, Debug)]
pub struct QuantChunk {
    /// The rows.
    pub rows: Range<usize>,
    /// Packed values.
    pub q: Buf,
    /// Packed f16 scales.
    pub scales: Buf,
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
            Weight::Dense(t) => t.chunks().iter().map(|c| (c.rows.clone(), vec![(2, c.raw())])).collect(),
            Weight::Quant(q) => q.chunks.iter().map(|c| (c.rows.clone(), vec![(2, c.q.buffer().clone()), (5, c.scales.buffer().clone())])).collect(),
        }
    }

    /// The rows of every part, in order, as one weight (q, k and v projections fused into one
    /// product). See [`Weight::gather_rows`].
    pub fn concat_rows(gpu: &Gpu, what: &str, parts: &[&Weight]) -> Result<Weight> {
        let parts: Vec<(&Weight, Range<usize>)> = parts.iter().map(|w| (*w, 0..w.dims().0)).collect();
        Self::gather_rows(gpu, what, &parts)
    }

    /// Rows `range` of each part, in order, as one weight of its own, copied on the GPU (a fused
    /// projection split, or several joined). The parts share a storage type and in_features, and
    /// each run of rows must start on a 4-byte boundary (always so for quantized rows, and for
    /// f16 rows of even width).
    pub fn gather_rows(gpu: &Gpu, what: &str, parts: &[(&Weight, Range<usize>)]) -> Result<Weight> {
        let op = "gather_rows (weights)";
        let Some((first, _)) = parts.first() else {
            return Err(Error::Shape { op, what: "parts", expected: "at least one weight".into(), got: vec![] });
        };
        let (_, cols) = first.dims();
        let rows: usize = parts.iter().map(|(_, r)| r.len()).sum();
        for (p, r) in parts {
            if p.dims().1 != cols || p.kind() != first.kind() || r.end > p.dims().0 {
                return Err(Error::Shape { op, what: "part", expected: format!("{} rows of {cols} like the first, holding rows {r:?}", first.kind().name()), got: vec![p.dims().0, p.dims().1] });
            }
        }
        let mut encoder = gpu.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("gather_rows") });
        // Copies source rows `src` (of a chunk starting at row `chunk0`) to rows from `dst_row`
        // of the destination chunks.
        let mut copy = |buffer: &wgpu::Buffer, chunk0: usize, src: Range<usize>, dst_row: usize, row_bytes: usize, dst: &[(Range<usize>, wgpu::Buffer)]| -> Result<()> {
            for (range, target) in dst {
                let lo = dst_row.max(range.start);
                let hi = (dst_row + src.len()).min(range.end);
                if lo >= hi {
                    continue;
                }
                let from = ((src.start - chunk0 + lo - dst_row) * row_bytes) as u64;
                let to = ((lo - range.start) * row_bytes) as u64;
                if from % 4 != 0 || to % 4 != 0 {
                    return Err(Error::Shape { op, what: "part", expected: "rows starting on 4-byte boundaries".into(), got: vec![src.start, row_bytes] });
                }
                encoder.copy_buffer_to_buffer(buffer, from, target, to, (((hi - lo) * row_bytes) as u64).div_ceil(4) * 4);
            }
            Ok(())
        };
        let out = match first {
            Weight::Dense(t) => {
                let dtype = t.dtype();
                let out = gpu.zeros(what, &[rows, cols], dtype)?;
                let dst: Vec<(Range<usize>, wgpu::Buffer)> = out.chunks().iter().map(|c| (c.rows.clone(), c.raw())).collect();
                let mut at = 0;
                for (p, want) in parts {
                    let Weight::Dense(t) = p else { unreachable!("kinds checked above") };
                    if t.dtype() != dtype {
                        return Err(Error::DType { op, what: "part", expected: dtype.name(), got: t.dtype() });
                    }
                    for c in t.chunks().iter().filter(|c| c.rows.end > want.start && c.rows.start < want.end) {
                        let r = want.start.max(c.rows.start)..want.end.min(c.rows.end);
                        copy(c.buffer.buffer(), c.rows.start, r.clone(), at + r.start - want.start, cols * dtype.size(), &dst)?;
                    }
                    at += want.len();
                }
                Weight::Dense(out)
            }
            Weight::Quant(q0) => {
                let qw = q0.format.words_per_row(cols);
                let sw = scale_words_per_row(cols);
                let plan = row_chunks(what, rows, (qw.max(sw) * 4) as u64, gpu.split_at())?;
                let chunks: Vec<QuantChunk> = plan.into_iter().map(|r| QuantChunk { q: gpu.shared.exact(what, (r.len() * qw * 4) as u64), scales: gpu.shared.exact(what, (r.len() * sw * 4) as u64), rows: r }).collect();
                let dst_q: Vec<(Range<usize>, wgpu::Buffer)> = chunks.iter().map(|c| (c.rows.clone(), c.q.buffer().clone())).collect();
                let dst_s: Vec<(Range<usize>, wgpu::Buffer)> = chunks.iter().map(|c| (c.rows.clone(), c.scales.buffer().clone())).collect();
                let mut at = 0;
                for (p, want) in parts {
                    let Weight::Quant(q) = p else { unreachable!("kinds checked above") };
                    for c in q.chunks.iter().filter(|c| c.rows.end > want.start && c.rows.start < want.end) {
                        let r = want.start.max(c.rows.start)..want.end.min(c.rows.end);
                        copy(c.q.buffer(), c.rows.start, r.clone(), at + r.start - want.start, qw * 4, &dst_q)?;
                        copy(c.scales.buffer(), c.rows.start, r.clone(), at + r.start - want.start, sw * 4, &dst_s)?;
                    }
                    at += want.len();
                }
                Weight::Quant(QuantWeight { format: q0.format, rows, cols, chunks })
            }
        };
        gpu.queue.submit([encoder.finish()]);
        crate::stats::Counters::add(&gpu.shared.counters.submits, 1);
        Ok(out)
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
                let one = |t: &GpuTensor, part: &'static str| -> Result<Buf> {
                    match t.chunks() {
                        [c] => Ok(c.buffer.clone()),
                        _ => Err(Error::TooLargeForBinding { op: "upload_quant", what: part, bytes: t.bytes(), limit: self.split_at() }),
                    }
                };
                Ok(QuantChunk { q: one(&q, "values")?, scales: one(&scales, "scales")?, rows })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Weight::Quant(QuantWeight { format: m.format, rows: m.rows, cols: m.cols, chunks }))
    }
}
