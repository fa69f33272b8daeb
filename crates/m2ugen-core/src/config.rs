//! Model configurations: plain structs with the paper's sizes and the test fixtures' sizes.
//! Widths are never written as literals elsewhere: code asks a config.
//!
//! Each component's configuration is stored in the manifest as its original file has it (Meta's
//! `params.json`, Hugging Face's `config.json`); [`parse`] reads it into the typed form here
//! ([`LlamaParams`], [`MertConfig`], [`VitConfig`], [`VivitConfig`], [`T5Config`],
//! [`MusicgenConfig`] with [`MusicgenDecoderConfig`] and [`EncodecConfig`]), and an error names
//! the field. The manifest also records the [`ModelKind`].

pub mod audioldm2;

/// A kind of media that conditions the LLM through the adapter prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Modality {
    /// Music (MERT features).
    Music,
    /// An image (ViT features).
    Image,
    /// A video (ViViT features).
    Video,
}

impl Modality {
    /// Every modality.
    pub const ALL: [Modality; 3] = [Modality::Music, Modality::Image, Modality::Video];

    /// M2UGen's adapter layers: 6 music, 6 image, 6 video (the last 18 layers).
    pub fn m2ugen_prefix() -> Vec<Modality> {
        [Modality::Music; 6].into_iter().chain([Modality::Image; 6]).chain([Modality::Video; 6]).collect()
    }
}

/// LLaMA geometry, with the M2UGen additions (output tokens, adapter prefix).
#[derive(Clone, Debug, PartialEq)]
pub struct LlamaConfig {
    /// Model width.
    pub dim: usize,
    /// Transformer layers.
    pub n_layers: usize,
    /// Query heads.
    pub n_heads: usize,
    /// Key/value heads (grouped-query attention when fewer than `n_heads`).
    pub n_kv_heads: usize,
    /// Hidden width of the SwiGLU feed-forward.
    pub ffn_hidden: usize,
    /// Vocabulary, added tokens included.
    pub vocab: usize,
    /// RMSNorm epsilon.
    pub norm_eps: f32,
    /// RoPE base.
    pub rope_theta: f32,
    /// Longest sequence the KV cache holds.
    pub max_seq: usize,
    /// The adapter layers, the last `prefix.len()` layers: which media each takes.
    pub prefix: Vec<Modality>,
}

impl LlamaConfig {
    /// Meta's feed-forward width: `multiple_of * ceil((multiplier * 2/3 * 4 dim) / multiple_of)`.
    pub fn ffn_hidden_of(dim: usize, multiple_of: usize, ffn_dim_multiplier: Option<f32>) -> usize {
        let mut hidden = 2 * (4 * dim) / 3;
        if let Some(m) = ffn_dim_multiplier {
            hidden = (m * hidden as f32) as usize;
        }
        multiple_of * hidden.div_ceil(multiple_of)
    }

    /// LLaMA-2 7B as M2UGen uses it: 32000 tokens plus `[AUD0]..[AUD7]`.
    pub fn llama2_7b_m2ugen() -> Self {
        LlamaConfig {
            dim: 4096,
            n_layers: 32,
            n_heads: 32,
            n_kv_heads: 32,
            ffn_hidden: Self::ffn_hidden_of(4096, 256, None),
            vocab: 32000 + 8,
            norm_eps: 1e-5,
            rope_theta: 10000.0,
            max_seq: 4096,
            prefix: Modality::m2ugen_prefix(),
        }
    }

    /// MU-LLaMA: LLaMA-2 7B, 32000 tokens, the last 20 layers take the music feature.
    pub fn mu_llama() -> Self {
        LlamaConfig { vocab: 32000, prefix: vec![Modality::Music; 20], ..Self::llama2_7b_m2ugen() }
    }

