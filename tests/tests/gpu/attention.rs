//! The attention kernels against `cpu::attention`: the tiled prefill (causal, with and without a
//! cached prefix, and plain), the split decode over a batch of cache slots, the cache write, and
//! RoPE at per-row positions. Lengths from 1 to 2048, heads of 64 and 128. Then the options the
//! other models need: an additive bias (T5's relative positions, padding masks), several
//! sequences per launch, a score scale, cross-attention through the decode kernel, the addend
//! (M2UGen's prefix), and RoPE fused with the cache write.

use m2ugen_core::cpu;
use m2ugen_core::rng::Rng;
use m2ugen_gpu::registry::Elem;
use m2ugen_core::DType;
use m2ugen_gpu::{Attention, Bias, DecodeAttention, HeadShape, Heads, Recorder, RopeTable};
use m2ugen_tests::{assert_close, gpu_test, round_to, Tol};

/// Attention outputs are convex combinations of values: the error of one score product, which
/// grows with the head size, bounds them.
fn tol(elem: Elem, head_dim: usize) -> Tol {
    Tol::for_sums(elem, head_dim)
}

/// The longest case: 2048 natively; the browser suite (SwiftShader and a wasm CPU twin) stops at
/// 1024 to stay within its time.
const LONGEST: usize = if cfg!(target_arch = "wasm32") { 1024 } else { 2048 };

gpu_test!(async fn prefill_attention_matches_the_cpu(gpu, elem) {
    let mut rng = Rng::new(31);
    let dt = elem.dtype();
    // (query rows, keys, heads, kv heads, head_dim, causal offset)
    let cases = [
        (1, 1, 1, 1, 64, Some(0)),
        (1, 512, 1, 1, 128, None),
        (7, 7, 4, 2, 64, Some(0)),
        (65, 100, 2, 2, 128, Some(35)),
        (130, 130, 3, 3, 64, None),
        (8, 3, 4, 4, 8, None),
        (LONGEST, LONGEST, 1, 1, 128, Some(0)),
        (LONGEST, LONGEST, 1, 1, 64, Some(0)),
    ];
    for &(q_rows, kv_len, heads, kv_heads, head_dim, causal) in &cases {
        let q = round_to(elem, &rng.vec(q_rows * heads * head_dim, -1.0, 1.0));
        let k = round_to(elem, &rng.vec(kv_len * kv_heads * head_dim, -1.0, 1.0));
        let v = round_to(elem, &rng.vec(kv_len * kv_heads * head_dim, -1.0, 1.0));
        let tq = gpu.upload("q", &[q_rows, heads * head_dim], dt, &q)?;
        // Keys sit after 3 unrelated rows, as in a cache slot that does not start at row 0.
        let pad = 3 * kv_heads * head_dim;
        let k_padded: Vec<f32> = std::iter::repeat_n(9.0, pad).chain(k.iter().copied()).collect();
        let v_padded: Vec<f32> = std::iter::repeat_n(9.0, pad).chain(v.iter().copied()).collect();
        let tk = gpu.upload("k", &[kv_len + 3, kv_heads * head_dim], dt, &k_padded)?;
        let tv = gpu.upload("v", &[kv_len + 3, kv_heads * head_dim], dt, &v_padded)?;
        let shape = HeadShape { heads, kv_heads, head_dim };
        let mut rec = Recorder::new(gpu);
        let mut a = Attention::new(Heads::of(&tq), Heads::of(&tk), Heads::of(&tv), shape, 3..3 + kv_len);
        if let Some(pos0) = causal {
            a = a.causal(pos0);
        }
        let out = rec.attention(&a)?;
        rec.submit()?;
        let reference = cpu::attention(&q, &k, &v, q_rows, kv_len, heads, kv_heads, head_dim, causal);
        assert_close("prefill attention", &gpu.read(&out).await?, &reference, tol(elem, head_dim), &[q_rows, kv_len, heads, kv_heads, head_dim])?;
    }
    Ok(())
});

