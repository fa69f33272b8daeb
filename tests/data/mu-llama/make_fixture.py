#!/usr/bin/env python3
"""Writes the MU-LLaMA fixture: a tiny MU-LLaMA in the published layout, and its outputs.

No torch and no numpy here (neither is on the build machines), so this script does by hand what
torch.save and the MU-LLaMA code do:

- `base/consolidated.00.pth` + `base/params.json`: a LLaMA-2 base in Meta's layout (bfloat16, as
  Meta publishes LLaMA-2; `vocab_size` -1, as in the published params.json).
- `checkpoint.pth`: `{'model': ..., 'optimizer': {}, 'epoch': 0, 'scaler': {}, 'args': Namespace}`
  holding what MU-LLaMA trains (float32): the music adapter `mu_mert_*` with its 4x-wide blocks,
  `prefix_query` (20 rows: the last 20 layers take the music), and on every LLaMA layer the
  biases of wq, wo, w1, w2, w3, the LoRA pairs `lora_<w>_l1/l2` (rank 16), the gates and the norms.
  MU-LLaMA loads it non-strictly over the base, so a converter needs both files.
- `io.safetensors`: `in.mert_states` (3, 12), the MERT hidden states averaged over time;
  `out.audio_feats` (1, 1, dim), MU-LLaMA's music adapter on them (`forward_audio`: aggregate,
  normalise, weight 1/(1+1e-6), project, three 4x-wide SwiGLU blocks); `in.prompt_ids` (1, 7);
  `out.last_hidden.audio` (1, 7, dim, before the final norm), `out.last_logits.audio` (1, vocab)
  and `out.greedy16.audio` (1, 16) of MU-LLaMA's `forward_inference` with that feature.

Both files are written in PyTorch's zip format as torch.save writes it (protocol 2 pickle under
`<stem>/data.pkl`, one record per storage under `<stem>/data/N`, 64-byte aligned).

The forward below follows MU-LLaMA's `llama/llama.py` and `llama/llama_adapter.py` (Meta's
complex-pair RoPE; LoRA added to the base outputs; the adapter prefix attended as
`tanh(gate) * wv(prefix)`, wv without its LoRA). Before writing anything it is checked on
`../llama-layouts`: it must reproduce the `transformers` logits there (atol 1e-4), which tests
the plain LLaMA part and this script's torch-file reader.

Sizes: dim 16, 22 layers (2 plain + 20 with the prefix), 2 heads, FFN 48 (multiple_of 16),
LoRA rank 16, vocabulary 278 (the pieces of ../tokenizer/tokenizer.model, so that it is this
model's tokenizer), MERT width 12 with 3 states.
"""
import argparse
import collections
import json
import math
import os
import pickle
import random
import struct
import sys
import types
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
DIM, LAYERS, HEADS, MULTIPLE_OF, VOCAB, RANK = 16, 22, 2, 16, 278, 16
QUERY_LAYERS = 20  # MU-LLaMA's query_layer
MERT_WIDTH, MERT_STATES = 12, 3
NORM_EPS = 1e-5
BRIDGE_EPS = 1e-6  # RMSNorm's default, as the adapter blocks are built
PROMPT, GREEDY = 7, 16


# ---------------------------------------------------------------- PyTorch's zip format
class T:
    """A tensor: shape, row-major values, storage type (FloatStorage, BFloat16Storage)."""

    def __init__(self, shape, values, storage="FloatStorage"):
        assert math.prod(shape) == len(values), (shape, len(values))
        self.shape, self.values, self.storage = list(shape), list(values), storage


def bf16(x):
    """x rounded to the nearest bfloat16 (ties to even), as a float."""
    bits = struct.unpack("<I", struct.pack("<f", x))[0]
    bits = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
    return struct.unpack("<f", struct.pack("<I", bits << 16))[0]


def f32r(x):
    """x rounded to float32, as a float."""
    return struct.unpack("<f", struct.pack("<f", x))[0]


def encode(t):
    if t.storage == "FloatStorage":
        return struct.pack(f"<{len(t.values)}f", *t.values)
    if t.storage == "BFloat16Storage":
        return b"".join(struct.pack("<I", struct.unpack("<I", struct.pack("<f", v))[0])[2:] for v in t.values)
    raise ValueError(t.storage)


