//! The shared model blocks: several dependent ops in one submission against a CPU composition.

use m2ugen_core::cpu;
use m2ugen_core::quant::{dequantize, quantize, QuantFormat};
use m2ugen_core::rng::Rng;
use m2ugen_core::StoredType;
use m2ugen_gpu::{Recorder, Weight};
use m2ugen_models::layers::{FeedForward, Linear, MultiHeadAttention, RmsNorm};
use m2ugen_models::Store;
use m2ugen_tests::{assert_close, gpu_test, round_to, store_random, Tol};

/// Stores a linear layer `name` of `(out, inp)` with a bias, as the weight type asks; returns
/// the weight the products see (dequantized) and the bias.
fn store_linear(gpu: &m2ugen_gpu::Gpu, store: &mut Store, rng: &mut Rng, elem: m2ugen_gpu::registry::Elem, name: &str, out: usize, inp: usize, quant: Option<QuantFormat>) -> anyhow::Result<(Vec<f32>, Vec<f32>)> {
    let w = round_to(elem, &rng.vec(out * inp, -0.3, 0.3));
    let b = round_to(elem, &rng.vec(out, -0.1, 0.1));
    store.insert_f32(gpu, &format!("{name}.bias"), &[out], &b)?;
    Ok(match quant {
        None => {
            store.insert_f32(gpu, &format!("{name}.weight"), &[out, inp], &w)?;
            (w, b)
        }
        Some(f) => {
            let q = quantize(f, out, inp, &w)?;
            let bytes: Vec<u8> = q.q.iter().chain(&q.scales).flat_map(|v| v.to_le_bytes()).collect();
            store.insert(gpu, &format!("{name}.weight"), &[out, inp], if f == QuantFormat::Q8 { StoredType::Q8 } else { StoredType::Q4 }, &bytes)?;
            (dequantize(&q), b)
        }
    })
}

gpu_test!(async fn swiglu_feed_forward_after_rms_norm_matches_the_cpu(gpu, elem) {
    let mut rng = Rng::new(21);
    let dt = elem.dtype();
    for &(rows, dim, hidden, quant) in &[(1, 64, 192, None), (5, 63, 100, Some(QuantFormat::Q4)), (9, 64, 192, Some(QuantFormat::Q8)), (3, 32, 40, None)] {
        let x = round_to(elem, &rng.vec(rows * dim, -1.0, 1.0));
        let norm_w = round_to(elem, &rng.vec(dim, 0.5, 1.5));
        let mut store = Store::new(dt);
        let (w1r, b1) = store_linear(gpu, &mut store, &mut rng, elem, "ffn.w1", hidden, dim, quant)?;
        let (w2r, b2) = store_linear(gpu, &mut store, &mut rng, elem, "ffn.w2", dim, hidden, quant)?;
        let (w3r, b3) = store_linear(gpu, &mut store, &mut rng, elem, "ffn.w3", hidden, dim, quant)?;
        let ffn = FeedForward::load(gpu, &mut store, "ffn", dim, hidden, true)?;
        // w1 and w3 went into the fused product and out of the store; w2 stays (shared).
        anyhow::ensure!(!store.has("ffn.w1.weight") && !store.has("ffn.w3.bias") && store.has("ffn.w2.weight"), "the fused parts should have left the store");
        let norm = RmsNorm { weight: gpu.upload("norm", &[dim], dt, &norm_w)?, eps: 1e-5 };
        let tx = gpu.upload("x", &[rows, dim], dt, &x)?;
        let mut rec = Recorder::new(gpu);
        let normed = norm.forward(&mut rec, &tx)?;
        let plain = ffn.forward(&mut rec, &normed, None)?;
        let with_residual = ffn.forward(&mut rec, &normed, Some(&tx))?;
        rec.submit()?;

        let n = round_to(elem, &cpu::rms_norm(&x, &norm_w, dim, 1e-5));
        let gate = cpu::silu(&round_to(elem, &cpu::matmul(&n, &w1r, Some(&b1), rows, dim, hidden)));
        let up = round_to(elem, &cpu::matmul(&n, &w3r, Some(&b3), rows, dim, hidden));
        let h = cpu::mul(&gate, &up);
        let reference = cpu::matmul(&h, &w2r, Some(&b2), rows, hidden, dim);
        // Three chained products: four times the bound of one.
        let tol = Tol::for_sums(elem, hidden);
        let tol = Tol { atol: tol.atol * 4.0, rtol: tol.rtol * 4.0 };
        assert_close("rms_norm then SwiGLU", &gpu.read(&plain).await?, &reference, tol, &[rows, dim, hidden])?;
        assert_close("SwiGLU with the residual added", &gpu.read(&with_residual).await?, &cpu::add(&reference, &x), tol, &[rows, dim, hidden])?;
    }
    Ok(())
});

