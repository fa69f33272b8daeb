/// Element type of a tensor as stored on the GPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    /// 32-bit IEEE float.
    F32,
    /// 16-bit IEEE float; arithmetic on it needs the `shader-f16` feature.
    F16,
    /// 32-bit unsigned integer (token ids, packed quantized words).
    U32,
}

impl DType {
    /// Bytes one element takes.
    pub const fn size(self) -> usize {
        match self {
            DType::F32 | DType::U32 => 4,
            DType::F16 => 2,
        }
    }

    /// Lower-case name, as used in messages and benchmark output.
    pub const fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::U32 => "u32",
        }
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// How a tensor's bytes are stored in the weight format (and handed to the models).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoredType {
    /// 32-bit floats.
    F32,
    /// 16-bit floats.
    F16,
    /// 32-bit unsigned integers.
    U32,
    /// 8-bit group-wise quantized ([`crate::quant`]).
    Q8,
    /// 4-bit group-wise quantized ([`crate::quant`]).
    Q4,
}

impl StoredType {
    /// Bytes a tensor of `shape` takes, or `None` on overflow.
    pub fn bytes_for(self, shape: &[usize]) -> Option<u64> {
        let numel = shape.iter().try_fold(1u64, |n, &d| n.checked_mul(d as u64))?;
        match self {
            StoredType::F32 | StoredType::U32 => numel.checked_mul(4),
            StoredType::F16 => numel.checked_mul(2),
            StoredType::Q8 | StoredType::Q4 => {
                let cols = *shape.last()?;
                let rows = if cols == 0 { 0 } else { numel / cols as u64 };
                self.quant_format()?.matrix_bytes(rows as usize, cols)
            }
        }
    }

    /// The quantized format, for `q8` and `q4`.
    pub fn quant_format(self) -> Option<crate::quant::QuantFormat> {
        match self {
            StoredType::Q8 => Some(crate::quant::QuantFormat::Q8),
            StoredType::Q4 => Some(crate::quant::QuantFormat::Q4),
            _ => None,
        }
    }
}
