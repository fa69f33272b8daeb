//! Parity with the reference fixture (`fixtures/reference-m2ugen`): the converted checkpoint,
//! loaded through the real loader, must give the reference's hidden states, logits, greedy
//! tokens, `[AUD]` states and projector output (`io.safetensors`). Shared by the native suite
//! (lavapipe, f32 and f16) and the browser suite (f32).

use crate::{Result, Tol};
use anyhow::ensure;
use m2ugen_gpu::registry::Elem;
use m2ugen_gpu::{Gpu, GpuTensor, Recorder};
use m2ugen_models::llama::Media;
use m2ugen_models::projector::{OutputProjector, ProjectorConfig};
use m2ugen_models::{Llama, Store};
use m2ugen_weights::loader::{load_manifest, Fetcher, LoadOptions};
use m2ugen_core::media::Planar;
use m2ugen_pipeline::features::{is_encoder_tensor, Encoders};
use m2ugen_pipeline::generate::Detokenize;
use m2ugen_weights::safetensors::InMemory;

/// The fixture's `[AUD0]`: the first added token.
pub const AUD0: u32 = 256;
/// Output tokens.
pub const AUD_TOKENS: usize = 8;

/// Tolerances of the parity checks, `|ours - reference| <= atol + rtol * |reference|`, per
/// element type. f32: the atol 1e-3 on hidden states and logits. f16: activations and
/// weights rounded to 11 bits through 20 layers, on values up to about 50.
pub fn parity_tol(elem: Elem) -> Tol {
    match elem {
        Elem::F32 => Tol { atol: 1e-3, rtol: 0.0 },
        Elem::F16 => Tol { atol: 0.3, rtol: 0.02 },
    }
}

/// How far below our top logit the reference's greedy token may score in f16 (the f16 logit
/// error measured on the fixture is about 0.015).
pub const NEAR_TIE: f32 = 0.05;

/// The model as the tests load it: LLM, output projector, media encoders and adapters.
pub struct Model {
    /// The LLM.
    pub llama: Llama,
    /// The output projector.
    pub projector: OutputProjector,
    /// MERT, ViT, ViViT and their adapters.
    pub encoders: Encoders,
}

/// Loads a converted fixture from `fetcher` (manifest + shards) in element type `elem`.
pub async fn load_model<F: Fetcher>(gpu: &Gpu, elem: Elem, fetcher: &F) -> Result<Model> {
    let (mut store, llama, manifest) = load_store(gpu, elem, fetcher, |n| n.starts_with("llm.") || n.starts_with("output_projector.") || is_encoder_tensor(n)).await?;
    let projector = OutputProjector::load(gpu, &store, ProjectorConfig::from_store(&store, 4)?)?;
    let encoders = Encoders::build(gpu, &manifest, &mut store, llama.config.dim)?;
    Ok(Model { llama, projector, encoders })
}

/// The tensors `wanted` of the model at `fetcher`, uploaded, its LLM (taken from the store) and
/// its manifest.
async fn load_store<F: Fetcher>(gpu: &Gpu, elem: Elem, fetcher: &F, wanted: impl Fn(&str) -> bool) -> Result<(Store, Llama, m2ugen_weights::Manifest)> {
    let manifest = load_manifest(fetcher).await?;
    let clock = m2ugen_gpu::now_ms;
    let options = LoadOptions { in_flight: 4, max_resumes: 3, clock: &clock, cache: None };
    let mut store = m2ugen_pipeline::load::load_store(gpu, elem.dtype(), fetcher, &manifest, wanted, &options, |_| {}).await?;
    let llama = m2ugen_pipeline::load::build_llama(gpu, &manifest, &mut store, 64)?;
    Ok((store, llama, manifest))
}

/// Tolerance of the media features (unit-norm inputs through three residual blocks, values up
/// to a few units): the atol 1e-3 in f32; f16 rounds the encoders' activations.
pub fn feature_tol(elem: Elem) -> Tol {
    match elem {
        Elem::F32 => Tol { atol: 1e-3, rtol: 0.0 },
        Elem::F16 => Tol { atol: 0.05, rtol: 0.02 },
    }
}

