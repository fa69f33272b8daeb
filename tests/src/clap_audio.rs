//! CLAP's audio branch against `transformers` on the CLAP audio fixture (`tests/data/clap-audio`:
//! a tiny `ClapModel` at the AudioLDM 2 fixture's geometry and what transformers computes with
//! it; see its `make_fixture.py`). The fixture's `text_encoder/` takes the place of the AudioLDM 2
//! fixture pipeline's own, and the whole goes through the real converter and loader.

use crate::parity::close;
use crate::{Result, Tol};
use anyhow::{ensure, Context};
use m2ugen_core::config::audioldm2::Audioldm2Config;
use m2ugen_gpu::registry::Elem;
use m2ugen_gpu::{Gpu, Recorder};
use m2ugen_media::clap_mel::{clap_mel, stretch_frames};
use m2ugen_models::clap::ClapText;
use m2ugen_models::clap_audio::ClapAudio;
use m2ugen_models::Store;
use m2ugen_weights::safetensors::InMemory;

/// The CLAP audio fixture directory: `M2UGEN_CLAP_AUDIO_FIXTURE`, or the repository's copy.
#[cfg(not(target_arch = "wasm32"))]
pub fn clap_audio_fixture() -> std::path::PathBuf {
    std::env::var_os("M2UGEN_CLAP_AUDIO_FIXTURE").map(std::path::PathBuf::from).unwrap_or_else(|| crate::data_dir().join("clap-audio"))
}

