//! Group-wise quantized weights: the one definition of the 8-bit and 4-bit formats.
//!
//! A weight matrix is `rows x cols` in PyTorch `Linear` order (`rows` = output features,
//! `cols` = input features). Each row is cut into groups of [`GROUP`] consecutive values along
//! `cols`; the last group is padded with zeros, so a row holds `padded_cols` values. Each group
//! has one f16 scale `s = f16(max|w| / QMAX)` and each value is `w ≈ s * q`, rounded to nearest:
//!
//! | format | `q` range | `QMAX` | values per `u32` word | value `j` of a word |
//! |---|---|---|---|---|
//! | [`QuantFormat::Q8`] | -128..=127 | 127 | 4 | byte `j` (bits `8j..8j+8`), two's complement |
//! | [`QuantFormat::Q4`] | -8..=7 | 7 | 8 | nibble `j` (bits `4j..4j+4`), stored as `q + 8` |
//!
//! Storage is row-major: `q` holds `words_per_row` words per row; `scales` holds the row's
//! `padded_cols / GROUP` halves, two per `u32` (even group in the low 16 bits), padded to a whole
//! word per row (`scale_words_per_row`), so any run of whole rows is self-contained and a
//! matrix can be split across bindings between rows.
//!
//! Bound: every value dequantizes to within [`QuantFormat::error_bound`] of the original
//! (half a quantization step, plus the f16 rounding of tiny scales).

use crate::{Error, Result};
use half::f16;

/// Values per quantization group (along a row).
pub const GROUP: usize = 32;

/// Which quantized format a weight uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum QuantFormat {
    /// 8-bit signed values, one f16 scale per group of 32.
    Q8,
    /// 4-bit signed values, one f16 scale per group of 32.
    Q4,
}

const _: () = assert!(GROUP % 8 == 0, "a group must fill whole u32 words in both formats");

impl QuantFormat {
    /// Bits per value.
    pub const fn bits(self) -> usize {
        match self {
            QuantFormat::Q8 => 8,
            QuantFormat::Q4 => 4,
        }
    }

    /// Largest magnitude a value takes (the divisor of the scale).
    pub const fn qmax(self) -> i32 {
        match self {
            QuantFormat::Q8 => 127,
            QuantFormat::Q4 => 7,
        }
    }

    /// Values packed in one `u32`.
    pub const fn per_word(self) -> usize {
        32 / self.bits()
    }

    /// Lower-case name.
    pub const fn name(self) -> &'static str {
        match self {
            QuantFormat::Q8 => "q8",
            QuantFormat::Q4 => "q4",
        }
    }

    /// `u32` words of packed values per row of `cols` values.
    pub const fn words_per_row(self, cols: usize) -> usize {
        padded_cols(cols) / self.per_word()
    }

    /// Bytes of a `rows x cols` matrix: packed values, then packed scales.
    pub fn matrix_bytes(self, rows: usize, cols: usize) -> Option<u64> {
        let words = (self.words_per_row(cols) + scale_words_per_row(cols)) as u64;
        (rows as u64).checked_mul(words)?.checked_mul(4)
    }

    /// Largest error of a dequantized value in a group with scale `scale`.
    pub fn error_bound(self, scale: f32) -> f32 {
        0.5 * scale + self.qmax() as f32 * 2f32.powi(-24)
    }
}

/// Values per row once padded to whole groups.
pub const fn padded_cols(cols: usize) -> usize {
    cols.div_ceil(GROUP) * GROUP
}

/// Groups (and so scales) per row.
pub const fn groups_per_row(cols: usize) -> usize {
    padded_cols(cols) / GROUP
}

/// `u32` words of scales per row (two f16 scales a word, padded to a whole word).
pub const fn scale_words_per_row(cols: usize) -> usize {
    groups_per_row(cols).div_ceil(2)
}

/// A quantized matrix in host memory.
#[derive(Clone, Debug, PartialEq)]
pub struct QuantizedMatrix {
    /// The format.
    pub format: QuantFormat,
    /// Output features.
    pub rows: usize,
    /// Input features (before padding).
    pub cols: usize,
    /// Packed values, `rows * words_per_row()` words.
    pub q: Vec<u32>,
    /// Packed f16 scales, `rows * scale_words_per_row(cols)` words.
    pub scales: Vec<u32>,
}

impl QuantizedMatrix {
    /// Words of packed values per row.
    pub fn words_per_row(&self) -> usize {
        self.format.words_per_row(self.cols)
    }

    /// Scale of group `g` of row `r`.
    pub fn scale(&self, r: usize, g: usize) -> f32 {
        let word = self.scales[r * scale_words_per_row(self.cols) + g / 2];
        f16::from_bits((word >> (16 * (g % 2))) as u16).to_f32()
    }

    /// Quantized value `c` of row `r`, as a signed integer.
    pub fn value(&self, r: usize, c: usize) -> i32 {
        let per = self.format.per_word();
        let word = self.q[r * self.words_per_row() + c / per];
        let j = c % per;
        match self.format {
            QuantFormat::Q8 => ((word >> (8 * j)) & 0xff) as u8 as i8 as i32,
            QuantFormat::Q4 => ((word >> (4 * j)) & 0xf) as i32 - 8,
        }
    }