gpu_test!(async fn attention_reads_heads_from_a_fused_projection(gpu, elem) {
    // q|k|v side by side in one (rows, 3 * width) tensor, as the output projector's in_proj gives.
    let mut rng = Rng::new(32);
    let (rows, heads, head_dim) = (9, 2, 16);
    let width = heads * head_dim;
    let qkv = round_to(elem, &rng.vec(rows * 3 * width, -1.0, 1.0));
    let t = gpu.upload("qkv", &[rows, 3 * width], elem.dtype(), &qkv)?;
    let part = |i: usize| -> Vec<f32> { qkv.chunks(3 * width).flat_map(|r| r[i * width..(i + 1) * width].to_vec()).collect() };
    let shape = HeadShape { heads, kv_heads: heads, head_dim };
    let mut rec = Recorder::new(gpu);
    let out = rec.attention(&Attention::new(Heads { tensor: &t, offset: 0 }, Heads { tensor: &t, offset: width }, Heads { tensor: &t, offset: 2 * width }, shape, 0..rows))?;
    rec.submit()?;
    let reference = cpu::attention(&part(0), &part(1), &part(2), rows, rows, heads, heads, head_dim, None);
    assert_close("fused attention", &gpu.read(&out).await?, &reference, tol(elem, head_dim), &[rows, heads, head_dim])?;
    Ok(())
});

gpu_test!(async fn decode_attention_over_cache_slots_matches_the_cpu(gpu, elem) {
    let mut rng = Rng::new(33);
    let dt = elem.dtype();
    // (lengths per slot, heads, kv heads, head_dim): splits of 256 keys are crossed and some
    // slots stop short of others.
    let cases: [(&[usize], usize, usize, usize); 3] = [(&[1], 1, 1, 64), (&[1, 300, 257, 1000], 4, 2, 64), (&[LONGEST, 5], 2, 2, 128)];
    for &(lens, heads, kv_heads, head_dim) in &cases {
        let slots = lens.len();
        let slot_rows = lens.iter().max().copied().unwrap_or(1) + 7;
        let kw = kv_heads * head_dim;
        let k = round_to(elem, &rng.vec(slots * slot_rows * kw, -1.0, 1.0));
        let v = round_to(elem, &rng.vec(slots * slot_rows * kw, -1.0, 1.0));
        let q = round_to(elem, &rng.vec(slots * heads * head_dim, -1.0, 1.0));
        let tk = gpu.upload("k cache", &[slots * slot_rows, kw], dt, &k)?;
        let tv = gpu.upload("v cache", &[slots * slot_rows, kw], dt, &v)?;
        let tq = gpu.upload("q", &[slots, heads * head_dim], dt, &q)?;
        let lens_u32: Vec<u32> = lens.iter().map(|&l| l as u32).collect();
        let tl = gpu.upload_u32("lens", &[slots], &lens_u32)?;
        let shape = HeadShape { heads, kv_heads, head_dim };
        let mut rec = Recorder::new(gpu);
        let max_len = lens.iter().max().copied().unwrap_or(0);
        let out = rec.attention_decode(&DecodeAttention::new(Heads::of(&tq), &tk, &tv, shape, slot_rows, &tl, max_len))?;
        rec.submit()?;
        let got = gpu.read(&out).await?;
        let qw = heads * head_dim;
        for (s, &len) in lens.iter().enumerate() {
            let base = s * slot_rows * kw;
            let reference = cpu::attention(&q[s * qw..(s + 1) * qw], &k[base..base + len * kw], &v[base..base + len * kw], 1, len, heads, kv_heads, head_dim, None);
            assert_close(&format!("decode attention, slot {s} of length {len}"), &got[s * qw..(s + 1) * qw], &reference, tol(elem, head_dim), &[len, heads, kv_heads, head_dim])?;
        }
    }
    Ok(())
});

