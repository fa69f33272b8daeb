//! `m2ugen`: the native command line of m2ugen-web.
//!
//! - `m2ugen convert`: an official M2UGen checkpoint into the shard format.
//! - `m2ugen info`: the GPU adapter, its features and limits.
//! - `m2ugen bench [KERNEL]`: kernel throughput against a same-process copy baseline.
//!
//! Bad arguments and unusable input files print one line and exit with code 2; a failure of the
//! work itself (no GPU) prints one line and exits with code 1.

mod convert;

use clap::{Parser, Subcommand, ValueEnum};
use m2ugen_core::quant::QuantFormat;
use m2ugen_gpu::bench::{self, Case};
use m2ugen_gpu::registry::Elem;
use m2ugen_gpu::{F16Mode, Gpu, GpuOptions};
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "m2ugen", version, about = "M2UGen on WebGPU: native tools")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Convert an official M2UGen checkpoint and/or Hugging Face models into manifest + shards.
    Convert(ConvertArgs),
    /// Show the GPU adapter this machine gives, its features and limits.
    Info,
    /// Measure kernels: time, GB/s, GFLOP/s, ratio to a buffer copy, fraction of peak.
    Bench(BenchArgs),
}

#[derive(clap::Args)]
struct ConvertArgs {
    /// An official M2UGen (or MU-LLaMA) checkpoint.pth.
    #[arg(long, requires = "params")]
    checkpoint: Option<std::path::PathBuf>,
    /// The LLaMA params.json (Meta layout) of --checkpoint.
    #[arg(long, requires = "checkpoint")]
    params: Option<std::path::PathBuf>,
    /// A Hugging Face model directory (config.json + model.safetensors) to store as component
    /// NAME, e.g. --hf musicgen=path/to/musicgen-small. Repeatable.
    #[arg(long, value_name = "NAME=DIR", value_parser = parse_component)]
    hf: Vec<(String, std::path::PathBuf)>,
    /// Output directory (manifest.json and shard-*.bin).
    #[arg(long)]
    out: std::path::PathBuf,
    /// Quantize the LLM's linear weights.
    #[arg(long, value_enum)]
    quant: Option<QuantArg>,
    /// Storage of the other float tensors.
    #[arg(long, value_enum, default_value = "f16")]
    dtype: ElemArg,
    /// Shard size bound in MiB.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=1024))]
    shard_mib: u64,
    /// Model id written into the manifest.
    #[arg(long, default_value = "m2ugen")]
    model: String,
}

#[derive(Clone, Copy, ValueEnum)]
enum QuantArg {
    Q8,
    Q4,
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
enum Kernel {
    /// Every kernel at its default size.
    All,
    Matvec,
    Matmul,
    RmsNorm,
    Softmax,
    Silu,
}

#[derive(Clone, Copy, ValueEnum)]
enum Weights {
    Dense,
    Q8,
    Q4,
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
enum ElemArg {
    F32,
    F16,
}

#[derive(clap::Args)]
struct BenchArgs {
    /// Which kernel.
    #[arg(value_enum, default_value = "all")]
    kernel: Kernel,
    /// Weight format of matvec/matmul.
    #[arg(long, value_enum, default_value = "q4")]
    weights: Weights,
    /// Rows of the input (matvec/matmul) or of the tensor (rms-norm/softmax).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    m: u32,
    /// Input features (matvec/matmul), columns (rms-norm/softmax), elements (silu).
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..))]
    k: u32,
    /// Output features (matvec/matmul).
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..))]
    n: u32,
    /// Launches per measurement.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    iters: u32,
    /// Element type of activations (f16 needs shader-f16).
    #[arg(long, value_enum, default_value = "f32")]
    elem: ElemArg,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if matches!(e.kind(), clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion) => {
            print!("{e}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            let first = e.to_string().lines().next().unwrap_or("invalid arguments").trim_start_matches("error: ").to_string();
            eprintln!("m2ugen: {first} (see m2ugen --help)");
            return ExitCode::from(2);
        }
    };
    if let Command::Convert(args) = &cli.command {
        return match run_convert(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("m2ugen: convert: {}", format!("{e:#}").replace('\n', " "));
                ExitCode::from(2)
            }
        };
    }
    match pollster::block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("m2ugen: {}", format!("{e:#}").replace('\n', " "));
            ExitCode::from(1)
        }
    }
}

