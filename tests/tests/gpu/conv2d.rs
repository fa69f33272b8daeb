//! What AudioLDM 2's UNet, VAE and HiFi-GAN add (issue #14): `conv2d` over channels-last images,
//! nearest-neighbour upsampling and leaky ReLU, against their CPU twins on awkward shapes: 1x1
//! and odd images, one channel, output channels off the tile, stride 2 with padding 1 on odd
//! sizes, 1x1 kernels, depthwise and grouped (the direct path) and grouped on whole tiles,
//! dilation, per-axis settings, batches, bias on and off, outputs split across bindings.

use m2ugen_core::conv::Conv2d;
use m2ugen_core::cpu;
use m2ugen_core::rng::Rng;
use m2ugen_gpu::registry::Elem;
use m2ugen_gpu::{Error, F16Mode, GpuOptions, Recorder};
use m2ugen_tests::{assert_close, ensure, gpu_test, gpu_with, round_to, Tol};

/// One convolution to check: `(batch, h, w, c_in)`, `(c_out, kh, kw)` and the settings.
struct Case {
    x: [usize; 4],
    w: [usize; 3],
    conv: Conv2d,
}

fn case(x: [usize; 4], w: [usize; 3], stride: [usize; 2], padding: [usize; 2], dilation: [usize; 2], groups: usize) -> Case {
    Case { x, w, conv: Conv2d { stride, padding, dilation, groups } }
}

gpu_test!(async fn conv2d_matches_the_cpu(gpu, elem) {
    let mut rng = Rng::new(61);
    let dt = elem.dtype();
    let cases = [
        // One pixel, one channel, a 1x1 kernel.
        case([1, 1, 1, 1], [1, 1, 1], [1, 1], [0, 0], [1, 1], 1),
        // diffusers' 3x3 padding 1 on a 1x1 image (only the centre tap lands) and on 5x7, batch 2.
        case([1, 1, 1, 3], [4, 3, 3], [1, 1], [1, 1], [1, 1], 1),
        case([2, 5, 7, 3], [5, 3, 3], [1, 1], [1, 1], [1, 1], 1),
        // The downsampler: stride 2, padding 1 on odd sizes; 70 output channels, past a tile.
        case([1, 13, 3, 4], [70, 3, 3], [2, 2], [1, 1], [1, 1], 1),
        case([2, 10, 17, 33], [64, 3, 3], [2, 2], [1, 1], [1, 1], 1),
        // A 1x1 shortcut across several reduction steps, output channels off the tile.
        case([1, 5, 7, 65], [67, 1, 1], [1, 1], [0, 0], [1, 1], 1),
        // Dilation 2 with the padding that keeps the size.
        case([1, 9, 11, 6], [6, 3, 3], [1, 1], [2, 2], [2, 2], 1),
        // Every setting different per axis: a 2x3 kernel, stride 3 down, dilation 2 across.
        case([1, 8, 6, 3], [4, 2, 3], [3, 1], [0, 2], [1, 2], 1),
        // Depthwise (the direct path), batch 2.
        case([2, 7, 5, 8], [8, 3, 3], [1, 1], [1, 1], [1, 1], 8),
        // Narrow groups (3 output channels each, the direct path), a 3x2 kernel, stride 2 across.
        case([1, 6, 9, 8], [12, 3, 2], [1, 2], [1, 0], [1, 1], 4),
        // Two groups of a whole tile each: the tiled path reading the second group's channels.
        case([1, 4, 5, 128], [128, 3, 3], [1, 1], [1, 1], [1, 1], 2),
        // A UNet-like block: several row and column tiles, a long reduction.
        case([1, 16, 32, 64], [96, 3, 3], [1, 1], [1, 1], [1, 1], 1),
    ];
    for Case { x: [batch, h, w, c_in], w: [c_out, kh, kw], conv } in cases {
        let cig = c_in / conv.groups;
        let x = round_to(elem, &rng.vec(batch * h * w * c_in, -1.0, 1.0));
        let wt = round_to(elem, &rng.vec(c_out * cig * kh * kw, -0.5, 0.5));
        let b = round_to(elem, &rng.vec(c_out, -0.5, 0.5));
        let tx = gpu.upload("x", &[batch, h, w, c_in], dt, &x)?;
        let tw = gpu.upload("w", &[c_out, cig, kh, kw], dt, &wt)?;
        let tb = gpu.upload("b", &[c_out], dt, &b)?;
        let mut rec = Recorder::new(gpu);
        let y = rec.conv2d(&tx, &tw, Some(&tb), &conv)?;
        let plain = rec.conv2d(&tx, &tw, None, &conv)?;
        rec.submit()?;
        let shape = [batch, h, w, c_in, c_out, kh, kw];
        let (oh, ow) = conv.out_size(h, w, kh, kw);
        ensure!(y.shape() == [batch, oh, ow, c_out], "conv2d {shape:?} {conv:?}: output shape {:?}", y.shape());
        let tol = Tol::for_sums(elem, cig * kh * kw);
        let (xs, ws) = ([batch, h, w, c_in], [c_out, cig, kh, kw]);
        assert_close(&format!("conv2d {conv:?}"), &gpu.read(&y).await?, &cpu::conv2d(&x, xs, &wt, ws, Some(&b), &conv), tol, &shape)?;
        assert_close(&format!("conv2d no bias {conv:?}"), &gpu.read(&plain).await?, &cpu::conv2d(&x, xs, &wt, ws, None, &conv), tol, &shape)?;
    }
    Ok(())
});