gpu_test!(async fn scatter_rows_puts_rows_where_asked_and_leaves_the_rest(gpu, elem) {
    let mut rng = Rng::new(34);
    let (cache_rows, width) = (11, 24);
    let cache = round_to(elem, &rng.vec(cache_rows * width, -1.0, 1.0));
    let new = round_to(elem, &rng.vec(3 * width, -1.0, 1.0));
    let targets = [4u32, 0, 10];
    let tc = gpu.upload("cache", &[cache_rows, width], elem.dtype(), &cache)?;
    let tn = gpu.upload("new", &[3, width], elem.dtype(), &new)?;
    let tt = gpu.upload_u32("rows", &[3], &targets)?;
    let mut rec = Recorder::new(gpu);
    rec.scatter_rows(&tn, &tc, &tt)?;
    rec.submit()?;
    let mut expected = cache.clone();
    for (i, &t) in targets.iter().enumerate() {
        expected[t as usize * width..(t as usize + 1) * width].copy_from_slice(&new[i * width..(i + 1) * width]);
    }
    assert_close("scatter_rows", &gpu.read(&tc).await?, &expected, Tol { atol: 0.0, rtol: 0.0 }, &[cache_rows, width])?;
    Ok(())
});

gpu_test!(async fn rope_at_per_row_positions(gpu, elem) {
    // A batch of three sequences at positions 9, 0 and 4, one row each.
    let mut rng = Rng::new(35);
    let (heads, head_dim) = (2, 8);
    let table = RopeTable::new(gpu, 16, head_dim, 10000.0)?;
    let (cos, sin) = cpu::rope_table(16, head_dim, 10000.0);
    let x = round_to(elem, &rng.vec(3 * heads * head_dim, -1.0, 1.0));
    let positions = [9u32, 0, 4];
    let tx = gpu.upload("x", &[3, heads, head_dim], elem.dtype(), &x)?;
    let tp = gpu.upload_u32("positions", &[3], &positions)?;
    let mut rec = Recorder::new(gpu);
    let y = rec.rope_at(&tx, &table, &tp, 10)?;
    rec.submit()?;
    let w = heads * head_dim;
    let reference: Vec<f32> = positions.iter().enumerate().flat_map(|(i, &p)| cpu::rope(&x[i * w..(i + 1) * w], heads, head_dim, p as usize, &cos, &sin)).collect();
    assert_close("rope_at", &gpu.read(&y).await?, &reference, Tol::of(elem), &[3, heads, head_dim])?;
    Ok(())
});

