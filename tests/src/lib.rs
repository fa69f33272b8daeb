//! The test harness shared by every GPU suite, natively (lavapipe or a real GPU) and in headless
//! Chromium (WebGPU on SwiftShader).
//!
//! - [`gpu_test!`]: one test body, run as `#[test]` natively for f32 and f16, and as
//!   `#[wasm_bindgen_test]` in the browser for f32 (SwiftShader has no `shader-f16`).
//! - [`Tol`]: the tolerance table, one entry per element type.
//! - [`assert_close`]: compares with a CPU twin and names the first bad index.
//! - [`SHAPES`]: the awkward sizes tests draw from.
#![allow(clippy::unwrap_used)]

pub use anyhow::{ensure, Result};

pub mod audioldm2;
pub mod audioldm2_pipeline;
pub mod audioldm2_decoder;
pub mod audioldm2_text;
pub mod clap_audio;
pub mod encodec;
pub mod music;
pub mod parity;
use m2ugen_gpu::registry::Elem;
use m2ugen_gpu::{F16Mode, Gpu, GpuOptions};

/// Sizes that catch edge cases: one, odd, around a workgroup of 64, large and odd.
pub const SHAPES: [usize; 6] = [1, 7, 63, 64, 65, 1000];

/// Tolerance: `|ours - reference| <= atol + rtol * |reference|`.
#[derive(Clone, Copy, Debug)]
pub struct Tol {
    /// Absolute part.
    pub atol: f32,
    /// Relative part.
    pub rtol: f32,
}

impl Tol {
    /// The table. f32 kernels accumulate in f32 against f64 references; f16 kernels store f16
    /// (relative step 2^-11) and accumulate in f32, against references computed from the same
    /// f16-rounded inputs.
    pub fn of(elem: Elem) -> Tol {
        match elem {
            Elem::F32 => Tol { atol: 1e-5, rtol: 1e-4 },
            Elem::F16 => Tol { atol: 2e-3, rtol: 2e-3 },
        }
    }
}

impl Tol {
    /// For results that are sums of `k` products (matmul, matvec): `atol` grows with sqrt(k).
    pub fn for_sums(elem: Elem, k: usize) -> Tol {
        let t = Tol::of(elem);
        Tol { atol: t.atol * (k as f32).sqrt(), rtol: t.rtol }
    }
}

/// Element types the native suite runs: f32 and f16. Set `M2UGEN_NO_F16=1` on a device without
/// `shader-f16` to run f32 only (lavapipe, Metal, Vulkan on most GPUs all have it).
pub fn native_elems() -> Vec<Elem> {
    if std::env::var_os("M2UGEN_NO_F16").is_some() { vec![Elem::F32] } else { Elem::ALL.to_vec() }
}

/// Rounds values to what the element type stores, so a reference sees the kernel's inputs.
pub fn round_to(elem: Elem, v: &[f32]) -> Vec<f32> {
    match elem {
        Elem::F32 => v.to_vec(),
        Elem::F16 => v.iter().map(|&x| half::f16::from_f32(x).to_f32()).collect(),
    }
}

/// Random weights for `tensors`, each drawn uniformly from the range `range` gives for its name
/// and rounded to `elem`, put in `store` and returned by name.
pub fn store_random(gpu: &Gpu, elem: Elem, store: &mut m2ugen_models::Store, rng: &mut m2ugen_core::rng::Rng, tensors: Vec<(String, Vec<usize>)>, range: impl Fn(&str) -> (f32, f32)) -> Result<std::collections::BTreeMap<String, Vec<f32>>> {
    let mut all = std::collections::BTreeMap::new();
    for (name, shape) in tensors {
        let (lo, hi) = range(&name);
        let values = round_to(elem, &rng.vec(shape.iter().product(), lo, hi));
        store.insert_f32(gpu, &name, &shape, &values)?;
        all.insert(name, values);
    }
    Ok(all)
}

/// Fails naming the first element outside `tol`, with both values and the shape.
pub fn assert_close(what: &str, ours: &[f32], reference: &[f32], tol: Tol, shape: &[usize]) -> Result<()> {
    ensure!(ours.len() == reference.len(), "{what} {shape:?}: {} values, reference has {}", ours.len(), reference.len());
    for (i, (&a, &b)) in ours.iter().zip(reference).enumerate() {
        let ok = (a - b).abs() <= tol.atol + tol.rtol * b.abs();
        ensure!(ok, "{what} {shape:?}: index {i}: ours {a}, reference {b} (atol {}, rtol {})", tol.atol, tol.rtol);
    }
    Ok(())
}

/// A device for element type `elem` (f16 is required to be there when asked for).
pub async fn gpu(elem: Elem) -> Gpu {
    gpu_with(GpuOptions { f16: if elem == Elem::F16 { F16Mode::Require } else { F16Mode::Auto }, ..Default::default() }).await
}

