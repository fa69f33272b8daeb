//! `m2ugen bench-llm`: prefill and decode tokens/s of the LLM, KV-cached against the reference's
//! method (the whole sequence recomputed for every new token) in the same process, and decode as
//! a fraction of the memory-bandwidth bound: the bandwidth of a buffer copy measured in the same
//! run, and the published peak on known devices.
//!
//! Weights are random (the 7B geometry with 4-bit weights by default, at a depth the machine
//! can hold) or a converted model directory.

use anyhow::{Context, Result};
use m2ugen_core::config::LlamaConfig;
use m2ugen_core::quant::{quantize, QuantFormat};
use m2ugen_core::rng::Rng;
use m2ugen_core::DType;
use m2ugen_gpu::{bench::{copy_gbps, peak_of}, now_ms, Gpu, GpuStats, Recorder};
use m2ugen_models::{Llama, Store};
use m2ugen_weights::{StoredType, TensorEntry};

/// Random weights for `config` (LLM only), linear layers quantized as asked.
pub fn random_store(gpu: &Gpu, dtype: DType, config: &LlamaConfig, quant: Option<QuantFormat>) -> Result<Store> {
    let mut store = Store::new(dtype);
    let mut rng = Rng::new(1);
    let (dim, kv) = (config.dim, config.n_kv_heads * config.head_dim());
    let mut add = |name: String, shape: Vec<usize>, linear: bool, rng: &mut Rng| -> Result<()> {
        let n: usize = shape.iter().product();
        let spread = 1.0 / (*shape.last().unwrap_or(&1) as f32).sqrt();
        let values: Vec<f32> = if name.ends_with("norm.weight") { vec![1.0; n] } else { rng.vec(n, -spread, spread) };
        let (dtype, bytes) = match quant {
            Some(f) if linear => {
                let q = quantize(f, shape[0], shape[1], &values)?;
                (if f == QuantFormat::Q8 { StoredType::Q8 } else { StoredType::Q4 }, q.q.iter().chain(&q.scales).flat_map(|w| w.to_le_bytes()).collect::<Vec<u8>>())
            }
            _ => (StoredType::F32, values.iter().flat_map(|v| v.to_le_bytes()).collect()),
        };
        let entry = TensorEntry { name, shape, dtype, shard: 0, offset: 0, bytes: bytes.len() as u64, sha256: String::new(), continued: vec![] };
        store.insert(gpu, &entry, &bytes).map_err(|e| anyhow::anyhow!("{e}"))
    };
    add("llm.tok_embeddings.weight".into(), vec![config.vocab, dim], false, &mut rng)?;
    add("llm.norm.weight".into(), vec![dim], false, &mut rng)?;
    add("llm.output.weight".into(), vec![config.vocab, dim], true, &mut rng)?;
    add("llm.prefix_query".into(), vec![config.prefix.len(), dim], false, &mut rng)?;
    for i in 0..config.n_layers {
        let at = |s: &str| format!("llm.layers.{i}.{s}");
        for (name, shape) in [
            ("attention.wq", vec![dim, dim]),
            ("attention.wk", vec![kv, dim]),
            ("attention.wv", vec![kv, dim]),
            ("attention.wo", vec![dim, dim]),
            ("feed_forward.w1", vec![config.ffn_hidden, dim]),
            ("feed_forward.w2", vec![dim, config.ffn_hidden]),
            ("feed_forward.w3", vec![config.ffn_hidden, dim]),
        ] {
            add(at(&format!("{name}.weight")), shape.clone(), true, &mut rng)?;
            if !name.ends_with("wk") && !name.ends_with("wv") {
                add(at(&format!("{name}.bias")), vec![shape[0]], false, &mut rng)?;
            }
        }
        add(at("attention.gate"), vec![1, config.n_heads, 1, 1], false, &mut rng)?;
        add(at("attention_norm.weight"), vec![dim], false, &mut rng)?;
        add(at("ffn_norm.weight"), vec![dim], false, &mut rng)?;
    }
    Ok(store)
}

/// Seconds of `f`, which must finish with a read-back (so the queue has drained).
async fn timed<F: std::future::Future<Output = Result<()>>>(f: F) -> Result<f64> {
    let t0 = now_ms();
    f.await?;
    Ok((now_ms() - t0) / 1e3)
}

