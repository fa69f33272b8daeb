//! Image files to planar RGB for ViT (and video frames for ViViT).

use std::io::Cursor;

use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageError, ImageFormat, ImageReader};
use m2ugen_core::media::Planar;

use crate::{Limits, MediaError, check_file_size, short_number, sniff};

/// PNG or JPEG, EXIF orientation applied, as one planar RGB frame in [0, 1] (u8 / 255, like
/// torchvision's ToTensor); grey becomes 3 equal channels, alpha is dropped (not composited,
/// as PIL's `convert("RGB")`), 16-bit samples are reduced to 8 bits. The header's dimensions
/// are checked against `limits` BEFORE decoding the pixels.
///
/// Errors: an empty file, one over `limits.max_file_bytes`, one that is not a PNG or JPEG, a
/// corrupt or truncated one, a side below `limits.min_side` or above `limits.max_side`, more
/// than `limits.max_pixels` pixels.
pub fn decode_image(file: &str, bytes: &[u8], limits: &Limits) -> Result<Planar, MediaError> {
    let mut planar = decode_image_bytes(file, bytes, limits)?;
    planar.values.iter_mut().for_each(|v| *v /= 255.0);
    Ok(planar)
}

/// The same as [`decode_image`], as bytes 0..=255 (for video frames).
pub fn decode_image_bytes(file: &str, bytes: &[u8], limits: &Limits) -> Result<Planar, MediaError> {
    check_file_size(file, bytes.len() as u64, limits)?;
    // Reading from memory cannot fail with an I/O error.
    let mut reader =
        ImageReader::new(Cursor::new(bytes)).with_guessed_format().map_err(|e| corrupt(file, &e.into()))?;
    match reader.format() {
        Some(ImageFormat::Png | ImageFormat::Jpeg) => {}
        Some(other) => {
            return Err(MediaError::new(
                file,
                format!("is a {} image; this build reads PNG and JPEG", other.extensions_str().first().map_or("", |e| e).to_uppercase()),
            ));
        }
        None => {
            let looks = sniff(bytes).map(|k| format!("; it looks like {k}")).unwrap_or_default();
            return Err(MediaError::new(file, format!("is not an image in a format this build reads (PNG, JPEG){looks}")));
        }
    }
    // Our own checks come first, with our messages; the allocation limit follows them.
    reader.no_limits();
    let mut decoder = reader.into_decoder().map_err(|e| corrupt(file, &e))?;
    let (width, height) = decoder.dimensions();
    check_dimensions(file, width, height, limits)?;
    let mut allocation = image::Limits::default();
    // Up to 8 bytes a pixel (16-bit RGBA), and some room for the decoder's own buffers.
    allocation.max_alloc = Some(limits.max_pixels.saturating_mul(8).saturating_add(64 << 20));
    decoder.set_limits(allocation).map_err(|e| corrupt(file, &e))?;
    // A broken EXIF block leaves the pixels usable: no orientation then.
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let mut decoded = DynamicImage::from_decoder(decoder).map_err(|e| corrupt(file, &e))?;
    decoded.apply_orientation(orientation);
    let rgb = decoded.to_rgb8();
    let (width, height) = rgb.dimensions();
    Ok(Planar::from_interleaved_u8(1, height as usize, width as usize, 3, rgb.as_raw()))
}

/// A frame's size against the limits, in the order a user fixes them: too small, a side too
/// long, too many pixels.
pub fn check_dimensions(file: &str, width: u32, height: u32, limits: &Limits) -> Result<(), MediaError> {
    let size = format!("{width}x{height} pixels");
    if width.min(height) < limits.min_side {
        return Err(MediaError::new(
            file,
            format!("is {size}; images must be at least {} pixels on each side", limits.min_side),
        ));
    }
    if width.max(height) > limits.max_side {
        return Err(MediaError::new(
            file,
            format!("is {size}; the limit is {} on a side (scale it down first)", limits.max_side),
        ));
    }
    let pixels = u64::from(width) * u64::from(height);
    if pixels > limits.max_pixels {
        return Err(MediaError::new(
            file,
            format!("is {size} ({}); the limit is {} (scale it down first)", pixel_count(pixels), pixel_count(limits.max_pixels)),
        ));
    }
    Ok(())
}

/// "12 megapixels", or "400 pixels" below a megapixel.
fn pixel_count(pixels: u64) -> String {
    if pixels >= 1_000_000 { format!("{} megapixels", short_number(pixels as f64 / 1e6)) } else { format!("{pixels} pixels") }
}

fn corrupt(file: &str, error: &ImageError) -> MediaError {
    let problem = match error {
        ImageError::IoError(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            "is corrupt or truncated: the file ends too early".to_string()
        }
        ImageError::Limits(e) => format!("is too large to decode: {e}"),
        ImageError::Unsupported(e) => format!("uses a feature this build does not read: {e}"),
        other => format!("is corrupt or truncated: {other}"),
    };
    MediaError::new(file, problem)
}
