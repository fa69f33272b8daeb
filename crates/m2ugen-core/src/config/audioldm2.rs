//! AudioLDM 2's configuration, as the converter stores it: the manifest's `audioldm2` component
//! holds each part's own `config.json` under the part's role (`unet`, `vae`, `vocoder`, `clap`,
//! `t5`, `projection`, `gpt2`, `scheduler`), and [`Audioldm2Config`] reads them all. Field names
//! are those of the `diffusers` / `transformers` files, so a published file parses as it is.
//!
//! Each part has `tiny()` (the test fixture's geometry) and the published `cvssp/audioldm2-music`
//! geometry, which the benchmark builds with random weights. [`Audioldm2Config::check`] refuses,
//! naming the field, what the models do not implement.

use super::{check, Activation, T5Config};
use crate::Result;

/// One value for every block, or one per block (`layers_per_block: 2` or `[2, 2, 2]`).
#[derive(Clone, Debug, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(untagged)]
pub enum PerBlock {
    /// The same for every block.
    One(usize),
    /// One per block.
    Each(Vec<usize>),
}

impl PerBlock {
    /// The value of block `i` (`None` past a list's end).
    pub fn at(&self, i: usize) -> Option<usize> {
        match self {
            PerBlock::One(v) => Some(*v),
            PerBlock::Each(v) => v.get(i).copied(),
        }
    }
}

/// The UNet's `cross_attention_dim`: one width for all, one per block, or (AudioLDM 2) per block
/// a list with one entry per transformer of each attention layer, `null` for a transformer
/// that attends only to itself.
#[derive(Clone, Debug, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(untagged)]
pub enum CrossAttentionDims {
    /// One width for every block, one transformer per layer.
    One(usize),
    /// Per block: one transformer per entry, `None` for self-attention only.
    PerBlock(Vec<Vec<Option<usize>>>),
    /// One width per block, or (as the `diffusers` class also reads a flat list) the widths of
    /// every layer's transformers.
    Flat(Vec<Option<usize>>),
}

/// `AudioLDM2UNet2DConditionModel` (`unet/config.json`).
#[derive(Clone, Debug, PartialEq, serde::Deserialize, serde::Serialize)]
pub struct UnetConfig {
    /// Latent channels in.
    pub in_channels: usize,
    /// Latent channels out.
    pub out_channels: usize,
    /// Sinusoidal time embedding with cosines first.
    #[serde(default = "yes")]
    pub flip_sin_to_cos: bool,
    /// The time embedding's frequency shift.
    #[serde(default)]
    pub freq_shift: f32,
    /// `DownBlock2D` or `CrossAttnDownBlock2D`, outermost first.
    pub down_block_types: Vec<String>,
    /// `UNetMidBlock2DCrossAttn`.
    #[serde(default)]
    pub mid_block_type: Option<String>,
    /// `UpBlock2D` or `CrossAttnUpBlock2D`, innermost first.
    pub up_block_types: Vec<String>,
    /// Channels of each block, outermost first.
    pub block_out_channels: Vec<usize>,
    /// ResNet blocks per down block (the up blocks have one more).
    pub layers_per_block: PerBlock,
    /// Padding of the downsampling convolutions.
    #[serde(default = "one")]
    pub downsample_padding: usize,
    /// Output scale of the mid block's ResNets.
    #[serde(default = "one_f32")]
    pub mid_block_scale_factor: f32,
    /// `silu`.
    #[serde(default = "silu")]
    pub act_fn: Activation,
    /// GroupNorm groups.
    pub norm_num_groups: usize,
    /// GroupNorm epsilon of the ResNets.
    #[serde(default = "norm_eps")]
    pub norm_eps: f32,
    /// What each block's transformers attend to.
    pub cross_attention_dim: CrossAttentionDims,
    /// Transformer blocks per `Transformer2DModel`.
    #[serde(default = "per_block_one")]
    pub transformer_layers_per_block: PerBlock,
    /// Heads of the attention layers: AudioLDM 2's UNet reads this as the number of heads when
    /// `num_attention_heads` is not given (the `diffusers` naming quirk).
    #[serde(default = "per_block_eight")]
    pub attention_head_dim: PerBlock,
    /// Heads, when given.
    #[serde(default)]
    pub num_attention_heads: Option<PerBlock>,
    /// Linear (instead of 1x1 convolution) projections into and out of the transformers.
    #[serde(default)]
    pub use_linear_projection: bool,
    /// Attention only to the encoder states in `attn1`.
    #[serde(default)]
    pub only_cross_attention: serde_json::Value,
    /// `default` (the time embedding added between the convolutions).
    #[serde(default = "default_shift")]
    pub resnet_time_scale_shift: String,
    /// `positional`.
    #[serde(default = "positional")]
    pub time_embedding_type: String,
    /// No class conditioning.
    #[serde(default)]
    pub class_embed_type: Option<String>,
    /// Width of the time embedding (`4 x block_out_channels[0]` when not given).
    #[serde(default)]
    pub time_embedding_dim: Option<usize>,
    /// Kernel of the first convolution.
    #[serde(default = "three")]
    pub conv_in_kernel: usize,
    /// Kernel of the last convolution.
    #[serde(default = "three")]
    pub conv_out_kernel: usize,
    /// Latent height the model was trained at (informative).
    #[serde(default)]
    pub sample_size: Option<usize>,
    /// An activation on the time embedding (not implemented: none in AudioLDM 2).
    #[serde(default)]
    pub time_embedding_act_fn: Option<String>,
    /// An activation after the time embedding (not implemented).
    #[serde(default)]
    pub timestep_post_act: Option<String>,
    /// A conditioning projection into the time embedding (not implemented).
    #[serde(default)]
    pub time_cond_proj_dim: Option<usize>,
    /// Class embeddings (not implemented).
    #[serde(default)]
    pub num_class_embeds: Option<usize>,
}

impl UnetConfig {
    /// The fixture's geometry: two blocks of 16 and 32 channels, the second with attention, each
    /// attention layer one self-attention transformer and one per encoder (widths 16 and 32).
    pub fn tiny() -> Self {
        UnetConfig {
            in_channels: 4,
            out_channels: 4,
            flip_sin_to_cos: true,
            freq_shift: 0.0,
            down_block_types: vec!["DownBlock2D".into(), "CrossAttnDownBlock2D".into()],
            mid_block_type: Some("UNetMidBlock2DCrossAttn".into()),
            up_block_types: vec!["CrossAttnUpBlock2D".into(), "UpBlock2D".into()],
            block_out_channels: vec![16, 32],
            layers_per_block: PerBlock::One(2),
            downsample_padding: 1,
            mid_block_scale_factor: 1.0,
            act_fn: Activation::Silu,
            norm_num_groups: 8,
            norm_eps: 1e-5,
            cross_attention_dim: CrossAttentionDims::PerBlock(vec![vec![None, Some(16), Some(32)]; 2]),
            transformer_layers_per_block: PerBlock::One(1),
            attention_head_dim: PerBlock::One(4),
            num_attention_heads: None,
            use_linear_projection: false,
            only_cross_attention: serde_json::Value::Bool(false),
            resnet_time_scale_shift: default_shift(),
            time_embedding_type: positional(),
            class_embed_type: None,
            time_embedding_dim: None,
            conv_in_kernel: 3,
            conv_out_kernel: 3,
            sample_size: Some(32),
            time_embedding_act_fn: None,
            timestep_post_act: None,
            time_cond_proj_dim: None,
            num_class_embeds: None,
        }
    }

