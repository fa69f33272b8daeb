//! Every kernel against its plain-Rust twin (`m2ugen_core::cpu`) on random inputs of awkward
//! shapes, for each element type.

use m2ugen_core::cpu;
use m2ugen_core::quant::{dequantize, quantize, QuantFormat};
use m2ugen_core::rng::Rng;
use m2ugen_gpu::registry::Elem;
use m2ugen_gpu::{Gpu, GpuTensor, Recorder, RopeTable, Unary, Weight};
use m2ugen_tests::{assert_close, gpu_test, round_to, Result, Tol, SHAPES};

/// Random values in `[-spread, spread)`, already rounded to what `elem` stores.
fn random(rng: &mut Rng, elem: Elem, n: usize, spread: f32) -> Vec<f32> {
    round_to(elem, &rng.vec(n, -spread, spread))
}

fn upload(gpu: &Gpu, elem: Elem, shape: &[usize], data: &[f32]) -> Result<GpuTensor> {
    Ok(gpu.upload("input", shape, elem.dtype(), data)?)
}

gpu_test!(async fn add_and_mul_same_shape_and_bias_row(gpu, elem) {
    let mut rng = Rng::new(1);
    for &(rows, cols) in &[(1, 1), (7, 65), (63, 64), (1, 1000)] {
        let a = random(&mut rng, elem, rows * cols, 4.0);
        let b = random(&mut rng, elem, rows * cols, 4.0);
        let bias = random(&mut rng, elem, cols, 4.0);
        let (ta, tb, tbias) = (upload(gpu, elem, &[rows, cols], &a)?, upload(gpu, elem, &[rows, cols], &b)?, upload(gpu, elem, &[cols], &bias)?);
        let mut rec = Recorder::new(gpu);
        let sum = rec.add(&ta, &tb)?;
        let prod = rec.mul(&ta, &tb)?;
        let diff = rec.sub(&ta, &tb)?;
        let less_bias = rec.sub(&ta, &tbias)?;
        let biased = rec.add(&ta, &tbias)?;
        let scaled = rec.mul(&ta, &tbias)?;
        rec.submit()?;
        let tol = Tol::of(elem);
        let shape = [rows, cols];
        assert_close("add", &gpu.read(&sum).await?, &cpu::add(&a, &b), tol, &shape)?;
        assert_close("mul", &gpu.read(&prod).await?, &cpu::mul(&a, &b), tol, &shape)?;
        assert_close("sub", &gpu.read(&diff).await?, &cpu::sub(&a, &b), tol, &shape)?;
        assert_close("sub bias row", &gpu.read(&less_bias).await?, &cpu::sub(&a, &bias), tol, &shape)?;
        assert_close("add bias row", &gpu.read(&biased).await?, &cpu::add(&a, &bias), tol, &shape)?;
        assert_close("mul by row", &gpu.read(&scaled).await?, &cpu::mul(&a, &bias), tol, &shape)?;
    }
    Ok(())
});

gpu_test!(async fn unary_ops_over_a_wide_range(gpu, elem) {
    let mut rng = Rng::new(2);
    for &n in &SHAPES {
        let mut x = random(&mut rng, elem, n, 6.0);
        // Values where naive formulas overflow or lose precision.
        for (i, v) in [40.0, -40.0, 1e-3, -1e-3, 0.0].into_iter().enumerate() {
            if i < n {
                x[i] = v;
            }
        }
        let tx = upload(gpu, elem, &[n], &x)?;
        for op in Unary::ALL {
            let mut rec = Recorder::new(gpu);
            let y = rec.unary(op, &tx)?;
            rec.submit()?;
            let reference = match op {
                Unary::Silu => cpu::silu(&x),
                Unary::Sigmoid => cpu::sigmoid(&x),
                Unary::Gelu => cpu::gelu(&x),
                Unary::GeluTanh => cpu::gelu_tanh(&x),
                Unary::Elu => cpu::elu(&x),
                Unary::Tanh => cpu::tanh(&x),
                Unary::Relu => cpu::relu(&x),
            };
            assert_close(&format!("{op:?}"), &gpu.read(&y).await?, &reference, Tol::of(elem), &[n])?;
        }
    }
    Ok(())
});