gpu_test!(async fn fused_linear_layers_equal_the_separate_ones(gpu, elem) {
    // q|k|v of unequal widths (grouped-query), on a device that splits at 1 KiB so the fused
    // weight spans chunks the parts did not.
    let f16 = if elem == m2ugen_gpu::registry::Elem::F16 { m2ugen_gpu::F16Mode::Require } else { m2ugen_gpu::F16Mode::Auto };
    let _ = gpu;
    let gpu = &m2ugen_tests::gpu_with(m2ugen_gpu::GpuOptions { f16, split_at: Some(1024), ..Default::default() }).await;
    let mut rng = Rng::new(22);
    let (rows, dim) = (3, 40);
    for quant in [None, Some(QuantFormat::Q8), Some(QuantFormat::Q4)] {
        let mut store = Store::new(elem.dtype());
        let parts = [("q", 24), ("k", 8), ("v", 8)];
        let mut refs = Vec::new();
        for (name, out) in parts {
            refs.push(store_linear(gpu, &mut store, &mut rng, elem, name, out, dim, quant)?);
        }
        let x = round_to(elem, &rng.vec(rows * dim, -1.0, 1.0));
        let tx = gpu.upload("x", &[rows, dim], elem.dtype(), &x)?;
        let fused = Linear::load_fused(gpu, &mut store, &[("q", 24), ("k", 8), ("v", 8)], dim)?;
        if let Weight::Quant(q) = &fused.weight {
            anyhow::ensure!(q.chunks.len() > 1, "the fused weight should be split");
        }
        let mut rec = Recorder::new(gpu);
        let y = fused.forward(&mut rec, &tx)?;
        rec.submit()?;
        let expected: Vec<f32> = (0..rows)
            .flat_map(|r| refs.iter().zip(parts).flat_map(|((w, b), (_, out))| cpu::matmul(&x[r * dim..(r + 1) * dim], w, Some(b), 1, dim, out)).collect::<Vec<_>>())
            .collect();
        assert_close(&format!("fused q|k|v {quant:?}"), &gpu.read(&y).await?, &expected, Tol::for_sums(elem, dim), &[rows, dim])?;
    }
    Ok(())
});

