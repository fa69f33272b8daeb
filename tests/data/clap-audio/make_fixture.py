"""Makes the CLAP audio-branch fixture: a tiny random ClapModel (AudioLDM 2's CLAP, HTSAT
unfused; its text branch at the AudioLDM 2 fixture's geometry, its audio branch small but with
what the published one has: four stages, the last one a single unshifted window, and a
spectrogram folded in two time segments) and what transformers computes with it.

    python make_fixture.py [--seed N] [--out DIR]

Needs torch, transformers (5.x) and safetensors. Writes, in diffusers' layout for AudioLDM 2's
CLAP, `text_encoder/config.json` and `text_encoder/model.safetensors`, and `io.safetensors`:

  in.waveform_48k.{i}          three mono clips at 48 kHz: a chord shorter than the window
                               (padded by repetition), noise exactly the window, and a longer
                               sweep (the fusion of the whole spectrogram, shrunk, and three
                               crops; the crops' random starts are taken as the first of each
                               third, as the port takes them)
  meta.max_length              samples per window given to the feature extractor (it pads to
                               this; less than the model's width, so the spectrogram is
                               stretched to it by bicubic interpolation)
  out.input_features.{i}       ClapFeatureExtractor (truncation "fusion", padding "repeatpad"):
                               (4, frames, 64) log-mel in dB
  out.normalized_features.{i}  after the encoder's BatchNorm over mel bins (eval mode)
  out.image.{i}                what the patch embedding sees: (4, height, width) after
                               reshape_mel2img (the bicubic stretch, the frequency folding)
  out.pooled.{i}               the audio model's pooler output (hidden_size)
  out.audio_embeds             get_audio_features, L2-normalised: (3, projection_dim)
  in.clap_ids, in.clap_mask    two prompts through RoBERTa's ids (the second padded)
  out.text_embeds              get_text_features, L2-normalised: (2, projection_dim)
  out.logits_per_text          ClapModel's logits: (2, 3)
"""
import argparse, json, math, os
import numpy as np
import torch
from safetensors.torch import save_file
from transformers import ClapConfig, ClapModel, ClapFeatureExtractor

p = argparse.ArgumentParser()
p.add_argument("--seed", type=int, default=11)
p.add_argument("--out", default=os.path.dirname(os.path.abspath(__file__)))
args = p.parse_args()
torch.manual_seed(args.seed)
rng = np.random.default_rng(args.seed)

text_config = dict(vocab_size=300, hidden_size=24, num_hidden_layers=2, num_attention_heads=2, intermediate_size=40,
                   max_position_embeddings=80, type_vocab_size=1, layer_norm_eps=1e-12, pad_token_id=1,
                   projection_dim=16, hidden_act="gelu", projection_hidden_act="relu")
audio_config = dict(depths=[2, 2, 2, 2], num_attention_heads=[2, 2, 2, 2], hidden_size=128, patch_embeds_hidden_size=16,
                    window_size=4, spec_size=128, num_mel_bins=64, patch_size=4, patch_stride=4,
                    patch_embed_input_channels=4, enable_fusion=False, enable_patch_layer_norm=True,
                    flatten_patch_embeds=True, projection_dim=16, mlp_ratio=4.0, qkv_bias=True,
                    hidden_act="gelu", layer_norm_eps=1e-5, hidden_dropout_prob=0.0)
config = ClapConfig(text_config=text_config, audio_config=audio_config, projection_dim=16)
model = ClapModel(config).eval()
with torch.no_grad():
    # Random statistics and affine terms for the BatchNorm (fresh ones are 0 and 1), and
    # visible relative position biases (fresh ones are zeros).
    bn = model.audio_model.audio_encoder.batch_norm
    bins = audio_config["num_mel_bins"]
    bn.running_mean.copy_(torch.randn(bins) * 5 - 40)
    bn.running_var.copy_(torch.rand(bins) * 200 + 50)
    bn.weight.copy_(torch.rand(bins) + 0.5)
    bn.bias.copy_(torch.randn(bins) * 0.1)
    for name, param in model.named_parameters():
        if name.endswith("relative_position_bias_table"):
            param.copy_(torch.randn_like(param) * 0.5)

