//! Video to evenly picked frames for ViViT: a folder of frame images anywhere but the
//! browser, or any file `ffmpeg` reads when it is installed.

#[cfg(not(target_arch = "wasm32"))]
pub use native::{frames_from_dir, frames_from_file};

/// `count` indices evenly spaced over `total` frames, deterministic:
/// `round((i + 0.5) * total / count - 0.5)` for `i` in `0..count` (the centres of `count` equal
/// spans), computed exactly in integers as `floor((2i + 1) * total / (2 count))`; when
/// `total < count`, frames repeat (each index `i * total / count`). No frames, or none asked
/// for: empty.
pub fn even_indices(total: usize, count: usize) -> Vec<usize> {
    if total == 0 || count == 0 {
        return Vec::new();
    }
    let (total_w, count_w) = (total as u128, count as u128);
    (0..count as u128)
        .map(|i| {
            let index = if total < count { i * total_w / count_w } else { (2 * i + 1) * total_w / (2 * count_w) };
            (index as usize).min(total - 1)
        })
        .collect()
}

#[cfg(not(target_arch = "wasm32"))]
mod native {
    use std::collections::BTreeMap;
    use std::ffi::{OsStr, OsString};
    use std::io::{BufRead, BufReader, Read};
    use std::path::Path;
    use std::process::{Command, Stdio};

    use m2ugen_core::media::Planar;

    use super::even_indices;
    use crate::image::{check_dimensions, decode_image_bytes};
    use crate::{Limits, MediaError, check_file_size};