    /// The reference fixture's size (`fixtures/reference-m2ugen/llama/params.json`): dim 64,
    /// 20 layers, 4 heads, `multiple_of` 32, 256 tokens plus 8 `[AUD]` tokens.
    pub fn tiny() -> Self {
        LlamaConfig {
            dim: 64,
            n_layers: 20,
            n_heads: 4,
            n_kv_heads: 4,
            ffn_hidden: Self::ffn_hidden_of(64, 32, None),
            vocab: 256 + 8,
            norm_eps: 1e-5,
            rope_theta: 10000.0,
            max_seq: 512,
            prefix: Modality::m2ugen_prefix(),
        }
    }

    /// Width of one head.
    pub fn head_dim(&self) -> usize {
        self.dim / self.n_heads
    }
}

/// What a converted model is, as its manifest's `kind` records it (the converter writes it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ModelKind {
    /// M2UGen with the MusicGen decoder: the LLM with 18 adapter layers (6 music, 6 image, 6
    /// video), `[AUD0..7]`, and the output projector to MusicGen's conditioning width.
    M2ugenMusicgen,
    /// M2UGen with the AudioLDM 2 decoder (a wider output projector).
    M2ugenAudioldm2,
    /// MU-LLaMA, the music question-answering model: 20 music adapter layers, no output tokens.
    MuLlama,
    /// MusicGen alone (text to music): T5, the decoder and EnCodec.
    Musicgen,
    /// AudioLDM 2 alone (text to music by latent diffusion): CLAP, T5, GPT-2, the UNet, the VAE
    /// and HiFi-GAN.
    Audioldm2,
    /// A plain LLaMA (no adapter layers).
    Llama,
    /// Components with no model around them (encoders or decoders converted on their own).
    Components,
}

impl ModelKind {
    /// The name the manifest uses.
    pub fn name(self) -> &'static str {
        match self {
            ModelKind::M2ugenMusicgen => "m2ugen-musicgen",
            ModelKind::M2ugenAudioldm2 => "m2ugen-audioldm2",
            ModelKind::MuLlama => "mu-llama",
            ModelKind::Musicgen => "musicgen",
            ModelKind::Audioldm2 => "audioldm2",
            ModelKind::Llama => "llama",
            ModelKind::Components => "components",
        }
    }

    /// Which media each adapter layer of the LLM takes (the last layers), by kind.
    pub fn adapter_layers(self) -> Vec<Modality> {
        match self {
            ModelKind::M2ugenMusicgen | ModelKind::M2ugenAudioldm2 => Modality::m2ugen_prefix(),
            ModelKind::MuLlama => vec![Modality::Music; 20],
            _ => Vec::new(),
        }
    }
}

impl std::fmt::Display for ModelKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Reads component `component`'s stored configuration as `T`; an error names the field
/// (`musicgen.decoder.hidden_size: invalid type: string "x", expected usize`).
pub fn parse<T: serde::de::DeserializeOwned>(component: &str, value: &serde_json::Value) -> crate::Result<T> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." { component.to_string() } else { format!("{component}.{path}") };
        crate::Error::Config { field, problem: e.into_inner().to_string() }
    })
}

/// Fails naming `field` unless `ok`.
pub fn check(ok: bool, field: impl Into<String>, problem: impl Into<String>) -> crate::Result<()> {
    if ok { Ok(()) } else { Err(crate::Error::Config { field: field.into(), problem: problem.into() }) }
}

