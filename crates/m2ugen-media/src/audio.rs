//! Audio files to the mono 24 kHz waveform MERT reads.

use std::io::Cursor;

use symphonia::core::audio::{AudioBuffer, Signal};
use symphonia::core::codecs::{CODEC_TYPE_FLAC, CODEC_TYPE_NULL, DecoderOptions};
use symphonia::core::errors::Error as SymphoniaError;
use symphonia::core::formats::FormatOptions;
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;
use symphonia::core::probe::Hint;

use crate::{Limits, MediaError, check_file_size, sniff};

/// The sample rate MERT's feature extractor expects, in Hz.
pub const MUSIC_RATE: u32 = 24_000;

/// Sample rates this crate accepts from a file, in Hz (the resampler's cost grows with odd
/// rates; audio outside this range is not music).
const RATES: std::ops::RangeInclusive<u32> = 1_000..=768_000;

/// The formats [`decode_audio`] reads, as errors name them.
const FORMATS: &str = "WAV, FLAC, MP3, OGG Vorbis";

/// Decoded audio: one Vec per channel.
#[derive(Debug, Clone, PartialEq)]
pub struct Audio {
    /// Samples per second, per channel.
    pub sample_rate: u32,
    /// The samples of each channel, in [-1, 1] for integer formats; all the same length.
    pub channels: Vec<Vec<f32>>,
}

impl Audio {
    /// Samples per channel (that of the shortest channel; 0 without channels).
    pub fn frames(&self) -> usize {
        self.channels.iter().map(Vec::len).min().unwrap_or(0)
    }

    /// The duration in seconds (0 for a sample rate of 0).
    pub fn seconds(&self) -> f64 {
        if self.sample_rate == 0 { 0.0 } else { self.frames() as f64 / f64::from(self.sample_rate) }
    }
}

