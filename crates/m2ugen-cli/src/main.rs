//! `m2ugen`: the native command line of m2ugen-web.
//!
//! - `m2ugen convert`: an official M2UGen checkpoint, Hugging Face models and AudioLDM 2's
//!   `diffusers` pipeline into the shard format.
//! - `m2ugen default-model`: the tiny untrained model the page bundles (noise; see
//!   [`default_model`] for using converted official weights instead).
//! - `m2ugen verify`: stream a converted model from a directory or URL and check every hash.
//! - `m2ugen info`: the GPU adapter, its features and limits.
//! - `m2ugen bench [KERNEL]`: kernel throughput against a same-process copy baseline.
//! - `m2ugen bench-llm`: LLM prefill/decode tokens/s, KV cache against full recompute.
//! - `m2ugen bench-encoders`: MERT, ViT and ViViT throughput against a same-process matmul.
//! - `m2ugen bench-music`: MusicGen decoder steps and EnCodec audio per second, as real-time
//!   factors, with the step's share of the measured copy bandwidth.
//! - `m2ugen quality REFERENCE CANDIDATE`: a quantized model's logits against its float original.
//! - `m2ugen chat`: questions about music, images and video, one or turn by turn.
//! - `m2ugen caption`: a folder of music captioned into `{"file": "caption"}`, resumable.
//! - `m2ugen generate`: music from a prompt (and music, an image or a video), as WAV.
//!
//! Bad arguments and unusable input files print one line and exit with code 2; a failure of the
//! work itself (no GPU) prints one line and exits with code 1.

mod bench_audioldm2;
mod bench_encoders;
mod bench_llm;
mod bench_music;
mod default_model;
mod make_music;
mod understand;