/// LLaMA's `params.json` in Meta's layout, as the `llama` component stores it (the converter
/// writes this form for Hugging Face models too).
#[derive(Clone, Debug, PartialEq, serde::Deserialize, serde::Serialize)]
pub struct LlamaParams {
    /// Model width.
    pub dim: usize,
    /// Layers.
    pub n_layers: usize,
    /// Query heads.
    pub n_heads: usize,
    /// Key/value heads (grouped-query attention); `n_heads` when absent.
    #[serde(default)]
    pub n_kv_heads: Option<usize>,
    /// Vocabulary (-1 in Meta's files: taken from the embedding table).
    #[serde(default)]
    pub vocab_size: Option<i64>,
    /// Feed-forward rounding (the width is taken from the stored weights).
    #[serde(default)]
    pub multiple_of: Option<usize>,
    /// Feed-forward width multiplier.
    #[serde(default)]
    pub ffn_dim_multiplier: Option<f32>,
    /// RMSNorm epsilon.
    #[serde(default = "default_norm_eps")]
    pub norm_eps: f32,
    /// RoPE base.
    #[serde(default = "default_rope_theta")]
    pub rope_theta: f32,
}

fn default_norm_eps() -> f32 {
    1e-5
}

fn default_rope_theta() -> f32 {
    10000.0
}

impl LlamaConfig {
    /// The geometry from the stored `params` and what the weights' shapes say: the vocabulary
    /// (embedding rows), the feed-forward width, and the adapter layers of the model's kind.
    pub fn from_params(params: &LlamaParams, vocab: usize, ffn_hidden: usize, prefix: Vec<Modality>, max_seq: usize) -> crate::Result<Self> {
        let kv = params.n_kv_heads.unwrap_or(params.n_heads);
        check(params.dim > 0 && params.n_heads > 0 && params.dim % params.n_heads == 0, "llama.n_heads", format!("{} heads do not divide dim {}", params.n_heads, params.dim))?;
        check(kv > 0 && params.n_heads % kv == 0, "llama.n_kv_heads", format!("{kv} key/value heads do not divide {} heads", params.n_heads))?;
        check(prefix.len() <= params.n_layers, "llama.n_layers", format!("{} layers, fewer than the {} adapter layers of this kind of model", params.n_layers, prefix.len()))?;
        Ok(LlamaConfig {
            dim: params.dim,
            n_layers: params.n_layers,
            n_heads: params.n_heads,
            n_kv_heads: kv,
            ffn_hidden,
            vocab,
            norm_eps: params.norm_eps,
            rope_theta: params.rope_theta,
            max_seq,
            prefix,
        })
    }
}

/// An activation function as Hugging Face configs name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub enum Activation {
    /// Exact (erf) GELU.
    #[serde(rename = "gelu")]
    Gelu,
    /// GELU in its tanh form.
    #[serde(alias = "gelu_new", alias = "gelu_fast", alias = "gelu_pytorch_tanh")]
    #[serde(rename = "gelu_tanh")]
    GeluTanh,
    /// ReLU.
    #[serde(rename = "relu")]
    Relu,
    /// SiLU (swish).
    #[serde(rename = "silu", alias = "swish")]
    Silu,
}

/// MERT-v1 as a Hugging Face `HubertModel` config (the `mert` component). MERT's own config
/// class (`MERTConfig`) carries the same fields plus ones this port does not use (CQT, deepnorm,
/// which the released MERT-v1 models leave off).
#[derive(Clone, Debug, PartialEq, serde::Deserialize, serde::Serialize)]
pub struct MertConfig {
    /// Transformer width.
    pub hidden_size: usize,
    /// Transformer layers.
    pub num_hidden_layers: usize,
    /// Attention heads.
    pub num_attention_heads: usize,
    /// Feed-forward width.
    pub intermediate_size: usize,
    /// Feed-forward activation.
    #[serde(default = "gelu")]
    pub hidden_act: Activation,
    /// LayerNorm epsilon.
    #[serde(default = "default_norm_eps")]
    pub layer_norm_eps: f32,
    /// Channels of each feature-extractor convolution.
    pub conv_dim: Vec<usize>,
    /// Kernel of each.
    pub conv_kernel: Vec<usize>,
    /// Stride of each.
    pub conv_stride: Vec<usize>,
    /// Whether those convolutions have biases.
    #[serde(default)]
    pub conv_bias: bool,
    /// `group` (GroupNorm on the first convolution) or `layer` (LayerNorm on each).
    #[serde(default = "group")]
    pub feat_extract_norm: String,
    /// Activation of the feature extractor.
    #[serde(default = "gelu")]
    pub feat_extract_activation: Activation,
    /// LayerNorm before the feature projection.
    #[serde(default = "yes")]
    pub feat_proj_layer_norm: bool,
    /// Kernel of the positional convolution.
    pub num_conv_pos_embeddings: usize,
    /// Its groups.
    pub num_conv_pos_embedding_groups: usize,
    /// Pre-norm layers (`true`, MERT-v1-330M's) or post-norm (`false`, MERT-v1-95M's).
    #[serde(default)]
    pub do_stable_layer_norm: bool,
}

