//! The browser half: the converted AudioLDM 2 fixture over HTTP (as the page reads a CDN), in f32
//! on WebGPU: the text side, the UNet's first call, the VAE and the vocoder alone, then the whole
//! pipeline (three guided steps, mel, audio) and M2UGen's embedding mode.
//! `scripts/test.sh` converts it into `audioldm2/` beside the M2UGen fixture it serves and
//! compiles the URL in (`M2UGEN_FIXTURE_URL`).

use m2ugen_gpu::registry::Elem;
use m2ugen_pipeline::audioldm2::Audioldm2;
use m2ugen_tests::audioldm2::load_audioldm2_store;
use m2ugen_tests::audioldm2_decoder::{check_unet_first_step, check_vae, check_vocoder};
use m2ugen_tests::audioldm2_pipeline::{check_m2ugen_embedding, check_three_steps};
use m2ugen_tests::audioldm2_text::check_text_side;
use m2ugen_weights::loader::{Fetcher, Reply};
use m2ugen_weights::safetensors::InMemory;
use m2ugen_weights::web::WebFetcher;
use wasm_bindgen_test::wasm_bindgen_test;

wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

/// Where `scripts/test.sh` serves the converted AudioLDM 2 fixture.
fn base() -> String {
    match option_env!("M2UGEN_FIXTURE_URL") {
        Some(url) => format!("{}/audioldm2", url.trim_end_matches('/')),
        None => panic!("M2UGEN_FIXTURE_URL is not set: the browser AudioLDM 2 tests read the converted fixture over HTTP; run scripts/test.sh, which converts and serves it"),
    }
}

#[wasm_bindgen_test]
async fn audioldm2_matches_diffusers_in_the_browser() {
    let fetcher = WebFetcher::new(&base());
    let (Reply::Whole(bytes) | Reply::Range(bytes)) = fetcher.fetch("io.safetensors", None).await.unwrap();
    let io = InMemory::parse("io.safetensors", bytes).unwrap();
    let elem = Elem::F32;
    let gpu = m2ugen_tests::gpu(elem).await;
    // The text side takes its models out of a store of its own.
    let (mut store, config, _) = load_audioldm2_store(&gpu, elem, &fetcher).await.unwrap_or_else(|e| panic!("loading: {e:#}"));
    check_text_side(&gpu, elem, &mut store, &config, &io).await.unwrap_or_else(|e| panic!("text side: {e:#}"));
    let (mut store, config, _) = load_audioldm2_store(&gpu, elem, &fetcher).await.unwrap_or_else(|e| panic!("loading: {e:#}"));
    let model = Audioldm2::build(&gpu, &mut store, config).unwrap_or_else(|e| panic!("building: {e:#}"));
    check_unet_first_step(&gpu, elem, &model.unet, &model.config, &io).await.unwrap_or_else(|e| panic!("UNet, first step: {e:#}"));
    check_vae(&gpu, elem, &model.vae, &io).await.unwrap_or_else(|e| panic!("VAE: {e:#}"));
    check_vocoder(&gpu, elem, &model.vocoder, &io).await.unwrap_or_else(|e| panic!("vocoder: {e:#}"));
    check_three_steps(&gpu, elem, &model, &io).await.unwrap_or_else(|e| panic!("three steps, mel and audio: {e:#}"));
    check_m2ugen_embedding(&gpu, elem, &model, &io).await.unwrap_or_else(|e| panic!("M2UGen's embedding mode: {e:#}"));
}
