//! Audio decoding: WAV written by hand here, the errors a user meets, each with its message.
#![allow(clippy::unwrap_used)]

mod common;

use m2ugen_media::Limits;
use m2ugen_media::audio::{Audio, MUSIC_RATE, decode_audio, music_from_bytes, to_music};

/// A 16-bit PCM WAV file of interleaved samples.
fn wav_i16(rate: u32, channels: u16, samples: &[i16]) -> Vec<u8> {
    let data_len = (samples.len() * 2) as u32;
    let mut out = Vec::new();
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_len).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes()); // PCM
    out.extend_from_slice(&channels.to_le_bytes());
    out.extend_from_slice(&rate.to_le_bytes());
    out.extend_from_slice(&(rate * u32::from(channels) * 2).to_le_bytes());
    out.extend_from_slice(&(channels * 2).to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    for s in samples {
        out.extend_from_slice(&s.to_le_bytes());
    }
    out
}

fn sine(rate: u32, seconds: f64, hz: f64, amplitude: f64) -> Vec<f64> {
    let n = (seconds * f64::from(rate)).round() as usize;
    (0..n).map(|i| amplitude * (2.0 * std::f64::consts::PI * hz * i as f64 / f64::from(rate)).sin()).collect()
}

fn to_i16(x: f64) -> i16 {
    (x * 32768.0).round() as i16
}

/// Deterministic bytes that look like noise.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed;
    (0..len)
        .map(|_| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (state >> 56) as u8
        })
        .collect()
}

fn problem(result: Result<impl std::fmt::Debug, m2ugen_media::MediaError>) -> String {
    let error = result.unwrap_err();
    // Every message names the file first, then the problem, on one line.
    assert_eq!(error.to_string(), format!("{}: {}", error.file, error.problem));
    assert!(!error.to_string().contains('\n'), "{error}");
    println!("{error}");
    error.problem
}

#[test]
fn wav_samples_are_scaled_like_torchaudio() {
    // Stereo frames (L, R): exact fractions of 32768.
    let bytes = wav_i16(44_100, 2, &[16384, -8192, -32768, 32767, 0, 1]);
    let audio = decode_audio("two.wav", &bytes, &Limits::default()).unwrap();
    assert_eq!(audio.sample_rate, 44_100);
    assert_eq!(audio.channels, vec![vec![0.5, -1.0, 0.0], vec![-0.25, 32767.0 / 32768.0, 1.0 / 32768.0]]);
}

#[test]
fn music_at_24khz_is_the_samples_themselves() {
    let samples: Vec<i16> = (0..2400).map(|i| ((i % 100) as i16 - 50) * 300).collect();
    let music = music_from_bytes("m.wav", &wav_i16(MUSIC_RATE, 1, &samples), &Limits::default()).unwrap();
    let expected: Vec<f32> = samples.iter().map(|&s| f32::from(s) / 32768.0).collect();
    assert_eq!(music, expected);
}

#[test]
fn music_is_resampled_then_averaged_over_channels() {
    // 48 kHz stereo: left 0.5 sin, right 0.25 sin of 440 Hz; the mean is 0.375 sin at 24 kHz.
    let left = sine(48_000, 0.5, 440.0, 0.5);
    let right = sine(48_000, 0.5, 440.0, 0.25);
    let interleaved: Vec<i16> = left.iter().zip(&right).flat_map(|(&l, &r)| [to_i16(l), to_i16(r)]).collect();
    let music = music_from_bytes("s.wav", &wav_i16(48_000, 2, &interleaved), &Limits::default()).unwrap();
    let expected = sine(24_000, 0.5, 440.0, 0.375);
    assert_eq!(music.len(), expected.len());
    // Away from the clip's abrupt edges, within 16-bit quantisation.
    let worst = (1200..expected.len() - 1200).map(|i| (f64::from(music[i]) - expected[i]).abs()).fold(0.0, f64::max);
    assert!(worst < 1e-4, "worst error {worst}");
}