gpu_test!(async fn multi_head_attention_self_and_cross(gpu, elem) {
    // PyTorch's in_proj layout split into q and k|v; self-attention, and cross-attention whose
    // keys and values are computed once and reused.
    let mut rng = Rng::new(23);
    let (dim, heads, rows, mem_rows) = (16, 2, 5, 7);
    let dt = elem.dtype();
    let mut store = Store::new(dt);
    let w_in = round_to(elem, &rng.vec(3 * dim * dim, -0.4, 0.4));
    let b_in = round_to(elem, &rng.vec(3 * dim, -0.1, 0.1));
    let w_out = round_to(elem, &rng.vec(dim * dim, -0.4, 0.4));
    let b_out = round_to(elem, &rng.vec(dim, -0.1, 0.1));
    store.insert_f32(gpu, "mha.in_proj_weight", &[3 * dim, dim], &w_in)?;
    store.insert_f32(gpu, "mha.in_proj_bias", &[3 * dim], &b_in)?;
    store.insert_f32(gpu, "mha.out_proj.weight", &[dim, dim], &w_out)?;
    store.insert_f32(gpu, "mha.out_proj.bias", &[dim], &b_out)?;
    let mha = MultiHeadAttention::load_pytorch(gpu, &store, "mha", dim, heads)?;
    let x = round_to(elem, &rng.vec(rows * dim, -1.0, 1.0));
    let mem = round_to(elem, &rng.vec(mem_rows * dim, -1.0, 1.0));
    let (tx, tm) = (gpu.upload("x", &[rows, dim], dt, &x)?, gpu.upload("memory", &[mem_rows, dim], dt, &mem)?);
    let mut rec = Recorder::new(gpu);
    let own = mha.forward(&mut rec, &tx, None)?;
    let kv = mha.keys(&mut rec, &tm)?;
    let cross = mha.attend(&mut rec, &tx, &kv, None)?;
    let cross_again = mha.attend(&mut rec, &tx, &kv, Some(&tx))?;
    rec.submit()?;
    let proj = |input: &[f32], n: usize, part: usize| cpu::matmul(input, &w_in[part * dim * dim..(part + 1) * dim * dim], Some(&b_in[part * dim..(part + 1) * dim]), n, dim, dim);
    let reference = |queries: &[f32], source: &[f32], n: usize| {
        let a = cpu::attention(&round_to(elem, &proj(queries, rows, 0)), &round_to(elem, &proj(source, n, 1)), &round_to(elem, &proj(source, n, 2)), rows, n, heads, heads, dim / heads, None);
        cpu::matmul(&round_to(elem, &a), &w_out, Some(&b_out), rows, dim, dim)
    };
    let tol = Tol { atol: Tol::for_sums(elem, dim).atol * 3.0, rtol: Tol::of(elem).rtol * 3.0 };
    assert_close("self-attention", &gpu.read(&own).await?, &reference(&x, &x, rows), tol, &[rows, dim])?;
    let c = reference(&x, &mem, mem_rows);
    assert_close("cross-attention", &gpu.read(&cross).await?, &c, tol, &[rows, mem_rows, dim])?;
    assert_close("cross-attention with a residual", &gpu.read(&cross_again).await?, &cpu::add(&c, &x), tol, &[rows, mem_rows, dim])?;
    Ok(())
});

/// MERT's feature extractor and projection on the CPU: every unpadded convolution, the
/// GroupNorm of the first (over the whole clip) or a LayerNorm after each, GELU, then the
/// projection's LayerNorm and product. Output `(frames, hidden)`.
fn mert_features_on_cpu(c: &m2ugen_core::config::MertConfig, weights: &std::collections::BTreeMap<String, Vec<f32>>, wave: &[f32]) -> Vec<f32> {
    use m2ugen_core::conv::Conv1d;
    let w = |name: &str| &weights[&format!("mert.{name}")];
    let (mut x, mut len, mut c_in) = (wave.to_vec(), wave.len(), 1);
    for i in 0..c.conv_dim.len() {
        let p = format!("feature_extractor.conv_layers.{i}");
        let (dim, k) = (c.conv_dim[i], c.conv_kernel[i]);
        let conv = Conv1d { stride: c.conv_stride[i], ..Conv1d::plain() };
        let bias = c.conv_bias.then(|| w(&format!("{p}.conv.bias")).as_slice());
        x = cpu::conv1d(&x, 1, len, c_in, w(&format!("{p}.conv.weight")), dim, k, bias, &conv);
        len = conv.out_len(len, k);
        let (nw, nb) = (format!("{p}.layer_norm.weight"), format!("{p}.layer_norm.bias"));
        if c.feat_extract_norm == "layer" {
            x = cpu::layer_norm(&x, w(&nw), w(&nb), dim, 1e-5);
        } else if i == 0 {
            x = cpu::group_norm(&x, 1, len, dim, dim, w(&nw), w(&nb), 1e-5);
        }
        x = cpu::gelu(&x);
        c_in = dim;
    }
    let x = cpu::layer_norm(&x, w("feature_projection.layer_norm.weight"), w("feature_projection.layer_norm.bias"), c_in, c.layer_norm_eps);
    cpu::matmul(&x, w("feature_projection.projection.weight"), Some(w("feature_projection.projection.bias")), len, c_in, c.hidden_size)
}

