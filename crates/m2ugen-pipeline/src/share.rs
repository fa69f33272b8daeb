//! Share links: a generated track as a URL fragment that reproduces it exactly with no server,
//! carrying its EnCodec codes (not a request to generate again), the prompt, and the model's id
//! and manifest hash, so the page that opens it fetches only EnCodec's weights and decodes.
//!
//! **Format** (version 1): `#m2ugen=1.` then base64url (no padding) of a zlib stream (deflate
//! with its Adler-32 check, so a damaged link is caught; miniz_oxide) of:
//!
//! | field | bytes |
//! |---|---|
//! | model id length, model id (ASCII letters, digits, `._-`) | 1, at most [`MAX_MODEL_ID`] |
//! | manifest SHA-256 | 32 |
//! | prompt length (LE), prompt (UTF-8) | 2, at most [`MAX_PROMPT`] |
//! | codebooks, bits per code | 1, 1 |
//! | frames (LE) | 4, at most [`MAX_FRAMES`] |
//! | the codes `(codebooks, frames)`, bit-packed LSB first | ⌈codebooks · frames · bits / 8⌉ |
//!
//! **Version 2: a diffusion recipe.** AudioLDM 2's latents are too large for a link (8 x 250 x
//! 16 values for 10 s), so its tracks are shared as what makes them again: `#m2ugen=2.` then the
//! same encoding of the model id and manifest hash, the decoder (1: AudioLDM 2), the prompt as
//! typed, the text that conditioned it (the prompt, or the LLM's caption in caption mode), the
//! negative prompt, and the seed (8 bytes), steps (2), guidance and seconds (f32 each),
//! waveforms made and which one this is (1 each). The page that opens it makes the track again
//! with the same model: the same samples on the same GPU and browser, equal within floating-point
//! rounding elsewhere. Embedding-mode tracks (conditioned on the projector's 137 216 values)
//! cannot be shared this way.
//!
//! **Untrusted input.** [`parse`] checks the link's length before decoding, inflates with a
//! limit (no deflate bomb), and checks every field's range and that nothing is left over; every
//! failure is a [`ShareError`] saying what is wrong, never a panic.

use base64::Engine;

/// The fragment's prefix, version included.
pub const PREFIX: &str = "#m2ugen=1.";
/// Longest link accepted, in bytes (the whole URL).
pub const MAX_LINK: usize = 512 * 1024;
/// Longest payload once inflated, in bytes.
pub const MAX_PAYLOAD: usize = 512 * 1024;
/// Longest model id, in bytes.
pub const MAX_MODEL_ID: usize = 128;
/// Longest prompt, in bytes.
pub const MAX_PROMPT: usize = 2000;
/// Most frames: five minutes at 50 a second.
pub const MAX_FRAMES: usize = 300 * crate::music::FRAME_RATE;
/// Most codebooks.
pub const MAX_CODEBOOKS: usize = 16;

/// A shared track.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SharedTrack {
    /// The model's id (its manifest's `model`).
    pub model: String,
    /// SHA-256 of the model's `manifest.json`.
    pub manifest_sha256: [u8; 32],
    /// The prompt it was made from.
    pub prompt: String,
    /// Codebooks per frame.
    pub codebooks: usize,
    /// Codebook size (codes are below it; the link stores ⌈log2⌉ bits a code, so a parsed
    /// link gives the power of two at or above the original: 2048 for MusicGen).
    pub codebook_size: usize,
    /// The codes, `(codebooks, frames)` row-major.
    pub codes: Vec<u32>,
}

impl SharedTrack {
    /// Frames held.
    pub fn frames(&self) -> usize {
        self.codes.len() / self.codebooks.max(1)
    }
}

/// The fragment's prefix of a diffusion recipe (version 2).
pub const RECIPE_PREFIX: &str = "#m2ugen=2.";
/// Most waveforms a recipe names.
pub const MAX_WAVEFORMS: usize = 8;
/// Most denoising steps a recipe names.
pub const MAX_STEPS: usize = 1000;
/// Longest track a recipe names, in seconds.
pub const MAX_SECONDS: f32 = 60.0;

