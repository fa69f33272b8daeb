//! The reference's tensor names, and ours. This is the only place the reference's names appear.
//!
//! | reference (M2UGen / MU-LLaMA checkpoint) | ours |
//! |---|---|
//! | `llama.*` (Meta layout) | `llm.*` |
//! | `prefix_query.weight` | `llm.prefix_query` |
//! | `mu_mert_agg`, `mu_mert_proj` | `music_adapter.aggregate`, `music_adapter.proj` |
//! | `mu_mert_norm_k`, `mu_mert_f{1,2,3}_k` | `music_adapter.blocks.{k-1}.norm`, `.w1`, `.w2`, `.w3` |
//! | `iu_vit_*`, `iu_vivit_*` | `image_adapter.*`, `video_adapter.*`, likewise |
//! | `output_projector.fc`, `.model`, `.query_embs`, `.tfm` | `output_projector.in_proj`, `.out_proj`, `.queries`, `.transformer` |
//! | `mert_model.*`, `vit_model.*`, `vivit_model.*`, `generation_model.*` | `mert.*`, `vit.*`, `vivit.*`, `musicgen.*` |
//! | ViT/ViViT `encoder.layer.N.attention.attention.{query,key,value}`, `.attention.output.dense`, `.intermediate.dense`, `.output.dense` (transformers 4) | `layers.N.attention.{q,k,v,o}_proj`, `layers.N.mlp.fc1`, `.fc2` (transformers 5's names) |
//!
//! LoRA pairs (`lora_<w>_l1`, `lora_<w>_l2`) are folded into `<w>`. The pair of `wv` is also
//! kept, as `attention.wv_lora_down` (`l1`) and `attention.wv_lora_up` (`l2`): the reference
//! sends the adapter prefix through `wv` without its LoRA, so the model takes it back out there.
//!
//! AudioLDM 2 (a `diffusers` pipeline directory, [`crate::diffusers`]) keeps each part's own
//! names under `audioldm2.<role>.`: see [`audioldm2_role`].

/// What a reference tensor becomes.
#[derive(Debug, PartialEq)]
pub enum Role {
    /// Stored under a new name.
    Rename(String),
    /// Half of a LoRA pair, folded into the base weight `base` (reference name).
    LoraPart,
    /// Half of a weight-norm pair, folded into `weight` under the given name.
    WeightNormPart,
    /// Not part of the model (optimizer state and the like never reach here; this is for
    /// tensors the model does not use, e.g. HuBERT's `masked_spec_embed`).
    Skip,
}

const ADAPTERS: [(&str, &str); 3] = [("mu_mert_", "music_adapter"), ("iu_vit_", "image_adapter"), ("iu_vivit_", "video_adapter")];
const BACKBONES: [(&str, &str); 4] = [("mert_model.", "mert."), ("vit_model.", "vit."), ("vivit_model.", "vivit."), ("generation_model.", "musicgen.")];

/// Our name for a reference tensor name.
pub fn role(name: &str) -> Role {
    if name.contains(".lora_") {
        return Role::LoraPart;
    }
    if weight_norm_parts(name).is_some() {
        return Role::WeightNormPart;
    }
    if unused(name) {
        return Role::Skip;
    }
    if let Some(rest) = name.strip_prefix("llama.") {
        return Role::Rename(format!("llm.{rest}"));
    }
    if name == "prefix_query.weight" {
        return Role::Rename("llm.prefix_query".into());
    }
    for (prefix, ours) in ADAPTERS {
        if let Some(rest) = name.strip_prefix(prefix) {
            // rest: agg.weight | proj.bias | norm_2.weight | f1_3.weight
            let (part, param) = rest.split_once('.').unwrap_or((rest, ""));
            let renamed = match part.split_once('_') {
                None if part == "agg" => format!("{ours}.aggregate.{param}"),
                None => format!("{ours}.{part}.{param}"),
                Some((kind, k)) => {
                    let block = k.parse::<usize>().map_or(k.to_string(), |k| (k.saturating_sub(1)).to_string());
                    let kind = match kind {
                        "f1" => "w1",
                        "f2" => "w2",
                        "f3" => "w3",
                        other => other,
                    };
                    format!("{ours}.blocks.{block}.{kind}.{param}")
                }
            };
            return Role::Rename(renamed);
        }
    }
    if let Some(rest) = name.strip_prefix("output_projector.") {
        let rest = rest
            .replacen("fc.", "in_proj.", 1)
            .replacen("model.", "out_proj.", 1)
            .replacen("tfm.", "transformer.", 1)
            .replace("query_embs", "queries");
        return Role::Rename(format!("output_projector.{rest}"));
    }
    for (prefix, ours) in BACKBONES {
        if let Some(rest) = name.strip_prefix(prefix) {
            return Role::Rename(format!("{ours}{}", vit_layer_name(rest)));
        }
    }
    Role::Rename(name.to_string())
}

