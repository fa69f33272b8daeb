//! T5, MusicGen's decoder, its generation and EnCodec against `transformers` (the MusicGen
//! fixture), converted by our converter and loaded through the real loader, in f32 and f16;
//! EnCodec also against a plain reference on random weights, whole, in chunks, and on bad codes.

use m2ugen_gpu::registry::Elem;
use m2ugen_tests::encodec::{check_bad_codes, check_decode_in_pieces, check_encodec, check_random, check_streaming, check_tensor_list, load_encodec};
use m2ugen_tests::music::{check_embedding_reaches_the_decoder, check_greedy, check_windows, check_logits, check_t5, load_music};
use m2ugen_tests::{block_on, convert_musicgen, musicgen_io, native_elems};
use m2ugen_weights::native::DirFetcher;
use m2ugen_weights::StoredType;

#[test]
fn t5_decoder_and_generation_match_transformers() {
    let dirs = [(StoredType::F32, convert_musicgen("music-f32", StoredType::F32)), (StoredType::F16, convert_musicgen("music-f16", StoredType::F16))];
    block_on("t5_decoder_and_generation_match_transformers", 600, move || async move {
        let io = musicgen_io();
        for elem in native_elems() {
            // f16 activations from f16 weights; f32 from the f32 conversion.
            let dir = if elem == m2ugen_gpu::registry::Elem::F16 { &dirs[1].1 } else { &dirs[0].1 };
            let gpu = m2ugen_tests::gpu(elem).await;
            let music = load_music(&gpu, elem, &DirFetcher(dir.clone())).await.unwrap();
            for (what, result) in [
                ("T5", check_t5(&gpu, elem, &music, &io).await),
                ("decoder logits", check_logits(&gpu, elem, &music, &io).await),
                ("greedy codes", check_greedy(&gpu, elem, &music, &io).await),
                ("embedding mode", check_embedding_reaches_the_decoder(&gpu, elem, &music).await),
                ("windows", check_windows(&gpu, elem, &music, &io).await),
            ] {
                if let Err(e) = result {
                    panic!("{elem:?}: {what}: {e:#}");
                }
            }
        }
        for (_, dir) in &dirs {
            let _ = std::fs::remove_dir_all(dir);
        }
    });
}

#[test]
fn encodec_matches_transformers_whole_and_in_chunks() {
    let dirs = [convert_musicgen("encodec-f32", StoredType::F32), convert_musicgen("encodec-f16", StoredType::F16)];
    block_on("encodec_matches_transformers_whole_and_in_chunks", 600, move || async move {
        let io = musicgen_io();
        for elem in native_elems() {
            // f16 activations from f16 weights; f32 from the f32 conversion.
            let dir = if elem == Elem::F16 { &dirs[1] } else { &dirs[0] };
            let gpu = m2ugen_tests::gpu(elem).await;
            let decoder = load_encodec(&gpu, elem, &DirFetcher(dir.clone())).await.unwrap();
            if let Err(e) = check_encodec(&gpu, elem, &decoder, &io).await {
                panic!("{elem:?}: whole clips: {e:#}");
            }
            if let Err(e) = check_streaming(&gpu, elem, &decoder, &io).await {
                panic!("{elem:?}: in chunks: {e:#}");
            }
        }
        for dir in &dirs {
            let _ = std::fs::remove_dir_all(dir);
        }
    });
}

#[test]
fn encodec_rejects_bad_codes_and_lists_its_tensors() {
    let dir = convert_musicgen("encodec-errors", StoredType::F32);
    block_on("encodec_rejects_bad_codes_and_lists_its_tensors", 300, move || async move {
        let gpu = m2ugen_tests::gpu(Elem::F32).await;
        let decoder = load_encodec(&gpu, Elem::F32, &DirFetcher(dir.clone())).await.unwrap();
        if let Err(e) = check_bad_codes(&gpu, &decoder, &musicgen_io()) {
            panic!("{e:#}");
        }
        if let Err(e) = check_tensor_list(&DirFetcher(dir.clone()), decoder.codebooks()).await {
            panic!("{e:#}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    });
}

#[test]
fn encodec_with_random_weights_matches_a_plain_reference() {
    block_on("encodec_with_random_weights_matches_a_plain_reference", 600, || async {
        for elem in native_elems() {
            let gpu = m2ugen_tests::gpu(elem).await;
            if let Err(e) = check_random(&gpu, elem).await {
                panic!("{elem:?}: {e:#}");
            }
            if let Err(e) = check_decode_in_pieces(elem).await {
                panic!("{elem:?}: {e:#}");
            }
        }
    });
}