/// A track of a diffusion decoder, as the request that makes it again.
#[derive(Clone, Debug, PartialEq)]
pub struct SharedRecipe {
    /// The model's id (its manifest's `model`).
    pub model: String,
    /// SHA-256 of the model's `manifest.json`.
    pub manifest_sha256: [u8; 32],
    /// The prompt as the person typed it.
    pub prompt: String,
    /// The text that conditioned the decoder (the prompt, or the LLM's caption).
    pub conditioning: String,
    /// The negative prompt of guidance.
    pub negative: String,
    /// Seed of the initial noise.
    pub seed: u64,
    /// Denoising steps.
    pub steps: usize,
    /// Guidance scale.
    pub guidance: f32,
    /// Length in seconds.
    pub seconds: f32,
    /// Waveforms made together.
    pub waveforms: usize,
    /// Which of them this is.
    pub index: usize,
}

/// What a link carries.
#[derive(Clone, Debug, PartialEq)]
pub enum Shared {
    /// A track's codes (version 1).
    Codes(SharedTrack),
    /// A diffusion recipe (version 2).
    Recipe(SharedRecipe),
}

/// Why a link cannot be opened, in words a person can act on.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ShareError {
    /// Not one of ours.
    #[error("this is not an m2ugen share link (it should start with {PREFIX})")]
    NotALink,
    /// A version this page does not read.
    #[error("this share link is version {0}; this page reads versions 1 and 2: open it with the page that made it, or a newer one")]
    Version(String),
    /// Too long to be one.
    #[error("this share link is {0} bytes long, over the {MAX_LINK} a link may have")]
    TooLong(usize),
    /// Damaged: not base64url, not deflate, or cut short.
    #[error("this share link is damaged ({0}): copy the whole link again")]
    Damaged(&'static str),
    /// A field out of its range.
    #[error("this share link is damaged: {0}")]
    Field(String),
    /// A track that cannot be shared.
    #[error("this track cannot be shared: {0}")]
    Unshareable(String),
}

fn bits_for(size: usize) -> usize {
    (usize::BITS - (size.max(2) - 1).leading_zeros()) as usize
}

/// The link fragment of `track` (`#m2ugen=1.…`).
pub fn link(track: &SharedTrack) -> Result<String, ShareError> {
    let bad = |m: String| Err(ShareError::Unshareable(m));
    if !model_id_ok(&track.model) {
        return bad(format!("the model id must be 1 to {MAX_MODEL_ID} letters, digits, '.', '_' or '-'"));
    }
    if track.prompt.len() > MAX_PROMPT {
        return bad(format!("the prompt is {} bytes, over {MAX_PROMPT}", track.prompt.len()));
    }
    if track.codebooks == 0 || track.codebooks > MAX_CODEBOOKS || !track.codes.len().is_multiple_of(track.codebooks) {
        return bad(format!("{} codes do not fill {} codebooks", track.codes.len(), track.codebooks));
    }
    let frames = track.frames();
    if frames == 0 || frames > MAX_FRAMES {
        return bad(format!("{frames} frames; a link holds 1 to {MAX_FRAMES}"));
    }
    let bits = bits_for(track.codebook_size);
    if bits > 16 || track.codes.iter().any(|&c| c as usize >= track.codebook_size) {
        return bad(format!("codes must be below the codebook size {}, itself at most 65536", track.codebook_size));
    }
    let mut p = Vec::with_capacity(64 + track.prompt.len() + track.codes.len() * bits / 8);
    p.push(track.model.len() as u8);
    p.extend_from_slice(track.model.as_bytes());
    p.extend_from_slice(&track.manifest_sha256);
    p.extend_from_slice(&(track.prompt.len() as u16).to_le_bytes());
    p.extend_from_slice(track.prompt.as_bytes());
    p.push(track.codebooks as u8);
    p.push(bits as u8);
    p.extend_from_slice(&(frames as u32).to_le_bytes());
    let (mut acc, mut held) = (0u64, 0usize);
    for &c in &track.codes {
        acc |= (c as u64) << held;
        held += bits;
        while held >= 8 {
            p.push(acc as u8);
            acc >>= 8;
            held -= 8;
        }
    }
    if held > 0 {
        p.push(acc as u8);
    }
    encoded(PREFIX, &p)
}

