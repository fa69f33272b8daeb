//! Video as a folder of frames, and the even spacing of the picked frames.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;

use image::codecs::png::PngEncoder;
use image::{ExtendedColorType, ImageEncoder};
use m2ugen_media::Limits;
use m2ugen_media::video::{even_indices, frames_from_dir};

#[test]
fn even_indices_are_the_centres_of_equal_spans() {
    // round((i + 0.5) * total / count - 0.5), worked by hand.
    assert_eq!(even_indices(10, 4), [1, 3, 6, 8]); // 0.75, 3.25, 5.75, 8.25
    assert_eq!(even_indices(16, 8), [1, 3, 5, 7, 9, 11, 13, 15]); // 2i + 0.5 rounds up
    assert_eq!(even_indices(4, 4), [0, 1, 2, 3]);
    assert_eq!(even_indices(100, 1), [50]); // 49.5
    assert_eq!(even_indices(1, 1), [0]);
    // Fewer frames than asked: i * total / count, frames repeat.
    assert_eq!(even_indices(2, 5), [0, 0, 0, 1, 1]);
    assert_eq!(even_indices(1, 3), [0, 0, 0]);
    assert!(even_indices(0, 3).is_empty());
    assert!(even_indices(5, 0).is_empty());
}

#[test]
fn even_indices_of_long_videos_stay_in_range() {
    let picks = even_indices(usize::MAX, 3);
    assert_eq!(picks.len(), 3);
    assert!(picks.windows(2).all(|w| w[0] < w[1]));
}

/// A PNG frame whose every pixel is (value, x, y).
fn write_frame(path: &Path, width: u32, height: u32, value: u8) {
    let pixels: Vec<u8> = (0..height).flat_map(|y| (0..width).flat_map(move |x| [value, x as u8, y as u8])).collect();
    let mut bytes = Vec::new();
    PngEncoder::new(&mut bytes).write_image(&pixels, width, height, ExtendedColorType::Rgb8).unwrap();
    std::fs::write(path, bytes).unwrap();
}

fn problem(result: Result<m2ugen_media::Planar, m2ugen_media::MediaError>) -> m2ugen_media::MediaError {
    let error = result.unwrap_err();
    assert!(!error.to_string().contains('\n'), "{error}");
    println!("{error}");
    error
}

fn first_value(planar: &m2ugen_media::Planar, frame: usize) -> f32 {
    planar.values[frame * planar.channels * planar.height * planar.width]
}

#[test]
fn frames_are_picked_evenly_in_name_order() {
    let dir = tempfile::tempdir().unwrap();
    // Written out of order; other files are ignored.
    for k in (0..10).rev() {
        write_frame(&dir.path().join(format!("frame_{k:03}.png")), 16, 20, 20 * k as u8);
    }
    std::fs::write(dir.path().join("notes.txt"), "ignored").unwrap();
    let planar = frames_from_dir(dir.path(), 4, &Limits::default()).unwrap();
    assert_eq!((planar.frames, planar.channels, planar.height, planar.width), (4, 3, 20, 16));
    assert_eq!(planar.values.len(), 4 * 3 * 20 * 16);
    // Frames 1, 3, 6, 8.
    let firsts: Vec<f32> = (0..4).map(|f| first_value(&planar, f)).collect();
    assert_eq!(firsts, [20.0, 60.0, 120.0, 160.0]);
    // Planar bytes: channel 1 is x, channel 2 is y, in 0..=255.
    let at = |c: usize, x: usize, y: usize| planar.values[((3 * 3 + c) * 20 + y) * 16 + x];
    assert_eq!((at(0, 7, 11), at(1, 7, 11), at(2, 7, 11)), (160.0, 7.0, 11.0));
}

#[test]
fn fewer_frames_than_asked_repeat() {
    let dir = tempfile::tempdir().unwrap();
    write_frame(&dir.path().join("a.png"), 16, 16, 5);
    write_frame(&dir.path().join("b.PNG"), 16, 16, 9);
    let planar = frames_from_dir(dir.path(), 3, &Limits::default()).unwrap();
    let firsts: Vec<f32> = (0..3).map(|f| first_value(&planar, f)).collect();
    assert_eq!(firsts, [5.0, 5.0, 9.0]);
}

#[test]
fn empty_folder() {
    let dir = tempfile::tempdir().unwrap();
    let error = problem(frames_from_dir(dir.path(), 8, &Limits::default()));
    assert_eq!(error.to_string(), format!("{}: has no frames (PNG or JPEG)", dir.path().display()));
    std::fs::write(dir.path().join("readme.txt"), "no frames here").unwrap();
    assert_eq!(problem(frames_from_dir(dir.path(), 8, &Limits::default())).problem, "has no frames (PNG or JPEG)");
}

#[test]
fn missing_folder() {
    let dir = tempfile::tempdir().unwrap();
    let error = problem(frames_from_dir(&dir.path().join("nowhere"), 8, &Limits::default()));
    assert!(error.problem.starts_with("cannot be read as a folder: "), "{error}");
}

