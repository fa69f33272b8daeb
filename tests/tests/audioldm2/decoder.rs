//! AudioLDM 2's UNet, VAE decoder and vocoder natively (f32 and f16) against `diffusers` /
//! `transformers` on the fixture, converted by our converter and loaded by the real loader (also
//! in batches of two, and at an odd latent height); their tensor lists against the converted
//! manifest.

use m2ugen_gpu::registry::Elem;
use m2ugen_tests::audioldm2::{audioldm2_io, convert_audioldm2, load_audioldm2_store};
use m2ugen_tests::audioldm2_decoder::{check_batches, check_nearest_to_odd_sizes, check_tensor_lists, check_unet_first_step, check_unet_odd_height, check_vae, check_vocoder, load_decoder};
use m2ugen_tests::{block_on, native_elems};
use m2ugen_weights::native::DirFetcher;
use m2ugen_weights::StoredType;

#[test]
fn unet_vae_and_vocoder_match_diffusers() {
    let dirs = [convert_audioldm2("decoder-f32", StoredType::F32), convert_audioldm2("decoder-f16", StoredType::F16)];
    block_on("unet_vae_and_vocoder_match_diffusers", 600, move || async move {
        let io = audioldm2_io();
        for elem in native_elems() {
            // f16 activations from f16 weights; f32 from the f32 conversion.
            let dir = if elem == Elem::F16 { &dirs[1] } else { &dirs[0] };
            let gpu = m2ugen_tests::gpu(elem).await;
            let (mut store, config, manifest) = load_audioldm2_store(&gpu, elem, &DirFetcher(dir.clone())).await.unwrap_or_else(|e| panic!("{elem:?}: loading {}: {e:#}", dir.display()));
            if let Err(e) = check_tensor_lists(&manifest, &config) {
                panic!("{elem:?}: tensor lists: {e:#}");
            }
            let (unet, mut vae, vocoder) = load_decoder(&gpu, &mut store, &config).unwrap_or_else(|e| panic!("{elem:?}: {e:#}"));
            for (what, result) in [
                ("VAE decoder", check_vae(&gpu, elem, &vae, &io).await),
                ("vocoder", check_vocoder(&gpu, elem, &vocoder, &io).await),
                ("batches", check_batches(&gpu, elem, &mut vae, &vocoder, &io).await),
                ("UNet, first step", check_unet_first_step(&gpu, elem, &unet, &config, &io).await),
                ("UNet, odd height", check_unet_odd_height(&gpu, elem, &unet, &io).await),
                ("upsampling to odd sizes", check_nearest_to_odd_sizes(&gpu, elem).await),
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