fn encoded(prefix: &str, payload: &[u8]) -> Result<String, ShareError> {
    let deflated = miniz_oxide::deflate::compress_to_vec_zlib(payload, 9);
    let out = format!("{prefix}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(deflated));
    if out.len() > MAX_LINK {
        return Err(ShareError::Unshareable(format!("its link would be {} bytes, over the {MAX_LINK} a link may have", out.len())));
    }
    Ok(out)
}

fn push_text(p: &mut Vec<u8>, text: &str, what: &str) -> Result<(), ShareError> {
    if text.len() > MAX_PROMPT {
        return Err(ShareError::Unshareable(format!("the {what} is {} bytes, over {MAX_PROMPT}", text.len())));
    }
    p.extend_from_slice(&(text.len() as u16).to_le_bytes());
    p.extend_from_slice(text.as_bytes());
    Ok(())
}

/// The link fragment of `recipe` (`#m2ugen=2.…`).
pub fn recipe_link(recipe: &SharedRecipe) -> Result<String, ShareError> {
    let bad = |m: String| Err(ShareError::Unshareable(m));
    if !model_id_ok(&recipe.model) {
        return bad(format!("the model id must be 1 to {MAX_MODEL_ID} letters, digits, '.', '_' or '-'"));
    }
    if let Err(problem) = recipe_ranges(recipe) {
        return bad(problem);
    }
    let mut p = Vec::with_capacity(96 + recipe.prompt.len() + recipe.conditioning.len() + recipe.negative.len());
    p.push(recipe.model.len() as u8);
    p.extend_from_slice(recipe.model.as_bytes());
    p.extend_from_slice(&recipe.manifest_sha256);
    p.push(DECODER_AUDIOLDM2);
    push_text(&mut p, &recipe.prompt, "prompt")?;
    push_text(&mut p, &recipe.conditioning, "conditioning text")?;
    push_text(&mut p, &recipe.negative, "negative prompt")?;
    p.extend_from_slice(&recipe.seed.to_le_bytes());
    p.extend_from_slice(&(recipe.steps as u16).to_le_bytes());
    p.extend_from_slice(&recipe.guidance.to_le_bytes());
    p.extend_from_slice(&recipe.seconds.to_le_bytes());
    p.push(recipe.waveforms as u8);
    p.push(recipe.index as u8);
    encoded(RECIPE_PREFIX, &p)
}

/// The decoder byte of AudioLDM 2 in a recipe.
const DECODER_AUDIOLDM2: u8 = 1;

/// Why a recipe's numbers are out of range, if they are.
fn recipe_ranges(r: &SharedRecipe) -> Result<(), String> {
    if r.steps == 0 || r.steps > MAX_STEPS {
        return Err(format!("{} steps (1 to {MAX_STEPS})", r.steps));
    }
    if !(r.guidance.is_finite() && (0.0..=30.0).contains(&r.guidance)) {
        return Err(format!("guidance {} (0 to 30)", r.guidance));
    }
    if !(r.seconds.is_finite() && r.seconds > 0.0 && r.seconds <= MAX_SECONDS) {
        return Err(format!("{} s (more than 0, at most {MAX_SECONDS})", r.seconds));
    }
    if r.waveforms == 0 || r.waveforms > MAX_WAVEFORMS || r.index >= r.waveforms {
        return Err(format!("waveform {} of {} (1 to {MAX_WAVEFORMS} waveforms)", r.index + 1, r.waveforms));
    }
    if r.conditioning.trim().is_empty() {
        return Err("the conditioning text is empty".into());
    }
    Ok(())
}

/// A model id a link may carry: 1 to [`MAX_MODEL_ID`] ASCII letters, digits, `.`, `_`, `-`
/// (the page looks it up among the models it knows; it is never a URL or a path).
fn model_id_ok(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_MODEL_ID && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// Reads `bytes` field by field, each read checked against what is left.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], ShareError> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len()).ok_or_else(|| ShareError::Field(format!("it ends inside the {what}")))?;
        let s = &self.bytes[self.at..end];
        self.at = end;
        Ok(s)
    }

    fn text(&mut self, n: usize, what: &str) -> Result<String, ShareError> {
        String::from_utf8(self.take(n, what)?.to_vec()).map_err(|_| ShareError::Field(format!("the {what} is not text")))
    }

    fn model(&mut self) -> Result<(String, [u8; 32]), ShareError> {
        let n = self.take(1, "model id")?[0] as usize;
        if n == 0 || n > MAX_MODEL_ID {
            return Err(ShareError::Field(format!("a model id of {n} bytes (1 to {MAX_MODEL_ID})")));
        }
        let model = self.text(n, "model id")?;
        if !model_id_ok(&model) {
            return Err(ShareError::Field("the model id has characters other than letters, digits, '.', '_' and '-'".into()));
        }
        let mut manifest_sha256 = [0u8; 32];
        manifest_sha256.copy_from_slice(self.take(32, "manifest hash")?);
        Ok((model, manifest_sha256))
    }

    fn prompt(&mut self, what: &str) -> Result<String, ShareError> {
        let n = self.take(2, what)?;
        let n = u16::from_le_bytes([n[0], n[1]]) as usize;
        if n > MAX_PROMPT {
            return Err(ShareError::Field(format!("a {what} of {n} bytes (at most {MAX_PROMPT})")));
        }
        self.text(n, what)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], ShareError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N, what)?);
        Ok(a)
    }

    fn recipe(&mut self, model: String, manifest_sha256: [u8; 32]) -> Result<SharedRecipe, ShareError> {
        let decoder = self.take(1, "decoder")?[0];
        if decoder != DECODER_AUDIOLDM2 {
            return Err(ShareError::Field(format!("decoder {decoder} (1 is AudioLDM 2, the only one shared as a recipe)")));
        }
        let prompt = self.prompt("prompt")?;
        let conditioning = self.prompt("conditioning text")?;
        let negative = self.prompt("negative prompt")?;
        let seed = u64::from_le_bytes(self.array("seed")?);
        let steps = u16::from_le_bytes(self.array("steps")?) as usize;
        let guidance = f32::from_le_bytes(self.array("guidance")?);
        let seconds = f32::from_le_bytes(self.array("length")?);
        let waveforms = self.take(1, "waveform count")?[0] as usize;
        let index = self.take(1, "waveform index")?[0] as usize;
        if self.at != self.bytes.len() {
            return Err(ShareError::Field(format!("{} bytes follow the recipe", self.bytes.len() - self.at)));
        }
        let recipe = SharedRecipe { model, manifest_sha256, prompt, conditioning, negative, seed, steps, guidance, seconds, waveforms, index };
        recipe_ranges(&recipe).map_err(ShareError::Field)?;
        Ok(recipe)
    }
}