/// Tensors no inference uses, wherever they come from: HuBERT's `masked_spec_embed` (training's
/// masking) and EnCodec's codebook statistics (`cluster_size`, `embed_avg`, `inited`).
fn unused(name: &str) -> bool {
    name.ends_with("masked_spec_embed") || name.ends_with(".codebook.cluster_size") || name.ends_with(".codebook.embed_avg") || name.ends_with(".codebook.inited")
}

/// What a tensor of a Hugging Face model stored as component `component` becomes: its own name
/// under `component.`, weight norms folded, unused tensors left out. For MERT, ViT and ViViT
/// these are the names the official checkpoint's copies (`mert_model.*`, ...) get.
pub fn hf_role(component: &str, name: &str) -> Role {
    if weight_norm_parts(name).is_some() {
        return Role::WeightNormPart;
    }
    if unused(name) {
        return Role::Skip;
    }
    Role::Rename(format!("{component}.{}", vit_layer_name(name)))
}

/// A ViT or ViViT layer's tensor under transformers 5's names, whichever version wrote it: the
/// published Hugging Face files and checkpoints saved with transformers 4 say
/// `encoder.layer.N.attention.attention.query`, later ones `layers.N.attention.q_proj`. Other
/// names are returned as they are.
fn vit_layer_name(name: &str) -> String {
    const PARTS: [(&str, &str); 8] = [
        ("attention.attention.query.", "attention.q_proj."),
        ("attention.attention.key.", "attention.k_proj."),
        ("attention.attention.value.", "attention.v_proj."),
        ("attention.output.dense.", "attention.o_proj."),
        ("intermediate.dense.", "mlp.fc1."),
        ("output.dense.", "mlp.fc2."),
        ("layernorm_before.", "layernorm_before."),
        ("layernorm_after.", "layernorm_after."),
    ];
    let Some(rest) = name.strip_prefix("encoder.layer.") else { return name.to_string() };
    let Some((n, part)) = rest.split_once('.') else { return name.to_string() };
    if n.parse::<usize>().is_err() {
        return name.to_string();
    }
    match PARTS.iter().find_map(|(old, new)| part.strip_prefix(old).map(|param| format!("{new}{param}"))) {
        Some(part) => format!("layers.{n}.{part}"),
        None => name.to_string(),
    }
}

/// The parts of AudioLDM 2 under their roles: `(role, folder of the pipeline directory, weights
/// file)`. Each part's tensors are stored as `audioldm2.<role>.<its own name>`.
pub const AUDIOLDM2_PARTS: [(&str, &str, &str); 7] = [
    ("unet", "unet", "diffusion_pytorch_model.safetensors"),
    ("vae", "vae", "diffusion_pytorch_model.safetensors"),
    ("vocoder", "vocoder", "model.safetensors"),
    ("clap", "text_encoder", "model.safetensors"),
    ("t5", "text_encoder_2", "model.safetensors"),
    ("projection", "projection_model", "diffusion_pytorch_model.safetensors"),
    ("gpt2", "language_model", "model.safetensors"),
];

