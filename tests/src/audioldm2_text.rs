//! AudioLDM 2's text side (CLAP's text branch, T5, the projection, GPT-2's generated states)
//! against `transformers` / `diffusers` on the AudioLDM 2 fixture, and against a plain reference
//! ([`reference`]) on random weights: GPT-2's KV cache (prefill, then one step at a time, past
//! the decode kernel's split of 256 keys) against recomputing the whole sequence each step, as
//! the reference does without a cache.

use crate::parity::close;
use crate::{round_to, Result, Tol};
use anyhow::{ensure, Context};
use m2ugen_core::config::audioldm2::{Audioldm2Config, ClapConfig, Gpt2Config, ProjectionConfig};
use m2ugen_core::config::Activation;
use m2ugen_core::rng::Rng;
use m2ugen_gpu::registry::Elem;
use m2ugen_gpu::{Gpu, Recorder};
use m2ugen_models::audioldm2_text::{Prompts, TextEncoders};
use m2ugen_models::clap::ClapText;
use m2ugen_models::gpt2::Gpt2;
use m2ugen_models::Store;
use m2ugen_weights::safetensors::InMemory;
use std::collections::HashMap;

/// Tolerance of the text side's outputs: the fixture's `atol 1e-4, rtol 1e-3` in f32. In f16
/// MusicGen's table ([`crate::music::music_tol`]): every activation is rounded to 11 bits
/// (relative step 2^-11 ≈ 5e-4) through 2-layer encoders, LayerNorms with eps 1e-12 and a
/// GPT-2 whose outputs are fed back 8 times; the largest differences seen are reported by the
/// native suite (`M2UGEN_PARITY_REPORT=1`).
pub fn text_tol(elem: Elem) -> Tol {
    crate::music::music_tol(elem)
}

fn ids(io: &InMemory, name: &str) -> Result<(Vec<u32>, Vec<usize>)> {
    let (v, shape) = io.i64(name)?;
    Ok((v.into_iter().map(|x| x as u32).collect(), shape))
}

fn mask(io: &InMemory, name: &str) -> Result<Vec<bool>> {
    Ok(io.i64(name)?.0.into_iter().map(|m| m != 0).collect())
}

/// Every tensor the text side lists is in the store with its shape.
fn check_tensor_list(store: &Store, config: &Audioldm2Config) -> Result<()> {
    for (name, shape) in TextEncoders::tensors("audioldm2", config) {
        let got = store.shape(&name).with_context(|| format!("the converted model lacks {name}"))?;
        ensure!(got == shape.as_slice(), "{name}: shape {got:?}, the model lists {shape:?}");
    }
    Ok(())
}

