//! A user's upload turned into what the encoders take, decoded by the browser: music to the
//! mono 24 kHz waveform MERT reads, an image to planar RGB in [0, 1] for ViT, a video to
//! evenly spaced planar RGB frames (bytes 0..=255) for ViViT.
//!
//! The browser decodes (any format it plays: AAC, Opus, WebP, AVIF, WebM, MP4 where it has the
//! codec); [`m2ugen_media`] does the rest (band-limited resampling and channel averaging,
//! limits, one-line errors naming the file). Every input is untrusted: sizes are checked
//! before anything is decoded where the header allows, nothing panics on bad bytes, and each
//! failure is one [`MediaError`] line, `"{file}: {problem}"`.
//!
//! The decoders need a page (`window`): `OfflineAudioContext` and `<video>` do not exist in a
//! worker. Only [`native_sample_rate`] is available off the web.

pub use m2ugen_core::media::Planar;
pub use m2ugen_media::{Limits, MediaError};

#[cfg(target_arch = "wasm32")]
pub use browser::{VideoTimeouts, decode_image, decode_music, decode_video, decode_video_with, file_bytes};

/// The rate audio is decoded at when [`native_sample_rate`] cannot tell the file's own, in Hz
/// (the browser resamples to it, then [`m2ugen_media::resample`] to 24 kHz).
pub const FALLBACK_DECODE_RATE: u32 = 48_000;

/// Sample rates an `OfflineAudioContext` accepts in Chromium and Firefox, in Hz.
const CONTEXT_RATES: std::ops::RangeInclusive<u32> = 3_000..=768_000;

/// The sample rate a file's header states, for WAV, FLAC, MP3, Ogg Vorbis and Ogg Opus (48 kHz,
/// the rate Opus always decodes at); `None` for other formats, and for rates an
/// `OfflineAudioContext` cannot run at (outside 3 kHz to 768 kHz).
///
/// The browser's `decodeAudioData` resamples to its context's rate: decoding at the file's own
/// rate leaves all resampling to [`m2ugen_media::resample`], so a WAV gives the same waveform
/// here as through `m2ugen_media::audio::music_from_bytes`.
pub fn native_sample_rate(bytes: &[u8]) -> Option<u32> {
    let at = |offset: usize, magic: &[u8]| bytes.get(offset..offset + magic.len()) == Some(magic);
    let rate = if let Some(wav) = wav_layout(bytes) {
        Some(wav.rate)
    } else if at(0, b"fLaC") {
        // STREAMINFO, the first metadata block: the rate is 20 bits after 10 bytes of sizes.
        bytes.get(18..21).map(|b| (u32::from(b[0]) << 12) | (u32::from(b[1]) << 4) | (u32::from(b[2]) >> 4))
    } else if at(0, b"OggS") {
        let head = &bytes[..bytes.len().min(512)];
        if head.windows(8).any(|w| w == b"OpusHead") {
            Some(48_000)
        } else {
            let at = head.windows(7).position(|w| w == b"\x01vorbis")?;
            head.get(at + 12..at + 16).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        }
    } else {
        mp3_rate(bytes)
    };
    rate.filter(|rate| CONTEXT_RATES.contains(rate))
}

/// Where a WAV file's samples are, from its header.
#[derive(Debug, Clone, Copy)]
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))] // The truncation check is the browser's.
struct WavLayout {
    /// Samples per second.
    rate: u32,
    /// Bytes per frame (all channels).
    block_align: u32,
    /// Bytes of samples the `data` chunk claims (0 or 0xFFFFFFFF when written to a pipe).
    data_len: u32,
    /// Where the samples start.
    data_start: usize,
}