/// What a tensor of AudioLDM 2's part `role` (one of [`AUDIOLDM2_PARTS`]) becomes:
/// `audioldm2.<role>.<name>`, weight norms folded (as for any Hugging Face model), with these
/// exceptions:
///
/// - GPT-2 is stored under `GPT2LMHeadModel`'s names (`transformer.h.0.attn.c_attn.weight`,
///   as `diffusers` now saves it); a file saved from `GPT2Model` (`h.0.…`, as the pipeline was
///   first published) gets the `transformer.` prefix, so both give the same names.
/// - Skipped, as inference never reads them: GPT-2's `lm_head.weight` (tied to `wte`; AudioLDM
///   2 takes hidden states, never logits) and its `attn.bias` / `attn.masked_bias` causal-mask
///   buffers (older files); CLAP's `position_ids` and `token_type_ids` buffers (positions
///   follow from the ids, RoBERTa-style; the token types are all 0), its audio branch's
///   `relative_position_index` (a function of the window size, recomputed by the model) and
///   BatchNorm's `num_batches_tracked` (training's count); T5's `encoder.embed_tokens.weight`
///   where a file stores it (a copy of `shared.weight`).
///
/// Everything else is kept, the VAE's encoder and CLAP's audio branch included (audio to audio
/// and CLAP ranking need them).
pub fn audioldm2_role(role: &str, name: &str) -> Role {
    if weight_norm_parts(name).is_some() {
        return Role::WeightNormPart;
    }
    let last = |n: usize| name.rsplit('.').take(n).collect::<Vec<_>>();
    let skip = name.ends_with("num_batches_tracked")
        || match role {
            "gpt2" => matches!(name, "lm_head.weight") || matches!(last(2).as_slice(), ["bias" | "masked_bias", "attn"]),
            "clap" => name.ends_with(".relative_position_index") || matches!(name, "text_model.embeddings.position_ids" | "text_model.embeddings.token_type_ids"),
            "t5" => name == "encoder.embed_tokens.weight",
            _ => false,
        };
    if skip {
        return Role::Skip;
    }
    if role == "gpt2" && !name.starts_with("transformer.") {
        return Role::Rename(format!("audioldm2.gpt2.transformer.{name}"));
    }
    Role::Rename(format!("audioldm2.{role}.{name}"))
}

/// For a base weight (`….attention.wq.weight`), the names of its LoRA pair, if it has one.
pub fn lora_pair(base: &str) -> Option<(String, String)> {
    let stem = base.strip_suffix(".weight")?;
    let (parent, w) = stem.rsplit_once('.')?;
    Some((format!("{parent}.lora_{w}_l1.weight"), format!("{parent}.lora_{w}_l2.weight")))
}