/// Parses a link (the whole URL, or its fragment) of either version into what it carries.
pub fn parse_any(url: &str) -> Result<Shared, ShareError> {
    if url.len() > MAX_LINK {
        return Err(ShareError::TooLong(url.len()));
    }
    let fragment = url.find('#').map_or("", |i| &url[i..]);
    let Some(rest) = fragment.strip_prefix("#m2ugen=") else { return Err(ShareError::NotALink) };
    let (version, body) = match (rest.strip_prefix("1."), rest.strip_prefix("2.")) {
        (Some(body), _) => (1, body),
        (_, Some(body)) => (2, body),
        _ => {
            let version: String = rest.chars().take_while(|c| *c != '.').take(8).collect();
            return Err(ShareError::Version(if version.is_empty() { "?".into() } else { version }));
        }
    };
    let deflated = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(body).map_err(|_| ShareError::Damaged("not base64url"))?;
    let p = miniz_oxide::inflate::decompress_to_vec_zlib_with_limit(&deflated, MAX_PAYLOAD).map_err(|_| ShareError::Damaged("it does not decompress, or decompresses past its limit"))?;
    let mut r = Reader { bytes: &p, at: 0 };
    let (model, manifest_sha256) = r.model()?;
    if version == 2 {
        return r.recipe(model, manifest_sha256).map(Shared::Recipe);
    }
    let prompt = r.prompt("prompt")?;
    let codebooks = r.take(1, "codebook count")?[0] as usize;
    let bits = r.take(1, "code width")?[0] as usize;
    let f = r.take(4, "frame count")?;
    let frames = u32::from_le_bytes([f[0], f[1], f[2], f[3]]) as usize;
    if codebooks == 0 || codebooks > MAX_CODEBOOKS || bits == 0 || bits > 16 || frames == 0 || frames > MAX_FRAMES {
        return Err(ShareError::Field(format!("{codebooks} codebooks of {bits}-bit codes over {frames} frames (1 to {MAX_CODEBOOKS}, 1 to 16, 1 to {MAX_FRAMES})")));
    }
    let count = codebooks * frames;
    let packed = r.take((count * bits).div_ceil(8), "codes")?;
    if r.at != p.len() {
        return Err(ShareError::Field(format!("{} bytes follow the codes", p.len() - r.at)));
    }
    let mut codes = Vec::with_capacity(count);
    let (mut acc, mut held, mut bytes) = (0u64, 0usize, packed.iter());
    for _ in 0..count {
        while held < bits {
            acc |= (*bytes.next().unwrap_or(&0) as u64) << held;
            held += 8;
        }
        codes.push((acc & ((1u64 << bits) - 1)) as u32);
        acc >>= bits;
        held -= bits;
    }
    Ok(Shared::Codes(SharedTrack { model, manifest_sha256, prompt, codebooks, codebook_size: 1 << bits, codes }))
}

