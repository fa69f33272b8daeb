//! The whole AudioLDM 2 pipeline against `diffusers` on the fixture: the text side, three DDIM
//! steps with guidance 3.5 from the fixture's noise, the VAE's mel and HiFi-GAN's audio; and
//! M2UGen's embedding mode (its projector's vector in place of the text side). Shared by the
//! native suite (f32 and f16) and the browser suite (f32).

use crate::audioldm2_decoder::{audio_tol, channels_first, channels_last};
use crate::{Result, Tol};
use anyhow::ensure;
use m2ugen_gpu::registry::Elem;
use m2ugen_gpu::{Gpu, Recorder};
use m2ugen_models::audioldm2_text::Prompts;
use m2ugen_pipeline::audioldm2::{embedding_batch, Audioldm2, DiffusionSettings};
use m2ugen_weights::safetensors::InMemory;

/// Tolerance of the latents after three steps: the fixture's README in f32 (`atol 1e-3, rtol
/// 1e-3`; mel and audio take `audio_tol`); f16 rounds every activation of three UNet calls to 11 bits, and the latents
/// reach ~25 (lavapipe's f16 differs by 0.033 at a latent of 15, 2.2e-3 in the mel and 1.1e-3
/// in the audio: these bounds leave 2.5x to 6x).
pub fn latents_tol(elem: Elem) -> Tol {
    match elem {
        Elem::F32 => Tol { atol: 1e-3, rtol: 1e-3 },
        Elem::F16 => Tol { atol: 0.05, rtol: 0.01 },
    }
}

fn ids(io: &InMemory, name: &str) -> Result<(Vec<u32>, Vec<usize>)> {
    let (v, shape) = io.i64(name)?;
    Ok((v.into_iter().map(|x| x as u32).collect(), shape))
}

fn mask(io: &InMemory, name: &str) -> Result<Vec<bool>> {
    Ok(ids(io, name)?.0.into_iter().map(|m| m != 0).collect())
}

fn shape4(shape: &[usize]) -> Result<[usize; 4]> {
    ensure!(shape.len() == 4, "expected 4 dimensions, got {shape:?}");
    Ok([shape[0], shape[1], shape[2], shape[3]])
}

/// The fixture's two prompts with their negative prompts, through the text side (one batch,
/// negatives first), three DDIM steps at guidance 3.5 from `in.latents`, then the mel and the
/// audio: `out.latents`, `out.mel`, `out.audio`.
pub async fn check_three_steps(gpu: &Gpu, elem: Elem, model: &Audioldm2, io: &InMemory) -> Result<()> {
    let (clap_pos, cs) = ids(io, "in.clap_ids")?;
    let (clap_neg, _) = ids(io, "in.neg_clap_ids")?;
    let (t5_pos, ts) = ids(io, "in.t5_ids")?;
    let (t5_neg, nts) = ids(io, "in.neg_t5_ids")?;
    ensure!(ts == nts, "the fixture's negative T5 ids {nts:?} are not padded to the prompts' {ts:?}");
    let clap_ids: Vec<u32> = clap_neg.iter().chain(&clap_pos).copied().collect();
    let clap_mask: Vec<bool> = mask(io, "in.neg_clap_mask")?.into_iter().chain(mask(io, "in.clap_mask")?).collect();
    let t5_ids: Vec<u32> = t5_neg.iter().chain(&t5_pos).copied().collect();
    let t5_mask: Vec<bool> = mask(io, "in.neg_t5_mask")?.into_iter().chain(mask(io, "in.t5_mask")?).collect();
    let prompts = Prompts { batch: 2 * cs[0], clap_ids: &clap_ids, clap_mask: &clap_mask, clap_len: cs[1], t5_ids: &t5_ids, t5_mask: &t5_mask, t5_len: ts[1] };
    let mut rec = Recorder::new(gpu);
    let text = model.encode_text(&mut rec, &prompts)?;
    let cond = model.condition(&mut rec, &text.generated, &text.t5, &text.t5_mask, 1)?;
    rec.submit()?;

    let (noise, ns) = io.f32("in.latents")?;
    let ns = shape4(&ns)?;
    let g = model.geometry(0.032);
    ensure!([g.channels, g.height, g.width] == [ns[1], ns[2], ns[3]], "latents for 0.032 s are {g:?}, the fixture's {ns:?}");
    let settings = DiffusionSettings { seconds: 0.032, steps: 3, guidance: 3.5, seed: 0, waveforms: ns[0] };
    let mut steps = Vec::new();
    let latents = model.denoise(gpu, &cond, channels_last(&noise, ns), &g, &settings, |done, of| steps.push((done, of)), None).await?;
    ensure!(steps == [(1, 3), (2, 3), (3, 3)], "progress {steps:?}");
    let (want, _) = io.f32("out.latents")?;
    crate::parity::close("out.latents", &channels_first(&latents, [ns[0], ns[2], ns[3], ns[1]]), &want, latents_tol(elem))?;

    let x = gpu.upload("latents", &[ns[0], g.height, g.width, g.channels], elem.dtype(), &latents)?;
    let mut rec = Recorder::new(gpu);
    let mel = model.mel(&mut rec, &x)?;
    rec.submit()?;
    let (want, _) = io.f32("out.mel")?;
    crate::parity::close("out.mel", &gpu.read(&mel).await?, &want, audio_tol(elem))?;

    let audio = model.decode(gpu, &latents, &g).await?;
    let (want, shape) = io.f32("out.audio")?;
    ensure!(audio.len() == shape[0] && audio.iter().all(|a| a.len() == shape[1]), "audio of {} x {:?}, the fixture's {shape:?}", audio.len(), audio.first().map(Vec::len));
    crate::parity::close("out.audio", &audio.concat(), &want, audio_tol(elem))
}