/// A device with explicit options; panics with the runtime's message when there is none.
pub async fn gpu_with(options: GpuOptions) -> Gpu {
    match Gpu::new(options).await {
        Ok(gpu) => gpu,
        Err(e) => panic!("GPU tests need a WebGPU/Vulkan adapter: {e}"),
    }
}

/// Runs the future `make` returns to completion natively (on a thread of its own, so it need not
/// be `Send`), failing (not hanging) after `limit` seconds.
#[cfg(not(target_arch = "wasm32"))]
pub fn block_on<F: std::future::Future<Output = ()>>(name: &'static str, limit: u64, make: impl FnOnce() -> F + Send + 'static) {
    let (tx, rx) = std::sync::mpsc::channel();
    let handle = std::thread::spawn(move || {
        pollster::block_on(make());
        let _ = tx.send(());
    });
    match rx.recv_timeout(std::time::Duration::from_secs(limit)) {
        Ok(()) => {}
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
            if let Err(panic) = handle.join() {
                std::panic::resume_unwind(panic);
            }
        }
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => panic!("{name}: no result after {limit} s (is the GPU driver hung?)"),
    }
}

/// One test body for both targets:
///
/// ```text
/// gpu_test!(async fn softmax_rows(gpu, elem) { ...; Ok(()) });
/// ```
/// `gpu: &Gpu` and `elem: Elem` are in scope; the body returns `anyhow::Result<()>`.
#[macro_export]
macro_rules! gpu_test {
    (async fn $name:ident($gpu:ident, $elem:ident) $body:block) => {
        #[cfg(not(target_arch = "wasm32"))]
        #[test]
        fn $name() {
            async fn inner($gpu: &m2ugen_gpu::Gpu, $elem: m2ugen_gpu::registry::Elem) -> $crate::Result<()> $body
            $crate::block_on(stringify!($name), 300, || async {
                for elem in $crate::native_elems() {
                    let gpu = $crate::gpu(elem).await;
                    if let Err(e) = inner(&gpu, elem).await {
                        panic!("{} ({elem:?}): {e:#}", stringify!($name));
                    }
                }
            });
        }

        #[cfg(target_arch = "wasm32")]
        #[wasm_bindgen_test::wasm_bindgen_test]
        async fn $name() {
            async fn inner($gpu: &m2ugen_gpu::Gpu, $elem: m2ugen_gpu::registry::Elem) -> $crate::Result<()> $body
            let elem = m2ugen_gpu::registry::Elem::F32;
            let gpu = $crate::gpu(elem).await;
            let result = inner(&gpu, elem).await;
            // Dropped (its device destroyed) before a failure unwinds, not left to the collector.
            drop(gpu);
            if let Err(e) = result {
                panic!("{} ({elem:?}): {e:#}", stringify!($name));
            }
        }
    };
}

/// The repository's test data (`tests/data`), found from the directory cargo runs the test in:
/// `env!` gives the one it was built in, which a build cached from another checkout does not share.
#[cfg(not(target_arch = "wasm32"))]
pub fn data_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR").map(std::path::PathBuf::from).unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()).join("data")
}

/// The MusicGen fixture directory (`musicgen/` and `io.safetensors`): `M2UGEN_MUSICGEN_FIXTURE`,
/// or the repository's copy.
#[cfg(not(target_arch = "wasm32"))]
pub fn musicgen_fixture() -> std::path::PathBuf {
    std::env::var_os("M2UGEN_MUSICGEN_FIXTURE").map(std::path::PathBuf::from).unwrap_or_else(|| data_dir().join("musicgen"))
}

/// The MusicGen fixture's `io.safetensors`.
#[cfg(not(target_arch = "wasm32"))]
pub fn musicgen_io() -> m2ugen_weights::safetensors::InMemory {
    let path = musicgen_fixture().join("io.safetensors");
    m2ugen_weights::safetensors::InMemory::parse("io.safetensors", std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

/// Converts the MusicGen fixture's model (`--hf musicgen=…`, floats as `float`) into a fresh
/// directory named by `tag`, through the real converter.
#[cfg(not(target_arch = "wasm32"))]
pub fn convert_musicgen(tag: &str, float: m2ugen_weights::StoredType) -> std::path::PathBuf {
    let model = musicgen_fixture().join("musicgen");
    let out = std::env::temp_dir().join(format!("m2ugen-musicgen-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let inputs = m2ugen_convert::Inputs { checkpoint: None, params: None, llama: None, tokenizer: None, hf: vec![("musicgen".into(), model.as_path())], configs: vec![] };
    let options = m2ugen_convert::Options { float, quant: None, shard_bytes: 256 << 10, model: "musicgen-fixture".into(), kind: None };
    m2ugen_convert::convert(&inputs, &out, &options).unwrap();
    out
}