/// Parses a version-1 link (a track's codes); a recipe is refused as another version.
pub fn parse(url: &str) -> Result<SharedTrack, ShareError> {
    match parse_any(url)? {
        Shared::Codes(track) => Ok(track),
        Shared::Recipe(_) => Err(ShareError::Version("2".into())),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use m2ugen_core::rng::Rng;

    fn track(seconds: usize, rng: &mut Rng) -> SharedTrack {
        let frames = seconds * 50;
        SharedTrack { model: "m2ugen-musicgen-small".into(), manifest_sha256: [7; 32], prompt: "a calm jazz piece with a soft piano".into(), codebooks: 4, codebook_size: 2048, codes: (0..4 * frames).map(|_| rng.below(2048) as u32).collect() }
    }

    #[test]
    fn links_round_trip_and_their_lengths_are_known() {
        let mut rng = Rng::new(1);
        let ten = track(10, &mut rng);
        let link10 = link(&ten).unwrap();
        assert!(link10.starts_with("#m2ugen=1."));
        assert_eq!(parse(&format!("https://example.org/m2ugen/{link10}")).unwrap(), ten);
        let thirty = track(30, &mut rng);
        let link30 = link(&thirty).unwrap();
        assert_eq!(parse(&link30).unwrap(), thirty);
        // Random codes are the worst case (real ones repeat and deflate): 2000 codes of 11 bits
        // are 2750 bytes, 3667 in base64.
        println!("link lengths: 10 s {} bytes, 30 s {} bytes", link10.len(), link30.len());
        assert!((3600..4000).contains(&link10.len()), "10 s: {} bytes", link10.len());
        assert!((11_000..11_500).contains(&link30.len()), "30 s: {} bytes", link30.len());
        // The codebook size comes back as its power of two: 2048 stays 2048, 64 stays 64.
        let small = SharedTrack { codebook_size: 64, codes: ten.codes.iter().map(|c| c % 64).collect(), ..ten.clone() };
        assert_eq!(parse(&link(&small).unwrap()).unwrap(), small);
    }

    #[test]
    fn bad_links_are_named() {
        assert_eq!(parse("https://example.org/"), Err(ShareError::NotALink));
        assert_eq!(parse("#m2ugen=3.AAAA"), Err(ShareError::Version("3".into())));
        assert_eq!(parse("#m2ugen=1.!!!"), Err(ShareError::Damaged("not base64url")));
        assert!(matches!(parse("#m2ugen=1.AAAA"), Err(ShareError::Damaged(_))));
        assert_eq!(parse(&"#".repeat(MAX_LINK + 1)), Err(ShareError::TooLong(MAX_LINK + 1)));
        // Valid deflate of a payload cut short, and one with bytes after the codes.
        let mut rng = Rng::new(2);
        let t = track(1, &mut rng);
        let whole = miniz_oxide::inflate::decompress_to_vec_zlib(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(&link(&t).unwrap()[PREFIX.len()..]).unwrap()).unwrap();
        let wrap = |p: &[u8]| format!("{PREFIX}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(miniz_oxide::deflate::compress_to_vec_zlib(p, 6)));
        assert_eq!(parse(&wrap(&whole[..whole.len() - 1])), Err(ShareError::Field("it ends inside the codes".into())));
        let mut longer = whole.clone();
        longer.push(0);
        assert_eq!(parse(&wrap(&longer)), Err(ShareError::Field("1 bytes follow the codes".into())));
        // A deflate bomb: a megabyte of zeros inflates past the limit.
        assert!(matches!(parse(&wrap(&vec![0u8; 1 << 20])), Err(ShareError::Damaged(_))));
        // Unshareable tracks are refused when the link is made.
        assert!(link(&SharedTrack { codes: vec![5000], codebooks: 1, ..t.clone() }).is_err());
        assert!(link(&SharedTrack { prompt: "x".repeat(MAX_PROMPT + 1), ..t }).is_err());
    }

    /// 100 000 random and mutated links: none panics, and each one that is not a valid link gets
    /// a message.
    #[test]
    fn random_and_mutated_links_never_panic() {
        let mut rng = Rng::new(3);
        let valid = link(&track(2, &mut rng)).unwrap();
        let valid_recipe = recipe_link(&recipe()).unwrap();
        let alphabet: Vec<char> = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_#=.!%é".chars().collect();
        let (mut ok, mut rejected) = (0, 0);
        for i in 0..100_000 {
            let candidate: String = match i % 4 {
                // Random text after our prefix.
                0 => PREFIX.to_string() + &(0..rng.below(200)).map(|_| alphabet[rng.below(alphabet.len())]).collect::<String>(),
                // A valid link with characters replaced.
                1 => {
                    let base = if i % 8 == 1 { &valid } else { &valid_recipe };
                    let mut c: Vec<char> = base.chars().collect();
                    for _ in 0..1 + rng.below(4) {
                        let at = PREFIX.len() + rng.below(c.len() - PREFIX.len());
                        c[at] = alphabet[rng.below(alphabet.len() - 5)];
                    }
                    c.into_iter().collect()
                }
                // A valid link cut short.
                2 if i % 8 == 2 => valid[..PREFIX.len() + rng.below(valid.len() - PREFIX.len())].to_string(),
                2 => valid_recipe[..RECIPE_PREFIX.len() + rng.below(valid_recipe.len() - RECIPE_PREFIX.len())].to_string(),
                // Random deflate streams, well encoded.
                _ => format!("{}{}", if i % 8 == 3 { PREFIX } else { RECIPE_PREFIX }, base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(miniz_oxide::deflate::compress_to_vec_zlib(&(0..rng.below(120)).map(|_| rng.below(256) as u8).collect::<Vec<_>>(), 1))),
            };
            match parse_any(&candidate) {
                Ok(Shared::Codes(t)) => {
                    ok += 1;
                    assert!(t.codes.iter().all(|&c| (c as usize) < t.codebook_size) && t.frames() <= MAX_FRAMES);
                }
                Ok(Shared::Recipe(r)) => {
                    ok += 1;
                    assert!(recipe_ranges(&r).is_ok());
                }
                Err(e) => {
                    rejected += 1;
                    assert!(!e.to_string().is_empty());
                }
            }
        }
        assert_eq!(ok + rejected, 100_000);
        // Only links a mutation left as they were can be accepted (the check catches the rest).
        assert!(rejected > 99_000, "{ok} accepted");
    }

    fn recipe() -> SharedRecipe {
        SharedRecipe {
            model: "m2ugen-audioldm2".into(),
            manifest_sha256: [9; 32],
            prompt: "make it calmer".into(),
            conditioning: "a calm ambient piece with soft synth pads and slow, warm chords".into(),
            negative: "Low quality.".into(),
            seed: u64::MAX - 3,
            steps: 200,
            guidance: 3.5,
            seconds: 10.0,
            waveforms: 3,
            index: 2,
        }
    }

    #[test]
    fn recipes_round_trip_and_their_length_is_known() {
        let r = recipe();
        let l = recipe_link(&r).unwrap();
        assert!(l.starts_with(RECIPE_PREFIX));
        assert_eq!(parse_any(&format!("https://example.org/{l}")).unwrap(), Shared::Recipe(r.clone()));
        // A version-1 reader refuses it by version, not as damage.
        assert_eq!(parse(&l), Err(ShareError::Version("2".into())));
        // The length does not grow with the track: the text dominates.
        println!("recipe link: {} bytes", l.len());
        assert!((150..260).contains(&l.len()), "{} bytes", l.len());
        let long = SharedRecipe { seconds: 60.0, ..r.clone() };
        assert!(recipe_link(&long).unwrap().len().abs_diff(l.len()) <= 4);
        // Out of range when made, and when read.
        for bad in [SharedRecipe { steps: 0, ..r.clone() }, SharedRecipe { index: 3, ..r.clone() }, SharedRecipe { seconds: f32::NAN, ..r.clone() }, SharedRecipe { guidance: 31.0, ..r.clone() }, SharedRecipe { conditioning: " ".into(), ..r.clone() }] {
            assert!(matches!(recipe_link(&bad), Err(ShareError::Unshareable(_))), "{bad:?}");
        }
        let whole = miniz_oxide::inflate::decompress_to_vec_zlib(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(&l[RECIPE_PREFIX.len()..]).unwrap()).unwrap();
        let wrap = |p: &[u8]| format!("{RECIPE_PREFIX}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(miniz_oxide::deflate::compress_to_vec_zlib(p, 6)));
        let mut zero_steps = whole.clone();
        let at = whole.len() - 2 - 4 - 4 - 2;
        zero_steps[at..at + 2].copy_from_slice(&0u16.to_le_bytes());
        assert_eq!(parse_any(&wrap(&zero_steps)), Err(ShareError::Field("0 steps (1 to 1000)".into())));
        let mut other_decoder = whole.clone();
        other_decoder[1 + r.model.len() + 32] = 7;
        assert!(matches!(parse_any(&wrap(&other_decoder)), Err(ShareError::Field(m)) if m.contains("decoder 7")));
        assert_eq!(parse_any(&wrap(&whole[..whole.len() - 1])), Err(ShareError::Field("it ends inside the waveform index".into())));
    }
}