fn gelu() -> Activation {
    Activation::Gelu
}

fn group() -> String {
    "group".into()
}

fn yes() -> bool {
    true
}

/// ViT as a Hugging Face `ViTModel` config (the `vit` component).
#[derive(Clone, Debug, PartialEq, serde::Deserialize, serde::Serialize)]
pub struct VitConfig {
    /// Width.
    pub hidden_size: usize,
    /// Layers.
    pub num_hidden_layers: usize,
    /// Attention heads.
    pub num_attention_heads: usize,
    /// Feed-forward width.
    pub intermediate_size: usize,
    /// Feed-forward activation.
    #[serde(default = "gelu")]
    pub hidden_act: Activation,
    /// LayerNorm epsilon.
    #[serde(default = "vit_eps")]
    pub layer_norm_eps: f32,
    /// Input side in pixels.
    pub image_size: usize,
    /// Patch side in pixels.
    pub patch_size: usize,
    /// Colour channels.
    #[serde(default = "three")]
    pub num_channels: usize,
    /// Biases on q, k, v.
    #[serde(default = "yes")]
    pub qkv_bias: bool,
}

fn vit_eps() -> f32 {
    1e-12
}

fn three() -> usize {
    3
}

/// ViViT as a Hugging Face `VivitModel` config (the `vivit` component).
#[derive(Clone, Debug, PartialEq, serde::Deserialize, serde::Serialize)]
pub struct VivitConfig {
    /// Width.
    pub hidden_size: usize,
    /// Layers.
    pub num_hidden_layers: usize,
    /// Attention heads.
    pub num_attention_heads: usize,
    /// Feed-forward width.
    pub intermediate_size: usize,
    /// Feed-forward activation (`gelu_fast` in the released model).
    #[serde(default = "gelu")]
    pub hidden_act: Activation,
    /// LayerNorm epsilon.
    #[serde(default = "vivit_eps")]
    pub layer_norm_eps: f32,
    /// Frame side in pixels.
    pub image_size: usize,
    /// Frames per clip.
    pub num_frames: usize,
    /// Tubelet `[frames, height, width]`.
    pub tubelet_size: [usize; 3],
    /// Colour channels.
    #[serde(default = "three")]
    pub num_channels: usize,
    /// Biases on q, k, v.
    #[serde(default = "yes")]
    pub qkv_bias: bool,
}

fn vivit_eps() -> f32 {
    1e-6
}

impl MertConfig {
    /// MERT-v1-330M (`m-a-p/MERT-v1-330M`), the encoder M2UGen and MU-LLaMA use: 24 pre-norm
    /// layers of 1024, 16 heads, the HuBERT feature extractor (GroupNorm form, no conv bias).
    pub fn mert_v1_330m() -> Self {
        MertConfig {
            hidden_size: 1024,
            num_hidden_layers: 24,
            num_attention_heads: 16,
            intermediate_size: 4096,
            hidden_act: Activation::Gelu,
            layer_norm_eps: 1e-5,
            conv_dim: vec![512; 7],
            conv_kernel: vec![10, 3, 3, 3, 3, 2, 2],
            conv_stride: vec![5, 2, 2, 2, 2, 2, 2],
            conv_bias: false,
            feat_extract_norm: "group".into(),
            feat_extract_activation: Activation::Gelu,
            feat_proj_layer_norm: true,
            num_conv_pos_embeddings: 128,
            num_conv_pos_embedding_groups: 16,
            do_stable_layer_norm: true,
        }
    }