/// Every stage of the text side on the fixture's two prompts (the second shorter, padded) and
/// its negative prompts, against the fixture: CLAP's normalised embeddings, T5's states, the
/// projection and its mask (from the reference's CLAP and T5 outputs), GPT-2's 8 states (from
/// the reference's projection), and the whole chain from token ids to GPT-2's states.
/// `store` holds the converted `audioldm2.*` tensors (the text models take theirs out).
pub async fn check_text_side(gpu: &Gpu, elem: Elem, store: &mut Store, config: &Audioldm2Config, io: &InMemory) -> Result<()> {
    check_tensor_list(store, config)?;
    let text = TextEncoders::load(gpu, store, "audioldm2", config)?;
    let tol = text_tol(elem);
    let dtype = elem.dtype();
    for (neg, tag) in [("", "prompt"), ("neg_", "negative prompt")] {
        let (clap_ids, clap_shape) = ids(io, &format!("in.{neg}clap_ids"))?;
        let clap_mask = mask(io, &format!("in.{neg}clap_mask"))?;
        let (t5_ids, t5_shape) = ids(io, &format!("in.{neg}t5_ids"))?;
        let t5_mask = mask(io, &format!("in.{neg}t5_mask"))?;
        let p = Prompts { batch: clap_shape[0], clap_ids: &clap_ids, clap_mask: &clap_mask, clap_len: clap_shape[1], t5_ids: &t5_ids, t5_mask: &t5_mask, t5_len: t5_shape[1] };
        let (batch, len) = (p.batch, p.t5_len);

        if neg.is_empty() {
            // CLAP alone.
            let mut rec = Recorder::new(gpu);
            let clap = text.clap.forward(&mut rec, p.clap_ids, p.clap_mask, batch, p.clap_len)?;
            rec.submit()?;
            close(&format!("{elem:?} out.clap_text_embeds"), &gpu.read(&clap).await?, &io.f32("out.clap_text_embeds")?.0, tol)?;

            // The projection alone, from the reference's CLAP and T5 outputs.
            let (clap_ref, _) = io.f32("out.clap_text_embeds")?;
            let (t5_ref, t5_ref_shape) = io.f32("out.t5_hidden")?;
            let mut rec = Recorder::new(gpu);
            let clap_in = rec.upload("reference clap", &[batch, clap_ref.len() / batch], dtype, &clap_ref)?;
            let t5_in = rec.upload("reference t5", &[batch * len, t5_ref_shape[2]], dtype, &t5_ref)?;
            let (projected, projected_mask) = text.projection.forward(&mut rec, &clap_in, &t5_in, &t5_mask, batch, len)?;
            rec.submit()?;
            close(&format!("{elem:?} out.projected"), &gpu.read(&projected).await?, &io.f32("out.projected")?.0, tol)?;
            let expected_mask = mask(io, "out.projected_mask")?;
            ensure!(projected_mask == expected_mask, "out.projected_mask: ours {projected_mask:?}, reference {expected_mask:?}");

            // GPT-2 alone, from the reference's projection.
            let (proj_ref, proj_shape) = io.f32("out.projected")?;
            let mut rec = Recorder::new(gpu);
            let embeds = rec.upload("reference projection", &[proj_shape[0] * proj_shape[1], proj_shape[2]], dtype, &proj_ref)?;
            let generated = text.gpt2.generate_from_embeddings(&mut rec, &embeds, &expected_mask, batch, config.gpt2.new_tokens())?;
            rec.submit()?;
            ensure!(generated.shape() == [batch, config.gpt2.new_tokens(), config.gpt2.n_embd], "GPT-2's states have shape {:?}", generated.shape());
            close(&format!("{elem:?} out.generated_prompt_embeds (from the reference's projection)"), &gpu.read(&generated).await?, &io.f32("out.generated_prompt_embeds")?.0, tol)?;
        }

        // The whole chain from token ids.
        let mut rec = Recorder::new(gpu);
        let c = text.encode(&mut rec, &p)?;
        rec.submit()?;
        ensure!(c.t5.shape() == [batch, len, config.t5.d_model] && c.t5_mask == t5_mask && c.batch == batch && c.t5_len == len, "{tag}: T5 conditioning {:?}", c.t5.shape());
        close(&format!("{elem:?} out.{neg}t5_hidden"), &gpu.read(&c.t5).await?, &io.f32(&format!("out.{neg}t5_hidden"))?.0, tol)?;
        close(&format!("{elem:?} out.{neg}generated_prompt_embeds"), &gpu.read(&c.generated).await?, &io.f32(&format!("out.{neg}generated_prompt_embeds"))?.0, tol)?;
    }
    Ok(())
}

/// Plain-Rust twins of the text models (f64 sums, no cache), reading weights by their Hugging
/// Face names through `get`.
pub mod reference {
    use super::*;
    use m2ugen_core::cpu;

    /// Weights by name.
    pub type Get<'a> = &'a dyn Fn(&str) -> Result<Vec<f32>>;

    fn act(a: Activation, x: &[f32]) -> Vec<f32> {
        match a {
            Activation::Gelu => cpu::gelu(x),
            Activation::GeluTanh => cpu::gelu_tanh(x),
            Activation::Relu => cpu::relu(x),
            Activation::Silu => cpu::silu(x),
        }
    }

    /// `nn.Linear` `{name}` (weight `(out, in)`) on `rows` rows.
    fn linear(get: Get, name: &str, x: &[f32], rows: usize, inp: usize, out: usize) -> Result<Vec<f32>> {
        Ok(cpu::matmul(x, &get(&format!("{name}.weight"))?, Some(&get(&format!("{name}.bias"))?), rows, inp, out))
    }

