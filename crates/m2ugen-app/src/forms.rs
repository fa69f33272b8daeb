//! The page's forms and addresses, checked: the model URL, a music request, what kind of file
//! an upload is. Plain Rust, tested natively; every refusal names the field and says what to give.

use crate::protocol::{Medium, MusicRequest};

/// Longest model URL accepted.
pub const MAX_MODEL_URL: usize = 2048;
/// Largest seed the page takes (JavaScript numbers are exact up to 2^53).
pub const MAX_SEED: u64 = (1 << 53) - 1;

/// A model URL the page will fetch from: a path on this site, or an absolute URL whose origin
/// the page's Content-Security-Policy allows (`connect-src`, as built: see the README's
/// `M2UGEN_MODEL_ORIGIN`); at most 2048 bytes.
pub fn check_model_url<'a>(url: &'a str, allowed: &[String]) -> Result<&'a str, String> {
    let url = url.trim();
    if url.is_empty() || url.len() > MAX_MODEL_URL {
        return Err(format!("the model URL must be 1 to {MAX_MODEL_URL} characters"));
    }
    // Browsers drop tabs and newlines inside URLs and read '\\' as '/': a path with any of them
    // could name another host ("/\\evil.example", "/\t/evil.example").
    if url.chars().any(|c| c.is_control() || c.is_whitespace() || c == '\\') {
        return Err("the model URL may not hold spaces, control characters or backslashes".into());
    }
    let lower = url.to_ascii_lowercase();
    if !lower.contains(':') && !lower.starts_with("//") {
        return Ok(url);
    }
    let Some(rest) = lower.strip_prefix("https://").or_else(|| lower.strip_prefix("http://")) else {
        return Err(format!("the model URL '{url}' is neither a path on this site nor an http(s) URL"));
    };
    let scheme = &lower[..lower.len() - rest.len()];
    let origin = format!("{scheme}{}", rest.split(['/', '?', '#']).next().unwrap_or(""));
    if allowed.iter().any(|a| a.trim_end_matches('/').eq_ignore_ascii_case(&origin)) {
        Ok(url)
    } else {
        Err(format!("the model URL's origin {origin} is not allowed by this page's Content-Security-Policy: serve the model beside the page, or build the page with M2UGEN_MODEL_ORIGIN={origin} (see the README)"))
    }
}

/// What kind of medium a file is, from its type or its name.
pub fn medium_of_file(name: &str, mime: &str) -> Option<Medium> {
    let ext = name.rsplit('.').next().unwrap_or("").to_ascii_lowercase();
    if mime.starts_with("audio/") || ["wav", "flac", "mp3", "ogg", "oga", "opus", "m4a", "aac", "weba"].contains(&ext.as_str()) {
        Some(Medium::Music)
    } else if mime.starts_with("image/") || ["png", "jpg", "jpeg", "webp", "gif", "bmp", "avif"].contains(&ext.as_str()) {
        Some(Medium::Image)
    } else if mime.starts_with("video/") || ["mp4", "webm", "mov", "mkv", "ogv"].contains(&ext.as_str()) {
        Some(Medium::Video)
    } else {
        None
    }
}

/// The music form's fields as typed, kept in the browser between visits (older saved forms
/// lack the newer fields: they take the defaults).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct MusicForm {
    /// Length in seconds.
    pub seconds: String,
    /// Seed of every draw.
    pub seed: String,
    /// Guidance scale.
    pub guidance: String,
    /// Conditioning mode (empty: the decoder's default).
    pub mode: String,
    /// The decoder's name (empty: the model's default).
    pub decoder: String,
    /// AudioLDM 2's denoising steps.
    pub steps: String,
    /// AudioLDM 2's negative prompt.
    pub negative: String,
}

impl Default for MusicForm {
    fn default() -> Self {
        MusicForm {
            seconds: "5".into(),
            seed: "0".into(),
            guidance: "3".into(),
            mode: String::new(),
            decoder: String::new(),
            steps: "200".into(),
            negative: m2ugen_pipeline::audioldm2::DEFAULT_NEGATIVE.into(),
        }
    }
}