def decode(storage, data):
    if storage == "FloatStorage":
        return list(struct.unpack(f"<{len(data) // 4}f", data))
    if storage == "BFloat16Storage":
        return [struct.unpack("<f", b"\0\0" + data[i:i + 2])[0] for i in range(0, len(data), 2)]
    if storage == "HalfStorage":
        return list(struct.unpack(f"<{len(data) // 2}e", data))
    raise ValueError(storage)


_GLOBALS = []


def _torch_globals():
    """Stand-ins for the globals torch's pickles name, so the pickler writes those names."""
    if _GLOBALS:
        return _GLOBALS[0]
    if "torch" in sys.modules:
        raise SystemExit("run without torch imported: this script writes torch's names itself")
    torch = types.ModuleType("torch")
    utils = types.ModuleType("torch._utils")

    def _rebuild_tensor_v2(*args):
        raise AssertionError("never called: only its name is pickled")

    _rebuild_tensor_v2.__module__, _rebuild_tensor_v2.__qualname__ = "torch._utils", "_rebuild_tensor_v2"
    utils._rebuild_tensor_v2 = _rebuild_tensor_v2
    for name in ("FloatStorage", "BFloat16Storage"):
        setattr(torch, name, type(name, (), {"__module__": "torch"}))
    torch._utils = utils
    sys.modules["torch"], sys.modules["torch._utils"] = torch, utils
    _GLOBALS.append((torch, utils))
    return torch, utils


class _Storage:
    def __init__(self, tensor):
        self.tensor = tensor


def _reduce_tensor(t):
    torch, utils = _torch_globals()
    stride = tuple(math.prod(t.shape[i + 1:]) for i in range(len(t.shape)))
    return utils._rebuild_tensor_v2, (_Storage(t), 0, tuple(t.shape), stride, False, collections.OrderedDict())


class _Pickler(pickle.Pickler):
    def __init__(self, f):
        super().__init__(f, protocol=2)
        self.records = []

    def reducer_override(self, obj):
        return _reduce_tensor(obj) if isinstance(obj, T) else NotImplemented

    def persistent_id(self, obj):
        if not isinstance(obj, _Storage):
            return None
        torch, _ = _torch_globals()
        key = str(len(self.records))
        self.records.append(encode(obj.tensor))
        return ("storage", getattr(torch, obj.tensor.storage), key, "cpu", len(obj.tensor.values))


def torch_save(obj, path):
    import io

    buf = io.BytesIO()
    p = _Pickler(buf)
    p.dump(obj)
    stem = os.path.basename(path).rsplit(".", 1)[0]
    records = [("data.pkl", buf.getvalue()), (".format_version", b"1"), (".storage_alignment", b"64"), ("byteorder", b"little")]
    records += [(f"data/{i}", r) for i, r in enumerate(p.records)]
    records += [("version", b"3\n"), (".data/serialization_id", b"0" * 40)]
    with open(path, "wb") as f, zipfile.ZipFile(f, "w", zipfile.ZIP_STORED) as z:
        for name, data in records:
            info = zipfile.ZipInfo(f"{stem}/{name}", date_time=(1980, 1, 1, 0, 0, 0))
            # Pad the local header's extra field so the record's data starts 64-byte aligned.
            start = f.tell() + 30 + len(info.filename.encode()) + 4
            info.extra = struct.pack("<HH", 0x4246, -start % 64) + b"Z" * (-start % 64)
            z.writestr(info, data)


def torch_load(path):
    """A torch.save file's object, tensors as T; any global but a tensor's is refused."""
    z = zipfile.ZipFile(path)
    pkl = next(n for n in z.namelist() if n.endswith("/data.pkl"))
    prefix = pkl[: -len("data.pkl")]

    def rebuild(storage, offset, size, stride, *rest):
        kind, values = storage
        n = math.prod(size)
        assert list(stride) == [math.prod(size[i + 1:]) for i in range(len(size))], "contiguous only"
        return T(size, values[offset:offset + n], kind)

    class Unpickler(pickle.Unpickler):
        def find_class(self, module, name):
            if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
                return rebuild
            if module == "torch" and name.endswith("Storage"):
                return name
            if (module, name) == ("collections", "OrderedDict"):
                return collections.OrderedDict
            if (module, name) == ("argparse", "Namespace"):
                return types.SimpleNamespace
            raise pickle.UnpicklingError(f"{path}: refusing {module}.{name}")

        def persistent_load(self, pid):
            _, kind, key, _, _ = pid
            return kind, decode(kind, z.read(f"{prefix}data/{key}"))

    import io

    return Unpickler(io.BytesIO(z.read(pkl))).load()