gpu_test!(async fn mert_feature_extractor_whole_and_in_chunks_matches_the_cpu(gpu, elem) {
    use m2ugen_core::config::MertConfig;
    use m2ugen_models::mert::Mert;
    let mut rng = Rng::new(71);
    // Three convolutions of awkward widths; both norm forms, the layer form with biases.
    for (form, bias) in [("group", false), ("layer", true)] {
        let config = MertConfig { conv_dim: vec![12, 9, 7], conv_kernel: vec![10, 3, 2], conv_stride: vec![5, 2, 2], feat_extract_norm: form.into(), conv_bias: bias, hidden_size: 16, ..MertConfig::tiny() };
        let mut store = Store::new(elem.dtype());
        let weights = store_random(gpu, elem, &mut store, &mut rng, Mert::tensors("mert", &config), |name| if name.ends_with("norm.weight") { (0.5, 1.5) } else { (-0.4, 0.4) })?;
        let mut mert = Mert::load(gpu, &mut store, "mert", &config)?;
        // Kernels 10, 3, 2 with strides 5, 2, 2: a frame reads 2 rows of the second
        // convolution's output, (2 - 1)·2 + 3 = 5 of the first's, (5 - 1)·5 + 10 = 30 samples.
        anyhow::ensure!(mert.receptive_field() == 30, "receptive field {}", mert.receptive_field());
        anyhow::ensure!((mert.frames(29), mert.frames(30), mert.frames(2719)) == (0, 1, 135), "frames {:?}", (mert.frames(29), mert.frames(30), mert.frames(2719)));
        // Off-centre samples, so that the GroupNorm's mean matters; 2719 samples give 542 rows
        // of the first convolution and 135 frames.
        let wave = round_to(elem, &rng.vec(2719, -0.7, 1.3));
        let expected = mert_features_on_cpu(&config, &weights, &wave);
        let tw = gpu.upload("wave", &[wave.len()], elem.dtype(), &wave)?;
        // f16 rounds every stage of a chain of three convolutions and norms (the last LayerNorm
        // over 7 channels amplifies); f32 is held to the single kernel's tolerance.
        let tol = match elem {
            m2ugen_gpu::registry::Elem::F32 => Tol::of(elem),
            m2ugen_gpu::registry::Elem::F16 => Tol { atol: 1e-2, rtol: 1e-2 },
        };
        // Chunks of 541 rows: every frame in one part, the first convolution's last row (read by
        // no frame) only in the statistics.
        for rows in [None, Some(541), Some(100), Some(5)] {
            if let Some(rows) = rows {
                mert.set_chunk_rows(rows)?;
            }
            let mut rec = Recorder::new(gpu);
            let y = mert.features(&mut rec, &tw)?;
            rec.submit()?;
            anyhow::ensure!(y.shape() == [135, 16], "{form}, chunks of {rows:?} rows: shape {:?}", y.shape());
            assert_close(&format!("mert features, {form} form, chunks of {rows:?} rows"), &gpu.read(&y).await?, &expected, tol, &[135, 16])?;
        }
        let err = mert.set_chunk_rows(4).err().map(|e| e.to_string()).unwrap_or_default();
        anyhow::ensure!(err.contains("5 to 16384 rows") && err.contains("not 4"), "{err}");
    }
    Ok(())
});

