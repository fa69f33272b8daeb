//! The shared model blocks: several dependent ops in one submission against a CPU composition.

use m2ugen_core::cpu;
use m2ugen_core::quant::{dequantize, quantize, QuantFormat};
use m2ugen_core::rng::Rng;
use m2ugen_gpu::{Recorder, Weight};
use m2ugen_models::layers::{FeedForward, Linear, RmsNorm};
use m2ugen_tests::{assert_close, gpu_test, round_to, Tol};

gpu_test!(async fn swiglu_feed_forward_after_rms_norm_matches_the_cpu(gpu, elem) {
    let mut rng = Rng::new(21);
    let dt = elem.dtype();
    for &(rows, dim, hidden, quant) in &[(1, 64, 192, None), (5, 63, 100, Some(QuantFormat::Q4)), (9, 64, 192, Some(QuantFormat::Q8))] {
        let x = round_to(elem, &rng.vec(rows * dim, -1.0, 1.0));
        let norm_w = round_to(elem, &rng.vec(dim, 0.5, 1.5));
        let mut make = |out: usize, inp: usize| -> anyhow::Result<(Linear, Vec<f32>, Vec<f32>)> {
            let w = round_to(elem, &rng.vec(out * inp, -0.3, 0.3));
            let b = round_to(elem, &rng.vec(out, -0.1, 0.1));
            let bias = Some(gpu.upload("bias", &[out], dt, &b)?);
            Ok(match quant {
                None => (Linear { weight: Weight::Dense(gpu.upload("w", &[out, inp], dt, &w)?), bias }, w, b),
                Some(f) => {
                    let q = quantize(f, out, inp, &w)?;
                    (Linear { weight: gpu.upload_quant("w", &q)?, bias }, dequantize(&q), b)
                }
            })
        };
        let (w1, w1r, b1) = make(hidden, dim)?;
        let (w2, w2r, b2) = make(dim, hidden)?;
        let (w3, w3r, b3) = make(hidden, dim)?;
        let ffn = FeedForward { w1, w2, w3 };
        let norm = RmsNorm { weight: gpu.upload("norm", &[dim], dt, &norm_w)?, eps: 1e-5 };
        let tx = gpu.upload("x", &[rows, dim], dt, &x)?;
        let mut rec = Recorder::new(gpu);
        let normed = norm.forward(&mut rec, &tx)?;
        let y = ffn.forward(&mut rec, &normed)?;
        rec.submit()?;

        let n = round_to(elem, &cpu::rms_norm(&x, &norm_w, dim, 1e-5));
        let gate = round_to(elem, &cpu::silu(&round_to(elem, &cpu::matmul(&n, &w1r, Some(&b1), rows, dim, hidden))));
        let up = round_to(elem, &cpu::matmul(&n, &w3r, Some(&b3), rows, dim, hidden));
        let h = round_to(elem, &cpu::mul(&gate, &up));
        let reference = cpu::matmul(&h, &w2r, Some(&b2), rows, hidden, dim);
        // Three chained products: four times the bound of one.
        let tol = Tol::for_sums(elem, hidden);
        let tol = Tol { atol: tol.atol * 4.0, rtol: tol.rtol * 4.0 };
        assert_close("rms_norm + SwiGLU", &gpu.read(&y).await?, &reference, tol, &[rows, dim, hidden])?;
    }
    Ok(())
});
