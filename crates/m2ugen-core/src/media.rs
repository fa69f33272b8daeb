//! What the encoders' processors do to decoded media before the GPU sees it, in target-free
//! Rust: the waveform normalisation of MERT's feature extractor, the resizing, cropping and
//! normalisation of the ViT and ViViT image processors as the reference calls them, and the
//! cutting of pixels into patch (ViT) or tubelet (ViViT) rows, one row per token.
//!
//! Decoding files (audio formats, images, video) happens in the page and the CLI; everything
//! here starts from samples and pixels.

/// MERT's `Wav2Vec2FeatureExtractor` with `do_normalize`: zero mean and unit variance over the
/// whole clip, `(x - mean) / sqrt(var + 1e-7)` (population variance).
pub fn normalize_waveform(samples: &[f32]) -> Vec<f32> {
    if samples.is_empty() {
        return Vec::new();
    }
    let n = samples.len() as f64;
    let mean = samples.iter().map(|&v| v as f64).sum::<f64>() / n;
    let var = samples.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
    let inv = 1.0 / (var + 1e-7).sqrt();
    samples.iter().map(|&v| ((v as f64 - mean) * inv) as f32).collect()
}

/// An image or a stack of frames, planar: `(frames, channels, height, width)` values.
#[derive(Clone, Debug, PartialEq)]
pub struct Planar {
    /// Frames (1 for an image).
    pub frames: usize,
    /// Channels.
    pub channels: usize,
    /// Rows of pixels.
    pub height: usize,
    /// Pixels per row.
    pub width: usize,
    /// `frames * channels * height * width` values.
    pub values: Vec<f32>,
}

impl Planar {
    /// Frames of interleaved RGB bytes `(frames, height, width, channels)`, as decoders give
    /// them, as planar values (unscaled, 0 to 255).
    pub fn from_interleaved_u8(frames: usize, height: usize, width: usize, channels: usize, bytes: &[u8]) -> Planar {
        let mut values = vec![0f32; frames * channels * height * width];
        for f in 0..frames {
            for y in 0..height {
                for x in 0..width {
                    for c in 0..channels {
                        values[((f * channels + c) * height + y) * width + x] = bytes[((f * height + y) * width + x) * channels + c] as f32;
                    }
                }
            }
        }
        Planar { frames, channels, height, width, values }
    }

    /// Resized to `height x width` by antialiased bilinear interpolation (the triangle filter
    /// widened by the scale when shrinking, as PIL's and torchvision's antialiased bilinear
    /// resize; computed in f64, not in PIL's 8-bit fixed point). The same size is a copy.
    pub fn resize(&self, height: usize, width: usize) -> Planar {
        if (height, width) == (self.height, self.width) {
            return self.clone();
        }
        let rows = resize_weights(self.height, height);
        let cols = resize_weights(self.width, width);
        let mut values = Vec::with_capacity(self.frames * self.channels * height * width);
        let mut horizontal = vec![0f64; self.height * width];
        for plane in self.values.chunks(self.height * self.width) {
            for y in 0..self.height {
                for (x, (start, w)) in cols.iter().enumerate() {
                    horizontal[y * width + x] = w.iter().enumerate().map(|(j, &wj)| wj * plane[y * self.width + start + j] as f64).sum();
                }
            }
            for (start, w) in &rows {
                for x in 0..width {
                    values.push(w.iter().enumerate().map(|(j, &wj)| wj * horizontal[(start + j) * width + x]).sum::<f64>() as f32);
                }
            }
        }
        Planar { frames: self.frames, channels: self.channels, height, width, values }
    }

    /// The centre `height x width` of each frame (`top = (H - height) / 2`, likewise left),
    /// zeros where the frame is smaller.
    pub fn center_crop(&self, height: usize, width: usize) -> Planar {
        let top = (self.height as i64 - height as i64).div_euclid(2);
        let left = (self.width as i64 - width as i64).div_euclid(2);
        let mut values = vec![0f32; self.frames * self.channels * height * width];
        for (p, plane) in self.values.chunks(self.height * self.width).enumerate() {
            for y in 0..height {
                let sy = y as i64 + top;
                if !(0..self.height as i64).contains(&sy) {
                    continue;
                }
                for x in 0..width {
                    let sx = x as i64 + left;
                    if (0..self.width as i64).contains(&sx) {
                        values[(p * height + y) * width + x] = plane[sy as usize * self.width + sx as usize];
                    }
                }
            }
        }
        Planar { frames: self.frames, channels: self.channels, height, width, values }
    }