    /// A tiny post-norm MERT for tests (two convolutions, two layers of 48).
    pub fn tiny() -> Self {
        MertConfig {
            hidden_size: 48,
            num_hidden_layers: 2,
            num_attention_heads: 4,
            intermediate_size: 96,
            conv_dim: vec![32, 32],
            conv_kernel: vec![10, 8],
            conv_stride: vec![5, 4],
            num_conv_pos_embeddings: 16,
            num_conv_pos_embedding_groups: 4,
            do_stable_layer_norm: false,
            ..Self::mert_v1_330m()
        }
    }
}

impl VitConfig {
    /// `google/vit-base-patch16-224-in21k`, M2UGen's image encoder.
    pub fn vit_base_patch16_224() -> Self {
        VitConfig { hidden_size: 768, num_hidden_layers: 12, num_attention_heads: 12, intermediate_size: 3072, hidden_act: Activation::Gelu, layer_norm_eps: 1e-12, image_size: 224, patch_size: 16, num_channels: 3, qkv_bias: true }
    }

    /// A tiny ViT for tests (32 pixels, four patches).
    pub fn tiny() -> Self {
        VitConfig { hidden_size: 32, num_hidden_layers: 2, num_attention_heads: 4, intermediate_size: 64, image_size: 32, ..Self::vit_base_patch16_224() }
    }
}

impl VivitConfig {
    /// `google/vivit-b-16x2-kinetics400`, M2UGen's video encoder (32 frames, 3137 tokens).
    pub fn vivit_b_16x2_kinetics400() -> Self {
        VivitConfig { hidden_size: 768, num_hidden_layers: 12, num_attention_heads: 12, intermediate_size: 3072, hidden_act: Activation::GeluTanh, layer_norm_eps: 1e-6, image_size: 224, num_frames: 32, tubelet_size: [2, 16, 16], num_channels: 3, qkv_bias: true }
    }

    /// A tiny ViViT for tests (4 frames of 32 pixels, eight tubelets).
    pub fn tiny() -> Self {
        VivitConfig { hidden_size: 32, num_hidden_layers: 2, num_attention_heads: 4, intermediate_size: 64, image_size: 32, num_frames: 4, ..Self::vivit_b_16x2_kinetics400() }
    }
}

/// T5's encoder as a Hugging Face `T5Config` (MusicGen's `text_encoder`, AudioLDM 2's second).
#[derive(Clone, Debug, PartialEq, serde::Deserialize, serde::Serialize)]
pub struct T5Config {
    /// Width.
    pub d_model: usize,
    /// Width of one head.
    pub d_kv: usize,
    /// Feed-forward width.
    pub d_ff: usize,
    /// Encoder layers.
    pub num_layers: usize,
    /// Heads.
    pub num_heads: usize,
    /// Relative-position buckets.
    #[serde(default = "t5_buckets")]
    pub relative_attention_num_buckets: usize,
    /// Longest distance the buckets tell apart.
    #[serde(default = "t5_distance")]
    pub relative_attention_max_distance: usize,
    /// RMSNorm epsilon.
    #[serde(default = "t5_eps")]
    pub layer_norm_epsilon: f32,
    /// `relu` (T5) or `gated-gelu` (T5 v1.1, Flan-T5).
    #[serde(default = "t5_ffn")]
    pub feed_forward_proj: String,
    /// Vocabulary.
    pub vocab_size: usize,
}

fn t5_buckets() -> usize {
    32
}

fn t5_distance() -> usize {
    128
}