    /// `cvssp/audioldm2-music`: the original's `model_channels 128`, `channel_mult [1, 2, 3,
    /// 5]`, attention at the three inner resolutions, 8-channel latents, GPT-2 (768) and
    /// Flan-T5-large (1024) as the two encoders beside a self-attention transformer, and the
    /// `diffusers` class's default of 8 heads.
    pub fn audioldm2_music() -> Self {
        UnetConfig {
            in_channels: 8,
            out_channels: 8,
            down_block_types: vec!["DownBlock2D".into(), "CrossAttnDownBlock2D".into(), "CrossAttnDownBlock2D".into(), "CrossAttnDownBlock2D".into()],
            up_block_types: vec!["CrossAttnUpBlock2D".into(), "CrossAttnUpBlock2D".into(), "CrossAttnUpBlock2D".into(), "UpBlock2D".into()],
            block_out_channels: vec![128, 256, 384, 640],
            norm_num_groups: 32,
            cross_attention_dim: CrossAttentionDims::PerBlock(vec![vec![None, Some(768), Some(1024)]; 4]),
            attention_head_dim: PerBlock::One(8),
            sample_size: Some(256),
            ..UnetConfig::tiny()
        }
    }

    /// Blocks (down, and as many up).
    pub fn blocks(&self) -> usize {
        self.block_out_channels.len()
    }

    /// ResNets in down block `i` (the up block at the same depth has one more).
    pub fn layers(&self, i: usize) -> usize {
        self.layers_per_block.at(i).unwrap_or(0)
    }

    /// Transformer blocks in each `Transformer2DModel` of down block `i`.
    pub fn transformer_layers(&self, i: usize) -> usize {
        self.transformer_layers_per_block.at(i).unwrap_or(1)
    }

    /// Heads of the attention layers of down block `i` (AudioLDM 2 reads `attention_head_dim`
    /// as heads when `num_attention_heads` is absent).
    pub fn heads(&self, i: usize) -> usize {
        self.num_attention_heads.as_ref().unwrap_or(&self.attention_head_dim).at(i).unwrap_or(1)
    }

    /// The transformers of each attention layer of down block `i`: the width of the states each
    /// attends to, `None` for self-attention only.
    pub fn cross_attention_dims(&self, i: usize) -> Vec<Option<usize>> {
        match &self.cross_attention_dim {
            CrossAttentionDims::One(d) => vec![Some(*d)],
            CrossAttentionDims::PerBlock(v) => v.get(i).cloned().unwrap_or_default(),
            CrossAttentionDims::Flat(v) => v.get(i).map(|d| vec![*d]).unwrap_or_default(),
        }
    }

    /// The time embedding's width.
    pub fn time_embed_dim(&self) -> usize {
        self.time_embedding_dim.unwrap_or(self.block_out_channels.first().copied().unwrap_or(0) * 4)
    }

    /// Fails naming the first field these models do not implement.
    pub fn check(&self, at: &str) -> Result<()> {
        let n = self.blocks();
        check(n > 0, format!("{at}.block_out_channels"), "is empty")?;
        check(self.down_block_types.len() == n, format!("{at}.down_block_types"), format!("has {} entries for {n} blocks", self.down_block_types.len()))?;
        check(self.up_block_types.len() == n, format!("{at}.up_block_types"), format!("has {} entries for {n} blocks", self.up_block_types.len()))?;
        for t in &self.down_block_types {
            check(matches!(t.as_str(), "DownBlock2D" | "CrossAttnDownBlock2D"), format!("{at}.down_block_types"), format!("'{t}' is not DownBlock2D or CrossAttnDownBlock2D"))?;
        }
        for t in &self.up_block_types {
            check(matches!(t.as_str(), "UpBlock2D" | "CrossAttnUpBlock2D"), format!("{at}.up_block_types"), format!("'{t}' is not UpBlock2D or CrossAttnUpBlock2D"))?;
        }
        check(self.mid_block_type.as_deref() == Some("UNetMidBlock2DCrossAttn"), format!("{at}.mid_block_type"), "only UNetMidBlock2DCrossAttn is implemented")?;
        check(self.act_fn == Activation::Silu, format!("{at}.act_fn"), "only silu is implemented")?;
        check(self.resnet_time_scale_shift == "default", format!("{at}.resnet_time_scale_shift"), "only 'default' is implemented")?;
        check(self.time_embedding_type == "positional", format!("{at}.time_embedding_type"), "only 'positional' is implemented")?;
        check(self.class_embed_type.is_none() && self.num_class_embeds.is_none(), format!("{at}.class_embed_type"), "class conditioning is not implemented")?;
        check(self.time_embedding_act_fn.is_none() && self.timestep_post_act.is_none(), format!("{at}.time_embedding_act_fn"), "activations around the time embedding are not implemented")?;
        check(self.time_cond_proj_dim.is_none(), format!("{at}.time_cond_proj_dim"), "a conditioning projection into the time embedding is not implemented")?;
        check(matches!(self.only_cross_attention, serde_json::Value::Bool(false) | serde_json::Value::Null), format!("{at}.only_cross_attention"), "only false is implemented")?;
        check(self.norm_num_groups > 0 && self.block_out_channels.iter().all(|c| c.is_multiple_of(self.norm_num_groups)), format!("{at}.norm_num_groups"), format!("{} does not divide every block's channels {:?}", self.norm_num_groups, self.block_out_channels))?;
        check(self.conv_in_kernel % 2 == 1 && self.conv_out_kernel % 2 == 1, format!("{at}.conv_in_kernel"), "kernels must be odd")?;
        for i in 0..n {
            check(self.layers(i) > 0, format!("{at}.layers_per_block"), format!("no value for block {i}"))?;
            let heads = self.heads(i);
            check(heads > 0 && self.block_out_channels[i].is_multiple_of(heads), format!("{at}.attention_head_dim"), format!("{heads} heads do not divide block {i}'s {} channels", self.block_out_channels[i]))?;
            if self.down_block_types[i] == "CrossAttnDownBlock2D" {
                check(!self.cross_attention_dims(i).is_empty(), format!("{at}.cross_attention_dim"), format!("no transformers for block {i}"))?;
            }
        }
        Ok(())
    }
}

