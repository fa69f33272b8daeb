//! Tensors on the GPU, split into row chunks when larger than one storage binding.

use crate::buffer::{Buf, Kind, Origin};
use crate::stats::Counters;
use crate::{platform, Error, Gpu, Result};
use half::f16;
use m2ugen_core::{split::row_chunks, DType};
use std::ops::Range;

/// A run of whole rows of a tensor in its own buffer.
#[derive(Clone, Debug)]
pub struct Chunk {
    /// The rows it holds.
    pub rows: Range<usize>,
    /// The buffer (pooled for what a recording makes).
    pub buffer: Buf,
}

impl Chunk {
    /// The plain buffer, for binding.
    pub fn raw(&self) -> wgpu::Buffer {
        self.buffer.buffer().clone()
    }
}

/// A tensor on the GPU: shape, dtype and one buffer per chunk of rows. Rows are every dimension
/// but the last; most tensors are one chunk.
#[derive(Clone, Debug)]
pub struct GpuTensor {
    shape: Vec<usize>,
    dtype: DType,
    chunks: Vec<Chunk>,
}

impl GpuTensor {
    /// The shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The chunks, in row order.
    pub fn chunks(&self) -> &[Chunk] {
        &self.chunks
    }

    /// Elements in all.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// Length of the last dimension (1 for a scalar).
    pub fn cols(&self) -> usize {
        self.shape.last().copied().unwrap_or(1)
    }

    /// Product of all dimensions but the last.
    pub fn rows(&self) -> usize {
        self.shape[..self.shape.len().saturating_sub(1)].iter().product()
    }

    /// Bytes of data.
    pub fn bytes(&self) -> u64 {
        (self.numel() * self.dtype.size()) as u64
    }

    /// The same data under another shape with as many elements (one-chunk tensors only: a split
    /// tensor's chunks are whole rows of its own shape).
    pub fn reshape(&self, shape: &[usize]) -> Result<GpuTensor> {
        let numel: usize = shape.iter().product();
        if numel != self.numel() || self.chunks.len() != 1 {
            return Err(Error::Shape { op: "reshape", what: "tensor", expected: format!("{numel} elements in one binding for {shape:?}"), got: self.shape.clone() });
        }
        let rows = shape[..shape.len().saturating_sub(1)].iter().product();
        Ok(GpuTensor { shape: shape.to_vec(), dtype: self.dtype, chunks: vec![Chunk { rows: 0..rows, buffer: self.chunks[0].buffer.clone() }] })
    }

    /// The buffer of a tensor that must sit in one binding, or an error naming `op` and `what`.
    pub fn single(&self, gpu: &Gpu, op: &'static str, what: &'static str) -> Result<wgpu::Buffer> {
        match self.chunks.as_slice() {
            [one] => Ok(one.raw()),
            _ => Err(Error::TooLargeForBinding { op, what, bytes: self.bytes(), limit: gpu.split_at() }),
        }
    }
}

fn buffer_size(elems: usize, dtype: DType) -> u64 {
    // Copies need multiples of 4 bytes; bindings need a non-zero size.
    ((elems * dtype.size()) as u64).div_ceil(4).max(1) * 4
}

/// Where a new tensor's buffers come from.
#[derive(Clone, Copy)]
pub(crate) enum Alloc {
    /// Exact size, owned by the tensor (long-lived).
    Exact,
    /// From the pool, for recording `id`; `outputs` when an op writes it (may reuse what the
    /// recording freed), not for uploads.
    Pooled { id: u64, outputs: bool },
}

impl Gpu {
    /// A tensor's buffers, split across bindings where needed; exact ones are zero-filled,
    /// pooled ones hold whatever they held.
    pub(crate) fn alloc(&self, what: &str, shape: &[usize], dtype: DType, alloc: Alloc) -> Result<GpuTensor> {
        let cols = shape.last().copied().unwrap_or(1);
        let rows: usize = shape[..shape.len().saturating_sub(1)].iter().product();
        let plan = row_chunks(what, rows, (cols * dtype.size()) as u64, self.split_at())?;
        let chunks = plan
            .into_iter()
            .map(|r| {
                let size = buffer_size(r.len() * cols, dtype);
                let buffer = match alloc {
                    Alloc::Exact => self.shared.exact(what, size),
                    Alloc::Pooled { id, outputs } => self.shared.pooled(what, size, Kind::Storage, Origin::Recording(id), outputs),
                };
                Chunk { buffer, rows: r }
            })
            .collect();
        Ok(GpuTensor { shape: shape.to_vec(), dtype, chunks })
    }

    /// Writes raw element bytes into `t`'s chunks.
    pub(crate) fn write(&self, t: &GpuTensor, what: &str, bytes: &[u8]) -> Result<()> {
        if bytes.len() != t.numel() * t.dtype.size() {
            return Err(m2ugen_core::Error::Length { what: format!("{what} bytes"), expected: t.numel() * t.dtype.size(), got: bytes.len() }.into());
        }
        let row_bytes = t.cols() * t.dtype.size();
        for c in &t.chunks {
            let data = &bytes[c.rows.start * row_bytes..c.rows.end * row_bytes];
            let mut padded;
            let data = if data.len() % 4 == 0 {
                data
            } else {
                padded = data.to_vec();
                padded.resize(data.len().div_ceil(4) * 4, 0);
                &padded
            };
            if !data.is_empty() {
                self.queue.write_buffer(c.buffer.buffer(), 0, data);
            }
        }
        Ok(())
    }