use m2ugen_convert as convert;

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
    /// Write the page's bundled model: the test fixtures converted, UNTRAINED (it makes noise).
    /// For real music convert official weights (`m2ugen convert`) and open the page with ?model=URL.
    DefaultModel(default_model::DefaultModelArgs),
    /// Stream a converted model from a directory or an http(s) URL, checking every tensor's hash.
    Verify {
        /// A directory holding manifest.json, or the base URL it is served under.
        source: String,
        /// Requests in flight at once.
        #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=64))]
        in_flight: u32,
    },
    /// Serve a converted model directory over HTTP as a CDN would (Range, CORS), to try the page on it.
    Serve {
        /// A directory holding manifest.json and its shards.
        dir: std::path::PathBuf,
        /// Address to listen on (port 0: any free port).
        #[arg(long, default_value = "127.0.0.1:8081")]
        addr: String,
        /// Misbehave under path prefixes /cut/, /no-ranges/, /corrupt/ (for the browser tests).
        #[arg(long)]
        test_faults: bool,
    },
    /// Show the GPU adapter this machine gives, its features and limits.
    Info,
    /// Measure kernels: time, GB/s, GFLOP/s, ratio to a buffer copy, fraction of peak.
    Bench(BenchArgs),
    /// Measure the LLM: prefill and decode tokens/s, KV cache against full recompute.
    BenchLlm(BenchLlmArgs),
    /// Measure the encoders: MERT in seconds of audio per second, ViT and ViViT in clips per
    /// second, each as a fraction of the dense matmul's GFLOP/s.
    BenchEncoders(bench_encoders::BenchEncodersArgs),
    /// MusicGen's decoder (steps/s with guidance) and EnCodec (audio seconds/s) as real-time factors, random weights.
    BenchMusic(bench_music::BenchMusicArgs),
    /// AudioLDM 2's UNet (steps/s with guidance), VAE and vocoder as a real-time factor at 200 steps, random weights.
    BenchAudioldm2(bench_audioldm2::BenchAudioldm2Args),
    /// Ask a converted M2UGen or MU-LLaMA model about music, an image or a video.
    Chat(understand::ChatArgs),
    /// Caption every audio file of a folder (MUCaps' JSON), resuming where a run stopped.
    Caption(understand::CaptionArgs),
    /// Make music from a prompt (and music, an image or a video) with M2UGen or MusicGen, as WAV.
    Generate(make_music::GenerateArgs),
    /// Compare a converted (quantized) model's logits and greedy tokens with a float original's.
    Quality {
        /// The float model: a directory holding manifest.json.
        reference: std::path::PathBuf,
        /// The model to judge, same layout.
        candidate: std::path::PathBuf,
        /// Prompt token ids, comma-separated (default: 12 seeded random ids).
        #[arg(long, value_delimiter = ',')]
        prompt: Vec<u32>,
        /// Greedy tokens of the reference to compare over.
        #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=4096))]
        tokens: u32,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Geometry {
    /// LLaMA-2 7B as M2UGen uses it.
    #[value(name = "7b")]
    Llama7b,
    /// The reference fixture's size.
    Tiny,
}

#[derive(clap::Args)]
struct BenchLlmArgs {
    /// A converted model directory; without it, random weights of --geometry.
    #[arg(long)]
    model: Option<std::path::PathBuf>,
    /// Geometry of the random weights.
    #[arg(long, value_enum, default_value = "7b")]
    geometry: Geometry,
    /// Layers of the random model (the 7B has 32; fewer fit smaller machines).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=128))]
    layers: Option<u32>,
    /// Weight format of the random model's linear layers.
    #[arg(long, value_enum, default_value = "q4")]
    weights: Weights,
    /// Prompt tokens.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=4096))]
    prompt: u32,
    /// Decode steps.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=4096))]
    tokens: u32,
    /// Sequences decoded together; several, comma-separated, are measured in one run
    /// (e.g. 1,8) and compared.
    #[arg(long, value_delimiter = ',', default_value = "1", value_parser = clap::value_parser!(u32).range(1..=64))]
    batch: Vec<u32>,
    /// Element type of activations (f16 needs shader-f16).
    #[arg(long, value_enum, default_value = "f32")]
    elem: ElemArg,
}

#[derive(clap::Args)]
struct ConvertArgs {
    /// An official M2UGen (or MU-LLaMA) checkpoint.pth.
    #[arg(long)]
    checkpoint: Option<std::path::PathBuf>,
    /// The LLaMA params.json (Meta layout) of --checkpoint (default: that of --llama).
    #[arg(long, requires = "checkpoint")]
    params: Option<std::path::PathBuf>,
    /// A LLaMA directory, Meta layout (params.json + consolidated.*.pth) or Hugging Face layout
    /// (config.json + model.safetensors): the LLM alone, or the base --checkpoint is laid over.
    #[arg(long)]
    llama: Option<std::path::PathBuf>,
    /// LLaMA's tokenizer.model (SentencePiece) or tokenizer.json: written as tokenizer.json with
    /// [AUD0]..[AUD7] added.
    #[arg(long)]
    tokenizer: Option<std::path::PathBuf>,
    /// A Hugging Face model directory (config.json + model.safetensors) to store as component
    /// NAME, e.g. --hf musicgen=path/to/musicgen-small. Repeatable. (--hf audioldm2=DIR is read
    /// as --diffusers audioldm2=DIR.)
    #[arg(long, value_name = "NAME=DIR", value_parser = parse_component)]
    hf: Vec<(String, std::path::PathBuf)>,
    /// A diffusers pipeline directory (model_index.json and a folder per part, as published):
    /// --diffusers audioldm2=path/to/audioldm2-music, stored as component audioldm2, with its
    /// tokenizers (tokenizer/, tokenizer_2/) when there.
    #[arg(long, value_name = "audioldm2=DIR", value_parser = parse_pipeline)]
    diffusers: Vec<(String, std::path::PathBuf)>,
    /// The config.json of an encoder inside --checkpoint (mert, vit or vivit), e.g.
    /// --config mert=MERT-v1-95M/config.json; without it the published model's is written when
    /// the checkpoint's copy has its shapes. Repeatable.
    #[arg(long = "config", value_name = "NAME=FILE", value_parser = parse_component, requires = "checkpoint")]
    configs: Vec<(String, std::path::PathBuf)>,
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
    /// What the model is (written into the manifest); by default told from what is converted.
    #[arg(long, value_enum)]
    kind: Option<KindArg>,
}

#[derive(Clone, Copy, ValueEnum)]
enum KindArg {
    M2ugenMusicgen,
    M2ugenAudioldm2,
    MuLlama,
    Musicgen,
    Audioldm2,
    Llama,
    Components,
}

impl KindArg {
    fn kind(self) -> m2ugen_core::config::ModelKind {
        use m2ugen_core::config::ModelKind as K;
        match self {
            KindArg::M2ugenMusicgen => K::M2ugenMusicgen,
            KindArg::M2ugenAudioldm2 => K::M2ugenAudioldm2,
            KindArg::MuLlama => K::MuLlama,
            KindArg::Musicgen => K::Musicgen,
            KindArg::Audioldm2 => K::Audioldm2,
            KindArg::Llama => K::Llama,
            KindArg::Components => K::Components,
        }
    }
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
    match cli.command {
        Command::Convert(args) => finish("convert: ", run_convert(&args), 2),
        Command::DefaultModel(args) => finish_classified("default-model: ", default_model::run(&args)),
        Command::Verify { source, in_flight } => finish("verify: ", run_verify(&source, in_flight as usize), 2),
        Command::Serve { dir, addr, test_faults } => finish("serve: ", run_serve(&dir, &addr, test_faults), 2),
        Command::Info => finish("", pollster::block_on(run_info()), 1),
        Command::Bench(args) => finish("", pollster::block_on(run_bench(args)), 1),
        Command::BenchLlm(args) => finish("bench-llm: ", pollster::block_on(run_bench_llm(args)), 1),
        Command::BenchEncoders(args) => finish("bench-encoders: ", pollster::block_on(bench_encoders::run(args)), 1),
        Command::BenchMusic(args) => finish("bench-music: ", pollster::block_on(bench_music::run(args)), 1),
        Command::BenchAudioldm2(args) => finish("bench-audioldm2: ", pollster::block_on(bench_audioldm2::run(args)), 1),
        Command::Chat(args) => finish_classified("chat: ", pollster::block_on(understand::run_chat(args))),
        Command::Caption(args) => finish_classified("caption: ", pollster::block_on(understand::run_caption(args))),
        Command::Generate(args) => finish_classified("generate: ", pollster::block_on(make_music::run(args))),
        Command::Quality { reference, candidate, prompt, tokens } => finish("quality: ", pollster::block_on(run_quality(&reference, &candidate, prompt, tokens as usize)), 2),
    }
}

/// One line on stderr for a failure, with the command's exit code.
fn finish(what: &str, result: anyhow::Result<()>, code: u8) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("m2ugen: {what}{}", format!("{e:#}").replace('\n', " "));
            ExitCode::from(code)
        }
    }
}