/// `AutoencoderKL` (`vae/config.json`).
#[derive(Clone, Debug, PartialEq, serde::Deserialize, serde::Serialize)]
pub struct VaeConfig {
    /// Image channels (1: a mel spectrogram).
    pub in_channels: usize,
    /// Image channels out.
    pub out_channels: usize,
    /// `DownEncoderBlock2D` each.
    pub down_block_types: Vec<String>,
    /// `UpDecoderBlock2D` each.
    pub up_block_types: Vec<String>,
    /// Channels of each block, outermost first.
    pub block_out_channels: Vec<usize>,
    /// ResNets per encoder block (the decoder's have one more).
    pub layers_per_block: usize,
    /// `silu`.
    #[serde(default = "silu")]
    pub act_fn: Activation,
    /// Latent channels.
    pub latent_channels: usize,
    /// GroupNorm groups.
    pub norm_num_groups: usize,
    /// Latents are divided by this before decoding (learned for AudioLDM 2).
    pub scaling_factor: f32,
    /// Subtracted after scaling, when given.
    #[serde(default)]
    pub shift_factor: Option<f32>,
    /// A 1x1 convolution after the encoder.
    #[serde(default = "yes")]
    pub use_quant_conv: bool,
    /// A 1x1 convolution before the decoder.
    #[serde(default = "yes")]
    pub use_post_quant_conv: bool,
    /// Attention in the mid blocks.
    #[serde(default = "yes")]
    pub mid_block_add_attention: bool,
    /// Image size trained at (informative).
    #[serde(default)]
    pub sample_size: Option<usize>,
}

impl VaeConfig {
    /// The fixture's geometry.
    pub fn tiny() -> Self {
        VaeConfig {
            in_channels: 1,
            out_channels: 1,
            down_block_types: vec!["DownEncoderBlock2D".into(); 2],
            up_block_types: vec!["UpDecoderBlock2D".into(); 2],
            block_out_channels: vec![16, 32],
            layers_per_block: 1,
            act_fn: Activation::Silu,
            latent_channels: 4,
            norm_num_groups: 8,
            scaling_factor: 0.6,
            shift_factor: None,
            use_quant_conv: true,
            use_post_quant_conv: true,
            mid_block_add_attention: true,
            sample_size: Some(32),
        }
    }

    /// `cvssp/audioldm2-music`: `ch 128`, `ch_mult [1, 2, 4]`, 8 latent channels, 2 ResNets per
    /// block. Its `scaling_factor` is learned and read from the published file; this geometry
    /// (random weights, for the benchmark) uses 1.
    pub fn audioldm2_music() -> Self {
        VaeConfig {
            down_block_types: vec!["DownEncoderBlock2D".into(); 3],
            up_block_types: vec!["UpDecoderBlock2D".into(); 3],
            block_out_channels: vec![128, 256, 512],
            layers_per_block: 2,
            latent_channels: 8,
            norm_num_groups: 32,
            scaling_factor: 1.0,
            sample_size: Some(256),
            ..VaeConfig::tiny()
        }
    }

    /// How much smaller than the spectrogram the latents are, on each side.
    pub fn scale_factor(&self) -> usize {
        1 << self.block_out_channels.len().saturating_sub(1)
    }

    /// Fails naming the first field these models do not implement.
    pub fn check(&self, at: &str) -> Result<()> {
        let n = self.block_out_channels.len();
        check(n > 0, format!("{at}.block_out_channels"), "is empty")?;
        check(self.up_block_types.len() == n && self.up_block_types.iter().all(|t| t == "UpDecoderBlock2D"), format!("{at}.up_block_types"), format!("must be {n} x UpDecoderBlock2D"))?;
        check(self.act_fn == Activation::Silu, format!("{at}.act_fn"), "only silu is implemented")?;
        check(self.norm_num_groups > 0 && self.block_out_channels.iter().all(|c| c.is_multiple_of(self.norm_num_groups)), format!("{at}.norm_num_groups"), format!("{} does not divide every block's channels {:?}", self.norm_num_groups, self.block_out_channels))?;
        check(self.scaling_factor.is_finite() && self.scaling_factor != 0.0, format!("{at}.scaling_factor"), "must be a non-zero number")
    }
}

/// SpeechT5's HiFi-GAN (`vocoder/config.json`).
#[derive(Clone, Debug, PartialEq, serde::Deserialize, serde::Serialize)]
pub struct HifiganConfig {
    /// Mel bins in.
    pub model_in_dim: usize,
    /// Output sample rate.
    pub sampling_rate: usize,
    /// Channels after the first convolution.
    pub upsample_initial_channel: usize,
    /// Upsampling factor of each stage.
    pub upsample_rates: Vec<usize>,
    /// Kernel of each stage's transposed convolution.
    pub upsample_kernel_sizes: Vec<usize>,
    /// Kernels of the residual blocks of each stage.
    pub resblock_kernel_sizes: Vec<usize>,
    /// Dilations of each residual block.
    pub resblock_dilation_sizes: Vec<Vec<usize>>,
    /// Slope of the leaky ReLUs.
    #[serde(default = "leaky")]
    pub leaky_relu_slope: f32,
    /// The mel is normalised by the stored mean and scale first.
    #[serde(default = "yes")]
    pub normalize_before: bool,
}

impl HifiganConfig {
    /// The fixture's geometry.
    pub fn tiny() -> Self {
        HifiganConfig {
            model_in_dim: 8,
            sampling_rate: 16000,
            upsample_initial_channel: 16,
            upsample_rates: vec![2, 2],
            upsample_kernel_sizes: vec![4, 4],
            resblock_kernel_sizes: vec![3, 7],
            resblock_dilation_sizes: vec![vec![1, 3, 5]; 2],
            leaky_relu_slope: 0.1,
            normalize_before: true,
        }
    }

    /// `cvssp/audioldm2-music`: 64 mel bins, 160x upsampling to 16 kHz.
    pub fn audioldm2_music() -> Self {
        HifiganConfig {
            model_in_dim: 64,
            upsample_initial_channel: 1024,
            upsample_rates: vec![5, 4, 2, 2, 2],
            upsample_kernel_sizes: vec![16, 16, 8, 4, 4],
            resblock_kernel_sizes: vec![3, 7, 11],
            resblock_dilation_sizes: vec![vec![1, 3, 5]; 3],
            ..HifiganConfig::tiny()
        }
    }

    /// Samples per mel frame.
    pub fn hop(&self) -> usize {
        self.upsample_rates.iter().product()
    }

    /// Fails naming the first inconsistent field.
    pub fn check(&self, at: &str) -> Result<()> {
        check(self.upsample_kernel_sizes.len() == self.upsample_rates.len(), format!("{at}.upsample_kernel_sizes"), format!("has {} entries for {} upsampling stages", self.upsample_kernel_sizes.len(), self.upsample_rates.len()))?;
        check(self.resblock_dilation_sizes.len() == self.resblock_kernel_sizes.len(), format!("{at}.resblock_dilation_sizes"), format!("has {} entries for {} kernels", self.resblock_dilation_sizes.len(), self.resblock_kernel_sizes.len()))?;
        check(self.upsample_rates.iter().zip(&self.upsample_kernel_sizes).all(|(r, k)| *r > 0 && k >= r), format!("{at}.upsample_kernel_sizes"), "each kernel must be at least its rate")?;
        check(self.upsample_initial_channel >> self.upsample_rates.len() > 0, format!("{at}.upsample_initial_channel"), "halves to nothing over the stages")
    }
}