    /// Each value `v` becomes `v * scale + offset`.
    pub fn affine(mut self, scale: f32, offset: f32) -> Planar {
        self.values.iter_mut().for_each(|v| *v = *v * scale + offset);
        self
    }

    /// Rows of tokens: each `tubelet x patch x patch` block (frames, rows, columns) of every
    /// channel, in the order of a PyTorch `Conv2d` / `Conv3d` weight `(out, channels, tubelet,
    /// patch, patch)` flattened, tokens in (frame, row, column) order: what the patch (ViT,
    /// `tubelet` 1) or tubelet (ViViT) embedding multiplies by its weight. Frames, height and
    /// width must divide by the block.
    pub fn token_rows(&self, tubelet: usize, patch: usize) -> Vec<f32> {
        let (nt, ny, nx) = (self.frames / tubelet, self.height / patch, self.width / patch);
        let row_len = self.channels * tubelet * patch * patch;
        let mut out = Vec::with_capacity(nt * ny * nx * row_len);
        for t in 0..nt {
            for by in 0..ny {
                for bx in 0..nx {
                    for c in 0..self.channels {
                        for dt in 0..tubelet {
                            let plane = ((t * tubelet + dt) * self.channels + c) * self.height * self.width;
                            for dy in 0..patch {
                                let at = plane + (by * patch + dy) * self.width + bx * patch;
                                out.extend_from_slice(&self.values[at..at + patch]);
                            }
                        }
                    }
                }
            }
        }
        out
    }
}

/// For each output index: the first input index and the normalised weights from there.
fn resize_weights(input: usize, output: usize) -> Vec<(usize, Vec<f64>)> {
    let scale = input as f64 / output as f64;
    let support = scale.max(1.0);
    (0..output)
        .map(|i| {
            let center = (i as f64 + 0.5) * scale;
            let start = ((center - support + 0.5).floor().max(0.0)) as usize;
            let end = ((center + support + 0.5).floor() as usize).min(input);
            let mut w: Vec<f64> = (start..end).map(|j| (1.0 - ((j as f64 - center + 0.5) / support).abs()).max(0.0)).collect();
            let sum: f64 = w.iter().sum();
            if sum > 0.0 {
                w.iter_mut().for_each(|v| *v /= sum);
            }
            (start, w)
        })
        .collect()
}

/// ViT's image processor as M2UGen calls it (`do_rescale=False` on a `ToTensor()` image in
/// `[0, 1]`), on the path through PIL that the reference's transformers takes: the values are
/// scaled to bytes by truncation (`(x * 255) as u8`; an image whose values are all whole numbers
/// is taken as bytes already), resized to `size x size` and rounded to bytes as PIL's 8-bit
/// resize does, rescaled by 1/255, then normalised with mean and std 0.5 to `[-1, 1]`.
/// `image` holds one frame of 3 channels.
pub fn vit_pixels(image: &Planar, size: usize) -> Planar {
    let whole = image.values.iter().all(|v| v.fract() == 0.0);
    let mut bytes = image.clone();
    if !whole {
        bytes.values.iter_mut().for_each(|v| *v = ((*v as f64 * 255.0) as f32).clamp(0.0, 255.0).trunc());
    }
    let mut resized = bytes.resize(size, size);
    if (size, size) != (image.height, image.width) {
        resized.values.iter_mut().for_each(|v| *v = v.round().clamp(0.0, 255.0));
    }
    resized.values.iter_mut().for_each(|v| *v = (*v as f64 * (1.0 / 255.0)) as f32);
    resized.affine(2.0, -1.0)
}