/// A problem with what the user gave (a file, a model directory, a setting): exit code 2.
#[derive(Debug)]
pub struct InputError(pub String);

impl std::fmt::Display for InputError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for InputError {}

/// One line for a failure: exit code 2 when the input is at fault, 1 when the work failed.
fn finish_classified(what: &str, result: anyhow::Result<()>) -> ExitCode {
    let code = match &result {
        Err(e) if e.downcast_ref::<InputError>().is_some() => 2,
        _ => 1,
    };
    finish(what, result, code)
}

fn parse_component(s: &str) -> Result<(String, std::path::PathBuf), String> {
    let (name, dir) = s.split_once('=').ok_or_else(|| format!("'{s}' is not NAME=DIR"))?;
    Ok((name.to_string(), dir.into()))
}

/// `--diffusers NAME=DIR`: NAME must be a pipeline the converter reads.
fn parse_pipeline(s: &str) -> Result<(String, std::path::PathBuf), String> {
    let (name, dir) = parse_component(s)?;
    if !convert::diffusers::PIPELINES.contains(&name.as_str()) {
        return Err(format!("'{name}' is not a diffusers pipeline the converter reads ({})", convert::diffusers::PIPELINES.join(", ")));
    }
    Ok((name, dir))
}

fn run_verify(source: &str, in_flight: usize) -> anyhow::Result<()> {
    use m2ugen_weights::loader::{load_manifest, load_tensors, Event, Fetcher, LoadOptions};
    use m2ugen_weights::native::{DirFetcher, HttpFetcher};
    async fn verify<F: Fetcher>(fetcher: &F, in_flight: usize) -> anyhow::Result<()> {
        let manifest = load_manifest(fetcher).await?;
        let clock = m2ugen_gpu::now_ms;
        let options = LoadOptions { in_flight, max_resumes: 8, clock: &clock, cache: None };
        let mut count = 0;
        let mut last = None;
        let mut shown = f64::NEG_INFINITY;
        let live = std::io::IsTerminal::is_terminal(&std::io::stderr());
        load_tensors(fetcher, &manifest, None, &options, |event| match event {
            Event::Notice(n) => eprintln!("note: {n}"),
            Event::Progress(p) => {
                // On a terminal: bytes, rate and time left, at most twice a second.
                if live && (p.elapsed_ms - shown > 500.0 || p.done == p.total) {
                    shown = p.elapsed_ms;
                    let eta = p.eta_s().map_or("?".to_string(), |s| format!("{s:.0} s"));
                    let mib = |b: u64| b as f64 / (1 << 20) as f64;
                    eprint!("\r{:.1} / {:.1} MiB, {:.1} MiB/s, {eta} left   ", mib(p.done), mib(p.total), p.rate() / (1 << 20) as f64);
                }
                last = Some(p);
            }
        }, |_, _| {
            count += 1;
            Ok(())
        })
        .await?;
        if live {
            eprintln!();
        }
        let p = last.map_or((0, 0.0), |p| (p.done, p.rate()));
        println!("{}: {count} tensors verified, {:.1} MiB at {:.1} MiB/s", manifest.model, p.0 as f64 / (1 << 20) as f64, p.1 / (1 << 20) as f64);
        Ok(())
    }
    if source.starts_with("http://") || source.starts_with("https://") {
        pollster::block_on(verify(&HttpFetcher::new(source), in_flight))
    } else {
        pollster::block_on(verify(&DirFetcher(source.into()), in_flight))
    }
}

