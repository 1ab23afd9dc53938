#!/usr/bin/env python3
"""Write a GPT-2-style byte-level BPE tokenizer.json, trained here.

Usage: make_bpe_tokenizer.py [--across-words] OUT.json

A byte-level BPE (the "\u0120word" tokens of GPT-2, Llama 3 and cl100k)
trained with the `tokenizers` package on a fixed corpus of common English
words, so the file is the same on every run. Most words end up one token
after a space; rarer letter runs are split: a tokenizer like the ones
loadgen's --tokenizer meets in the wild, for tests that count prompt
tokens against this package as the independent reference.

With --across-words the text is not split into words before the merges,
so tokens span words (" the of" may be one token): words no longer add up
one token each, the hard case for making prompts of an exact length.
"""
from __future__ import annotations

import sys

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

WORDS = """
the of and to in is it you that he was for on are with as his they be at one
have this from or had by word but what some we can out other were all there
when up use your how said an each she which do their time if will way about
many then them write would like so these her long make thing see him two has
look more day could go come did number sound no most people my over know water
than call first who may down side been now find any new work part take get
place made live where after back little only round man year came show every
good me give our under name very through just form sentence great think say
help low line differ turn cause much mean before move right boy old too same
tell does set three want air well also play small end put home read hand port
large spell add even land here must big high such follow act why ask men change
went light kind off need house picture try us again animal point mother world
near build self earth father
""".split()


def corpus():
    # Every word many times after a space, in a fixed order; a few runs of
    # rare letters so some merges stop short of whole words.
    for round_ in range(50):
        yield " ".join(WORDS[round_ % 7:] + WORDS[: round_ % 7])
    yield "zyx qwv jjk xqz vvb"


def words_alone():
    # Each word on its own too, so that every word is a token of its own
    # as well as a part of the tokens that span words.
    for word in WORDS:
        for _ in range(30):
            yield " " + word


def main(argv: list[str]) -> int:
    across = "--across-words" in argv
    args = [a for a in argv[1:] if a != "--across-words"]
    if len(args) != 1 or args[0] in ("-h", "--help"):
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    out = args[0]
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(
        add_prefix_space=False, use_regex=not across
    )
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=1500 if across else 1200,
        min_frequency=2,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    if across:
        tokenizer.train_from_iterator(list(words_alone()) + list(corpus()), trainer=trainer)
    else:
        tokenizer.train_from_iterator(corpus(), trainer=trainer)
    tokenizer.save(out)
    print(f"wrote {out}: {tokenizer.get_vocab_size()} tokens")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
