//! Choosing tokens on the GPU against the CPU twin (`cpu::sample_token`, `cpu::argmax`).

use m2ugen_core::cpu;
use m2ugen_core::rng::Rng;
use m2ugen_gpu::registry::Elem;
use m2ugen_gpu::{Choose, Recorder};
use m2ugen_tests::{ensure, gpu_test, round_to};

gpu_test!(async fn greedy_takes_the_first_largest(gpu, elem) {
    let mut rng = Rng::new(61);
    for &(rows, vocab) in &[(1, 1), (3, 7), (4, 1000), (2, 32008)] {
        let mut x = round_to(elem, &rng.vec(rows * vocab, -5.0, 5.0));
        if vocab > 3 {
            // A tie: the lower id wins.
            x[2] = 9.0;
            x[vocab - 1] = 9.0;
        }
        let t = gpu.upload("logits", &[rows, vocab], elem.dtype(), &x)?;
        let mut rec = Recorder::new(gpu);
        let ids = rec.choose_tokens(&t, &Choose::Greedy, &[])?;
        rec.submit()?;
        let got = gpu.read_u32(&ids).await?;
        let want: Vec<u32> = x.chunks(vocab).map(|r| cpu::argmax(r) as u32).collect();
        ensure!(got == want, "argmax of {rows} x {vocab}: {got:?}, the CPU {want:?}");
    }
    Ok(())
});

gpu_test!(async fn sampling_draws_what_the_cpu_twin_draws(gpu, elem) {
    // Random rows, settings and draws. The GPU sums in f32 and the twin in f64, so a draw that
    // lands within a hair of a boundary may differ: then the twin must agree at a nearby draw.
    let mut rng = Rng::new(62);
    let settings = [(1.0, 0, 1.0), (0.7, 0, 1.0), (1.3, 40, 1.0), (1.0, 0, 0.9), (0.8, 50, 0.8), (1.0, 1, 1.0), (2.0, 3, 0.5), (1.0, 1000, 0.999)];
    let (rows, vocab) = (16, 997);
    let mut exact = 0;
    let mut total = 0;
    for &(temperature, top_k, top_p) in &settings {
        let spread = if elem == Elem::F16 { 6.0 } else { 8.0 };
        let mut x = round_to(elem, &rng.vec(rows * vocab, -spread, spread));
        // Ties at the top of row 0, so top-k and top-p must break them by id.
        x[10] = 9.5;
        x[11] = 9.5;
        x[500] = 9.5;
        let draws: Vec<f32> = (0..rows).map(|_| rng.uniform()).collect();
        let t = gpu.upload("logits", &[rows, vocab], elem.dtype(), &x)?;
        let choose = Choose::Sample { temperature, top_k, top_p };
        let mut rec = Recorder::new(gpu);
        let ids = rec.choose_tokens(&t, &choose, &draws)?;
        rec.submit()?;
        let got = gpu.read_u32(&ids).await?;
        for (r, (&g, &u)) in got.iter().zip(&draws).enumerate() {
            let row = &x[r * vocab..(r + 1) * vocab];
            let want = cpu::sample_token(row, temperature, top_k, top_p, u) as u32;
            total += 1;
            if g == want {
                exact += 1;
                continue;
            }
            let near = [-2e-4f32, 2e-4].iter().any(|d| cpu::sample_token(row, temperature, top_k, top_p, (u + d).clamp(0.0, 0.999_999)) as u32 == g);
            ensure!(near, "row {r}, T {temperature}, top_k {top_k}, top_p {top_p}, u {u}: GPU {g}, CPU {want}");
        }
    }
    ensure!(exact * 100 >= total * 95, "only {exact} of {total} draws agree exactly");
    Ok(())
});

gpu_test!(async fn bad_sampling_settings_are_refused(gpu, elem) {
    let t = gpu.upload("logits", &[2, 5], elem.dtype(), &[0.0; 10])?;
    let mut rec = Recorder::new(gpu);
    let e = rec.choose_tokens(&t, &Choose::Sample { temperature: 0.0, top_k: 0, top_p: 1.0 }, &[0.5, 0.5]).unwrap_err().to_string();
    ensure!(e == "choose_tokens: temperature = 0 is out of range (above 0)", "{e}");
    let e = rec.choose_tokens(&t, &Choose::Sample { temperature: 1.0, top_k: 0, top_p: 1.0 }, &[0.5]).unwrap_err().to_string();
    ensure!(e.contains("2 uniform numbers"), "{e}");
    Ok(())
});