fn run_serve(dir: &std::path::Path, addr: &str, test_faults: bool) -> anyhow::Result<()> {
    use m2ugen_weights::native::server::{Faults, Server};
    anyhow::ensure!(dir.join("manifest.json").is_file(), "{}: no manifest.json here (convert a model into it first)", dir.display());
    let server = Server::bind(addr, dir, Faults { by_path: test_faults, ..Default::default() }).map_err(|e| anyhow::anyhow!("{addr}: {e}"))?;
    // The first line is read by scripts: the base URL.
    println!("{}", server.base);
    eprintln!("serving {} (Range, CORS) until interrupted", dir.display());
    use std::io::Write;
    std::io::stdout().flush()?;
    server.wait();
    Ok(())
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
        kind: args.kind.map(KindArg::kind),
    };
    let inputs = convert::Inputs {
        checkpoint: args.checkpoint.as_deref(),
        params: args.params.as_deref(),
        llama: args.llama.as_deref(),
        tokenizer: args.tokenizer.as_deref(),
        hf: args.hf.iter().chain(&args.diffusers).map(|(name, dir)| (name.clone(), dir.as_path())).collect(),
        configs: args.configs.iter().map(|(name, file)| (name.clone(), file.as_path())).collect(),
    };
    let manifest = convert::convert(&inputs, &args.out, &options)?;
    let bytes: u64 = manifest.shards.iter().map(|s| s.bytes).sum();
    println!("wrote {} tensors in {} shard(s), {:.1} MiB, to {}", manifest.tensors.len(), manifest.shards.len(), bytes as f64 / (1 << 20) as f64, args.out.display());
    Ok(())
}