gpu_test!(async fn mert_feature_extractor_in_chunks_holds_no_whole_first_convolution(gpu, elem) {
    use m2ugen_core::config::MertConfig;
    use m2ugen_models::mert::Mert;
    let mut rng = Rng::new(72);
    // A wide first convolution and narrow later ones, as MERT's is the largest intermediate.
    let config = MertConfig { conv_dim: vec![96, 16, 8], conv_kernel: vec![10, 3, 2], conv_stride: vec![5, 2, 2], hidden_size: 8, ..MertConfig::tiny() };
    let mut store = Store::new(elem.dtype());
    store_random(gpu, elem, &mut store, &mut rng, Mert::tensors("mert", &config), |_| (-0.4, 0.4))?;
    let mut mert = Mert::load(gpu, &mut store, "mert", &config)?;
    let samples = 100_003;
    let tw = gpu.upload("wave", &[samples], elem.dtype(), &round_to(elem, &rng.vec(samples, -1.0, 1.0)))?;
    // 19 999 rows of 96 channels.
    let first_conv_bytes = ((samples - 10) / 5 + 1) * 96 * elem.dtype().size();
    let mut peaks = Vec::new();
    for rows in [None, Some(1000)] {
        if let Some(rows) = rows {
            mert.set_chunk_rows(rows)?;
        }
        let before = gpu.pool_memory().in_use;
        gpu.reset_peak();
        let mut rec = Recorder::new(gpu);
        let y = mert.features(&mut rec, &tw)?;
        rec.submit()?;
        peaks.push(gpu.pool_memory().peak - before);
        drop(y);
    }
    anyhow::ensure!(peaks[0] as usize >= first_conv_bytes, "the whole window holds the first convolution's {first_conv_bytes} bytes, yet its peak was {}", peaks[0]);
    anyhow::ensure!((peaks[1] as usize) < first_conv_bytes / 4, "in chunks of 1000 rows the peak was {} bytes, the whole first convolution {first_conv_bytes}", peaks[1]);
    Ok(())
});

gpu_test!(async fn clap_audio_folds_a_spectrogram_into_its_image(gpu, elem) {
    use m2ugen_core::config::audioldm2::ClapAudioConfig;
    use m2ugen_models::clap_audio::ClapAudio;
    let mut rng = Rng::new(73);
    // 32 mel bins in a 64-cell image: two time segments stacked (the published model has four);
    // 3 channels, awkwardly.
    let config = ClapAudioConfig { num_mel_bins: 32, patch_embed_input_channels: 3, ..ClapAudioConfig::tiny() };
    let mut store = Store::new(elem.dtype());
    let stats = store_random(gpu, elem, &mut store, &mut rng, ClapAudio::tensors("clap", &config), |name| if name.ends_with("running_var") { (0.5, 4.0) } else { (-0.5, 0.5) })?;
    let model = ClapAudio::load(gpu, &mut store, "clap", &config)?;
    let (channels, frames, bins, r) = (3, config.frames(), 32, config.freq_ratio());
    assert_eq!((frames, r), (128, 2));
    let features = round_to(elem, &rng.vec(channels * frames * bins, -3.0, 3.0));
    let tf = gpu.upload("features", &[channels, frames, bins], elem.dtype(), &features)?;
    let mut rec = Recorder::new(gpu);
    let image = model.image(&mut rec, &tf)?;
    rec.submit()?;
    anyhow::ensure!(image.shape() == [1, 64, 64, channels], "{:?}", image.shape());
    // Row h = q·bins + f, column w: frame q·(frames / r) + w of bin f, normalised by bin f's
    // statistics.
    let s = |part: &str| &stats[&format!("clap.audio_model.audio_encoder.batch_norm.{part}")];
    let normalised = cpu::batch_norm(&features, bins, s("running_mean"), s("running_var"), s("weight"), s("bias"), 1e-5);
    let mut expected = Vec::with_capacity(normalised.len());
    for h in 0..64 {
        for w in 0..64 {
            for c in 0..channels {
                let (q, f) = (h / bins, h % bins);
                expected.push(normalised[(c * frames + q * (frames / r) + w) * bins + f]);
            }
        }
    }
    assert_close("clap audio image", &gpu.read(&image).await?, &expected, Tol::of(elem), &[64, 64, channels])?;
    Ok(())
});
