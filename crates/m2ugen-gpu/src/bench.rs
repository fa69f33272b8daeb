//! Kernel benchmarks: each reports time, GB/s and GFLOP/s, its ratio to a buffer copy of the
//! same bytes measured in the same process (the practical bandwidth bound of this device), and
//! the fraction of the device's peak when the device is in [`PEAKS`].
//!
//! The clock stops only once the queue has drained; a case records `iters` launches into one
//! submission after one warm-up submission, so per-submit overhead is amortised.

use crate::registry::Elem;
use crate::{now_ms, Gpu, GpuTensor, Recorder, Result, Unary, Weight};
use m2ugen_core::quant::{quantize, QuantFormat};
use m2ugen_core::rng::Rng;

/// Known devices: name fragment, memory bandwidth (GB/s), f32 peak (GFLOP/s, no tensor cores).
pub const PEAKS: [(&str, f64, f64); 3] = [
    ("H100 PCIe", 2039.0, 51_200.0),
    ("H100", 3352.0, 66_900.0),
    ("H200", 4800.0, 66_900.0),
];

/// The peak bandwidth and f32 throughput of a known device.
pub fn peak_of(adapter_name: &str) -> Option<(f64, f64)> {
    PEAKS.iter().find(|(name, ..)| adapter_name.contains(name)).map(|&(_, bw, fl)| (bw, fl))
}

/// A benchmark case.
#[derive(Clone, Debug, PartialEq)]
pub enum Case {
    /// Matrix-vector product `(m, k) x (n, k)ᵀ` with a weight format.
    Matvec {
        /// Weight format: None = dense elem.
        quant: Option<QuantFormat>,
        /// Rows of x.
        m: usize,
        /// In features.
        k: usize,
        /// Out features.
        n: usize,
    },
    /// Tiled matrix product.
    Matmul {
        /// Weight format: None = dense elem.
        quant: Option<QuantFormat>,
        /// Rows of x.
        m: usize,
        /// In features.
        k: usize,
        /// Out features.
        n: usize,
    },
    /// RMSNorm over `rows x cols`.
    RmsNorm {
        /// Rows.
        rows: usize,
        /// Columns.
        cols: usize,
    },
    /// Softmax over `rows x cols`.
    Softmax {
        /// Rows.
        rows: usize,
        /// Columns.
        cols: usize,
    },
    /// SiLU over `n` elements.
    Silu {
        /// Elements.
        n: usize,
    },
}

/// One measured case.
#[derive(Clone, Debug)]
pub struct Report {
    /// Kernel name.
    pub name: String,
    /// Shape in words.
    pub shape: String,
    /// Element type.
    pub elem: Elem,
    /// Milliseconds per launch.
    pub ms: f64,
    /// Bytes read and written per launch.
    pub bytes: f64,
    /// Floating-point operations per launch.
    pub flops: f64,
    /// GB/s of a same-size buffer copy in this process.
    pub copy_gbps: f64,
    /// The device's peak (GB/s, GFLOP/s), when known.
    pub peak: Option<(f64, f64)>,
}

impl Report {
    /// Achieved bandwidth.
    pub fn gbps(&self) -> f64 {
        self.bytes / self.ms / 1e6
    }

    /// Achieved throughput.
    pub fn gflops(&self) -> f64 {
        self.flops / self.ms / 1e6
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:<12} {:<22} {:<4} {:>9.3} ms {:>9.2} GB/s {:>9.2} GFLOP/s {:>6.2}x copy",
            self.name,
            self.shape,
            format!("{:?}", self.elem).to_lowercase(),
            self.ms,
            self.gbps(),
            self.gflops(),
            self.gbps() / self.copy_gbps
        )?;
        match self.peak {
            Some((bw, fl)) => write!(f, "  {:.0}% of {bw:.0} GB/s, {:.1}% of {fl:.0} GFLOP/s", 100.0 * self.gbps() / bw, 100.0 * self.gflops() / fl),
            None => write!(f, "  (peak unknown for this device)"),
        }
    }
}

/// The cases `m2ugen bench all` runs: the 7B LLM's decode shapes and small-model shapes.
pub fn default_cases() -> Vec<Case> {
    vec![
        Case::Matvec { quant: Some(QuantFormat::Q4), m: 1, k: 4096, n: 4096 },
        Case::Matvec { quant: Some(QuantFormat::Q8), m: 1, k: 4096, n: 4096 },
        Case::Matvec { quant: None, m: 1, k: 4096, n: 4096 },
        Case::Matmul { quant: None, m: 512, k: 512, n: 512 },
        Case::Matmul { quant: Some(QuantFormat::Q4), m: 512, k: 512, n: 512 },
        Case::RmsNorm { rows: 64, cols: 4096 },
        Case::Softmax { rows: 32, cols: 4096 },
        Case::Silu { n: 1 << 22 },
    ]
}

fn weight(gpu: &Gpu, elem: Elem, quant: Option<QuantFormat>, n: usize, k: usize, rng: &mut Rng) -> Result<(Weight, f64)> {
    let w = rng.vec(n * k, -1.0, 1.0);
    Ok(match quant {
        None => (Weight::Dense(gpu.upload("bench weight", &[n, k], elem.dtype(), &w)?), (n * k * elem.dtype().size()) as f64),
        Some(format) => {
            let q = quantize(format, n, k, &w)?;
            let bytes = q.bytes() as f64;
            (gpu.upload_quant("bench weight", &q)?, bytes)
        }
    })
}

