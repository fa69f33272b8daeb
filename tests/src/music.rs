//! Parity of T5, MusicGen's decoder and its generation with `transformers` on the MusicGen
//! fixture (`io.safetensors`): shared by the native suite (f32 and f16) and the browser suite
//! (f32).

use crate::{Result, Tol};
use anyhow::ensure;
use m2ugen_gpu::registry::Elem;
use m2ugen_gpu::{Gpu, Recorder};
use m2ugen_models::musicgen::Conditioning;
use m2ugen_pipeline::generate::Cancel;
use m2ugen_pipeline::music::{generate_codes, MusicModel, MusicSettings, EMBEDDING_SCALE};
use m2ugen_pipeline::Sampling;
use m2ugen_weights::loader::{load_manifest, Fetcher, LoadOptions};
use m2ugen_weights::safetensors::InMemory;

/// Loads MusicGen (T5, the decoder, EnCodec) of the converted model at `fetcher` in element
/// type `elem`, through the pipeline's loader.
pub async fn load_music<F: Fetcher>(gpu: &Gpu, elem: Elem, fetcher: &F) -> Result<MusicModel> {
    let manifest = load_manifest(fetcher).await?;
    let clock = m2ugen_gpu::now_ms;
    let options = LoadOptions { in_flight: 4, max_resumes: 3, clock: &clock, cache: None };
    Ok(m2ugen_pipeline::load::load_music(gpu, elem.dtype(), fetcher, &manifest, 64, &options, |_| {}).await?)
}

/// Tolerance of T5's states and the decoder's logits: the fixture's `atol 1e-4, rtol 1e-3` in
/// f32; f16 rounds every activation to 11 bits.
pub fn music_tol(elem: Elem) -> Tol {
    match elem {
        Elem::F32 => Tol { atol: 1e-4, rtol: 1e-3 },
        Elem::F16 => Tol { atol: 0.05, rtol: 0.02 },
    }
}

fn ids(io: &InMemory, name: &str) -> Result<(Vec<u32>, Vec<usize>)> {
    let (v, shape) = io.i64(name)?;
    Ok((v.into_iter().map(|x| x as u32).collect(), shape))
}

/// `in.text_ids` with `in.text_mask` through T5 give `out.t5_last_hidden`.
pub async fn check_t5(gpu: &Gpu, elem: Elem, music: &MusicModel, io: &InMemory) -> Result<()> {
    let (text, shape) = ids(io, "in.text_ids")?;
    let (mask, _) = ids(io, "in.text_mask")?;
    let mask: Vec<bool> = mask.iter().map(|&m| m != 0).collect();
    let mut rec = Recorder::new(gpu);
    let h = music.t5.forward(&mut rec, &text, &mask, shape[0], shape[1])?;
    rec.submit()?;
    let ours = gpu.read(&h).await?;
    let (reference, _) = io.f32("out.t5_last_hidden")?;
    crate::parity::close("out.t5_last_hidden", &ours, &reference, music_tol(elem))
}

/// `in.cond` as conditioning for `batch` tracks (without guidance), or for guidance (the two
/// tracks, then two null rows).
pub fn fixture_conditioning(gpu: &Gpu, elem: Elem, music: &MusicModel, io: &InMemory, guided: bool) -> Result<Conditioning> {
    let (cond, shape) = io.f32("in.cond")?;
    let (batch, len, width) = (shape[0], shape[1], shape[2]);
    let mut rec = Recorder::new(gpu);
    let c = if guided {
        let mut values = cond.clone();
        values.extend(std::iter::repeat_n(0.0, cond.len()));
        let memory = rec.upload("cond", &[2 * batch * len, width], elem.dtype(), &values)?;
        let mask: Vec<bool> = (0..2 * batch * len).map(|i| i < batch * len).collect();
        music.decoder.condition(&mut rec, &memory, 2 * batch, len, Some(&mask))?
    } else {
        let memory = rec.upload("cond", &[batch * len, width], elem.dtype(), &cond)?;
        music.decoder.condition(&mut rec, &memory, batch, len, None)?
    };
    rec.submit()?;
    Ok(c)
}