    /// GPT-2's `Conv1D` `{name}` (weight `(in, out)`) on `rows` rows.
    fn conv1d(get: Get, name: &str, x: &[f32], rows: usize, inp: usize, out: usize) -> Result<Vec<f32>> {
        let w = get(&format!("{name}.weight"))?;
        let mut t = vec![0f32; w.len()];
        for i in 0..inp {
            for o in 0..out {
                t[o * inp + i] = w[i * out + o];
            }
        }
        Ok(cpu::matmul(x, &t, Some(&get(&format!("{name}.bias"))?), rows, inp, out))
    }

    fn norm(get: Get, name: &str, x: &[f32], cols: usize, eps: f32) -> Result<Vec<f32>> {
        Ok(cpu::layer_norm(x, &get(&format!("{name}.weight"))?, &get(&format!("{name}.bias"))?, cols, eps))
    }

    /// Columns `range` of each row of `x` (`cols` wide).
    fn columns(x: &[f32], cols: usize, range: std::ops::Range<usize>) -> Vec<f32> {
        x.chunks(cols).flat_map(|r| r[range.clone()].to_vec()).collect()
    }

    /// `ClapModel.get_text_features`: `(batch, projection_dim)`.
    pub fn clap_text(get: Get, c: &ClapConfig, ids: &[u32], mask: &[bool], batch: usize, len: usize) -> Result<Vec<f32>> {
        let t = &c.text_config;
        let (d, heads) = (t.hidden_size, t.num_attention_heads);
        let hd = d / heads;
        let word = get("text_model.embeddings.word_embeddings.weight")?;
        let pos = get("text_model.embeddings.position_embeddings.weight")?;
        let token_type = get("text_model.embeddings.token_type_embeddings.weight")?;
        let mut out = Vec::new();
        for b in 0..batch {
            let ids = &ids[b * len..(b + 1) * len];
            let mask = &mask[b * len..(b + 1) * len];
            let positions = m2ugen_models::clap::position_ids(ids, t.pad_token_id as u32);
            let x: Vec<f32> = (0..len).flat_map(|i| (0..d).map(move |j| (i, j))).map(|(i, j)| word[ids[i] as usize * d + j] + pos[positions[i] as usize * d + j] + token_type[j]).collect();
            let mut x = norm(get, "text_model.embeddings.LayerNorm", &x, d, t.layer_norm_eps)?;
            for l in 0..t.num_hidden_layers {
                let p = format!("text_model.encoder.layer.{l}");
                let q = linear(get, &format!("{p}.attention.self.query"), &x, len, d, d)?;
                let k = linear(get, &format!("{p}.attention.self.key"), &x, len, d, d)?;
                let v = linear(get, &format!("{p}.attention.self.value"), &x, len, d, d)?;
                let bias = |_: usize, _: usize, j: usize| if mask[j] { 0.0 } else { -1e30 };
                let a = cpu::attention_biased(&q, &k, &v, len, len, heads, heads, hd, None, 1.0 / (hd as f32).sqrt(), &bias);
                let a = cpu::add(&linear(get, &format!("{p}.attention.output.dense"), &a, len, d, d)?, &x);
                x = norm(get, &format!("{p}.attention.output.LayerNorm"), &a, d, t.layer_norm_eps)?;
                let m = act(t.hidden_act, &linear(get, &format!("{p}.intermediate.dense"), &x, len, d, t.intermediate_size)?);
                let m = cpu::add(&linear(get, &format!("{p}.output.dense"), &m, len, t.intermediate_size, d)?, &x);
                x = norm(get, &format!("{p}.output.LayerNorm"), &m, d, t.layer_norm_eps)?;
            }
            let pooled = cpu::tanh(&linear(get, "text_model.pooler.dense", &x[..d], 1, d, d)?);
            let h = act(t.projection_hidden_act, &linear(get, "text_projection.linear1", &pooled, 1, d, t.projection_dim)?);
            let h = linear(get, "text_projection.linear2", &h, 1, t.projection_dim, t.projection_dim)?;
            let norm = h.iter().map(|&v| v as f64 * v as f64).sum::<f64>().sqrt().max(1e-12);
            out.extend(h.iter().map(|&v| (v as f64 / norm) as f32));
        }
        Ok(out)
    }