/// CLAP's text branch (`ClapTextConfig`, inside `text_encoder/config.json`): RoBERTa.
#[derive(Clone, Debug, PartialEq, serde::Deserialize, serde::Serialize)]
pub struct ClapTextConfig {
    /// Vocabulary.
    pub vocab_size: usize,
    /// Width.
    pub hidden_size: usize,
    /// Layers.
    pub num_hidden_layers: usize,
    /// Heads.
    pub num_attention_heads: usize,
    /// Feed-forward width.
    pub intermediate_size: usize,
    /// Feed-forward activation.
    #[serde(default = "gelu")]
    pub hidden_act: Activation,
    /// Positions (RoBERTa's, offset past the padding id).
    pub max_position_embeddings: usize,
    /// Token types.
    #[serde(default = "one")]
    pub type_vocab_size: usize,
    /// LayerNorm epsilon.
    #[serde(default = "bert_eps")]
    pub layer_norm_eps: f32,
    /// Padding id (RoBERTa: 1).
    #[serde(default = "one")]
    pub pad_token_id: usize,
    /// Width of the projection.
    #[serde(default = "clap_projection")]
    pub projection_dim: usize,
    /// Activation inside the projection.
    #[serde(default = "relu")]
    pub projection_hidden_act: Activation,
}

/// `ClapModel` (`text_encoder/config.json`): the text branch is what AudioLDM 2 runs; the audio
/// branch (HTSAT) is kept as stored for ranking waveforms.
#[derive(Clone, Debug, PartialEq, serde::Deserialize, serde::Serialize)]
pub struct ClapConfig {
    /// The text branch.
    pub text_config: ClapTextConfig,
    /// The audio branch, as stored.
    #[serde(default)]
    pub audio_config: serde_json::Value,
    /// Width both branches project to.
    pub projection_dim: usize,
}

impl ClapConfig {
    /// The fixture's geometry (text branch).
    pub fn tiny() -> Self {
        ClapConfig {
            text_config: ClapTextConfig {
                vocab_size: 300,
                hidden_size: 24,
                num_hidden_layers: 2,
                num_attention_heads: 2,
                intermediate_size: 40,
                hidden_act: Activation::Gelu,
                max_position_embeddings: 80,
                type_vocab_size: 1,
                layer_norm_eps: 1e-12,
                pad_token_id: 1,
                projection_dim: 16,
                projection_hidden_act: Activation::Relu,
            },
            audio_config: serde_json::Value::Null,
            projection_dim: 16,
        }
    }

    /// `laion/clap-htsat-unfused`'s text branch (RoBERTa-base) projected to 512.
    pub fn audioldm2_music() -> Self {
        let mut c = ClapConfig::tiny();
        c.text_config = ClapTextConfig {
            vocab_size: 50265,
            hidden_size: 768,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            intermediate_size: 3072,
            max_position_embeddings: 514,
            projection_dim: 512,
            ..c.text_config
        };
        c.projection_dim = 512;
        c
    }

    /// The audio branch's configuration, if the model has one (`audio_config` stored and not
    /// null).
    pub fn audio(&self, at: &str) -> Result<Option<ClapAudioConfig>> {
        if self.audio_config.is_null() {
            return Ok(None);
        }
        let c: ClapAudioConfig = serde_json::from_value(self.audio_config.clone()).map_err(|e| crate::Error::Config { field: format!("{at}.audio_config"), problem: e.to_string() })?;
        c.check(&format!("{at}.audio_config"))?;
        Ok(Some(c))
    }

    /// Fails naming the first inconsistent field.
    pub fn check(&self, at: &str) -> Result<()> {
        let t = &self.text_config;
        check(t.num_attention_heads > 0 && t.hidden_size.is_multiple_of(t.num_attention_heads), format!("{at}.text_config.num_attention_heads"), format!("{} heads do not divide the width {}", t.num_attention_heads, t.hidden_size))?;
        check(t.max_position_embeddings > t.pad_token_id + 1, format!("{at}.text_config.max_position_embeddings"), "leaves no position past the padding id")
    }
}

/// CLAP's audio branch, HTSAT (`text_encoder/config.json`'s `audio_config`, transformers'
/// `ClapAudioConfig`): a Swin transformer over a log-mel spectrogram folded into an image, whose
/// pooled output is projected beside the text's. Fields absent from a file take transformers'
/// defaults (HTSAT-tiny, the size AudioLDM 2's CLAP has). Only the unfused model is implemented.
#[derive(Clone, Debug, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(default)]
pub struct ClapAudioConfig {
    /// The image's side, in spectrogram cells (frames are `spec_size · freq_ratio`).
    pub spec_size: usize,
    /// Mel bins of the spectrogram.
    pub num_mel_bins: usize,
    /// Patch side (a number, or two equal numbers).
    #[serde(deserialize_with = "square")]
    pub patch_size: usize,
    /// Patch stride (a number, or two equal numbers).
    #[serde(deserialize_with = "square")]
    pub patch_stride: usize,
    /// Spectrogram channels the patch embedding reads (the feature extractor's copies).
    pub patch_embed_input_channels: usize,
    /// Width of the first stage.
    pub patch_embeds_hidden_size: usize,
    /// A LayerNorm after the patch embedding.
    pub enable_patch_layer_norm: bool,
    /// Patches flattened to tokens (must be true).
    pub flatten_patch_embeds: bool,
    /// Feature fusion (must be false: the fused model is not implemented).
    pub enable_fusion: bool,
    /// Blocks per stage.
    pub depths: Vec<usize>,
    /// Heads per stage.
    pub num_attention_heads: Vec<usize>,
    /// Window side, in tokens.
    pub window_size: usize,
    /// MLP width over block width.
    pub mlp_ratio: f64,
    /// Biases on queries, keys and values.
    pub qkv_bias: bool,
    /// The MLPs' activation.
    pub hidden_act: Activation,
    /// LayerNorm epsilon.
    pub layer_norm_eps: f32,
    /// Width of the last stage (`patch_embeds_hidden_size · 2^(stages - 1)`).
    pub hidden_size: usize,
    /// Width of the projection.
    pub projection_dim: usize,
    /// The projection's activation.
    pub projection_hidden_act: Activation,
}

fn square<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<usize, D::Error> {
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum Side {
        One(usize),
        Two([usize; 2]),
    }
    match <Side as serde::Deserialize>::deserialize(d)? {
        Side::One(n) => Ok(n),
        Side::Two([a, b]) if a == b => Ok(a),
        Side::Two([a, b]) => Err(serde::de::Error::custom(format!("[{a}, {b}] is not square (only square patches are implemented)"))),
    }
}

impl Default for ClapAudioConfig {
    /// transformers' `ClapAudioConfig()` defaults.
    fn default() -> Self {
        ClapAudioConfig::htsat_tiny()
    }
}