/// The fixture's media inputs through our encoders and adapters give `out.audio_feats`,
/// `out.image_feats` and `out.video_feats`, for the first `rows` rows (of 2). The fixture's
/// tiny MERT strides 20 samples, not 320: a second of audio is 1198 frames, some 13 s on
/// SwiftShader, so the browser checks one row.
pub async fn check_features(gpu: &Gpu, elem: Elem, encoders: &Encoders, io: &InMemory, rows: usize) -> Result<()> {
    let tol = feature_tol(elem);
    for row in 0..rows.min(2) {
        let (samples, _) = io.f32(&format!("in.audio_24k.{row}"))?;
        let ours = gpu.read(&encoders.music(gpu, &samples)?).await?;
        close(&format!("out.audio_feats[{row}]"), &ours, &feature_row(io, "out.audio_feats", row)?, tol)?;

        let (pixels, shape) = io.f32(&format!("in.image_chw01.{row}"))?;
        let image = Planar { frames: 1, channels: shape[0], height: shape[1], width: shape[2], values: pixels };
        let ours = gpu.read(&encoders.image(gpu, &image)?).await?;
        close(&format!("out.image_feats[{row}]"), &ours, &feature_row(io, "out.image_feats", row)?, tol)?;

        let (bytes, shape) = io.i64(&format!("in.video_thwc_uint8.{row}"))?;
        let bytes: Vec<u8> = bytes.into_iter().map(|b| b as u8).collect();
        let frames = Planar::from_interleaved_u8(shape[0], shape[1], shape[2], shape[3], &bytes);
        let ours = gpu.read(&encoders.video(gpu, &frames)?).await?;
        close(&format!("out.video_feats[{row}]"), &ours, &feature_row(io, "out.video_feats", row)?, tol)?;
    }
    Ok(())
}

fn feature_row(io: &InMemory, name: &str, row: usize) -> Result<Vec<f32>> {
    let (v, shape) = io.f32(name)?;
    let dim = shape[2];
    Ok(v[row * dim..(row + 1) * dim].to_vec())
}

/// One chain from waveform to LLM: `in.audio_24k.0` through MERT, the music adapter and the LLM
/// gives `out.last_logits.audio` and `out.greedy16.audio`.
pub async fn check_music_chain(gpu: &Gpu, elem: Elem, model: &Model, io: &InMemory) -> Result<()> {
    let (samples, _) = io.f32("in.audio_24k.0")?;
    let feature = model.encoders.music(gpu, &samples)?;
    check_prompt_case(gpu, elem, &model.llama, io, "audio", &[(m2ugen_models::Modality::Music, feature)]).await
}

/// The largest absolute difference, and where.
pub fn max_diff(ours: &[f32], reference: &[f32]) -> (f32, usize) {
    ours.iter().zip(reference).enumerate().fold((0.0, 0), |(m, at), (i, (a, b))| if (a - b).abs() > m { ((a - b).abs(), i) } else { (m, at) })
}

/// Compares `ours` with `reference` within `tol`, printing the largest difference when
/// `M2UGEN_PARITY_REPORT` is set.
pub fn close(what: &str, ours: &[f32], reference: &[f32], tol: Tol) -> Result<()> {
    ensure!(ours.len() == reference.len(), "{what}: {} values, reference has {}", ours.len(), reference.len());
    let (d, at) = max_diff(ours, reference);
    if std::env::var_os("M2UGEN_PARITY_REPORT").is_some() {
        println!("{what}: largest difference {d:.2e} (reference value there {:.3})", reference[at]);
    }
    crate::assert_close(what, ours, reference, tol, &[ours.len()])
}

