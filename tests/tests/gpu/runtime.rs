//! The runtime's own behaviour: tensors split across bindings, and clear errors.

use m2ugen_core::cpu;
use m2ugen_core::quant::{dequantize, quantize, QuantFormat};
use m2ugen_core::rng::Rng;
use m2ugen_core::DType;
use m2ugen_gpu::registry::Elem;
use m2ugen_gpu::{Error, F16Mode, GpuOptions, Recorder, RopeTable, Unary, Weight};
use m2ugen_tests::{assert_close, ensure, gpu_test, gpu_with, round_to, Tol};

gpu_test!(async fn tensors_split_across_bindings_give_the_same_results(gpu, elem) {
    // A device that splits at 1 KiB: every tensor here spans several chunks.
    let f16 = if elem == Elem::F16 { F16Mode::Require } else { F16Mode::Auto };
    let _ = gpu;
    let gpu = &gpu_with(GpuOptions { f16, split_at: Some(1024), ..Default::default() }).await;
    let mut rng = Rng::new(11);
    let tol = Tol::of(elem);
    let dt = elem.dtype();
    let (rows, cols) = (65, 63);
    let x = round_to(elem, &rng.vec(rows * cols, -2.0, 2.0));
    let y = round_to(elem, &rng.vec(rows * cols, -2.0, 2.0));
    let w = round_to(elem, &rng.vec(cols, -2.0, 2.0));
    let tx = gpu.upload("x", &[rows, cols], dt, &x)?;
    let ty = gpu.upload("y", &[rows, cols], dt, &y)?;
    let tw = gpu.upload("w", &[cols], dt, &w)?;
    ensure!(tx.chunks().len() > 4, "x should be split, has {} chunk(s)", tx.chunks().len());
    let mut rec = Recorder::new(gpu);
    let sum = rec.add(&tx, &ty)?;
    let silu = rec.unary(Unary::Silu, &tx)?;
    let norm = rec.rms_norm(&tx, &tw, 1e-6)?;
    let soft = rec.softmax(&tx)?;
    rec.submit()?;
    let shape = [rows, cols];
    assert_close("split add", &gpu.read(&sum).await?, &cpu::add(&x, &y), tol, &shape)?;
    assert_close("split silu", &gpu.read(&silu).await?, &cpu::silu(&x), tol, &shape)?;
    assert_close("split rms_norm", &gpu.read(&norm).await?, &cpu::rms_norm(&x, &w, cols, 1e-6), tol, &shape)?;
    assert_close("split softmax", &gpu.read(&soft).await?, &cpu::softmax(&x, cols), tol, &shape)?;

    // RoPE over a split (seq, heads, head_dim): rows of chunks past the first keep their positions.
    let (seq, heads, head_dim) = (23, 3, 8);
    let r = round_to(elem, &rng.vec(seq * heads * head_dim, -1.0, 1.0));
    let tr = gpu.upload("q", &[seq, heads, head_dim], dt, &r)?;
    ensure!(tr.chunks().len() > 1, "rope input should be split");
    let table = RopeTable::new(gpu, seq + 2, head_dim, 10000.0)?;
    let (cos, sin) = cpu::rope_table(seq + 2, head_dim, 10000.0);
    let mut rec = Recorder::new(gpu);
    let rot = rec.rope(&tr, &table, 2)?;
    rec.submit()?;
    assert_close("split rope", &gpu.read(&rot).await?, &cpu::rope(&r, heads, head_dim, 2, &cos, &sin), tol, &[seq, heads, head_dim])?;

    // Weights and embedding tables split by rows.
    let (m, k, n) = (2, 40, 50);
    let xs = round_to(elem, &rng.vec(m * k, -1.0, 1.0));
    let ws = round_to(elem, &rng.vec(n * k, -1.0, 1.0));
    let txs = gpu.upload("x", &[m, k], dt, &xs)?;
    let dense = Weight::Dense(gpu.upload("w", &[n, k], dt, &ws)?);
    let q4 = quantize(QuantFormat::Q4, n, k, &ws)?;
    let quant = gpu.upload_quant("w", &q4)?;
    if let Weight::Quant(q) = &quant {
        ensure!(q.chunks.len() > 1, "quantized weight should be split");
    }
    let ids: Vec<u32> = vec![0, 49, 17, 33, 50];
    let tids = gpu.upload_u32("ids", &[ids.len()], &ids)?;
    let table = gpu.upload("table", &[n, k], dt, &ws)?;
    ensure!(table.chunks().len() > 1, "table should be split");
    let mut rec = Recorder::new(gpu);
    let mm = rec.matmul(&txs, &dense, None, None)?;
    let mv = rec.matvec(&txs, &dense, None, None)?;
    let mq = rec.matvec(&txs, &quant, None, None)?;
    let emb = rec.gather_rows(&table, &tids)?;
    rec.submit()?;
    let tol_k = Tol::for_sums(elem, k);
    let reference = cpu::matmul(&xs, &ws, None, m, k, n);
    assert_close("split matmul", &gpu.read(&mm).await?, &reference, tol_k, &[m, k, n])?;
    assert_close("split matvec", &gpu.read(&mv).await?, &reference, tol_k, &[m, k, n])?;
    assert_close("split q4 matvec", &gpu.read(&mq).await?, &cpu::matmul(&xs, &dequantize(&q4), None, m, k, n), tol_k, &[m, k, n])?;
    assert_close("split embedding", &gpu.read(&emb).await?, &cpu::embedding(&ws, k, &ids), tol, &[ids.len(), k])?;
    Ok(())
});