fn parse_component(s: &str) -> Result<(String, std::path::PathBuf), String> {
    let (name, dir) = s.split_once('=').ok_or_else(|| format!("'{s}' is not NAME=DIR"))?;
    Ok((name.to_string(), dir.into()))
}

fn run_convert(args: &ConvertArgs) -> anyhow::Result<()> {
    let options = convert::Options {
        float: if args.dtype == ElemArg::F32 { m2ugen_weights::StoredType::F32 } else { m2ugen_weights::StoredType::F16 },
        quant: args.quant.map(|q| match q {
            QuantArg::Q8 => QuantFormat::Q8,
            QuantArg::Q4 => QuantFormat::Q4,
        }),
        shard_bytes: args.shard_mib << 20,
        model: args.model.clone(),
    };
    let inputs = convert::Inputs {
        m2ugen: args.checkpoint.as_deref().zip(args.params.as_deref()),
        hf: args.hf.iter().map(|(name, dir)| (name.clone(), dir.as_path())).collect(),
    };
    let manifest = convert::convert(&inputs, &args.out, &options)?;
    let bytes: u64 = manifest.shards.iter().map(|s| s.bytes).sum();
    println!("wrote {} tensors in {} shard(s), {:.1} MiB, to {}", manifest.tensors.len(), manifest.shards.len(), bytes as f64 / (1 << 20) as f64, args.out.display());
    Ok(())
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Convert(_) => unreachable!("handled in main"),
        Command::Info => {
            let gpu = Gpu::new(GpuOptions::default()).await?;
            println!("{}", gpu.describe());
            let l = &gpu.limits;
            println!(
                "max buffer {} MiB, workgroup storage {} KiB, invocations/workgroup {}, storage buffers/stage {}",
                l.max_buffer_size >> 20,
                l.max_compute_workgroup_storage_size >> 10,
                l.max_compute_invocations_per_workgroup,
                l.max_storage_buffers_per_shader_stage
            );
            Ok(())
        }
        Command::Bench(args) => {
            let f16 = if args.elem == ElemArg::F16 { F16Mode::Require } else { F16Mode::Auto };
            let gpu = Gpu::new(GpuOptions { f16, ..Default::default() }).await?;
            let elem = if args.elem == ElemArg::F16 { Elem::F16 } else { Elem::F32 };
            println!("device: {}", gpu.describe());
            println!("method: {} launches in one submission after a warm-up, clock stopped when the queue drains; 'x copy' = GB/s over a same-size buffer copy in this process", args.iters);
            let quant = match args.weights {
                Weights::Dense => None,
                Weights::Q8 => Some(QuantFormat::Q8),
                Weights::Q4 => Some(QuantFormat::Q4),
            };
            let (m, k, n) = (args.m as usize, args.k as usize, args.n as usize);
            let cases = match args.kernel {
                Kernel::All => bench::default_cases(),
                Kernel::Matvec => vec![Case::Matvec { quant, m, k, n }],
                Kernel::Matmul => vec![Case::Matmul { quant, m, k, n }],
                Kernel::RmsNorm => vec![Case::RmsNorm { rows: m, cols: k }],
                Kernel::Softmax => vec![Case::Softmax { rows: m, cols: k }],
                Kernel::Silu => vec![Case::Silu { n: k }],
            };
            for case in &cases {
                println!("{}", bench::run(&gpu, elem, case, args.iters as usize).await?);
            }
            Ok(())
        }
    }
}