/// The media features of row 0 of the fixture for a case (`none`, `audio`, `all`).
fn media(gpu: &Gpu, elem: Elem, io: &InMemory, case: &str) -> Result<Vec<(m2ugen_models::Modality, GpuTensor)>> {
    use m2ugen_models::Modality::*;
    let kinds: &[_] = match case {
        "none" => &[],
        "audio" => &[(Music, "out.audio_feats")],
        _ => &[(Music, "out.audio_feats"), (Image, "out.image_feats"), (Video, "out.video_feats")],
    };
    kinds
        .iter()
        .map(|&(m, name)| {
            let (v, shape) = io.f32(name)?;
            let dim = shape[2];
            Ok((m, gpu.upload(name, &[1, dim], elem.dtype(), &v[..dim])?))
        })
        .collect()
}

fn as_media(features: &[(m2ugen_models::Modality, GpuTensor)]) -> Media<'_> {
    let mut m = Media::default();
    for (kind, t) in features {
        match kind {
            m2ugen_models::Modality::Music => m.music = Some(t),
            m2ugen_models::Modality::Image => m.image = Some(t),
            m2ugen_models::Modality::Video => m.video = Some(t),
        }
    }
    m
}

/// The prompt of the fixture.
pub fn prompt(io: &InMemory) -> Result<Vec<u32>> {
    Ok(io.i64("in.prompt_ids")?.0.into_iter().map(|t| t as u32).collect())
}

/// Hidden states and last logits of the prompt for each case (`none`, `audio`, `all`: the
/// media it takes), and the greedy continuation (KV-cached) of 16 tokens.
pub async fn check_prompt_cases(gpu: &Gpu, elem: Elem, llama: &Llama, io: &InMemory, cases: &[&str]) -> Result<()> {
    for &case in cases {
        let features = media(gpu, elem, io, case)?;
        check_prompt_case(gpu, elem, llama, io, case, &features).await?;
    }
    Ok(())
}

/// The prompt's hidden states, last logits and greedy continuation for one case, with `features`.
async fn check_prompt_case(gpu: &Gpu, elem: Elem, llama: &Llama, io: &InMemory, case: &str, features: &[(m2ugen_models::Modality, GpuTensor)]) -> Result<()> {
    let atol = parity_tol(elem);
    let prompt = prompt(io)?;
    {
        let mut cache = llama.new_cache(gpu, 1, 64)?;
        let mut rec = Recorder::new(gpu);
        llama.set_media(&mut rec, &mut cache, 0, as_media(features))?;
        let hidden = llama.prefill(&mut rec, &mut cache, 0, &prompt)?;
        let last = llama.rows(&mut rec, &hidden, &[prompt.len() as u32 - 1])?;
        let logits = llama.logits(&mut rec, &last)?;
        rec.submit()?;
        close(&format!("out.last_hidden.{case}"), &gpu.read(&hidden).await?, &io.f32(&format!("out.last_hidden.{case}"))?.0, atol)?;
        let logits = gpu.read(&logits).await?;
        close(&format!("out.last_logits.{case}"), &logits, &io.f32(&format!("out.last_logits.{case}"))?.0, atol)?;

        let expected: Vec<u32> = io.i64(&format!("out.greedy16.{case}"))?.0.into_iter().map(|t| t as u32).collect();
        check_greedy(gpu, elem, llama, &mut cache, logits, &expected, &format!("out.greedy16.{case}")).await?;
    }
    Ok(())
}

/// Greedy decoding from `logits` (the prompt's last) with the KV cache must give `expected`:
/// exactly in f32; in f16 it may part from the reference only at a near tie, where the
/// reference's token scores within [`NEAR_TIE`] of ours.
pub async fn check_greedy(gpu: &Gpu, elem: Elem, llama: &Llama, cache: &mut m2ugen_models::llama::KvCache, mut logits: Vec<f32>, expected: &[u32], what: &str) -> Result<()> {
    for (step, &want) in expected.iter().enumerate() {
        let next = m2ugen_pipeline::sampling::argmax(&logits) as u32;
        if next != want {
            let gap = logits[next as usize] - logits[want as usize];
            ensure!(elem == Elem::F16 && gap <= NEAR_TIE, "{what}: step {step}: ours {next}, the reference {want} (its logit {gap} below ours)");
            if std::env::var_os("M2UGEN_PARITY_REPORT").is_some() {
                println!("{what}: f16 agrees for {step} tokens, then a near tie ({gap:.4})");
            }
            break;
        }
        let mut rec = Recorder::new(gpu);
        let h = llama.decode(&mut rec, cache, &[next])?;
        let l = llama.logits(&mut rec, &h)?;
        rec.submit()?;
        logits = gpu.read(&l).await?;
    }
    Ok(())
}

