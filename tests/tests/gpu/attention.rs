//! The attention kernels against `cpu::attention`: the tiled prefill (causal, with and without a
//! cached prefix, and plain), the split decode over a batch of cache slots, the cache write, and
//! RoPE at per-row positions. Lengths from 1 to 2048, heads of 64 and 128.

use m2ugen_core::cpu;
use m2ugen_core::rng::Rng;
use m2ugen_gpu::registry::Elem;
use m2ugen_gpu::{HeadShape, Heads, Recorder, RopeTable};
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
        let out = rec.attention(Heads::of(&tq), Heads::of(&tk), Heads::of(&tv), shape, 3..3 + kv_len, causal)?;
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
    let out = rec.attention(Heads { tensor: &t, offset: 0 }, Heads { tensor: &t, offset: width }, Heads { tensor: &t, offset: 2 * width }, shape, 0..rows, None)?;
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
        let out = rec.attention_decode(Heads::of(&tq), &tk, &tv, shape, slot_rows, &tl, max_len)?;
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

gpu_test!(async fn kv_write_puts_rows_where_asked_and_leaves_the_rest(gpu, elem) {
    let mut rng = Rng::new(34);
    let (cache_rows, width) = (11, 24);
    let cache = round_to(elem, &rng.vec(cache_rows * width, -1.0, 1.0));
    let new = round_to(elem, &rng.vec(3 * width, -1.0, 1.0));
    let targets = [4u32, 0, 10];
    let tc = gpu.upload("cache", &[cache_rows, width], elem.dtype(), &cache)?;
    let tn = gpu.upload("new", &[3, width], elem.dtype(), &new)?;
    let tt = gpu.upload_u32("rows", &[3], &targets)?;
    let mut rec = Recorder::new(gpu);
    rec.kv_write(&tn, &tc, &tt)?;
    rec.submit()?;
    let mut expected = cache.clone();
    for (i, &t) in targets.iter().enumerate() {
        expected[t as usize * width..(t as usize + 1) * width].copy_from_slice(&new[i * width..(i + 1) * width]);
    }
    assert_close("kv_write", &gpu.read(&tc).await?, &expected, Tol { atol: 0.0, rtol: 0.0 }, &[cache_rows, width])?;
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
