#!/usr/bin/env python3
"""Writes tokenizer.model: a tiny SentencePiece BPE model in LLaMA's configuration (byte
fallback, dummy prefix, <unk> <s> </s> at 0 1 2, then the 256 byte pieces), encoded by hand as
the protobuf SentencePiece writes (sentencepiece_model.proto), independently of the converter.

Normal pieces, best score first (ids 259..): the tests' expected ids are worked out from this list.
"""
import struct

NORMAL = ["\u2581", "h", "e", "l", "o", "i", "w", "r", "d", "\u2581h", "ll", "\u2581he", "llo", "\u2581hello", "\u2581w", "or", "\u2581wor", "ld", "\u2581world"]


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def key(field, wire):
    return varint(field << 3 | wire)


def lenfield(field, payload):
    return key(field, 2) + varint(len(payload)) + payload


def piece(text, score, kind):
    return key(1, 2) + varint(len(text.encode())) + text.encode() + key(2, 5) + struct.pack("<f", score) + key(3, 0) + varint(kind)


pieces = [("<unk>", 0.0, 2), ("<s>", 0.0, 3), ("</s>", 0.0, 3)]
pieces += [("<0x%02X>" % b, 0.0, 6) for b in range(256)]
pieces += [(p, -float(i), 1) for i, p in enumerate(NORMAL)]
model = b"".join(lenfield(1, piece(*p)) for p in pieces)
# trainer_spec: model_type BPE (2), vocab_size, byte_fallback, unk/bos/eos/pad ids.
trainer = key(3, 0) + varint(2) + key(4, 0) + varint(len(pieces)) + key(35, 0) + varint(1)
trainer += key(40, 0) + varint(0) + key(41, 0) + varint(1) + key(42, 0) + varint(2) + key(43, 0) + varint((1 << 64) - 1)
model += lenfield(2, trainer)
# normalizer_spec: name "identity", add_dummy_prefix, no whitespace folding, escape whitespace.
normalizer = lenfield(1, b"identity") + key(3, 0) + varint(1) + key(4, 0) + varint(0) + key(5, 0) + varint(1)
model += lenfield(3, normalizer)
open("tokenizer.model", "wb").write(model)
print(f"tokenizer.model: {len(pieces)} pieces, {len(model)} bytes")