impl ClapAudioConfig {
    /// HTSAT-tiny as transformers' `ClapAudioConfig` defaults give it (`laion/clap-htsat-*`:
    /// 256-cell images of 64 mel bins, patches of 4, stages of 2, 2, 6 and 2 blocks from 96 to 768
    /// wide, windows of 8); one input channel, which a converted model's own config overrides.
    pub fn htsat_tiny() -> Self {
        ClapAudioConfig {
            spec_size: 256,
            num_mel_bins: 64,
            patch_size: 4,
            patch_stride: 4,
            patch_embed_input_channels: 1,
            patch_embeds_hidden_size: 96,
            enable_patch_layer_norm: true,
            flatten_patch_embeds: true,
            enable_fusion: false,
            depths: vec![2, 2, 6, 2],
            num_attention_heads: vec![4, 8, 16, 32],
            window_size: 8,
            mlp_ratio: 4.0,
            qkv_bias: true,
            hidden_act: Activation::Gelu,
            layer_norm_eps: 1e-5,
            hidden_size: 768,
            projection_dim: 512,
            projection_hidden_act: Activation::Relu,
        }
    }

    /// The AudioLDM 2 fixture's audio branch: two stages of two blocks, 32 and 64 wide, windows
    /// of 4 over a 64-cell image of 64 bins, four input channels.
    pub fn tiny() -> Self {
        ClapAudioConfig {
            spec_size: 64,
            patch_size: 2,
            patch_stride: 2,
            patch_embed_input_channels: 4,
            patch_embeds_hidden_size: 32,
            depths: vec![2, 2],
            num_attention_heads: vec![2, 2],
            window_size: 4,
            hidden_size: 64,
            projection_dim: 16,
            ..ClapAudioConfig::htsat_tiny()
        }
    }

    /// Frequency folds: how many time segments the spectrogram is cut into, stacked along the
    /// frequency axis (`spec_size / num_mel_bins`).
    pub fn freq_ratio(&self) -> usize {
        self.spec_size / self.num_mel_bins.max(1)
    }

    /// Spectrogram frames the model reads (`spec_size · freq_ratio`); shorter spectrograms are
    /// stretched to it.
    pub fn frames(&self) -> usize {
        self.spec_size * self.freq_ratio()
    }

    /// The token grid's side after the patch embedding.
    pub fn grid(&self) -> usize {
        self.spec_size / self.patch_stride.max(1)
    }

    /// Width of stage `i`.
    pub fn stage_width(&self, i: usize) -> usize {
        self.patch_embeds_hidden_size << i
    }

    /// `(window side, shift)` of the odd blocks of stage `i` (even blocks do not shift):
    /// transformers stops shifting once the grid is no larger than a window (the window is then
    /// the whole grid; [`ClapAudioConfig::check`] refuses grids smaller than a window).
    pub fn stage_window(&self, i: usize) -> (usize, usize) {
        let side = self.grid() >> i;
        if side <= self.window_size { (side, 0) } else { (self.window_size, self.window_size / 2) }
    }

    /// Fails naming the first field this implementation cannot run.
    pub fn check(&self, at: &str) -> Result<()> {
        let n = self.depths.len();
        check(n > 0 && self.num_attention_heads.len() == n, format!("{at}.num_attention_heads"), format!("has {} entries for {} stages", self.num_attention_heads.len(), n))?;
        check(!self.enable_fusion, format!("{at}.enable_fusion"), "the fused audio model is not implemented")?;
        check(self.flatten_patch_embeds, format!("{at}.flatten_patch_embeds"), "must be true")?;
        check(self.num_mel_bins > 0 && self.spec_size.is_multiple_of(self.num_mel_bins), format!("{at}.spec_size"), format!("{} is not a multiple of num_mel_bins {}", self.spec_size, self.num_mel_bins))?;
        check(self.patch_stride > 0 && self.patch_size >= self.patch_stride && (self.patch_size - self.patch_stride).is_multiple_of(2), format!("{at}.patch_size"), format!("{} with stride {} is not implemented", self.patch_size, self.patch_stride))?;
        check(self.window_size > 0 && self.patch_embed_input_channels > 0, format!("{at}.window_size"), "must be positive")?;
        let grid = self.grid();
        check(grid * self.patch_stride == self.spec_size, format!("{at}.patch_stride"), format!("{} does not divide spec_size {}", self.patch_stride, self.spec_size))?;
        for i in 0..n {
            let side = grid >> i;
            let window = self.window_size;
            check(side >= window && side << i == grid && side.is_multiple_of(window), format!("{at}.window_size"), format!("stage {i}'s {side}x{side} grid does not divide into windows of {window} (padding and windows larger than the grid are not implemented)"))?;
            let heads = self.num_attention_heads[i];
            check(heads > 0 && self.stage_width(i).is_multiple_of(heads), format!("{at}.num_attention_heads"), format!("{heads} heads do not divide stage {i}'s width {}", self.stage_width(i)))?;
        }
        check(self.hidden_size == self.stage_width(n - 1), format!("{at}.hidden_size"), format!("{} is not the last stage's width {}", self.hidden_size, self.stage_width(n - 1)))
    }
}

/// GPT-2 (`language_model/config.json`), run on embeddings.
#[derive(Clone, Debug, PartialEq, serde::Deserialize, serde::Serialize)]
pub struct Gpt2Config {
    /// Vocabulary (unused on embeddings; the token table is stored).
    pub vocab_size: usize,
    /// Positions.
    pub n_positions: usize,
    /// Width.
    pub n_embd: usize,
    /// Layers.
    pub n_layer: usize,
    /// Heads.
    pub n_head: usize,
    /// Feed-forward width (4 x width when not given).
    #[serde(default)]
    pub n_inner: Option<usize>,
    /// `gelu_new`.
    #[serde(default = "gelu_tanh")]
    pub activation_function: Activation,
    /// LayerNorm epsilon.
    #[serde(default = "gpt2_eps")]
    pub layer_norm_epsilon: f32,
    /// Scores divided by √head_dim.
    #[serde(default = "yes")]
    pub scale_attn_weights: bool,
    /// Scores also divided by the layer's index + 1.
    #[serde(default)]
    pub scale_attn_by_inverse_layer_idx: bool,
    /// States AudioLDM 2 generates (8).
    #[serde(default)]
    pub max_new_tokens: Option<usize>,
}

impl Gpt2Config {
    /// The fixture's geometry.
    pub fn tiny() -> Self {
        Gpt2Config {
            vocab_size: 300,
            n_positions: 64,
            n_embd: 16,
            n_layer: 2,
            n_head: 2,
            n_inner: None,
            activation_function: Activation::GeluTanh,
            layer_norm_epsilon: 1e-5,
            scale_attn_weights: true,
            scale_attn_by_inverse_layer_idx: false,
            max_new_tokens: Some(8),
        }
    }

    /// GPT-2 base.
    pub fn audioldm2_music() -> Self {
        Gpt2Config { vocab_size: 50257, n_positions: 1024, n_embd: 768, n_layer: 12, n_head: 12, ..Gpt2Config::tiny() }
    }

