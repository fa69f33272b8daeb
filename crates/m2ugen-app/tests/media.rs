//! The page's media decoding in headless Chromium: files built here (WAV, PNG, JPEG with an
//! EXIF orientation, BMP, a WebM recorded from a canvas) and broken ones, each error checked to
//! name the file.
#![cfg(target_arch = "wasm32")]
#![allow(clippy::unwrap_used)]

use std::cell::RefCell;
use std::f64::consts::TAU;

use m2ugen_app::media::{Limits, Planar, VideoTimeouts, decode_image, decode_music, decode_video, decode_video_with, file_bytes};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

// ---- audio -------------------------------------------------------------------------------

/// A 16-bit PCM WAV; `data_len` overrides the data chunk's stated length.
fn wav_with(rate: u32, channels: u16, samples: &[i16], data_len: Option<u32>) -> Vec<u8> {
    let data: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
    let block = u32::from(channels) * 2;
    let mut out = Vec::new();
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&channels.to_le_bytes());
    out.extend_from_slice(&rate.to_le_bytes());
    out.extend_from_slice(&(rate * block).to_le_bytes());
    out.extend_from_slice(&(block as u16).to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.unwrap_or(data.len() as u32).to_le_bytes());
    out.extend_from_slice(&data);
    out
}

/// One second of stereo at 44.1 kHz: a 440 Hz sine of amplitude 0.5 on the left, 0.25 on the
/// right (the mono mix: 0.375).
fn stereo_tone(data_len: Option<u32>) -> Vec<u8> {
    let samples: Vec<i16> = (0..44_100)
        .flat_map(|n| {
            let s = (TAU * 440.0 * n as f64 / 44_100.0).sin();
            [(0.5 * s * 32767.0).round() as i16, (0.25 * s * 32767.0).round() as i16]
        })
        .collect();
    wav_with(44_100, 2, &samples, data_len)
}

#[wasm_bindgen_test]
async fn a_stereo_wav_becomes_a_24_khz_mono_sine() {
    let bytes = stereo_tone(None);
    let music = decode_music("tone.wav", &bytes, &Limits::default()).await.unwrap();
    assert_eq!(music.len(), 24_000, "one second at 24 kHz");
    // Against the analytic mix at 24 kHz, the clip's first and last 50 ms left out (the
    // resampler's filter rings at abrupt ends).
    let interior = 1_200..22_800;
    let worst = interior.clone().map(|n| (music[n] as f64 - 0.375 * (TAU * 440.0 * n as f64 / 24_000.0).sin()).abs()).fold(0.0, f64::max);
    assert!(worst < 1e-3, "worst difference from the analytic sine: {worst}");
    // 440 Hz: 880 sign changes a second, 792 over the 0.9 s interior.
    let crossings = music[interior.clone()].windows(2).filter(|w| (w[0] < 0.0) != (w[1] < 0.0)).count();
    assert!((790..=794).contains(&crossings), "{crossings} zero crossings");
    // The same waveform as the CLI's path (symphonia, then the same resampler).
    let native = m2ugen_media::audio::music_from_bytes("tone.wav", &bytes, &Limits::default()).unwrap();
    let gap = music.iter().zip(&native).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
    assert!(gap < 1e-4, "browser and symphonia differ by {gap}");
}

