//! `m2ugen bench-audioldm2`: AudioLDM 2's UNet in steps per second under classifier-free
//! guidance (the real denoising loop: the negative and the positive row in one call, guidance
//! and the DDIM step on the CPU, the latents uploaded and read back each step), the VAE and
//! HiFi-GAN in milliseconds per track, and from them the seconds of audio made per second of
//! compute at the reference's 200 steps, as a real-time factor. Each part's GFLOP/s is given as
//! a fraction of a dense 1024x1024x1024 matmul's measured in the same run (bench-encoders'
//! baseline).
//!
//! Weights are random, at `cvssp/audioldm2-music`'s geometry on a GPU (`--full`), and by
//! default at a reduced one a CPU driver runs in a minute or two (every channel count a
//! quarter of the published one; depth, heads, encoder widths and latent length as published).
//! The conditioning is random too: 8 GPT-2 states and 128 T5 rows (what M2UGen's projector
//! writes); the text side is not timed.

use anyhow::{anyhow, Result};
use m2ugen_core::config::audioldm2::Audioldm2Config;
use m2ugen_core::rng::Rng;
use m2ugen_core::DType;
use m2ugen_gpu::bench::{self, Case};
use m2ugen_gpu::registry::Elem;
use m2ugen_gpu::{now_ms, Gpu, Recorder};
use m2ugen_models::hifigan::Hifigan;
use m2ugen_models::unet::Unet;
use m2ugen_models::vae::VaeDecoder;
use m2ugen_models::Store;
use m2ugen_pipeline::audioldm2::{Audioldm2, DiffusionSettings, PREFIX, PROJECTOR_ROWS};

/// The reference's denoising steps, the real-time factor's basis.
const REFERENCE_STEPS: usize = 200;
/// The reduced geometry's divisor of every channel count.
const REDUCED: usize = 4;

/// `m2ugen bench-audioldm2`.
#[derive(clap::Args)]
pub struct BenchAudioldm2Args {
    /// `cvssp/audioldm2-music`'s published geometry (a GPU's work; the default divides every
    /// channel count by 4 to fit a CPU driver).
    #[arg(long, conflicts_with = "tiny")]
    pub full: bool,
    /// The test fixture's geometry (checks the command, measures little).
    #[arg(long)]
    pub tiny: bool,
    /// Seconds of audio per track.
    #[arg(long, default_value_t = 10.0, value_parser = seconds)]
    pub seconds: f32,
    /// UNet steps timed (after one warm-up step); 200 steps are extrapolated from them.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub steps: u32,
    /// Activations and weights in f16 (needs shader-f16), as the published weights are used.
    #[arg(long)]
    pub f16: bool,
}

/// `--seconds`: more than 0 and at most the pipeline's longest track.
fn seconds(s: &str) -> Result<f32, String> {
    let v: f32 = s.parse().map_err(|_| format!("'{s}' is not a number of seconds"))?;
    let max = m2ugen_pipeline::audioldm2::MAX_SECONDS;
    if v.is_finite() && v > 0.0 && v <= max {
        Ok(v)
    } else {
        Err(format!("{s} s is not more than 0 and at most {max} s"))
    }
}

/// Random weights for `tensors`: products uniform within ±1/√fan-in, norm weights 1, other
/// vectors (biases) within ±0.02, the vocoder's mel mean 0 and scale 1, so activations stay
/// finite through the whole depth.
fn random_store(gpu: &Gpu, dtype: DType, tensors: &[(String, Vec<usize>)]) -> Result<Store> {
    let mut store = Store::new(dtype);
    let mut rng = Rng::new(11);
    for (name, shape) in tensors {
        let n: usize = shape.iter().product();
        let values = if shape.len() > 1 {
            let spread = 1.0 / (shape[1..].iter().product::<usize>().max(1) as f32).sqrt();
            rng.vec(n, -spread, spread)
        } else if (name.contains("norm") && name.ends_with(".weight")) || name.ends_with("vocoder.scale") {
            vec![1.0; n]
        } else if name.ends_with("vocoder.mean") {
            vec![0.0; n]
        } else {
            rng.vec(n, -0.02, 0.02)
        };
        store.insert_f32(gpu, name, shape, &values).map_err(|e| anyhow!("{name}: {e}"))?;
    }
    Ok(store)
}

/// `v` with three significant digits (a rate that spans a CPU driver's and a GPU's).
fn sig(v: f64) -> String {
    let decimals = if v.is_finite() && v > 0.0 { (2.0 - v.log10().floor()).clamp(0.0, 12.0) as usize } else { 3 };
    format!("{v:.decimals$}")
}

/// The geometry asked for and its description.
fn config(args: &BenchAudioldm2Args) -> (Audioldm2Config, String) {
    if args.tiny {
        return (Audioldm2Config::tiny(), "the test fixture's (tiny)".into());
    }
    let mut c = Audioldm2Config::audioldm2_music();
    if args.full {
        return (c, "cvssp/audioldm2-music, as published".into());
    }
    c.unet.block_out_channels.iter_mut().for_each(|w| *w /= REDUCED);
    c.vae.block_out_channels.iter_mut().for_each(|w| *w /= REDUCED);
    c.vocoder.upsample_initial_channel /= REDUCED;
    let what = format!(
        "cvssp/audioldm2-music reduced: every channel count / {REDUCED} (UNet blocks {:?}, VAE blocks {:?}, HiFi-GAN from {} channels); depth, heads, encoder widths and latent length as published",
        c.unet.block_out_channels, c.vae.block_out_channels, c.vocoder.upsample_initial_channel
    );
    (c, what)
}