gpu_test!(async fn upsample_nearest2d_repeats_pixels(gpu, elem) {
    let mut rng = Rng::new(62);
    let dt = elem.dtype();
    let exact = Tol { atol: 0.0, rtol: 0.0 };
    for &(shape, scale) in &[([1, 1, 1, 1], 2), ([2, 5, 7, 3], 2), ([1, 13, 3, 1], 3), ([1, 4, 6, 65], 1), ([2, 3, 2, 130], 2)] {
        let [batch, h, w, c] = shape;
        let x = round_to(elem, &rng.vec(batch * h * w * c, -1.0, 1.0));
        let tx = gpu.upload("x", &shape, dt, &x)?;
        let mut rec = Recorder::new(gpu);
        let y = rec.upsample_nearest2d(&tx, scale)?;
        rec.submit()?;
        ensure!(y.shape() == [batch, h * scale, w * scale, c], "upsample {shape:?} x{scale}: output shape {:?}", y.shape());
        assert_close(&format!("upsample_nearest2d x{scale}"), &gpu.read(&y).await?, &cpu::upsample_nearest2d(&x, shape, scale), exact, &shape)?;
    }
    Ok(())
});

gpu_test!(async fn leaky_relu_scales_negatives(gpu, elem) {
    let mut rng = Rng::new(63);
    let dt = elem.dtype();
    for &n in &[1, 7, 65, 1000] {
        let mut x = round_to(elem, &rng.vec(n, -4.0, 4.0));
        x[0] = 0.0;
        if n > 1 {
            x[1] = -3.0;
        }
        let tx = gpu.upload("x", &[n], dt, &x)?;
        for slope in [0.1, 0.01, 0.0, -0.5] {
            let mut rec = Recorder::new(gpu);
            let y = rec.leaky_relu(&tx, slope)?;
            rec.submit()?;
            assert_close(&format!("leaky_relu {slope}"), &gpu.read(&y).await?, &round_to(elem, &cpu::leaky_relu(&x, slope)), Tol::of(elem), &[n])?;
        }
    }
    Ok(())
});

gpu_test!(async fn conv2d_outputs_split_across_bindings_and_inputs_must_not(gpu, elem) {
    // The rule of conv1d: the output may span bindings (one launch per chunk, here chunks of 42
    // or 85 pixels, off the tile of 64); the input, the weight and upsampling may not.
    let f16 = if elem == Elem::F16 { F16Mode::Require } else { F16Mode::Auto };
    let _ = gpu;
    let gpu = &gpu_with(GpuOptions { f16, split_at: Some(4096), ..Default::default() }).await;
    let mut rng = Rng::new(64);
    let dt = elem.dtype();
    let (h, w, c_in, c_out) = (8, 12, 4, 24);
    let x = round_to(elem, &rng.vec(h * w * c_in, -1.0, 1.0));
    let tx = gpu.upload("x", &[1, h, w, c_in], dt, &x)?;
    let wt = round_to(elem, &rng.vec(c_out * c_in * 9, -0.5, 0.5));
    let tw = gpu.upload("w", &[c_out, c_in, 3, 3], dt, &wt)?;
    let wg = round_to(elem, &rng.vec(c_out * 9, -0.5, 0.5));
    let twg = gpu.upload("w", &[c_out, 1, 3, 3], dt, &wg)?;
    let b = round_to(elem, &rng.vec(c_out, -0.5, 0.5));
    let tb = gpu.upload("b", &[c_out], dt, &b)?;
    let grouped = Conv2d { groups: c_in, ..Conv2d::same(3) };
    let mut rec = Recorder::new(gpu);
    let y = rec.conv2d(&tx, &tw, Some(&tb), &Conv2d::same(3))?;
    let yg = rec.conv2d(&tx, &twg, None, &grouped)?;
    let act = rec.leaky_relu(&y, 0.1)?;
    rec.submit()?;
    ensure!(y.chunks().len() > 1 && yg.chunks().len() > 1 && act.chunks().len() > 1, "the outputs should be split: {}, {} and {} chunks", y.chunks().len(), yg.chunks().len(), act.chunks().len());
    let shape = [1, h, w, c_in, c_out];
    let reference = cpu::conv2d(&x, [1, h, w, c_in], &wt, [c_out, c_in, 3, 3], Some(&b), &Conv2d::same(3));
    let ours = gpu.read(&y).await?;
    assert_close("split conv2d", &ours, &reference, Tol::for_sums(elem, c_in * 9), &shape)?;
    assert_close("split conv2d grouped", &gpu.read(&yg).await?, &cpu::conv2d(&x, [1, h, w, c_in], &wg, [c_out, 1, 3, 3], None, &grouped), Tol::for_sums(elem, 9), &shape)?;
    assert_close("split leaky_relu", &gpu.read(&act).await?, &round_to(elem, &cpu::leaky_relu(&ours, 0.1)), Tol::of(elem), &shape)?;
    // A split input, and an upsampled output over one binding, are refused by name.
    let mut rec = Recorder::new(gpu);
    match rec.conv2d(&y, &gpu.upload("w", &[2, c_out, 1, 1], dt, &[0.5; 48])?, None, &Conv2d::plain()) {
        Err(e @ Error::TooLargeForBinding { .. }) => ensure!(e.to_string().starts_with("conv2d: x (") && e.to_string().contains("one storage binding"), "{e}"),
        other => anyhow::bail!("a split input should be refused by name, got {:?}", other.map(|t| t.shape().to_vec())),
    }
    match rec.upsample_nearest2d(&tx, 4) {
        Err(e @ Error::TooLargeForBinding { .. }) => ensure!(e.to_string().starts_with("upsample_nearest2d: output ("), "{e}"),
        other => anyhow::bail!("an upsampled output over one binding should be refused by name, got {:?}", other.map(|t| t.shape().to_vec())),
    }
    Ok(())
});

