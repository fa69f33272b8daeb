//! What the page and `m2ugen generate` share between a request and music: what a converted model
//! can do (told from its manifest, before anything loads), loading the parts a request needs
//! with progress, and the step from the LLM's answer to the decoder's conditioning.

use crate::chat::Conversation;
use crate::load::{load_store, LoadError};
use crate::music::{Mode, MusicModel};
use crate::{Error, Result};
use m2ugen_core::config::Modality;
use m2ugen_core::DType;
use m2ugen_gpu::{Gpu, GpuTensor, Recorder};
use m2ugen_models::encodec::EncodecDecoder;
use m2ugen_models::llama::Media;
use m2ugen_models::musicgen::Conditioning;
use m2ugen_models::{Llama, OutputProjector};
use m2ugen_weights::loader::{Event, Fetcher, LoadOptions};
use m2ugen_weights::Manifest;

/// The name of the output projector's output weight (its width is the states').
const PROJECTOR_OUT: &str = "output_projector.out_proj.weight";

/// What a converted model can do, from its manifest alone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Abilities {
    /// An LLM with its tokenizer: questions are answered.
    pub chat: bool,
    /// The media the LLM hears (those whose encoder the model has).
    pub hears: Vec<Modality>,
    /// A music decoder (MusicGen): music is made.
    pub music: bool,
    /// The conditioning modes the model can do, the default first.
    pub modes: Vec<Mode>,
}

impl Abilities {
    /// What `manifest`'s model can do.
    pub fn of(manifest: &Manifest) -> Abilities {
        let chat = manifest.components.contains_key("llama") && manifest.tokenizer.is_some();
        let hears = if chat { Modality::ALL.into_iter().filter(|m| manifest.components.contains_key(encoder_component(*m))).collect() } else { Vec::new() };
        let music = manifest.components.contains_key("musicgen");
        let mut modes: Vec<Mode> = if music { [Mode::Caption, Mode::Text, Mode::Embedding].into_iter().filter(|m| mode_problem(manifest, *m).is_none()).collect() } else { Vec::new() };
        if !chat {
            // MusicGen alone: text first (its only mode).
            modes.sort_by_key(|m| *m != Mode::Text);
        }
        Abilities { chat, hears, music, modes }
    }

    /// The mode used when none is asked for: caption with an LLM, text without.
    pub fn default_mode(&self) -> Option<Mode> {
        self.modes.first().copied()
    }
}

/// The manifest component of `modality`'s encoder.
pub fn encoder_component(modality: Modality) -> &'static str {
    match modality {
        Modality::Music => "mert",
        Modality::Image => "vit",
        Modality::Video => "vivit",
    }
}

/// Why `manifest`'s model cannot make music in `mode`, in words that say what to do instead;
/// `None` when it can.
pub fn mode_problem(manifest: &Manifest, mode: Mode) -> Option<String> {
    let model = &manifest.model;
    if !manifest.components.contains_key("musicgen") {
        return Some(format!("the model '{model}' has no music decoder (convert it with --hf musicgen=DIR)"));
    }
    let has_llm = manifest.components.contains_key("llama");
    if mode != Mode::Text && !has_llm {
        return Some(format!("{} mode needs an LLM, and the model '{model}' is MusicGen alone: use text mode", mode.name()));
    }
    if mode != Mode::Embedding && manifest.text_tokenizer.is_none() {
        return Some(format!("{} mode needs T5's tokenizer, and the model '{model}' has none: convert MusicGen from a directory holding its tokenizer.json", mode.name()));
    }
    if mode == Mode::Embedding {
        let Some(out) = manifest.tensor(PROJECTOR_OUT).ok().and_then(|t| t.shape.first().copied()) else {
            return Some(format!("embedding mode needs M2UGen's output projector, and the model '{model}' has none: use caption mode"));
        };
        let t5 = match crate::load::musicgen_config(manifest) {
            Ok(c) => c.text_encoder.d_model,
            Err(e) => return Some(e.to_string()),
        };
        if out != t5 {
            return Some(format!("embedding mode: the output projector gives states of width {out}, but this MusicGen's T5 is {t5} wide (they were not trained together): use caption mode"));
        }
    }
    None
}