#[test]
fn frames_of_different_sizes() {
    let dir = tempfile::tempdir().unwrap();
    write_frame(&dir.path().join("0.png"), 16, 16, 1);
    write_frame(&dir.path().join("1.png"), 32, 16, 1);
    let error = problem(frames_from_dir(dir.path(), 2, &Limits::default()));
    assert_eq!(error.file, dir.path().join("1.png").display().to_string());
    assert_eq!(
        error.problem,
        format!("is 32x16 pixels, but {} is 16x16; all frames must be the same size", dir.path().join("0.png").display())
    );
}

#[test]
fn a_corrupt_frame_is_named() {
    let dir = tempfile::tempdir().unwrap();
    write_frame(&dir.path().join("0.png"), 16, 16, 1);
    write_frame(&dir.path().join("1.png"), 16, 16, 1);
    let bad = dir.path().join("2.jpg");
    std::fs::write(&bad, b"\xff\xd8\xff\xe0 this is not really a JPEG").unwrap();
    let error = problem(frames_from_dir(dir.path(), 3, &Limits::default()));
    assert_eq!(error.file, bad.display().to_string());
    assert!(error.problem.starts_with("is corrupt or truncated: "), "{error}");
}

#[test]
fn frames_are_held_to_the_limits() {
    let dir = tempfile::tempdir().unwrap();
    write_frame(&dir.path().join("0.png"), 16, 16, 1);
    let limits = Limits { max_file_bytes: 10, ..Limits::default() };
    let error = problem(frames_from_dir(dir.path(), 1, &limits));
    assert_eq!(error.file, dir.path().join("0.png").display().to_string());
    assert!(error.problem.ends_with("bytes; the limit is 10 bytes"), "{error}");
    let error = problem(frames_from_dir(dir.path(), 1, &Limits { min_side: 32, ..Limits::default() }));
    assert_eq!(error.problem, "is 16x16 pixels; images must be at least 32 pixels on each side");
}

/// Whether `ffmpeg` and `ffprobe` run here.
fn ffmpeg_installed() -> bool {
    ["ffmpeg", "ffprobe"].iter().all(|tool| {
        std::process::Command::new(tool).arg("-version").output().is_ok_and(|o| o.status.success())
    })
}

#[test]
fn video_file_through_ffmpeg_when_installed() {
    use m2ugen_media::video::frames_from_file;
    if !ffmpeg_installed() {
        // Covered by the stand-in programs of the unit tests; this checks the real ones, and
        // CI has them (scripts/setup.sh installs ffmpeg).
        assert!(std::env::var_os("CI").is_none(), "CI runs the real-ffmpeg check: install ffmpeg (scripts/setup.sh does)");
        println!("ffmpeg is not installed here: the real-ffmpeg check did not run");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // Ten lossless 32x24 frames whose red is 20 x the frame number.
    let video = dir.path().join("ramp.nut");
    let made = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-f", "lavfi", "-i", "color=c=black:s=32x24:r=10:d=1,format=rgb24,geq=r='N*20':g='0':b='0'"])
        .args(["-c:v", "rawvideo", "-pix_fmt", "rgb24"])
        .arg(&video)
        .status()
        .unwrap();
    assert!(made.success());
    let planar = frames_from_file(&video, 4, &Limits::default()).unwrap();
    assert_eq!((planar.frames, planar.channels, planar.height, planar.width), (4, 3, 24, 32));
    let firsts: Vec<f32> = (0..4).map(|f| first_value(&planar, f)).collect();
    assert_eq!(firsts, [20.0, 60.0, 120.0, 160.0]);

    let sound = dir.path().join("tone.wav");
    let made = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-f", "lavfi", "-i", "sine=frequency=440:duration=0.5"])
        .arg(&sound)
        .status()
        .unwrap();
    assert!(made.success());
    assert_eq!(problem(frames_from_file(&sound, 4, &Limits::default())).problem, "has no video track");

    // Real encoders' files (tests/data/make.sh): an H.264 clip of 16 frames of 40x30 with AAC
    // sound, and an MP3.
    let data = common::manifest_dir().join("tests/data");
    let planar = frames_from_file(&data.join("clip.mp4"), 4, &Limits::default()).unwrap();
    assert_eq!((planar.frames, planar.channels, planar.height, planar.width), (4, 3, 30, 40));
    // ffmpeg's test pattern moves: the four frames picked differ from one another.
    let size = 3 * 30 * 40;
    let frames: Vec<&[f32]> = planar.values.chunks(size).collect();
    for a in 0..4 {
        for b in a + 1..4 {
            assert_ne!(frames[a], frames[b], "frames {a} and {b} are the same");
        }
    }
    assert_eq!(problem(frames_from_file(&data.join("tone.mp3"), 4, &Limits::default())).problem, "has no video track");

    let text = dir.path().join("notes.mp4");
    std::fs::write(&text, "not a video at all").unwrap();
    let error = problem(frames_from_file(&text, 4, &Limits::default()));
    assert!(error.problem.starts_with("is not a video ffmpeg can read: "), "{error}");
}

#[test]
fn video_file_without_ffmpeg() {
    if ffmpeg_installed() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let video = dir.path().join("clip.mp4");
    std::fs::write(&video, b"bytes").unwrap();
    let error = problem(m2ugen_media::video::frames_from_file(&video, 4, &Limits::default()));
    assert_eq!(error.problem, "ffmpeg is not installed: give the video as a folder of frames");
}