#[wasm_bindgen_test]
async fn empty_garbage_and_silent_audio_are_refused_by_name() {
    let limits = Limits::default();
    let error = decode_music("empty.wav", &[], &limits).await.unwrap_err();
    assert_eq!(error.to_string(), "empty.wav: is empty");

    let garbage: Vec<u8> = (0..4000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let error = decode_music("noise.mp3", &garbage, &limits).await.unwrap_err().to_string();
    assert!(error.starts_with("noise.mp3: cannot be decoded as audio by this browser ("), "{error}");
    assert!(!error.contains('\n'), "{error}");

    let silent = wav_with(44_100, 1, &vec![0; 4410], None);
    let error = decode_music("quiet.wav", &silent, &limits).await.unwrap_err();
    assert_eq!(error.to_string(), "quiet.wav: is silent");
}

#[wasm_bindgen_test]
async fn truncated_wavs_are_refused_by_name() {
    let limits = Limits::default();
    let whole = stereo_tone(None);
    let header_only = &whole[..44];
    let error = decode_music("head.wav", header_only, &limits).await.unwrap_err();
    assert_eq!(error.to_string(), "head.wav: is corrupt or truncated: its header promises 1 s of audio, the file holds 0 s");

    let cut = &whole[..44 + 44_100 * 2];
    let error = decode_music("cut.wav", cut, &limits).await.unwrap_err();
    assert_eq!(error.to_string(), "cut.wav: is corrupt or truncated: its header promises 1 s of audio, the file holds 0.5 s");

    // No samples at all, and a header that says so.
    let error = decode_music("nothing.wav", &wav_with(44_100, 1, &[], None), &limits).await.unwrap_err().to_string();
    assert!(
        error == "nothing.wav: has no audio samples" || error.starts_with("nothing.wav: cannot be decoded as audio by this browser ("),
        "{error}"
    );
}

#[wasm_bindgen_test]
async fn audio_over_the_limits_is_refused_by_name() {
    let short = Limits { max_audio_seconds: 0.5, ..Limits::default() };
    // From the WAV header, before decoding.
    let error = decode_music("long.wav", &stereo_tone(None), &short).await.unwrap_err();
    assert_eq!(error.to_string(), "long.wav: is 1 s long; the limit is 0.5 s");
    // A header without a length (as written to a pipe): from the decoded audio.
    let error = decode_music("piped.wav", &stereo_tone(Some(u32::MAX)), &short).await.unwrap_err();
    assert_eq!(error.to_string(), "piped.wav: is 1 s long; the limit is 0.5 s");

    let small = Limits { max_file_bytes: 100, ..Limits::default() };
    let error = decode_music("big.wav", &stereo_tone(None), &small).await.unwrap_err();
    assert_eq!(error.to_string(), "big.wav: is 176444 bytes; the limit is 100 bytes");
}

#[wasm_bindgen_test]
async fn a_picked_file_is_read_and_its_size_checked_first() {
    let bytes = stereo_tone(None);
    let file = gloo_file::File::new("picked.wav", bytes.as_slice());
    let read = file_bytes(AsRef::<web_sys::File>::as_ref(&file), &Limits::default()).await.unwrap();
    assert_eq!(read, bytes);
    let small = Limits { max_file_bytes: 1000, ..Limits::default() };
    let error = file_bytes(AsRef::<web_sys::File>::as_ref(&file), &small).await.unwrap_err();
    assert_eq!(error.to_string(), "picked.wav: is 176444 bytes; the limit is 1000 bytes");
}

#[wasm_bindgen_test]
fn sample_rates_are_read_from_headers() {
    use m2ugen_app::media::native_sample_rate;
    assert_eq!(native_sample_rate(&stereo_tone(None)), Some(44_100));
    assert_eq!(native_sample_rate(&wav_with(1_000, 1, &[1, 2], None)), None, "below what a context runs at");
    let mut flac = b"fLaC\0\0\0\x22".to_vec();
    flac.extend_from_slice(&[0x10, 0, 0x10, 0, 0, 0, 0, 0, 0, 0, 0x0a, 0xc4, 0x42, 0xf0]);
    assert_eq!(native_sample_rate(&flac), Some(44_100));
    let mut mp3 = b"ID3\x03\0\0\0\0\0\x0a".to_vec();
    mp3.extend_from_slice(&[0; 10]);
    mp3.extend_from_slice(&[0xff, 0xf3, 0x84, 0xc4, 0, 0]);
    assert_eq!(native_sample_rate(&mp3), Some(24_000), "MPEG-2 layer III after an ID3 tag");
    assert_eq!(native_sample_rate(&[0xff, 0xfb, 0x90, 0x64, 0, 0]), Some(44_100), "MPEG-1 layer III");
    let mut vorbis = b"OggS".to_vec();
    vorbis.extend_from_slice(&[0; 24]);
    vorbis.extend_from_slice(b"\x01vorbis\0\0\0\0\x02");
    vorbis.extend_from_slice(&32_000u32.to_le_bytes());
    assert_eq!(native_sample_rate(&vorbis), Some(32_000));
    let mut opus = b"OggS".to_vec();
    opus.extend_from_slice(&[0; 24]);
    opus.extend_from_slice(b"OpusHead\x01\x02");
    assert_eq!(native_sample_rate(&opus), Some(48_000));
    assert_eq!(native_sample_rate(b"hello"), None);
}

// ---- images ------------------------------------------------------------------------------

/// The test pattern's pixel at (x, y).
fn pattern(x: u32, y: u32) -> [u8; 3] {
    [(x * 12) as u8, (y * 15) as u8, ((x + y) * 5 + 3) as u8]
}

fn png(width: u32, height: u32, alpha: bool) -> Vec<u8> {
    use image::ImageEncoder;
    let channels = if alpha { 4 } else { 3 };
    let mut pixels = Vec::new();
    for y in 0..height {
        for x in 0..width {
            pixels.extend_from_slice(&pattern(x, y));
            if alpha {
                pixels.push(255);
            }
        }
    }
    let color = if alpha { image::ExtendedColorType::Rgba8 } else { image::ExtendedColorType::Rgb8 };
    let mut out = Vec::new();
    image::codecs::png::PngEncoder::new(&mut out).write_image(&pixels, width, height, color).unwrap();
    assert_eq!(pixels.len(), (width * height * channels) as usize);
    out
}

fn pixel(planar: &Planar, x: usize, y: usize) -> [f32; 3] {
    let plane = planar.height * planar.width;
    [0, 1, 2].map(|c| planar.values[c * plane + y * planar.width + x])
}

fn assert_pattern(planar: &Planar, width: usize, height: usize) {
    assert_eq!((planar.frames, planar.channels, planar.height, planar.width), (1, 3, height, width));
    for y in 0..height {
        for x in 0..width {
            let expected = pattern(x as u32, y as u32).map(|v| v as f32 / 255.0);
            assert_eq!(pixel(planar, x, y), expected, "pixel ({x}, {y})");
        }
    }
}

#[wasm_bindgen_test]
async fn png_pixels_come_back_exactly() {
    let limits = Limits::default();
    let planar = decode_image("pattern.png", &png(20, 17, false), &limits).await.unwrap();
    assert_pattern(&planar, 20, 17);
    let planar = decode_image("opaque.png", &png(20, 17, true), &limits).await.unwrap();
    assert_pattern(&planar, 20, 17);
}

/// A 24-bit BMP (rows bottom-up, padded to 4 bytes): a format only the browser reads here.
fn bmp(width: u32, height: u32) -> Vec<u8> {
    let row = (width * 3).div_ceil(4) * 4;
    let size = 54 + row * height;
    let mut out = Vec::new();
    out.extend_from_slice(b"BM");
    for v in [size, 0, 54, 40] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.extend_from_slice(&(width as i32).to_le_bytes());
    out.extend_from_slice(&(height as i32).to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&24u16.to_le_bytes());
    for v in [0u32, row * height, 2835, 2835, 0, 0] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    for y in (0..height).rev() {
        let start = out.len();
        for x in 0..width {
            let [r, g, b] = pattern(x, y);
            out.extend_from_slice(&[b, g, r]);
        }
        out.resize(start + row as usize, 0);
    }
    out
}

#[wasm_bindgen_test]
async fn any_format_the_browser_reads_is_taken() {
    let planar = decode_image("pattern.bmp", &bmp(18, 16), &Limits::default()).await.unwrap();
    assert_pattern(&planar, 18, 16);
    // The size check after decoding, for a format whose header is not read here.
    let error = decode_image("dot.bmp", &bmp(1, 1), &Limits::default()).await.unwrap_err();
    assert_eq!(error.to_string(), "dot.bmp: is 1x1 pixels; images must be at least 16 pixels on each side");
}

#[wasm_bindgen_test]
async fn bad_images_are_refused_by_name() {
    let limits = Limits::default();
    let error = decode_image("dot.png", &png(1, 1, false), &limits).await.unwrap_err();
    assert_eq!(error.to_string(), "dot.png: is 1x1 pixels; images must be at least 16 pixels on each side");

    let narrow = Limits { max_side: 18, ..Limits::default() };
    let error = decode_image("wide.png", &png(20, 17, false), &narrow).await.unwrap_err();
    assert_eq!(error.to_string(), "wide.png: is 20x17 pixels; the limit is 18 on a side (scale it down first)");

    let few = Limits { max_pixels: 300, ..Limits::default() };
    let error = decode_image("many.bmp", &bmp(18, 17), &few).await.unwrap_err();
    assert_eq!(error.to_string(), "many.bmp: is 18x17 pixels (306 pixels); the limit is 300 pixels (scale it down first)");

    let error = decode_image("empty.png", &[], &limits).await.unwrap_err();
    assert_eq!(error.to_string(), "empty.png: is empty");

    let error = decode_image("notes.txt", b"this is not an image at all", &limits).await.unwrap_err().to_string();
    assert!(error.starts_with("notes.txt: cannot be decoded as an image by this browser ("), "{error}");

    let mut cut = png(20, 17, false);
    cut.truncate(cut.len() / 2);
    let error = decode_image("cut.png", &cut, &limits).await.unwrap_err().to_string();
    assert!(error.starts_with("cut.png: cannot be decoded as an image by this browser ("), "{error}");
}

/// A JPEG 32 wide and 16 high, red on the left half and blue on the right, with an EXIF block
/// whose orientation is 6 (shown rotated 90 degrees clockwise: 16 wide, red on top).
fn jpeg_rotated() -> Vec<u8> {
    use image::ImageEncoder;
    let mut pixels = Vec::new();
    for _y in 0..16 {
        for x in 0..32 {
            pixels.extend_from_slice(if x < 16 { &[255, 0, 0] } else { &[0, 0, 255] });
        }
    }
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 95).write_image(&pixels, 32, 16, image::ExtendedColorType::Rgb8).unwrap();
    // APP1 "Exif": a little-endian TIFF header, one IFD with one entry: Orientation (0x0112),
    // SHORT, 1 value: 6.
    let mut tiff = b"II*\0".to_vec();
    tiff.extend_from_slice(&8u32.to_le_bytes());
    tiff.extend_from_slice(&1u16.to_le_bytes());
    tiff.extend_from_slice(&0x0112u16.to_le_bytes());
    tiff.extend_from_slice(&3u16.to_le_bytes());
    tiff.extend_from_slice(&1u32.to_le_bytes());
    tiff.extend_from_slice(&[6, 0, 0, 0]);
    tiff.extend_from_slice(&0u32.to_le_bytes());
    let mut app1 = b"Exif\0\0".to_vec();
    app1.extend_from_slice(&tiff);
    let mut out = jpeg[..2].to_vec();
    out.extend_from_slice(&[0xff, 0xe1]);
    out.extend_from_slice(&(app1.len() as u16 + 2).to_be_bytes());
    out.extend_from_slice(&app1);
    out.extend_from_slice(&jpeg[2..]);
    out
}