#[test]
fn empty_file() {
    assert_eq!(problem(decode_audio("a.wav", &[], &Limits::default())), "is empty");
}

#[test]
fn file_over_the_size_limit_is_refused_before_decoding() {
    let limits = Limits { max_file_bytes: 1 << 20, ..Limits::default() };
    // 44 header bytes and 786 410 samples: exactly 1.5 MiB.
    let bytes = wav_i16(24_000, 1, &vec![1000; 786_410]);
    assert_eq!(bytes.len(), 3 << 19);
    assert_eq!(problem(decode_audio("big.wav", &bytes, &limits)), "is 1.5 MiB; the limit is 1 MiB");
}

#[test]
fn png_given_as_audio() {
    let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x10\0\0\0\x10\x08\x02\0\0\0";
    assert_eq!(
        problem(decode_audio("cat.mp3", png, &Limits::default())),
        "is not audio in a format this build reads (WAV, FLAC, MP3, OGG Vorbis); it looks like a PNG image"
    );
}

#[test]
fn text_given_as_audio() {
    assert_eq!(
        problem(decode_audio("notes.wav", b"These are my lyrics.\nVerse 1\n", &Limits::default())),
        "is not audio in a format this build reads (WAV, FLAC, MP3, OGG Vorbis); it looks like text"
    );
}

#[test]
fn mp4_given_as_audio() {
    let m4a = b"\0\0\0\x20ftypM4A \0\0\0\0M4A mp42isom\0\0\0\0";
    assert_eq!(
        problem(decode_audio("song.m4a", m4a, &Limits::default())),
        "is not audio in a format this build reads (WAV, FLAC, MP3, OGG Vorbis); it looks like an MP4/MOV/M4A file"
    );
}

#[test]
fn wav_header_cut_midway() {
    let bytes = wav_i16(44_100, 2, &[1, 2, 3, 4]);
    assert_eq!(problem(decode_audio("cut.wav", &bytes[..30], &Limits::default())), "is corrupt or truncated: the file ends too early");
}

#[test]
fn noise_after_a_riff_header() {
    let mut bytes = b"RIFF\xff\x00\x00\x00WAVE".to_vec();
    bytes.extend(noise(4000, 7));
    let message = problem(decode_audio("noise.wav", &bytes, &Limits::default()));
    assert!(message.starts_with("is corrupt or truncated: "), "{message}");
}

#[test]
fn wav_data_shorter_than_its_header_says() {
    // The header promises 2 s at 8 kHz; the file holds 1.5 s.
    let full = wav_i16(8_000, 1, &vec![3000; 16_000]);
    let cut = &full[..44 + 2 * 12_000];
    assert_eq!(
        problem(decode_audio("cut.wav", cut, &Limits::default())),
        "is corrupt or truncated: its header promises 2 s of audio, only 1.5 s could be decoded"
    );
}

#[test]
fn flac_signature_followed_by_garbage() {
    let mut bytes = b"fLaC".to_vec();
    bytes.extend(noise(3000, 3));
    let message = problem(decode_audio("x.flac", &bytes, &Limits::default()));
    assert!(message.starts_with("is corrupt or truncated: "), "{message}");
}

#[test]
fn ogg_signature_followed_by_garbage() {
    let mut bytes = b"OggS".to_vec();
    bytes.extend(noise(3000, 4));
    let message = problem(decode_audio("x.ogg", &bytes, &Limits::default()));
    assert!(message.starts_with("is corrupt or truncated: "), "{message}");
}

#[test]
fn id3_tag_with_no_audio_after_it() {
    // An ID3v2.4 tag of 20 bytes of padding, then nothing an MP3 reader can use.
    let mut bytes = b"ID3\x04\x00\x00\x00\x00\x00\x14".to_vec();
    bytes.extend([0u8; 20]);
    bytes.extend(b"just some words, not audio frames at all");
    assert_eq!(
        problem(decode_audio("x.mp3", &bytes, &Limits::default())),
        "is corrupt or truncated: it starts like MP3 audio, but no audio stream could be read from it"
    );
}

