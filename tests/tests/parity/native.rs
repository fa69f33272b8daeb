use m2ugen_convert::{convert, Inputs, Options};
use m2ugen_core::quant::QuantFormat;
use m2ugen_tests::parity::{check_features, check_generation, check_music_chain, check_projector, check_prompt_cases, load_model};
use m2ugen_tests::{block_on, native_elems};
use m2ugen_weights::native::DirFetcher;
use m2ugen_weights::safetensors::InMemory;
use m2ugen_weights::StoredType;
use std::path::PathBuf;

/// The fixture directory: `M2UGEN_REFERENCE_FIXTURE`, or the repository's copy.
fn fixture() -> PathBuf {
    std::env::var_os("M2UGEN_REFERENCE_FIXTURE").map(PathBuf::from).unwrap_or_else(|| m2ugen_tests::data_dir().join("reference-m2ugen"))
}

/// Converts the fixture's checkpoint into a fresh directory.
fn converted(tag: &str, quant: Option<QuantFormat>) -> PathBuf {
    let dir = fixture();
    let params = if dir.join("params.json").is_file() { dir.join("params.json") } else { dir.join("llama/params.json") };
    let out = std::env::temp_dir().join(format!("m2ugen-parity-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let checkpoint = dir.join("checkpoint.pth");
    let configs: Vec<(String, PathBuf)> = ["mert", "vit", "vivit"].iter().map(|c| (c.to_string(), dir.join(c).join("config.json"))).collect();
    let tokenizer = m2ugen_tests::data_dir().join("tokenizer/tokenizer.model");
    let inputs = Inputs { checkpoint: Some(&checkpoint), params: Some(&params), llama: None, tokenizer: Some(&tokenizer), hf: vec![], configs: configs.iter().map(|(c, f)| (c.clone(), f.as_path())).collect() };
    // 64 KiB shards: the embedding table and the head (66 KiB each) are cut over two, so the
    // model loads from pieces.
    let options = Options { float: StoredType::F32, quant, shard_bytes: 64 << 10, model: "fixture".into(), kind: None };
    convert(&inputs, &out, &options).unwrap();
    out
}

fn io() -> InMemory {
    let path = fixture().join("io.safetensors");
    InMemory::parse("io.safetensors", std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

#[test]
fn llm_and_projector_match_the_reference() {
    let dir = converted("f32", None);
    block_on("llm_and_projector_match_the_reference", 600, move || async move {
        let io = io();
        for elem in native_elems() {
            let gpu = m2ugen_tests::gpu(elem).await;
            let mut model = load_model(&gpu, elem, &DirFetcher(dir.clone())).await.unwrap();
            if let Err(e) = check_prompt_cases(&gpu, elem, &model.llama, &io, &["none", "audio", "all"]).await {
                panic!("{elem:?}: {e:#}");
            }
            if let Err(e) = check_features(&gpu, elem, &model.encoders, &io, 2).await {
                panic!("{elem:?}: media features: {e:#}");
            }
            if let Err(e) = check_music_chain(&gpu, elem, &model, &io).await {
                panic!("{elem:?}: waveform to LLM: {e:#}");
            }
            // The same clips through MERT's feature extractor in chunks, as a long window goes:
            // chunks of 1001 rows of the first convolution (several, the last one short), and of
            // 13 (two frames of the fixture's MERT each).
            for rows in [1001, 13] {
                model.encoders.music.as_mut().unwrap().encoder.set_chunk_rows(rows).unwrap();
                if let Err(e) = check_features(&gpu, elem, &model.encoders, &io, 2).await {
                    panic!("{elem:?}: media features, feature extractor in chunks of {rows} rows: {e:#}");
                }
            }
            if let Err(e) = check_music_chain(&gpu, elem, &model, &io).await {
                panic!("{elem:?}: waveform to LLM, feature extractor in chunks: {e:#}");
            }
            if let Err(e) = check_projector(&gpu, elem, &model, &io).await {
                panic!("{elem:?}: {e:#}");
            }
            if let Err(e) = check_generation(&gpu, elem, &model, &io).await {
                panic!("{elem:?}: generation: {e:#}");
            }
        }
    });
}

#[test]
fn quantized_models_stay_close_to_the_float_one() {
    let (f32_dir, q8_dir, q4_dir) = (converted("ref", None), converted("q8", Some(QuantFormat::Q8)), converted("q4", Some(QuantFormat::Q4)));
    block_on("quantized_models_stay_close_to_the_float_one", 600, move || async move {
        let io = io();
        let elem = m2ugen_gpu::registry::Elem::F32;
        let gpu = m2ugen_tests::gpu(elem).await;
        let reference = load_model(&gpu, elem, &DirFetcher(f32_dir)).await.unwrap();
        let prompt = m2ugen_tests::parity::prompt(&io).unwrap();
        // (weights, most logit error, least top-1 agreement): bounds set from the figures the
        // README reports, with room for other drivers' rounding.
        for (dir, name, max_error, agreement) in [(q8_dir, "q8", 0.5, 0.8), (q4_dir, "q4", 4.0, 0.1)] {
            let model = load_model(&gpu, elem, &DirFetcher(dir)).await.unwrap();
            let q = m2ugen_pipeline::quality::compare(&gpu, &reference.llama, &model.llama, &prompt, 32).await.unwrap();
            println!("{name}: {q:?}");
            assert!(q.max_logit_error <= max_error && q.top1_agreement >= agreement, "{name}: {q:?}");
        }
    });
}

/// The `llama-layouts` fixture (`M2UGEN_LLAMA_FIXTURE`, or the repository's copy).
fn llama_fixture() -> PathBuf {
    std::env::var_os("M2UGEN_LLAMA_FIXTURE").map(PathBuf::from).unwrap_or_else(|| m2ugen_tests::data_dir().join("llama-layouts"))
}

#[test]
fn llama_in_meta_and_hugging_face_layouts_gives_the_transformers_logits() {
    let mut dirs = Vec::new();
    for layout in ["meta", "hf"] {
        let out = std::env::temp_dir().join(format!("m2ugen-parity-llama-{layout}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&out);
        let source = llama_fixture().join(layout);
        let inputs = Inputs { checkpoint: None, params: None, llama: Some(&source), tokenizer: None, hf: vec![], configs: vec![] };
        convert(&inputs, &out, &Options { float: StoredType::F32, quant: None, shard_bytes: 1 << 20, model: format!("llama-{layout}"), kind: None }).unwrap();
        dirs.push((layout, out));
    }
    block_on("llama_in_meta_and_hugging_face_layouts_gives_the_transformers_logits", 600, move || async move {
        let path = llama_fixture().join("io.safetensors");
        let io = InMemory::parse("io.safetensors", std::fs::read(&path).unwrap()).unwrap();
        for elem in native_elems() {
            let gpu = m2ugen_tests::gpu(elem).await;
            for (layout, dir) in &dirs {
                let llama = m2ugen_tests::parity::load_llama(&gpu, elem, &DirFetcher(dir.clone())).await.unwrap();
                if let Err(e) = m2ugen_tests::parity::check_llama_layouts(&gpu, elem, &llama, &io).await {
                    panic!("{layout} {elem:?}: {e:#}");
                }
            }
        }
    });
}

#[test]
fn the_sentencepiece_model_becomes_a_tokenizer_that_encodes_as_worked_out_by_hand() {
    use m2ugen_convert::tokenizer::convert_tokenizer;
    use m2ugen_pipeline::tokenizer::{TextTokenizer, TokenizerError};
    let model = m2ugen_tests::data_dir().join("tokenizer/tokenizer.model");
    let json = convert_tokenizer(&model, None).unwrap();
    let tokenizer = TextTokenizer::from_bytes(&json).unwrap();
    if let Err(e) = m2ugen_tests::parity::check_tokenizer(&tokenizer) {
        panic!("{e:#}");
    }
    // A tokenizer.json in, with its [AUD] tokens already there: the same tokenizer out.
    let path = std::env::temp_dir().join(format!("m2ugen-tokenizer-{}.json", std::process::id()));
    std::fs::write(&path, &json).unwrap();
    let again = TextTokenizer::from_bytes(&convert_tokenizer(&path, None).unwrap()).unwrap();
    m2ugen_tests::parity::check_tokenizer(&again).unwrap();
    // Without them (a model with no output tokens), text works and music is refused by name.
    let without = |dropped: &str| {
        let mut json: serde_json::Value = serde_json::from_slice(&json).unwrap();
        json["added_tokens"].as_array_mut().unwrap().retain(|t| !t["content"].as_str().unwrap().starts_with(dropped));
        TextTokenizer::from_bytes(json.to_string().as_bytes())
    };
    let text_only = without("[AUD").unwrap();
    assert_eq!(text_only.encode("hello world").unwrap(), vec![1, 272, 277]);
    assert_eq!(text_only.aud_tokens(), Err(TokenizerError::NoAudToken(0)));
    // Some but not all: a damaged file, named at once.
    assert_eq!(without("[AUD3]").err(), Some(TokenizerError::NoAudToken(3)));
    let _ = std::fs::remove_file(path);
}

/// The MU-LLaMA fixture (`M2UGEN_MU_LLAMA_FIXTURE`, or the repository's copy): its
/// `checkpoint.pth` over the LLaMA-2 base in `base/`, and its forward's outputs.
fn mu_llama_fixture() -> PathBuf {
    std::env::var_os("M2UGEN_MU_LLAMA_FIXTURE").map(PathBuf::from).unwrap_or_else(|| m2ugen_tests::data_dir().join("mu-llama"))
}

#[test]
fn mu_llama_over_its_llama_2_base_gives_its_forward() {
    use m2ugen_models::Modality;
    use m2ugen_pipeline::tokenizer::{TextTokenizer, TokenizerError};
    let dir = mu_llama_fixture();
    let out = std::env::temp_dir().join(format!("m2ugen-parity-mu-llama-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let (checkpoint, base) = (dir.join("checkpoint.pth"), dir.join("base"));
    let tokenizer = m2ugen_tests::data_dir().join("tokenizer/tokenizer.model");
    let inputs = Inputs { checkpoint: Some(&checkpoint), params: None, llama: Some(&base), tokenizer: Some(&tokenizer), hf: vec![], configs: vec![] };
    convert(&inputs, &out, &Options { float: StoredType::F32, quant: None, shard_bytes: 1 << 20, model: "mu-llama".into(), kind: None }).unwrap();

    // Its tokenizer: text only (the model has a row per piece and no output tokens).
    let text = TextTokenizer::from_bytes(&std::fs::read(out.join("tokenizer.json")).unwrap()).unwrap();
    assert_eq!(text.encode("hello world").unwrap(), vec![1, 272, 277]);
    assert_eq!(text.aud_tokens(), Err(TokenizerError::NoAudToken(0)));

    block_on("mu_llama_over_its_llama_2_base_gives_its_forward", 600, move || async move {
        let path = dir.join("io.safetensors");
        let io = InMemory::parse("io.safetensors", std::fs::read(&path).unwrap()).unwrap();
        for elem in native_elems() {
            let gpu = m2ugen_tests::gpu(elem).await;
            let llama = m2ugen_tests::parity::load_llama(&gpu, elem, &DirFetcher(out.clone())).await.unwrap();
            assert_eq!((llama.config.vocab, llama.config.n_layers), (278, 22));
            assert_eq!(llama.config.prefix, vec![Modality::Music; 20], "MU-LLaMA's last 20 layers all take the music");
            if let Err(e) = check_prompt_cases(&gpu, elem, &llama, &io, &["audio"]).await {
                panic!("{elem:?}: {e:#}");
            }
        }
    });
}

#[test]
fn a_conversation_reuses_earlier_turns_and_answers_as_a_fresh_run_would() {
    use m2ugen_models::llama::Media;
    use m2ugen_pipeline::chat::Conversation;
    use m2ugen_pipeline::generate::{generate, Cancel, Request, Settings};
    use m2ugen_pipeline::chat::Tokenizer;
    use m2ugen_pipeline::Sampling;
    let dir = converted("chat", None);
    block_on("a_conversation_reuses_earlier_turns", 600, move || async move {
        let gpu = m2ugen_tests::gpu(m2ugen_gpu::registry::Elem::F32).await;
        let fetcher = DirFetcher(dir.clone());
        let clock = m2ugen_gpu::now_ms;
        let options = m2ugen_weights::loader::LoadOptions { in_flight: 4, max_resumes: 0, clock: &clock, cache: None };
        let (_, llama) = m2ugen_pipeline::load::load_llama(&gpu, m2ugen_core::DType::F32, &fetcher, 1024, &options).await.unwrap();
        // Bytes as tokens (3 + byte, as the test tokenizer's byte pieces; BOS 1): every id is a
        // row of the fixture LLM's 264, whose own tokenizer has more pieces than it has rows.
        struct Bytes;
        impl m2ugen_pipeline::generate::Detokenize for Bytes {
            fn decode(&self, tokens: &[u32]) -> String {
                String::from_utf8_lossy(&tokens.iter().filter(|&&t| (3..259).contains(&t)).map(|&t| (t - 3) as u8).collect::<Vec<_>>()).into_owned()
            }
        }
        impl m2ugen_pipeline::chat::Tokenizer for Bytes {
            fn encode_text(&self, text: &str) -> Result<Vec<u32>, String> {
                Ok(std::iter::once(1).chain(text.bytes().map(|b| b as u32 + 3)).collect())
            }
        }
        let tokenizer = Bytes;
        let settings = Settings { sampling: Sampling::Greedy, max_new_tokens: 10, eos: None, stop_texts: vec!["\n###".into()] };
        let cancel = Cancel::default();
        let mut chat = Conversation::new(&gpu, &llama, Media::default(), 1024).unwrap();
        let mut streamed = String::new();
        let first = chat.ask(&gpu, &llama, &tokenizer, "hello world", &settings, 1, &cancel, |t| streamed.push_str(t)).await.unwrap();
        assert_eq!(streamed, first.text, "the stream adds up to the answer");
        assert_eq!(chat.reused(), 0, "nothing to reuse on the first turn");
        let held_after_first = chat.held().len();
        let second_prompt = chat.prompt_for("hello");
        let second = chat.ask(&gpu, &llama, &tokenizer, "hello", &settings, 1, &cancel, |_| {}).await.unwrap();
        // The first turn's prompt and most of its answer come from the cache.
        let first_prompt = tokenizer.encode_text(&m2ugen_pipeline::chat::instruction_prompt("hello world")).unwrap().len();
        assert!(chat.reused() >= first_prompt && chat.reused() <= held_after_first, "reused {} of {held_after_first} held; the first prompt is {first_prompt}", chat.reused());
        // A fresh run over the whole second prompt gives the same answer.
        let fresh = generate(&gpu, &llama, &[Request { prompt: tokenizer.encode_text(&second_prompt).unwrap(), media: Media::default(), seed: 1 }], &settings, &tokenizer, &cancel, |_| {}).await.unwrap();
        assert_eq!(fresh[0].tokens, second.tokens, "the second answer with the cache and without");
        assert_eq!(fresh[0].text, second.text);
    });
}

#[test]
fn the_encoders_take_exactly_the_converted_tensors() {
    use m2ugen_core::config::{parse, MertConfig, VitConfig, VivitConfig};
    use m2ugen_models::adapter::MediaAdapter;
    use m2ugen_models::mert::Mert;
    use m2ugen_models::vision::VisionConfig;
    use std::collections::BTreeMap;
    let dir = converted("names", None);
    let manifest = m2ugen_weights::Manifest::parse(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    let mert: MertConfig = parse("mert", &manifest.components["mert"]).unwrap();
    let vit = VisionConfig::vit(&parse::<VitConfig>("vit", &manifest.components["vit"]).unwrap());
    let vivit = VisionConfig::vivit(&parse::<VivitConfig>("vivit", &manifest.components["vivit"]).unwrap());
    let dim = 64;
    let mut expected: BTreeMap<String, Vec<usize>> = Mert::tensors("mert", &mert).into_iter().collect();
    expected.extend(vit.tensors("vit"));
    expected.extend(vivit.tensors("vivit"));
    expected.extend(MediaAdapter::tensors("music_adapter", mert.num_hidden_layers + 1, mert.hidden_size, dim, dim));
    expected.extend(MediaAdapter::tensors("image_adapter", vit.patches() + 1, vit.hidden, dim, dim));
    expected.extend(MediaAdapter::tensors("video_adapter", vivit.patches() + 1, vivit.hidden, dim, dim));
    let stored: BTreeMap<String, Vec<usize>> = manifest.tensors.iter().filter(|t| m2ugen_pipeline::features::is_encoder_tensor(&t.name)).map(|t| (t.name.clone(), t.shape.clone())).collect();
    for (name, shape) in &expected {
        assert_eq!(stored.get(name), Some(shape), "{name}");
    }
    let unused: Vec<&String> = stored.keys().filter(|n| !expected.contains_key(*n)).collect();
    assert!(unused.iter().all(|n| n.contains(".pooler.")), "only the poolers (unused by M2UGen) are left: {unused:?}");
}