/// Measures `llama`: prefill of `prompt` tokens, `tokens` decode steps for `batch` sequences,
/// and the same steps by full recomputation (batch 1).
pub async fn run(gpu: &Gpu, llama: &Llama, weight_bytes: u64, prompt: usize, tokens: usize, batch: usize) -> Result<()> {
    let c = &llama.config;
    let mut rng = Rng::new(2);
    let ids: Vec<u32> = (0..prompt + tokens).map(|_| (rng.next_u64() % c.vocab as u64) as u32).collect();
    let max_seq = prompt + tokens + 1;
    let sync = |t: m2ugen_gpu::GpuTensor| async move { gpu.read(&t).await.map(|_| ()).context("reading logits") };

    // Warm-up: compile every pipeline once.
    let mut cache = llama.new_cache(gpu, batch, max_seq)?;
    let mut rec = Recorder::new(gpu);
    let h = llama.prefill(&mut rec, &mut cache, 0, &ids[..2])?;
    let l = llama.logits(&mut rec, &h)?;
    rec.submit()?;
    sync(l).await?;
    cache.clear();
    let mut rec = Recorder::new(gpu);
    let h = llama.decode(&mut rec, &mut cache, &vec![1; batch])?;
    let l = llama.logits(&mut rec, &h)?;
    rec.submit()?;
    sync(l).await?;

    let mut cache = llama.new_cache(gpu, batch, max_seq)?;
    let mut prefill_stats = None;
    let prefill_s = timed(async {
        let mut last = None;
        for slot in 0..batch {
            let before = gpu.stats();
            let mut rec = Recorder::new(gpu);
            let h = llama.prefill(&mut rec, &mut cache, slot, &ids[..prompt])?;
            let row = llama.rows(&mut rec, &h, &[prompt as u32 - 1])?;
            last = Some(llama.logits(&mut rec, &row)?);
            rec.submit()?;
            prefill_stats.get_or_insert(gpu.stats() - before);
        }
        if let Some(l) = last {
            sync(l).await?;
        }
        Ok(())
    })
    .await?;
    let mut step_stats = GpuStats::default();
    let mut record_ms = 0.0;
    let decode_s = timed(async {
        for step in 0..tokens {
            let before = gpu.stats();
            let t0 = now_ms();
            let mut rec = Recorder::new(gpu);
            let h = llama.decode(&mut rec, &mut cache, &vec![ids[prompt + step]; batch])?;
            let l = llama.logits(&mut rec, &h)?;
            rec.submit()?;
            record_ms += now_ms() - t0;
            sync(l).await?;
            let d = gpu.stats() - before;
            step_stats = GpuStats {
                buffers_created: step_stats.buffers_created + d.buffers_created,
                bytes_created: step_stats.bytes_created + d.bytes_created,
                bind_groups_created: step_stats.bind_groups_created + d.bind_groups_created,
                dispatches: step_stats.dispatches + d.dispatches,
                submits: step_stats.submits + d.submits,
                bytes_read_back: step_stats.bytes_read_back + d.bytes_read_back,
            };
        }
        Ok(())
    })
    .await?;
    let recompute_s = timed(async {
        for step in 0..tokens {
            let mut cache = llama.new_cache(gpu, 1, max_seq)?;
            let mut rec = Recorder::new(gpu);
            let h = llama.prefill(&mut rec, &mut cache, 0, &ids[..prompt + step + 1])?;
            let row = llama.rows(&mut rec, &h, &[(prompt + step) as u32])?;
            let l = llama.logits(&mut rec, &row)?;
            rec.submit()?;
            sync(l).await?;
        }
        Ok(())
    })
    .await?;

    let n = tokens as f64;
    let per = |v: u64| v as f64 / n;
    println!(
        "per decode step (batch {batch}, {} layers): {:.0} dispatches, {:.1} buffers created ({:.2} MiB), {:.1} bind groups created, {:.0} bytes read back, {:.2} ms of CPU recording and submitting",
        c.n_layers,
        per(step_stats.dispatches),
        per(step_stats.buffers_created),
        per(step_stats.bytes_created) / (1 << 20) as f64,
        per(step_stats.bind_groups_created),
        per(step_stats.bytes_read_back),
        record_ms / n
    );
    if let Some(p) = prefill_stats {
        println!(
            "prefill of {prompt} tokens (one sequence): {} dispatches, {} buffers created ({:.1} MiB)",
            p.dispatches,
            p.buffers_created,
            p.bytes_created as f64 / (1 << 20) as f64
        );
    }
    let prefill_tps = (prompt * batch) as f64 / prefill_s;
    let decode_tps = (tokens * batch) as f64 / decode_s;
    let recompute_tps = tokens as f64 / recompute_s;
    println!("geometry: dim {}, {} layers, {} heads, ffn {}, vocab {}; weights read per step {:.1} MiB", c.dim, c.n_layers, c.n_heads, c.ffn_hidden, c.vocab, weight_bytes as f64 / (1 << 20) as f64);
    println!("prefill: {prompt} tokens x {batch} sequences in {:.3} s = {prefill_tps:.1} tokens/s", prefill_s);
    println!("decode (KV cache, batch {batch}): {tokens} steps in {:.3} s = {decode_tps:.2} tokens/s ({:.1} ms per step)", decode_s, decode_s * 1e3 / tokens as f64);
    println!("decode by full recompute (the reference's method, batch 1): {tokens} tokens in {:.3} s = {recompute_tps:.2} tokens/s", recompute_s);
    println!("KV cache vs recompute: {:.2}x tokens/s (batch 1 equivalent: {:.2}x)", decode_tps / recompute_tps, (tokens as f64 / decode_s) / recompute_tps);
    // A decode step reads every weight once and the cached keys and values of each sequence.
    let kv_bytes = (2 * c.n_layers * (prompt + tokens / 2) * c.n_kv_heads * c.head_dim() * llama.dtype().size() * batch) as u64;
    let step_bytes = weight_bytes + kv_bytes;
    let steps_per_s = tokens as f64 / decode_s;
    let achieved = step_bytes as f64 * steps_per_s / 1e9;
    // The bound: the device's published peak when known, and always the bandwidth a buffer copy
    // reaches in this process (64 MiB, within every device's binding limit).
    let copy = copy_gbps(gpu, 64 << 20, 5).await?;
    let mb = step_bytes as f64 / 1e6;
    println!("decode bandwidth: {mb:.1} MB per step, {achieved:.2} GB/s = {:.1}% of the {copy:.1} GB/s a buffer copy reaches here (bound: {:.2} steps/s)", 100.0 * achieved / copy, copy * 1e9 / step_bytes as f64);
    match peak_of(&gpu.info.name) {
        Some((bw, _)) => println!("decode bandwidth: {:.1}% of the device's {bw:.0} GB/s peak (bound: {:.1} steps/s)", 100.0 * achieved / bw, bw * 1e9 / step_bytes as f64),
        None => println!("(published peak bandwidth of '{}' unknown)", gpu.info.name),
    }
    Ok(())
}
