//! The whole AudioLDM 2 pipeline natively (f32 and f16) against `diffusers` on the fixture:
//! three guided DDIM steps from the text side, the mel and the audio; M2UGen's embedding mode.

use m2ugen_gpu::registry::Elem;
use m2ugen_pipeline::audioldm2::Audioldm2;
use m2ugen_tests::audioldm2::{audioldm2_io, convert_audioldm2, load_audioldm2_store};
use m2ugen_tests::audioldm2_pipeline::{check_m2ugen_embedding, check_noise, check_three_steps};
use m2ugen_tests::{block_on, native_elems};
use m2ugen_weights::native::DirFetcher;
use m2ugen_weights::StoredType;

#[test]
fn three_steps_mel_audio_and_embedding_mode_match_diffusers() {
    let dirs = [convert_audioldm2("pipeline-f32", StoredType::F32), convert_audioldm2("pipeline-f16", StoredType::F16)];
    block_on("three_steps_mel_audio_and_embedding_mode_match_diffusers", 900, move || async move {
        let io = audioldm2_io();
        for elem in native_elems() {
            // f16 activations from f16 weights; f32 from the f32 conversion.
            let dir = if elem == Elem::F16 { &dirs[1] } else { &dirs[0] };
            let gpu = m2ugen_tests::gpu(elem).await;
            let (mut store, config, _) = load_audioldm2_store(&gpu, elem, &DirFetcher(dir.clone())).await.unwrap_or_else(|e| panic!("{elem:?}: loading {}: {e:#}", dir.display()));
            let model = Audioldm2::build(&gpu, &mut store, config).unwrap_or_else(|e| panic!("{elem:?}: building: {e:#}"));
            for (what, result) in [
                ("three steps, mel and audio", check_three_steps(&gpu, elem, &model, &io).await),
                ("M2UGen's embedding mode", check_m2ugen_embedding(&gpu, elem, &model, &io).await),
                ("seeded noise", check_noise(&model)),
            ] {
                if let Err(e) = result {
                    panic!("{elem:?}: {what}: {e:#}");
                }
            }
        }
        for dir in &dirs {
            let _ = std::fs::remove_dir_all(dir);
        }
    });
}
