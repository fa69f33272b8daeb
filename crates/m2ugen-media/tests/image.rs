//! Image decoding: PNG and JPEG made with the image crate's encoders (or by hand), the errors
//! a user meets, each with its message.
#![allow(clippy::unwrap_used)]

use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::PngEncoder;
use image::{ExtendedColorType, ImageEncoder};
use m2ugen_media::Limits;
use m2ugen_media::image::{decode_image, decode_image_bytes};

fn png(width: u32, height: u32, color: ExtendedColorType, pixels: &[u8], exif: Option<Vec<u8>>) -> Vec<u8> {
    let mut out = Vec::new();
    let mut encoder = PngEncoder::new(&mut out);
    if let Some(exif) = exif {
        encoder.set_exif_metadata(exif).unwrap();
    }
    encoder.write_image(pixels, width, height, color).unwrap();
    out
}

/// RGB pixels whose values say where they are: (x * 10, y * 10, 255 - x - y).
fn positional_rgb(width: u32, height: u32) -> Vec<u8> {
    let mut pixels = Vec::new();
    for y in 0..height {
        for x in 0..width {
            pixels.extend([(x * 10) as u8, (y * 10) as u8, (255 - x - y) as u8]);
        }
    }
    pixels
}

/// A little-endian EXIF (TIFF) block with only the orientation tag.
fn exif_orientation(value: u16) -> Vec<u8> {
    let mut out = b"II*\0".to_vec();
    out.extend(8u32.to_le_bytes()); // first IFD
    out.extend(1u16.to_le_bytes()); // one entry
    out.extend(0x0112u16.to_le_bytes()); // Orientation
    out.extend(3u16.to_le_bytes()); // SHORT
    out.extend(1u32.to_le_bytes()); // one value
    out.extend(value.to_le_bytes());
    out.extend([0, 0]);
    out.extend(0u32.to_le_bytes()); // no next IFD
    out
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0xedb8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

fn chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut out = (data.len() as u32).to_be_bytes().to_vec();
    out.extend(kind);
    out.extend(data);
    let mut checked = kind.to_vec();
    checked.extend(data);
    out.extend(crc32(&checked).to_be_bytes());
    out
}

/// A PNG whose header claims `width x height` RGB pixels, with only a sliver of image data.
fn png_header_only(width: u32, height: u32) -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = width.to_be_bytes().to_vec();
    ihdr.extend(height.to_be_bytes());
    ihdr.extend([8, 2, 0, 0, 0]); // 8 bits, RGB, deflate, no filter, no interlace
    out.extend(chunk(b"IHDR", &ihdr));
    out.extend(chunk(b"IDAT", &[0x78, 0x9c, 0x63, 0x00, 0x00]));
    out.extend(chunk(b"IEND", &[]));
    out
}

fn problem(result: Result<impl std::fmt::Debug, m2ugen_media::MediaError>) -> String {
    let error = result.unwrap_err();
    assert_eq!(error.to_string(), format!("{}: {}", error.file, error.problem));
    assert!(!error.to_string().contains('\n'), "{error}");
    println!("{error}");
    error.problem
}

/// The planar value of channel `c` at (x, y) in frame 0.
fn at(p: &m2ugen_media::Planar, c: usize, x: usize, y: usize) -> f32 {
    p.values[(c * p.height + y) * p.width + x]
}

#[test]
fn png_rgb_is_planar_in_0_1() {
    let bytes = png(20, 17, ExtendedColorType::Rgb8, &positional_rgb(20, 17), None);
    let image = decode_image("p.png", &bytes, &Limits::default()).unwrap();
    assert_eq!((image.frames, image.channels, image.height, image.width), (1, 3, 17, 20));
    assert_eq!(image.values.len(), 3 * 17 * 20);
    assert_eq!(at(&image, 0, 7, 3), 70.0 / 255.0);
    assert_eq!(at(&image, 1, 7, 3), 30.0 / 255.0);
    assert_eq!(at(&image, 2, 7, 3), 245.0 / 255.0);
    assert_eq!(at(&image, 2, 19, 16), 220.0 / 255.0);
}

#[test]
fn bytes_variant_keeps_0_255() {
    let bytes = png(20, 17, ExtendedColorType::Rgb8, &positional_rgb(20, 17), None);
    let image = decode_image_bytes("p.png", &bytes, &Limits::default()).unwrap();
    assert_eq!(at(&image, 0, 7, 3), 70.0);
    assert_eq!(at(&image, 1, 7, 3), 30.0);
    assert_eq!(at(&image, 2, 7, 3), 245.0);
}