/// Teacher-forced logits: `in.decoder_input_ids` under `in.cond` give `out.decoder_logits`.
pub async fn check_logits(gpu: &Gpu, elem: Elem, music: &MusicModel, io: &InMemory) -> Result<()> {
    let (input, shape) = ids(io, "in.decoder_input_ids")?;
    let k = music.config.decoder.num_codebooks;
    let (batch, steps) = (shape[0] / k, shape[1]);
    let cond = fixture_conditioning(gpu, elem, music, io, false)?;
    let mut cache = music.decoder.new_cache(gpu, batch, steps)?;
    let mut rec = Recorder::new(gpu);
    // (batch * codebooks, steps) is (batch, codebooks, steps) row-major, as forward takes it.
    let logits = music.decoder.forward(&mut rec, &mut cache, &cond, &input, steps)?;
    rec.submit()?;
    let ours = gpu.read(&logits).await?;
    let vocab = music.config.decoder.vocab_size;
    // Ours: (batch, step, codebook, vocab); the reference's: (batch, codebook, step, vocab).
    let mut reordered = Vec::with_capacity(ours.len());
    for b in 0..batch {
        for cb in 0..k {
            for t in 0..steps {
                let row = (b * steps + t) * k + cb;
                reordered.extend_from_slice(&ours[row * vocab..(row + 1) * vocab]);
            }
        }
    }
    let (reference, _) = io.f32("out.decoder_logits")?;
    crate::parity::close("out.decoder_logits", &reordered, &reference, music_tol(elem))
}

/// Greedy generation under `in.cond` gives `out.greedy_codes`, and with guidance 3 against the
/// null conditioning `out.greedy_codes_cfg3`, exactly.
pub async fn check_greedy(gpu: &Gpu, elem: Elem, music: &MusicModel, io: &InMemory) -> Result<()> {
    for (guidance, name) in [(1.0, "out.greedy_codes"), (3.0, "out.greedy_codes_cfg3")] {
        let (expected, shape) = ids(io, name)?;
        let (tracks, frames) = (shape[1], shape[3]);
        let cond = fixture_conditioning(gpu, elem, music, io, guidance > 1.0)?;
        let settings = MusicSettings { frames, guidance, sampling: Sampling::Greedy, seed: 0 };
        let mut streamed = Vec::new();
        let codes = generate_codes(gpu, &music.decoder, &cond, tracks, &settings, None, &Cancel::default(), |frame, _| streamed.push(frame.to_vec())).await?;
        let mismatches = codes.iter().zip(&expected).filter(|(a, b)| a != b).count();
        ensure!(mismatches == 0, "{elem:?} {name}: {mismatches} of {} codes differ\nours:      {codes:?}\nreference: {expected:?}", expected.len());
        // Each frame was streamed once, in order, as (track, codebook).
        let k = music.config.decoder.num_codebooks;
        ensure!(streamed.len() == frames, "{name}: {} frames streamed, {frames} generated", streamed.len());
        for (f, frame) in streamed.iter().enumerate() {
            for t in 0..tracks {
                for cb in 0..k {
                    ensure!(frame[t * k + cb] == codes[(t * k + cb) * frames + f], "{name}: streamed frame {f} differs");
                }
            }
        }
    }
    Ok(())
}

/// Embedding mode: the projector's states reach the decoder. States `s` (random, at the scale the
/// projector is trained to, ten times T5's) give the greedy codes of `EMBEDDING_SCALE · s` as
/// T5-width conditioning, and other states give other codes and other logits.
pub async fn check_embedding_reaches_the_decoder(gpu: &Gpu, elem: Elem, music: &MusicModel) -> Result<()> {
    let (rows, width) = (16, music.decoder.memory_width());
    let mut rng = m2ugen_core::rng::Rng::new(21);
    let a = rng.vec(rows * width, -15.0, 15.0);
    let b: Vec<f32> = a.iter().rev().copied().collect();
    let settings = MusicSettings { frames: 12, guidance: 3.0, sampling: Sampling::Greedy, seed: 0 };
    let never = Cancel::default();
    let mut codes = Vec::new();
    for (what, states) in [("a", &a), ("b", &b)] {
        let t = gpu.upload(what, &[rows, width], elem.dtype(), states)?;
        let cond = music.embedding_conditioning(gpu, &t, 1, true)?;
        codes.push(generate_codes(gpu, &music.decoder, &cond, 1, &settings, None, &never, |_, _| {}).await?);
    }
    ensure!(codes[0] != codes[1], "other projector states gave the same codes: the conditioning does not reach the decoder");
    // The same as a tenth of the states given as T5 states (masked null rows after them).
    let scaled: Vec<f32> = a.iter().map(|v| v * EMBEDDING_SCALE).chain(std::iter::repeat_n(0.0, rows * width)).collect();
    let mut rec = Recorder::new(gpu);
    let memory = rec.upload("scaled", &[2 * rows, width], elem.dtype(), &scaled)?;
    let mask: Vec<bool> = (0..2 * rows).map(|i| i < rows).collect();
    let cond = music.decoder.condition(&mut rec, &memory, 2, rows, Some(&mask))?;
    rec.submit()?;
    let direct = generate_codes(gpu, &music.decoder, &cond, 1, &settings, None, &never, |_, _| {}).await?;
    ensure!(direct == codes[0], "embedding mode is not the states scaled by {EMBEDDING_SCALE}: {direct:?} against {:?}", codes[0]);
    Ok(())
}