gpu_test!(async fn mismatched_inputs_are_named(gpu, elem) {
    let dt = elem.dtype();
    let a = gpu.upload("a", &[2, 3], dt, &[0.0; 6])?;
    let b = gpu.upload("b", &[4], dt, &[0.0; 4])?;
    let mut rec = Recorder::new(gpu);
    let e = rec.add(&a, &b).unwrap_err().to_string();
    ensure!(e.contains("add: b has shape [4]"), "unexpected message: {e}");
    let w = Weight::Dense(gpu.upload("w", &[5, 4], dt, &[0.0; 20])?);
    let e = rec.matvec(&a, &w, None, None).unwrap_err().to_string();
    ensure!(e.contains("matvec: x has shape [2, 3]") && e.contains("in_features"), "unexpected message: {e}");
    let ids = gpu.upload_u32("ids", &[2], &[0, 1])?;
    let e = rec.softmax(&ids).unwrap_err().to_string();
    ensure!(e == "softmax: x is u32, expected f32 or f16", "unexpected message: {e}");
    Ok(())
});

gpu_test!(async fn f16_without_the_feature_is_refused_by_name(gpu, elem) {
    let _ = (gpu, elem);
    let gpu = &gpu_with(GpuOptions { f16: F16Mode::Off, ..Default::default() }).await;
    ensure!(!gpu.has_f16(), "F16Mode::Off must not enable f16");
    let x = gpu.upload("x", &[4], DType::F16, &[1.0; 4])?;
    let mut rec = Recorder::new(gpu);
    match rec.unary(Unary::Tanh, &x) {
        Err(Error::MissingFeature { feature: "shader-f16", .. }) => Ok(()),
        other => anyhow::bail!("expected a missing shader-f16 error, got {:?}", other.map(|t| t.shape().to_vec())),
    }
});

