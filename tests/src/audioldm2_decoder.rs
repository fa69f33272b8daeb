//! AudioLDM 2's denoiser and audio path (the UNet, the VAE's decoder, SpeechT5's HiFi-GAN)
//! against `diffusers` / `transformers` on the AudioLDM 2 fixture (`io.safetensors`), and the
//! models' tensor lists against a converted manifest: shared by the native suite (f32 and f16)
//! and the browser suite (f32). Nothing here reads files.
//!
//! The fixture's tensors are PyTorch's NCHW; the models are channels-last, so inputs and outputs
//! are permuted here, on the CPU, at the boundary.

use crate::parity::close;
use crate::{round_to, Result, Tol};
use anyhow::{ensure, Context};
use m2ugen_core::config::audioldm2::Audioldm2Config;
use m2ugen_gpu::registry::Elem;
use m2ugen_gpu::{Gpu, Recorder};
use m2ugen_models::hifigan::Hifigan;
use m2ugen_models::unet::Unet;
use m2ugen_models::vae::{upsample_nearest_to, VaeDecoder};
use m2ugen_models::Store;
use m2ugen_pipeline::diffusion::Ddim;
use m2ugen_weights::safetensors::InMemory;
use m2ugen_weights::Manifest;

/// Where a converted AudioLDM 2 keeps the UNet.
pub const UNET: &str = "audioldm2.unet";
/// Where a converted AudioLDM 2 keeps the VAE.
pub const VAE: &str = "audioldm2.vae";
/// Where a converted AudioLDM 2 keeps the vocoder.
pub const VOCODER: &str = "audioldm2.vocoder";

/// Denoising steps of the fixture's run (its `manifest.json`): the first DDIM timestep is 667.
pub const FIXTURE_STEPS: usize = 3;

/// Tolerance of the UNet's predicted noise (values within ±1.6), `|ours - reference| <= atol +
/// rtol |reference|`: the fixture's `atol 1e-4` in f32 (lavapipe: 1.6e-6). In f16 every
/// activation and weight is rounded to 11 bits (relative step 2^-11 ≈ 5e-4) through the fixture
/// UNet's 12 ResNets and 18 transformers (two attentions and a GEGLU each), GroupNorms over few
/// values; lavapipe's largest difference is 2.1e-3 (where this allows 1e-2).
pub fn unet_tol(elem: Elem) -> Tol {
    match elem {
        Elem::F32 => Tol { atol: 1e-4, rtol: 0.0 },
        Elem::F16 => Tol { atol: 5e-3, rtol: 1e-2 },
    }
}

/// Tolerance of the mel spectrogram and the audio (values within ±1): the fixture's `atol 1e-3`
/// in f32 (lavapipe: 1.4e-6 and 2.6e-7). In f16 the same rounding through the VAE's ResNets and
/// attention, and through HiFi-GAN's 28 convolutions; lavapipe's largest differences are 2.3e-3
/// (mel) and 1.2e-3 (audio).
pub fn audio_tol(elem: Elem) -> Tol {
    match elem {
        Elem::F32 => Tol { atol: 1e-3, rtol: 0.0 },
        Elem::F16 => Tol { atol: 5e-3, rtol: 1e-2 },
    }
}

/// An NCHW tensor `(b, c, h, w)` as channels-last `(b, h, w, c)`.
pub fn channels_last(v: &[f32], [b, c, h, w]: [usize; 4]) -> Vec<f32> {
    let mut out = vec![0.0; v.len()];
    for bi in 0..b {
        for ci in 0..c {
            for y in 0..h {
                for x in 0..w {
                    out[((bi * h + y) * w + x) * c + ci] = v[((bi * c + ci) * h + y) * w + x];
                }
            }
        }
    }
    out
}

/// A channels-last tensor `(b, h, w, c)` as NCHW `(b, c, h, w)`.
pub fn channels_first(v: &[f32], [b, h, w, c]: [usize; 4]) -> Vec<f32> {
    let mut out = vec![0.0; v.len()];
    for bi in 0..b {
        for y in 0..h {
            for x in 0..w {
                for ci in 0..c {
                    out[((bi * c + ci) * h + y) * w + x] = v[((bi * h + y) * w + x) * c + ci];
                }
            }
        }
    }
    out
}

fn dims4(shape: &[usize]) -> Result<[usize; 4]> {
    match *shape {
        [a, b, c, d] => Ok([a, b, c, d]),
        _ => anyhow::bail!("expected 4 dimensions, got {shape:?}"),
    }
}