gpu_test!(async fn rms_norm_and_layer_norm_rows(gpu, elem) {
    let mut rng = Rng::new(3);
    for &(rows, cols) in &[(1, 1), (7, 65), (63, 1000), (2, 257)] {
        let x = random(&mut rng, elem, rows * cols, 3.0);
        let w = random(&mut rng, elem, cols, 2.0);
        let b = random(&mut rng, elem, cols, 1.0);
        let eps = 1e-5;
        let (tx, tw, tb) = (upload(gpu, elem, &[rows, cols], &x)?, upload(gpu, elem, &[cols], &w)?, upload(gpu, elem, &[cols], &b)?);
        let mut rec = Recorder::new(gpu);
        let rms = rec.rms_norm(&tx, &tw, eps)?;
        let ln = rec.layer_norm(&tx, &tw, &tb, eps)?;
        rec.submit()?;
        let shape = [rows, cols];
        assert_close("rms_norm", &gpu.read(&rms).await?, &cpu::rms_norm(&x, &w, cols, eps), Tol::of(elem), &shape)?;
        assert_close("layer_norm", &gpu.read(&ln).await?, &cpu::layer_norm(&x, &w, &b, cols, eps), Tol::of(elem), &shape)?;
    }
    Ok(())
});

gpu_test!(async fn l2_norm_rows_scaled_and_zero_rows_kept_finite(gpu, elem) {
    let mut rng = Rng::new(31);
    for &(rows, cols) in &[(1, 1), (3, 65), (2, 1000), (5, 257)] {
        let mut x = random(&mut rng, elem, rows * cols, 3.0);
        // A zero row: divided by eps, not by zero.
        x[..cols].iter_mut().for_each(|v| *v = 0.0);
        let w = random(&mut rng, elem, cols, 2.0);
        let eps = 1e-12;
        let (tx, tw) = (upload(gpu, elem, &[rows, cols], &x)?, upload(gpu, elem, &[cols], &w)?);
        let mut rec = Recorder::new(gpu);
        let y = rec.l2_norm(&tx, &tw, eps)?;
        rec.submit()?;
        assert_close("l2_norm", &gpu.read(&y).await?, &cpu::l2_norm(&x, &w, cols, eps), Tol::of(elem), &[rows, cols])?;
    }
    Ok(())
});

gpu_test!(async fn sum_rows_means_and_weighted_sums_per_item(gpu, elem) {
    let mut rng = Rng::new(32);
    for &(batch, rows, cols) in &[(1, 1, 1), (2, 7, 65), (3, 197, 33), (1, 3137, 5), (2, 3, 300)] {
        let x = random(&mut rng, elem, batch * rows * cols, 2.0);
        let w = random(&mut rng, elem, rows, 1.0);
        let b = random(&mut rng, elem, 1, 1.0);
        let (tx, tw, tb) = (upload(gpu, elem, &[batch, rows, cols], &x)?, upload(gpu, elem, &[rows], &w)?, upload(gpu, elem, &[1], &b)?);
        let mut rec = Recorder::new(gpu);
        let mean = rec.sum_rows(&tx, None, None, 1.0 / rows as f32)?;
        let agg = rec.sum_rows(&tx, Some(&tw), Some(&tb), 1.0)?;
        rec.submit()?;
        let tol = Tol::for_sums(elem, rows);
        assert_close("mean of rows", &gpu.read(&mean).await?, &cpu::sum_rows(&x, batch, rows, cols, None, None, 1.0 / rows as f32), tol, &[batch, cols])?;
        assert_close("weighted sum of rows", &gpu.read(&agg).await?, &cpu::sum_rows(&x, batch, rows, cols, Some(&w), Some(b[0]), 1.0), tol, &[batch, cols])?;
    }
    let tx = upload(gpu, elem, &[2, 3, 4], &random(&mut rng, elem, 24, 1.0))?;
    let tw = upload(gpu, elem, &[4], &random(&mut rng, elem, 4, 1.0))?;
    let mut rec = Recorder::new(gpu);
    let err = rec.sum_rows(&tx, Some(&tw), None, 1.0).err().map(|e| e.to_string()).unwrap_or_default();
    anyhow::ensure!(err.contains("sum_rows") && err.contains("weight"), "a weight of the wrong length: {err:?}");
    Ok(())
});