/// The CLAP audio fixture's `io.safetensors`.
#[cfg(not(target_arch = "wasm32"))]
pub fn clap_audio_io() -> InMemory {
    let path = clap_audio_fixture().join("io.safetensors");
    InMemory::parse("io.safetensors", std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

#[cfg(not(target_arch = "wasm32"))]
fn copy_dir(from: &std::path::Path, to: &std::path::Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}

/// The AudioLDM 2 fixture pipeline with the CLAP audio fixture's `text_encoder/` in place of its
/// own, converted (floats as `float`) into a fresh directory named by `tag`.
#[cfg(not(target_arch = "wasm32"))]
pub fn convert_with_clap_audio(tag: &str, float: m2ugen_weights::StoredType) -> std::path::PathBuf {
    let work = std::env::temp_dir().join(format!("m2ugen-clap-audio-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    let pipeline = work.join("pipeline");
    copy_dir(&crate::audioldm2::audioldm2_fixture(), &pipeline).unwrap();
    std::fs::remove_dir_all(pipeline.join("text_encoder")).unwrap();
    copy_dir(&clap_audio_fixture().join("text_encoder"), &pipeline.join("text_encoder")).unwrap();
    let out = work.join("converted");
    let inputs = m2ugen_convert::Inputs { checkpoint: None, params: None, llama: None, tokenizer: None, hf: vec![("audioldm2".into(), pipeline.as_path())], configs: vec![] };
    let options = m2ugen_convert::Options { float, quant: None, shard_bytes: 256 << 10, model: "clap-audio-fixture".into(), kind: None };
    m2ugen_convert::convert(&inputs, &out, &options).unwrap_or_else(|e| panic!("converting {}: {e:#}", pipeline.display()));
    out
}

/// Tolerance of CLAP's audio outputs from the reference's spectrogram: the fixture's text side's
/// (f32 atol 1e-4, rtol 1e-3; f16 rounds every activation); three times that from the waveform,
/// through our own spectrogram (within a few thousandths of a dB of the reference's).
fn tol(elem: Elem, from_waveform: bool) -> Tol {
    let t = crate::music::music_tol(elem);
    if from_waveform { Tol { atol: 3.0 * t.atol, rtol: 3.0 * t.rtol } } else { t }
}

/// Every stage of the audio branch against the fixture: from the reference's spectrograms
/// (stretched here), the pooled output and the normalised embeddings; from the waveforms, through
/// our feature extractor, the embeddings again; the text embeddings of the fixture's two prompts
/// and the logits `exp(logit_scale_t) · text · audio`. `store` holds the converted `audioldm2.*`
/// tensors.
pub async fn check_clap_audio(gpu: &Gpu, elem: Elem, store: &mut Store, config: &Audioldm2Config, io: &InMemory) -> Result<()> {
    let prefix = "audioldm2.clap";
    let audio_config = config.clap.audio(prefix)?.context("the converted model has no CLAP audio_config")?;
    for (name, shape) in ClapAudio::tensors(prefix, &audio_config) {
        let got = store.shape(&name).with_context(|| format!("the converted model lacks {name}"))?;
        ensure!(got == shape.as_slice(), "{name}: shape {got:?}, the model lists {shape:?}");
    }
    let model = ClapAudio::load(gpu, store, prefix, &audio_config)?;
    let text = ClapText::load(gpu, store, prefix, &config.clap)?;
    let dtype = elem.dtype();
    let (bins, frames, channels) = (audio_config.num_mel_bins, audio_config.frames(), audio_config.patch_embed_input_channels);
    let (embeds, embed_shape) = io.f32("out.audio_embeds")?;
    let dim = embed_shape[1];
    let mut settings = m2ugen_pipeline::audioldm2::clap_mel_settings(&audio_config);
    settings.max_samples = io.i64("meta.max_length")?.0[0] as usize;
    let mut ours = Vec::new();
    for i in 0..embed_shape[0] {
        let (features, shape) = io.f32(&format!("out.input_features.{i}"))?;
        ensure!(shape == [channels, shape[1], bins], "out.input_features.{i} has shape {shape:?}");
        let stretched = stretch_frames(&features, channels, shape[1], bins, frames);
        let (waveform, _) = io.f32(&format!("in.waveform_48k.{i}"))?;
        let mel = clap_mel(&waveform, &settings);
        ensure!(mel.len() == features.len(), "clip {i}: our spectrogram has {} values, the reference's {}", mel.len(), features.len());
        let from_wave = stretch_frames(&mel, channels, shape[1], bins, frames);
        let mut rec = Recorder::new(gpu);
        let x = rec.upload("reference spectrogram", &[channels, frames, bins], dtype, &stretched)?;
        let image = model.image(&mut rec, &x)?;
        let pooled = model.pooled(&mut rec, &x)?;
        let embed = model.project(&mut rec, &pooled)?;
        let x = rec.upload("our spectrogram", &[channels, frames, bins], dtype, &from_wave)?;
        let chain = model.embed(&mut rec, &x)?;
        rec.submit()?;
        // What the patch embedding sees: ours channels-last, the reference's channels first.
        let (reference_image, image_shape) = io.f32(&format!("out.image.{i}"))?;
        let (height, width) = (image_shape[1], image_shape[2]);
        ensure!(image.shape() == [1, height, width, channels], "the image has shape {:?}, the reference's {image_shape:?}", image.shape());
        let ours_image = gpu.read(&image).await?;
        let ours_image: Vec<f32> = (0..channels).flat_map(|c| (0..height * width).map(move |p| (c, p))).map(|(c, p)| ours_image[p * channels + c]).collect();
        close(&format!("{elem:?} out.image.{i}"), &ours_image, &reference_image, tol(elem, false))?;
        close(&format!("{elem:?} out.pooled.{i}"), &gpu.read(&pooled).await?, &io.f32(&format!("out.pooled.{i}"))?.0, tol(elem, false))?;
        let reference = &embeds[i * dim..(i + 1) * dim];
        close(&format!("{elem:?} out.audio_embeds[{i}]"), &gpu.read(&embed).await?, reference, tol(elem, false))?;
        let chain = gpu.read(&chain).await?;
        close(&format!("{elem:?} out.audio_embeds[{i}] from the waveform"), &chain, reference, tol(elem, true))?;
        ours.extend(chain);
    }
    let (ids, shape) = io.i64("in.clap_ids")?;
    let ids: Vec<u32> = ids.into_iter().map(|x| x as u32).collect();
    let mask: Vec<bool> = io.i64("in.clap_mask")?.0.into_iter().map(|m| m != 0).collect();
    let mut rec = Recorder::new(gpu);
    let t = text.forward(&mut rec, &ids, &mask, shape[0], shape[1])?;
    rec.submit()?;
    let t = gpu.read(&t).await?;
    close(&format!("{elem:?} out.text_embeds"), &t, &io.f32("out.text_embeds")?.0, tol(elem, false))?;
    let scale = store.values(&format!("{prefix}.logit_scale_t"), &[])?.first().copied().context("logit_scale_t is empty")?.exp();
    let logits: Vec<f32> = t.chunks(dim).flat_map(|row| ours.chunks(dim).map(move |a| scale * row.iter().zip(a).map(|(x, y)| x * y).sum::<f32>())).collect();
    // Logits are cosines times exp(logit_scale_t) (about 14): the embeddings' tolerance, scaled.
    let t = tol(elem, true);
    close(&format!("{elem:?} out.logits_per_text"), &logits, &io.f32("out.logits_per_text")?.0, Tol { atol: t.atol * scale, rtol: t.rtol })?;
    Ok(())
}
