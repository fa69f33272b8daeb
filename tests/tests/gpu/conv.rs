//! Convolutions, GroupNorm and an LSTM built from products and the cell kernel, against their
//! CPU twins on awkward shapes: one channel, odd lengths, strides, dilations, depthwise and
//! grouped (MERT's 16-group kernel-128 positional convolution), every padding, outputs split
//! across bindings.

use m2ugen_core::conv::{Conv1d, ConvTranspose1d, Padding};
use m2ugen_core::cpu;
use m2ugen_core::rng::Rng;
use m2ugen_gpu::registry::Elem;
use m2ugen_gpu::{Error, F16Mode, GpuOptions, Recorder, Weight};
use m2ugen_tests::{assert_close, ensure, gpu_test, gpu_with, round_to, Tol};

gpu_test!(async fn conv1d_matches_the_cpu(gpu, elem) {
    let mut rng = Rng::new(41);
    let dt = elem.dtype();
    // (batch, len, c_in, c_out, kernel, stride, dilation, groups, pad_left, pad_right, padding)
    let cases = [
        (1, 1, 1, 1, 1, 1, 1, 1, 0, 0, Padding::Zeros),
        (2, 37, 3, 5, 7, 1, 1, 1, 3, 3, Padding::Reflect),
        (1, 50, 4, 6, 3, 1, 3, 1, 3, 3, Padding::Reflect),
        (2, 41, 6, 6, 3, 2, 1, 6, 1, 1, Padding::Replicate),
        (1, 103, 1, 16, 10, 5, 1, 1, 0, 0, Padding::Zeros),
        (3, 65, 70, 65, 4, 2, 1, 1, 1, 0, Padding::Zeros),
        (1, 40, 128, 128, 6, 1, 1, 2, 3, 2, Padding::Zeros),
        (1, 130, 64, 64, 128, 1, 1, 16, 64, 64, Padding::Zeros),
    ];
    for &(batch, len, c_in, c_out, kernel, stride, dilation, groups, pad_left, pad_right, padding) in &cases {
        let conv = Conv1d { stride, dilation, groups, pad_left, pad_right, padding };
        let x = round_to(elem, &rng.vec(batch * len * c_in, -1.0, 1.0));
        let w = round_to(elem, &rng.vec(c_out * (c_in / groups) * kernel, -0.5, 0.5));
        let b = round_to(elem, &rng.vec(c_out, -0.5, 0.5));
        let tx = gpu.upload("x", &[batch, len, c_in], dt, &x)?;
        let tw = gpu.upload("w", &[c_out, c_in / groups, kernel], dt, &w)?;
        let tb = gpu.upload("b", &[c_out], dt, &b)?;
        let mut rec = Recorder::new(gpu);
        let y = rec.conv1d(&tx, &tw, Some(&tb), &conv)?;
        let plain = rec.conv1d(&tx, &tw, None, &conv)?;
        rec.submit()?;
        let shape = [batch, len, c_in, c_out, kernel, stride, dilation, groups];
        ensure!(y.shape() == [batch, conv.out_len(len, kernel), c_out], "conv1d {shape:?}: output shape {:?}", y.shape());
        let tol = Tol::for_sums(elem, (c_in / groups) * kernel);
        assert_close("conv1d", &gpu.read(&y).await?, &cpu::conv1d(&x, batch, len, c_in, &w, c_out, kernel, Some(&b), &conv), tol, &shape)?;
        assert_close("conv1d no bias", &gpu.read(&plain).await?, &cpu::conv1d(&x, batch, len, c_in, &w, c_out, kernel, None, &conv), tol, &shape)?;
    }
    Ok(())
});

gpu_test!(async fn conv_transpose1d_matches_the_cpu(gpu, elem) {
    let mut rng = Rng::new(42);
    let dt = elem.dtype();
    // (batch, len, c_in, c_out, kernel, stride, dilation, groups, trim_left, trim_right)
    let cases = [
        (1, 1, 1, 1, 1, 1, 1, 1, 0, 0),
        (2, 9, 6, 3, 16, 8, 1, 1, 0, 8),
        (1, 13, 4, 4, 10, 5, 1, 1, 2, 3),
        (1, 7, 4, 6, 4, 2, 2, 2, 1, 1),
        (2, 33, 70, 65, 4, 2, 1, 1, 1, 1),
    ];
    for &(batch, len, c_in, c_out, kernel, stride, dilation, groups, trim_left, trim_right) in &cases {
        let conv = ConvTranspose1d { stride, dilation, groups, trim_left, trim_right };
        let x = round_to(elem, &rng.vec(batch * len * c_in, -1.0, 1.0));
        let w = round_to(elem, &rng.vec(c_in * (c_out / groups) * kernel, -0.5, 0.5));
        let b = round_to(elem, &rng.vec(c_out, -0.5, 0.5));
        let tx = gpu.upload("x", &[batch, len, c_in], dt, &x)?;
        let tw = gpu.upload("w", &[c_in, c_out / groups, kernel], dt, &w)?;
        let tb = gpu.upload("b", &[c_out], dt, &b)?;
        let mut rec = Recorder::new(gpu);
        let y = rec.conv_transpose1d(&tx, &tw, Some(&tb), &conv)?;
        rec.submit()?;
        let shape = [batch, len, c_in, c_out, kernel, stride, dilation, groups];
        ensure!(y.shape() == [batch, conv.out_len(len, kernel), c_out], "conv_transpose1d {shape:?}: output shape {:?}", y.shape());
        let tol = Tol::for_sums(elem, c_in * kernel.div_ceil(stride));
        assert_close("conv_transpose1d", &gpu.read(&y).await?, &cpu::conv_transpose1d(&x, batch, len, c_in, &w, c_out, kernel, Some(&b), &conv), tol, &shape)?;
    }
    Ok(())
});

