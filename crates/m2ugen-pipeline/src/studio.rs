//! What the page and `m2ugen generate` share between a request and music: what a converted model
//! can do with each of its decoders, MusicGen and AudioLDM 2 (told from its manifest, before
//! anything loads), loading the parts a request needs with progress, and the step from the
//! LLM's answer to the decoder's conditioning.

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

/// A music decoder a model can have.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Decoder {
    /// MusicGen: EnCodec codes frame by frame, conditioned on T5's states (32 kHz).
    Musicgen,
    /// AudioLDM 2: latent diffusion conditioned on GPT-2's and T5's states (16 kHz).
    Audioldm2,
}

impl Decoder {
    /// Every decoder, in the order a model's are listed (MusicGen first).
    pub const ALL: [Decoder; 2] = [Decoder::Musicgen, Decoder::Audioldm2];

    /// The name the command line and the page take, and the manifest's component.
    pub fn name(self) -> &'static str {
        match self {
            Decoder::Musicgen => "musicgen",
            Decoder::Audioldm2 => "audioldm2",
        }
    }

    /// The decoder's name in prose.
    pub fn title(self) -> &'static str {
        match self {
            Decoder::Musicgen => "MusicGen",
            Decoder::Audioldm2 => "AudioLDM 2",
        }
    }

    /// The classifier-free guidance scale used when none is given: MusicGen's published
    /// generation config (3), AudioLDM 2's in the reference (3.5).
    pub fn default_guidance(self) -> f32 {
        match self {
            Decoder::Musicgen => 3.0,
            Decoder::Audioldm2 => 3.5,
        }
    }

    /// How a converted model gets this decoder.
    fn conversion(self) -> &'static str {
        match self {
            Decoder::Musicgen => "--hf musicgen=DIR",
            Decoder::Audioldm2 => "--diffusers audioldm2=DIR",
        }
    }
}

impl std::str::FromStr for Decoder {
    type Err = Error;

    fn from_str(s: &str) -> Result<Decoder> {
        Decoder::ALL.into_iter().find(|d| d.name() == s).ok_or_else(|| Error::MusicSetting { setting: "decoder", value: s.into(), range: "musicgen or audioldm2" })
    }
}

/// What a converted model can do, from its manifest alone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Abilities {
    /// An LLM with its tokenizer: questions are answered.
    pub chat: bool,
    /// The media the LLM hears (those whose encoder the model has).
    pub hears: Vec<Modality>,
    /// The music decoders the model has, MusicGen first (the default when there are both).
    pub decoders: Vec<Decoder>,
    /// For each of [`Abilities::decoders`], in its order, the conditioning modes it can do, the
    /// default first (possibly none: a decoder converted without what any mode needs).
    pub modes: Vec<(Decoder, Vec<Mode>)>,
}

impl Abilities {
    /// What `manifest`'s model can do.
    pub fn of(manifest: &Manifest) -> Abilities {
        let chat = manifest.components.contains_key("llama") && manifest.tokenizer.is_some();
        let hears = if chat { Modality::ALL.into_iter().filter(|m| manifest.components.contains_key(encoder_component(*m))).collect() } else { Vec::new() };
        let decoders: Vec<Decoder> = Decoder::ALL.into_iter().filter(|d| manifest.components.contains_key(d.name())).collect();
        let modes = decoders
            .iter()
            .map(|&d| {
                let mut modes: Vec<Mode> = [Mode::Caption, Mode::Text, Mode::Embedding].into_iter().filter(|m| mode_problem(manifest, d, *m).is_none()).collect();
                if !chat {
                    // The decoder alone: text first (its only mode).
                    modes.sort_by_key(|m| *m != Mode::Text);
                }
                (d, modes)
            })
            .collect();
        Abilities { chat, hears, decoders, modes }
    }

    /// Whether the model has `decoder`.
    pub fn has(&self, decoder: Decoder) -> bool {
        self.decoders.contains(&decoder)
    }

    /// The decoder used when none is asked for: the only one, MusicGen when there are both.
    pub fn default_decoder(&self) -> Option<Decoder> {
        self.decoders.first().copied()
    }

    /// The modes `decoder` can do, the default first; none when the model lacks it.
    pub fn modes_for(&self, decoder: Decoder) -> &[Mode] {
        self.modes.iter().find(|(d, _)| *d == decoder).map_or(&[], |(_, m)| m.as_slice())
    }