def safetensors_save(tensors, path):
    header, blobs, at = {}, [], 0
    for name, (dtype, shape, values) in sorted(tensors.items()):
        blob = struct.pack(f"<{len(values)}{'f' if dtype == 'F32' else 'q'}", *values)
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [at, at + len(blob)]}
        blobs.append(blob)
        at += len(blob)
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(head)) + head + b"".join(blobs))


def safetensors_load(path):
    data = open(path, "rb").read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        a, b = e["data_offsets"]
        raw = data[8 + n + a:8 + n + b]
        fmt = {"F32": "f", "I64": "q"}[e["dtype"]]
        out[name] = (e["shape"], list(struct.unpack(f"<{len(raw) // struct.calcsize(fmt)}{fmt}", raw)))
    return out


# ---------------------------------------------------------------- the model, in plain Python
def matvec(w, x, rows, cols):
    return [sum(w[r * cols + c] * x[c] for c in range(cols)) for r in range(rows)]


def add(a, b):
    return [x + y for x, y in zip(a, b)]


def rmsnorm(x, weight, eps):
    s = 1.0 / math.sqrt(sum(v * v for v in x) / len(x) + eps)
    return [v * s * w for v, w in zip(x, weight)]


def silu(x):
    return x / (1.0 + math.exp(-x))