#[test]
fn silent_audio() {
    let bytes = wav_i16(44_100, 2, &vec![0; 8820]);
    assert_eq!(problem(music_from_bytes("quiet.wav", &bytes, &Limits::default())), "is silent");
}

#[test]
fn audio_longer_than_the_limit_is_refused_from_its_header() {
    let limits = Limits { max_audio_seconds: 1.0, ..Limits::default() };
    let bytes = wav_i16(8_000, 1, &vec![500; 20_000]);
    assert_eq!(problem(decode_audio("long.wav", &bytes, &limits)), "is 2.5 s long; the limit is 1 s");
}

#[test]
fn no_samples() {
    let empty = Audio { sample_rate: 44_100, channels: vec![] };
    assert_eq!(problem(to_music("a.wav", &empty)), "has no audio samples");
    let no_frames = decode_audio("b.wav", &wav_i16(44_100, 1, &[]), &Limits::default()).unwrap();
    assert_eq!(problem(to_music("b.wav", &no_frames)), "has no audio samples");
}

#[test]
fn unusable_samples_in_hand_made_audio() {
    let ragged = Audio { sample_rate: 44_100, channels: vec![vec![0.5; 10], vec![0.5; 9]] };
    assert_eq!(problem(to_music("r", &ragged)), "has channels of different lengths (10, 9 samples)");
    let nan = Audio { sample_rate: 44_100, channels: vec![vec![0.5, f32::NAN, 0.1]] };
    assert_eq!(problem(to_music("n", &nan)), "has samples that are not numbers (NaN or infinity)");
    let zero_rate = Audio { sample_rate: 0, channels: vec![vec![0.5; 4]] };
    assert_eq!(problem(to_music("z", &zero_rate)), "has a sample rate of 0 Hz");
}

#[test]
fn sample_rate_outside_the_supported_range() {
    let bytes = wav_i16(500, 1, &[100; 100]);
    assert_eq!(problem(decode_audio("slow.wav", &bytes, &Limits::default())), "has a sample rate of 500 Hz; this build reads 1000 to 768000 Hz");
}

#[test]
fn random_bytes() {
    let message = problem(decode_audio("random.bin", &noise(5000, 11), &Limits::default()));
    assert!(message.starts_with("is not audio in a format this build reads"), "{message}");
}

/// CRC-8 (polynomial 0x07) of a FLAC frame header.
fn crc8(bytes: &[u8]) -> u8 {
    let mut crc = 0u8;
    for &b in bytes {
        crc ^= b;
        for _ in 0..8 {
            crc = if crc & 0x80 != 0 { (crc << 1) ^ 0x07 } else { crc << 1 };
        }
    }
    crc
}

/// CRC-16 (polynomial 0x8005) of a FLAC frame.
fn crc16(bytes: &[u8]) -> u16 {
    let mut crc = 0u16;
    for &b in bytes {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 { (crc << 1) ^ 0x8005 } else { crc << 1 };
        }
    }
    crc
}

/// A mono 16-bit FLAC file at 24 kHz with VERBATIM subframes, `block` samples a frame.
fn flac_verbatim(samples: &[i16], block: usize) -> Vec<u8> {
    let mut out = b"fLaC".to_vec();
    // STREAMINFO, the last metadata block, 34 bytes.
    out.extend([0x80, 0, 0, 34]);
    out.extend((block as u16).to_be_bytes()); // min block size
    out.extend((block as u16).to_be_bytes()); // max block size
    out.extend([0; 6]); // frame sizes unknown
    // 20 bits rate, 3 bits channels - 1, 5 bits bits-per-sample - 1, 36 bits total samples.
    let packed: u64 = (24_000u64 << 44) | (15 << 36) | samples.len() as u64; // mono: 0 << 41
    out.extend(packed.to_be_bytes());
    out.extend([0; 16]); // MD5 unknown
    for (number, chunk) in samples.chunks(block).enumerate() {
        let start = out.len();
        // Sync, fixed block size; block size as 8 bits at the end, rate from STREAMINFO;
        // mono, 16 bits; frame number (below 128: one byte); block size - 1.
        out.extend([0xff, 0xf8, 0x60, 0x08, number as u8, (chunk.len() - 1) as u8]);
        out.push(crc8(&out[start..]));
        out.push(0x02); // VERBATIM subframe, no wasted bits
        for s in chunk {
            out.extend(s.to_be_bytes());
        }
        let crc = crc16(&out[start..]);
        out.extend(crc.to_be_bytes());
    }
    out
}