fn t5_eps() -> f32 {
    1e-6
}

fn t5_ffn() -> String {
    "relu".into()
}

/// MusicGen's decoder (`musicgen.decoder`).
#[derive(Clone, Debug, PartialEq, serde::Deserialize, serde::Serialize)]
pub struct MusicgenDecoderConfig {
    /// Codebook size.
    pub vocab_size: usize,
    /// Width.
    pub hidden_size: usize,
    /// Layers.
    pub num_hidden_layers: usize,
    /// Heads.
    pub num_attention_heads: usize,
    /// Feed-forward width.
    pub ffn_dim: usize,
    /// Feed-forward activation.
    #[serde(default = "gelu")]
    pub activation_function: Activation,
    /// Codebooks (4 for mono).
    pub num_codebooks: usize,
    /// Longest sequence of frames.
    #[serde(default = "musicgen_positions")]
    pub max_position_embeddings: usize,
    /// Padding and start token (the codebook size).
    pub pad_token_id: usize,
    /// Whether embeddings are scaled by √width.
    #[serde(default)]
    pub scale_embedding: bool,
    /// 1 (mono) or 2 (stereo).
    #[serde(default = "one")]
    pub audio_channels: usize,
}

fn musicgen_positions() -> usize {
    2048
}

fn one() -> usize {
    1
}

/// EnCodec (`musicgen.audio_encoder`).
#[derive(Clone, Debug, PartialEq, serde::Deserialize, serde::Serialize)]
pub struct EncodecConfig {
    /// Audio channels.
    #[serde(default = "one")]
    pub audio_channels: usize,
    /// Channels of the first convolution.
    pub num_filters: usize,
    /// Kernel of the first and residual-shortcut convolutions.
    pub kernel_size: usize,
    /// Kernel of the last convolution.
    pub last_kernel_size: usize,
    /// Kernel of the residual units' first convolution.
    pub residual_kernel_size: usize,
    /// Dilation growth per residual unit.
    pub dilation_growth_rate: usize,
    /// Upsampling factor of each decoder block.
    pub upsampling_ratios: Vec<usize>,
    /// Latent width.
    pub hidden_size: usize,
    /// LSTM layers.
    pub num_lstm_layers: usize,
    /// Residual units per block.
    pub num_residual_layers: usize,
    /// Width reduction inside residual units.
    pub compress: usize,
    /// Causal convolutions (left padding only).
    #[serde(default)]
    pub use_causal_conv: bool,
    /// Padding mode of the convolutions.
    #[serde(default = "reflect")]
    pub pad_mode: String,
    /// Codebook entries.
    pub codebook_size: usize,
    /// Codebook width (the latent width when absent).
    #[serde(default)]
    pub codebook_dim: Option<usize>,
    /// Samples per second.
    pub sampling_rate: usize,
    /// Share of a transposed convolution's trim taken from the right.
    #[serde(default = "ratio_one")]
    pub trim_right_ratio: f32,
    /// A convolution (not an identity) on residual shortcuts.
    #[serde(default = "yes")]
    pub use_conv_shortcut: bool,
}

fn reflect() -> String {
    "reflect".into()
}

fn ratio_one() -> f32 {
    1.0
}

/// MusicGen as a Hugging Face `MusicgenConfig` (the `musicgen` component): T5, the decoder and
/// EnCodec in one file.
#[derive(Clone, Debug, PartialEq, serde::Deserialize, serde::Serialize)]
pub struct MusicgenConfig {
    /// The T5 text encoder.
    pub text_encoder: T5Config,
    /// The decoder.
    pub decoder: MusicgenDecoderConfig,
    /// EnCodec.
    pub audio_encoder: EncodecConfig,
}