/// The answer without M2UGen's output tokens (`[AUD0]`..`[AUD7]`) and the space around them:
/// the caption that caption mode gives T5.
pub fn strip_aud(text: &str) -> String {
    let mut s = text.to_string();
    for i in 0..8 {
        s = s.replace(&format!("[AUD{i}]"), "");
    }
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The features as the LLM takes them.
pub fn as_media(features: &[(Modality, GpuTensor)]) -> Media<'_> {
    let mut media = Media::default();
    for (m, t) in features {
        match m {
            Modality::Music => media.music = Some(t),
            Modality::Image => media.image = Some(t),
            Modality::Video => media.video = Some(t),
        }
    }
    media
}

/// The output projector of the model (its heads are not stored: 4 in every release).
pub async fn load_projector<F: Fetcher>(gpu: &Gpu, dtype: DType, fetcher: &F, manifest: &Manifest, options: &LoadOptions<'_>, on_event: impl FnMut(Event)) -> Result<OutputProjector, LoadError> {
    if manifest.tensor(PROJECTOR_OUT).is_err() {
        return Err(m2ugen_core::Error::Config { field: "output_projector".into(), problem: format!("the model '{}' has no output projector: embedding mode needs M2UGen; use caption mode", manifest.model) }.into());
    }
    let store = load_store(gpu, dtype, fetcher, manifest, |n| n.starts_with("output_projector."), options, on_event).await?;
    let config = m2ugen_models::projector::ProjectorConfig::from_store(&store, 4)?;
    Ok(OutputProjector::load(gpu, &store, config)?)
}

/// EnCodec's decoder alone (what opening a share link needs), and its sample rate.
pub async fn load_encodec<F: Fetcher>(gpu: &Gpu, dtype: DType, fetcher: &F, manifest: &Manifest, options: &LoadOptions<'_>, on_event: impl FnMut(Event)) -> Result<(EncodecDecoder, usize), LoadError> {
    let config = crate::load::musicgen_config(manifest)?;
    let prefix = "musicgen.audio_encoder";
    let mut store = load_store(gpu, dtype, fetcher, manifest, |n| EncodecDecoder::needs(prefix, n), options, on_event).await?;
    let decoder = EncodecDecoder::load(gpu, &mut store, prefix, &config.audio_encoder)?;
    Ok((decoder, config.audio_encoder.sampling_rate))
}