pub async fn run(args: BenchAudioldm2Args) -> Result<()> {
    let f16 = if args.f16 { m2ugen_gpu::F16Mode::Require } else { m2ugen_gpu::F16Mode::Auto };
    let gpu = Gpu::new(m2ugen_gpu::GpuOptions { f16, ..Default::default() }).await?;
    let (elem, dtype, dname) = if args.f16 { (Elem::F16, DType::F16, "f16") } else { (Elem::F32, DType::F32, "f32") };
    println!("device: {}", gpu.describe());
    let (config, what) = config(&args);
    println!("geometry: {what}; random weights, {dname}");

    let mut tensors = Unet::tensors(&format!("{PREFIX}.unet"), &config.unet)?;
    tensors.extend(VaeDecoder::tensors(&format!("{PREFIX}.vae"), &config.vae));
    tensors.extend(Hifigan::tensors(&format!("{PREFIX}.vocoder"), &config.vocoder));
    let mut store = random_store(&gpu, dtype, &tensors)?;
    let model = Audioldm2::build(&gpu, &mut store, config)?;
    drop(store);
    let c = &model.config;
    let g = model.geometry(args.seconds);
    let (generated, t5) = (c.gpt2.new_tokens(), PROJECTOR_ROWS);
    println!(
        "track: {} s = {} mel frames, latents {} x {} x {} per row, 2 rows (negative and positive prompt, guidance 3.5), {generated} GPT-2 states and {t5} T5 rows",
        args.seconds, g.frames, g.height, g.width, g.channels
    );

    // The device's dense product rate, as bench-encoders measures it (a product as large as the
    // UNet's, whose shapes are too many to take one).
    let matmul = bench::run(&gpu, elem, &Case::Matmul { quant: None, m: 1024, k: 1024, n: 1024 }, 5).await?.gflops();
    println!("baseline: dense matmul 1024x1024x1024 {dname}: {matmul:.2} GFLOP/s");

    let mut rng = Rng::new(5);
    let (gw, tw) = (c.gpt2.n_embd, c.t5.d_model);
    let gen_states = gpu.upload("generated states", &[2, generated, gw], dtype, &rng.vec(2 * generated * gw, -1.0, 1.0))?;
    let t5_states = gpu.upload("t5 states", &[2, t5, tw], dtype, &rng.vec(2 * t5 * tw, -1.0, 1.0))?;
    // The negative prompt's row: a few real tokens, the rest padding (as M2UGen's embedding mode).
    let mask: Vec<bool> = (0..2 * t5).map(|i| i >= t5 || i < 8).collect();
    let mut rec = Recorder::new(&gpu);
    let cond = model.condition(&mut rec, &gen_states, &t5_states, &mask, 1).map_err(|e| anyhow!("{e}"))?;
    rec.submit()?;

    let steps = args.steps as usize;
    let settings = |steps| DiffusionSettings { steps, ..DiffusionSettings::reference(args.seconds, 1) };
    let noise = model.noise(1, 1, &g);
    model.denoise(&gpu, &cond, noise.clone(), &g, &settings(1), |_, _| {}, None).await.map_err(|e| anyhow!("{e}"))?;
    let start = now_ms();
    let latents = model.denoise(&gpu, &cond, noise, &g, &settings(steps), |_, _| {}, None).await.map_err(|e| anyhow!("{e}"))?;
    let step_ms = (now_ms() - start) / steps as f64;
    let unet_flops = 2.0 * Unet::flops(&c.unet, g.height, g.width, generated, t5)?;
    let unet_gflops = unet_flops / step_ms / 1e6;
    println!(
        "UNet: {steps} steps timed after a warm-up step: {step_ms:.1} ms per step = {} steps/s; {:.3} GFLOP per call (2 rows), {unet_gflops:.2} GFLOP/s = {:.3} of the matmul's",
        sig(1000.0 / step_ms),
        unet_flops / 1e9,
        unet_gflops / matmul
    );

    model.decode(&gpu, &latents, &g).await.map_err(|e| anyhow!("{e}"))?;
    let start = now_ms();
    let audio = model.decode(&gpu, &latents, &g).await.map_err(|e| anyhow!("{e}"))?;
    let decode_ms = now_ms() - start;
    if !audio.iter().flatten().all(|v| v.is_finite()) {
        println!("warning: the random weights made non-finite audio");
    }
    let decode_flops = VaeDecoder::flops(&c.vae, g.height, g.width) + Hifigan::flops(&c.vocoder, g.frames);
    let decode_gflops = decode_flops / decode_ms / 1e6;
    println!(
        "VAE + vocoder: {decode_ms:.1} ms for the {} s track, timed after a warm-up run; {:.3} GFLOP, {decode_gflops:.2} GFLOP/s = {:.3} of the matmul's",
        args.seconds,
        decode_flops / 1e9,
        decode_gflops / matmul
    );

    let total_s = (REFERENCE_STEPS as f64 * step_ms + decode_ms) / 1000.0;
    let audio_s = args.seconds as f64;
    println!(
        "{REFERENCE_STEPS} steps + decoding (extrapolated from the per-step time): {total_s:.2} s of compute for {} s of audio = {} s of audio per second, real-time factor {} (compute / audio)",
        args.seconds,
        sig(audio_s / total_s),
        sig(total_s / audio_s)
    );
    Ok(())
}