gpu_test!(async fn sum_squared_deviations_from_a_center_row(gpu, elem) {
    let mut rng = Rng::new(33);
    for &(batch, rows, cols) in &[(1, 1, 1), (2, 7, 65), (1, 1601, 3), (3, 33, 257)] {
        // Off-centre values, so that the center matters.
        let x: Vec<f32> = random(&mut rng, elem, batch * rows * cols, 2.0).into_iter().map(|v| round_to(elem, &[v + 3.0])[0]).collect();
        let center = random(&mut rng, elem, cols, 1.0).into_iter().map(|v| round_to(elem, &[v + 3.0])[0]).collect::<Vec<f32>>();
        let (tx, tc) = (upload(gpu, elem, &[batch, rows, cols], &x)?, upload(gpu, elem, &[cols], &center)?);
        let mut rec = Recorder::new(gpu);
        let y = rec.sum_squared_deviations(&tx, &tc, 1.0 / rows as f32)?;
        rec.submit()?;
        let expected = cpu::sum_squared_deviations(&x, batch, rows, cols, &center, 1.0 / rows as f32);
        assert_close("sum_squared_deviations", &gpu.read(&y).await?, &expected, Tol::for_sums(elem, rows), &[batch, rows, cols])?;
    }
    let tx = upload(gpu, elem, &[2, 3, 4], &random(&mut rng, elem, 24, 1.0))?;
    let tc = upload(gpu, elem, &[3], &random(&mut rng, elem, 3, 1.0))?;
    let mut rec = Recorder::new(gpu);
    let err = rec.sum_squared_deviations(&tx, &tc, 1.0).err().map(|e| e.to_string()).unwrap_or_default();
    anyhow::ensure!(err.contains("sum_squared_deviations") && err.contains("center"), "a center of the wrong length: {err:?}");
    Ok(())
});

gpu_test!(async fn batch_norm_by_given_statistics(gpu, elem) {
    let mut rng = Rng::new(34);
    for &(rows, cols) in &[(1, 1), (5, 64), (300, 7), (2, 1000)] {
        let x = random(&mut rng, elem, rows * cols, 3.0);
        let mean = random(&mut rng, elem, cols, 1.0);
        let variance: Vec<f32> = random(&mut rng, elem, cols, 1.0).into_iter().map(|v| round_to(elem, &[v.abs() * 4.0 + 0.01])[0]).collect();
        let weight = random(&mut rng, elem, cols, 1.5);
        let bias = random(&mut rng, elem, cols, 0.5);
        let t = |shape: &[usize], v: &[f32]| upload(gpu, elem, shape, v);
        let (tx, tm, tv, tw, tb) = (t(&[rows, cols], &x)?, t(&[cols], &mean)?, t(&[cols], &variance)?, t(&[cols], &weight)?, t(&[cols], &bias)?);
        let mut rec = Recorder::new(gpu);
        let y = rec.batch_norm(&tx, &tm, &tv, &tw, &tb, 1e-5)?;
        rec.submit()?;
        let expected = cpu::batch_norm(&x, cols, &mean, &variance, &weight, &bias, 1e-5);
        assert_close("batch_norm", &gpu.read(&y).await?, &expected, Tol::of(elem), &[rows, cols])?;
    }
    let tx = upload(gpu, elem, &[2, 4], &random(&mut rng, elem, 8, 1.0))?;
    let (t4, t3) = (upload(gpu, elem, &[4], &[1.0; 4])?, upload(gpu, elem, &[3], &[1.0; 3])?);
    let mut rec = Recorder::new(gpu);
    let err = rec.batch_norm(&tx, &t4, &t3, &t4, &t4, 1e-5).err().map(|e| e.to_string()).unwrap_or_default();
    anyhow::ensure!(err.contains("batch_norm") && err.contains("variance"), "a variance of the wrong length: {err:?}");
    Ok(())
});