    /// The feed-forward width.
    pub fn inner(&self) -> usize {
        self.n_inner.unwrap_or(4 * self.n_embd)
    }

    /// States generated per prompt.
    pub fn new_tokens(&self) -> usize {
        self.max_new_tokens.unwrap_or(8)
    }

    /// Fails naming the first inconsistent field.
    pub fn check(&self, at: &str) -> Result<()> {
        check(self.n_head > 0 && self.n_embd.is_multiple_of(self.n_head), format!("{at}.n_head"), format!("{} heads do not divide the width {}", self.n_head, self.n_embd))
    }
}

/// `AudioLDM2ProjectionModel` (`projection_model/config.json`).
#[derive(Clone, Debug, PartialEq, serde::Deserialize, serde::Serialize)]
pub struct ProjectionConfig {
    /// CLAP's projected width.
    pub text_encoder_dim: usize,
    /// T5's width.
    pub text_encoder_1_dim: usize,
    /// GPT-2's width (the file spells it `langauge_model_dim`).
    #[serde(rename = "langauge_model_dim", alias = "language_model_dim")]
    pub language_model_dim: usize,
    /// A learned position embedding on T5's states (not in the published model).
    #[serde(default)]
    pub use_learned_position_embedding: Option<bool>,
    /// Its length.
    #[serde(default)]
    pub max_seq_length: Option<usize>,
}

impl ProjectionConfig {
    /// The fixture's geometry.
    pub fn tiny() -> Self {
        ProjectionConfig { text_encoder_dim: 16, text_encoder_1_dim: 32, language_model_dim: 16, use_learned_position_embedding: None, max_seq_length: None }
    }

    /// CLAP 512 and Flan-T5-large 1024 into GPT-2's 768.
    pub fn audioldm2_music() -> Self {
        ProjectionConfig { text_encoder_dim: 512, text_encoder_1_dim: 1024, language_model_dim: 768, ..ProjectionConfig::tiny() }
    }

    /// Fails naming what is not implemented.
    pub fn check(&self, at: &str) -> Result<()> {
        check(self.use_learned_position_embedding != Some(true), format!("{at}.use_learned_position_embedding"), "a learned position embedding is not implemented")
    }
}

/// `DDIMScheduler` (`scheduler/scheduler_config.json`).
#[derive(Clone, Debug, PartialEq, serde::Deserialize, serde::Serialize)]
pub struct DdimConfig {
    /// The scheduler's class (`DDIMScheduler`).
    #[serde(rename = "_class_name", default = "ddim")]
    pub class_name: String,
    /// Training steps.
    #[serde(default = "thousand")]
    pub num_train_timesteps: usize,
    /// First beta.
    #[serde(default = "beta_start")]
    pub beta_start: f64,
    /// Last beta.
    #[serde(default = "beta_end")]
    pub beta_end: f64,
    /// `scaled_linear` or `linear`.
    #[serde(default = "scaled_linear")]
    pub beta_schedule: String,
    /// Explicit betas (not supported).
    #[serde(default)]
    pub trained_betas: Option<Vec<f64>>,
    /// Clip the predicted clean sample.
    #[serde(default)]
    pub clip_sample: bool,
    /// The clip's range.
    #[serde(default = "one_f64")]
    pub clip_sample_range: f64,
    /// The last step goes to alpha 1 (else to the first alpha).
    #[serde(default = "yes")]
    pub set_alpha_to_one: bool,
    /// Added to every timestep.
    #[serde(default)]
    pub steps_offset: usize,
    /// `epsilon` or `v_prediction`.
    #[serde(default = "epsilon")]
    pub prediction_type: String,
    /// Dynamic thresholding (not supported).
    #[serde(default)]
    pub thresholding: bool,
    /// `leading`, `trailing` or `linspace`.
    #[serde(default = "leading")]
    pub timestep_spacing: String,
    /// Zero terminal SNR rescaling (not supported).
    #[serde(default)]
    pub rescale_betas_zero_snr: bool,
}

impl DdimConfig {
    /// The fixture's scheduler, which is also the published one.
    pub fn audioldm2_music() -> Self {
        DdimConfig {
            class_name: ddim(),
            num_train_timesteps: 1000,
            beta_start: 0.0015,
            beta_end: 0.0195,
            beta_schedule: scaled_linear(),
            trained_betas: None,
            clip_sample: false,
            clip_sample_range: 1.0,
            set_alpha_to_one: false,
            steps_offset: 1,
            prediction_type: epsilon(),
            thresholding: false,
            timestep_spacing: leading(),
            rescale_betas_zero_snr: false,
        }
    }

    /// Fails naming the first field the sampler does not implement.
    pub fn check(&self, at: &str) -> Result<()> {
        check(self.class_name == "DDIMScheduler", format!("{at}._class_name"), format!("'{}': only DDIMScheduler is implemented", self.class_name))?;
        check(matches!(self.beta_schedule.as_str(), "scaled_linear" | "linear"), format!("{at}.beta_schedule"), format!("'{}': only scaled_linear and linear are implemented", self.beta_schedule))?;
        check(self.trained_betas.is_none(), format!("{at}.trained_betas"), "explicit betas are not implemented")?;
        check(matches!(self.prediction_type.as_str(), "epsilon" | "v_prediction"), format!("{at}.prediction_type"), format!("'{}': only epsilon and v_prediction are implemented", self.prediction_type))?;
        check(!self.thresholding, format!("{at}.thresholding"), "dynamic thresholding is not implemented")?;
        check(!self.rescale_betas_zero_snr, format!("{at}.rescale_betas_zero_snr"), "zero terminal SNR rescaling is not implemented")?;
        check(matches!(self.timestep_spacing.as_str(), "leading" | "trailing" | "linspace"), format!("{at}.timestep_spacing"), format!("'{}' is not leading, trailing or linspace", self.timestep_spacing))?;
        check(self.num_train_timesteps > 1 && self.beta_start > 0.0 && self.beta_end >= self.beta_start && self.beta_end < 1.0, format!("{at}.beta_end"), "betas must rise within (0, 1) over more than one training step")
    }
}

/// Every part of AudioLDM 2, as the manifest's `audioldm2` component stores them.
#[derive(Clone, Debug, PartialEq, serde::Deserialize, serde::Serialize)]
pub struct Audioldm2Config {
    /// The denoiser.
    pub unet: UnetConfig,
    /// The spectrogram autoencoder.
    pub vae: VaeConfig,
    /// Mel spectrogram to audio.
    pub vocoder: HifiganConfig,
    /// The first text encoder.
    pub clap: ClapConfig,
    /// The second text encoder (Flan-T5's encoder).
    pub t5: T5Config,
    /// Both encodings into GPT-2's width.
    pub projection: ProjectionConfig,
    /// The language model that writes the 8 conditioning states.
    pub gpt2: Gpt2Config,
    /// The sampler.
    pub scheduler: DdimConfig,
}

