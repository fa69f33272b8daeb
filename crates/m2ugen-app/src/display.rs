//! What the page draws and writes from numbers: a waveform's outline, sizes, rates and times.
//! Plain Rust, tested natively.

/// The lowest and highest sample of each of `bins` equal stretches of `samples` (fewer bins
/// when there are fewer samples; none for no samples).
pub fn peaks(samples: &[f32], bins: usize) -> Vec<(f32, f32)> {
    let bins = bins.min(samples.len());
    (0..bins)
        .map(|b| {
            let part = &samples[b * samples.len() / bins..(b + 1) * samples.len() / bins];
            part.iter().filter(|v| v.is_finite()).fold((0f32, 0f32), |(lo, hi), &v| (lo.min(v), hi.max(v)))
        })
        .collect()
}

/// An SVG path drawing `peaks` as vertical bars in a `width` × `height` box, zero in the
/// middle, ±1 at the edges (louder samples are clipped to the box).
pub fn waveform_path(peaks: &[(f32, f32)], width: f32, height: f32) -> String {
    let mid = height / 2.0;
    let step = width / peaks.len().max(1) as f32;
    let y = |v: f32| mid - v.clamp(-1.0, 1.0) * mid;
    let mut d = String::with_capacity(peaks.len() * 24);
    for (i, &(lo, hi)) in peaks.iter().enumerate() {
        let x = (i as f32 + 0.5) * step;
        // At least a hairline, so silence still shows where the track is.
        let (top, bottom) = (y(hi).min(mid - 0.5), y(lo).max(mid + 0.5));
        d.push_str(&format!("M{x:.1} {top:.1}V{bottom:.1}"));
    }
    d
}

/// Bytes in words: `512 B`, `1.5 KiB`, `3.2 MiB`, `1.1 GiB`.
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// Seconds left in words: `12 s`, `3 min 5 s`, `2 h 1 min`; `—` when unknown.
pub fn format_eta(seconds: Option<f64>) -> String {
    let Some(s) = seconds.filter(|s| s.is_finite() && *s >= 0.0) else { return "—".into() };
    let s = s.round() as u64;
    match s {
        0..=59 => format!("{s} s"),
        60..=3599 => format!("{} min {} s", s / 60, s % 60),
        _ => format!("{} h {} min", s / 3600, s / 60 % 60),
    }
}

/// A loading line: `3.2 MiB of 10.0 MiB (32%), 1.5 MiB/s, 5 s left`, with the cached share.
pub fn format_progress(done: u64, total: u64, cached: u64, rate: f64, eta_s: Option<f64>) -> String {
    let percent = if total > 0 { done as f64 * 100.0 / total as f64 } else { 100.0 };
    let mut line = format!("{} of {} ({percent:.0}%)", format_bytes(done), format_bytes(total));
    if cached > 0 {
        line.push_str(&format!(", {} from this browser's cache", format_bytes(cached)));
    }
    if rate > 0.0 {
        line.push_str(&format!(", {}/s, {} left", format_bytes(rate as u64), format_eta(eta_s)));
    }
    line
}

/// A duration of audio: `0:07.5`, `2:03.0`.
pub fn format_duration(seconds: f64) -> String {
    let seconds = seconds.max(0.0);
    let minutes = (seconds / 60.0).floor();
    format!("{}:{:04.1}", minutes as u64, seconds - minutes * 60.0)
}
