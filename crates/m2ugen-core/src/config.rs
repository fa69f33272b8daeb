//! Model configurations: plain structs with the paper's sizes and the test fixtures' sizes.
//! Widths are never written as literals elsewhere: code asks a config.

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
}