/// WAV, FLAC, MP3, OGG Vorbis (symphonia), probed from the bytes (the file name's extension as
/// a hint). Integer samples are scaled to [-1, 1] (`i16 / 32768`, as torchaudio loads them);
/// MP3 and Vorbis encoder delay and padding are trimmed where the file records them.
///
/// Errors: an empty file, one over `limits.max_file_bytes`, one that is not audio in these
/// formats, a corrupt or truncated one (also a WAV or FLAC whose header promises more samples
/// than the file holds), one longer than `limits.max_audio_seconds` (from the header's length
/// where it has one, and while decoding), and sample rates outside 1 kHz to 768 kHz. Packets
/// the decoder finds malformed are skipped, as players and ffmpeg do, as long as they are at
/// most 1% of the packets; more fail the file, naming the first one's time and the decoder's
/// reason. Chained OGG streams are read up to the end of the first. WAV written to a pipe
/// (ffmpeg's `-f wav -`: lengths 0xFFFFFFFF, or 0) is read to the end of the file, and a RIFF
/// length too short for its data chunk is raised, as ffmpeg reads them (symphonia 0.5 does
/// not). The bytes are copied once (symphonia reads from an owned buffer).
pub fn decode_audio(file: &str, bytes: &[u8], limits: &Limits) -> Result<Audio, MediaError> {
    check_file_size(file, bytes.len() as u64, limits)?;
    if let Some(kind) = sniff(bytes).filter(|kind| !is_audio_kind(kind)) {
        return Err(not_audio(file, Some(kind)));
    }

    let mut hint = Hint::new();
    if let Some(extension) = std::path::Path::new(file).extension().and_then(|e| e.to_str()) {
        hint.with_extension(extension);
    }
    let mut owned = bytes.to_vec();
    repair_wav_lengths(&mut owned);
    let stream = MediaSourceStream::new(Box::new(Cursor::new(owned)), Default::default());
    let format_options = FormatOptions { enable_gapless: true, ..Default::default() };
    let probed = symphonia::default::get_probe()
        .format(&hint, stream, &format_options, &MetadataOptions::default())
        .map_err(|e| match e {
            SymphoniaError::Unsupported(_) => match sniff(bytes) {
                // An audio file's signature with nothing readable after it.
                Some(kind) if is_audio_kind(kind) => MediaError::new(
                    file,
                    format!("is corrupt or truncated: it starts like {kind}, but no audio stream could be read from it"),
                ),
                kind => not_audio(file, kind),
            },
            other => corrupt(file, &other),
        })?;
    let mut reader = probed.format;

    let Some(track) = reader.tracks().iter().find(|t| t.codec_params.codec != CODEC_TYPE_NULL) else {
        return Err(MediaError::new(file, "has no audio track"));
    };
    let track_id = track.id;
    let params = track.codec_params.clone();
    let codec_name = symphonia::default::get_codecs().get_codec(params.codec).map(|d| d.short_name);
    // WAV and FLAC headers give the exact length; MP3's can be an estimate from the bit rate.
    let exact_length = params.codec == CODEC_TYPE_FLAC || codec_name.is_some_and(|name| name.starts_with("pcm"));
    let mut decoder =
        symphonia::default::get_codecs().make(&params, &DecoderOptions::default()).map_err(|e| match e {
            SymphoniaError::Unsupported(what) => MediaError::new(
                file,
                format!("uses an audio codec this build does not read ({what}); it reads {FORMATS}"),
            ),
            other => corrupt(file, &other),
        })?;

    if let Some(rate) = params.sample_rate {
        check_rate(file, rate)?;
        if let Some(frames) = params.n_frames {
            check_duration(file, frames as f64 / f64::from(rate), limits, true)?;
        }
    }

    let mut channels: Vec<Vec<f32>> = Vec::new();
    let mut sample_rate = params.sample_rate.unwrap_or(0);
    let mut buffer: Option<AudioBuffer<f32>> = None;
    let (mut packets, mut bad_packets) = (0usize, 0usize);
    let mut first_bad: Option<MediaError> = None;
    loop {
        let packet = match reader.next_packet() {
            Ok(packet) => packet,
            Err(SymphoniaError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(SymphoniaError::ResetRequired) => break,
            Err(e) => return Err(corrupt_at(file, &e, &channels, sample_rate)),
        };
        if packet.track_id() != track_id {
            continue;
        }
        packets += 1;
        let decoded = match decoder.decode(&packet) {
            Ok(decoded) => decoded,
            Err(e @ SymphoniaError::DecodeError(_)) => {
                bad_packets += 1;
                first_bad.get_or_insert_with(|| corrupt_at(file, &e, &channels, sample_rate));
                continue;
            }
            Err(e) => return Err(corrupt_at(file, &e, &channels, sample_rate)),
        };
        let spec = *decoded.spec();
        let count = spec.channels.count();
        if channels.is_empty() {
            if count == 0 {
                return Err(MediaError::new(file, "has an audio track with no channels"));
            }
            check_rate(file, spec.rate)?;
            sample_rate = spec.rate;
            channels = vec![Vec::new(); count];
        } else if count != channels.len() || spec.rate != sample_rate {
            return Err(MediaError::new(
                file,
                format!(
                    "changes from {} channels at {sample_rate} Hz to {count} at {} Hz after {} s",
                    channels.len(),
                    spec.rate,
                    format_seconds(channels[0].len() as f64 / f64::from(sample_rate))
                ),
            ));
        }
        if decoded.frames() == 0 {
            continue;
        }
        let converted = match &mut buffer {
            Some(b) if b.capacity() >= decoded.frames() && *b.spec() == spec => b,
            slot => slot.insert(AudioBuffer::new(decoded.capacity() as u64, spec)),
        };
        decoded.convert(converted);
        for (c, samples) in channels.iter_mut().enumerate() {
            samples.extend_from_slice(converted.chan(c));
        }
        check_duration(file, channels[0].len() as f64 / f64::from(sample_rate), limits, false)?;
    }

    if let Some(mut error) = first_bad.filter(|_| bad_packets * 100 > packets || channels.is_empty()) {
        // "is corrupt or truncated: 3 of 20 packets could not be decoded, the first ..."
        let reason = error.problem.trim_start_matches("is corrupt or truncated: ").to_string();
        error.problem = format!(
            "is corrupt or truncated: {bad_packets} of {packets} packets could not be decoded, the first: {reason}"
        );
        return Err(error);
    }
    let frames = channels.first().map_or(0, Vec::len) as u64;
    // Also catches damaged FLAC frames, which the reader skips.
    if exact_length && let Some(promised) = params.n_frames.filter(|&n| n > frames) {
        let rate = f64::from(sample_rate.max(1));
        return Err(MediaError::new(
            file,
            format!(
                "is corrupt or truncated: its header promises {} s of audio, only {} s could be decoded",
                format_seconds(promised as f64 / rate),
                format_seconds(frames as f64 / rate)
            ),
        ));
    }
    Ok(Audio { sample_rate, channels })
}

/// Each channel resampled to 24 kHz, then the channels averaged (the reference resamples
/// first, then takes the mean over channels).
///
/// Errors: no samples (no channels, no frames, or too short to give one sample at 24 kHz), a
/// sample rate of 0, channels of different lengths, samples that are not finite numbers, and
/// silence (every output sample below 1e-6 in magnitude: "is silent").
pub fn to_music(file: &str, audio: &Audio) -> Result<Vec<f32>, MediaError> {
    let frames = audio.frames();
    if frames == 0 {
        return Err(MediaError::new(file, "has no audio samples"));
    }
    if audio.sample_rate == 0 {
        return Err(MediaError::new(file, "has a sample rate of 0 Hz"));
    }
    if audio.channels.iter().any(|c| c.len() != frames) {
        let lengths: Vec<String> = audio.channels.iter().map(|c| c.len().to_string()).collect();
        return Err(MediaError::new(
            file,
            format!("has channels of different lengths ({} samples)", lengths.join(", ")),
        ));
    }
    if audio.channels.iter().flatten().any(|v| !v.is_finite()) {
        return Err(MediaError::new(file, "has samples that are not numbers (NaN or infinity)"));
    }
    let mut music: Vec<f32> = Vec::new();
    for channel in &audio.channels {
        let resampled = crate::resample::resample(channel, audio.sample_rate, MUSIC_RATE);
        if music.is_empty() {
            music = resampled;
        } else {
            music.iter_mut().zip(&resampled).for_each(|(m, r)| *m += r);
        }
    }
    let scale = 1.0 / audio.channels.len() as f32;
    music.iter_mut().for_each(|m| *m *= scale);
    if music.is_empty() {
        return Err(MediaError::new(file, "has no audio samples (too short)"));
    }
    if music.iter().all(|v| v.abs() < 1e-6) {
        return Err(MediaError::new(file, "is silent"));
    }
    Ok(music)
}

/// [`decode_audio`] then [`to_music`].
pub fn music_from_bytes(file: &str, bytes: &[u8], limits: &Limits) -> Result<Vec<f32>, MediaError> {
    to_music(file, &decode_audio(file, bytes, limits)?)
}

/// WAV lengths written as placeholders by programs writing to a pipe (0xFFFFFFFF or 0 for the
/// data chunk, 0xFFFFFFFF for the RIFF chunk) become the file's, and a RIFF length that does
/// not cover the data chunk is raised to cover it. A data chunk claiming more than the file
/// holds is kept as it is, so that the truncation is reported.
fn repair_wav_lengths(bytes: &mut [u8]) {
    if bytes.len() < 12 || &bytes[0..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        return;
    }
    let read_u32 = |bytes: &[u8], at: usize| bytes.get(at..at + 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    let mut block_align = 1usize;
    let mut pos = 12usize;
    while let (Some(id), Some(len)) = (bytes.get(pos..pos + 4), read_u32(bytes, pos + 4)) {
        let body = pos + 8;
        if id == b"fmt " {
            if let Some(align) = bytes.get(body + 12..body + 14) {
                block_align = usize::from(u16::from_le_bytes([align[0], align[1]])).max(1);
            }
        } else if id == b"data" {
            let remaining = bytes.len() - body.min(bytes.len());
            let mut data_len = len as usize;
            if (len == u32::MAX || len == 0) && remaining > 0 {
                data_len = (remaining - remaining % block_align).min(u32::MAX as usize);
                bytes[pos + 4..pos + 8].copy_from_slice(&(data_len as u32).to_le_bytes());
            }
            let riff_len = read_u32(bytes, 4).unwrap_or(0) as usize;
            let needed = body - 8 + data_len + data_len % 2;
            if riff_len == u32::MAX as usize || riff_len < needed {
                let riff_len = needed.min(u32::MAX as usize) as u32;
                bytes[4..8].copy_from_slice(&riff_len.to_le_bytes());
            }
            return;
        }
        pos = body.saturating_add(len as usize).saturating_add(len as usize % 2);
    }
}

fn is_audio_kind(kind: &str) -> bool {
    matches!(kind, "WAV audio" | "FLAC audio" | "an OGG file" | "MP3 audio")
}

fn not_audio(file: &str, kind: Option<&str>) -> MediaError {
    let looks = kind.map(|k| format!("; it looks like {k}")).unwrap_or_default();
    MediaError::new(file, format!("is not audio in a format this build reads ({FORMATS}){looks}"))
}

fn corrupt(file: &str, error: &SymphoniaError) -> MediaError {
    let reason = match error {
        SymphoniaError::IoError(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            "the file ends too early".to_string()
        }
        other => other.to_string(),
    };
    MediaError::new(file, format!("is corrupt or truncated: {reason}"))
}

/// [`corrupt`] with the time where decoding stopped.
fn corrupt_at(file: &str, error: &SymphoniaError, channels: &[Vec<f32>], rate: u32) -> MediaError {
    let mut e = corrupt(file, error);
    if let Some(decoded) = channels.first().filter(|_| rate > 0) {
        e.problem.push_str(&format!(" (after {} s)", format_seconds(decoded.len() as f64 / f64::from(rate))));
    }
    e
}

fn check_rate(file: &str, rate: u32) -> Result<(), MediaError> {
    if RATES.contains(&rate) {
        Ok(())
    } else {
        Err(MediaError::new(
            file,
            format!("has a sample rate of {rate} Hz; this build reads {} to {} Hz", RATES.start(), RATES.end()),
        ))
    }
}

/// "is N s long; the limit is M s" (from the header), "is longer than M s" (while decoding).
fn check_duration(file: &str, length: f64, limits: &Limits, whole: bool) -> Result<(), MediaError> {
    if length <= limits.max_audio_seconds {
        return Ok(());
    }
    let limit = format_seconds(limits.max_audio_seconds);
    let problem = if whole {
        format!("is {} s long; the limit is {limit} s", format_seconds(length))
    } else {
        format!("is longer than {limit} s, the limit")
    };
    Err(MediaError::new(file, problem))
}

/// Seconds with up to 3 decimals (1 from 100 s on), trailing zeros dropped: "2", "1.5",
/// "0.025", "7200.5".
pub fn format_seconds(value: f64) -> String {
    let text = if value.abs() < 100.0 { format!("{value:.3}") } else { format!("{value:.1}") };
    let text = text.trim_end_matches('0').trim_end_matches('.');
    text.to_string()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_naturally() {
        assert_eq!(format_seconds(2.0), "2");
        assert_eq!(format_seconds(1.5), "1.5");
        assert_eq!(format_seconds(0.025), "0.025");
        assert_eq!(format_seconds(3600.0), "3600");
        assert_eq!(format_seconds(67_108.864), "67108.9");
    }

    #[test]
    fn too_long_while_decoding() {
        // The path taken when the header gives no length: the limit, without a total.
        let limits = Limits { max_audio_seconds: 60.0, ..Limits::default() };
        assert!(check_duration("a.mp3", 60.0, &limits, false).is_ok());
        assert_eq!(
            check_duration("a.mp3", 60.5, &limits, false).unwrap_err().to_string(),
            "a.mp3: is longer than 60 s, the limit"
        );
        assert_eq!(
            check_duration("a.mp3", 7200.5, &limits, true).unwrap_err().to_string(),
            "a.mp3: is 7200.5 s long; the limit is 60 s"
        );
    }
}

/// A WAV file of `samples` (interleaved when `channels` > 1) at `rate` Hz, as 16-bit PCM (what
/// every player opens): values clamped to [-1, 1] and scaled by 32767, rounded. Written with
/// `hound`.
pub fn wav_bytes(samples: &[f32], rate: u32, channels: u16) -> Result<Vec<u8>, MediaError> {
    let spec = hound::WavSpec { channels, sample_rate: rate, bits_per_sample: 16, sample_format: hound::SampleFormat::Int };
    let mut out = std::io::Cursor::new(Vec::with_capacity(44 + 2 * samples.len()));
    let fail = |e: hound::Error| MediaError::new("output.wav", format!("cannot write WAV: {e}"));
    let mut writer = hound::WavWriter::new(&mut out, spec).map_err(fail)?;
    for &s in samples {
        writer.write_sample((s.clamp(-1.0, 1.0) * 32767.0).round() as i16).map_err(fail)?;
    }
    writer.finalize().map_err(fail)?;
    Ok(out.into_inner())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod wav_tests {
    use super::*;

    #[test]
    fn wav_has_a_pcm_header_and_rounded_clamped_samples() {
        let bytes = wav_bytes(&[0.0, 0.5, -0.5, 1.0, -2.0, 0.25], 32000, 1).unwrap();
        // RIFF header by the format's definition: 44 bytes, PCM (1), mono, 32 kHz, 16 bits.
        assert_eq!(&bytes[0..4], b"RIFF");
        assert_eq!(u32::from_le_bytes(bytes[4..8].try_into().unwrap()) as usize, bytes.len() - 8);
        assert_eq!(&bytes[8..16], b"WAVEfmt ");
        assert_eq!(u16::from_le_bytes([bytes[20], bytes[21]]), 1);
        assert_eq!(u16::from_le_bytes([bytes[22], bytes[23]]), 1);
        assert_eq!(u32::from_le_bytes(bytes[24..28].try_into().unwrap()), 32000);
        assert_eq!(u16::from_le_bytes([bytes[34], bytes[35]]), 16);
        assert_eq!(&bytes[36..40], b"data");
        assert_eq!(u32::from_le_bytes(bytes[40..44].try_into().unwrap()), 12);
        let samples: Vec<i16> = bytes[44..].chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]])).collect();
        // 0.5 * 32767 = 16383.5 rounds away from zero; beyond [-1, 1] clamps.
        assert_eq!(samples, [0, 16384, -16384, 32767, -32767, 8192]);
        // And our own decoder reads it back.
        let audio = decode_audio("out.wav", &bytes, &Limits::default()).unwrap();
        assert_eq!((audio.sample_rate, audio.channels.len(), audio.frames()), (32000, 1, 6));
    }
}
