//! AudioLDM 2's text side natively (f32 and f16): against `transformers` / `diffusers` on the
//! fixture (converted by our converter, loaded by the real loader), GPT-2's KV cache and CLAP
//! against a plain reference on random weights, and that reference against the fixture.

use m2ugen_gpu::registry::Elem;
use m2ugen_tests::audioldm2::{audioldm2_io, convert_audioldm2, load_audioldm2_store};
use m2ugen_tests::audioldm2_text::{check_clap_random, check_gpt2_cache, check_reference_on_fixture, check_text_side};
use m2ugen_tests::{block_on, native_elems};
use m2ugen_weights::native::DirFetcher;
use m2ugen_weights::StoredType;

#[test]
fn text_side_matches_transformers() {
    let dirs = [convert_audioldm2("text-f32", StoredType::F32), convert_audioldm2("text-f16", StoredType::F16)];
    block_on("text_side_matches_transformers", 600, move || async move {
        let io = audioldm2_io();
        for elem in native_elems() {
            // f16 activations from f16 weights; f32 from the f32 conversion.
            let dir = if elem == Elem::F16 { &dirs[1] } else { &dirs[0] };
            let gpu = m2ugen_tests::gpu(elem).await;
            let (mut store, config, _) = load_audioldm2_store(&gpu, elem, &DirFetcher(dir.clone())).await.unwrap_or_else(|e| panic!("{elem:?}: loading {}: {e:#}", dir.display()));
            if let Err(e) = check_text_side(&gpu, elem, &mut store, &config, &io).await {
                panic!("{elem:?}: {e:#}");
            }
        }
        for dir in &dirs {
            let _ = std::fs::remove_dir_all(dir);
        }
    });
}

#[test]
fn gpt2_cache_and_clap_match_a_plain_reference() {
    block_on("gpt2_cache_and_clap_match_a_plain_reference", 600, || async {
        for elem in native_elems() {
            let gpu = m2ugen_tests::gpu(elem).await;
            if let Err(e) = check_gpt2_cache(&gpu, elem).await {
                panic!("{elem:?}: GPT-2: {e:#}");
            }
            if let Err(e) = check_clap_random(&gpu, elem).await {
                panic!("{elem:?}: CLAP: {e:#}");
            }
        }
    });
}

#[test]
fn plain_reference_matches_transformers() {
    if let Err(e) = check_reference_on_fixture() {
        panic!("{e:#}");
    }
}
