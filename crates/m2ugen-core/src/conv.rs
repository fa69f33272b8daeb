//! 1-D convolutions as the models use them (MERT's feature extractor and positional convolution,
//! EnCodec's SEANet decoder), described once for the GPU launchers and the CPU twins.
//!
//! **Layout.** Sequences are channels-last: `(batch, time, channels)`, one time step a row, so
//! norms and products over channels stay row operations. Weights keep PyTorch's layout as the
//! converter stores them: `conv1d` `(c_out, c_in / groups, kernel)`, `conv_transpose1d`
//! `(c_in, c_out / groups, kernel)`.

/// How a convolution's input is extended past its ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Padding {
    /// Zeros (PyTorch's default).
    Zeros,
    /// Mirrored without repeating the edge (`x[-1] = x[1]`); each side's padding must be
    /// shorter than the input.
    Reflect,
    /// The edge value repeated.
    Replicate,
}

impl Padding {
    /// The index a padded time index `t` (may be negative or past `len`) reads, or `None` for a
    /// zero. `len` is at least 1.
    pub fn source(self, t: i64, len: usize) -> Option<usize> {
        let n = len as i64;
        if (0..n).contains(&t) {
            return Some(t as usize);
        }
        match self {
            Padding::Zeros => None,
            Padding::Replicate => Some(t.clamp(0, n - 1) as usize),
            Padding::Reflect => {
                // One reflection suffices: padding is shorter than the input.
                let r = if t < 0 { -t } else { 2 * (n - 1) - t };
                Some(r.clamp(0, n - 1) as usize)
            }
        }
    }

    /// The number the kernels read (`conv.wgsl`'s `pad_mode`).
    pub fn code(self) -> u32 {
        match self {
            Padding::Zeros => 0,
            Padding::Reflect => 1,
            Padding::Replicate => 2,
        }
    }
}

/// A `conv1d`: `y[b, t, co] = bias[co] + Σ_{ci in co's group, j} w[co, ci, j] · x[b, t·stride + j·dilation - pad_left, ci]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv1d {
    /// Step between output positions.
    pub stride: usize,
    /// Step between kernel taps.
    pub dilation: usize,
    /// Channel groups (`c_in` and `c_out` both divide by it; depthwise: `groups == c_in`).
    pub groups: usize,
    /// Padding before the first step.
    pub pad_left: usize,
    /// Padding after the last.
    pub pad_right: usize,
    /// What the padding holds.
    pub padding: Padding,
}

impl Conv1d {
    /// Stride 1, no dilation, one group, no padding.
    pub fn plain() -> Self {
        Conv1d { stride: 1, dilation: 1, groups: 1, pad_left: 0, pad_right: 0, padding: Padding::Zeros }
    }

    /// Output length for an input of `len` steps and a kernel of `kernel` taps (0 when the
    /// kernel does not fit).
    pub fn out_len(&self, len: usize, kernel: usize) -> usize {
        let span = self.dilation * (kernel.max(1) - 1) + 1;
        let padded = len + self.pad_left + self.pad_right;
        if padded < span || self.stride == 0 { 0 } else { (padded - span) / self.stride + 1 }
    }
}

/// A `conv_transpose1d` followed by trimming: `y[b, t, co] = bias[co] + Σ w[ci, co, j] · x[b, s, ci]`
/// over `s·stride + j·dilation = t + trim_left`; `trim_left` and `trim_right` drop output steps
/// at the ends (PyTorch's `padding`, or EnCodec's asymmetric trim after the transposed
/// convolution).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvTranspose1d {
    /// Upsampling factor.
    pub stride: usize,
    /// Step between kernel taps.
    pub dilation: usize,
    /// Channel groups.
    pub groups: usize,
    /// Output steps dropped at the start.
    pub trim_left: usize,
    /// Output steps dropped at the end.
    pub trim_right: usize,
}

impl ConvTranspose1d {
    /// Output length for `len` input steps and `kernel` taps (0 when trimmed away).
    pub fn out_len(&self, len: usize, kernel: usize) -> usize {
        if len == 0 {
            return 0;
        }
        let full = (len - 1) * self.stride + self.dilation * (kernel.max(1) - 1) + 1;
        full.saturating_sub(self.trim_left + self.trim_right)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padding_maps_indices_as_pytorch_does() {
        // x = [a b c d]: reflect pads "c b | a b c d | c b", replicate "a a | ... | d d".
        let reflect: Vec<_> = (-2..6).map(|t| Padding::Reflect.source(t, 4)).collect();
        assert_eq!(reflect, [2, 1, 0, 1, 2, 3, 2, 1].map(Some));
        let rep: Vec<_> = (-2..6).map(|t| Padding::Replicate.source(t, 4)).collect();
        assert_eq!(rep, [0, 0, 0, 1, 2, 3, 3, 3].map(Some));
        assert_eq!(Padding::Zeros.source(-1, 4), None);
        assert_eq!(Padding::Zeros.source(4, 4), None);
    }

    #[test]
    fn output_lengths_follow_the_formulas() {
        // EnCodec's first conv: kernel 7, padding 3 each side keeps the length.
        let c = Conv1d { pad_left: 3, pad_right: 3, ..Conv1d::plain() };
        assert_eq!(c.out_len(100, 7), 100);
        // MERT's first conv: kernel 10, stride 5, no padding.
        assert_eq!(Conv1d { stride: 5, ..Conv1d::plain() }.out_len(24000, 10), 4799);
        // Dilation 3, kernel 3: a span of 7.
        assert_eq!(Conv1d { dilation: 3, ..Conv1d::plain() }.out_len(7, 3), 1);
        assert_eq!(Conv1d::plain().out_len(2, 3), 0);
        // EnCodec upsampling by 8 with kernel 16, trimmed by kernel - stride.
        let t = ConvTranspose1d { stride: 8, dilation: 1, groups: 1, trim_left: 0, trim_right: 8 };
        assert_eq!(t.out_len(50, 16), 400);
    }
}