    /// `AudioLDM2ProjectionModel`: `(batch, len + 5, width)` and its mask.
    pub fn projection(get: Get, c: &ProjectionConfig, clap: &[f32], t5: &[f32], t5_mask: &[bool], batch: usize, len: usize) -> Result<(Vec<f32>, Vec<bool>)> {
        let w = c.language_model_dim;
        let p0 = linear(get, "projection", clap, batch, c.text_encoder_dim, w)?;
        let p1 = linear(get, "projection_1", t5, batch * len, c.text_encoder_1_dim, w)?;
        let [sos, eos, sos_1, eos_1] = ["sos_embed", "eos_embed", "sos_embed_1", "eos_embed_1"].map(get);
        let (sos, eos, sos_1, eos_1) = (sos?, eos?, sos_1?, eos_1?);
        let (mut out, mut m) = (Vec::new(), Vec::new());
        for b in 0..batch {
            for row in [&sos, &p0[b * w..(b + 1) * w].to_vec(), &eos, &sos_1] {
                out.extend_from_slice(row);
            }
            out.extend_from_slice(&p1[b * len * w..(b + 1) * len * w]);
            out.extend_from_slice(&eos_1);
            m.extend([true; 4]);
            m.extend_from_slice(&t5_mask[b * len..(b + 1) * len]);
            m.push(true);
        }
        Ok((out, m))
    }

    /// `generate_language_model` without a cache: GPT-2 over the whole sequence for each of
    /// `steps` states, appending `ln_f` of the last position's state; positions `0, 1, …`
    /// whatever the mask, padding keys masked. `(batch, steps, width)`.
    #[allow(clippy::too_many_arguments)]
    pub fn gpt2_generate(get: Get, c: &Gpt2Config, embeds: &[f32], mask: &[bool], batch: usize, len: usize, steps: usize) -> Result<Vec<f32>> {
        let (d, heads, inner) = (c.n_embd, c.n_head, c.inner());
        let hd = d / heads;
        let wpe = get("transformer.wpe.weight")?;
        let mut out = Vec::new();
        for b in 0..batch {
            let mut seq = embeds[b * len * d..(b + 1) * len * d].to_vec();
            let mut keep = mask[b * len..(b + 1) * len].to_vec();
            for _ in 0..steps {
                let n = keep.len();
                let mut x: Vec<f32> = seq.iter().enumerate().map(|(i, &v)| v + wpe[i]).collect();
                for l in 0..c.n_layer {
                    let p = format!("transformer.h.{l}");
                    let h = norm(get, &format!("{p}.ln_1"), &x, d, c.layer_norm_epsilon)?;
                    let qkv = conv1d(get, &format!("{p}.attn.c_attn"), &h, n, d, 3 * d)?;
                    let (q, k, v) = (columns(&qkv, 3 * d, 0..d), columns(&qkv, 3 * d, d..2 * d), columns(&qkv, 3 * d, 2 * d..3 * d));
                    let mut scale = if c.scale_attn_weights { 1.0 / (hd as f32).sqrt() } else { 1.0 };
                    if c.scale_attn_by_inverse_layer_idx {
                        scale /= (l + 1) as f32;
                    }
                    let bias = |_: usize, _: usize, j: usize| if keep[j] { 0.0 } else { -1e30 };
                    let a = cpu::attention_biased(&q, &k, &v, n, n, heads, heads, hd, Some(0), scale, &bias);
                    x = cpu::add(&x, &conv1d(get, &format!("{p}.attn.c_proj"), &a, n, d, d)?);
                    let h = norm(get, &format!("{p}.ln_2"), &x, d, c.layer_norm_epsilon)?;
                    let h = act(c.activation_function, &conv1d(get, &format!("{p}.mlp.c_fc"), &h, n, d, inner)?);
                    x = cpu::add(&x, &conv1d(get, &format!("{p}.mlp.c_proj"), &h, n, inner, d)?);
                }
                let last = norm(get, "transformer.ln_f", &x[(n - 1) * d..], d, c.layer_norm_epsilon)?;
                seq.extend_from_slice(&last);
                keep.push(true);
                out.extend_from_slice(&last);
            }
        }
        Ok(out)
    }
}