    /// Bytes on the GPU (values and scales).
    pub fn bytes(&self) -> usize {
        4 * (self.q.len() + self.scales.len())
    }
}

/// Quantizes a row-major `rows x cols` matrix.
pub fn quantize(format: QuantFormat, rows: usize, cols: usize, w: &[f32]) -> Result<QuantizedMatrix> {
    if w.len() != rows * cols {
        return Err(Error::Length { what: format!("{} weight {rows}x{cols}", format.name()), expected: rows * cols, got: w.len() });
    }
    let per = format.per_word();
    let words_per_row = format.words_per_row(cols);
    let swpr = scale_words_per_row(cols);
    let mut q = vec![0u32; rows * words_per_row];
    let mut scales = vec![0u32; rows * swpr];
    let qmax = format.qmax();
    for r in 0..rows {
        let row = &w[r * cols..(r + 1) * cols];
        for g in 0..groups_per_row(cols) {
            let group = &row[(g * GROUP).min(cols)..((g + 1) * GROUP).min(cols)];
            let amax = group.iter().fold(0f32, |m, v| m.max(v.abs()));
            let scale = f16::from_f32(amax / qmax as f32);
            scales[r * swpr + g / 2] |= (scale.to_bits() as u32) << (16 * (g % 2));
            let s = scale.to_f32();
            for (i, &v) in group.iter().enumerate() {
                let qv = if s > 0.0 { ((v / s).round() as i32).clamp(-qmax - 1, qmax) } else { 0 };
                let c = g * GROUP + i;
                let bits = match format {
                    QuantFormat::Q8 => (qv as i8 as u8) as u32,
                    QuantFormat::Q4 => (qv + 8) as u32,
                };
                q[r * words_per_row + c / per] |= bits << (format.bits() * (c % per));
            }
        }
        // Padding values must decode to exactly 0.
        if let QuantFormat::Q4 = format {
            for c in cols..padded_cols(cols) {
                q[r * words_per_row + c / per] |= 8 << (4 * (c % per));
            }
        }
    }
    Ok(QuantizedMatrix { format, rows, cols, q, scales })
}

/// Dequantizes back to a row-major `rows x cols` matrix of f32.
pub fn dequantize(m: &QuantizedMatrix) -> Vec<f32> {
    let mut out = Vec::with_capacity(m.rows * m.cols);
    for r in 0..m.rows {
        for c in 0..m.cols {
            out.push(m.scale(r, c / GROUP) * m.value(r, c) as f32);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    fn round_trip(format: QuantFormat, rows: usize, cols: usize, spread: f32) {
        let mut rng = Rng::new(rows as u64 * 31 + cols as u64);
        let w = rng.vec(rows * cols, -spread, spread);
        let m = quantize(format, rows, cols, &w).unwrap();
        assert_eq!(m.q.len(), rows * padded_cols(cols) / format.per_word());
        assert_eq!(format.matrix_bytes(rows, cols), Some(m.bytes() as u64));
        assert_eq!(m.scales.len(), rows * scale_words_per_row(cols));
        let d = dequantize(&m);
        for r in 0..rows {
            for c in 0..cols {
                let i = r * cols + c;
                let bound = format.error_bound(m.scale(r, c / GROUP));
                assert!((d[i] - w[i]).abs() <= bound, "{format:?} {rows}x{cols} at ({r},{c}): {} vs {} (bound {bound})", d[i], w[i]);
            }
            for c in cols..padded_cols(cols) {
                assert_eq!(m.value(r, c), 0, "padding at ({r},{c})");
            }
        }
    }

    #[test]
    fn round_trip_within_the_documented_bound() {
        for format in [QuantFormat::Q8, QuantFormat::Q4] {
            for (rows, cols) in [(1, 1), (3, 31), (2, 32), (5, 33), (7, 100), (4, 257)] {
                round_trip(format, rows, cols, 1.0);
                round_trip(format, rows, cols, 1e-6); // subnormal f16 scales
            }
        }
    }

    #[test]
    fn known_values_pack_as_documented() {
        // Group max 1.27 -> scale 0.01 (as f16); values 1.27, -0.5, 0 -> 127, -50, 0.
        let mut w = vec![0.0f32; 32];
        w[0] = 1.27;
        w[1] = -0.5;
        let m = quantize(QuantFormat::Q8, 1, 32, &w).unwrap();
        assert_eq!(m.q[0] & 0xff, 127);
        assert_eq!((m.q[0] >> 8) & 0xff, (-50i8) as u8 as u32);
        assert_eq!(m.scales[0] & 0xffff, half::f16::from_f32(0.01).to_bits() as u32);
        let m4 = quantize(QuantFormat::Q4, 1, 32, &w).unwrap();
        // scale 1.27/7; -0.5/s = -2.76 -> -3 -> nibble 5; 1.27 -> 7 -> nibble 15.
        assert_eq!(m4.q[0] & 0xff, 15 | (5 << 4));
    }

    #[test]
    fn a_wrong_length_is_named() {
        let e = quantize(QuantFormat::Q4, 2, 3, &[0.0; 5]).unwrap_err();
        assert_eq!(e.to_string(), "q4 weight 2x3: expected 6 elements, got 5");
    }
}