impl Audioldm2Config {
    /// The fixture's geometry.
    pub fn tiny() -> Self {
        Audioldm2Config {
            unet: UnetConfig::tiny(),
            vae: VaeConfig::tiny(),
            vocoder: HifiganConfig::tiny(),
            clap: ClapConfig::tiny(),
            t5: T5Config { d_model: 32, d_kv: 8, d_ff: 40, num_layers: 2, num_heads: 4, relative_attention_num_buckets: 16, relative_attention_max_distance: 128, layer_norm_epsilon: 1e-6, feed_forward_proj: "gated-gelu".into(), vocab_size: 320 },
            projection: ProjectionConfig::tiny(),
            gpt2: Gpt2Config::tiny(),
            scheduler: DdimConfig::audioldm2_music(),
        }
    }

    /// `cvssp/audioldm2-music`, the decoder M2UGen-AudioLDM2 uses.
    pub fn audioldm2_music() -> Self {
        Audioldm2Config {
            unet: UnetConfig::audioldm2_music(),
            vae: VaeConfig::audioldm2_music(),
            vocoder: HifiganConfig::audioldm2_music(),
            clap: ClapConfig::audioldm2_music(),
            t5: T5Config { d_model: 1024, d_kv: 64, d_ff: 2816, num_layers: 24, num_heads: 16, relative_attention_num_buckets: 32, relative_attention_max_distance: 128, layer_norm_epsilon: 1e-6, feed_forward_proj: "gated-gelu".into(), vocab_size: 32128 },
            projection: ProjectionConfig::audioldm2_music(),
            gpt2: Gpt2Config::audioldm2_music(),
            scheduler: DdimConfig::audioldm2_music(),
        }
    }

    /// Checks every part, and that their widths meet: CLAP and T5 into the projection, the
    /// projection into GPT-2, GPT-2 and T5 into the UNet's transformers, the UNet's latents into
    /// the VAE, the VAE's spectrogram into the vocoder.
    pub fn check(&self) -> Result<()> {
        self.unet.check("audioldm2.unet")?;
        self.vae.check("audioldm2.vae")?;
        self.vocoder.check("audioldm2.vocoder")?;
        self.clap.check("audioldm2.clap")?;
        self.gpt2.check("audioldm2.gpt2")?;
        self.projection.check("audioldm2.projection")?;
        self.scheduler.check("audioldm2.scheduler")?;
        let p = &self.projection;
        check(p.text_encoder_dim == self.clap.text_config.projection_dim, "audioldm2.projection.text_encoder_dim", format!("{} is not CLAP's projection width {}", p.text_encoder_dim, self.clap.text_config.projection_dim))?;
        check(p.text_encoder_1_dim == self.t5.d_model, "audioldm2.projection.text_encoder_1_dim", format!("{} is not T5's width {}", p.text_encoder_1_dim, self.t5.d_model))?;
        check(p.language_model_dim == self.gpt2.n_embd, "audioldm2.projection.langauge_model_dim", format!("{} is not GPT-2's width {}", p.language_model_dim, self.gpt2.n_embd))?;
        for i in 0..self.unet.blocks() {
            for d in self.unet.cross_attention_dims(i).into_iter().flatten() {
                check(d == self.gpt2.n_embd || d == self.t5.d_model, "audioldm2.unet.cross_attention_dim", format!("{d} is neither GPT-2's width {} nor T5's {}", self.gpt2.n_embd, self.t5.d_model))?;
            }
        }
        check(self.unet.in_channels == self.vae.latent_channels && self.unet.out_channels == self.vae.latent_channels, "audioldm2.unet.in_channels", format!("the UNet's {}/{} channels are not the VAE's {} latent channels", self.unet.in_channels, self.unet.out_channels, self.vae.latent_channels))?;
        check(self.vae.out_channels == 1, "audioldm2.vae.out_channels", "the vocoder takes a one-channel spectrogram")
    }

    /// The spectrogram's bins: the latent width times the VAE's scale, which the vocoder must take.
    pub fn mel_bins(&self) -> usize {
        self.vocoder.model_in_dim
    }
}