/// The plain reference on the fixture's own weights (the part files, read directly) gives the
/// fixture's CLAP embeddings, projection and GPT-2 states (float32, `atol 1e-4, rtol 1e-3`):
/// the behaviour the models copy (RoBERTa's positions, the masks, GPT-2's positions and cache
/// growth) is the reference's.
#[cfg(not(target_arch = "wasm32"))]
pub fn check_reference_on_fixture() -> Result<()> {
    let dir = crate::audioldm2::audioldm2_fixture();
    let open = |part: &str, file: &str| -> Result<InMemory> { Ok(InMemory::parse(file, std::fs::read(dir.join(part).join(file)).with_context(|| format!("{part}/{file}"))?)?) };
    let (clap_w, proj_w, gpt2_w) = (open("text_encoder", "model.safetensors")?, open("projection_model", "diffusion_pytorch_model.safetensors")?, open("language_model", "model.safetensors")?);
    let io = crate::audioldm2::audioldm2_io();
    let config = Audioldm2Config::tiny();
    let tol = text_tol(Elem::F32);
    let (clap_ids, shape) = ids(&io, "in.clap_ids")?;
    let get = |w: &InMemory, n: &str| -> Result<Vec<f32>> { Ok(w.f32(n)?.0) };
    let clap = reference::clap_text(&|n| get(&clap_w, n), &config.clap, &clap_ids, &mask(&io, "in.clap_mask")?, shape[0], shape[1])?;
    close("reference out.clap_text_embeds", &clap, &io.f32("out.clap_text_embeds")?.0, tol)?;
    let (t5, t5_shape) = io.f32("out.t5_hidden")?;
    let (projected, m) = reference::projection(&|n| get(&proj_w, n), &config.projection, &io.f32("out.clap_text_embeds")?.0, &t5, &mask(&io, "in.t5_mask")?, t5_shape[0], t5_shape[1])?;
    close("reference out.projected", &projected, &io.f32("out.projected")?.0, tol)?;
    ensure!(m == mask(&io, "out.projected_mask")?, "reference out.projected_mask: {m:?}");
    let (proj_ref, ps) = io.f32("out.projected")?;
    let generated = reference::gpt2_generate(&|n| get(&gpt2_w, n), &config.gpt2, &proj_ref, &m, ps[0], ps[1], config.gpt2.new_tokens())?;
    close("reference out.generated_prompt_embeds", &generated, &io.f32("out.generated_prompt_embeds")?.0, tol)
}

/// Random weights for `tensors` (norm weights near 1, the rest small), rounded to `elem`, put
/// in `store` and returned by name.
fn random_weights(gpu: &Gpu, elem: Elem, store: &mut Store, tensors: &[(String, Vec<usize>)], seed: u64) -> Result<HashMap<String, Vec<f32>>> {
    let mut rng = Rng::new(seed);
    let mut all = HashMap::new();
    for (name, shape) in tensors {
        let n: usize = shape.iter().product();
        let is_norm = name.contains("LayerNorm") || name.contains(".ln_");
        let fan_in = if shape.len() == 2 && !name.contains("embed") && !name.contains("wpe") { shape[0].min(shape[1]) as f32 } else { 4.0 };
        let values = if is_norm && name.ends_with(".weight") { rng.vec(n, 0.7, 1.3) } else { rng.vec(n, -1.0, 1.0).into_iter().map(|v| v * 1.5 / fan_in.sqrt()).collect() };
        let values = round_to(elem, &values);
        store.insert_f32(gpu, name, shape, &values)?;
        all.insert(name.clone(), values);
    }
    Ok(all)
}

fn getter<'a>(weights: &'a HashMap<String, Vec<f32>>, prefix: &'a str) -> impl Fn(&str) -> Result<Vec<f32>> + 'a {
    move |n: &str| weights.get(&format!("{prefix}.{n}")).cloned().with_context(|| format!("no random weight {prefix}.{n}"))
}