gpu_test!(async fn a_lost_device_is_reported(gpu, elem) {
    let x = gpu.upload("x", &[4], elem.dtype(), &[1.0; 4])?;
    gpu.destroy();
    let mut rec = Recorder::new(gpu);
    let result = match rec.unary(Unary::Silu, &x) {
        Ok(y) => match rec.submit() {
            Ok(()) => gpu.read(&y).await.map(|_| ()),
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    };
    let e = result.err().map(|e| e.to_string()).unwrap_or_default();
    ensure!(e.contains("lost") || e.contains("destroyed") || e.contains("Destroyed"), "expected a lost-device error, got '{e}'");
    Ok(())
});

/// The browser path of "no WebGPU": `navigator.gpu` hidden, then restored.
#[cfg(target_arch = "wasm32")]
#[wasm_bindgen_test::wasm_bindgen_test]
async fn a_browser_without_webgpu_is_told_so() {
    use wasm_bindgen::JsValue;
    let navigator = js_sys::Reflect::get(&js_sys::global(), &"navigator".into()).unwrap();
    let desc = js_sys::Object::new();
    js_sys::Reflect::set(&desc, &"value".into(), &JsValue::UNDEFINED).unwrap();
    js_sys::Reflect::set(&desc, &"configurable".into(), &JsValue::TRUE).unwrap();
    js_sys::Object::define_property(&navigator.clone().into(), &"gpu".into(), &desc);
    let result = m2ugen_gpu::Gpu::new(GpuOptions::default()).await;
    js_sys::Reflect::delete_property(&navigator.into(), &"gpu".into()).unwrap();
    match result {
        Err(e @ Error::NoWebGpu) => assert!(e.to_string().contains("does not offer WebGPU"), "{e}"),
        Err(e) => panic!("expected NoWebGpu, got {e}"),
        Ok(_) => panic!("expected NoWebGpu, got a device"),
    }
}

gpu_test!(async fn a_repeated_step_creates_no_buffers_or_bind_groups_once_warm(gpu, elem) {
    // The shape of a decoding step: small per-step uploads, a gather, products, a norm, a
    // choice of tokens read back.
    let mut rng = Rng::new(12);
    let dt = elem.dtype();
    let table = gpu.upload("table", &[50, 24], dt, &rng.vec(50 * 24, -1.0, 1.0))?;
    let w = Weight::Dense(gpu.upload("w", &[50, 24], dt, &rng.vec(50 * 24, -1.0, 1.0))?);
    let g = gpu.upload("g", &[24], dt, &rng.vec(24, 0.5, 1.5))?;
    let (table, w, g) = (&table, &w, &g);
    let step = |ids: [u32; 2]| async move {
        let mut rec = Recorder::new(gpu);
        let t = rec.upload_u32("ids", &[2], &ids)?;
        let x = rec.gather_rows(table, &t)?;
        let y = rec.unary(Unary::Gelu, &x)?;
        let normed = rec.rms_norm(&y, g, 1e-5)?;
        let logits = rec.linear(&normed, w, None)?;
        let chosen = rec.choose_tokens(&logits, &m2ugen_gpu::Choose::Greedy, &[])?;
        rec.submit()?;
        Ok::<_, anyhow::Error>(gpu.read_u32(&chosen).await?)
    };
    let first = step([3, 4]).await?;
    let before = gpu.stats();
    let again = step([3, 4]).await?;
    let other = step([9, 1]).await?;
    let d = gpu.stats() - before;
    ensure!(again == first, "the same step gave {again:?} then {first:?}");
    ensure!(other != first || other == vec![0, 0], "different ids should change the answer");
    ensure!(d.buffers_created == 0 && d.bind_groups_created == 0, "two warm steps created {} buffers and {} bind groups", d.buffers_created, d.bind_groups_created);
    ensure!(d.dispatches == 10 && d.bytes_read_back == 16, "two steps: {} dispatches, {} bytes read back", d.dispatches, d.bytes_read_back);
    Ok(())
});

gpu_test!(async fn a_recording_reuses_what_it_frees(gpu, elem) {
    // Twelve ops in a chain over a 64 KiB tensor: only the live ones hold memory.
    let dt = elem.dtype();
    let n = 16384;
    let x = gpu.upload("x", &[n], dt, &vec![0.5; n])?;
    let bytes = (n * dt.size()) as u64;
    gpu.reset_peak();
    let start = gpu.pool_memory().in_use;
    let mut rec = Recorder::new(gpu);
    let mut y = rec.unary(Unary::Tanh, &x)?;
    for _ in 0..11 {
        y = rec.unary(Unary::Tanh, &y)?;
    }
    rec.submit()?;
    let peak = gpu.pool_memory().peak - start;
    ensure!(peak <= 2 * bytes, "a chain of 12 ops peaked at {peak} bytes, more than two of its {bytes}-byte tensors");
    let mut expected = vec![0.5f32; n];
    for _ in 0..12 {
        expected = cpu::tanh(&round_to(elem, &expected));
    }
    assert_close("tanh chain", &gpu.read(&y).await?, &round_to(elem, &expected), Tol::of(elem), &[n])?;
    drop(y);
    ensure!(gpu.pool_memory().in_use == start, "everything freed should be back in the pool");
    Ok(())
});

gpu_test!(async fn uploads_never_land_in_buffers_the_recording_still_reads(gpu, elem) {
    // t1 is freed before the op that reads it runs on the GPU; an upload of the same size in
    // the same recording must not take its buffer (the upload is written before the whole
    // submission runs).
    let dt = elem.dtype();
    let x = gpu.upload("x", &[64], dt, &(0..64).map(|i| i as f32 / 64.0).collect::<Vec<_>>())?;
    let table = gpu.upload("table", &[64, 1], dt, &(0..64).map(|i| i as f32).collect::<Vec<_>>())?;
    let mut rec = Recorder::new(gpu);
    let t1 = rec.unary(Unary::Relu, &x)?;
    let t2 = rec.unary(Unary::Relu, &t1)?;
    drop(t1);
    let ids = rec.upload_u32("ids", &[64], &(0..64).rev().collect::<Vec<u32>>())?;
    let picked = rec.gather_rows(&table, &ids)?;
    // An abandoned recording hands its buffers back too.
    let abandoned = Recorder::new(gpu);
    drop(abandoned);
    rec.submit()?;
    let want: Vec<f32> = (0..64).map(|i| i as f32 / 64.0).collect();
    assert_close("the value read after its tensor was freed", &gpu.read(&t2).await?, &round_to(elem, &want), Tol { atol: 0.0, rtol: 0.0 }, &[64])?;
    assert_close("the upload", &gpu.read(&picked).await?, &(0..64).rev().map(|i| i as f32).collect::<Vec<_>>(), Tol { atol: 0.0, rtol: 0.0 }, &[64])?;
    Ok(())
});