#[test]
fn flac_decodes_exactly() {
    let samples: Vec<i16> = (0..600).map(|i: i32| ((i * 97 % 2000) - 1000) as i16 * 16).collect();
    let bytes = flac_verbatim(&samples, 256);
    let audio = decode_audio("tiny.flac", &bytes, &Limits::default()).unwrap();
    assert_eq!(audio.sample_rate, 24_000);
    let expected: Vec<f32> = samples.iter().map(|&s| f32::from(s) / 32768.0).collect();
    assert_eq!(audio.channels, vec![expected.clone()]);
    assert_eq!(music_from_bytes("tiny.flac", &bytes, &Limits::default()).unwrap(), expected);
}

#[test]
fn flac_with_a_damaged_frame() {
    let samples: Vec<i16> = (0..600).map(|i| (i * 40) as i16).collect();
    let mut bytes = flac_verbatim(&samples, 256);
    // A sample inside the second frame: its CRC-16 no longer matches.
    let at = 42 + 8 + 512 + 2 + 8 + 100;
    bytes[at] ^= 0x55;
    // The reader skips the damaged frame (256 samples); the header's length tells.
    assert_eq!(
        problem(decode_audio("bad.flac", &bytes, &Limits::default())),
        "is corrupt or truncated: its header promises 0.025 s of audio, only 0.014 s could be decoded"
    );
}

/// `frames` MPEG-1 Layer III frames, mono, 128 kb/s, 44.1 kHz, whose side information and
/// main data are all zero: valid, and silent.
fn mp3_silence(frames: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for _ in 0..frames {
        // 144 * 128000 / 44100 = 417 bytes a frame without padding.
        out.extend([0xff, 0xfb, 0x90, 0xc0]);
        out.extend([0u8; 413]);
    }
    out
}

#[test]
fn mp3_silence_decodes_and_is_reported_silent() {
    let bytes = mp3_silence(20);
    let audio = decode_audio("quiet.mp3", &bytes, &Limits::default()).unwrap();
    assert_eq!((audio.sample_rate, audio.channels.len()), (44_100, 1));
    let frames = audio.channels[0].len();
    assert_eq!(frames, 20 * 1152);
    assert!(audio.channels[0].iter().all(|&v| v == 0.0));
    assert_eq!(problem(music_from_bytes("quiet.mp3", &bytes, &Limits::default())), "is silent");
}

/// Spoils frame `index` of [`mp3_silence`]: its scale factors need more bits than the frame
/// says it has ("part2_3_length is not valid").
fn spoil_mp3_frame(bytes: &mut [u8], index: usize) {
    // scalefac_compress of granule 0 is side-information bits 47..51 (from byte 4 of the frame).
    bytes[index * 417 + 4 + 5] |= 0x01;
    bytes[index * 417 + 4 + 6] |= 0xe0;
}

#[test]
fn an_isolated_bad_mp3_frame_is_skipped() {
    let mut bytes = mp3_silence(200);
    spoil_mp3_frame(&mut bytes, 120);
    let audio = decode_audio("glitch.mp3", &bytes, &Limits::default()).unwrap();
    assert_eq!(audio.channels[0].len(), 199 * 1152);
}