/// GPT-2 with random weights, its KV cache against recomputing everything each step: three
/// sequences of 7 rows (one padded in the middle, one at the end), 5 steps; then a sequence of
/// 254 rows whose steps reach 258 keys (the decode kernel splits at 256), 5 steps.
pub async fn check_gpt2_cache(gpu: &Gpu, elem: Elem) -> Result<()> {
    let config = Gpt2Config { n_positions: 300, n_embd: 32, n_layer: 2, n_head: 4, scale_attn_by_inverse_layer_idx: true, ..Gpt2Config::tiny() };
    let mut store = Store::new(elem.dtype());
    let weights = random_weights(gpu, elem, &mut store, &Gpt2::tensors("gpt2", &config), 7)?;
    let gpt2 = Gpt2::load(gpu, &mut store, "gpt2", &config)?;
    let get = getter(&weights, "gpt2");
    let mut rng = Rng::new(11);
    for (batch, len, steps, holes) in [(3usize, 7usize, 5usize, vec![(1usize, 3usize), (1, 4), (2, 6)]), (1, 254, 5, vec![(0, 100)])] {
        let d = config.n_embd;
        let embeds = round_to(elem, &rng.vec(batch * len * d, -1.0, 1.0));
        let mut mask = vec![true; batch * len];
        for (b, t) in holes {
            mask[b * len + t] = false;
        }
        let mut rec = Recorder::new(gpu);
        let x = rec.upload("embeds", &[batch * len, d], elem.dtype(), &embeds)?;
        let ours = gpt2.generate_from_embeddings(&mut rec, &x, &mask, batch, steps)?;
        rec.submit()?;
        let reference = reference::gpt2_generate(&get, &config, &embeds, &mask, batch, len, steps)?;
        close(&format!("{elem:?} gpt2 cache, {batch} x {len} rows, {steps} steps"), &gpu.read(&ours).await?, &reference, text_tol(elem))?;
    }
    // Too long for the positions: refused, naming them.
    let mut rec = Recorder::new(gpu);
    let x = rec.upload("embeds", &[298, config.n_embd], elem.dtype(), &vec![0.0; 298 * config.n_embd])?;
    let e = gpt2.generate_from_embeddings(&mut rec, &x, &[true; 298], 1, 4).err().context("301 positions were accepted")?;
    ensure!(e.to_string().contains("positions"), "unexpected error: {e}");
    Ok(())
}

/// CLAP's text branch with random weights against the plain reference: two token types (the
/// first is used), prompts padded to 9 ids with a pad id inside one prompt.
pub async fn check_clap_random(gpu: &Gpu, elem: Elem) -> Result<()> {
    let mut config = ClapConfig::tiny();
    config.text_config = m2ugen_core::config::audioldm2::ClapTextConfig { hidden_size: 32, num_attention_heads: 4, intermediate_size: 48, type_vocab_size: 2, projection_dim: 12, max_position_embeddings: 20, vocab_size: 50, layer_norm_eps: 1e-5, ..config.text_config };
    let mut store = Store::new(elem.dtype());
    let weights = random_weights(gpu, elem, &mut store, &ClapText::tensors("clap", &config), 5)?;
    let clap = ClapText::load(gpu, &mut store, "clap", &config)?;
    let (batch, len) = (3, 9);
    let ids: Vec<u32> = [[0, 5, 6, 7, 8, 9, 10, 2, 1], [0, 11, 12, 2, 1, 1, 1, 1, 1], [0, 13, 1, 14, 2, 1, 1, 1, 1]].concat();
    let mask: Vec<bool> = ids.iter().enumerate().map(|(i, &id)| id != 1 || (i / len == 2 && i % len == 2)).collect();
    let mut rec = Recorder::new(gpu);
    let ours = clap.forward(&mut rec, &ids, &mask, batch, len)?;
    rec.submit()?;
    ensure!(ours.shape() == [batch, 12], "CLAP's output has shape {:?}", ours.shape());
    let reference = reference::clap_text(&getter(&weights, "clap"), &config, &ids, &mask, batch, len)?;
    close(&format!("{elem:?} clap text, random weights"), &gpu.read(&ours).await?, &reference, text_tol(elem))?;
    // Ids past the vocabulary, and prompts past the positions, are refused.
    let mut rec = Recorder::new(gpu);
    ensure!(clap.forward(&mut rec, &[0, 50], &[true; 2], 1, 2).is_err(), "id 50 of a vocabulary of 50 was accepted");
    let long = vec![5u32; 19];
    ensure!(clap.forward(&mut rec, &long, &[true; 19], 1, 19).is_err(), "19 tokens (position 20 of 20) were accepted");
    Ok(())
}