#[test]
fn grey_becomes_three_equal_channels() {
    let pixels: Vec<u8> = (0..16 * 16).map(|i| (i % 251) as u8).collect();
    let image = decode_image_bytes("g.png", &png(16, 16, ExtendedColorType::L8, &pixels, None), &Limits::default()).unwrap();
    assert_eq!(image.channels, 3);
    for c in 0..3 {
        assert_eq!(at(&image, c, 5, 2), 37.0);
    }
}

#[test]
fn alpha_is_dropped() {
    let pixels: Vec<u8> = (0..16 * 16).flat_map(|_| [200, 100, 50, 0]).collect();
    let image = decode_image_bytes("a.png", &png(16, 16, ExtendedColorType::Rgba8, &pixels, None), &Limits::default()).unwrap();
    assert_eq!(image.channels, 3);
    assert_eq!([at(&image, 0, 3, 3), at(&image, 1, 3, 3), at(&image, 2, 3, 3)], [200.0, 100.0, 50.0]);
}

#[test]
fn exif_orientation_is_applied() {
    // 16 wide, 32 high, orientation 6: shown turned 90 degrees clockwise, 32 wide, 16 high;
    // the stored bottom-left pixel is shown top-left.
    let mut pixels = vec![0u8; 16 * 32 * 3];
    let bottom_left = (31 * 16) * 3;
    pixels[bottom_left..bottom_left + 3].copy_from_slice(&[255, 0, 0]);
    let bytes = png(16, 32, ExtendedColorType::Rgb8, &pixels, Some(exif_orientation(6)));
    let image = decode_image_bytes("turned.png", &bytes, &Limits::default()).unwrap();
    assert_eq!((image.height, image.width), (16, 32));
    assert_eq!([at(&image, 0, 0, 0), at(&image, 1, 0, 0)], [255.0, 0.0]);
    assert_eq!(image.values.iter().filter(|&&v| v != 0.0).count(), 1);
}

#[test]
fn jpeg_decodes_with_its_orientation() {
    // Top half red, bottom half blue; orientation 3 turns it upside down.
    let (width, height) = (32u32, 24u32);
    let pixels: Vec<u8> = (0..width * height).flat_map(|i| if i / width < height / 2 { [220, 20, 20] } else { [20, 20, 220] }).collect();
    let mut bytes = Vec::new();
    let mut encoder = JpegEncoder::new_with_quality(&mut bytes, 95);
    encoder.set_exif_metadata(exif_orientation(3)).unwrap();
    encoder.write_image(&pixels, width, height, ExtendedColorType::Rgb8).unwrap();
    let image = decode_image("photo.jpg", &bytes, &Limits::default()).unwrap();
    assert_eq!((image.height, image.width), (24, 32));
    // Now blue on top, red below (away from the edge, where JPEG blurs).
    assert!(at(&image, 2, 10, 2) > 0.8 && at(&image, 0, 10, 2) < 0.2, "{}", at(&image, 2, 10, 2));
    assert!(at(&image, 0, 10, 21) > 0.8 && at(&image, 2, 10, 21) < 0.2, "{}", at(&image, 0, 10, 21));
}

#[test]
fn empty_file() {
    assert_eq!(problem(decode_image("e.png", &[], &Limits::default())), "is empty");
}

#[test]
fn not_an_image() {
    assert_eq!(
        problem(decode_image("song.png", b"RIFF\x24\0\0\0WAVEfmt \x10\0\0\0", &Limits::default())),
        "is not an image in a format this build reads (PNG, JPEG); it looks like WAV audio"
    );
    assert_eq!(
        problem(decode_image("notes.jpg", b"not a picture\n", &Limits::default())),
        "is not an image in a format this build reads (PNG, JPEG); it looks like text"
    );
}

#[test]
fn other_image_formats_are_named() {
    assert_eq!(
        problem(decode_image("anim.gif", b"GIF89a\x10\0\x10\0\0\0\0", &Limits::default())),
        "is a GIF image; this build reads PNG and JPEG"
    );
}

#[test]
fn truncated_png() {
    let bytes = png(40, 40, ExtendedColorType::Rgb8, &positional_rgb(40, 40), None);
    let message = problem(decode_image("cut.png", &bytes[..bytes.len() / 2], &Limits::default()));
    assert!(message.starts_with("is corrupt or truncated: "), "{message}");
}