    /// Video as a folder of frame images (PNG/JPEG by extension, sorted by file name byte by
    /// byte, so number them with leading zeros), `count` of them evenly spaced
    /// ([`even_indices`]), all the same size: planar bytes (0..=255), `count` frames. Only the
    /// picked files are read.
    ///
    /// Errors: a folder that cannot be read, one with no frames, a frame that is not a usable
    /// image (named by its path, with [`decode_image_bytes`]'s reasons and limits), frames of
    /// different sizes, `count` of 0.
    pub fn frames_from_dir(dir: &Path, count: usize, limits: &Limits) -> Result<Planar, MediaError> {
        let folder = dir.display().to_string();
        if count == 0 {
            return Err(MediaError::new(folder, "0 frames were asked for"));
        }
        let entries = std::fs::read_dir(dir).map_err(|e| MediaError::new(&folder, format!("cannot be read as a folder: {e}")))?;
        let mut frames = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| MediaError::new(&folder, format!("cannot be listed: {e}")))?;
            let path = entry.path();
            let is_frame = path
                .extension()
                .and_then(OsStr::to_str)
                .is_some_and(|e| ["png", "jpg", "jpeg"].contains(&e.to_ascii_lowercase().as_str()));
            if is_frame && path.is_file() {
                frames.push(path);
            }
        }
        if frames.is_empty() {
            return Err(MediaError::new(folder, "has no frames (PNG or JPEG)"));
        }
        frames.sort_by(|a, b| a.file_name().cmp(&b.file_name()));

        let picks = even_indices(frames.len(), count);
        let mut decoded: BTreeMap<usize, Planar> = BTreeMap::new();
        for &index in &picks {
            if decoded.contains_key(&index) {
                continue;
            }
            let path = &frames[index];
            let name = path.display().to_string();
            let size = std::fs::metadata(path).map_err(|e| MediaError::new(&name, format!("cannot be read: {e}")))?.len();
            check_file_size(&name, size, limits)?;
            let bytes = std::fs::read(path).map_err(|e| MediaError::new(&name, format!("cannot be read: {e}")))?;
            let frame = decode_image_bytes(&name, &bytes, limits)?;
            if let Some((&first_index, first)) = decoded.iter().next()
                && (frame.height, frame.width) != (first.height, first.width)
            {
                return Err(MediaError::new(
                    name,
                    format!(
                        "is {}x{} pixels, but {} is {}x{}; all frames must be the same size",
                        frame.width,
                        frame.height,
                        frames[first_index].display(),
                        first.width,
                        first.height
                    ),
                ));
            }
            decoded.insert(index, frame);
        }
        Ok(stack(picks.iter().filter_map(|i| decoded.get(i))))
    }

    /// Any file `ffmpeg` reads, when it is installed: `ffprobe` counts the frames (packets of
    /// the first video stream that is not cover art) and gives the size, `ffmpeg` decodes them
    /// (rotation metadata applied) to a pipe of RGB images of which only the `count` picked
    /// ([`even_indices`]) are kept, so memory holds `count + 1` frames whatever the length.
    /// If ffmpeg delivers fewer frames than counted, the missing picks repeat the last frame.
    ///
    /// Errors: without ffmpeg on PATH, "ffmpeg is not installed: give the video as a folder of
    /// frames"; a file that cannot be read, is empty or over `limits.max_file_bytes`; one that
    /// ffmpeg cannot read; "has no video track"; frames outside the size limits; `count` of 0.
    pub fn frames_from_file(path: &Path, count: usize, limits: &Limits) -> Result<Planar, MediaError> {
        frames_with_tools(path, count, limits, &Tools::installed())
    }

    /// The programs [`frames_from_file`] runs, each with arguments before its own (so that a
    /// test can run a script with `sh`).
    pub(super) struct Tools {
        pub ffprobe: Vec<OsString>,
        pub ffmpeg: Vec<OsString>,
    }

    impl Tools {
        fn installed() -> Tools {
            Tools { ffprobe: vec!["ffprobe".into()], ffmpeg: vec!["ffmpeg".into()] }
        }
    }

    const NOT_INSTALLED: &str = "ffmpeg is not installed: give the video as a folder of frames";

    fn command(program: &[OsString]) -> Command {
        let mut command = Command::new(program.first().map_or(OsStr::new(""), |p| p.as_os_str()));
        command.args(program.iter().skip(1));
        command
    }

    pub(super) fn frames_with_tools(path: &Path, count: usize, limits: &Limits, tools: &Tools) -> Result<Planar, MediaError> {
        let file = path.display().to_string();
        if count == 0 {
            return Err(MediaError::new(file, "0 frames were asked for"));
        }
        let size = std::fs::metadata(path).map_err(|e| MediaError::new(&file, format!("cannot be read: {e}")))?.len();
        check_file_size(&file, size, limits)?;
        // "file:" keeps ffmpeg from reading a name with a colon as a protocol, or one starting
        // with a dash as an option.
        let mut input = OsString::from("file:");
        input.push(path.as_os_str());

        let probe = command(&tools.ffprobe)
            .args(["-v", "error", "-select_streams", "V:0", "-count_packets"])
            .args(["-show_entries", "stream=width,height,nb_read_packets", "-of", "default=noprint_wrappers=1"])
            .arg(&input)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| spawn_error(&file, "ffprobe", &e))?;
        if !probe.status.success() {
            return Err(MediaError::new(
                file,
                format!("is not a video ffmpeg can read: {}", first_line(&probe.stderr, "ffprobe failed")),
            ));
        }
        let fields: BTreeMap<String, String> = String::from_utf8_lossy(&probe.stdout)
            .lines()
            .filter_map(|line| line.split_once('=').map(|(k, v)| (k.trim().to_string(), v.trim().to_string())))
            .collect();
        if fields.is_empty() {
            return Err(MediaError::new(file, "has no video track"));
        }
        let number = |key: &str| fields.get(key).and_then(|v| v.parse::<u64>().ok());
        if let (Some(width), Some(height)) = (number("width"), number("height")) {
            check_dimensions(&file, clamp_u32(width), clamp_u32(height), limits)?;
        }
        let total = match number("nb_read_packets") {
            Some(0) => return Err(MediaError::new(file, "has a video track with no frames")),
            Some(total) => usize::try_from(total).unwrap_or(usize::MAX),
            None => return Err(MediaError::new(file, "has a video track whose frames ffprobe cannot count")),
        };
        let picks = even_indices(total, count);
        let last_pick = picks.last().copied().unwrap_or(0);

        let mut child = command(&tools.ffmpeg)
            .args(["-v", "error", "-nostdin", "-i"])
            .arg(&input)
            .args(["-map", "0:V:0", "-f", "image2pipe", "-c:v", "ppm", "-pix_fmt", "rgb24", "-"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| spawn_error(&file, "ffmpeg", &e))?;
        // Drain stderr on its own thread so that a chatty ffmpeg never blocks on a full pipe.
        let stderr = child.stderr.take().map(|mut pipe| {
            std::thread::spawn(move || {
                let mut text = Vec::new();
                let _ = pipe.read_to_end(&mut text);
                text
            })
        });
        let mut frames: BTreeMap<usize, Planar> = BTreeMap::new();
        let mut last: Option<Planar> = None;
        let mut read_error = None;
        let mut complete = false;
        if let Some(stdout) = child.stdout.take() {
            let mut stdout = BufReader::new(stdout);
            let mut size: Option<(usize, usize)> = None;
            let mut index = 0;
            while index <= last_pick {
                let (width, height) = match read_ppm_header(&mut stdout) {
                    Ok(Some(header)) => header,
                    Ok(None) => break,
                    Err(problem) => {
                        read_error = Some(problem);
                        break;
                    }
                };
                check_dimensions(&file, clamp_u32(width as u64), clamp_u32(height as u64), limits)?;
                if let Some((w, h)) = size.filter(|&s| s != (width, height)) {
                    return Err(MediaError::new(
                        file,
                        format!("changes size from {w}x{h} to {width}x{height} pixels at frame {index}"),
                    ));
                }
                size = Some((width, height));
                // The limits above bound the frame's size.
                let mut pixels = vec![0u8; width * height * 3];
                if stdout.read_exact(&mut pixels).is_err() {
                    read_error = Some("ffmpeg's output ends inside a frame".to_string());
                    break;
                }
                let planar = Planar::from_interleaved_u8(1, height, width, 3, &pixels);
                if picks.binary_search(&index).is_ok() {
                    frames.insert(index, planar.clone());
                }
                last = Some(planar);
                index += 1;
            }
            complete = index > last_pick;
        }
        if complete {
            // Everything picked is in: stop ffmpeg rather than let it decode the rest.
            let _ = child.kill();
        }
        let status = child.wait().map_err(|e| MediaError::new(&file, format!("ffmpeg failed: {e}")))?;
        let stderr = stderr.and_then(|t| t.join().ok()).unwrap_or_default();
        if !complete {
            if let Some(problem) = read_error {
                return Err(MediaError::new(file, format!("could not be decoded: {problem}")));
            }
            if last.is_none() || !status.success() {
                let reason = first_line(&stderr, &format!("ffmpeg gave no frames ({status})"));
                return Err(MediaError::new(file, format!("could not be decoded: {reason}")));
            }
        }
        let Some(last) = last else {
            return Err(MediaError::new(file, "could not be decoded: ffmpeg gave no frames"));
        };
        Ok(stack(picks.iter().map(|i| frames.get(i).unwrap_or(&last))))
    }

    /// Frames of one size, one after the other.
    fn stack<'a>(frames: impl Iterator<Item = &'a Planar>) -> Planar {
        let mut out = Planar { frames: 0, channels: 3, height: 0, width: 0, values: Vec::new() };
        for frame in frames {
            out.frames += frame.frames;
            (out.channels, out.height, out.width) = (frame.channels, frame.height, frame.width);
            out.values.extend_from_slice(&frame.values);
        }
        out
    }

    fn clamp_u32(value: u64) -> u32 {
        u32::try_from(value).unwrap_or(u32::MAX)
    }

    fn spawn_error(file: &str, program: &str, error: &std::io::Error) -> MediaError {
        if error.kind() == std::io::ErrorKind::NotFound {
            MediaError::new(file, NOT_INSTALLED)
        } else {
            MediaError::new(file, format!("cannot run {program}: {error}"))
        }
    }

    /// The first non-empty line of a tool's output, or `otherwise`.
    fn first_line(output: &[u8], otherwise: &str) -> String {
        String::from_utf8_lossy(output)
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .map_or_else(|| otherwise.to_string(), str::to_string)
    }

    /// The header of one binary PPM frame (`P6 width height 255`) from ffmpeg's pipe, the RGB
    /// bytes following; `None` at the end of the stream.
    fn read_ppm_header(reader: &mut impl BufRead) -> Result<Option<(usize, usize)>, String> {
        if reader.fill_buf().map_err(|e| e.to_string())?.is_empty() {
            return Ok(None);
        }
        let mut fields = Vec::new();
        while fields.len() < 4 {
            let mut token = Vec::new();
            loop {
                let mut byte = [0u8; 1];
                if reader.read(&mut byte).map_err(|e| e.to_string())? == 0 {
                    return Err("ffmpeg's output ends inside a frame header".to_string());
                }
                match byte[0] {
                    b'#' if token.is_empty() => {
                        let mut comment = Vec::new();
                        reader.read_until(b'\n', &mut comment).map_err(|e| e.to_string())?;
                    }
                    b' ' | b'\t' | b'\n' | b'\r' => {
                        if !token.is_empty() {
                            break;
                        }
                    }
                    other if token.len() < 16 => token.push(other),
                    _ => return Err("ffmpeg's output is not a PPM frame".to_string()),
                }
            }
            fields.push(String::from_utf8_lossy(&token).into_owned());
        }
        if fields[0] != "P6" {
            return Err(format!("ffmpeg's output is not an RGB PPM frame (it starts with {:?})", fields[0]));
        }
        let number = |text: &str| text.parse::<usize>().map_err(|_| format!("ffmpeg's frame header has {text:?}"));
        let (width, height, max) = (number(&fields[1])?, number(&fields[2])?, number(&fields[3])?);
        if max != 255 {
            return Err(format!("ffmpeg's frames have a maximum value of {max}, not 255"));
        }
        Ok(Some((width, height)))
    }
}

