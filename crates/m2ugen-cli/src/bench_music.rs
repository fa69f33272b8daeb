//! `m2ugen bench-music`: MusicGen's decoder in steps per second with classifier-free guidance
//! (the real generation loop: both rows in one forward, guidance and sampling on the GPU, the
//! codes read back each step), and EnCodec in seconds of audio per second, each as a real-time
//! factor (50 steps or frames make one second). The decoder step's weight bytes over its time,
//! as a fraction of the copy bandwidth measured in the same run, says how close a step is to
//! the bound a decode step has on a GPU (reading every weight once).
//!
//! Weights are random, at MusicGen small's or medium's geometry and the depth asked (the full
//! depth on a GPU; a few layers on a CPU driver).

use crate::bench_encoders::{random_store, time};
use anyhow::{anyhow, Result};
use m2ugen_core::config::MusicgenConfig;
use m2ugen_core::rng::Rng;
use m2ugen_core::DType;
use m2ugen_gpu::{now_ms, Gpu, Recorder};
use m2ugen_models::encodec::EncodecDecoder;
use m2ugen_models::musicgen::MusicgenDecoder;
use m2ugen_pipeline::generate::Cancel;
use m2ugen_pipeline::music::{generate_codes, MusicSettings, FRAME_RATE};

/// `m2ugen bench-music`.
#[derive(clap::Args)]
pub struct BenchMusicArgs {
    /// MusicGen's size: small (24 layers, width 1024) or medium (48, 1536).
    #[arg(long, default_value = "small", value_parser = ["small", "medium"])]
    pub size: String,
    /// Decoder layers (default: the model's; fewer fit a CPU driver's time).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=48))]
    pub layers: Option<u32>,
    /// Decoder steps timed (after one warm-up generation).
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(8..=1500))]
    pub steps: u32,
    /// Seconds of audio EnCodec decodes per run.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=30))]
    pub seconds: u32,
    /// Conditioning rows (M2UGen's projector gives 128).
    #[arg(long, default_value_t = 128, value_parser = clap::value_parser!(u32).range(1..=512))]
    pub memory: u32,
    /// Timed EnCodec runs.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub runs: u32,
    /// Activations and weights in f16 (needs shader-f16).
    #[arg(long)]
    pub f16: bool,
}

pub async fn run(args: BenchMusicArgs) -> Result<()> {
    let f16 = if args.f16 { m2ugen_gpu::F16Mode::Require } else { m2ugen_gpu::F16Mode::Auto };
    let gpu = Gpu::new(m2ugen_gpu::GpuOptions { f16, ..Default::default() }).await?;
    let dtype = if args.f16 { DType::F16 } else { DType::F32 };
    println!("device: {}", gpu.describe());
    let copy = m2ugen_gpu::bench::copy_gbps(&gpu, 64 << 20, 5).await?;
    println!("baseline: buffer copy of 64 MiB: {copy:.1} GB/s of traffic");

    let mut config = if args.size == "medium" { MusicgenConfig::musicgen_medium() } else { MusicgenConfig::musicgen_small() };
    if let Some(l) = args.layers {
        config.decoder.num_hidden_layers = l as usize;
    }
    let c = &config.decoder;
    let steps = args.steps as usize;
    let frames = steps + 1 - c.num_codebooks;
    let mut store = random_store(&gpu, dtype, &MusicgenDecoder::tensors("musicgen", &config))?;
    let decoder = MusicgenDecoder::load(&gpu, &mut store, "musicgen", &config, steps + 8)?;
    drop(store);
    let (memory, width) = (args.memory as usize, config.text_encoder.d_model);
    let mut rng = Rng::new(5);
    let mut rec = Recorder::new(&gpu);
    let states = gpu.upload("conditioning", &[2 * memory, width], dtype, &rng.vec(2 * memory * width, -1.0, 1.0))?;
    let mask: Vec<bool> = (0..2 * memory).map(|i| i < memory).collect();
    let cond = decoder.condition(&mut rec, &states, 2, memory, Some(&mask))?;
    rec.submit()?;
    let settings = MusicSettings { frames, ..MusicSettings::musicgen(0.0, 1) };
    let never = Cancel::default();
    generate_codes(&gpu, &decoder, &cond, 1, &settings, None, &never, |_, _| {}).await.map_err(|e| anyhow!("{e}"))?;
    let start = now_ms();
    generate_codes(&gpu, &decoder, &cond, 1, &settings, None, &never, |_, _| {}).await.map_err(|e| anyhow!("{e}"))?;
    let ms = (now_ms() - start) / steps as f64;
    let bytes = MusicgenDecoder::step_weight_bytes(c, dtype.size());
    let gbps = bytes as f64 / ms / 1e6;
    println!(
        "MusicGen {} decoder, {} of {} layers, guidance 3 (2 rows), {memory} conditioning rows: {:.2} steps/s = {:.3}x real time ({ms:.1} ms per step); {:.1} MB of weights per step, {gbps:.1} GB/s = {:.3} of the copy bandwidth",
        args.size,
        c.num_hidden_layers,
        if args.size == "medium" { 48 } else { 24 },
        1000.0 / ms,
        1000.0 / ms / FRAME_RATE as f64,
        bytes as f64 / 1e6,
        gbps / copy
    );
    drop(decoder);

    let e = &config.audio_encoder;
    let mut store = random_store(&gpu, dtype, &EncodecDecoder::tensors("musicgen.audio_encoder", e, c.num_codebooks))?;
    let encodec = EncodecDecoder::load(&gpu, &mut store, "musicgen.audio_encoder", e)?;
    let frames = args.seconds as usize * FRAME_RATE;
    let codes: Vec<u32> = (0..c.num_codebooks * frames).map(|_| rng.below(e.codebook_size) as u32).collect();
    let ms = time(&gpu, args.runs, |rec| Ok(encodec.decode(rec, &codes, 1, frames)?)).await?;
    let gflops = EncodecDecoder::flops(e, frames) / ms / 1e6;
    println!("EnCodec 32 kHz decoder, {} s of audio: {:.2} s of audio per second = {:.2}x real time ({ms:.0} ms per run, {gflops:.1} GFLOP/s)", args.seconds, args.seconds as f64 * 1000.0 / ms, args.seconds as f64 * 1000.0 / ms);
    Ok(())
}