/// Loads a converted plain LLaMA (no projector) from `fetcher`.
pub async fn load_llama<F: Fetcher>(gpu: &Gpu, elem: Elem, fetcher: &F) -> Result<Llama> {
    Ok(load_store(gpu, elem, fetcher, |n| n.starts_with("llm.")).await?.1)
}

/// The `llama-layouts` fixture: every position's logits of both rows of `in.ids` (atol 1e-4 in
/// f32, as its README asks) and the 12 greedy tokens after row 0.
pub async fn check_llama_layouts(gpu: &Gpu, elem: Elem, llama: &Llama, io: &InMemory) -> Result<()> {
    let (ids, shape) = io.i64("in.ids")?;
    let (rows, len) = (shape[0], shape[1]);
    let (expected, _) = io.f32("out.logits")?;
    let vocab = expected.len() / (rows * len);
    let tol = match elem {
        Elem::F32 => Tol { atol: 1e-4, rtol: 0.0 },
        Elem::F16 => parity_tol(elem),
    };
    for row in 0..rows {
        let tokens: Vec<u32> = ids[row * len..(row + 1) * len].iter().map(|&t| t as u32).collect();
        let mut cache = llama.new_cache(gpu, 1, 64)?;
        let mut rec = Recorder::new(gpu);
        let hidden = llama.prefill(&mut rec, &mut cache, 0, &tokens)?;
        let logits = llama.logits(&mut rec, &hidden)?;
        rec.submit()?;
        let logits = gpu.read(&logits).await?;
        close(&format!("out.logits[{row}]"), &logits, &expected[row * len * vocab..(row + 1) * len * vocab], tol)?;
        if row == 0 {
            let greedy: Vec<u32> = io.i64("out.greedy12")?.0.into_iter().map(|t| t as u32).collect();
            check_greedy(gpu, elem, llama, &mut cache, logits[(len - 1) * vocab..].to_vec(), &greedy, "out.greedy12").await?;
        }
    }
    Ok(())
}

/// The `[AUD]` hidden states and the output projector.
pub async fn check_projector(gpu: &Gpu, elem: Elem, model: &Model, io: &InMemory) -> Result<()> {
    let llama = &model.llama;
    let atol = parity_tol(elem);
    let mut tokens = prompt(io)?;
    let n = tokens.len() as u32;
    let aud: Vec<u32> = (AUD0..AUD0 + AUD_TOKENS as u32).collect();
    tokens.extend(&aud);
    let features = media(gpu, elem, io, "audio")?;
    let mut cache = llama.new_cache(gpu, 1, 64)?;
    let mut rec = Recorder::new(gpu);
    llama.set_media(&mut rec, &mut cache, 0, as_media(&features))?;
    let hidden = llama.prefill(&mut rec, &mut cache, 0, &tokens)?;
    // The states at the positions whose next token is [AUD0]..[AUD7].
    let rows: Vec<u32> = (n - 1..n - 1 + AUD_TOKENS as u32).collect();
    let aud_hidden = llama.rows(&mut rec, &hidden, &rows)?;
    let embeddings = llama.embed(&mut rec, &aud)?;
    let projected = model.projector.forward(&mut rec, &aud_hidden, &embeddings)?;
    rec.submit()?;
    close("out.aud_hidden", &gpu.read(&aud_hidden).await?, &io.f32("out.aud_hidden")?.0, atol)?;
    close("out.projector", &gpu.read(&projected).await?, &io.f32("out.projector")?.0, atol)?;
    Ok(())
}


/// A stand-in tokenizer for the fixture's random vocabulary: token `t` is the letter `t mod 26`.
pub struct Letters;

