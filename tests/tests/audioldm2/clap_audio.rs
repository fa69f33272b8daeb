//! CLAP's audio branch natively (f32 and f16) against `transformers` on the CLAP audio fixture,
//! converted inside the AudioLDM 2 fixture pipeline by our converter and loaded by the real
//! loader.

use m2ugen_gpu::registry::Elem;
use m2ugen_tests::audioldm2::load_audioldm2_store;
use m2ugen_tests::clap_audio::{check_clap_audio, clap_audio_io, convert_with_clap_audio};
use m2ugen_tests::{block_on, native_elems};
use m2ugen_weights::native::DirFetcher;
use m2ugen_weights::StoredType;

#[test]
fn clap_audio_branch_matches_transformers() {
    let dirs = [convert_with_clap_audio("f32", StoredType::F32), convert_with_clap_audio("f16", StoredType::F16)];
    block_on("clap_audio_branch_matches_transformers", 600, move || async move {
        let io = clap_audio_io();
        for elem in native_elems() {
            let dir = if elem == Elem::F16 { &dirs[1] } else { &dirs[0] };
            let gpu = m2ugen_tests::gpu(elem).await;
            let (mut store, config, _) = load_audioldm2_store(&gpu, elem, &DirFetcher(dir.clone())).await.unwrap_or_else(|e| panic!("{elem:?}: loading {}: {e:#}", dir.display()));
            if let Err(e) = check_clap_audio(&gpu, elem, &mut store, &config, &io).await {
                panic!("{elem:?}: {e:#}");
            }
        }
        for dir in &dirs {
            if let Some(work) = dir.parent() {
                let _ = std::fs::remove_dir_all(work);
            }
        }
    });
}