/// A music request from the form, each field checked and named: AudioLDM 2's steps and
/// negative prompt only when it is the decoder (they are hidden otherwise).
pub fn music_request(prompt: &str, form: &MusicForm, answer_tokens: &str) -> Result<MusicRequest, String> {
    use m2ugen_pipeline::studio::Decoder;
    let seconds: f32 = form.seconds.trim().parse().map_err(|_| format!("length '{}': give a number of seconds", form.seconds))?;
    let seed: u64 = form.seed.trim().parse().ok().filter(|s| *s <= MAX_SEED).ok_or_else(|| format!("seed '{}': give a whole number from 0 to {MAX_SEED}", form.seed))?;
    let guidance: f32 = form.guidance.trim().parse().map_err(|_| format!("guidance '{}': give a number (1 turns guidance off)", form.guidance))?;
    let answer_tokens = answer_length(answer_tokens)?;
    let decoder = if form.decoder.is_empty() { None } else { Some(form.decoder.parse::<Decoder>().map_err(|_| format!("decoder '{}': choose musicgen or audioldm2", form.decoder))?) };
    let most = m2ugen_pipeline::diffusion::MAX_STEPS;
    let steps = match decoder {
        Some(Decoder::Audioldm2) => form.steps.trim().parse::<u32>().ok().filter(|n| (1..=most as u32).contains(n)).ok_or_else(|| format!("steps '{}': give a whole number of denoising steps from 1 to {most}", form.steps))?,
        _ => 0,
    };
    let request = MusicRequest {
        prompt: prompt.to_string(),
        mode: (!form.mode.is_empty()).then(|| form.mode.clone()),
        seconds,
        guidance,
        seed,
        temperature: 1.0,
        top_k: 250,
        answer_tokens,
        decoder: decoder.map(|d| d.name().to_string()),
        steps,
        negative: form.negative.clone(),
    };
    crate::engine::check_request(&request, decoder.unwrap_or(Decoder::Musicgen)).map_err(|e| e.1)?;
    Ok(request)
}

/// The answer length field: 1 to [`crate::engine::MAX_ANSWER_TOKENS`] tokens.
pub fn answer_length(text: &str) -> Result<u32, String> {
    let max = crate::engine::MAX_ANSWER_TOKENS;
    text.trim().parse::<u32>().ok().filter(|n| (1..=max).contains(n)).ok_or_else(|| format!("answer length '{text}': give a whole number of tokens from 1 to {max}"))
}

/// A model the page knows by name: where its converted folder is expected, under the model
/// origin the page is built for (or `models/` on this site), and what it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Profile {
    /// What the picker shows.
    pub label: &'static str,
    /// The folder `m2ugen convert --out` writes (the README gives each one's command).
    pub folder: &'static str,
}

/// The models the picker offers after the bundled one: M2UGen with either MusicGen, M2UGen with
/// AudioLDM 2, MU-LLaMA for questions about music, and MusicGen alone for text to music.
pub const PROFILES: [Profile; 5] = [
    Profile { label: "M2UGen with MusicGen small", folder: "m2ugen-musicgen-small" },
    Profile { label: "M2UGen with MusicGen medium", folder: "m2ugen-musicgen-medium" },
    Profile { label: "M2UGen with AudioLDM 2", folder: "m2ugen-audioldm2" },
    Profile { label: "MU-LLaMA (questions about music)", folder: "mu-llama" },
    Profile { label: "MusicGen small alone (text to music)", folder: "musicgen-small" },
];

/// The URL of `profile`'s folder: under the first origin the page may fetch models from (as
/// built with `M2UGEN_MODEL_ORIGIN`), else under `models/` on this site.
pub fn profile_url(profile: &Profile, allowed: &[String]) -> String {
    match allowed.first() {
        Some(origin) => format!("{}/{}/", origin.trim_end_matches('/'), profile.folder),
        None => format!("models/{}/", profile.folder),
    }
}
