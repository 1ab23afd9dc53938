#!/usr/bin/env python3
"""Write a Hugging Face tokenizer.json with the tiny GGUF's own vocabulary.

Usage: make_tokenizer.py OUT.json

make_gguf.py's model carries a SentencePiece-style ("llama") vocabulary:
control tokens, the 256 byte-fallback tokens and word pieces, every prefix
of "\u2581word" for each word of its list. This file holds the same pieces
with the same ids as a BPE model whose merges build each "\u2581word" from
its characters, behind a Metaspace pre-tokenizer: text made of those words,
each after a space, counts one token per word here as it does in
llama.cpp's server, so a client that builds prompts from this file can ask
the server for an exact prompt length (the server adds only its chat
template's fixed tokens).

Written with the `tokenizers` package, deterministically.
"""
from __future__ import annotations

import os
import sys

from tokenizers import Tokenizer, decoders, models, pre_tokenizers

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_gguf import build_vocab  # noqa: E402

SPACE = "\u2581"


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[1] in ("-h", "--help"):
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    tokens, _scores, _types = build_vocab()
    vocab = {token: i for i, token in enumerate(tokens)}
    # Each multi-character piece is its prefix plus its last character;
    # shorter pieces rank first so every chain can complete.
    merges = []
    for piece in sorted((t for t in tokens if len(t) >= 2 and t.startswith(SPACE)),
                        key=lambda t: (len(t), vocab[t])):
        left, right = piece[:-1], piece[-1]
        if left in vocab and right in vocab:
            merges.append((left, right))
    model = models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", byte_fallback=True,
                       fuse_unk=True)
    tokenizer = Tokenizer(model)
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement=SPACE,
                                                       prepend_scheme="first")
    tokenizer.decoder = decoders.Metaspace(replacement=SPACE, prepend_scheme="first")
    tokenizer.save(argv[1])
    print(f"wrote {argv[1]}: {len(vocab)} tokens, {len(merges)} merges")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
