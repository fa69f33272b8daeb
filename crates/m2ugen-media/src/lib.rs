#![deny(missing_docs)]
//! Decoding media files for the M2UGen encoders: audio (WAV, FLAC, MP3, OGG Vorbis) to a mono
//! 24 kHz waveform for MERT, images (PNG, JPEG) to planar RGB for ViT, and video (a folder of
//! frames, or any file `ffmpeg` reads on native targets) to evenly picked planar frames for
//! ViViT.
//!
//! Every input is untrusted: sizes are checked against [`Limits`] before the expensive work,
//! nothing panics on bad bytes, and every error is one line, [`MediaError`], naming the file
//! and the problem.

pub mod audio;
pub mod clap_mel;
pub mod image;
pub mod resample;
pub mod video;

pub use audio::{format_seconds, wav_bytes};
pub use image::check_dimensions;

pub use m2ugen_core::media::Planar;

/// A media file that could not be used: which file, and what is wrong with it, in one line
/// (`"song.mp3: is empty"`).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{file}: {problem}")]
pub struct MediaError {
    /// The file as the user named it (a name, or a path).
    pub file: String,
    /// What is wrong, phrased to follow the file name ("is empty", "is silent").
    pub problem: String,
}

impl MediaError {
    /// An error about `file`; line breaks in `problem` (decoders' messages have some) become
    /// spaces, so that the error stays one line.
    pub fn new(file: impl Into<String>, problem: impl Into<String>) -> MediaError {
        let problem: String = problem.into();
        let problem = if problem.contains(['\n', '\r']) { problem.split_whitespace().collect::<Vec<_>>().join(" ") } else { problem };
        MediaError { file: file.into(), problem }
    }
}

/// Limits on untrusted media, with defaults a user can act on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// Largest file accepted, in bytes (default 1 GiB).
    pub max_file_bytes: u64,
    /// Longest audio accepted, in seconds (default 3600, one hour).
    pub max_audio_seconds: f64,
    /// Shortest side of an image or video frame, in pixels (default 16).
    pub min_side: u32,
    /// Longest side of an image or video frame, in pixels (default 16384).
    pub max_side: u32,
    /// Most pixels in an image or video frame (default 100 000 000).
    pub max_pixels: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_file_bytes: 1 << 30,
            max_audio_seconds: 3600.0,
            min_side: 16,
            max_side: 16384,
            max_pixels: 100_000_000,
        }
    }
}

/// A byte count as people read it: "312 bytes", "2.5 MiB", "1024 MiB".
fn human_bytes(bytes: u64) -> String {
    const MIB: f64 = 1024.0 * 1024.0;
    if bytes < 1 << 20 {
        format!("{bytes} bytes")
    } else {
        format!("{} MiB", short_number(bytes as f64 / MIB))
    }
}

/// A number with at most one decimal, without a trailing ".0".
fn short_number(value: f64) -> String {
    let text = format!("{value:.1}");
    match text.strip_suffix(".0") {
        Some(whole) => whole.to_string(),
        None => text,
    }
}

/// "is empty" and "is N MiB; the limit is M MiB", checked before anything is decoded (the CLI and
/// the page say the same of the same file).
pub fn check_file_size(file: &str, len: u64, limits: &Limits) -> Result<(), MediaError> {
    if len == 0 {
        return Err(MediaError::new(file, "is empty"));
    }
    if len > limits.max_file_bytes {
        return Err(MediaError::new(
            file,
            format!("is {}; the limit is {}", human_bytes(len), human_bytes(limits.max_file_bytes)),
        ));
    }
    Ok(())
}

/// What a file looks like from its first bytes, for errors when it is not what was expected
/// ("it looks like a PNG image").
fn sniff(bytes: &[u8]) -> Option<&'static str> {
    let at = |offset: usize, magic: &[u8]| bytes.get(offset..offset + magic.len()) == Some(magic);
    if at(0, b"\x89PNG\r\n\x1a\n") {
        Some("a PNG image")
    } else if at(0, b"\xff\xd8\xff") {
        Some("a JPEG image")
    } else if at(0, b"GIF87a") || at(0, b"GIF89a") {
        Some("a GIF image")
    } else if at(0, b"RIFF") && at(8, b"WEBP") {
        Some("a WebP image")
    } else if at(0, b"RIFF") && at(8, b"WAVE") {
        Some("WAV audio")
    } else if at(0, b"RIFF") && at(8, b"AVI ") {
        Some("an AVI video")
    } else if at(0, b"fLaC") {
        Some("FLAC audio")
    } else if at(0, b"OggS") {
        Some("an OGG file")
    } else if at(0, b"ID3") {
        Some("MP3 audio")
    } else if at(4, b"ftyp") {
        Some("an MP4/MOV/M4A file")
    } else if at(0, b"\x1a\x45\xdf\xa3") {
        Some("a Matroska/WebM file")
    } else if at(0, b"%PDF") {
        Some("a PDF document")
    } else if at(0, b"PK\x03\x04") {
        Some("a ZIP archive")
    } else if looks_like_text(bytes) {
        Some("text")
    } else {
        None
    }
}

/// Whether the first bytes are printable UTF-8 text (tabs and line breaks allowed).
fn looks_like_text(bytes: &[u8]) -> bool {
    let head = &bytes[..bytes.len().min(512)];
    // A multi-byte character cut at the end of the window is still text.
    let text = match std::str::from_utf8(head) {
        Ok(text) => text,
        Err(e) if e.error_len().is_none() => match std::str::from_utf8(&head[..e.valid_up_to()]) {
            Ok(text) => text,
            Err(_) => return false,
        },
        Err(_) => return false,
    };
    !text.is_empty() && text.chars().all(|c| !c.is_control() || matches!(c, '\n' | '\r' | '\t'))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn error_names_the_file_then_the_problem() {
        assert_eq!(MediaError::new("a.wav", "is empty").to_string(), "a.wav: is empty");
        assert_eq!(MediaError::new("b.jpg", "is corrupt:\n  bad  marker\r\n").problem, "is corrupt: bad marker");
    }

    #[test]
    fn byte_counts_read_naturally() {
        assert_eq!(human_bytes(312), "312 bytes");
        assert_eq!(human_bytes(5 << 19), "2.5 MiB");
        assert_eq!(human_bytes(1 << 30), "1024 MiB");
    }

    #[test]
    fn file_size_limits() {
        let limits = Limits { max_file_bytes: 3 << 20, ..Limits::default() };
        assert_eq!(check_file_size("x", 0, &limits).unwrap_err().problem, "is empty");
        assert_eq!(check_file_size("x", 7 << 19, &limits).unwrap_err().problem, "is 3.5 MiB; the limit is 3 MiB");
        assert!(check_file_size("x", 3 << 20, &limits).is_ok());
    }

    #[test]
    fn sniffing() {
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\n...."), Some("a PNG image"));
        assert_eq!(sniff(b"RIFF\0\0\0\0WAVEfmt "), Some("WAV audio"));
        assert_eq!(sniff(b"hello, world\n"), Some("text"));
        assert_eq!(sniff(b"caf\xc3"), Some("text"));
        assert_eq!(sniff(&[0u8, 1, 2, 200, 201]), None);
    }
}