fn yes() -> bool {
    true
}
fn one() -> usize {
    1
}
fn three() -> usize {
    3
}
fn one_f32() -> f32 {
    1.0
}
fn one_f64() -> f64 {
    1.0
}
fn thousand() -> usize {
    1000
}
fn norm_eps() -> f32 {
    1e-5
}
fn bert_eps() -> f32 {
    1e-12
}
fn gpt2_eps() -> f32 {
    1e-5
}
fn leaky() -> f32 {
    0.1
}
fn clap_projection() -> usize {
    512
}
fn per_block_one() -> PerBlock {
    PerBlock::One(1)
}
fn per_block_eight() -> PerBlock {
    PerBlock::One(8)
}
fn silu() -> Activation {
    Activation::Silu
}
fn gelu() -> Activation {
    Activation::Gelu
}
fn gelu_tanh() -> Activation {
    Activation::GeluTanh
}
fn relu() -> Activation {
    Activation::Relu
}
fn default_shift() -> String {
    "default".into()
}
fn positional() -> String {
    "positional".into()
}
fn ddim() -> String {
    "DDIMScheduler".into()
}
fn scaled_linear() -> String {
    "scaled_linear".into()
}
fn epsilon() -> String {
    "epsilon".into()
}
fn leading() -> String {
    "leading".into()
}
fn beta_start() -> f64 {
    0.0001
}
fn beta_end() -> f64 {
    0.02
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::config::parse;

    #[test]
    fn clap_audio_windows_and_refusals() {
        // HTSAT-tiny: a 64-token grid halving over four stages; windows of 8 shift by 4 until the
        // last stage's 8x8 grid is one window, which does not shift.
        let c = ClapAudioConfig::htsat_tiny();
        c.check("a").unwrap();
        assert_eq!((c.freq_ratio(), c.frames(), c.grid()), (4, 1024, 64));
        let windows: Vec<(usize, usize)> = (0..4).map(|i| c.stage_window(i)).collect();
        assert_eq!(windows, [(8, 4), (8, 4), (8, 4), (8, 0)]);
        ClapAudioConfig::tiny().check("a").unwrap();
        // As a file gives them: patches as pairs, fields left out at transformers' defaults.
        let parsed: ClapAudioConfig = serde_json::from_value(serde_json::json!({"patch_size": [4, 4], "patch_stride": 4, "patch_embed_input_channels": 4})).unwrap();
        assert_eq!((parsed.patch_size, parsed.patch_embed_input_channels, parsed.depths.len()), (4, 4, 4));
        assert!(serde_json::from_value::<ClapAudioConfig>(serde_json::json!({"patch_stride": [4, 2]})).unwrap_err().to_string().contains("not square"));
        let e = ClapAudioConfig { enable_fusion: true, ..c.clone() }.check("clap.audio_config").unwrap_err().to_string();
        assert!(e.contains("clap.audio_config.enable_fusion") && e.contains("not implemented"), "{e}");
        let e = ClapAudioConfig { depths: vec![2, 2, 2, 2, 2], num_attention_heads: vec![4; 5], hidden_size: 1536, ..c.clone() }.check("x").unwrap_err().to_string();
        assert!(e.contains("x.window_size") && e.contains("stage 4's 4x4 grid"), "{e}");
        let e = ClapAudioConfig { hidden_size: 512, ..c }.check("x").unwrap_err().to_string();
        assert!(e.contains("x.hidden_size") && e.contains("768"), "{e}");
    }

    fn fixture_json() -> serde_json::Value {
        serde_json::json!({
            "unet": {"_class_name": "AudioLDM2UNet2DConditionModel", "act_fn": "silu", "attention_head_dim": 4, "block_out_channels": [16, 32],
                "class_embed_type": null, "conv_in_kernel": 3, "conv_out_kernel": 3, "cross_attention_dim": [[null, 16, 32], [null, 16, 32]],
                "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D"], "downsample_padding": 1, "flip_sin_to_cos": true, "freq_shift": 0,
                "in_channels": 4, "layers_per_block": 2, "mid_block_scale_factor": 1, "mid_block_type": "UNetMidBlock2DCrossAttn", "norm_eps": 1e-05,
                "norm_num_groups": 8, "num_attention_heads": null, "only_cross_attention": false, "out_channels": 4, "resnet_time_scale_shift": "default",
                "sample_size": 32, "time_embedding_type": "positional", "transformer_layers_per_block": 1, "up_block_types": ["CrossAttnUpBlock2D", "UpBlock2D"],
                "use_linear_projection": false},
            "vae": {"act_fn": "silu", "block_out_channels": [16, 32], "down_block_types": ["DownEncoderBlock2D", "DownEncoderBlock2D"], "in_channels": 1,
                "latent_channels": 4, "layers_per_block": 1, "norm_num_groups": 8, "out_channels": 1, "sample_size": 32, "scaling_factor": 0.6,
                "up_block_types": ["UpDecoderBlock2D", "UpDecoderBlock2D"], "use_post_quant_conv": true, "use_quant_conv": true},
            "vocoder": {"model_in_dim": 8, "sampling_rate": 16000, "upsample_initial_channel": 16, "upsample_rates": [2, 2], "upsample_kernel_sizes": [4, 4],
                "resblock_kernel_sizes": [3, 7], "resblock_dilation_sizes": [[1, 3, 5], [1, 3, 5]], "leaky_relu_slope": 0.1, "normalize_before": true},
            "clap": {"projection_dim": 16, "text_config": {"vocab_size": 300, "hidden_size": 24, "num_hidden_layers": 2, "num_attention_heads": 2,
                "intermediate_size": 40, "hidden_act": "gelu", "max_position_embeddings": 80, "type_vocab_size": 1, "layer_norm_eps": 1e-12,
                "pad_token_id": 1, "projection_dim": 16, "projection_hidden_act": "relu"}, "audio_config": {"hidden_size": 64}},
            "t5": {"d_model": 32, "d_kv": 8, "d_ff": 40, "num_layers": 2, "num_heads": 4, "relative_attention_num_buckets": 16,
                "relative_attention_max_distance": 128, "layer_norm_epsilon": 1e-6, "feed_forward_proj": "gated-gelu", "vocab_size": 320},
            "projection": {"langauge_model_dim": 16, "text_encoder_1_dim": 32, "text_encoder_dim": 16, "use_learned_position_embedding": null, "max_seq_length": null},
            "gpt2": {"activation_function": "gelu_new", "n_embd": 16, "n_head": 2, "n_inner": null, "n_layer": 2, "n_positions": 64, "vocab_size": 300,
                "layer_norm_epsilon": 1e-5, "max_new_tokens": 8},
            "scheduler": {"_class_name": "DDIMScheduler", "beta_end": 0.0195, "beta_schedule": "scaled_linear", "beta_start": 0.0015, "clip_sample": false,
                "num_train_timesteps": 1000, "prediction_type": "epsilon", "set_alpha_to_one": false, "steps_offset": 1, "thresholding": false,
                "timestep_spacing": "leading"}
        })
    }

    #[test]
    fn the_fixture_files_parse_into_the_tiny_geometry() {
        let mut c: Audioldm2Config = parse("audioldm2", &fixture_json()).unwrap();
        c.check().unwrap();
        assert_eq!(c.unet.cross_attention_dims(1), vec![None, Some(16), Some(32)]);
        assert_eq!((c.unet.heads(1), c.unet.layers(0), c.unet.time_embed_dim()), (4, 2, 64));
        assert_eq!(c.projection.language_model_dim, 16);
        assert_eq!((c.vae.scale_factor(), c.vocoder.hop(), c.gpt2.inner()), (2, 4, 64));
        c.clap.audio_config = serde_json::Value::Null;
        assert_eq!(c, Audioldm2Config::tiny());
    }

    #[test]
    fn the_published_geometry_is_consistent() {
        let c = Audioldm2Config::audioldm2_music();
        c.check().unwrap();
        assert_eq!((c.vae.scale_factor(), c.vocoder.hop(), c.unet.time_embed_dim()), (4, 160, 512));
        assert_eq!(c.unet.cross_attention_dims(3), vec![None, Some(768), Some(1024)]);
        // M2UGen-AudioLDM2's projector writes 128 x T5 width then 8 x GPT-2 width.
        assert_eq!(128 * c.t5.d_model + c.gpt2.new_tokens() * c.gpt2.n_embd, 128 * 1024 + 8 * 768);
    }

    #[test]
    fn what_is_not_implemented_is_refused_naming_the_field() {
        let mut json = fixture_json();
        json["unet"]["time_embedding_type"] = "fourier".into();
        let c: Audioldm2Config = parse("audioldm2", &json).unwrap();
        assert!(c.check().unwrap_err().to_string().contains("audioldm2.unet.time_embedding_type"));
        let mut json = fixture_json();
        json["unet"]["time_cond_proj_dim"] = 8.into();
        let c: Audioldm2Config = parse("audioldm2", &json).unwrap();
        assert!(c.check().unwrap_err().to_string().contains("audioldm2.unet.time_cond_proj_dim"));
        let mut json = fixture_json();
        json["scheduler"]["_class_name"] = "PNDMScheduler".into();
        let c: Audioldm2Config = parse("audioldm2", &json).unwrap();
        assert!(c.check().unwrap_err().to_string().contains("audioldm2.scheduler._class_name"));
        let mut json = fixture_json();
        json["projection"]["text_encoder_1_dim"] = 33.into();
        let c: Audioldm2Config = parse("audioldm2", &json).unwrap();
        assert!(c.check().unwrap_err().to_string().contains("text_encoder_1_dim"));
        let mut json = fixture_json();
        json["vocoder"]["upsample_rates"] = "fast".into();
        let e = parse::<Audioldm2Config>("audioldm2", &json).unwrap_err().to_string();
        assert!(e.contains("audioldm2.vocoder.upsample_rates"), "{e}");
    }
}
