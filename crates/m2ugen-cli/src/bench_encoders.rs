//! `m2ugen bench-encoders`: MERT (MERT-v1-330M's geometry) in seconds of audio encoded per
//! second, ViT and ViViT (their published geometries) in clips per second, each with its
//! achieved GFLOP/s as a fraction of the dense matmul's GFLOP/s measured in the same run.
//!
//! Weights are random, at the depth asked (the published depth on a GPU; a layer or two on a
//! CPU driver). Each encoder runs once to warm up (pipelines compiled, buffers pooled), then
//! `--runs` times; the clock stops when the result is read back.

use anyhow::{anyhow, Result};
use m2ugen_core::config::{MertConfig, VitConfig, VivitConfig};
use m2ugen_core::rng::Rng;
use m2ugen_core::DType;
use m2ugen_gpu::bench::{self, Case};
use m2ugen_gpu::registry::Elem;
use m2ugen_gpu::{now_ms, Gpu, Recorder};
use m2ugen_models::mert::{Mert, FEATURE_CHUNK_ROWS};
use m2ugen_pipeline::features::{MUSIC_SAMPLE_RATE, MUSIC_WINDOW_SECONDS};
use m2ugen_models::vision::{VisionConfig, VisionEncoder};
use m2ugen_models::Store;

/// `m2ugen bench-encoders`.
#[derive(clap::Args)]
pub struct BenchEncodersArgs {
    /// Transformer layers of each encoder (the published models have 24 for MERT and 12 for ViT
    /// and ViViT; fewer fit a CPU driver's time).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=48))]
    pub layers: Option<u32>,
    /// Seconds of audio per MERT window.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=60))]
    pub seconds: u32,
    /// Timed runs of each encoder.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub runs: u32,
    /// Activations and weights in f16 (needs shader-f16), as the published weights are used.
    #[arg(long)]
    pub f16: bool,
}

pub(crate) fn random_store(gpu: &Gpu, dtype: DType, tensors: &[(String, Vec<usize>)]) -> Result<Store> {
    let mut store = Store::new(dtype);
    let mut rng = Rng::new(7);
    for (name, shape) in tensors {
        let n: usize = shape.iter().product();
        let fan_in: usize = shape[1..].iter().product::<usize>().max(1);
        let spread = 1.0 / (fan_in as f32).sqrt();
        let values = if name.contains("norm") && name.ends_with("weight") { vec![1.0; n] } else { rng.vec(n, -spread, spread) };
        store.insert_f32(gpu, name, shape, &values).map_err(|e| anyhow!("{e}"))?;
    }
    Ok(store)
}

/// Runs `forward` once to warm up, then `runs` times: milliseconds per run.
pub(crate) async fn time(gpu: &Gpu, runs: u32, mut forward: impl FnMut(&mut Recorder) -> Result<m2ugen_gpu::GpuTensor>) -> Result<f64> {
    let mut start = now_ms();
    for run in 0..=runs {
        if run == 1 {
            start = now_ms();
        }
        let mut rec = Recorder::new(gpu);
        let out = forward(&mut rec)?;
        rec.submit()?;
        gpu.read(&out).await?;
    }
    Ok((now_ms() - start) / runs as f64)
}

