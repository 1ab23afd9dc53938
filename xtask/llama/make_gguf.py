#!/usr/bin/env python3
"""Write a tiny random-weight llama-architecture GGUF for local server tests.

Usage: make_gguf.py OUT.gguf

The model is nonsense (random weights) but structurally a real llama model
that llama.cpp / llama-cpp-python load and run: 2 layers, n_embd 64, 4 heads,
context 512, all tensors f32, an SPM ("llama") tokenizer with <unk>/<s>/</s>,
the 256 byte-fallback tokens <0x00>..<0xFF> and a few hundred word pieces,
plus a small Jinja chat template.

The weights come from a fixed numpy seed, so the file is byte-for-byte
deterministic (same gguf/numpy versions -> same bytes). About 1 MB.

Output shaping (so generated text is readable and runs until max_tokens):
the output-projection rows of the control tokens (<unk>, <s>, </s>) and of
the byte tokens are zero, so their logits are always 0 while word-piece
logits have std ~8; greedy/low-temperature sampling therefore picks word
pieces and practically never EOS. To get finish_reason "stop" from the
server, send "stop": [...] or a logit_bias on token 2 (</s>).
"""
from __future__ import annotations

import sys

import numpy as np
import gguf

SEED = 20240601
N_LAYER = 2
N_EMBD = 64
N_HEAD = 4
N_HEAD_KV = 4
N_FF = 128
N_CTX = 512
HEAD_DIM = N_EMBD // N_HEAD

UNK_ID, BOS_ID, EOS_ID = 0, 1, 2

WORDS = """
the of and to a in is it you that he was for on are with as I his they be
at one have this from or had by hot word but what some we can out other were
all there when up use your how said an each she which do their time if will
way about many then them write would like so these her long make thing see him
two has look more day could go come did number sound no most people my over
know water than call first who may down side been now find any new work part
take get place made live where after back little only round man year came show
every good me give our under name very through just form sentence great think
say help low line differ turn cause much mean before move right boy old too
same tell does set three want air well also play small end put home read hand
port large spell add even land here must big high such follow act why ask men
change went light kind off need house picture try us again animal point mother
world near build self earth father hello hi yes ok model token stream test
""".split()

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\n' + message['content'] + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)


def build_vocab() -> tuple[list[str], list[float], list[int]]:
    T = gguf.TokenType
    tokens: list[str] = ["<unk>", "<s>", "</s>"]
    types: list[int] = [T.UNKNOWN, T.CONTROL, T.CONTROL]
    scores: list[float] = [0.0, 0.0, 0.0]
    for b in range(256):
        tokens.append(f"<0x{b:02X}>")
        types.append(T.BYTE)
        scores.append(0.0)

    # Word pieces. The SPM tokenizer builds tokens by merging adjacent
    # symbols whose concatenation is in the vocab, so every prefix of a
    # piece must be a piece too; longer pieces get higher scores so they win.
    pieces: list[str] = ["\u2581"]
    pieces += list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
    pieces += list(".,!?'\":;-()<>|/\n")
    for w in WORDS:
        s = "\u2581" + w
        for i in range(2, len(s) + 1):
            pieces.append(s[:i])
    seen: set[str] = set(tokens)
    for p in pieces:
        if p in seen:
            continue
        seen.add(p)
        tokens.append(p)
        types.append(T.NORMAL)
        scores.append(float(len(p)) - len(tokens) * 1e-4)
    return tokens, scores, [int(t) for t in types]


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[1] in ("-h", "--help"):
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    out = argv[1]

    tokens, scores, types = build_vocab()
    n_vocab = len(tokens)
    rng = np.random.default_rng(SEED)

    def rand(*shape: int, std: float) -> np.ndarray:
        return (rng.standard_normal(shape) * std).astype(np.float32)

    w = gguf.GGUFWriter(out, "llama")
    w.add_name("xtask-tiny-random-llama")
    w.add_description("random weights; for SSE/HTTP client tests only")
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    w.add_vocab_size(n_vocab)
    w.add_context_length(N_CTX)
    w.add_embedding_length(N_EMBD)
    w.add_block_count(N_LAYER)
    w.add_feed_forward_length(N_FF)
    w.add_head_count(N_HEAD)
    w.add_head_count_kv(N_HEAD_KV)
    w.add_rope_dimension_count(HEAD_DIM)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-5)

    w.add_tokenizer_model("llama")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_unk_token_id(UNK_ID)
    w.add_bos_token_id(BOS_ID)
    w.add_eos_token_id(EOS_ID)
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)
    w.add_add_space_prefix(True)
    w.add_chat_template(CHAT_TEMPLATE)

    # numpy shapes are (rows=out, cols=in); gguf stores them reversed,
    # which is the ggml {in, out} layout llama.cpp expects.
    w.add_tensor("token_embd.weight", rand(n_vocab, N_EMBD, std=1.0))
    for i in range(N_LAYER):
        p = f"blk.{i}."
        w.add_tensor(p + "attn_norm.weight", np.ones(N_EMBD, dtype=np.float32))
        w.add_tensor(p + "attn_q.weight", rand(N_EMBD, N_EMBD, std=0.1))
        w.add_tensor(p + "attn_k.weight", rand(N_HEAD_KV * HEAD_DIM, N_EMBD, std=0.1))
        w.add_tensor(p + "attn_v.weight", rand(N_HEAD_KV * HEAD_DIM, N_EMBD, std=0.1))
        w.add_tensor(p + "attn_output.weight", rand(N_EMBD, N_EMBD, std=0.1))
        w.add_tensor(p + "ffn_norm.weight", np.ones(N_EMBD, dtype=np.float32))
        w.add_tensor(p + "ffn_gate.weight", rand(N_FF, N_EMBD, std=0.1))
        w.add_tensor(p + "ffn_up.weight", rand(N_FF, N_EMBD, std=0.1))
        w.add_tensor(p + "ffn_down.weight", rand(N_EMBD, N_FF, std=0.1))
    w.add_tensor("output_norm.weight", np.ones(N_EMBD, dtype=np.float32))
    out_w = rand(n_vocab, N_EMBD, std=1.0)
    out_w[: 3 + 256] = 0.0  # control + byte tokens: logit always 0
    w.add_tensor("output.weight", out_w)

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print(f"wrote {out}: llama, {N_LAYER} layers, n_embd {N_EMBD}, "
          f"{N_HEAD} heads, n_ctx {N_CTX}, vocab {n_vocab}, f32")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