gpu_test!(async fn convolution_outputs_split_across_bindings_and_inputs_must_not(gpu, elem) {
    // The stated rule: the output may span bindings (one launch per chunk); the input may not.
    let f16 = if elem == Elem::F16 { F16Mode::Require } else { F16Mode::Auto };
    let _ = gpu;
    let gpu = &gpu_with(GpuOptions { f16, split_at: Some(1024), ..Default::default() }).await;
    let mut rng = Rng::new(43);
    let dt = elem.dtype();
    let (len, c_in, c_out) = (40, 4, 20);
    let x = round_to(elem, &rng.vec(len * c_in, -1.0, 1.0));
    let w = round_to(elem, &rng.vec(c_out * c_in * 3, -0.5, 0.5));
    let tx = gpu.upload("x", &[1, len, c_in], dt, &x)?;
    let tw = gpu.upload("w", &[c_out, c_in, 3], dt, &w)?;
    let conv = Conv1d { pad_left: 1, pad_right: 1, padding: Padding::Reflect, ..Conv1d::plain() };
    let wt = round_to(elem, &rng.vec(c_in * c_out * 3, -0.5, 0.5));
    let twt = gpu.upload("w", &[c_in, c_out, 3], dt, &wt)?;
    let up = ConvTranspose1d { stride: 2, dilation: 1, groups: 1, trim_left: 1, trim_right: 1 };
    let mut rec = Recorder::new(gpu);
    let y = rec.conv1d(&tx, &tw, None, &conv)?;
    let yt = rec.conv_transpose1d(&tx, &twt, None, &up)?;
    rec.submit()?;
    ensure!(y.chunks().len() > 1 && yt.chunks().len() > 1, "the outputs should be split: {} and {} chunks", y.chunks().len(), yt.chunks().len());
    let shape = [len, c_in, c_out];
    assert_close("split conv1d", &gpu.read(&y).await?, &cpu::conv1d(&x, 1, len, c_in, &w, c_out, 3, None, &conv), Tol::for_sums(elem, c_in * 3), &shape)?;
    assert_close("split conv_transpose1d", &gpu.read(&yt).await?, &cpu::conv_transpose1d(&x, 1, len, c_in, &wt, c_out, 3, None, &up), Tol::for_sums(elem, c_in * 2), &shape)?;
    let big = gpu.upload("x", &[1, 200, c_in], dt, &rng.vec(200 * c_in, -1.0, 1.0))?;
    let mut rec = Recorder::new(gpu);
    match rec.conv1d(&big, &tw, None, &conv) {
        Err(e @ Error::TooLargeForBinding { .. }) => ensure!(e.to_string().starts_with("conv1d: x (") && e.to_string().contains("one storage binding"), "{e}"),
        other => anyhow::bail!("a split input should be refused by name, got {:?}", other.map(|t| t.shape().to_vec())),
    }
    Ok(())
});

gpu_test!(async fn convolution_settings_out_of_range_are_named(gpu, elem) {
    let dt = elem.dtype();
    let x = gpu.upload("x", &[1, 4, 2], dt, &[0.5; 8])?;
    let w = gpu.upload("w", &[3, 2, 3], dt, &[0.5; 18])?;
    let mut rec = Recorder::new(gpu);
    let reflect = Conv1d { pad_left: 4, pad_right: 0, padding: Padding::Reflect, ..Conv1d::plain() };
    let e = rec.conv1d(&x, &w, None, &reflect).unwrap_err().to_string();
    ensure!(e.contains("conv1d: x") && e.contains("reflect padding"), "{e}");
    let e = rec.conv1d(&x, &w, None, &Conv1d { groups: 2, ..Conv1d::plain() }).unwrap_err().to_string();
    ensure!(e.contains("conv1d: weight has shape [3, 2, 3]"), "{e}");
    let e = rec.conv1d(&x, &w, None, &Conv1d { dilation: 4, ..Conv1d::plain() }).unwrap_err().to_string();
    ensure!(e.contains("kernel spanning 9"), "{e}");
    Ok(())
});