/// M2UGen's embedding mode: `in.m2ugen_projector` split into T5-like and GPT-2-like states,
/// the negative prompt's (row 0) first, three steps from `in.m2ugen_latents`: `out.m2ugen_audio`.
pub async fn check_m2ugen_embedding(gpu: &Gpu, elem: Elem, model: &Audioldm2, io: &InMemory) -> Result<()> {
    let (clap_neg, cs) = ids(io, "in.neg_clap_ids")?;
    let (t5_neg, ts) = ids(io, "in.neg_t5_ids")?;
    let clap_mask = mask(io, "in.neg_clap_mask")?;
    let t5_mask = mask(io, "in.neg_t5_mask")?;
    // Row 0 alone.
    let prompts = Prompts { batch: 1, clap_ids: &clap_neg[..cs[1]], clap_mask: &clap_mask[..cs[1]], clap_len: cs[1], t5_ids: &t5_neg[..ts[1]], t5_mask: &t5_mask[..ts[1]], t5_len: ts[1] };
    let (projector, ps) = io.f32("in.m2ugen_projector")?;
    let mut rec = Recorder::new(gpu);
    let negative = model.encode_text(&mut rec, &prompts)?;
    let states = gpu.upload("projector", &ps, elem.dtype(), &projector)?;
    let (generated, t5, t5_mask) = embedding_batch(&mut rec, &model.config, Some(&negative), &states)?;
    let cond = model.condition(&mut rec, &generated, &t5, &t5_mask, 1)?;
    rec.submit()?;
    let (noise, ns) = io.f32("in.m2ugen_latents")?;
    let ns = shape4(&ns)?;
    let g = model.geometry(0.032);
    let settings = DiffusionSettings { seconds: 0.032, steps: 3, guidance: 3.5, seed: 0, waveforms: 1 };
    let latents = model.denoise(gpu, &cond, channels_last(&noise, ns), &g, &settings, |_, _| {}, None).await?;
    let audio = model.decode(gpu, &latents, &g).await?;
    let (want, _) = io.f32("out.m2ugen_audio")?;
    crate::parity::close("out.m2ugen_audio", &audio.concat(), &want, audio_tol(elem))
}

/// A different seed makes different noise, the same seed the same, and the noise is what a
/// standard normal is (the sampler starts from it).
pub fn check_noise(model: &Audioldm2) -> Result<()> {
    let g = model.geometry(0.032);
    let a = model.noise(7, 2, &g);
    ensure!(a == model.noise(7, 2, &g), "the same seed gave other noise");
    ensure!(a != model.noise(8, 2, &g), "another seed gave the same noise");
    ensure!(a.len() == 2 * g.latent_len(), "{} values for 2 x {g:?}", a.len());
    Ok(())
}