async fn run_info() -> anyhow::Result<()> {
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

async fn run_bench(args: BenchArgs) -> anyhow::Result<()> {
    let f16 = if args.elem == ElemArg::F16 { F16Mode::Require } else { F16Mode::Auto };
    let gpu = Gpu::new(GpuOptions { f16, ..Default::default() }).await?;
    let elem = if args.elem == ElemArg::F16 { Elem::F16 } else { Elem::F32 };
    println!("device: {}", gpu.describe());
    println!(
        "method: {} launches in one submission after a warm-up, clock stopped when the queue drains; 'x copy' = GB/s over a same-size buffer copy in this process",
        args.iters
    );
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

/// Loads the LLM of a converted model directory.
async fn load_llm(gpu: &Gpu, dtype: m2ugen_core::DType, dir: &std::path::Path, max_seq: usize) -> anyhow::Result<m2ugen_models::Llama> {
    use m2ugen_weights::loader::LoadOptions;
    let fetcher = m2ugen_weights::native::DirFetcher(dir.to_path_buf());
    let clock = m2ugen_gpu::now_ms;
    let options = LoadOptions { in_flight: 4, max_resumes: 3, clock: &clock, cache: None };
    let (_, llama) = m2ugen_pipeline::load::load_llama(gpu, dtype, &fetcher, max_seq, &options).await.map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))?;
    Ok(llama)
}

async fn run_bench_llm(args: BenchLlmArgs) -> anyhow::Result<()> {
    let f16 = if args.elem == ElemArg::F16 { F16Mode::Require } else { F16Mode::Auto };
    let gpu = Gpu::new(GpuOptions { f16, ..Default::default() }).await?;
    let dtype = if args.elem == ElemArg::F16 { m2ugen_core::DType::F16 } else { m2ugen_core::DType::F32 };
    println!("device: {}", gpu.describe());
    let max_seq = args.prompt as usize + args.tokens as usize + bench_llm::WARM_STEPS + 1;
    let llama = match &args.model {
        Some(dir) => load_llm(&gpu, dtype, dir, max_seq).await?,
        None => {
            let mut config = match args.geometry {
                Geometry::Llama7b => m2ugen_core::config::LlamaConfig::llama2_7b_m2ugen(),
                Geometry::Tiny => m2ugen_core::config::LlamaConfig::tiny(),
            };
            if let Some(layers) = args.layers {
                config.n_layers = layers as usize;
                config.prefix.truncate(config.n_layers);
            }
            config.max_seq = max_seq;
            let quant = match args.weights {
                Weights::Dense => None,
                Weights::Q8 => Some(QuantFormat::Q8),
                Weights::Q4 => Some(QuantFormat::Q4),
            };
            println!("random weights ({}), {} layers", args.weights_name(), config.n_layers);
            let mut store = bench_llm::random_store(&gpu, dtype, &config, quant)?;
            m2ugen_models::Llama::load(&gpu, &mut store, config)?
        }
    };
    let batches: Vec<usize> = args.batch.iter().map(|&b| b as usize).collect();
    bench_llm::run(&gpu, &llama, args.prompt as usize, args.tokens as usize, &batches).await
}

impl BenchLlmArgs {
    fn weights_name(&self) -> &'static str {
        match self.weights {
            Weights::Dense => "dense",
            Weights::Q8 => "q8",
            Weights::Q4 => "q4",
        }
    }
}

async fn run_quality(reference: &std::path::Path, candidate: &std::path::Path, prompt: Vec<u32>, tokens: usize) -> anyhow::Result<()> {
    let gpu = Gpu::new(GpuOptions::default()).await?;
    let max_seq = prompt.len().max(12) + tokens + 1;
    let r = load_llm(&gpu, m2ugen_core::DType::F32, reference, max_seq).await?;
    let c = load_llm(&gpu, m2ugen_core::DType::F32, candidate, max_seq).await?;
    let prompt = if prompt.is_empty() {
        let mut rng = m2ugen_core::rng::Rng::new(0);
        (0..12).map(|_| rng.below(r.config.vocab) as u32).collect()
    } else {
        prompt
    };
    if let Some(t) = prompt.iter().find(|&&t| t as usize >= r.config.vocab) {
        anyhow::bail!("--prompt: token {t} is past the vocabulary of {}", r.config.vocab);
    }
    let q = m2ugen_pipeline::quality::compare(&gpu, &r, &c, &prompt, tokens).await?;
    println!("positions {}, max logit error {:.4}, mean logit error {:.4}, top-1 agreement {:.1}%", q.positions, q.max_logit_error, q.mean_logit_error, 100.0 * q.top1_agreement);
    Ok(())
}
