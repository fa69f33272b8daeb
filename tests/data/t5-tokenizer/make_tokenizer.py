#!/usr/bin/env python3
"""Writes tokenizer.json: a tiny T5-style tokenizer (SentencePiece Unigram as Hugging Face's
`tokenizers` stores it: <pad> </s> <unk> at 0 1 2, Metaspace pre-tokenizer, "$A </s>" post-processor)
whose 40 pieces fit the MusicGen fixture's T5 vocabulary of 100. Whole words score -1, the bare
"\u2581" -2 and single letters -3, so a known word is one piece and any other lower-case word is
spelled letter by letter: the tests' expected ids are worked out from the list below.
"""
import json

WORDS = ["jazz", "piano", "calm", "music", "rock", "guitar", "with", "a", "drums", "upbeat"]
SPECIAL = ["<pad>", "</s>", "<unk>"]
vocab = [[t, 0.0] for t in SPECIAL] + [["\u2581", -2.0]]
vocab += [[chr(c), -3.0] for c in range(ord("a"), ord("z") + 1)]  # ids 4..29
vocab += [["\u2581" + w, -1.0] for w in WORDS]  # ids 30..39
meta = {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always", "split": True}
tokenizer = {
    "version": "1.0",
    "truncation": None,
    "padding": None,
    "added_tokens": [
        {"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False, "normalized": False, "special": True}
        for i, t in enumerate(SPECIAL)
    ],
    "normalizer": None,
    "pre_tokenizer": meta,
    "post_processor": {
        "type": "TemplateProcessing",
        "single": [{"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": "</s>", "type_id": 0}}],
        "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": "</s>", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 0}}, {"SpecialToken": {"id": "</s>", "type_id": 0}}],
        "special_tokens": {"</s>": {"id": "</s>", "ids": [1], "tokens": ["</s>"]}},
    },
    "decoder": meta,
    "model": {"type": "Unigram", "unk_id": 2, "vocab": vocab, "byte_fallback": False},
}
with open("tokenizer.json", "w") as f:
    json.dump(tokenizer, f, ensure_ascii=False, indent=1)
    f.write("\n")