#[wasm_bindgen_test]
async fn exif_orientation_is_applied() {
    let planar = decode_image("phone.jpg", &jpeg_rotated(), &Limits::default()).await.unwrap();
    assert_eq!((planar.height, planar.width), (32, 16), "rotated to 16 wide, 32 high");
    let [r, g, b] = pixel(&planar, 8, 6);
    assert!(r > 0.9 && g < 0.1 && b < 0.1, "top is red: {r} {g} {b}");
    let [r, g, b] = pixel(&planar, 8, 25);
    assert!(r < 0.1 && g < 0.1 && b > 0.9, "bottom is blue: {r} {g} {b}");
}

// ---- video -------------------------------------------------------------------------------

thread_local! {
    static RECORDED: RefCell<Option<Vec<u8>>> = const { RefCell::new(None) };
}

/// About 1.2 s of WebM recorded by MediaRecorder from a 64x48 canvas that fades from red to
/// blue (made once, shared by the tests).
async fn recorded_webm() -> Vec<u8> {
    if let Some(bytes) = RECORDED.with(|r| r.borrow().clone()) {
        return bytes;
    }
    assert!(web_sys::MediaRecorder::is_type_supported("video/webm"), "MediaRecorder cannot write WebM here");
    let document = web_sys::window().unwrap().document().unwrap();
    let canvas: web_sys::HtmlCanvasElement = document.create_element("canvas").unwrap().dyn_into().unwrap();
    canvas.set_width(64);
    canvas.set_height(48);
    let context: web_sys::CanvasRenderingContext2d = canvas.get_context("2d").unwrap().unwrap().dyn_into().unwrap();
    let paint = |t: f64| {
        let (r, b) = ((255.0 * (1.0 - t)).round(), (255.0 * t).round());
        context.set_fill_style_str(&format!("rgb({r}, 0, {b})"));
        context.fill_rect(0.0, 0.0, 64.0, 48.0);
    };
    paint(0.0);
    let stream = canvas.capture_stream_with_frame_request_rate(30.0).unwrap();
    let options = web_sys::MediaRecorderOptions::new();
    options.set_mime_type("video/webm");
    let recorder = web_sys::MediaRecorder::new_with_media_stream_and_media_recorder_options(&stream, &options).unwrap();
    let parts = js_sys::Array::new();
    let _data = gloo_events::EventListener::new(&recorder, "dataavailable", {
        let parts = parts.clone();
        move |event| {
            if let Some(blob) = event.dyn_ref::<web_sys::BlobEvent>().and_then(|e| e.data()) {
                parts.push(&blob);
            }
        }
    });
    recorder.start_with_time_slice(200).unwrap();
    let steps = 24;
    for step in 0..=steps {
        paint(step as f64 / steps as f64);
        gloo_timers::future::TimeoutFuture::new(50).await;
    }
    let (sender, receiver) = futures_channel::oneshot::channel::<()>();
    let mut sender = Some(sender);
    let _stopped = gloo_events::EventListener::once(&recorder, "stop", move |_| {
        if let Some(sender) = sender.take() {
            sender.send(()).unwrap();
        }
    });
    recorder.stop().unwrap();
    receiver.await.unwrap();
    let blob = web_sys::Blob::new_with_blob_sequence(&JsValue::from(&parts)).unwrap();
    let bytes = gloo_file::futures::read_as_bytes(&gloo_file::Blob::from(blob)).await.unwrap();
    RECORDED.with(|r| *r.borrow_mut() = Some(bytes.clone()));
    bytes
}