impl T5Config {
    /// T5-base, MusicGen's text encoder: width 768, 12 layers of 12 heads, ReLU FFN 3072.
    pub fn t5_base() -> Self {
        T5Config { d_model: 768, d_kv: 64, d_ff: 3072, num_layers: 12, num_heads: 12, relative_attention_num_buckets: 32, relative_attention_max_distance: 128, layer_norm_epsilon: 1e-6, feed_forward_proj: "relu".into(), vocab_size: 32128 }
    }

    /// The MusicGen fixture's: width 24, 2 layers of 2 heads of 8, FFN 32, 100 tokens.
    pub fn tiny() -> Self {
        T5Config { d_model: 24, d_kv: 8, d_ff: 32, num_layers: 2, num_heads: 2, vocab_size: 100, ..T5Config::t5_base() }
    }
}

impl EncodecConfig {
    /// EnCodec 32 kHz (`facebook/encodec_32khz`, MusicGen's): 64 filters, upsampling 8, 5, 4, 4
    /// (hop 640, 50 frames a second), latent 128, 2-layer LSTM, 4 codebooks of 2048 used.
    pub fn encodec_32khz() -> Self {
        EncodecConfig {
            audio_channels: 1,
            num_filters: 64,
            kernel_size: 7,
            last_kernel_size: 7,
            residual_kernel_size: 3,
            dilation_growth_rate: 2,
            upsampling_ratios: vec![8, 5, 4, 4],
            hidden_size: 128,
            num_lstm_layers: 2,
            num_residual_layers: 1,
            compress: 2,
            use_causal_conv: false,
            pad_mode: "reflect".into(),
            codebook_size: 2048,
            codebook_dim: Some(128),
            sampling_rate: 32000,
            trim_right_ratio: 1.0,
            use_conv_shortcut: false,
        }
    }

    /// The MusicGen fixture's: 4 filters, latent 16, 64 entries, conv shortcuts.
    pub fn tiny() -> Self {
        EncodecConfig { num_filters: 4, hidden_size: 16, codebook_size: 64, codebook_dim: Some(16), use_conv_shortcut: true, ..EncodecConfig::encodec_32khz() }
    }
}

impl MusicgenConfig {
    /// MusicGen small (`facebook/musicgen-small`): decoder width 1024, 24 layers of 16 heads.
    pub fn musicgen_small() -> Self {
        MusicgenConfig {
            text_encoder: T5Config::t5_base(),
            decoder: MusicgenDecoderConfig { vocab_size: 2048, hidden_size: 1024, num_hidden_layers: 24, num_attention_heads: 16, ffn_dim: 4096, activation_function: Activation::Gelu, num_codebooks: 4, max_position_embeddings: 2048, pad_token_id: 2048, scale_embedding: false, audio_channels: 1 },
            audio_encoder: EncodecConfig::encodec_32khz(),
        }
    }

    /// MusicGen medium (`facebook/musicgen-medium`): decoder width 1536, 48 layers of 24 heads.
    pub fn musicgen_medium() -> Self {
        let mut c = MusicgenConfig::musicgen_small();
        c.decoder = MusicgenDecoderConfig { hidden_size: 1536, num_hidden_layers: 48, num_attention_heads: 24, ffn_dim: 6144, ..c.decoder };
        c
    }