/// The UNet, the VAE's decoder and the vocoder from a store of a converted AudioLDM 2.
pub fn load_decoder(gpu: &Gpu, store: &mut Store, config: &Audioldm2Config) -> Result<(Unet, VaeDecoder, Hifigan)> {
    let unet = Unet::load(gpu, store, UNET, &config.unet).context("loading the UNet")?;
    let vae = VaeDecoder::load(gpu, store, VAE, &config.vae).context("loading the VAE")?;
    let vocoder = Hifigan::load(gpu, store, VOCODER, &config.vocoder).context("loading the vocoder")?;
    Ok((unet, vae, vocoder))
}

/// The UNet's, the VAE decoder's and the vocoder's tensor lists are, with their shapes, exactly
/// what the converter wrote under their prefixes (the VAE's encoder left out).
pub fn check_tensor_lists(manifest: &Manifest, config: &Audioldm2Config) -> Result<()> {
    let unet = Unet::tensors(UNET, &config.unet)?;
    let vae = VaeDecoder::tensors(VAE, &config.vae);
    let vocoder = Hifigan::tensors(VOCODER, &config.vocoder);
    for (prefix, listed, keep) in [(UNET, unet, None), (VAE, vae, Some(VaeDecoder::needs as fn(&str, &str) -> bool)), (VOCODER, vocoder, None)] {
        let mut stored: Vec<(String, Vec<usize>)> = manifest
            .tensors
            .iter()
            .filter(|t| t.name.starts_with(&format!("{prefix}.")) && keep.is_none_or(|k| k(prefix, &t.name)))
            .map(|t| (t.name.clone(), t.shape.clone()))
            .collect();
        let mut listed = listed;
        stored.sort();
        listed.sort();
        let missing: Vec<_> = listed.iter().filter(|t| !stored.contains(t)).take(5).collect();
        let extra: Vec<_> = stored.iter().filter(|t| !listed.contains(t)).take(5).collect();
        ensure!(missing.is_empty() && extra.is_empty(), "{prefix}: listed but not stored (with that shape) {missing:?}; stored but not listed {extra:?}");
    }
    Ok(())
}

/// `in.vae_latents` through `AutoencoderKL.decode` (`post_quant_conv` and the decoder, no
/// scaling: the fixture decodes them as they are) give `out.vae_mel`.
pub async fn check_vae(gpu: &Gpu, elem: Elem, vae: &VaeDecoder, io: &InMemory) -> Result<()> {
    let (latents, shape) = io.f32("in.vae_latents")?;
    let [b, c, h, w] = dims4(&shape)?;
    let mut rec = Recorder::new(gpu);
    let x = rec.upload("vae latents", &[b, h, w, c], elem.dtype(), &channels_last(&latents, [b, c, h, w]))?;
    let mel = vae.decode(&mut rec, &x)?;
    rec.submit()?;
    let [mb, mh, mw, mc] = dims4(mel.shape())?;
    let ours = channels_first(&gpu.read(&mel).await?, [mb, mh, mw, mc]);
    let (reference, ref_shape) = io.f32("out.vae_mel")?;
    ensure!(ref_shape == [mb, mc, mh, mw], "out.vae_mel is {ref_shape:?}; ours is (b, c, h, w) {:?}", [mb, mc, mh, mw]);
    close("out.vae_mel", &ours, &reference, audio_tol(elem))
}

/// `in.vocoder_mel` `(batch, frames, bins)` through HiFi-GAN gives `out.vocoder_audio`.
pub async fn check_vocoder(gpu: &Gpu, elem: Elem, vocoder: &Hifigan, io: &InMemory) -> Result<()> {
    let (mel, shape) = io.f32("in.vocoder_mel")?;
    let mut rec = Recorder::new(gpu);
    let x = rec.upload("vocoder mel", &shape, elem.dtype(), &mel)?;
    let audio = vocoder.forward(&mut rec, &x)?;
    rec.submit()?;
    let ours = gpu.read(&audio).await?;
    let (reference, ref_shape) = io.f32("out.vocoder_audio")?;
    ensure!(ref_shape == audio.shape(), "out.vocoder_audio is {ref_shape:?}, ours {:?}", audio.shape());
    close("out.vocoder_audio", &ours, &reference, audio_tol(elem))
}