pub async fn run(args: BenchEncodersArgs) -> Result<()> {
    let f16 = if args.f16 { m2ugen_gpu::F16Mode::Require } else { m2ugen_gpu::F16Mode::Auto };
    let gpu = Gpu::new(m2ugen_gpu::GpuOptions { f16, ..Default::default() }).await?;
    let (elem, dtype) = if args.f16 { (Elem::F16, DType::F16) } else { (Elem::F32, DType::F32) };
    println!("device: {}", gpu.describe());
    let baseline = bench::run(&gpu, elem, &Case::Matmul { quant: None, m: 1024, k: 1024, n: 1024 }, 5).await?;
    let matmul = baseline.gflops();
    println!("baseline: dense matmul 1024x1024x1024 {}: {matmul:.1} GFLOP/s", if args.f16 { "f16" } else { "f32" });
    let report = |what: &str, unit: String, flops: f64, ms: f64| {
        let gflops = flops / ms / 1e6;
        println!("{what}: {unit}, {ms:.1} ms per run, {gflops:.1} GFLOP/s = {:.2} of the matmul's", gflops / matmul);
    };

    let mut mert = MertConfig::mert_v1_330m();
    if let Some(l) = args.layers {
        mert.num_hidden_layers = l as usize;
    }
    let samples = args.seconds as usize * 24_000;
    let mut store = random_store(&gpu, dtype, &Mert::tensors("mert", &mert))?;
    let model = Mert::load(&gpu, &mut store, "mert", &mert)?;
    let mut rng = Rng::new(3);
    let wave = gpu.upload("waveform", &[samples], dtype, &rng.vec(samples, -1.0, 1.0))?;
    let ms = time(&gpu, args.runs, |rec| Ok(model.state_means(rec, &wave)?)).await?;
    report(&format!("MERT-330M geometry, {} layers, {} s windows", mert.num_hidden_layers, args.seconds), format!("{:.2} s of audio per second", args.seconds as f64 / (ms / 1000.0)), Mert::flops(&mert, samples), ms);
    // The GPU memory of one window of the reference's length: the pool hands out buffers as
    // ops are recorded, so recording the window (not running it) gives its peak.
    let long = MUSIC_WINDOW_SECONDS * MUSIC_SAMPLE_RATE;
    let wave = gpu.upload("waveform", &[long], dtype, &rng.vec(long, -1.0, 1.0))?;
    let before = gpu.pool_memory().in_use;
    gpu.reset_peak();
    let mut rec = Recorder::new(&gpu);
    drop(model.state_means(&mut rec, &wave)?);
    let peak = gpu.pool_memory().peak - before;
    drop(rec);
    let mib = |bytes: f64| bytes / (1024.0 * 1024.0);
    let first_conv = ((long - mert.conv_kernel[0]) / mert.conv_stride[0] + 1) * mert.conv_dim[0] * dtype.size();
    println!(
        "MERT-330M geometry, {} layers, one {MUSIC_WINDOW_SECONDS} s window: {:.0} MiB of GPU memory at its peak (recorded, not run); the feature extractor holds {:.0} MiB of its first convolution at a time, of {:.0} MiB in all",
        mert.num_hidden_layers,
        mib(peak as f64),
        mib((FEATURE_CHUNK_ROWS * mert.conv_dim[0] * dtype.size()) as f64),
        mib(first_conv as f64)
    );
    drop(model);

    let mut vit = VitConfig::vit_base_patch16_224();
    let mut vivit = VivitConfig::vivit_b_16x2_kinetics400();
    if let Some(l) = args.layers {
        vit.num_hidden_layers = l as usize;
        vivit.num_hidden_layers = l as usize;
    }
    for (name, prefix, config) in [("ViT-B/16", "vit", VisionConfig::vit(&vit)), ("ViViT-B 16x2", "vivit", VisionConfig::vivit(&vivit))] {
        let mut store = random_store(&gpu, dtype, &config.tensors(prefix))?;
        let model = VisionEncoder::load(&gpu, &mut store, prefix, config.clone())?;
        let tokens = gpu.upload("tokens", &[config.patches(), config.token_width()], dtype, &rng.vec(config.patches() * config.token_width(), -1.0, 1.0))?;
        let ms = time(&gpu, args.runs, |rec| Ok(model.forward(rec, &tokens)?)).await?;
        report(&format!("{name} geometry, {} layers, {} tokens", config.layers, config.patches() + 1), format!("{:.2} clips per second", 1000.0 / ms), config.flops(), ms);
    }
    Ok(())
}