gpu_test!(async fn softmax_rows_stay_stable_for_large_logits(gpu, elem) {
    let mut rng = Rng::new(4);
    for &(rows, cols) in &[(1, 1), (7, 1000), (65, 7), (3, 64)] {
        let spread = if elem == Elem::F16 { 8.0 } else { 80.0 };
        let x = random(&mut rng, elem, rows * cols, spread);
        let tx = upload(gpu, elem, &[rows, cols], &x)?;
        let mut rec = Recorder::new(gpu);
        let y = rec.softmax(&tx)?;
        rec.submit()?;
        assert_close("softmax", &gpu.read(&y).await?, &cpu::softmax(&x, cols), Tol::of(elem), &[rows, cols])?;
    }
    Ok(())
});

gpu_test!(async fn rope_meta_pairs_at_an_offset(gpu, elem) {
    let mut rng = Rng::new(5);
    for &(seq, heads, head_dim, pos0) in &[(7, 3, 64, 5), (1, 4, 128, 1000), (65, 1, 2, 0)] {
        let positions = pos0 + seq;
        let table = RopeTable::new(gpu, positions, head_dim, 10000.0)?;
        let (cos, sin) = cpu::rope_table(positions, head_dim, 10000.0);
        let x = random(&mut rng, elem, seq * heads * head_dim, 2.0);
        let tx = upload(gpu, elem, &[seq, heads, head_dim], &x)?;
        let mut rec = Recorder::new(gpu);
        let y = rec.rope(&tx, &table, pos0)?;
        rec.submit()?;
        let reference = cpu::rope(&x, heads, head_dim, pos0, &cos, &sin);
        assert_close("rope", &gpu.read(&y).await?, &reference, Tol::of(elem), &[seq, heads, head_dim])?;
    }
    Ok(())
});

gpu_test!(async fn embedding_gathers_rows_and_zeroes_unknown_ids(gpu, elem) {
    let mut rng = Rng::new(6);
    for &(vocab, dim) in &[(1, 1), (65, 63), (1000, 7)] {
        let table = random(&mut rng, elem, vocab * dim, 1.0);
        let mut ids: Vec<u32> = (0..13).map(|_| rng.below(vocab) as u32).collect();
        ids.push(vocab as u32 + 3); // past the table
        let tt = upload(gpu, elem, &[vocab, dim], &table)?;
        let tids = gpu.upload_u32("ids", &[ids.len()], &ids)?;
        let mut rec = Recorder::new(gpu);
        let y = rec.gather_rows(&tt, &tids)?;
        rec.submit()?;
        assert_close("embedding", &gpu.read(&y).await?, &cpu::embedding(&table, dim, &ids), Tol::of(elem), &[ids.len(), dim])?;
    }
    Ok(())
});

/// Products of every weight type against the CPU matmul of the (dequantized) weight.
async fn check_products(gpu: &Gpu, elem: Elem, seed: u64, shapes: &[(usize, usize, usize)]) -> Result<()> {
    let mut rng = Rng::new(seed);
    for &(m, k, n) in shapes {
        let x = random(&mut rng, elem, m * k, 1.0);
        let w = random(&mut rng, elem, n * k, 1.0);
        let bias = random(&mut rng, elem, n, 1.0);
        let tx = upload(gpu, elem, &[m, k], &x)?;
        let tbias = upload(gpu, elem, &[n], &bias)?;
        let mut weights = vec![("dense", Weight::Dense(upload(gpu, elem, &[n, k], &w)?), w.clone())];
        for format in [QuantFormat::Q8, QuantFormat::Q4] {
            let q = quantize(format, n, k, &w)?;
            weights.push((format.name(), gpu.upload_quant("w", &q)?, dequantize(&q)));
        }
        for (name, weight, w_ref) in &weights {
            let mut rec = Recorder::new(gpu);
            let mm = rec.matmul(&tx, weight, Some(&tbias), None)?;
            let mm_plain = rec.matmul(&tx, weight, None, None)?;
            let mv = rec.matvec(&tx, weight, Some(&tbias), None)?;
            rec.submit()?;
            let shape = [m, k, n];
            let tol = Tol::for_sums(elem, k);
            let with_bias = cpu::matmul(&x, w_ref, Some(&bias), m, k, n);
            assert_close(&format!("matmul {name}"), &gpu.read(&mm).await?, &with_bias, tol, &shape)?;
            assert_close(&format!("matmul {name} no bias"), &gpu.read(&mm_plain).await?, &cpu::matmul(&x, w_ref, None, m, k, n), tol, &shape)?;
            assert_close(&format!("matvec {name}"), &gpu.read(&mv).await?, &with_bias, tol, &shape)?;
        }
    }
    Ok(())
}