/// The bandwidth a buffer copy of `bytes` reaches on this device, in GB/s of traffic (bytes read
/// plus bytes written): the measured bound when the device's peak is not known.
pub async fn copy_gbps(gpu: &Gpu, bytes: u64, iters: usize) -> Result<f64> {
    let ms = copy_ms(gpu, bytes, iters).await?;
    Ok(2.0 * bytes as f64 / ms / 1e6)
}

/// Time of one copy of `bytes` bytes between two buffers, in ms (same method as the kernels).
async fn copy_ms(gpu: &Gpu, bytes: u64, iters: usize) -> Result<f64> {
    let bytes = bytes.div_ceil(4).max(4) * 4;
    let a = gpu.zeros("copy source", &[(bytes / 4) as usize], m2ugen_core::DType::F32)?;
    let b = gpu.zeros("copy target", &[(bytes / 4) as usize], m2ugen_core::DType::F32)?;
    let (Some(ca), Some(cb)) = (a.chunks().first(), b.chunks().first()) else { return Ok(f64::NAN) };
    let time = |n: usize| {
        let mut enc = gpu.device.create_command_encoder(&Default::default());
        for _ in 0..n {
            enc.copy_buffer_to_buffer(ca.buffer.buffer(), 0, cb.buffer.buffer(), 0, ca.buffer.size().min(cb.buffer.size()));
        }
        gpu.queue.submit([enc.finish()]);
    };
    time(1);
    gpu.sync().await?;
    let t0 = now_ms();
    time(iters);
    gpu.sync().await?;
    Ok((now_ms() - t0) / iters as f64)
}

/// Runs one case `iters` times (after a warm-up) and measures it.
pub async fn run(gpu: &Gpu, elem: Elem, case: &Case, iters: usize) -> Result<Report> {
    let mut rng = Rng::new(1);
    let es = elem.dtype().size() as f64;
    let dt = elem.dtype();
    let input = |shape: &[usize], rng: &mut Rng| -> Result<GpuTensor> { gpu.upload("bench input", shape, dt, &rng.vec(shape.iter().product(), -1.0, 1.0)) };
    type Launch<'a> = Box<dyn Fn(&mut Recorder) -> Result<GpuTensor> + 'a>;
    let (name, shape, bytes, flops, launch): (String, String, f64, f64, Launch) = match case.clone() {
        Case::Matvec { quant, m, k, n } | Case::Matmul { quant, m, k, n } => {
            let is_matvec = matches!(case, Case::Matvec { .. });
            let (w, wbytes) = weight(gpu, elem, quant, n, k, &mut rng)?;
            let x = input(&[m, k], &mut rng)?;
            let kind = quant.map_or("dense", |q| q.name());
            let name = format!("{}_{kind}", if is_matvec { "matvec" } else { "matmul" });
            let bytes = wbytes + ((m * k + m * n) as f64) * es;
            let launch: Launch = Box::new(move |rec| if is_matvec { rec.matvec(&x, &w, None, None) } else { rec.matmul(&x, &w, None, None) });
            (name, format!("m={m} k={k} n={n}"), bytes, 2.0 * (m * k * n) as f64, launch)
        }
        Case::RmsNorm { rows, cols } => {
            let x = input(&[rows, cols], &mut rng)?;
            let w = input(&[cols], &mut rng)?;
            let launch: Launch = Box::new(move |rec| rec.rms_norm(&x, &w, 1e-5));
            ("rms_norm".into(), format!("{rows}x{cols}"), (2 * rows * cols + cols) as f64 * es, 4.0 * (rows * cols) as f64, launch)
        }
        Case::Softmax { rows, cols } => {
            let x = input(&[rows, cols], &mut rng)?;
            let launch: Launch = Box::new(move |rec| rec.softmax(&x));
            ("softmax".into(), format!("{rows}x{cols}"), (2 * rows * cols) as f64 * es, 5.0 * (rows * cols) as f64, launch)
        }
        Case::Silu { n } => {
            let x = input(&[n], &mut rng)?;
            let launch: Launch = Box::new(move |rec| rec.unary(Unary::Silu, &x));
            ("silu".into(), format!("{n}"), (2 * n) as f64 * es, 4.0 * n as f64, launch)
        }
    };
    let mut rec = Recorder::new(gpu);
    launch(&mut rec)?;
    rec.submit()?;
    gpu.sync().await?;
    let mut rec = Recorder::new(gpu);
    for _ in 0..iters {
        launch(&mut rec)?;
    }
    let t0 = now_ms();
    rec.submit()?;
    gpu.sync().await?;
    let ms = (now_ms() - t0) / iters as f64;
    // A copy reads and writes: the same traffic as a kernel moving `bytes` in all.
    let copy = copy_ms(gpu, (bytes / 2.0) as u64, iters).await?;
    Ok(Report { name, shape, elem, ms, bytes, flops, copy_gbps: bytes / copy / 1e6, peak: peak_of(&gpu.info.name) })
}