impl m2ugen_pipeline::generate::Detokenize for Letters {
    fn decode(&self, tokens: &[u32]) -> String {
        tokens.iter().map(|&t| (b'a' + (t % 26) as u8) as char).collect()
    }
}

/// Generation: a batch of sequences of different prompts and media gives what each gives alone
/// (and, in f32, the reference's greedy tokens); seeds, stops, streaming and cancelling.
pub async fn check_generation(gpu: &Gpu, elem: Elem, model: &Model, io: &InMemory) -> Result<()> {
    use m2ugen_pipeline::generate::{generate, Cancel, Finish, Request, Settings};
    use m2ugen_pipeline::Sampling;
    let llama = &model.llama;
    let prompt = prompt(io)?;
    let cases = ["none", "audio", "all"];
    let features: Vec<_> = cases.iter().map(|c| media(gpu, elem, io, c)).collect::<Result<_>>()?;
    let greedy = Settings { sampling: Sampling::Greedy, max_new_tokens: 16, eos: None, stop_texts: vec![] };
    let requests: Vec<Request> = features.iter().map(|f| Request { prompt: prompt.clone(), media: as_media(f), seed: 0 }).collect();
    let never = Cancel::default();

    // One batch of the three cases, plus a shorter prompt, against each run alone.
    let mut batch = requests.clone();
    batch.push(Request { prompt: prompt[..5].to_vec(), media: as_media(&features[1]), seed: 0 });
    let mut streamed = vec![String::new(); batch.len()];
    let together = generate(gpu, llama, &batch, &greedy, &Letters, &never, |s| streamed[s.sequence].push_str(s.text)).await?;
    for (i, r) in batch.iter().enumerate() {
        let alone = generate(gpu, llama, std::slice::from_ref(r), &greedy, &Letters, &never, |_| {}).await?;
        ensure!(together[i] == alone[0], "sequence {i}: batched {:?} but alone {:?}", together[i], alone[0]);
        ensure!(together[i].finish == Finish::Length && together[i].tokens.len() == 16, "sequence {i}: {:?}", together[i]);
        ensure!(streamed[i] == together[i].text, "sequence {i}: streamed {:?}, returned {:?}", streamed[i], together[i].text);
    }
    if elem == Elem::F32 {
        for (i, case) in cases.iter().enumerate() {
            let expected: Vec<u32> = io.i64(&format!("out.greedy16.{case}"))?.0.into_iter().map(|t| t as u32).collect();
            ensure!(together[i].tokens == expected, "batched greedy {case}: {:?}, the reference {expected:?}", together[i].tokens);
        }
    }

    // Sampling: a seed repeats itself; top-k 1 is greedy.
    let sampled = Settings { sampling: Sampling::Sample { temperature: 1.5, top_k: None, top_p: Some(0.95) }, ..greedy.clone() };
    let seeded = |seed| Request { seed, ..requests[0].clone() };
    let a = generate(gpu, llama, &[seeded(7), seeded(7), seeded(8)], &sampled, &Letters, &never, |_| {}).await?;
    ensure!(a[0] == a[1], "the same seed gave {:?} and {:?}", a[0].tokens, a[1].tokens);
    ensure!(a[0].tokens != a[2].tokens, "seeds 7 and 8 gave the same 16 tokens {:?}", a[0].tokens);
    let top1 = Settings { sampling: Sampling::Sample { temperature: 1.0, top_k: Some(1), top_p: None }, ..greedy.clone() };
    let b = generate(gpu, llama, &[seeded(3)], &top1, &Letters, &never, |_| {}).await?;
    ensure!(b[0].tokens == together[0].tokens, "top-k 1 gave {:?}, greedy {:?}", b[0].tokens, together[0].tokens);

    // Stops: the end-of-sequence token, a stop text, the length.
    let g = &together[0].tokens;
    let eos = Settings { eos: Some(g[2]), ..greedy.clone() };
    let c = generate(gpu, llama, &requests[..1], &eos, &Letters, &never, |_| {}).await?;
    let first = g.iter().position(|&t| t == g[2]).unwrap_or(2);
    ensure!(c[0].finish == Finish::Eos && c[0].tokens == g[..first], "eos {}: {:?}", g[2], c[0]);
    let stop_text = Letters.decode(&g[3..5]);
    let text = Settings { stop_texts: vec![stop_text.clone()], ..greedy.clone() };
    let mut shown = String::new();
    let d = generate(gpu, llama, &requests[..1], &text, &Letters, &never, |s| shown.push_str(s.text)).await?;
    let full = Letters.decode(g);
    let cut = full.find(&stop_text).unwrap_or(0);
    ensure!(d[0].finish == Finish::StopText && d[0].text == full[..cut], "stop text {stop_text:?}: {:?}", d[0]);
    // The stop text's first letter was held back, not streamed and then taken away.
    ensure!(shown == d[0].text, "streamed {shown:?} around the stop text, the answer is {:?}", d[0].text);
    let short = Settings { max_new_tokens: 3, ..greedy.clone() };
    let e = generate(gpu, llama, &requests[..1], &short, &Letters, &never, |_| {}).await?;
    ensure!(e[0].finish == Finish::Length && e[0].tokens == g[..3], "length 3: {:?}", e[0]);

    // Cancel after 5 tokens of the first sequence.
    let cancel = Cancel::default();
    let mut seen = 0;
    let f = generate(gpu, llama, &requests[..2], &greedy, &Letters, &cancel, |s| {
        if s.sequence == 0 {
            seen += 1;
            if seen == 5 {
                cancel.cancel();
            }
        }
    })
    .await?;
    ensure!(f.iter().all(|o| o.finish == Finish::Cancelled && o.tokens.len() == 5), "cancelled after 5: {f:?}");
    Ok(())
}