/// Batches of two, as the pipeline decodes several waveforms: the fixture's latents times
/// `scaling_factor`, twice, through [`VaeDecoder::decode_latents`] with the mid block's attention
/// taking its 48 queries 7 at a time, give `out.vae_mel` for each row; two copies of
/// `in.vocoder_mel` give `out.vocoder_audio` twice.
pub async fn check_batches(gpu: &Gpu, elem: Elem, vae: &mut VaeDecoder, vocoder: &Hifigan, io: &InMemory) -> Result<()> {
    let (latents, shape) = io.f32("in.vae_latents")?;
    let [b, c, h, w] = dims4(&shape)?;
    let scaled: Vec<f32> = channels_last(&latents, [b, c, h, w]).iter().map(|v| v * vae.config().scaling_factor).collect();
    let (mel, mel_shape) = io.f32("in.vocoder_mel")?;
    vae.set_attention_rows(Some(7));
    let mut rec = Recorder::new(gpu);
    let x = rec.upload("vae latents", &[2 * b, h, w, c], elem.dtype(), &scaled.repeat(2))?;
    let decoded = vae.decode_latents(&mut rec, &x);
    vae.set_attention_rows(None);
    let decoded = decoded?;
    let m = rec.upload("vocoder mel", &[2 * mel_shape[0], mel_shape[1], mel_shape[2]], elem.dtype(), &mel.repeat(2))?;
    let audio = vocoder.forward(&mut rec, &m)?;
    rec.submit()?;
    let (reference, _) = io.f32("out.vae_mel")?;
    close("out.vae_mel (batch of 2, attention in chunks)", &gpu.read(&decoded).await?, &reference.repeat(2), audio_tol(elem))?;
    let (reference, _) = io.f32("out.vocoder_audio")?;
    close("out.vocoder_audio (batch of 2)", &gpu.read(&audio).await?, &reference.repeat(2), audio_tol(elem))
}

/// [`upsample_nearest_to`] gives PyTorch's `F.interpolate(size=.., mode="nearest")` (source
/// `floor(dst · in / out)`, the scale in f32) for the odd sizes an up block meets when the
/// latents' height is not a multiple of the UNet's overall downsampling (10 s of audio: 250
/// latent rows, halved to 125 and 63): exact, as both copy values.
pub async fn check_nearest_to_odd_sizes(gpu: &Gpu, elem: Elem) -> Result<()> {
    let [b, h, w, c] = [2, 7, 5, 3];
    let mut rng = m2ugen_core::rng::Rng::new(14);
    let x = round_to(elem, &(0..b * h * w * c).map(|_| rng.normal()).collect::<Vec<_>>());
    for (th, tw) in [(13, 9), (14, 10), (13, 10), (14, 9)] {
        let mut rec = Recorder::new(gpu);
        let t = rec.upload("x", &[b, h, w, c], elem.dtype(), &x)?;
        let y = upsample_nearest_to(&mut rec, &t, (th, tw))?;
        rec.submit()?;
        ensure!(y.shape() == [b, th, tw, c], "{:?} for a target of {th}x{tw}", y.shape());
        let source = |dst: usize, size: usize, to: usize| ((dst as f32 * (size as f32 / to as f32)).floor() as usize).min(size - 1);
        let mut reference = Vec::with_capacity(b * th * tw * c);
        for bi in 0..b {
            for oy in 0..th {
                for ox in 0..tw {
                    let at = ((bi * h + source(oy, h, th)) * w + source(ox, w, tw)) * c;
                    reference.extend_from_slice(&x[at..at + c]);
                }
            }
        }
        crate::assert_close(&format!("nearest to {th}x{tw}"), &gpu.read(&y).await?, &reference, Tol { atol: 0.0, rtol: 0.0 }, &[b, th, tw, c])?;
    }
    Ok(())
}