    /// A zero-filled tensor of its own (long-lived: caches, tables), split across bindings where
    /// needed.
    pub fn zeros(&self, what: &str, shape: &[usize], dtype: DType) -> Result<GpuTensor> {
        self.alloc(what, shape, dtype, Alloc::Exact)
    }

    /// Uploads raw little-endian element bytes into a tensor of its own.
    pub fn upload_bytes(&self, what: &str, shape: &[usize], dtype: DType, bytes: &[u8]) -> Result<GpuTensor> {
        let numel: usize = shape.iter().product();
        if bytes.len() != numel * dtype.size() {
            return Err(m2ugen_core::Error::Length { what: format!("{what} bytes"), expected: numel * dtype.size(), got: bytes.len() }.into());
        }
        let t = self.zeros(what, shape, dtype)?;
        self.write(&t, what, bytes)?;
        Ok(t)
    }

    /// Uploads f32 values as a tensor of `dtype` (f32 or f16).
    pub fn upload(&self, what: &str, shape: &[usize], dtype: DType, data: &[f32]) -> Result<GpuTensor> {
        self.upload_bytes(what, shape, dtype, &values_as(dtype, data, what)?)
    }

    /// Uploads u32 values (token ids).
    pub fn upload_u32(&self, what: &str, shape: &[usize], data: &[u32]) -> Result<GpuTensor> {
        self.upload_bytes(what, shape, DType::U32, bytemuck::cast_slice(data))
    }

    /// Reads a tensor back as raw bytes, every chunk in order.
    pub async fn read_bytes(&self, t: &GpuTensor) -> Result<Vec<u8>> {
        let row_bytes = t.cols() * t.dtype.size();
        let total = t.numel() * t.dtype.size();
        let size = (total as u64).div_ceil(4).max(1) * 4;
        let staging = self.shared.pooled("readback", size, Kind::Readback, Origin::Outside, false);
        let mut encoder = self.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("readback") });
        for c in &t.chunks {
            let bytes = (c.rows.len() * row_bytes) as u64;
            let offset = (c.rows.start * row_bytes) as u64;
            // Copies move whole words; an f16 chunk of odd length ends mid-word only in the last chunk.
            let bytes = bytes.div_ceil(4) * 4;
            if bytes > 0 {
                encoder.copy_buffer_to_buffer(c.buffer.buffer(), 0, staging.buffer(), offset, bytes.min(size - offset));
            }
        }
        self.queue.submit([encoder.finish()]);
        Counters::add(&self.shared.counters.submits, 1);
        Counters::add(&self.shared.counters.bytes_read_back, total as u64);
        let (tx, rx) = futures_channel::oneshot::channel();
        staging.buffer().slice(..size).map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        let mapped = platform::wait(&self.device, rx, "readback").await?;
        // A failed map is most often a lost device: report that first.
        self.check("readback")?;
        mapped.map_err(|e| Error::Readback { what: format!("{:?}", t.shape), message: e.to_string() })?;
        let out = match staging.buffer().slice(..size).get_mapped_range() {
            Ok(view) => Ok(view[..total].to_vec()),
            Err(e) => Err(Error::Readback { what: format!("{:?}", t.shape), message: e.to_string() }),
        };
        // Unmapped before it goes back to the pool, also when the view failed.
        staging.buffer().unmap();
        out
    }

    /// Reads an f32 or f16 tensor back as f32.
    pub async fn read(&self, t: &GpuTensor) -> Result<Vec<f32>> {
        let bytes = self.read_bytes(t).await?;
        match t.dtype {
            DType::F32 => Ok(bytemuck::pod_collect_to_vec::<u8, f32>(&bytes)),
            DType::F16 => Ok(bytemuck::pod_collect_to_vec::<u8, f16>(&bytes).into_iter().map(f16::to_f32).collect()),
            DType::U32 => Err(Error::DType { op: "read", what: "tensor", expected: "f32 or f16", got: t.dtype }),
        }
    }

    /// Reads a u32 tensor back.
    pub async fn read_u32(&self, t: &GpuTensor) -> Result<Vec<u32>> {
        Ok(bytemuck::pod_collect_to_vec::<u8, u32>(&self.read_bytes(t).await?))
    }
}

/// f32 values as the bytes of `dtype` (f32 or f16).
pub(crate) fn values_as(dtype: DType, data: &[f32], what: &str) -> Result<Vec<u8>> {
    match dtype {
        DType::F32 => Ok(bytemuck::cast_slice(data).to_vec()),
        DType::F16 => Ok(data.iter().flat_map(|&v| f16::from_f32(v).to_le_bytes()).collect()),
        DType::U32 => {
            let _ = what;
            Err(Error::DType { op: "upload", what: "values", expected: "f32 or f16", got: dtype })
        }
    }
}
