//! Convolutions as the models use them, described once for the GPU launchers and the CPU twins:
//! 1-D for MERT's feature extractor and positional convolution and EnCodec's SEANet decoder, 2-D
//! for AudioLDM 2's UNet and VAE.
//!
//! **Layout.** Sequences are channels-last: `(batch, time, channels)`, one time step a row, so
//! norms and products over channels stay row operations; images likewise `(batch, height,
//! width, channels)`, one pixel a row. Weights keep PyTorch's layout as the converter stores
//! them: `conv1d` `(c_out, c_in / groups, kernel)`, `conv_transpose1d` `(c_in, c_out / groups,
//! kernel)`, `conv2d` `(c_out, c_in / groups, kh, kw)`.

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

/// A `conv2d` over channels-last images `(batch, height, width, channels)`; weight in PyTorch's
/// layout `(c_out, c_in / groups, kh, kw)`; zero padding. Pairs are `[height, width]`:
/// `y[b, oy, ox, co] = bias[co] + Σ_{ci in co's group, ky, kx} w[co, ci, ky, kx] ·
/// x[b, oy·stride[0] + ky·dilation[0] - padding[0], ox·stride[1] + kx·dilation[1] - padding[1], ci]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2d {
    /// Step between output pixels, `[height, width]`.
    pub stride: [usize; 2],
    /// Zeros added on both sides, `[height, width]`.
    pub padding: [usize; 2],
    /// Step between kernel taps, `[height, width]`.
    pub dilation: [usize; 2],
    /// Channel groups (`c_in` and `c_out` both divide by it; depthwise: `groups == c_in`).
    pub groups: usize,
}

impl Conv2d {
    /// Stride 1, padding 0, dilation 1, one group.
    pub fn plain() -> Self {
        Conv2d { stride: [1, 1], padding: [0, 0], dilation: [1, 1], groups: 1 }
    }

    /// Stride 1 and padding `kernel / 2` on every side: the size-keeping convolution of an odd
    /// square kernel (3x3 with padding 1 is diffusers' `Conv2d(.., 3, padding=1)`).
    pub fn same(kernel: usize) -> Self {
        Conv2d { padding: [kernel / 2; 2], ..Conv2d::plain() }
    }

    /// Output `(height, width)` for an input of `h x w` pixels and a `kh x kw` kernel, PyTorch's
    /// `(size + 2·padding - dilation·(k - 1) - 1) / stride + 1`; `(0, 0)` when the kernel does not
    /// fit either way (or a stride is 0).
    pub fn out_size(&self, h: usize, w: usize, kh: usize, kw: usize) -> (usize, usize) {
        let axis = |size: usize, k: usize, d: usize| {
            let span = self.dilation[d] * (k.max(1) - 1) + 1;
            let padded = size + 2 * self.padding[d];
            if padded < span || self.stride[d] == 0 { 0 } else { (padded - span) / self.stride[d] + 1 }
        };
        let (oh, ow) = (axis(h, kh, 0), axis(w, kw, 1));
        if oh == 0 || ow == 0 { (0, 0) } else { (oh, ow) }
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

    #[test]
    fn conv2d_output_sizes_follow_pytorch() {
        // diffusers' 3x3 padding 1 keeps the size, odd sizes included.
        assert_eq!(Conv2d::same(3).out_size(64, 256, 3, 3), (64, 256));
        assert_eq!(Conv2d::same(3).out_size(5, 7, 3, 3), (5, 7));
        assert_eq!(Conv2d::same(3), Conv2d { stride: [1, 1], padding: [1, 1], dilation: [1, 1], groups: 1 });
        assert_eq!(Conv2d::same(1), Conv2d::plain());
        // The UNet's downsampler: 3x3, stride 2, padding 1 halves, rounding up: (13 + 2 - 3) / 2 + 1.
        let down = Conv2d { stride: [2, 2], ..Conv2d::same(3) };
        assert_eq!(down.out_size(64, 256, 3, 3), (32, 128));
        assert_eq!(down.out_size(13, 3, 3, 3), (7, 2));
        assert_eq!(down.out_size(1, 1, 3, 3), (1, 1));
        // A 1x1 shortcut; no padding with a 3x3 kernel on 5x7 loses a pixel each side.
        assert_eq!(Conv2d::plain().out_size(5, 7, 1, 1), (5, 7));
        assert_eq!(Conv2d::plain().out_size(5, 7, 3, 3), (3, 5));
        // Dilation 2 spans 5 pixels: 7 + 2 - 5 + 1 = 5 along width, height exactly fits.
        let dilated = Conv2d { dilation: [2, 2], padding: [0, 1], ..Conv2d::plain() };
        assert_eq!(dilated.out_size(5, 7, 3, 3), (1, 5));
        // Per-axis settings: stride 3 along height only, a 2x1 kernel.
        let mixed = Conv2d { stride: [3, 1], ..Conv2d::plain() };
        assert_eq!(mixed.out_size(8, 4, 2, 1), (3, 4));
        // Too small in one direction gives nothing at all.
        assert_eq!(Conv2d::plain().out_size(2, 9, 3, 3), (0, 0));
        assert_eq!(Conv2d::plain().out_size(9, 2, 3, 3), (0, 0));
        assert_eq!(Conv2d { stride: [0, 1], ..Conv2d::plain() }.out_size(4, 4, 1, 1), (0, 0));
    }
}