/// The `fmt ` and `data` chunks of a RIFF WAVE file; `None` without both.
fn wav_layout(bytes: &[u8]) -> Option<WavLayout> {
    if bytes.get(0..4) != Some(b"RIFF") || bytes.get(8..12) != Some(b"WAVE") {
        return None;
    }
    let u32_at = |at: usize| bytes.get(at..at + 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    let mut format: Option<(u32, u32)> = None;
    let mut pos = 12usize;
    while let (Some(id), Some(len)) = (bytes.get(pos..pos + 4), u32_at(pos + 4)) {
        let body = pos + 8;
        if id == b"fmt " {
            let rate = u32_at(body + 4)?;
            let align = bytes.get(body + 12..body + 14).map(|b| u32::from(u16::from_le_bytes([b[0], b[1]])))?;
            format = Some((rate, align.max(1)));
        } else if id == b"data" {
            let (rate, block_align) = format?;
            return Some(WavLayout { rate, block_align, data_len: len, data_start: body });
        }
        pos = body.checked_add(len as usize)?.checked_add(len as usize % 2)?;
    }
    None
}

/// The sample rate of the first MPEG audio frame header after any ID3v2 tag (within 64 KiB).
fn mp3_rate(bytes: &[u8]) -> Option<u32> {
    let mut start = 0usize;
    if bytes.get(0..3) == Some(b"ID3") {
        let size = bytes.get(6..10)?.iter().fold(0usize, |size, &b| (size << 7) | usize::from(b & 0x7f));
        let footer = if bytes.get(5).is_some_and(|flags| flags & 0x10 != 0) { 10 } else { 0 };
        start = 10 + size + footer;
    }
    let window = bytes.get(start..bytes.len().min(start.saturating_add(64 << 10)))?;
    window.windows(4).find_map(|h| {
        let (version, layer, bitrate, rate) = ((h[1] >> 3) & 3, (h[1] >> 1) & 3, h[2] >> 4, (h[2] >> 2) & 3);
        let sync = h[0] == 0xff && h[1] & 0xe0 == 0xe0;
        if !sync || version == 1 || layer == 0 || bitrate == 0 || bitrate == 15 || rate == 3 {
            return None;
        }
        let base = [44_100, 48_000, 32_000][usize::from(rate)];
        Some(match version {
            3 => base,     // MPEG 1
            2 => base / 2, // MPEG 2
            _ => base / 4, // MPEG 2.5
        })
    })
}

#[cfg(target_arch = "wasm32")]
mod browser {
    use std::cell::RefCell;
    use std::rc::Rc;

    use futures_channel::oneshot;
    use gloo_events::EventListener;
    use gloo_timers::callback::Timeout;
    use m2ugen_core::media::Planar;
    use m2ugen_media::audio::{Audio, to_music};
    use m2ugen_media::{check_dimensions, check_file_size, format_seconds, Limits, MediaError};
    use wasm_bindgen::{JsCast, JsValue};
    use wasm_bindgen_futures::JsFuture;

    use super::{FALLBACK_DECODE_RATE, native_sample_rate, wav_layout};

    /// How long [`decode_video_with`] waits for the browser.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct VideoTimeouts {
        /// For the file to open and give its size and duration, in milliseconds (default
        /// 15 000).
        pub metadata_ms: u32,
        /// For each seek to a frame, in milliseconds (default 10 000).
        pub seek_ms: u32,
    }

    impl Default for VideoTimeouts {
        fn default() -> VideoTimeouts {
            VideoTimeouts { metadata_ms: 15_000, seek_ms: 10_000 }
        }
    }

    /// The bytes of a file the user picked (read with `gloo-file`), its size checked against
    /// `limits.max_file_bytes` before it is read. Errors name the file by its name.
    pub async fn file_bytes(file: &web_sys::File, limits: &Limits) -> Result<Vec<u8>, MediaError> {
        let name = file.name();
        check_file_size(&name, file.size() as u64, limits)?;
        gloo_file::futures::read_as_bytes(&gloo_file::Blob::from(file.clone()))
            .await
            .map_err(|e| MediaError::new(&name, format!("cannot be read: {e}")))
    }

    /// Music for MERT: the browser decodes the file (`decodeAudioData` on an
    /// `OfflineAudioContext` running at the file's own rate where the header tells it,
    /// [`native_sample_rate`], else 48 kHz), then [`m2ugen_media::audio::to_music`] resamples
    /// each channel to 24 kHz and averages them.
    ///
    /// Errors, each naming `file_name`: "is empty", over `limits.max_file_bytes`; a WAV whose
    /// header promises more samples than the file holds ("is corrupt or truncated"); "cannot
    /// be decoded as audio by this browser (reason)" for anything the browser does not decode
    /// (not audio, corrupt, an unsupported codec); "is N s long; the limit is M s"; and
    /// [`to_music`]'s ("is silent", no samples).
    pub async fn decode_music(file_name: &str, bytes: &[u8], limits: &Limits) -> Result<Vec<f32>, MediaError> {
        check_file_size(file_name, bytes.len() as u64, limits)?;
        if let Some(wav) = wav_layout(bytes) {
            check_wav_length(file_name, bytes.len(), wav, limits)?;
        }
        let rate = native_sample_rate(bytes).unwrap_or(FALLBACK_DECODE_RATE);
        let cannot =
            |reason: &JsValue| MediaError::new(file_name, format!("cannot be decoded as audio by this browser ({})", js_reason(reason)));
        // The context's rate is a float in the API; every rate accepted is exact in f32.
        let context = web_sys::OfflineAudioContext::new_with_number_of_channels_and_length_and_sample_rate(1, 1, rate as f32)
            .map_err(|e| cannot(&e))?;
        // decodeAudioData takes (detaches) its buffer: give it a copy.
        let buffer = js_sys::Uint8Array::from(bytes).buffer();
        let promise = context.decode_audio_data(&buffer).map_err(|e| cannot(&e))?;
        let decoded: web_sys::AudioBuffer = JsFuture::from(promise).await.map_err(|e| cannot(&e))?.dyn_into().map_err(|e| cannot(&e))?;

        let seconds = decoded.duration();
        if seconds > limits.max_audio_seconds {
            return Err(MediaError::new(
                file_name,
                format!("is {} s long; the limit is {} s", format_seconds(seconds), format_seconds(limits.max_audio_seconds)),
            ));
        }
        let mut channels = Vec::with_capacity(decoded.number_of_channels() as usize);
        for channel in 0..decoded.number_of_channels() {
            channels.push(decoded.get_channel_data(channel).map_err(|e| cannot(&e))?);
        }
        // The buffer's rate is the context's: a whole number.
        let audio = Audio { sample_rate: decoded.sample_rate().round() as u32, channels };
        to_music(file_name, &audio)
    }

    /// An image for ViT: the browser decodes it (`createImageBitmap`, EXIF orientation applied,
    /// no colour-space conversion), it is drawn on an `OffscreenCanvas`, and its pixels come
    /// back as one planar RGB frame in [0, 1] (byte / 255, as `m2ugen_media::image`); alpha is
    /// dropped (the canvas stores premultiplied colour, so a pixel's RGB is exact where it is
    /// opaque and approximate where it is translucent; fully transparent pixels come back
    /// black).
    ///
    /// Errors, each naming `file_name`: "is empty", over `limits.max_file_bytes`; "cannot be
    /// decoded as an image by this browser (reason)"; "is WxH pixels; images must be at least N
    /// pixels on each side", a side over `limits.max_side`, more pixels than
    /// `limits.max_pixels` (from a PNG or JPEG header before decoding, from the decoded size
    /// otherwise).
    pub async fn decode_image(file_name: &str, bytes: &[u8], limits: &Limits) -> Result<Planar, MediaError> {
        check_file_size(file_name, bytes.len() as u64, limits)?;
        if let Some((width, height)) = header_dimensions(bytes) {
            check_dimensions(file_name, width, height, limits)?;
        }
        let cannot =
            |reason: &JsValue| MediaError::new(file_name, format!("cannot be decoded as an image by this browser ({})", js_reason(reason)));
        let window = web_sys::window().ok_or_else(|| no_window(file_name))?;
        let blob: web_sys::Blob = gloo_file::Blob::new(bytes).into();
        let options = web_sys::ImageBitmapOptions::new();
        options.set_image_orientation(web_sys::ImageOrientation::FromImage);
        options.set_color_space_conversion(web_sys::ColorSpaceConversion::None);
        options.set_premultiply_alpha(web_sys::PremultiplyAlpha::None);
        let promise = window.create_image_bitmap_with_blob_and_image_bitmap_options(&blob, &options).map_err(|e| cannot(&e))?;
        let bitmap: web_sys::ImageBitmap = JsFuture::from(promise).await.map_err(|e| cannot(&e))?.dyn_into().map_err(|e| cannot(&e))?;
        let (width, height) = (bitmap.width(), bitmap.height());
        let pixels = check_dimensions(file_name, width, height, limits).and_then(|()| {
            let canvas = Canvas::new(file_name, width, height)?;
            canvas.context.draw_image_with_image_bitmap(&bitmap, 0.0, 0.0).map_err(|e| cannot(&e))?;
            canvas.rgb(file_name)
        });
        bitmap.close();
        let mut planar = Planar::from_interleaved_u8(1, height as usize, width as usize, 3, &pixels?);
        planar.values.iter_mut().for_each(|v| *v /= 255.0);
        Ok(planar)
    }

    /// [`decode_video_with`] and the default [`VideoTimeouts`].
    pub async fn decode_video(file_name: &str, bytes: &[u8], count: usize, limits: &Limits) -> Result<Planar, MediaError> {
        decode_video_with(file_name, bytes, count, limits, &VideoTimeouts::default()).await
    }

    /// Frames for ViViT: the browser opens the video (a muted `<video>` element, never attached
    /// to the page, on an object URL revoked afterwards) and seeks to `count` times evenly
    /// spaced over it, `t_i = (i + 0.5) * duration / count`; each frame is drawn on an
    /// `OffscreenCanvas` at the video's size. Planar RGB bytes (0..=255), `count` frames, as
    /// `m2ugen_media::video` gives them. A video whose header has no duration (as
    /// `MediaRecorder` writes WebM) is first sought to its end so that the browser measures it.
    ///
    /// Errors, each naming `file_name`: "0 frames were asked for", "is empty", over
    /// `limits.max_file_bytes`; "cannot be decoded as video by this browser (reason)"; "has no
    /// video track" (audio only); frame sizes outside `limits`; "has no duration"; and a
    /// timeout when opening or a seek takes longer than `timeouts` allow.
    pub async fn decode_video_with(
        file_name: &str,
        bytes: &[u8],
        count: usize,
        limits: &Limits,
        timeouts: &VideoTimeouts,
    ) -> Result<Planar, MediaError> {
        if count == 0 {
            return Err(MediaError::new(file_name, "0 frames were asked for"));
        }
        check_file_size(file_name, bytes.len() as u64, limits)?;
        let document = web_sys::window().and_then(|w| w.document()).ok_or_else(|| no_window(file_name))?;
        let video: web_sys::HtmlVideoElement =
            document.create_element("video").ok().and_then(|e| e.dyn_into().ok()).ok_or_else(|| no_window(file_name))?;
        let url = gloo_file::ObjectUrl::from(gloo_file::Blob::new(bytes));
        let video = Video { element: video, url };
        video.read_frames(file_name, count, limits, timeouts).await
    }

    /// A `<video>` element on an object URL: on drop, the element lets go of the file and the
    /// URL is revoked (by `gloo_file::ObjectUrl`).
    struct Video {
        element: web_sys::HtmlVideoElement,
        url: gloo_file::ObjectUrl,
    }

    impl Drop for Video {
        fn drop(&mut self) {
            // Releases the decoder now rather than at garbage collection.
            let _ = self.element.remove_attribute("src");
            self.element.load();
        }
    }

    impl Video {
        async fn read_frames(&self, file: &str, count: usize, limits: &Limits, timeouts: &VideoTimeouts) -> Result<Planar, MediaError> {
            let video = &self.element;
            video.set_muted(true);
            video.set_preload("auto");
            let opened = wait_for(video, "loadedmetadata", timeouts.metadata_ms, || video.set_src(&self.url)).await;
            self.check(file, opened, || {
                format!("did not open as video within {} s", format_seconds(f64::from(timeouts.metadata_ms) / 1000.0))
            })?;
            let (width, height) = (video.video_width(), video.video_height());
            if width == 0 || height == 0 {
                return Err(MediaError::new(file, "has no video track"));
            }
            check_dimensions(file, width, height, limits)?;

            let mut duration = video.duration();
            if duration.is_infinite() {
                // No duration in the header: seeking past the end makes the browser find it.
                let sought = wait_for(video, "seeked", timeouts.seek_ms, || video.set_current_time(1e9)).await;
                self.check(file, sought, || {
                    format!(
                        "has no duration in its header, and seeking to its end took longer than {} s",
                        format_seconds(f64::from(timeouts.seek_ms) / 1000.0)
                    )
                })?;
                duration = video.duration();
            }
            if !duration.is_finite() || duration <= 0.0 {
                return Err(MediaError::new(file, "has no duration the browser can read"));
            }

            let canvas = Canvas::new(file, width, height)?;
            let mut rgb = Vec::with_capacity(count * width as usize * height as usize * 3);
            for i in 0..count {
                let time = (i as f64 + 0.5) * duration / count as f64;
                let sought = wait_for(video, "seeked", timeouts.seek_ms, || video.set_current_time(time)).await;
                self.check(file, sought, || {
                    format!("did not seek to {} s within {} s", format_seconds(time), format_seconds(f64::from(timeouts.seek_ms) / 1000.0))
                })?;
                canvas
                    .context
                    .draw_image_with_html_video_element_and_dw_and_dh(video, 0.0, 0.0, f64::from(width), f64::from(height))
                    .map_err(|e| {
                        MediaError::new(file, format!("cannot draw the frame at {} s ({})", format_seconds(time), js_reason(&e)))
                    })?;
                rgb.extend(canvas.rgb(file)?);
            }
            Ok(Planar::from_interleaved_u8(count, height as usize, width as usize, 3, &rgb))
        }

        /// A wait's outcome as an error: the element's own error, or `timed_out`'s message.
        fn check(&self, file: &str, outcome: Outcome, timed_out: impl FnOnce() -> String) -> Result<(), MediaError> {
            match outcome {
                Outcome::Done => Ok(()),
                Outcome::Failed => {
                    let reason = match self.element.error() {
                        Some(error) if !error.message().is_empty() => error.message(),
                        Some(error) => media_error_code(error.code()).to_string(),
                        None => "no reason given".to_string(),
                    };
                    Err(MediaError::new(file, format!("cannot be decoded as video by this browser ({reason})")))
                }
                Outcome::TimedOut => Err(MediaError::new(file, timed_out())),
            }
        }
    }

    /// The HTML `MediaError` codes in words.
    fn media_error_code(code: u16) -> &'static str {
        match code {
            1 => "loading was aborted",
            2 => "a network error",
            3 => "the data is corrupt or uses an unsupported feature",
            4 => "the format is not supported",
            _ => "an unknown error",
        }
    }

    /// How a wait for an event ended.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Outcome {
        /// The event came.
        Done,
        /// An `error` event came first.
        Failed,
        /// Neither came in time.
        TimedOut,
    }

    /// Listens for `event` and `error` on `target`, then calls `start`, and waits for the first
    /// of the two events or `timeout_ms`.
    async fn wait_for(target: &web_sys::EventTarget, event: &'static str, timeout_ms: u32, start: impl FnOnce()) -> Outcome {
        let (sender, receiver) = oneshot::channel();
        let sender = Rc::new(RefCell::new(Some(sender)));
        let settle = |outcome: Outcome| {
            let sender = sender.clone();
            move || {
                if let Some(sender) = sender.borrow_mut().take() {
                    let _ = sender.send(outcome);
                }
            }
        };
        let (done, failed, timed_out) = (settle(Outcome::Done), settle(Outcome::Failed), settle(Outcome::TimedOut));
        // Dropped when this returns: the listeners are removed and the timer is cancelled.
        let _done = EventListener::once(target, event, move |_| done());
        let _failed = EventListener::once(target, "error", move |_| failed());
        let _timeout = Timeout::new(timeout_ms, timed_out);
        start();
        receiver.await.unwrap_or(Outcome::TimedOut)
    }

    /// An `OffscreenCanvas` and its 2D context, to read pixels back.
    struct Canvas {
        context: web_sys::OffscreenCanvasRenderingContext2d,
        width: u32,
        height: u32,
    }

    impl Canvas {
        fn new(file: &str, width: u32, height: u32) -> Result<Canvas, MediaError> {
            let failed =
                |e: &JsValue| MediaError::new(file, format!("cannot be drawn: no canvas of {width}x{height} pixels ({})", js_reason(e)));
            let canvas = web_sys::OffscreenCanvas::new(width, height).map_err(|e| failed(&e))?;
            let context = canvas
                .get_context("2d")
                .map_err(|e| failed(&e))?
                .ok_or_else(|| failed(&JsValue::from_str("no 2D context")))?
                .dyn_into::<web_sys::OffscreenCanvasRenderingContext2d>()
                .map_err(|e| failed(&e))?;
            Ok(Canvas { context, width, height })
        }

        /// The canvas's pixels as interleaved RGB bytes, alpha dropped.
        fn rgb(&self, file: &str) -> Result<Vec<u8>, MediaError> {
            let data = self
                .context
                .get_image_data(0.0, 0.0, f64::from(self.width), f64::from(self.height))
                .map_err(|e| MediaError::new(file, format!("cannot be read back from the canvas ({})", js_reason(&e))))?
                .data();
            Ok(data.chunks_exact(4).flat_map(|p| [p[0], p[1], p[2]]).collect())
        }
    }

    /// A rejected promise's or a thrown exception's message, on one line.
    fn js_reason(value: &JsValue) -> String {
        let text = if let Some(error) = value.dyn_ref::<js_sys::Error>() {
            let (name, message) = (String::from(error.name()), String::from(error.message()));
            if message.is_empty() { name } else { message }
        } else if let Some(text) = value.as_string() {
            text
        } else {
            "no reason given".to_string()
        };
        text.split_whitespace().collect::<Vec<_>>().join(" ")
    }

    fn no_window(file: &str) -> MediaError {
        MediaError::new(file, "cannot be decoded here: decoding needs a browser page (window), not a worker")
    }

    /// A PNG's or JPEG's size from its header, without decoding the pixels.
    fn header_dimensions(bytes: &[u8]) -> Option<(u32, u32)> {
        image::ImageReader::new(std::io::Cursor::new(bytes)).with_guessed_format().ok()?.into_dimensions().ok()
    }

    /// A WAV whose header promises more samples than the file holds is truncated (the browser
    /// would decode what is there without a word); its stated length is checked against the
    /// limit before decoding.
    fn check_wav_length(file: &str, len: usize, wav: super::WavLayout, limits: &Limits) -> Result<(), MediaError> {
        if wav.rate == 0 || wav.data_len == 0 || wav.data_len == u32::MAX {
            return Ok(());
        }
        let frame_seconds = |bytes: usize| (bytes / wav.block_align as usize) as f64 / f64::from(wav.rate);
        let promised = frame_seconds(wav.data_len as usize);
        let held = frame_seconds(len.saturating_sub(wav.data_start));
        if (wav.data_len as usize) > len.saturating_sub(wav.data_start) {
            return Err(MediaError::new(
                file,
                format!(
                    "is corrupt or truncated: its header promises {} s of audio, the file holds {} s",
                    format_seconds(promised),
                    format_seconds(held)
                ),
            ));
        }
        if promised > limits.max_audio_seconds {
            return Err(MediaError::new(
                file,
                format!("is {} s long; the limit is {} s", format_seconds(promised), format_seconds(limits.max_audio_seconds)),
            ));
        }
        Ok(())
    }

}