#[test]
fn many_bad_mp3_frames_fail_the_file() {
    let mut bytes = mp3_silence(20);
    for index in [4, 5, 12] {
        spoil_mp3_frame(&mut bytes, index);
    }
    assert_eq!(
        problem(decode_audio("broken.mp3", &bytes, &Limits::default())),
        "is corrupt or truncated: 3 of 20 packets could not be decoded, the first: malformed stream: mpa: part2_3_length is not valid (after 0.104 s)"
    );
}

#[test]
fn wav_written_to_a_pipe() {
    // ffmpeg's `-f wav -` leaves both lengths at 0xFFFFFFFF.
    let samples: Vec<i16> = (0..4000).map(|i| (i * 7 % 3000) as i16 - 1500).collect();
    let mut bytes = wav_i16(16_000, 2, &samples);
    bytes[4..8].copy_from_slice(&[0xff; 4]);
    bytes[40..44].copy_from_slice(&[0xff; 4]);
    let audio = decode_audio("piped.wav", &bytes, &Limits::default()).unwrap();
    let left: Vec<f32> = samples.iter().step_by(2).map(|&s| f32::from(s) / 32768.0).collect();
    assert_eq!(audio.channels[0], left);
    assert_eq!(audio.channels[1].len(), 2000);
    // A recorder that never finalised the file: a data length of 0.
    bytes[4..8].copy_from_slice(&36u32.to_le_bytes());
    bytes[40..44].copy_from_slice(&0u32.to_le_bytes());
    assert_eq!(decode_audio("unfinished.wav", &bytes, &Limits::default()).unwrap().channels[0], left);
}

#[test]
fn wav_with_a_riff_length_too_short() {
    let samples: Vec<i16> = (0..1000).map(|i| i as i16).collect();
    let mut bytes = wav_i16(8_000, 1, &samples);
    let short = (bytes.len() - 16) as u32;
    bytes[4..8].copy_from_slice(&short.to_le_bytes());
    let audio = decode_audio("short-riff.wav", &bytes, &Limits::default()).unwrap();
    assert_eq!(audio.channels[0].len(), 1000);
    assert_eq!(audio.channels[0][999], 999.0 / 32768.0);
}

// Real encoders' files: `tests/data/make.sh` made them with ffmpeg's FLAC encoder, LAME and
// libvorbis from one 1.2-s stereo tone at 44.1 kHz. They are checked against the tone's
// formula, not against another decode.