/// The UNet on latents of odd height (the fixture's first 13 rows: 13 halves to 7, which
/// upsamples back to 13) gives noise of the latents' shape, every value finite, with the
/// fixture's conditioning (no reference: the fixture's latents are 64 rows).
pub async fn check_unet_odd_height(gpu: &Gpu, elem: Elem, unet: &Unet, io: &InMemory) -> Result<()> {
    let (latents, shape) = io.f32("in.latents")?;
    let [b, c, h, w] = dims4(&shape)?;
    let rows = 13.min(h);
    let latents: Vec<f32> = channels_last(&latents, [b, c, h, w]).chunks(h * w * c).flat_map(|item| item[..rows * w * c].to_vec()).collect();
    let (generated, g_shape) = io.f32("out.generated_prompt_embeds")?;
    let (t5, t5_shape) = io.f32("out.t5_hidden")?;
    let t5_mask = mask(io, "in.t5_mask")?;
    let mut rec = Recorder::new(gpu);
    let x = rec.upload("unet latents", &[b, rows, w, c], elem.dtype(), &latents)?;
    let generated = rec.upload("generated", &g_shape, elem.dtype(), &generated)?;
    let t5 = rec.upload("t5", &t5_shape, elem.dtype(), &t5)?;
    let noise = unet.forward(&mut rec, &x, 667.0, &generated, &t5, &t5_mask)?;
    rec.submit()?;
    ensure!(noise.shape() == [b, rows, w, c], "noise {:?} for latents {:?}", noise.shape(), [b, rows, w, c]);
    let values = gpu.read(&noise).await?;
    ensure!(values.iter().all(|v| v.is_finite()), "non-finite noise for latents of {rows} rows");
    Ok(())
}

fn mask(io: &InMemory, name: &str) -> Result<Vec<bool>> {
    Ok(io.i64(name)?.0.into_iter().map(|m| m != 0).collect())
}

/// The UNet on the guidance batch at the first DDIM timestep gives `out.noise_pred_first`:
/// latents `in.latents` twice (`torch.cat([latents] * 2)`), GPT-2's states
/// `[out.neg_generated_prompt_embeds; out.generated_prompt_embeds]` for `encoder_hidden_states`,
/// T5's `[out.neg_t5_hidden; out.t5_hidden]` for `encoder_hidden_states_1` under
/// `[in.neg_t5_mask; in.t5_mask]` (negative rows first, as the pipeline batches them).
pub async fn check_unet_first_step(gpu: &Gpu, elem: Elem, unet: &Unet, config: &Audioldm2Config, io: &InMemory) -> Result<()> {
    let ddim = Ddim::new(&config.scheduler, FIXTURE_STEPS)?;
    let t = ddim.timesteps()[0];
    ensure!(t == 667, "the first of {FIXTURE_STEPS} leading DDIM timesteps with offset 1 is 667 (1000 / 3 x 2 + 1), got {t}");
    let (latents, shape) = io.f32("in.latents")?;
    let [b, c, h, w] = dims4(&shape)?;
    let latents = channels_last(&latents, [b, c, h, w]).repeat(2);
    let join = |neg: &str, pos: &str| -> Result<(Vec<f32>, Vec<usize>)> {
        let (mut n, shape) = io.f32(neg)?;
        let (p, pos_shape) = io.f32(pos)?;
        ensure!(shape == pos_shape, "{neg} {shape:?} and {pos} {pos_shape:?} differ");
        n.extend(p);
        Ok((n, vec![2 * shape[0], shape[1], shape[2]]))
    };
    let (generated, g_shape) = join("out.neg_generated_prompt_embeds", "out.generated_prompt_embeds")?;
    let (t5, t5_shape) = join("out.neg_t5_hidden", "out.t5_hidden")?;
    let mut t5_mask = mask(io, "in.neg_t5_mask")?;
    t5_mask.extend(mask(io, "in.t5_mask")?);
    let mut rec = Recorder::new(gpu);
    let x = rec.upload("unet latents", &[2 * b, h, w, c], elem.dtype(), &latents)?;
    let generated = rec.upload("generated", &g_shape, elem.dtype(), &generated)?;
    let t5 = rec.upload("t5", &t5_shape, elem.dtype(), &t5)?;
    let noise = unet.forward(&mut rec, &x, t as f32, &generated, &t5, &t5_mask)?;
    rec.submit()?;
    let [nb, nh, nw, nc] = dims4(noise.shape())?;
    let ours = channels_first(&gpu.read(&noise).await?, [nb, nh, nw, nc]);
    let (reference, ref_shape) = io.f32("out.noise_pred_first")?;
    ensure!(ref_shape == [nb, nc, nh, nw], "out.noise_pred_first is {ref_shape:?}; ours is (b, c, h, w) {:?}", [nb, nc, nh, nw]);
    close("out.noise_pred_first", &ours, &reference, unet_tol(elem))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_round_trip() {
        let v: Vec<f32> = (0..2 * 3 * 4 * 5).map(|i| i as f32).collect();
        let cl = channels_last(&v, [2, 3, 4, 5]);
        // (b 0, c 1, h 2, w 3) is NCHW index 33 and channels-last index 40.
        assert_eq!(cl[40], v[33]);
        assert_eq!(channels_first(&cl, [2, 4, 5, 3]), v);
    }
}