gpu_test!(async fn prefill_attention_with_bias_batch_scale_and_addend(gpu, elem) {
    // T5's case: several sequences in one launch, a relative-position bias per head, a padding
    // mask, scale 1; plus M2UGen's case: an addend row added to every output row.
    let mut rng = Rng::new(36);
    let dt = elem.dtype();
    let (batch, q_rows, kv_len, heads, head_dim) = (3, 5, 7, 2, 8);
    let w = heads * head_dim;
    let q = round_to(elem, &rng.vec(batch * q_rows * w, -1.0, 1.0));
    // Keys of item b start at row 2 + b * 9 (rows between items: 9).
    let kv_rows = 2 + batch * 9;
    let k = round_to(elem, &rng.vec(kv_rows * w, -1.0, 1.0));
    let v = round_to(elem, &rng.vec(kv_rows * w, -1.0, 1.0));
    let rel = rng.vec(heads * q_rows * kv_len, -2.0, 2.0);
    // Item b masks its last b keys.
    let mask: Vec<f32> = (0..batch).flat_map(|b| (0..kv_len).map(move |j| if j + b >= kv_len { -1e30 } else { 0.0 })).collect();
    let full: Vec<f32> = (0..batch).flat_map(|b| rel.iter().enumerate().map(|(i, &r)| r + mask[b * kv_len + i % kv_len]).collect::<Vec<_>>()).collect();
    let addend = round_to(elem, &rng.vec(2 * w, -1.0, 1.0));
    let (tq, tk, tv) = (gpu.upload("q", &[batch * q_rows, w], dt, &q)?, gpu.upload("k", &[kv_rows, w], dt, &k)?, gpu.upload("v", &[kv_rows, w], dt, &v)?);
    let (tfull, tmask, tadd) = (gpu.upload("bias", &[full.len()], DType::F32, &full)?, gpu.upload("mask", &[mask.len()], DType::F32, &mask)?, gpu.upload("addend", &[2, w], dt, &addend)?);
    let shape = HeadShape { heads, kv_heads: heads, head_dim };
    let base = Attention::new(Heads::of(&tq), Heads::of(&tk), Heads::of(&tv), shape, 2..2 + kv_len).batch(batch, 9).scale(1.0);
    let mut rec = Recorder::new(gpu);
    let biased = rec.attention(&base.clone().bias(Bias { tensor: &tfull, per_item: heads * q_rows * kv_len, per_head: q_rows * kv_len, per_row: kv_len }))?;
    let masked = rec.attention(&base.clone().bias(Bias { tensor: &tmask, per_item: kv_len, per_head: 0, per_row: 0 }).addend(&tadd, 1, 0))?;
    rec.submit()?;
    let (got_b, got_m) = (gpu.read(&biased).await?, gpu.read(&masked).await?);
    for b in 0..batch {
        let qb = &q[b * q_rows * w..(b + 1) * q_rows * w];
        let kb = &k[(2 + b * 9) * w..(2 + b * 9 + kv_len) * w];
        let vb = &v[(2 + b * 9) * w..(2 + b * 9 + kv_len) * w];
        let with_rel = cpu::attention_biased(qb, kb, vb, q_rows, kv_len, heads, heads, head_dim, None, 1.0, &|h, i, j| full[((b * heads + h) * q_rows + i) * kv_len + j]);
        let with_mask = cpu::attention_biased(qb, kb, vb, q_rows, kv_len, heads, heads, head_dim, None, 1.0, &|_, _, j| mask[b * kv_len + j]);
        let with_mask = cpu::add(&with_mask, &addend[w..]);
        let tol = Tol { atol: tol(elem, head_dim).atol * 2.0, rtol: tol(elem, head_dim).rtol };
        assert_close(&format!("relative bias, item {b}"), &got_b[b * q_rows * w..(b + 1) * q_rows * w], &with_rel, tol, &[b, q_rows, kv_len])?;
        assert_close(&format!("mask and addend, item {b}"), &got_m[b * q_rows * w..(b + 1) * q_rows * w], &with_mask, tol, &[b, q_rows, kv_len])?;
    }
    Ok(())
});

gpu_test!(async fn decode_attention_as_cross_attention_with_mask_and_addend(gpu, elem) {
    // Cross-attention in the decode kernel: each query row attends to its own item's memory
    // (keys and values computed once, one slot per item), with a padding mask per row and an
    // addend per row; lengths across the split of 256 keys.
    let mut rng = Rng::new(37);
    let dt = elem.dtype();
    for &mem_len in &[7usize, 300] {
        let (rows, heads, head_dim) = (3, 2, 16);
        let w = heads * head_dim;
        let k = round_to(elem, &rng.vec(rows * mem_len * w, -1.0, 1.0));
        let v = round_to(elem, &rng.vec(rows * mem_len * w, -1.0, 1.0));
        let q = round_to(elem, &rng.vec(rows * w, -1.0, 1.0));
        let mask: Vec<f32> = (0..rows).flat_map(|r| (0..mem_len).map(move |j| if j >= mem_len - r * 2 { -1e30 } else { 0.0 })).collect();
        let addend = round_to(elem, &rng.vec(rows * w, -1.0, 1.0));
        let (tk, tv, tq) = (gpu.upload("k", &[rows * mem_len, w], dt, &k)?, gpu.upload("v", &[rows * mem_len, w], dt, &v)?, gpu.upload("q", &[rows, w], dt, &q)?);
        let lens = gpu.upload_u32("lens", &[rows], &vec![mem_len as u32; rows])?;
        let (tmask, tadd) = (gpu.upload("mask", &[mask.len()], DType::F32, &mask)?, gpu.upload("addend", &[rows, w], dt, &addend)?);
        let shape = HeadShape { heads, kv_heads: heads, head_dim };
        let a = DecodeAttention::new(Heads::of(&tq), &tk, &tv, shape, mem_len, &lens, mem_len).bias(Bias { tensor: &tmask, per_item: mem_len, per_head: 0, per_row: 0 }).addend(&tadd, 0, 1);
        let mut rec = Recorder::new(gpu);
        let out = rec.attention_decode(&a)?;
        rec.submit()?;
        let got = gpu.read(&out).await?;
        let scale = 1.0 / (head_dim as f32).sqrt();
        for r in 0..rows {
            let kr = &k[r * mem_len * w..(r + 1) * mem_len * w];
            let vr = &v[r * mem_len * w..(r + 1) * mem_len * w];
            let want = cpu::attention_biased(&q[r * w..(r + 1) * w], kr, vr, 1, mem_len, heads, heads, head_dim, None, scale, &|_, _, j| mask[r * mem_len + j]);
            let want = cpu::add(&want, &addend[r * w..(r + 1) * w]);
            assert_close(&format!("cross-attention row {r} over {mem_len}"), &got[r * w..(r + 1) * w], &want, Tol { atol: tol(elem, head_dim).atol * 2.0, rtol: tol(elem, head_dim).rtol }, &[mem_len, heads, head_dim])?;
        }
    }
    Ok(())
});