def ffn_hidden(dim, multiple_of):
    hidden = int(2 * (4 * dim) / 3)
    return multiple_of * ((hidden + multiple_of - 1) // multiple_of)


class Llama:
    """MU-LLaMA's Transformer with its LLaMA-Adapter parts; `w` maps Meta names to values."""

    def __init__(self, w, dim, layers, heads, kv_heads, vocab, eps, n_prefix):
        self.w, self.dim, self.layers, self.heads, self.kv_heads, self.vocab, self.eps = w, dim, layers, heads, kv_heads, vocab, eps
        self.hd = dim // heads
        self.hidden = len(w["layers.0.feed_forward.w1.weight"]) // dim
        self.n_prefix = n_prefix
        self.cache = [([], []) for _ in range(layers)]

    def linear(self, name, x, rows, cols):
        y = matvec(self.w[f"{name}.weight"], x, rows, cols)
        if f"{name}.bias" in self.w:
            y = add(y, self.w[f"{name}.bias"])
        stem, short = name.rsplit(".", 1)
        l1 = self.w.get(f"{stem}.lora_{short}_l1.weight")
        if l1 is not None:
            y = add(y, matvec(self.w[f"{stem}.lora_{short}_l2.weight"], matvec(l1, x, RANK, cols), rows, RANK))
        return y

    def rope(self, v, pos):
        out = list(v)
        for h in range(len(v) // self.hd):
            for j in range(self.hd // 2):
                freq = 1.0 / (10000.0 ** (2 * j / self.hd))
                c, s = math.cos(pos * freq), math.sin(pos * freq)
                a, b = v[h * self.hd + 2 * j], v[h * self.hd + 2 * j + 1]
                out[h * self.hd + 2 * j], out[h * self.hd + 2 * j + 1] = a * c - b * s, a * s + b * c
        return out

    def step(self, token, pos, prefix):
        """One token through every layer (keys and values cached); the hidden state before the final norm."""
        dim, hd, kv_dim = self.dim, self.hd, self.kv_heads * self.hd
        h = self.w["tok_embeddings.weight"][token * dim:(token + 1) * dim]
        for i in range(self.layers):
            at = f"layers.{i}"
            x = rmsnorm(h, self.w[f"{at}.attention_norm.weight"], self.eps)
            q = self.rope(self.linear(f"{at}.attention.wq", x, dim, dim), pos)
            k = self.rope(self.linear(f"{at}.attention.wk", x, kv_dim, dim), pos)
            v = self.linear(f"{at}.attention.wv", x, kv_dim, dim)
            keys, values = self.cache[i]
            keys.append(k)
            values.append(v)
            out = []
            for head in range(self.heads):
                g = head // (self.heads // self.kv_heads)
                qh = q[head * hd:(head + 1) * hd]
                scores = [sum(a * b for a, b in zip(qh, kk[g * hd:(g + 1) * hd])) / math.sqrt(hd) for kk in keys]
                top = max(scores)
                e = [math.exp(s - top) for s in scores]
                z = sum(e)
                out += [sum(e[t] / z * values[t][g * hd + d] for t in range(len(keys))) for d in range(hd)]
            first_adapter = self.layers - self.n_prefix
            if prefix is not None and i >= first_adapter:
                adapter = add(prefix[0], prefix[1][i - first_adapter])
                adapter_v = matvec(self.w[f"{at}.attention.wv.weight"], adapter, kv_dim, dim)  # wv alone: no LoRA
                gate = self.w[f"{at}.attention.gate"]
                out = [o + math.tanh(gate[d // hd]) * adapter_v[d] for d, o in enumerate(out)]
            h = add(h, self.linear(f"{at}.attention.wo", out, dim, dim))
            x = rmsnorm(h, self.w[f"{at}.ffn_norm.weight"], self.eps)
            a = self.linear(f"{at}.feed_forward.w1", x, self.hidden, dim)
            c = self.linear(f"{at}.feed_forward.w3", x, self.hidden, dim)
            h = add(h, self.linear(f"{at}.feed_forward.w2", [silu(p) * r for p, r in zip(a, c)], dim, self.hidden))
        return h

    def logits(self, h):
        return matvec(self.w["output.weight"], rmsnorm(h, self.w["norm.weight"], self.eps), self.vocab, self.dim)


def music_adapter(w, states):
    """MU-LLaMA's `encode_audio` after MERT, then `forward_audio` (one input of weight 1)."""
    agg_w, agg_b = w["mu_mert_agg.weight"], w["mu_mert_agg.bias"]
    x = [sum(agg_w[s] * states[s * MERT_WIDTH + c] for s in range(MERT_STATES)) + agg_b[0] for c in range(MERT_WIDTH)]
    norm = max(math.sqrt(sum(v * v for v in x)), 1e-12)
    weight = 1.0 / (1.0 + 1e-6)  # forward_audio's input weight, normalised
    x = [v / norm * weight for v in x]
    x = add(matvec(w["mu_mert_proj.weight"], x, DIM, MERT_WIDTH), w["mu_mert_proj.bias"])
    for k in (1, 2, 3):
        n = rmsnorm(x, w[f"mu_mert_norm_{k}.weight"], BRIDGE_EPS)
        a = matvec(w[f"mu_mert_f1_{k}.weight"], n, 4 * DIM, DIM)
        c = matvec(w[f"mu_mert_f3_{k}.weight"], n, 4 * DIM, DIM)
        x = add(x, matvec(w[f"mu_mert_f2_{k}.weight"], [silu(p) * r for p, r in zip(a, c)], DIM, 4 * DIM))
    return x


# ---------------------------------------------------------------- checks and writing
def check_on_llama_layouts():
    """The plain forward must give the transformers logits of ../llama-layouts."""
    d = os.path.join(HERE, "..", "llama-layouts")
    params = json.load(open(os.path.join(d, "meta", "params.json")))
    state = torch_load(os.path.join(d, "meta", "consolidated.00.pth"))
    io = safetensors_load(os.path.join(d, "io.safetensors"))
    (rows, length), ids = io["in.ids"]
    _, expected = io["out.logits"]
    vocab = params["vocab_size"]
    worst = 0.0
    for row in range(rows):
        m = Llama({k: t.values for k, t in state.items()}, params["dim"], params["n_layers"], params["n_heads"], params["n_kv_heads"], vocab, params["norm_eps"], 0)
        for pos in range(length):
            logits = m.logits(m.step(ids[row * length + pos], pos, None))
            ref = expected[(row * length + pos) * vocab:(row * length + pos + 1) * vocab]
            worst = max(worst, max(abs(a - b) for a, b in zip(logits, ref)))
    assert worst < 1e-4, f"the plain forward is {worst} from the transformers logits of llama-layouts"
    print(f"llama-layouts: this script's forward is within {worst:.1e} of transformers")


def fixture(seed):
    rng = random.Random(seed)

    def normal(n, scale, rounding=float):
        return [rounding(rng.gauss(0.0, scale)) for _ in range(n)]

    hidden = ffn_hidden(DIM, MULTIPLE_OF)
    base, model = {}, {}

    def b16(name, shape, scale):
        base[name] = T(shape, normal(math.prod(shape), scale, bf16), "BFloat16Storage")

    def f32(name, shape, scale, mean=0.0):
        model[name] = T(shape, [f32r(mean + v) for v in normal(math.prod(shape), scale)])

    # Scales that keep the token in view through 22 layers (the prefix is the same at every
    # position, so strong gates and outputs would make every step pick the same token).
    b16("tok_embeddings.weight", [VOCAB, DIM], 2.0)
    b16("norm.weight", [DIM], 0.1)  # replaced by the checkpoint's: it must not be used
    b16("output.weight", [VOCAB, DIM], 1.0 / math.sqrt(DIM))
    for i in range(LAYERS):
        at = f"layers.{i}"
        for w, shape in [("attention.wq", [DIM, DIM]), ("attention.wk", [DIM, DIM]), ("attention.wv", [DIM, DIM]), ("attention.wo", [DIM, DIM]),
                         ("feed_forward.w1", [hidden, DIM]), ("feed_forward.w2", [DIM, hidden]), ("feed_forward.w3", [hidden, DIM])]:
            b16(f"{at}.{w}.weight", shape, (0.5 if w in ("attention.wo", "feed_forward.w2") else 1.0) / math.sqrt(shape[1]))
        b16(f"{at}.attention_norm.weight", [DIM], 0.1)
        b16(f"{at}.ffn_norm.weight", [DIM], 0.1)
        # What MU-LLaMA trains, under the model's names.
        m = f"llama.{at}"
        for w, out_f, in_f in [("attention.wq", DIM, DIM), ("attention.wk", DIM, DIM), ("attention.wv", DIM, DIM), ("attention.wo", DIM, DIM),
                               ("feed_forward.w1", hidden, DIM), ("feed_forward.w2", DIM, hidden), ("feed_forward.w3", hidden, DIM)]:
            stem, short = w.rsplit(".", 1)
            f32(f"{m}.{stem}.lora_{short}_l1.weight", [RANK, in_f], 1.0 / math.sqrt(in_f))
            f32(f"{m}.{stem}.lora_{short}_l2.weight", [out_f, RANK], 0.3 / math.sqrt(RANK))
            if short not in ("wk", "wv"):
                f32(f"{m}.{w}.bias", [out_f], 0.1)
        f32(f"{m}.attention.gate", [1, HEADS, 1, 1], 0.5)
        f32(f"{m}.attention_norm.weight", [DIM], 0.1, 1.0)
        f32(f"{m}.ffn_norm.weight", [DIM], 0.1, 1.0)
    f32("llama.norm.weight", [DIM], 0.1, 1.0)
    f32("prefix_query.weight", [QUERY_LAYERS, DIM], 0.5)
    f32("mu_mert_agg.weight", [1, MERT_STATES, 1], 1.0)
    f32("mu_mert_agg.bias", [1], 0.1)
    f32("mu_mert_proj.weight", [DIM, MERT_WIDTH], 1.0)
    f32("mu_mert_proj.bias", [DIM], 0.1)
    for k in (1, 2, 3):
        f32(f"mu_mert_norm_{k}.weight", [DIM], 0.1, 1.0)
        f32(f"mu_mert_f1_{k}.weight", [4 * DIM, DIM], 1.0 / math.sqrt(DIM))
        f32(f"mu_mert_f2_{k}.weight", [DIM, 4 * DIM], 0.5 / math.sqrt(4 * DIM))
        f32(f"mu_mert_f3_{k}.weight", [4 * DIM, DIM], 1.0 / math.sqrt(DIM))

    states = normal(MERT_STATES * MERT_WIDTH, 1.0, f32r)
    prompt = [1] + [rng.randrange(3, VOCAB) for _ in range(PROMPT - 1)]
    return base, model, states, prompt


def run(base, model, states, prompt):
    """MU-LLaMA's forward: the model's tensors over the base's, as load_state_dict(strict=False)."""
    w = {k: t.values for k, t in base.items()}
    w.update({k[len("llama."):]: t.values for k, t in model.items() if k.startswith("llama.")})
    plain = {k: t.values for k, t in model.items()}
    feature = music_adapter(plain, states)
    prefix = [plain["prefix_query.weight"][r * DIM:(r + 1) * DIM] for r in range(QUERY_LAYERS)]
    m = Llama(w, DIM, LAYERS, HEADS, HEADS, VOCAB, NORM_EPS, QUERY_LAYERS)
    hidden = [m.step(t, pos, (feature, prefix)) for pos, t in enumerate(prompt)]
    logits = m.logits(hidden[-1])
    greedy, margins, step_logits = [], [], logits
    for pos in range(len(prompt), len(prompt) + GREEDY):
        order = sorted(range(VOCAB), key=lambda t: -step_logits[t])
        margins.append(step_logits[order[0]] - step_logits[order[1]])
        greedy.append(order[0])
        step_logits = m.logits(m.step(order[0], pos, (feature, prefix)))
    return feature, hidden, logits, greedy, min(margins)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=0)
    seed = ap.parse_args().seed
    check_on_llama_layouts()
    # The greedy tokens must be a clear choice, so that f32 rounding cannot flip them.
    while True:
        base, model, states, prompt = fixture(seed)
        feature, hidden, logits, greedy, margin = run(base, model, states, prompt)
        if margin > 0.02 and len(set(greedy)) >= GREEDY // 2:
            break
        print(f"seed {seed}: a greedy step is a near tie ({margin:.4f}) or the tokens repeat ({greedy}); next seed")
        seed += 1
    os.makedirs(os.path.join(HERE, "base"), exist_ok=True)
    params = {"dim": DIM, "multiple_of": MULTIPLE_OF, "n_heads": HEADS, "n_layers": LAYERS, "norm_eps": NORM_EPS, "vocab_size": -1}
    with open(os.path.join(HERE, "base", "params.json"), "w") as f:
        json.dump(params, f)
    torch_save(collections.OrderedDict(sorted(base.items())), os.path.join(HERE, "base", "consolidated.00.pth"))
    args = argparse.Namespace(llama_type="7B", max_words=1024, lr=1e-4, seed=seed, mert_path="m-a-p/MERT-v1-330M")
    torch_save({"model": collections.OrderedDict(sorted(model.items())), "optimizer": {}, "epoch": 0, "scaler": {}, "args": args}, os.path.join(HERE, "checkpoint.pth"))
    io = {
        "in.mert_states": ("F32", [MERT_STATES, MERT_WIDTH], states),
        "in.prompt_ids": ("I64", [1, len(prompt)], prompt),
        "out.audio_feats": ("F32", [1, 1, DIM], feature),
        "out.last_hidden.audio": ("F32", [1, len(prompt), DIM], [v for h in hidden for v in h]),
        "out.last_logits.audio": ("F32", [1, VOCAB], logits),
        "out.greedy16.audio": ("I64", [1, GREEDY], greedy),
    }
    safetensors_save(io, os.path.join(HERE, "io.safetensors"))
    # What was written reads back as written.
    again = torch_load(os.path.join(HERE, "checkpoint.pth"))
    assert again["model"]["prefix_query.weight"].values == model["prefix_query.weight"].values
    assert torch_load(os.path.join(HERE, "base", "consolidated.00.pth"))["output.weight"].values == base["output.weight"].values
    print(f"seed {seed}: greedy {greedy} (smallest margin {margin:.3f}); logits in [{min(logits):.2f}, {max(logits):.2f}]")


if __name__ == "__main__":
    main()