/// The decoder's conditioning once the LLM has answered in `chat`: the answer's text through T5
/// (caption mode), or its `[AUD]` states (`aud`, the tokens' ids) through `projector`
/// (embedding mode). `tracks` tracks, with guidance's null rows when `guided`.
#[allow(clippy::too_many_arguments)]
pub fn conditioning_after_answer(
    gpu: &Gpu,
    music: &MusicModel,
    mode: Mode,
    answer: &str,
    chat: &mut Conversation,
    llama: &Llama,
    aud: &[u32],
    projector: Option<&OutputProjector>,
    tracks: usize,
    guided: bool,
) -> Result<Conditioning> {
    match mode {
        Mode::Caption => {
            let caption = strip_aud(answer);
            let prompts = vec![caption.as_str(); tracks];
            music.text_conditioning(gpu, &prompts, guided)
        }
        Mode::Embedding => {
            let projector = projector.ok_or_else(|| Error::Unsupported("embedding mode needs the output projector, and none is loaded".into()))?;
            let (hidden, embeddings) = chat.aud_states(gpu, llama, aud).map_err(|e| Error::Music(e.to_string()))?;
            let mut rec = Recorder::new(gpu);
            let states = projector.forward(&mut rec, &hidden, &embeddings)?;
            let states = if tracks > 1 { rec.concat(&vec![&states; tracks], 0)? } else { states };
            rec.submit()?;
            music.embedding_conditioning(gpu, &states, tracks, guided)
        }
        Mode::Text => Err(Error::Unsupported("text mode conditions on the prompt alone, not on the LLM's answer".into())),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn manifest(components: &[&str], tokenizer: bool, text_tokenizer: bool, projector_width: Option<usize>, t5_width: usize) -> Manifest {
        let mut music = m2ugen_core::config::MusicgenConfig::tiny();
        music.text_encoder.d_model = t5_width;
        let component = |c: &str| if c == "musicgen" { serde_json::to_value(&music).unwrap() } else { serde_json::Value::Object(Default::default()) };
        let file = |name: &str| m2ugen_weights::FileEntry { file: name.into(), bytes: 1, sha256: "0".repeat(64) };
        let tensor = |w: usize| m2ugen_weights::TensorEntry { name: PROJECTOR_OUT.into(), shape: vec![w, 4], dtype: m2ugen_weights::StoredType::F32, shard: 0, offset: 0, bytes: 16 * w as u64, sha256: "0".repeat(64), continued: Vec::new() };
        Manifest {
            format: m2ugen_weights::manifest::FORMAT.into(),
            model: "m".into(),
            version: "1".into(),
            kind: m2ugen_core::config::ModelKind::M2ugenMusicgen,
            components: components.iter().map(|c| (c.to_string(), component(c))).collect(),
            tokenizer: tokenizer.then(|| file("tokenizer.json")),
            text_tokenizer: text_tokenizer.then(|| file("text-tokenizer.json")),
            clap_tokenizer: None,
            shards: Vec::new(),
            tensors: projector_width.map(tensor).into_iter().collect(),
        }
    }

    #[test]
    fn abilities_follow_the_manifest() {
        let full = manifest(&["llama", "mert", "vit", "musicgen"], true, true, Some(24), 24);
        let a = Abilities::of(&full);
        assert!(a.chat && a.music);
        assert_eq!(a.hears, vec![Modality::Music, Modality::Image]);
        assert_eq!(a.modes, vec![Mode::Caption, Mode::Text, Mode::Embedding]);
        assert_eq!(a.default_mode(), Some(Mode::Caption));

        // The projector and T5 of different widths: no embedding mode.
        let a = Abilities::of(&manifest(&["llama", "musicgen"], true, true, Some(32), 24));
        assert_eq!(a.modes, vec![Mode::Caption, Mode::Text]);
        let problem = mode_problem(&manifest(&["llama", "musicgen"], true, true, Some(32), 24), Mode::Embedding).unwrap();
        assert!(problem.contains("width 32") && problem.contains("24 wide"), "{problem}");

        // MusicGen alone: text only, no chat, nothing heard.
        let alone = manifest(&["musicgen"], false, true, None, 24);
        let a = Abilities::of(&alone);
        assert_eq!((a.chat, a.hears.len(), a.modes.clone()), (false, 0, vec![Mode::Text]));
        assert!(mode_problem(&alone, Mode::Caption).unwrap().contains("needs an LLM"));

        // An LLM alone (MU-LLaMA): chat, no music.
        let a = Abilities::of(&manifest(&["llama", "mert"], true, false, None, 24));
        assert_eq!((a.chat, a.music, a.default_mode()), (true, false, None));
        assert!(mode_problem(&manifest(&["llama"], true, false, None, 24), Mode::Caption).unwrap().contains("no music decoder"));

        // No T5 tokenizer: only embedding.
        let a = Abilities::of(&manifest(&["llama", "musicgen"], true, false, Some(24), 24));
        assert_eq!(a.modes, vec![Mode::Embedding]);
    }

    #[test]
    fn captions_lose_the_aud_tokens() {
        assert_eq!(strip_aud("A calm piano [AUD0][AUD1] piece.  [AUD7]"), "A calm piano piece.");
        assert_eq!(strip_aud("[AUD0]"), "");
    }
}