gpu_test!(async fn matmul_and_matvec_small_and_odd(gpu, elem) {
    check_products(gpu, elem, 7, &[(1, 1, 1), (7, 63, 65), (1, 1000, 7), (3, 33, 1), (8, 40, 9), (11, 17, 33)]).await
});

// The products with a residual added in the same launch, for matvec at every batch size up to
// past its group of 8 rows and for matmul, every weight type, against the CPU product plus the
// residual.
gpu_test!(async fn products_with_a_residual_at_every_batch_size(gpu, elem) {
    let mut rng = Rng::new(9);
    for &(m, k, n) in &[(1, 64, 48), (2, 33, 7), (3, 100, 65), (5, 64, 64), (8, 40, 17), (9, 65, 31), (70, 37, 66)] {
        let x = random(&mut rng, elem, m * k, 1.5);
        let w = random(&mut rng, elem, n * k, 1.0);
        let bias = random(&mut rng, elem, n, 1.0);
        let res = random(&mut rng, elem, m * n, 1.0);
        let (tx, tbias, tres) = (upload(gpu, elem, &[m, k], &x)?, upload(gpu, elem, &[n], &bias)?, upload(gpu, elem, &[m, n], &res)?);
        let mut weights = vec![("dense", Weight::Dense(upload(gpu, elem, &[n, k], &w)?), w.clone())];
        for format in [QuantFormat::Q8, QuantFormat::Q4] {
            let q = quantize(format, n, k, &w)?;
            weights.push((format.name(), gpu.upload_quant("w", &q)?, dequantize(&q)));
        }
        for (name, weight, w_ref) in &weights {
            let mut rec = Recorder::new(gpu);
            let mv = rec.matvec(&tx, weight, Some(&tbias), Some(&tres))?;
            let mm = rec.matmul(&tx, weight, None, Some(&tres))?;
            let auto = rec.linear_residual(&tx, weight, Some(&tbias), Some(&tres))?;
            rec.submit()?;
            let tol = Tol::for_sums(elem, k);
            let with_bias = cpu::add(&cpu::matmul(&x, w_ref, Some(&bias), m, k, n), &res);
            assert_close(&format!("matvec + residual {name}"), &gpu.read(&mv).await?, &with_bias, tol, &[m, k, n])?;
            assert_close(&format!("matmul + residual {name}"), &gpu.read(&mm).await?, &cpu::add(&cpu::matmul(&x, w_ref, None, m, k, n), &res), tol, &[m, k, n])?;
            assert_close(&format!("linear + residual {name}"), &gpu.read(&auto).await?, &with_bias, tol, &[m, k, n])?;
        }
    }
    Ok(())
});

gpu_test!(async fn the_swiglu_gate_of_two_halves(gpu, elem) {
    let mut rng = Rng::new(10);
    for &(rows, h) in &[(1, 1), (3, 7), (5, 300)] {
        let x = random(&mut rng, elem, rows * 2 * h, 4.0);
        let t = upload(gpu, elem, &[rows, 2 * h], &x)?;
        let mut rec = Recorder::new(gpu);
        let y = rec.swiglu(&t)?;
        rec.submit()?;
        let want: Vec<f32> = x.chunks(2 * h).flat_map(|r| cpu::mul(&cpu::silu(&r[..h]), &r[h..])).collect();
        assert_close("swiglu", &gpu.read(&y).await?, &want, Tol::of(elem), &[rows, h])?;
    }
    Ok(())
});

gpu_test!(async fn matmul_and_matvec_across_tiles(gpu, elem) {
    check_products(gpu, elem, 8, &[(65, 100, 64), (64, 64, 130)]).await
});