/// Continuation and long tracks. A greedy continuation of a track's first frames is exactly
/// the rest of the track (the prompt's codes are laid into the delay pattern as one pass would
/// have made them); a track of three windows is the first window as made alone, then each
/// window continued from the last `overlap` frames, its frames streamed once and in order; and
/// cancelled part-way, the frames made so far.
pub async fn check_windows(gpu: &Gpu, elem: Elem, music: &MusicModel, io: &InMemory) -> Result<()> {
    use m2ugen_pipeline::music::generate_long;
    let k = music.config.decoder.num_codebooks;
    let cond = fixture_conditioning(gpu, elem, music, io, true)?;
    let tracks = cond.batch() / 2;
    let never = Cancel::default();
    let greedy = |frames| MusicSettings { frames, guidance: 3.0, sampling: Sampling::Greedy, seed: 0 };
    let frames_of = |codes: &[u32], range: std::ops::Range<usize>, total: usize| -> Vec<u32> { (0..tracks * k).flat_map(|row| codes[row * total + range.start..row * total + range.end].to_vec()).collect() };
    let whole = generate_codes(gpu, &music.decoder, &cond, tracks, &greedy(20), None, &never, |_, _| {}).await?;
    let prompt = frames_of(&whole, 0..8, 20);
    let continued = generate_codes(gpu, &music.decoder, &cond, tracks, &greedy(12), Some((&prompt, 8)), &never, |_, _| {}).await?;
    ensure!(continued == whole, "a continuation of the first 8 frames is not the rest of the track:\n{continued:?}\n{whole:?}");

    // Windows of 12 frames, 4 of context: 12 + 8 + 8 = 28 frames in three windows.
    let mut streamed = Vec::new();
    let long = generate_long(gpu, &music.decoder, &cond, tracks, &greedy(28), 12, 4, &never, |frame, p| streamed.push((p.frames, frame.to_vec()))).await?;
    ensure!(long.len() == tracks * k * 28, "{} codes for 28 frames", long.len());
    let first = generate_codes(gpu, &music.decoder, &cond, tracks, &greedy(12), None, &never, |_, _| {}).await?;
    ensure!(frames_of(&long, 0..12, 28) == first, "the first window is not the track made alone");
    let second = generate_codes(gpu, &music.decoder, &cond, tracks, &greedy(8), Some((&frames_of(&long, 8..12, 28), 4)), &never, |_, _| {}).await?;
    ensure!(frames_of(&second, 4..12, 12) == frames_of(&long, 12..20, 28), "the second window is not continued from the first's last 4 frames");
    ensure!(streamed.iter().map(|(f, _)| *f).eq(1..=28), "frames streamed out of order: {:?}", streamed.iter().map(|(f, _)| *f).collect::<Vec<_>>());
    for (f, frame) in &streamed {
        ensure!(*frame == frames_of(&long, f - 1..*f, 28), "streamed frame {f} is not the track's");
    }
    // Cancelled in the second window, at frame 15: the frames made so far, the whole track's.
    let cancel = Cancel::default();
    let stop = cancel.clone();
    let cut = generate_long(gpu, &music.decoder, &cond, tracks, &greedy(28), 12, 4, &cancel, |_, p| {
        if p.frames == 15 {
            stop.cancel();
        }
    })
    .await?;
    let n = cut.len() / (tracks * k);
    ensure!((15..20).contains(&n), "cancelled at frame 15, {n} frames came back");
    ensure!(cut == frames_of(&long, 0..n, 28), "a cancelled track is not the start of the whole one");
    // Longer than the decoder's positions: windows make it, each within them.
    let most = music.decoder.max_steps() - k;
    let past = generate_long(gpu, &music.decoder, &cond, tracks, &greedy(most + 1), 40.min(most), 8, &never, |_, _| {}).await?;
    ensure!(past.len() == tracks * k * (most + 1), "{} codes for {} frames, past the decoder's {most} positions", past.len(), most + 1);
    Ok(())
}