/// For a weight-norm part, `(g name, v name, folded reference name)`.
pub fn weight_norm_parts(name: &str) -> Option<(String, String, String)> {
    if let Some(stem) = name.strip_suffix(".parametrizations.weight.original0").or_else(|| name.strip_suffix(".parametrizations.weight.original1")) {
        return Some((format!("{stem}.parametrizations.weight.original0"), format!("{stem}.parametrizations.weight.original1"), format!("{stem}.weight")));
    }
    let stem = name.strip_suffix(".weight_g").or_else(|| name.strip_suffix(".weight_v"))?;
    Some((format!("{stem}.weight_g"), format!("{stem}.weight_v"), format!("{stem}.weight")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_names_map_to_ours() {
        let r = |n: &str| match role(n) {
            Role::Rename(s) => s,
            other => panic!("{n}: {other:?}"),
        };
        assert_eq!(r("llama.layers.3.attention.wq.weight"), "llm.layers.3.attention.wq.weight");
        assert_eq!(r("prefix_query.weight"), "llm.prefix_query");
        assert_eq!(r("mu_mert_agg.weight"), "music_adapter.aggregate.weight");
        assert_eq!(r("mu_mert_proj.bias"), "music_adapter.proj.bias");
        assert_eq!(r("mu_mert_norm_1.weight"), "music_adapter.blocks.0.norm.weight");
        // ViT layers: transformers 4's names and 5's become one.
        assert_eq!(r("vit_model.encoder.layer.11.attention.attention.query.weight"), "vit.layers.11.attention.q_proj.weight");
        assert_eq!(r("vivit_model.layers.0.attention.q_proj.bias"), "vivit.layers.0.attention.q_proj.bias");
        assert_eq!(r("vit_model.encoder.layer.0.output.dense.weight"), "vit.layers.0.mlp.fc2.weight");
        assert_eq!(r("vit_model.encoder.layer.0.attention.output.dense.weight"), "vit.layers.0.attention.o_proj.weight");
        assert_eq!(r("vit_model.encoder.layer.0.layernorm_before.bias"), "vit.layers.0.layernorm_before.bias");
        assert_eq!(r("vit_model.embeddings.cls_token"), "vit.embeddings.cls_token");
        // HuBERT's `encoder.layers.N` (plural) is another model's and stays.
        assert_eq!(r("mert_model.encoder.layers.0.attention.q_proj.weight"), "mert.encoder.layers.0.attention.q_proj.weight");
        let Role::Rename(hf) = hf_role("vivit", "encoder.layer.1.intermediate.dense.weight") else { panic!() };
        assert_eq!(hf, "vivit.layers.1.mlp.fc1.weight");
        assert_eq!(hf_role("mert", "masked_spec_embed"), Role::Skip);
        assert_eq!(r("iu_vit_f2_3.weight"), "image_adapter.blocks.2.w2.weight");
        assert_eq!(r("iu_vivit_f3_2.weight"), "video_adapter.blocks.1.w3.weight");
        assert_eq!(r("output_projector.fc.weight"), "output_projector.in_proj.weight");
        assert_eq!(r("output_projector.model.bias"), "output_projector.out_proj.bias");
        assert_eq!(r("output_projector.query_embs"), "output_projector.queries");
        assert_eq!(r("output_projector.tfm.decoder.layers.0.norm1.weight"), "output_projector.transformer.decoder.layers.0.norm1.weight");
        assert_eq!(r("mert_model.encoder.layers.1.attention.q_proj.weight"), "mert.encoder.layers.1.attention.q_proj.weight");
        assert_eq!(role("llama.layers.0.feed_forward.lora_w2_l1.weight"), Role::LoraPart);
        assert_eq!(role("mert_model.encoder.pos_conv_embed.conv.parametrizations.weight.original1"), Role::WeightNormPart);
        assert_eq!(role("mert_model.masked_spec_embed"), Role::Skip);
        assert_eq!(
            lora_pair("llama.layers.0.attention.wq.weight"),
            Some(("llama.layers.0.attention.lora_wq_l1.weight".into(), "llama.layers.0.attention.lora_wq_l2.weight".into()))
        );
        assert_eq!(weight_norm_parts("a.conv.weight_v").map(|p| p.2), Some("a.conv.weight".into()));
        assert_eq!(hf_role("musicgen", "decoder.lm_heads.0.weight"), Role::Rename("musicgen.decoder.lm_heads.0.weight".into()));
        assert_eq!(hf_role("musicgen", "audio_encoder.quantizer.layers.0.codebook.embed_avg"), Role::Skip);
    }

    #[test]
    fn audioldm2_names_keep_their_part_and_skip_what_inference_never_reads() {
        let r = |role: &str, n: &str| match audioldm2_role(role, n) {
            Role::Rename(s) => s,
            other => panic!("{role} {n}: {other:?}"),
        };
        assert_eq!(r("unet", "down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.weight"), "audioldm2.unet.down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.weight");
        assert_eq!(r("vae", "encoder.conv_in.weight"), "audioldm2.vae.encoder.conv_in.weight");
        assert_eq!(r("vocoder", "mean"), "audioldm2.vocoder.mean");
        assert_eq!(r("clap", "audio_model.audio_encoder.patch_embed.proj.weight"), "audioldm2.clap.audio_model.audio_encoder.patch_embed.proj.weight");
        assert_eq!(r("clap", "logit_scale_t"), "audioldm2.clap.logit_scale_t");
        assert_eq!(r("t5", "shared.weight"), "audioldm2.t5.shared.weight");
        assert_eq!(r("projection", "sos_embed_1"), "audioldm2.projection.sos_embed_1");
        // GPT-2 under GPT2LMHeadModel's names, whichever class saved it.
        assert_eq!(r("gpt2", "transformer.h.1.attn.c_attn.bias"), "audioldm2.gpt2.transformer.h.1.attn.c_attn.bias");
        assert_eq!(r("gpt2", "h.1.attn.c_attn.bias"), "audioldm2.gpt2.transformer.h.1.attn.c_attn.bias");
        assert_eq!(r("gpt2", "wte.weight"), "audioldm2.gpt2.transformer.wte.weight");
        for (role, skipped) in [
            ("gpt2", "lm_head.weight"),
            ("gpt2", "h.0.attn.bias"),
            ("gpt2", "transformer.h.11.attn.masked_bias"),
            ("clap", "text_model.embeddings.position_ids"),
            ("clap", "text_model.embeddings.token_type_ids"),
            ("clap", "audio_model.audio_encoder.layers.0.blocks.1.attention.self.relative_position_index"),
            ("clap", "audio_model.audio_encoder.batch_norm.num_batches_tracked"),
            ("t5", "encoder.embed_tokens.weight"),
        ] {
            assert_eq!(audioldm2_role(role, skipped), Role::Skip, "{role} {skipped}");
        }
        // Only those: a bias of another part, or CLAP's position table, is kept.
        assert_eq!(r("unet", "conv_in.bias"), "audioldm2.unet.conv_in.bias");
        assert_eq!(r("clap", "text_model.embeddings.position_embeddings.weight"), "audioldm2.clap.text_model.embeddings.position_embeddings.weight");
        assert_eq!(audioldm2_role("vocoder", "conv_pre.weight_g"), Role::WeightNormPart);
    }
}
