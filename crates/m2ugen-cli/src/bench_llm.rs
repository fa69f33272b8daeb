//! `m2ugen bench-llm`: prefill and decode tokens/s of the LLM, KV-cached against the reference's
//! method (the whole sequence recomputed for every new token) in the same process, decode as a
//! fraction of the memory-bandwidth bound (the bandwidth of a buffer copy measured in the same
//! run, and the published peak on known devices), and what a decoding step asks of the runtime:
//! dispatches, buffers and bind groups created, bytes read back, CPU time recording it, and the
//! peak activation memory of a prefill.
//!
//! Weights are random (the 7B geometry with 4-bit weights by default, at a depth the machine
//! can hold) or a converted model directory. Several batch sizes are measured in one run, so
//! their step times compare directly.

use anyhow::{Context, Result};
use m2ugen_core::config::LlamaConfig;
use m2ugen_core::quant::{quantize, QuantFormat};
use m2ugen_core::rng::Rng;
use m2ugen_core::{DType, StoredType};
use m2ugen_gpu::{bench::{copy_gbps, peak_of}, now_ms, Choose, Gpu, GpuStats, Recorder};
use m2ugen_models::{Llama, Store};

/// Random weights for `config` (LLM only), linear layers quantized as asked.
pub fn random_store(gpu: &Gpu, dtype: DType, config: &LlamaConfig, quant: Option<QuantFormat>) -> Result<Store> {
    let mut store = Store::new(dtype);
    let mut rng = Rng::new(1);
    let (dim, kv) = (config.dim, config.n_kv_heads * config.head_dim());
    let mut add = |name: String, shape: Vec<usize>, linear: bool, rng: &mut Rng| -> Result<()> {
        let n: usize = shape.iter().product();
        let spread = 1.0 / (*shape.last().unwrap_or(&1) as f32).sqrt();
        let values: Vec<f32> = if name.ends_with("norm.weight") { vec![1.0; n] } else { rng.vec(n, -spread, spread) };
        match quant {
            Some(f) if linear => {
                let q = quantize(f, shape[0], shape[1], &values)?;
                let bytes: Vec<u8> = q.q.iter().chain(&q.scales).flat_map(|w| w.to_le_bytes()).collect();
                let stored = if f == QuantFormat::Q8 { StoredType::Q8 } else { StoredType::Q4 };
                store.insert(gpu, &name, &shape, stored, &bytes)
            }
            _ => store.insert_f32(gpu, &name, &shape, &values),
        }
        .map_err(|e| anyhow::anyhow!("{e}"))
    };
    add("llm.tok_embeddings.weight".into(), vec![config.vocab, dim], false, &mut rng)?;
    add("llm.norm.weight".into(), vec![dim], false, &mut rng)?;
    add("llm.output.weight".into(), vec![config.vocab, dim], true, &mut rng)?;
    if !config.prefix.is_empty() {
        add("llm.prefix_query".into(), vec![config.prefix.len(), dim], false, &mut rng)?;
    }
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

/// Decoding steps run before the measured ones.
pub const WARM_STEPS: usize = 2;

/// Seconds of `f`, which must finish with a read-back (so the queue has drained).
async fn timed<F: std::future::Future<Output = Result<()>>>(f: F) -> Result<f64> {
    let t0 = now_ms();
    f.await?;
    Ok((now_ms() - t0) / 1e3)
}

/// The sum of two counter snapshots' differences.
fn plus(a: GpuStats, d: GpuStats) -> GpuStats {
    GpuStats {
        buffers_created: a.buffers_created + d.buffers_created,
        bytes_created: a.bytes_created + d.bytes_created,
        bind_groups_created: a.bind_groups_created + d.bind_groups_created,
        dispatches: a.dispatches + d.dispatches,
        submits: a.submits + d.submits,
        bytes_read_back: a.bytes_read_back + d.bytes_read_back,
    }
}

/// Decodes `tokens` steps of `batch` sequences after a `prompt`-token prefill of each, the way
/// generation does (greedy choice on the GPU, ids read back, fed to the next step). Returns the
/// seconds of the decoding, the counters and CPU milliseconds of its steps, and what the first
/// prefill made.
async fn decode_run(gpu: &Gpu, llama: &Llama, ids: &[u32], prompt: usize, tokens: usize, batch: usize) -> Result<(f64, f64, GpuStats, f64, GpuStats, u64)> {
    let max_seq = prompt + tokens + WARM_STEPS + 1;
    let mut cache = llama.new_cache(gpu, batch, max_seq)?;
    let mut prefill = None;
    let mut peak = 0;
    let mut first = Vec::new();
    let prefill_s = timed(async {
        for slot in 0..batch {
            let before = gpu.stats();
            gpu.reset_peak();
            let mut rec = Recorder::new(gpu);
            let h = llama.prefill(&mut rec, &mut cache, slot, &ids[..prompt])?;
            let row = llama.rows(&mut rec, &h, &[prompt as u32 - 1])?;
            drop(h);
            let l = llama.logits(&mut rec, &row)?;
            let t = rec.choose_tokens(&l, &Choose::Greedy, &[])?;
            rec.submit()?;
            if prefill.is_none() {
                prefill = Some(gpu.stats() - before);
                peak = gpu.pool_memory().peak;
            }
            first.extend(gpu.read_u32(&t).await.context("reading the first tokens")?);
        }
        Ok(())
    })
    .await?;
    let mut steps = GpuStats::default();
    let mut record_ms = 0.0;
    let mut next = first;
    // Two steps first, not measured: they make the bind groups over this run's new KV cache
    // (the first after the prefill starts from another set of free buffers).
    for _ in 0..WARM_STEPS {
        let mut rec = Recorder::new(gpu);
        let h = llama.decode(&mut rec, &mut cache, &next)?;
        let l = llama.logits(&mut rec, &h)?;
        let t = rec.choose_tokens(&l, &Choose::Greedy, &[])?;
        rec.submit()?;
        next = gpu.read_u32(&t).await.context("reading the chosen tokens")?;
    }
    let decode_s = timed(async {
        for _ in 0..tokens {
            let before = gpu.stats();
            let t0 = now_ms();
            let mut rec = Recorder::new(gpu);
            let h = llama.decode(&mut rec, &mut cache, &next)?;
            let l = llama.logits(&mut rec, &h)?;
            let t = rec.choose_tokens(&l, &Choose::Greedy, &[])?;
            rec.submit()?;
            record_ms += now_ms() - t0;
            next = gpu.read_u32(&t).await.context("reading the chosen tokens")?;
            steps = plus(steps, gpu.stats() - before);
        }
        Ok(())
    })
    .await?;
    Ok((prefill_s, decode_s, steps, record_ms, prefill.unwrap_or_default(), peak))
}

/// Measures `llama`: for each batch size, prefill of `prompt` tokens and `tokens` decode steps;
/// then the same steps by full recomputation (batch 1).
pub async fn run(gpu: &Gpu, llama: &Llama, prompt: usize, tokens: usize, batches: &[usize]) -> Result<()> {
    let c = &llama.config;
    let mut rng = Rng::new(2);
    let ids: Vec<u32> = (0..prompt + tokens).map(|_| (rng.next_u64() % c.vocab as u64) as u32).collect();
    let weight_bytes = llama.weight_bytes_per_step();
    println!("geometry: dim {}, {} layers, {} heads, ffn {}, vocab {}; weights read per step {:.1} MiB", c.dim, c.n_layers, c.n_heads, c.ffn_hidden, c.vocab, weight_bytes as f64 / (1 << 20) as f64);

    // Warm-up: compile every pipeline and fill the buffer pool once, for every batch size.
    for &batch in batches {
        decode_run(gpu, llama, &ids, prompt.min(2), 1, batch).await?;
    }
    let mut step_ms = Vec::new();
    let mut decode_tps_1 = None;
    for &batch in batches {
        let (prefill_s, decode_s, steps, record_ms, prefill, peak) = decode_run(gpu, llama, &ids, prompt, tokens, batch).await?;
        let n = tokens as f64;
        let per = |v: u64| v as f64 / n;
        let decode_tps = (tokens * batch) as f64 / decode_s;
        if batch == 1 {
            decode_tps_1 = Some(decode_tps);
        }
        step_ms.push((batch, decode_s * 1e3 / n));
        println!("-- batch {batch}");
        println!("prefill: {prompt} tokens x {batch} sequences in {prefill_s:.3} s = {:.1} tokens/s", (prompt * batch) as f64 / prefill_s);
        println!("decode (KV cache): {tokens} steps in {decode_s:.3} s = {decode_tps:.2} tokens/s ({:.1} ms per step)", decode_s * 1e3 / n);
        println!(
            "per decode step ({} layers, after two): {:.0} dispatches, {:.1} buffers created ({:.2} MiB), {:.1} bind groups created, {:.0} bytes read back, {:.2} ms of CPU recording and submitting",
            c.n_layers,
            per(steps.dispatches),
            per(steps.buffers_created),
            per(steps.bytes_created) / (1 << 20) as f64,
            per(steps.bind_groups_created),
            per(steps.bytes_read_back),
            record_ms / n
        );
        println!(
            "prefill of {prompt} tokens (one sequence): {} dispatches, {} buffers created ({:.1} MiB), peak activation memory in use {:.1} MiB",
            prefill.dispatches,
            prefill.buffers_created,
            prefill.bytes_created as f64 / (1 << 20) as f64,
            peak as f64 / (1 << 20) as f64
        );
        // A decode step reads every weight once and the cached keys and values of each sequence.
        let kv_bytes = (2 * c.n_layers * (prompt + tokens / 2) * c.n_kv_heads * c.head_dim() * llama.dtype().size() * batch) as u64;
        let step_bytes = weight_bytes + kv_bytes;
        let steps_per_s = n / decode_s;
        let achieved = step_bytes as f64 * steps_per_s / 1e9;
        // The bound: the bandwidth a buffer copy reaches in this process (64 MiB, within every
        // device's binding limit), and the device's published peak when known.
        let copy = copy_gbps(gpu, 64 << 20, 5).await?;
        let mb = step_bytes as f64 / 1e6;
        println!("decode bandwidth: {mb:.1} MB per step, {achieved:.2} GB/s = {:.1}% of the {copy:.1} GB/s a buffer copy reaches here (bound: {:.2} steps/s)", 100.0 * achieved / copy, copy * 1e9 / step_bytes as f64);
        match peak_of(&gpu.info.name) {
            Some((bw, _)) => println!("decode bandwidth: {:.1}% of the device's {bw:.0} GB/s peak (bound: {:.1} steps/s)", 100.0 * achieved / bw, bw * 1e9 / step_bytes as f64),
            None => println!("(published peak bandwidth of '{}' unknown)", gpu.info.name),
        }
    }
    if let Some(&(_, base)) = step_ms.iter().find(|(b, _)| *b == 1) {
        for &(batch, ms) in step_ms.iter().filter(|(b, _)| *b != 1) {
            println!("batch {batch} step / batch 1 step: {:.2}x the time for {batch}x the tokens ({:.2}x the tokens/s)", ms / base, batch as f64 * base / ms);
        }
    }

    // The reference's way, batch 1: the whole sequence again for every token.
    let recompute_s = timed(async {
        for step in 0..tokens {
            let mut cache = llama.new_cache(gpu, 1, prompt + tokens + 1)?;
            let mut rec = Recorder::new(gpu);
            let h = llama.prefill(&mut rec, &mut cache, 0, &ids[..prompt + step + 1])?;
            let row = llama.rows(&mut rec, &h, &[(prompt + step) as u32])?;
            let l = llama.logits(&mut rec, &row)?;
            let t = rec.choose_tokens(&l, &Choose::Greedy, &[])?;
            rec.submit()?;
            gpu.read_u32(&t).await.context("reading the chosen token")?;
        }
        Ok(())
    })
    .await?;
    let recompute_tps = tokens as f64 / recompute_s;
    println!("decode by full recompute (the reference's method, batch 1): {tokens} tokens in {recompute_s:.3} s = {recompute_tps:.2} tokens/s");
    if let Some(tps) = decode_tps_1 {
        println!("KV cache vs recompute (batch 1): {:.2}x tokens/s", tps / recompute_tps);
    }
    Ok(())
}