gpu_test!(async fn conv2d_and_upsample_settings_out_of_range_are_named(gpu, elem) {
    let dt = elem.dtype();
    let x = gpu.upload("x", &[1, 4, 3, 6], dt, &[0.5; 72])?;
    let w = gpu.upload("w", &[4, 6, 3, 3], dt, &[0.5; 216])?;
    let mut rec = Recorder::new(gpu);
    let expect = |what: &str, r: m2ugen_gpu::Result<m2ugen_gpu::GpuTensor>, needles: &[&str]| -> anyhow::Result<()> {
        let e = match r {
            Ok(t) => anyhow::bail!("{what}: expected an error, got a tensor of {:?}", t.shape()),
            Err(e) => e.to_string(),
        };
        ensure!(needles.iter().all(|n| e.contains(n)), "{what}: {e}");
        Ok(())
    };
    // Groups that do not divide the input channels, or a weight of the wrong width or rank.
    expect("groups", rec.conv2d(&x, &w, None, &Conv2d { groups: 4, ..Conv2d::plain() }), &["conv2d: weight has shape [4, 6, 3, 3]", "in 4 groups"])?;
    let narrow = gpu.upload("w", &[4, 5, 3, 3], dt, &[0.5; 180])?;
    expect("weight width", rec.conv2d(&x, &narrow, None, &Conv2d::plain()), &["conv2d: weight has shape [4, 5, 3, 3]", "6 input channels"])?;
    let odd_out = gpu.upload("w", &[5, 3, 1, 1], dt, &[0.5; 15])?;
    expect("c_out per group", rec.conv2d(&x, &odd_out, None, &Conv2d { groups: 2, ..Conv2d::plain() }), &["conv2d: weight has shape [5, 3, 1, 1]"])?;
    let flat = gpu.upload("w", &[4, 6, 9], dt, &[0.5; 216])?;
    expect("weight rank", rec.conv2d(&x, &flat, None, &Conv2d::plain()), &["conv2d: weight has shape [4, 6, 9]", "(c_out, c_in / groups, kh, kw)"])?;
    let seq = gpu.upload("x", &[1, 12, 6], dt, &[0.5; 72])?;
    expect("x rank", rec.conv2d(&seq, &w, None, &Conv2d::plain()), &["conv2d: x has shape [1, 12, 6]"])?;
    // A kernel wider than the padded image, a zero stride, a bias of the wrong length.
    expect("too small", rec.conv2d(&x, &w, None, &Conv2d { dilation: [1, 2], ..Conv2d::plain() }), &["conv2d: x has shape [1, 4, 3, 6]", "kernel spanning 3x5"])?;
    expect("stride", rec.conv2d(&x, &w, None, &Conv2d { stride: [1, 0], ..Conv2d::plain() }), &["conv2d: stride and dilation"])?;
    let bias = gpu.upload("b", &[3], dt, &[0.5; 3])?;
    expect("bias", rec.conv2d(&x, &w, Some(&bias), &Conv2d::same(3)), &["conv2d: bias has shape [3]", "4 elements"])?;
    expect("scale", rec.upsample_nearest2d(&x, 0), &["upsample_nearest2d: scale = 0"])?;
    expect("upsample rank", rec.upsample_nearest2d(&seq, 2), &["upsample_nearest2d: x has shape [1, 12, 6]"])?;
    Ok(())
});