    /// The MusicGen fixture's geometry: T5 width 24, decoder width 32 (2 layers, 2 heads), 4
    /// codebooks of 64.
    pub fn tiny() -> Self {
        MusicgenConfig {
            text_encoder: T5Config::tiny(),
            decoder: MusicgenDecoderConfig { vocab_size: 64, hidden_size: 32, num_hidden_layers: 2, num_attention_heads: 2, ffn_dim: 64, max_position_embeddings: 512, pad_token_id: 64, ..MusicgenConfig::musicgen_small().decoder },
            audio_encoder: EncodecConfig::tiny(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_ffn_formula_gives_the_published_widths() {
        assert_eq!(LlamaConfig::llama2_7b_m2ugen().ffn_hidden, 11008);
        assert_eq!(LlamaConfig::tiny().ffn_hidden, 192); // the fixture's README
        assert_eq!(LlamaConfig::ffn_hidden_of(8192, 4096, Some(1.3)), 28672); // LLaMA-2 70B
        assert_eq!(LlamaConfig::llama2_7b_m2ugen().head_dim(), 128);
    }

    #[test]
    fn stored_configs_parse_and_errors_name_the_field() {
        let mert: MertConfig = parse("mert", &serde_json::json!({
            "hidden_size": 48, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 96,
            "conv_dim": [32, 32], "conv_kernel": [10, 8], "conv_stride": [5, 4],
            "num_conv_pos_embeddings": 16, "num_conv_pos_embedding_groups": 4, "hidden_act": "gelu", "extra": 1
        })).unwrap();
        assert_eq!(mert.conv_stride, vec![5, 4]);
        assert_eq!(mert.feat_extract_norm, "group");
        let vivit: VivitConfig = parse("vivit", &serde_json::json!({
            "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 64,
            "image_size": 32, "num_frames": 4, "tubelet_size": [2, 16, 16], "hidden_act": "gelu_fast"
        })).unwrap();
        assert_eq!(vivit.hidden_act, Activation::GeluTanh);
        let e = parse::<MusicgenConfig>("musicgen", &serde_json::json!({
            "text_encoder": {"d_model": 24, "d_kv": 8, "d_ff": 32, "num_layers": 2, "num_heads": 2, "vocab_size": 100},
            "decoder": {"vocab_size": 64, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "ffn_dim": 64, "num_codebooks": 4, "pad_token_id": 64},
            "audio_encoder": {}
        })).unwrap_err();
        assert_eq!(e.to_string(), "config: musicgen.audio_encoder: missing field `num_filters`");
        let e = parse::<VitConfig>("vit", &serde_json::json!({"hidden_size": "wide"})).unwrap_err();
        assert!(e.to_string().starts_with("config: vit.hidden_size: invalid type: string \"wide\""), "{e}");
        let e = parse::<LlamaParams>("llama", &serde_json::json!({"dim": 64, "n_heads": 4})).unwrap_err();
        assert_eq!(e.to_string(), "config: llama: missing field `n_layers`");
        let p: LlamaParams = parse("llama", &serde_json::json!({"dim": 64, "n_layers": 2, "n_heads": 3, "vocab_size": -1})).unwrap();
        let e = LlamaConfig::from_params(&p, 10, 96, vec![], 16).unwrap_err();
        assert_eq!(e.to_string(), "config: llama.n_heads: 3 heads do not divide dim 64");
    }

    #[test]
    fn musicgen_geometries_match_the_published_files() {
        // The fixture's config.json parses to tiny().
        let fixture: MusicgenConfig = serde_json::from_str(include_str!("../../../tests/data/musicgen/musicgen/config.json")).unwrap();
        assert_eq!(fixture, MusicgenConfig::tiny());
        let small = MusicgenConfig::musicgen_small();
        assert_eq!((small.decoder.hidden_size, small.text_encoder.d_model, small.audio_encoder.upsampling_ratios.iter().product::<usize>()), (1024, 768, 640));
        assert_eq!(MusicgenConfig::musicgen_medium().decoder.num_hidden_layers, 48);
    }

    #[test]
    fn model_kinds_name_their_adapter_layers() {
        let k: ModelKind = serde_json::from_value(serde_json::json!("mu-llama")).unwrap();
        assert_eq!(k.adapter_layers(), vec![Modality::Music; 20]);
        assert_eq!(ModelKind::M2ugenMusicgen.adapter_layers()[6], Modality::Image);
        assert!(ModelKind::Llama.adapter_layers().is_empty());
        assert_eq!(serde_json::to_value(ModelKind::M2ugenAudioldm2).unwrap(), serde_json::json!("m2ugen-audioldm2"));
    }
}