/// A frame's mean red and blue, 0 to 255.
fn mean_red_blue(planar: &Planar, frame: usize) -> (f32, f32) {
    let plane = planar.height * planar.width;
    let mean = |c: usize| {
        let start = (frame * planar.channels + c) * plane;
        planar.values[start..start + plane].iter().sum::<f32>() / plane as f32
    };
    (mean(0), mean(2))
}

#[wasm_bindgen_test]
async fn a_recorded_webm_gives_evenly_spaced_frames() {
    let bytes = recorded_webm().await;
    let frames = decode_video("fade.webm", &bytes, 4, &Limits::default()).await.unwrap();
    assert_eq!((frames.frames, frames.channels, frames.height, frames.width), (4, 3, 48, 64));
    assert!(frames.values.iter().all(|v| (0.0..=255.0).contains(v) && v.fract() == 0.0), "bytes 0..=255");
    let means: Vec<(f32, f32)> = (0..4).map(|f| mean_red_blue(&frames, f)).collect();
    let (first, last) = (means[0], means[3]);
    assert!(first.0 > last.0 + 60.0 && last.1 > first.1 + 60.0, "from red to blue: {means:?}");
    assert!(means.windows(2).all(|w| w[1].1 >= w[0].1 - 10.0), "blue grows frame by frame: {means:?}");
}

