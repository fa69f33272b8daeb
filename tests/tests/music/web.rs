//! The browser half: the converted MusicGen fixture over HTTP (as the page reads a CDN), its T5,
//! decoder, greedy generation and EnCodec against `transformers`, in f32 on WebGPU (embedding
//! mode and windows are checked natively).
//! `scripts/test.sh` converts it into `musicgen/` beside the M2UGen fixture it serves and
//! compiles the URL in (`M2UGEN_FIXTURE_URL`).

use m2ugen_gpu::registry::Elem;
use m2ugen_tests::encodec::{check_encodec, check_streaming};
use m2ugen_tests::music::{check_greedy, check_logits, check_t5, load_music};
use m2ugen_weights::loader::{Fetcher, Reply};
use m2ugen_weights::safetensors::InMemory;
use m2ugen_weights::web::WebFetcher;
use wasm_bindgen_test::wasm_bindgen_test;

wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

/// Where `scripts/test.sh` serves the converted MusicGen fixture.
fn base() -> String {
    match option_env!("M2UGEN_FIXTURE_URL") {
        Some(url) => format!("{}/musicgen", url.trim_end_matches('/')),
        None => panic!("M2UGEN_FIXTURE_URL is not set: the browser music tests read the converted fixture over HTTP; run scripts/test.sh, which converts and serves it"),
    }
}

#[wasm_bindgen_test]
async fn musicgen_and_encodec_match_transformers_in_the_browser() {
    let fetcher = WebFetcher::new(&base());
    let (Reply::Whole(bytes) | Reply::Range(bytes)) = fetcher.fetch("io.safetensors", None).await.unwrap();
    let io = InMemory::parse("io.safetensors", bytes).unwrap();
    let elem = Elem::F32;
    let gpu = m2ugen_tests::gpu(elem).await;
    let music = load_music(&gpu, elem, &fetcher).await.unwrap();
    check_t5(&gpu, elem, &music, &io).await.unwrap_or_else(|e| panic!("T5: {e:#}"));
    check_logits(&gpu, elem, &music, &io).await.unwrap_or_else(|e| panic!("decoder logits: {e:#}"));
    check_greedy(&gpu, elem, &music, &io).await.unwrap_or_else(|e| panic!("greedy codes: {e:#}"));
    check_encodec(&gpu, elem, &music.encodec, &io).await.unwrap_or_else(|e| panic!("EnCodec: {e:#}"));
    check_streaming(&gpu, elem, &music.encodec, &io).await.unwrap_or_else(|e| panic!("EnCodec in chunks: {e:#}"));
}