#[test]
fn corrupt_png_data() {
    let mut bytes = png(40, 40, ExtendedColorType::Rgb8, &positional_rgb(40, 40), None);
    // Flip bytes inside the compressed image data (after the 33-byte signature and IHDR).
    for b in &mut bytes[50..70] {
        *b ^= 0xa5;
    }
    let message = problem(decode_image("bad.png", &bytes, &Limits::default()));
    assert!(message.starts_with("is corrupt or truncated: "), "{message}");
}

#[test]
fn corrupt_jpeg() {
    let message = problem(decode_image("bad.jpg", b"\xff\xd8\xff\xe0\0\x10JFIF\0garbage garbage", &Limits::default()));
    assert!(message.starts_with("is corrupt or truncated: "), "{message}");
}

#[test]
fn one_pixel() {
    let bytes = png(1, 1, ExtendedColorType::Rgb8, &[1, 2, 3], None);
    assert_eq!(
        problem(decode_image("dot.png", &bytes, &Limits::default())),
        "is 1x1 pixels; images must be at least 16 pixels on each side"
    );
}

#[test]
fn enormous_header_is_refused_before_the_pixels() {
    assert_eq!(
        problem(decode_image("huge.png", &png_header_only(20_000, 20_000), &Limits::default())),
        "is 20000x20000 pixels; the limit is 16384 on a side (scale it down first)"
    );
    // The hand-made header is valid: within the limits, the decoder goes on to the missing
    // pixels.
    let message = problem(decode_image("huge.png", &png_header_only(200, 200), &Limits::default()));
    assert!(message.starts_with("is corrupt or truncated"), "{message}");
}

#[test]
fn too_many_pixels() {
    assert_eq!(
        problem(decode_image("wide.png", &png_header_only(16_000, 12_000), &Limits::default())),
        "is 16000x12000 pixels (192 megapixels); the limit is 100 megapixels (scale it down first)"
    );
}

#[test]
fn file_over_the_size_limit() {
    let bytes = png(40, 40, ExtendedColorType::Rgb8, &positional_rgb(40, 40), None);
    let limits = Limits { max_file_bytes: 100, ..Limits::default() };
    assert_eq!(
        problem(decode_image("big.png", &bytes, &limits)),
        format!("is {} bytes; the limit is 100 bytes", bytes.len())
    );
}

/// A real PNG through decoding and ViT's preprocessing: an 8x8 checkerboard of 2-pixel squares
/// (grey levels 51 and 204) halved to 4x4. Each output pixel is worked out here by hand: the
/// widened triangle filter weights a 4x4 neighbourhood 1/8, 3/8, 3/8, 1/8 per axis (clipped and
/// renormalised at the edges), the result rounded to a byte as the 8-bit resize does, then
/// `x / 255 * 2 - 1`.
#[test]
fn a_checkerboard_png_resized_for_vit_gives_the_values_worked_out_by_hand() {
    let level = |x: usize, y: usize| if (x / 2 + y / 2) % 2 == 0 { 51u8 } else { 204u8 };
    let mut pixels = Vec::new();
    for y in 0..8 {
        for x in 0..8 {
            pixels.extend([level(x, y); 3]);
        }
    }
    let small = Limits { min_side: 1, ..Limits::default() };
    let image = decode_image("board.png", &png(8, 8, ExtendedColorType::Rgb8, &pixels, None), &small).unwrap();
    let vit = m2ugen_core::media::vit_pixels(&image, 4);
    assert_eq!((vit.channels, vit.height, vit.width), (3, 4, 4));
    // Output i covers inputs 2i-1 .. 2i+2 with weights 1, 3, 3, 1 (those past the edge dropped).
    let taps = |i: usize| -> Vec<(usize, f64)> {
        [(-1i64, 1.0), (0, 3.0), (1, 3.0), (2, 1.0)].iter().filter_map(|&(d, w)| usize::try_from(2 * i as i64 + d).ok().filter(|&j| j < 8).map(|j| (j, w))).collect()
    };
    for oy in 0..4 {
        for ox in 0..4 {
            let (ty, tx) = (taps(oy), taps(ox));
            let (wy, wx): (f64, f64) = (ty.iter().map(|t| t.1).sum(), tx.iter().map(|t| t.1).sum());
            let mut v = 0.0;
            for &(y, a) in &ty {
                for &(x, b) in &tx {
                    v += a / wy * b / wx * level(x, y) as f64;
                }
            }
            let expected = (v.round() / 255.0 * 2.0 - 1.0) as f32;
            for c in 0..3 {
                let got = vit.values[(c * 4 + oy) * 4 + ox];
                assert!((got - expected).abs() < 1e-6, "pixel ({ox}, {oy}) channel {c}: {got} vs {expected}");
            }
        }
    }
}