fn data(name: &str) -> Vec<u8> {
    let path = common::manifest_dir().join("tests/data").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Sample `i` of channel `channel` of the tone at `rate`: left 0.5·sin(2π·440·t), right
/// 0.25·sin(2π·660·t).
fn tone(channel: usize, i: usize, rate: f64) -> f64 {
    let t = i as f64 / rate;
    let (amplitude, hz) = if channel == 0 { (0.5, 440.0) } else { (0.25, 660.0) };
    amplitude * (2.0 * std::f64::consts::PI * hz * t).sin()
}

/// The amplitude of `hz` in the samples of `range` (whole cycles of the tone's 440 and 660 Hz
/// in 0.1-s steps): a single DFT bin.
fn amplitude(x: &[f32], rate: f64, hz: f64, range: std::ops::Range<usize>) -> f64 {
    let n = range.len() as f64;
    let (mut s, mut c) = (0.0, 0.0);
    for i in range {
        let phase = 2.0 * std::f64::consts::PI * hz * i as f64 / rate;
        s += f64::from(x[i]) * phase.sin();
        c += f64::from(x[i]) * phase.cos();
    }
    2.0 * (s * s + c * c).sqrt() / n
}

/// Over the middle second of a channel: the gain that best scales the tone onto the decoded
/// samples, and the root mean square of what is left, relative to the tone's. A decode shifted
/// by one sample at 440 Hz leaves 6%; a different level only moves the gain.
fn gain_and_residual(audio: &Audio, channel: usize) -> (f64, f64) {
    let rate = f64::from(audio.sample_rate);
    let range = (rate * 0.1) as usize..(rate * 1.1) as usize;
    let want: Vec<f64> = range.clone().map(|i| tone(channel, i, rate)).collect();
    let got: Vec<f64> = range.map(|i| f64::from(audio.channels[channel][i])).collect();
    let power: f64 = want.iter().map(|w| w * w).sum();
    let gain = want.iter().zip(&got).map(|(w, g)| w * g).sum::<f64>() / power;
    let residual: f64 = want.iter().zip(&got).map(|(w, g)| (g - gain * w).powi(2)).sum();
    (gain, (residual / (gain * gain * power)).sqrt())
}

#[test]
fn flac_from_a_real_encoder_is_the_tone_exactly() {
    let audio = decode_audio("tone.flac", &data("tone.flac"), &Limits::default()).unwrap();
    assert_eq!((audio.sample_rate, audio.channels.len(), audio.frames()), (44_100, 2, 52_920));
    for (c, channel) in audio.channels.iter().enumerate() {
        for (i, &v) in channel.iter().enumerate() {
            // Lossless: the tone rounded to 16 bits (within one step either way).
            assert!((f64::from(v) - tone(c, i, 44_100.0)).abs() <= 1.0 / 32768.0, "channel {c}, sample {i}: {v}");
        }
    }
}

#[test]
fn mp3_and_vorbis_from_real_encoders_hold_the_tone_in_time() {
    // LAME's file plays 0.45 dB quieter than its input (ffmpeg's own decoder gives the same);
    // Vorbis keeps the level.
    for (file, gains) in [("tone.mp3", 0.93..0.97), ("tone.ogg", 0.98..1.02)] {
        let audio = decode_audio(file, &data(file), &Limits::default()).unwrap();
        assert_eq!((audio.sample_rate, audio.channels.len()), (44_100, 2), "{file}");
        // The encoder's delay and padding trimmed: 1.2 s, to a few milliseconds.
        assert!((audio.seconds() - 1.2).abs() < 0.005, "{file}: {} s", audio.seconds());
        let middle = 4_410..48_510;
        let (left, right) = (&audio.channels[0], &audio.channels[1]);
        // Each channel holds its own tone and not the other's.
        assert!(amplitude(left, 44_100.0, 660.0, middle.clone()) < 0.005 && amplitude(right, 44_100.0, 440.0, middle) < 0.005, "{file}: the channels mix");
        for c in 0..2 {
            let (gain, residual) = gain_and_residual(&audio, c);
            assert!(gains.contains(&gain), "{file}: channel {c} has a gain of {gain:.3}");
            assert!(residual < 0.01, "{file}: channel {c} is {residual:.4} off the tone (shifted in time?)");
        }
    }
}

#[test]
fn real_files_become_24khz_mono_music() {
    for file in ["tone.flac", "tone.mp3", "tone.ogg"] {
        let music = music_from_bytes(file, &data(file), &Limits::default()).unwrap();
        assert!((music.len() as f64 / f64::from(MUSIC_RATE) - 1.2).abs() < 0.005, "{file}: {} samples", music.len());
        // The mean of the channels: 440 Hz at 0.25, 660 Hz at 0.125.
        let middle = 2_400..26_400;
        // (LAME's 0.45 dB less.)
        let a440 = amplitude(&music, 24_000.0, 440.0, middle.clone());
        let a660 = amplitude(&music, 24_000.0, 660.0, middle);
        assert!((a440 - 0.25).abs() < 0.015 && (a660 - 0.125).abs() < 0.008, "{file}: 440 Hz at {a440}, 660 Hz at {a660}");
    }
}

#[test]
fn a_real_mp4_video_given_as_audio() {
    assert_eq!(
        problem(decode_audio("clip.mp4", &data("clip.mp4"), &Limits::default())),
        "is not audio in a format this build reads (WAV, FLAC, MP3, OGG Vorbis); it looks like an MP4/MOV/M4A file"
    );
}