/// The tokenizer converted from `tests/data/tokenizer/tokenizer.model`: ids worked out by hand
/// from the piece list in `make_model.py` (ids: `<s>` 1, bytes `<0xNN>` 3 + NN, `▁` 259, `▁h`
/// 268, `i` 264, `llo` 271, `▁hello` 272, `▁world` 277, `[AUD0]` 278).
pub fn check_tokenizer(t: &m2ugen_pipeline::tokenizer::TextTokenizer) -> Result<()> {
    use m2ugen_pipeline::generate::Detokenize;
    for (text, ids) in [
        // Merges in score order: ▁h, ll, ▁he, llo, ▁hello, ▁w, or, ▁wor, ld, ▁world.
        ("hello world", vec![1, 272, 277]),
        // `!` is no piece: byte fallback to <0x21>.
        ("hi!", vec![1, 268, 264, 36]),
        // é is two bytes, C3 A9.
        ("héllo", vec![1, 268, 198, 172, 271]),
        ("[AUD0][AUD7]", vec![1, 278, 285]),
    ] {
        let ours = t.encode(text)?;
        ensure!(ours == ids, "encode({text:?}): {ours:?}, expected {ids:?}");
    }
    ensure!(t.aud_tokens() == Ok([278, 279, 280, 281, 282, 283, 284, 285]), "[AUD] ids {:?}", t.aud_tokens());
    for (ids, text) in [(&[1u32, 272, 277][..], "hello world"), (&[268, 198, 172, 271], "héllo"), (&[272, 278, 285], "hello")] {
        let ours = t.decode(ids);
        ensure!(ours == text, "decode({ids:?}): {ours:?}, expected {text:?}");
    }
    // Streamed a token at a time, the text adds up to the whole: spaces before words, and é
    // (two byte tokens) shown once complete.
    let ids = [272u32, 277, 268, 198, 172, 271, 277, 36];
    let mut stream = m2ugen_pipeline::generate::TextStream::default();
    let streamed: String = ids.iter().map(|&id| stream.push(t, id)).collect();
    ensure!(streamed == t.decode(&ids) && streamed == "hello world héllo world!", "streamed {streamed:?}, whole {:?}", t.decode(&ids));
    Ok(())
}