gpu_test!(async fn rope_kv_rotates_and_fills_the_cache_in_one_launch(gpu, elem) {
    let mut rng = Rng::new(38);
    let dt = elem.dtype();
    let (tokens, heads, kv_heads, head_dim) = (3, 4, 2, 8);
    let (qw, kw) = (heads * head_dim, kv_heads * head_dim);
    let qkv = round_to(elem, &rng.vec(tokens * (qw + 2 * kw), -1.0, 1.0));
    let positions = [5u32, 0, 9];
    let cache_rows = [7u32, 1, 4];
    let table = RopeTable::new(gpu, 12, head_dim, 10000.0)?;
    let (cos, sin) = cpu::rope_table(12, head_dim, 10000.0);
    let t = gpu.upload("qkv", &[tokens, qw + 2 * kw], dt, &qkv)?;
    let kc = gpu.upload("k cache", &[8, kw], dt, &vec![0.25; 8 * kw])?;
    let vc = gpu.upload("v cache", &[8, kw], dt, &vec![0.25; 8 * kw])?;
    let (tp, tr) = (gpu.upload_u32("positions", &[tokens], &positions)?, gpu.upload_u32("rows", &[tokens], &cache_rows)?);
    let mut rec = Recorder::new(gpu);
    let q = rec.rope_kv(&t, HeadShape { heads, kv_heads, head_dim }, &table, &tp, 10, &kc, &vc, &tr)?;
    rec.submit()?;
    let row = |i: usize| &qkv[i * (qw + 2 * kw)..(i + 1) * (qw + 2 * kw)];
    let want_q: Vec<f32> = (0..tokens).flat_map(|i| cpu::rope(&row(i)[..qw], heads, head_dim, positions[i] as usize, &cos, &sin)).collect();
    let mut want_k = vec![0.25; 8 * kw];
    let mut want_v = vec![0.25; 8 * kw];
    for i in 0..tokens {
        let r = cache_rows[i] as usize;
        want_k[r * kw..(r + 1) * kw].copy_from_slice(&cpu::rope(&row(i)[qw..qw + kw], kv_heads, head_dim, positions[i] as usize, &cos, &sin));
        want_v[r * kw..(r + 1) * kw].copy_from_slice(&row(i)[qw + kw..]);
    }
    assert_close("rotated q", &gpu.read(&q).await?, &want_q, Tol::of(elem), &[tokens, heads, head_dim])?;
    assert_close("k cache", &gpu.read(&kc).await?, &want_k, Tol::of(elem), &[8, kw])?;
    assert_close("v cache", &gpu.read(&vc).await?, &want_v, Tol { atol: 0.0, rtol: 0.0 }, &[8, kw])?;
    Ok(())
});