out_dir = os.path.join(args.out, "text_encoder")
os.makedirs(out_dir, exist_ok=True)
model.save_pretrained(out_dir, safe_serialization=True)

rate = 48_000
max_length = 48_000  # 1 s: 101 frames, stretched to the model's 256
t = lambda n: np.arange(n) / rate
chord = 0.3 * np.sin(2 * np.pi * 440 * t(9_000)) + 0.2 * np.sin(2 * np.pi * 1250 * t(9_000))
noise = rng.standard_normal(max_length) * 0.1
n = 100_000
sweep = 0.5 * np.sin(2 * np.pi * (100 * t(n) + 0.5 * (8000 - 100) / (n / rate) * t(n) ** 2))
# Rounded to f32 as stored, so that the features are those of the stored clips.
clips = [c.astype(np.float32).astype(np.float64) for c in (chord, noise, sweep)]

fe = ClapFeatureExtractor(feature_size=bins, sampling_rate=rate, hop_length=480, fft_window_size=1024,
                          frequency_min=50, frequency_max=14_000, truncation="fusion", padding="repeatpad")
tensors = {"meta.max_length": torch.tensor([max_length], dtype=torch.int64)}
features = []
for i, clip in enumerate(clips):
    tensors[f"in.waveform_48k.{i}"] = torch.tensor(clip, dtype=torch.float32)
    # A longer clip's three crops start at random; the first start of each third here.
    choice = np.random.choice
    np.random.choice = lambda starts: starts[0]
    f = fe(clip, max_length=max_length, sampling_rate=rate, return_tensors="pt").input_features.float()
    np.random.choice = choice
    features.append(f)
    tensors[f"out.input_features.{i}"] = f[0].contiguous()

encoder = model.audio_model.audio_encoder
seen = {}
encoder.patch_embed.register_forward_hook(lambda m, inp, out: seen.__setitem__("image", inp[0].detach().clone()))
encoder.register_forward_hook(lambda m, inp, out: seen.__setitem__("pooled", out.pooler_output.detach().clone()))
with torch.no_grad():
    batch = torch.cat(features, 0)
    normalized = encoder.batch_norm(batch.transpose(1, 3)).transpose(1, 3)
    audio_embeds = model.get_audio_features(input_features=batch)
    audio_embeds = getattr(audio_embeds, "pooler_output", audio_embeds)
    audio_embeds = torch.nn.functional.normalize(audio_embeds, dim=-1)
    for i in range(3):
        tensors[f"out.normalized_features.{i}"] = normalized[i].contiguous()
        tensors[f"out.image.{i}"] = seen["image"][i].contiguous()
        tensors[f"out.pooled.{i}"] = seen["pooled"][i].contiguous()
    tensors["out.audio_embeds"] = audio_embeds.contiguous()
    ids = torch.tensor([[0, 45, 77, 123, 9, 2], [0, 200, 31, 2, 1, 1]], dtype=torch.int64)
    mask = (ids != 1).long()
    text_embeds = model.get_text_features(input_ids=ids, attention_mask=mask)
    text_embeds = getattr(text_embeds, "pooler_output", text_embeds)
    text_embeds = torch.nn.functional.normalize(text_embeds, dim=-1)
    out = model(input_ids=ids, attention_mask=mask, input_features=batch)
    tensors["in.clap_ids"] = ids
    tensors["in.clap_mask"] = mask
    tensors["out.text_embeds"] = text_embeds.contiguous()
    tensors["out.logits_per_text"] = out.logits_per_text.contiguous()
save_file(tensors, os.path.join(args.out, "io.safetensors"))
print({k: tuple(v.shape) for k, v in tensors.items()})
print("logits_per_text", out.logits_per_text)