gpu_test!(async fn group_norm_over_time_and_channels(gpu, elem) {
    let mut rng = Rng::new(44);
    let dt = elem.dtype();
    for &(batch, len, channels, groups) in &[(1, 1, 1, 1), (2, 33, 12, 3), (1, 500, 8, 8), (3, 7, 64, 1)] {
        let x = round_to(elem, &rng.vec(batch * len * channels, -2.0, 3.0));
        let w = round_to(elem, &rng.vec(channels, 0.5, 1.5));
        let b = round_to(elem, &rng.vec(channels, -0.5, 0.5));
        let tx = gpu.upload("x", &[batch, len, channels], dt, &x)?;
        let (tw, tb) = (gpu.upload("w", &[channels], dt, &w)?, gpu.upload("b", &[channels], dt, &b)?);
        let mut rec = Recorder::new(gpu);
        let y = rec.group_norm(&tx, groups, &tw, &tb, 1e-5)?;
        rec.submit()?;
        assert_close("group_norm", &gpu.read(&y).await?, &cpu::group_norm(&x, batch, len, channels, groups, &w, &b, 1e-5), Tol::of(elem), &[batch, len, channels, groups])?;
    }
    Ok(())
});

gpu_test!(async fn an_lstm_from_products_and_the_cell_kernel(gpu, elem) {
    // EnCodec's LSTM: the input products of every step in one matmul, then per step the
    // recurrent matvec and the cell; a batch of sequences.
    let mut rng = Rng::new(45);
    let dt = elem.dtype();
    let (batch, steps, input, hidden) = (2, 9, 5, 6);
    let x = round_to(elem, &rng.vec(batch * steps * input, -1.0, 1.0));
    let w_ih = round_to(elem, &rng.vec(4 * hidden * input, -0.5, 0.5));
    let w_hh = round_to(elem, &rng.vec(4 * hidden * hidden, -0.5, 0.5));
    let b_ih = round_to(elem, &rng.vec(4 * hidden, -0.2, 0.2));
    let b_hh = round_to(elem, &rng.vec(4 * hidden, -0.2, 0.2));
    let tx = gpu.upload("x", &[batch * steps, input], dt, &x)?;
    let (wi, wh) = (Weight::Dense(gpu.upload("w_ih", &[4 * hidden, input], dt, &w_ih)?), Weight::Dense(gpu.upload("w_hh", &[4 * hidden, hidden], dt, &w_hh)?));
    let (bi, bh) = (gpu.upload("b_ih", &[4 * hidden], dt, &b_ih)?, gpu.upload("b_hh", &[4 * hidden], dt, &b_hh)?);
    let c = gpu.zeros("c", &[batch, hidden], dt)?;
    let h = gpu.zeros("h", &[batch, hidden], dt)?;
    let seq = gpu.zeros("seq", &[batch * steps, hidden], dt)?;
    let mut rec = Recorder::new(gpu);
    let gx = rec.linear(&tx, &wi, Some(&bi))?;
    for t in 0..steps {
        let gh = rec.linear(&h, &wh, Some(&bh))?;
        rec.lstm_cell(&gx, &gh, &c, &h, &seq, steps, t)?;
    }
    rec.submit()?;
    let mut hs = vec![0f32; batch * hidden];
    let mut cs = vec![0f32; batch * hidden];
    let mut expected = vec![0f32; batch * steps * hidden];
    for t in 0..steps {
        let gates: Vec<f32> = (0..batch)
            .flat_map(|b| {
                let row = b * steps + t;
                let a = cpu::matmul(&x[row * input..(row + 1) * input], &w_ih, Some(&b_ih), 1, input, 4 * hidden);
                let r = cpu::matmul(&hs[b * hidden..(b + 1) * hidden], &w_hh, Some(&b_hh), 1, hidden, 4 * hidden);
                cpu::add(&round_to(elem, &a), &round_to(elem, &r))
            })
            .collect();
        let (hn, cn) = cpu::lstm_cell(&gates, &cs, hidden);
        hs = round_to(elem, &hn);
        cs = round_to(elem, &cn);
        for b in 0..batch {
            expected[(b * steps + t) * hidden..(b * steps + t + 1) * hidden].copy_from_slice(&hs[b * hidden..(b + 1) * hidden]);
        }
    }
    let tol = Tol { atol: Tol::for_sums(elem, hidden).atol * 4.0, rtol: Tol::of(elem).rtol * 4.0 };
    assert_close("lstm outputs", &gpu.read(&seq).await?, &expected, tol, &[batch, steps, hidden])?;
    assert_close("lstm cell state", &gpu.read(&c).await?, &cs, tol, &[batch, hidden])?;
    Ok(())
});