    /// The mode `decoder` uses when none is asked for: caption with an LLM, text without.
    pub fn default_mode_for(&self, decoder: Decoder) -> Option<Mode> {
        self.modes_for(decoder).first().copied()
    }

    /// The default decoder's default mode.
    pub fn default_mode(&self) -> Option<Mode> {
        self.default_decoder().and_then(|d| self.default_mode_for(d))
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

/// Why `manifest`'s model cannot make music with `decoder` in `mode`, in words that say what
/// to do instead; `None` when it can.
///
/// MusicGen: text mode needs T5's tokenizer; caption mode an LLM too; embedding mode an LLM and
/// an output projector as wide as T5. AudioLDM 2: text mode needs its text side (CLAP, T5, the
/// projection, GPT-2) and both tokenizers; caption mode an LLM too; embedding mode an LLM and
/// an output projector of `128 x T5's width + 8 x GPT-2's` (M2UGen-AudioLDM2's).
pub fn mode_problem(manifest: &Manifest, decoder: Decoder, mode: Mode) -> Option<String> {
    let model = &manifest.model;
    if !manifest.components.contains_key(decoder.name()) {
        let others: Vec<&str> = Decoder::ALL.into_iter().filter(|d| manifest.components.contains_key(d.name())).map(Decoder::name).collect();
        return Some(match others.first() {
            None => format!("the model '{model}' has no music decoder (convert MusicGen into it with --hf musicgen=DIR, or AudioLDM 2 with --diffusers audioldm2=DIR)"),
            Some(other) => format!("the model '{model}' has no {} decoder (convert it with {}): use the decoder {other}", decoder.title(), decoder.conversion()),
        });
    }
    let has_llm = manifest.components.contains_key("llama");
    if mode != Mode::Text && !has_llm {
        return Some(format!("{} mode needs an LLM, and the model '{model}' is {} alone: use text mode", mode.name(), decoder.title()));
    }
    match decoder {
        Decoder::Musicgen => musicgen_problem(manifest, mode),
        Decoder::Audioldm2 => audioldm2_problem(manifest, mode),
    }
}

fn musicgen_problem(manifest: &Manifest, mode: Mode) -> Option<String> {
    let model = &manifest.model;
    if mode != Mode::Embedding && manifest.text_tokenizer.is_none() {
        return Some(format!("{} mode needs T5's tokenizer, and the model '{model}' has none: convert MusicGen from a directory holding its tokenizer.json", mode.name()));
    }
    if mode == Mode::Embedding {
        let out = match projector_width(manifest) {
            Ok(out) => out,
            Err(problem) => return Some(problem),
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

fn audioldm2_problem(manifest: &Manifest, mode: Mode) -> Option<String> {
    let model = &manifest.model;
    let config = match crate::load::audioldm2_config(manifest) {
        Ok(c) => c,
        Err(e) => return Some(e.to_string()),
    };
    if mode == Mode::Embedding {
        let out = match projector_width(manifest) {
            Ok(out) => out,
            Err(problem) => return Some(problem),
        };
        let (rows, t5, steps, gpt2) = (crate::audioldm2::PROJECTOR_ROWS, config.t5.d_model, config.gpt2.new_tokens(), config.gpt2.n_embd);
        let want = rows * t5 + steps * gpt2;
        if out != want {
            return Some(format!("embedding mode: the output projector gives {out} values, but this AudioLDM 2 takes {rows} x {t5} (T5) + {steps} x {gpt2} (GPT-2) = {want} (the LLM was not trained with it: M2UGen-AudioLDM2's is): use caption mode"));
        }
        return None;
    }
    let text_side = ["clap", "t5", "projection", "gpt2"].map(|part| format!("{}.{part}.", crate::audioldm2::PREFIX));
    if let Some(missing) = text_side.iter().find(|p| !manifest.tensors.iter().any(|t| t.name.starts_with(p.as_str()))) {
        return Some(format!("{} mode needs AudioLDM 2's text encoders, and the model '{model}' has no {missing}* tensors: convert the whole pipeline with --diffusers audioldm2=DIR", mode.name()));
    }
    if manifest.text_tokenizer.is_none() {
        return Some(format!("{} mode needs T5's tokenizer, and the model '{model}' has none: convert AudioLDM 2 from a pipeline directory holding tokenizer_2/tokenizer.json", mode.name()));
    }
    if manifest.clap_tokenizer.is_none() {
        return Some(format!("{} mode needs CLAP's tokenizer, and the model '{model}' has none: convert AudioLDM 2 from a pipeline directory holding tokenizer/ (tokenizer.json, or RoBERTa's vocab.json and merges.txt)", mode.name()));
    }
    None
}

/// The output projector's width (what it writes per `[AUD]` group), or why there is none.
fn projector_width(manifest: &Manifest) -> Result<usize, String> {
    manifest
        .tensor(PROJECTOR_OUT)
        .ok()
        .and_then(|t| t.shape.first().copied())
        .ok_or_else(|| format!("embedding mode needs M2UGen's output projector, and the model '{}' has none: use caption mode", manifest.model))
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
            let states = projector_states(gpu, chat, llama, aud, projector)?;
            let states = if tracks > 1 {
                let mut rec = Recorder::new(gpu);
                let states = rec.concat(&vec![&states; tracks], 0)?;
                rec.submit()?;
                states
            } else {
                states
            };
            music.embedding_conditioning(gpu, &states, tracks, guided)
        }
        Mode::Text => Err(Error::Unsupported("text mode conditions on the prompt alone, not on the LLM's answer".into())),
    }
}

/// Embedding mode once the LLM has answered in `chat`: its `[AUD]` states (`aud`, the tokens'
/// ids) through `projector`, unscaled: `(queries, width)`, MusicGen's `(128, T5 width)` or
/// AudioLDM 2's one row for [`crate::audioldm2::make_audioldm2_embedding`].
pub fn projector_states(gpu: &Gpu, chat: &mut Conversation, llama: &Llama, aud: &[u32], projector: Option<&OutputProjector>) -> Result<GpuTensor> {
    let projector = projector.ok_or_else(|| Error::Unsupported("embedding mode needs the output projector, and none is loaded".into()))?;
    let (hidden, embeddings) = chat.aud_states(gpu, llama, aud).map_err(|e| Error::Music(e.to_string()))?;
    let mut rec = Recorder::new(gpu);
    let states = projector.forward(&mut rec, &hidden, &embeddings)?;
    rec.submit()?;
    Ok(states)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use m2ugen_core::config::audioldm2::Audioldm2Config;

    /// A manifest with `components`, the LLM's tokenizer, T5's and CLAP's, the output
    /// projector of `projector_width` and MusicGen's T5 of `t5_width`; AudioLDM 2 (the
    /// fixture's geometry: 128 x 32 + 8 x 16 = 4224) with its text side when `text_side`.
    struct Spec<'a> {
        components: &'a [&'a str],
        tokenizer: bool,
        text_tokenizer: bool,
        clap_tokenizer: bool,
        projector_width: Option<usize>,
        t5_width: usize,
        text_side: bool,
    }

    impl<'a> Spec<'a> {
        fn new(components: &'a [&'a str]) -> Spec<'a> {
            Spec { components, tokenizer: true, text_tokenizer: true, clap_tokenizer: true, projector_width: None, t5_width: 24, text_side: true }
        }
    }

    fn manifest(s: Spec) -> Manifest {
        let mut music = m2ugen_core::config::MusicgenConfig::tiny();
        music.text_encoder.d_model = s.t5_width;
        let component = |c: &str| match c {
            "musicgen" => serde_json::to_value(&music).unwrap(),
            "audioldm2" => serde_json::to_value(Audioldm2Config::tiny()).unwrap(),
            _ => serde_json::Value::Object(Default::default()),
        };
        let file = |name: &str| m2ugen_weights::FileEntry { file: name.into(), bytes: 1, sha256: "0".repeat(64) };
        let tensor = |name: String, shape: Vec<usize>| m2ugen_weights::TensorEntry { name, shape, dtype: m2ugen_weights::StoredType::F32, shard: 0, offset: 0, bytes: 4, sha256: "0".repeat(64), continued: Vec::new() };
        let mut tensors: Vec<_> = s.projector_width.map(|w| tensor(PROJECTOR_OUT.into(), vec![w, 4])).into_iter().collect();
        if s.components.contains(&"audioldm2") {
            tensors.push(tensor("audioldm2.unet.conv_in.weight".into(), vec![1]));
            if s.text_side {
                tensors.extend(["clap", "t5", "projection", "gpt2"].map(|p| tensor(format!("audioldm2.{p}.w"), vec![1])));
            }
        }
        Manifest {
            format: m2ugen_weights::manifest::FORMAT.into(),
            model: "m".into(),
            version: "1".into(),
            kind: m2ugen_core::config::ModelKind::M2ugenMusicgen,
            components: s.components.iter().map(|c| (c.to_string(), component(c))).collect(),
            tokenizer: s.tokenizer.then(|| file("tokenizer.json")),
            text_tokenizer: s.text_tokenizer.then(|| file("text-tokenizer.json")),
            clap_tokenizer: s.clap_tokenizer.then(|| file("clap-tokenizer.json")),
            shards: Vec::new(),
            tensors,
        }
    }

    const ALL_MODES: [Mode; 3] = [Mode::Caption, Mode::Text, Mode::Embedding];

    #[test]
    fn abilities_follow_the_manifest() {
        let full = manifest(Spec { projector_width: Some(24), ..Spec::new(&["llama", "mert", "vit", "musicgen"]) });
        let a = Abilities::of(&full);
        assert!(a.chat);
        assert_eq!((a.decoders.clone(), a.default_decoder()), (vec![Decoder::Musicgen], Some(Decoder::Musicgen)));
        assert_eq!(a.hears, vec![Modality::Music, Modality::Image]);
        assert_eq!(a.modes_for(Decoder::Musicgen), [Mode::Caption, Mode::Text, Mode::Embedding]);
        assert_eq!(a.modes_for(Decoder::Audioldm2), [], "no AudioLDM 2, no modes");
        assert_eq!(a.default_mode(), Some(Mode::Caption));
        let problem = mode_problem(&full, Decoder::Audioldm2, Mode::Text).unwrap();
        assert!(problem.contains("no AudioLDM 2 decoder") && problem.contains("--diffusers audioldm2=DIR") && problem.contains("use the decoder musicgen"), "{problem}");

        // The projector and T5 of different widths: no embedding mode.
        let narrow = manifest(Spec { projector_width: Some(32), ..Spec::new(&["llama", "musicgen"]) });
        assert_eq!(Abilities::of(&narrow).modes_for(Decoder::Musicgen), [Mode::Caption, Mode::Text]);
        let problem = mode_problem(&narrow, Decoder::Musicgen, Mode::Embedding).unwrap();
        assert!(problem.contains("width 32") && problem.contains("24 wide"), "{problem}");

        // MusicGen alone: text only, no chat, nothing heard.
        let alone = manifest(Spec { tokenizer: false, ..Spec::new(&["musicgen"]) });
        let a = Abilities::of(&alone);
        assert_eq!((a.chat, a.hears.len(), a.modes_for(Decoder::Musicgen)), (false, 0, &[Mode::Text][..]));
        assert!(mode_problem(&alone, Decoder::Musicgen, Mode::Caption).unwrap().contains("needs an LLM, and the model 'm' is MusicGen alone: use text mode"));

        // An LLM alone (MU-LLaMA): chat, no music.
        let a = Abilities::of(&manifest(Spec { text_tokenizer: false, ..Spec::new(&["llama", "mert"]) }));
        assert_eq!((a.chat, a.decoders.len(), a.default_decoder(), a.default_mode()), (true, 0, None, None));
        for d in Decoder::ALL {
            let problem = mode_problem(&manifest(Spec::new(&["llama"])), d, Mode::Caption).unwrap();
            assert!(problem.contains("has no music decoder") && problem.contains("--hf musicgen=DIR") && problem.contains("--diffusers audioldm2=DIR"), "{problem}");
        }

        // No T5 tokenizer: only embedding.
        let a = Abilities::of(&manifest(Spec { text_tokenizer: false, projector_width: Some(24), ..Spec::new(&["llama", "musicgen"]) }));
        assert_eq!(a.modes_for(Decoder::Musicgen), [Mode::Embedding]);
    }

    #[test]
    fn audioldm2_modes_need_its_text_side_tokenizers_llm_and_a_projector_of_its_width() {
        // AudioLDM 2 alone, with its text side and both tokenizers: text mode only.
        let alone = manifest(Spec { tokenizer: false, ..Spec::new(&["audioldm2"]) });
        let a = Abilities::of(&alone);
        assert_eq!((a.chat, a.decoders.clone(), a.default_mode()), (false, vec![Decoder::Audioldm2], Some(Mode::Text)));
        assert!(mode_problem(&alone, Decoder::Audioldm2, Mode::Caption).unwrap().contains("caption mode needs an LLM, and the model 'm' is AudioLDM 2 alone: use text mode"));
        let problem = mode_problem(&alone, Decoder::Musicgen, Mode::Text).unwrap();
        assert!(problem.contains("no MusicGen decoder") && problem.contains("--hf musicgen=DIR") && problem.contains("use the decoder audioldm2"), "{problem}");

        // M2UGen-AudioLDM2: a projector of 128 x 32 + 8 x 16 = 4224 values; every mode, caption first.
        let m2ugen = manifest(Spec { projector_width: Some(4224), ..Spec::new(&["llama", "audioldm2"]) });
        let a = Abilities::of(&m2ugen);
        assert_eq!((a.default_decoder(), a.modes_for(Decoder::Audioldm2)), (Some(Decoder::Audioldm2), &ALL_MODES[..]));
        assert_eq!(a.default_mode(), Some(Mode::Caption));
        // ... whose projector was made for another AudioLDM 2.
        let other = manifest(Spec { projector_width: Some(4225), ..Spec::new(&["llama", "audioldm2"]) });
        assert_eq!(Abilities::of(&other).modes_for(Decoder::Audioldm2), [Mode::Caption, Mode::Text]);
        let problem = mode_problem(&other, Decoder::Audioldm2, Mode::Embedding).unwrap();
        assert!(problem.contains("gives 4225 values") && problem.contains("128 x 32 (T5) + 8 x 16 (GPT-2) = 4224") && problem.ends_with("use caption mode"), "{problem}");
        let none = manifest(Spec::new(&["llama", "audioldm2"]));
        assert!(mode_problem(&none, Decoder::Audioldm2, Mode::Embedding).unwrap().contains("needs M2UGen's output projector"));

        // Without its text side (converted from the UNet, VAE and vocoder alone): embedding only.
        let bare = manifest(Spec { text_side: false, projector_width: Some(4224), ..Spec::new(&["llama", "audioldm2"]) });
        assert_eq!(Abilities::of(&bare).modes_for(Decoder::Audioldm2), [Mode::Embedding]);
        let problem = mode_problem(&bare, Decoder::Audioldm2, Mode::Caption).unwrap();
        assert!(problem.contains("needs AudioLDM 2's text encoders") && problem.contains("audioldm2.clap.*"), "{problem}");
        // Without either tokenizer: no text nor caption mode, each refusal naming the folder.
        let no_t5 = manifest(Spec { text_tokenizer: false, ..Spec::new(&["audioldm2"]) });
        assert!(mode_problem(&no_t5, Decoder::Audioldm2, Mode::Text).unwrap().contains("T5's tokenizer") && mode_problem(&no_t5, Decoder::Audioldm2, Mode::Text).unwrap().contains("tokenizer_2/tokenizer.json"));
        let no_clap = manifest(Spec { clap_tokenizer: false, ..Spec::new(&["audioldm2"]) });
        assert!(mode_problem(&no_clap, Decoder::Audioldm2, Mode::Text).unwrap().contains("CLAP's tokenizer"));
        assert_eq!(Abilities::of(&no_clap).modes_for(Decoder::Audioldm2), []);

        // Both decoders: MusicGen is the default, each has its own modes.
        let both = manifest(Spec { projector_width: Some(24), ..Spec::new(&["llama", "musicgen", "audioldm2"]) });
        let a = Abilities::of(&both);
        assert_eq!((a.decoders.clone(), a.default_decoder()), (vec![Decoder::Musicgen, Decoder::Audioldm2], Some(Decoder::Musicgen)));
        assert_eq!(a.modes_for(Decoder::Musicgen), ALL_MODES);
        assert_eq!(a.modes_for(Decoder::Audioldm2), [Mode::Caption, Mode::Text], "a projector for MusicGen is not one for AudioLDM 2");
    }

    #[test]
    fn decoders_are_named_and_parsed() {
        for d in Decoder::ALL {
            assert_eq!(d.name().parse::<Decoder>(), Ok(d));
        }
        assert_eq!("audioldm2".parse::<Decoder>(), Ok(Decoder::Audioldm2));
        assert!("riffusion".parse::<Decoder>().unwrap_err().to_string().contains("musicgen or audioldm2"));
    }

    #[test]
    fn captions_lose_the_aud_tokens() {
        assert_eq!(strip_aud("A calm piano [AUD0][AUD1] piece.  [AUD7]"), "A calm piano piece.");
        assert_eq!(strip_aud("[AUD0]"), "");
    }
}