#[wasm_bindgen_test]
async fn bad_videos_are_refused_by_name() {
    let limits = Limits::default();
    let error = decode_video("none.webm", &[1, 2, 3], 0, &limits).await.unwrap_err();
    assert_eq!(error.to_string(), "none.webm: 0 frames were asked for");
    let error = decode_video("empty.webm", &[], 4, &limits).await.unwrap_err();
    assert_eq!(error.to_string(), "empty.webm: is empty");

    let garbage: Vec<u8> = (0..4000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let error = decode_video("noise.mp4", &garbage, 4, &limits).await.unwrap_err().to_string();
    assert!(error.starts_with("noise.mp4: cannot be decoded as video by this browser ("), "{error}");

    let error = decode_video("song.wav", &stereo_tone(None), 4, &limits).await.unwrap_err();
    assert_eq!(error.to_string(), "song.wav: has no video track");

    let tiny = Limits { max_side: 32, ..Limits::default() };
    let error = decode_video("fade.webm", &recorded_webm().await, 4, &tiny).await.unwrap_err();
    assert_eq!(error.to_string(), "fade.webm: is 64x48 pixels; the limit is 32 on a side (scale it down first)");
}

#[wasm_bindgen_test]
async fn a_video_that_does_not_answer_in_time_is_refused_by_name() {
    let bytes = recorded_webm().await;
    let limits = Limits::default();
    // A timer of 0 ms fires before the browser can open the file or decode a frame.
    let hasty = VideoTimeouts { metadata_ms: 0, ..VideoTimeouts::default() };
    let error = decode_video_with("slow.webm", &bytes, 4, &limits, &hasty).await.unwrap_err();
    assert_eq!(error.to_string(), "slow.webm: did not open as video within 0 s");

    // MediaRecorder's WebM has no duration in its header: the seek to its end comes first (in
    // Chromium 156 it answers at once; the seek to the first frame's time does not).
    let hasty = VideoTimeouts { seek_ms: 0, ..VideoTimeouts::default() };
    let error = decode_video_with("stuck.webm", &bytes, 4, &limits, &hasty).await.unwrap_err().to_string();
    assert!(
        error == "stuck.webm: has no duration in its header, and seeking to its end took longer than 0 s"
            || (error.starts_with("stuck.webm: did not seek to ") && error.ends_with(" s within 0 s")),
        "{error}"
    );
}