/// ViViT's image processor on frames of bytes (0 to 255): the shorter side resized to `size`
/// (the longer to `size * long / short`, truncated), rounded back to bytes as the processor's
/// 8-bit resize does, the centre `size x size` cropped, then rescaled with offset
/// (`x / 127.5 - 1`) and normalised with mean and std 0.5: `x / 63.75 - 3`, in `[-3, 1]`.
pub fn vivit_pixels(frames: &Planar, size: usize) -> Planar {
    let (h, w) = (frames.height, frames.width);
    let (rh, rw) = if h <= w { (size, size * w / h.max(1)) } else { (size * h / w.max(1), size) };
    let mut resized = frames.resize(rh, rw);
    if (rh, rw) != (h, w) {
        resized.values.iter_mut().for_each(|v| *v = v.round().clamp(0.0, 255.0));
    }
    // Two steps in f32, as the processor computes them.
    let rescaled = resized.center_crop(size, size).affine(1.0 / 127.5, -1.0);
    rescaled.affine(2.0, -1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waveform_normalisation_has_zero_mean_and_unit_variance() {
        let x: Vec<f32> = (0..1000).map(|i| (i as f32 * 0.37).sin() * 0.3 + 0.1).collect();
        let y = normalize_waveform(&x);
        let mean = y.iter().map(|&v| v as f64).sum::<f64>() / 1000.0;
        let var = y.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / 1000.0;
        assert!(mean.abs() < 1e-6 && (var - 1.0).abs() < 1e-4, "mean {mean}, var {var}");
        // Silence stays finite: divided by sqrt(1e-7), not by zero.
        assert!(normalize_waveform(&[0.5; 10]).iter().all(|v| *v == 0.0));
    }

    #[test]
    fn halving_a_checkerboard_of_two_pixel_squares_averages_each_square() {
        // 2x2 squares of 0 and 1: halving with the widened triangle filter (support 2) weights
        // each output's 4x4 neighbourhood 1/8, 3/8, 3/8, 1/8 per axis.
        let n = 8;
        let values: Vec<f32> = (0..n * n).map(|i| (((i / n) / 2 + (i % n) / 2) % 2) as f32).collect();
        let img = Planar { frames: 1, channels: 1, height: n, width: n, values };
        let half = img.resize(4, 4);
        // Interior output (1, 1): input rows/cols 1..5 around centre 3 (in input units).
        let w = [1.0 / 8.0, 3.0 / 8.0, 3.0 / 8.0, 1.0 / 8.0];
        let mut expected = 0.0;
        for (a, wy) in w.iter().enumerate() {
            for (b, wx) in w.iter().enumerate() {
                expected += wy * wx * img.values[(1 + a) * n + 1 + b] as f64;
            }
        }
        assert!((half.values[4 + 1] as f64 - expected).abs() < 1e-6, "{} vs {expected}", half.values[5]);
        // The same size is the identity.
        assert_eq!(img.resize(n, n), img);
    }

    #[test]
    fn tokens_follow_the_conv_weight_order() {
        // 2 frames, 2 channels, 4x4, tubelet 2, patch 2: 4 tokens of 16 values.
        let p = Planar { frames: 2, channels: 2, height: 4, width: 4, values: (0..64).map(|v| v as f32).collect() };
        let rows = p.token_rows(2, 2);
        assert_eq!(rows.len(), 4 * 16);
        // Token 1 (row 0, column 1), channel 1, frame 1, pixel (1, 0): plane (1*2+1)=3.
        let at = |f: usize, c: usize, y: usize, x: usize| (((f * 2 + c) * 4 + y) * 4 + x) as f32;
        let token1 = &rows[16..32];
        assert_eq!(token1[0], at(0, 0, 0, 2));
        assert_eq!(token1[8 + 4 + 2], at(1, 1, 1, 2));
        // Token 2 is the second row of blocks.
        assert_eq!(rows[32], at(0, 0, 2, 0));
    }

    #[test]
    fn vit_pixels_go_through_bytes_by_truncation() {
        let image = Planar { frames: 1, channels: 1, height: 1, width: 3, values: vec![0.5, 0.999, 0.0039] };
        let p = vit_pixels(&image, 1).values;
        assert_eq!(p.len(), 1);
        let same = vit_pixels(&Planar { width: 1, values: vec![0.5], ..image.clone() }, 1).values;
        // 0.5 * 255 = 127.5, truncated to 127: 127 / 255 * 2 - 1.
        assert!((same[0] - (127.0 / 255.0 * 2.0 - 1.0)).abs() < 1e-6, "{same:?}");
    }

    #[test]
    fn vivit_pixels_span_minus_three_to_one_and_crop_the_centre() {
        let bytes: Vec<u8> = (0..2 * 4 * 6 * 3).map(|i| [0u8, 255][i % 2]).collect();
        let frames = Planar::from_interleaved_u8(2, 4, 6, 3, &bytes);
        let p = vivit_pixels(&frames, 4);
        assert_eq!((p.frames, p.channels, p.height, p.width), (2, 3, 4, 4));
        let cropped = frames.center_crop(4, 4);
        for (a, b) in p.values.iter().zip(&cropped.values) {
            assert!((a - (b / 63.75 - 3.0)).abs() < 1e-5);
        }
        assert!(p.values.iter().all(|v| (-3.0..=1.0).contains(v)));
    }
}
