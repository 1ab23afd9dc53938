#!/usr/bin/env python3
"""A pure-stdlib port of the simulator's deterministic model output.

Mirrors `expected_output(model, input)` and `output_digest(bytes)` in
crates/model/src/output.rs byte for byte; crates/model/tests/triton_model_port.rs
checks the two agree. serve.py imports this module, so the real Triton server
answers exactly what the simulator answers.

Run as a script, it reads JSON lines `{"model": ..., "input": ...}` on stdin
and writes one JSON line `{"output": ...}` per input line, in order.
"""

import json
import sys

MASK64 = (1 << 64) - 1

FNV_OFFSET = 0xCBF29CE484222325
FNV_PRIME = 0x100000001B3

VOCABULARY = (
    "the", "customer", "reports", "session", "expires", "after", "each", "update",
    "settings", "are", "lost", "because", "tokens", "reset", "suggest", "keeping",
    "preferences", "synced", "account", "cloud", "backup", "restore", "version", "mobile",
    "app", "login", "persists", "issue", "resolved", "by", "enabling", "sync",
)

OUTPUT_WORDS = 48


def fnv1a(data: bytes, h: int = FNV_OFFSET) -> int:
    """64-bit FNV-1a over `data`, continuing from hash `h`."""
    for b in data:
        h ^= b
        h = (h * FNV_PRIME) & MASK64
    return h


def splitmix64(state: int):
    """One SplitMix64 step: returns (new_state, output_word)."""
    state = (state + 0x9E3779B97F4A7C15) & MASK64
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return state, z ^ (z >> 31)


def expected_output_bytes(model: bytes, text: bytes) -> bytes:
    """expected_output over raw UTF-8 bytes (what Triton hands a BYTES tensor)."""
    # The 0xff separator keeps ("ab", "c") and ("a", "bc") apart: it never
    # occurs in UTF-8 text.
    seed = fnv1a(text, fnv1a(b"\xff", fnv1a(model)))
    state = seed
    words = ["Summary:"]
    for _ in range(OUTPUT_WORDS):
        state, word = splitmix64(state)
        words.append(VOCABULARY[word % len(VOCABULARY)])
    return (" ".join(words) + " [%016x]" % seed).encode("ascii")


def expected_output(model: str, text: str) -> str:
    """The output the simulated model gives for `text` under `model`."""
    # Hash the UTF-8 bytes, as Rust's str::as_bytes does. "surrogatepass"
    # keeps a lone surrogate (possible in JSON "\ud800", never in a Rust
    # str) from raising; such input cannot reach the Rust side anyway.
    out = expected_output_bytes(
        model.encode("utf-8", "surrogatepass"), text.encode("utf-8", "surrogatepass")
    )
    # The vocabulary and the hex suffix are ASCII.
    return out.decode("ascii")


def output_digest(output: bytes) -> str:
    """16 hex digits of FNV-1a over the output's bytes."""
    return "%016x" % fnv1a(output)


def main() -> int:
    # Read bytes and decode strictly, so a malformed line is an error, not a
    # silently replaced character that would hash differently.
    stdin = sys.stdin.buffer
    out = sys.stdout
    for raw in stdin:
        line = raw.decode("utf-8").strip()
        if not line:
            continue
        req = json.loads(line)
        result = {"output": expected_output(req["model"], req["input"])}
        # ensure_ascii keeps the output pure ASCII whatever the locale.
        out.write(json.dumps(result, ensure_ascii=True) + "\n")
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