#[cfg(all(test, unix))]
#[allow(clippy::unwrap_used)]
mod tests {
    //! `frames_from_file` with stand-in programs: shell scripts that print what ffprobe and
    //! ffmpeg would, so that the parsing and picking run where ffmpeg is not installed.

    use std::path::{Path, PathBuf};

    use super::native::{Tools, frames_with_tools};
    use crate::Limits;

    /// A PPM stream of `sizes.len()` frames; frame k's pixel (x, y) is (10 k, x, y).
    fn ppm_stream(sizes: &[(usize, usize)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (k, &(width, height)) in sizes.iter().enumerate() {
            out.extend(format!("P6\n{width} {height}\n255\n").bytes());
            for y in 0..height {
                for x in 0..width {
                    out.extend([(10 * k) as u8, x as u8, y as u8]);
                }
            }
        }
        out
    }

    struct Fixture {
        dir: tempfile::TempDir,
        video: PathBuf,
    }

    impl Fixture {
        fn new() -> Fixture {
            let dir = tempfile::tempdir().unwrap();
            let video = dir.path().join("clip:1.mp4");
            std::fs::write(&video, b"not really a video").unwrap();
            Fixture { dir, video }
        }

        /// Tools running `probe` and `decode` as shell scripts.
        fn tools(&self, probe: &str, decode: &str) -> Tools {
            let script = |name: &str, body: &str| {
                let path = self.dir.path().join(name);
                std::fs::write(&path, body).unwrap();
                vec!["sh".into(), path.into_os_string()]
            };
            Tools { ffprobe: script("ffprobe.sh", probe), ffmpeg: script("ffmpeg.sh", decode) }
        }

        /// Tools whose ffprobe reports `width x height` and `packets`, and whose ffmpeg
        /// prints a PPM stream of frames of `sizes`.
        fn stream(&self, width: usize, height: usize, packets: usize, sizes: &[(usize, usize)]) -> Tools {
            let stream = self.dir.path().join("stream.ppm");
            std::fs::write(&stream, ppm_stream(sizes)).unwrap();
            let probe = format!(
                "echo \"$@\" > '{}'\nprintf 'width={width}\\nheight={height}\\nnb_read_packets={packets}\\n'\n",
                self.dir.path().join("probe-args").display()
            );
            self.tools(&probe, &format!("cat '{}'\n", stream.display()))
        }

        fn problem(&self, tools: &Tools, count: usize, limits: &Limits) -> String {
            problem_of(&self.video, tools, count, limits)
        }
    }

    fn problem_of(video: &Path, tools: &Tools, count: usize, limits: &Limits) -> String {
        let error = frames_with_tools(video, count, limits, tools).unwrap_err();
        assert_eq!(error.file, video.display().to_string());
        println!("{error}");
        error.problem
    }

    fn frame_value(planar: &m2ugen_core::media::Planar, frame: usize, channel: usize, x: usize, y: usize) -> f32 {
        planar.values[((frame * planar.channels + channel) * planar.height + y) * planar.width + x]
    }

    #[test]
    fn ffmpeg_not_installed() {
        let fixture = Fixture::new();
        let missing = Tools { ffprobe: vec!["m2ugen-no-such-ffprobe".into()], ffmpeg: vec!["m2ugen-no-such-ffmpeg".into()] };
        assert_eq!(
            fixture.problem(&missing, 8, &Limits::default()),
            "ffmpeg is not installed: give the video as a folder of frames"
        );
    }

    #[test]
    fn picks_evenly_from_the_pipe() {
        let fixture = Fixture::new();
        let tools = fixture.stream(16, 18, 5, &[(16, 18); 5]);
        let planar = frames_with_tools(&fixture.video, 2, &Limits::default(), &tools).unwrap();
        assert_eq!((planar.frames, planar.channels, planar.height, planar.width), (2, 3, 18, 16));
        // Frames 1 and 3 of 5.
        assert_eq!(frame_value(&planar, 0, 0, 4, 4), 10.0);
        assert_eq!(frame_value(&planar, 1, 0, 4, 4), 30.0);
        assert_eq!((frame_value(&planar, 1, 1, 5, 2), frame_value(&planar, 1, 2, 5, 2)), (5.0, 2.0));
        // ffprobe was asked about the first real video stream of the file, named safely.
        let args = std::fs::read_to_string(fixture.dir.path().join("probe-args")).unwrap();
        assert!(args.contains("-select_streams V:0"), "{args}");
        assert!(args.trim_end().ends_with(&format!("file:{}", fixture.video.display())), "{args}");
    }

    #[test]
    fn more_frames_asked_than_there_are_repeat() {
        let fixture = Fixture::new();
        let tools = fixture.stream(16, 16, 3, &[(16, 16); 3]);
        let planar = frames_with_tools(&fixture.video, 5, &Limits::default(), &tools).unwrap();
        // i * 3 / 5: frames 0, 0, 1, 1, 2.
        let firsts: Vec<f32> = (0..5).map(|f| frame_value(&planar, f, 0, 0, 0)).collect();
        assert_eq!(firsts, [0.0, 0.0, 10.0, 10.0, 20.0]);
    }

    #[test]
    fn fewer_frames_than_counted_repeat_the_last() {
        let fixture = Fixture::new();
        // ffprobe counts 5 packets, ffmpeg delivers 3 frames: picks 1 and 3 become 1 and 2.
        let tools = fixture.stream(16, 16, 5, &[(16, 16); 3]);
        let planar = frames_with_tools(&fixture.video, 2, &Limits::default(), &tools).unwrap();
        assert_eq!((frame_value(&planar, 0, 0, 0, 0), frame_value(&planar, 1, 0, 0, 0)), (10.0, 20.0));
    }

    #[test]
    fn no_video_track() {
        let fixture = Fixture::new();
        let tools = fixture.tools("exit 0\n", "exit 1\n");
        assert_eq!(fixture.problem(&tools, 8, &Limits::default()), "has no video track");
    }

    #[test]
    fn not_a_video() {
        let fixture = Fixture::new();
        let tools = fixture.tools("echo 'clip.mp4: Invalid data found when processing input' >&2\nexit 1\n", "exit 1\n");
        assert_eq!(
            fixture.problem(&tools, 8, &Limits::default()),
            "is not a video ffmpeg can read: clip.mp4: Invalid data found when processing input"
        );
    }

    #[test]
    fn decoding_fails() {
        let fixture = Fixture::new();
        let probe = "printf 'width=16\\nheight=16\\nnb_read_packets=4\\n'\n";
        let tools = fixture.tools(probe, "echo 'Error while decoding stream #0:0' >&2\nexit 1\n");
        assert_eq!(fixture.problem(&tools, 2, &Limits::default()), "could not be decoded: Error while decoding stream #0:0");
    }

    #[test]
    fn frames_change_size() {
        let fixture = Fixture::new();
        let tools = fixture.stream(16, 16, 4, &[(16, 16), (16, 16), (20, 16), (16, 16)]);
        assert_eq!(
            fixture.problem(&tools, 4, &Limits::default()),
            "changes size from 16x16 to 20x16 pixels at frame 2"
        );
    }

    #[test]
    fn frames_too_small() {
        let fixture = Fixture::new();
        let tools = fixture.stream(8, 8, 2, &[(8, 8); 2]);
        assert_eq!(
            fixture.problem(&tools, 2, &Limits::default()),
            "is 8x8 pixels; images must be at least 16 pixels on each side"
        );
    }

    #[test]
    fn stream_cut_inside_a_frame() {
        let fixture = Fixture::new();
        let stream = fixture.dir.path().join("cut.ppm");
        let full = ppm_stream(&[(16, 16); 3]);
        std::fs::write(&stream, &full[..full.len() / 2]).unwrap();
        let probe = "printf 'width=16\\nheight=16\\nnb_read_packets=3\\n'\n";
        let tools = fixture.tools(probe, &format!("cat '{}'\n", stream.display()));
        assert_eq!(fixture.problem(&tools, 3, &Limits::default()), "could not be decoded: ffmpeg's output ends inside a frame");
    }

    #[test]
    fn file_problems_come_first() {
        let fixture = Fixture::new();
        let tools = fixture.stream(16, 16, 2, &[(16, 16); 2]);
        let missing = fixture.dir.path().join("missing.mp4");
        assert!(problem_of(&missing, &tools, 2, &Limits::default()).starts_with("cannot be read: "));
        let empty = fixture.dir.path().join("empty.mp4");
        std::fs::write(&empty, b"").unwrap();
        assert_eq!(problem_of(&empty, &tools, 2, &Limits::default()), "is empty");
        let limits = Limits { max_file_bytes: 10, ..Limits::default() };
        assert_eq!(fixture.problem(&tools, 2, &limits), "is 18 bytes; the limit is 10 bytes");
        assert_eq!(fixture.problem(&tools, 0, &Limits::default()), "0 frames were asked for");
    }
}
