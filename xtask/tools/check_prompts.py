#!/usr/bin/env python3
"""Count the tokens of loadgen's prompts with the `tokenizers` package.

Usage: check_prompts.py TOKENIZER.json DRY_RUN.jsonl [TRACE.jsonl BLOCK_TOKENS]

DRY_RUN.jsonl is what `loadgen --dry-run FILE` writes (one request a line:
request_id, input_tokens, body). Each request's prompt (the completions
`prompt`, or the last chat message's content) is encoded without special
tokens, and its count compared with the `input_tokens` loadgen asked for.

With a Mooncake trace and its block size, request k is row k of the trace
(a window from its start): for every pair of the first 200 requests whose
rows share their first k hash ids, their prompts' tokens must agree on the
first min(k x BLOCK_TOKENS, both lengths) tokens, and requests whose next
ids differ must not share that next block whole.

Prints one JSON object: {"checked", "mismatches": [...], "pairs",
"prefix_failures": [...]}; exits 1 when anything is off.
"""
from __future__ import annotations

import json
import sys

from tokenizers import Tokenizer


def prompt_of(body: dict) -> str:
    if "prompt" in body:
        return body["prompt"]
    return body["messages"][-1]["content"]


def common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def main(argv: list[str]) -> int:
    if len(argv) not in (3, 5):
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    tokenizer = Tokenizer.from_file(argv[1])
    requests = [json.loads(line) for line in open(argv[2]) if line.strip()]
    mismatches = []
    ids = {}
    for r in requests:
        tokens = tokenizer.encode(prompt_of(r["body"]), add_special_tokens=False).ids
        ids[r["request_id"]] = tokens
        if len(tokens) != r["input_tokens"]:
            mismatches.append(
                {"request_id": r["request_id"], "asked": r["input_tokens"], "counted": len(tokens)}
            )
    result = {"checked": len(requests), "mismatches": mismatches[:20], "mismatched": len(mismatches)}
    if len(argv) == 5:
        block = int(argv[4])
        rows = [json.loads(line) for line in open(argv[3]) if line.strip()]
        first = sorted(ids)[:200]
        pairs = 0
        failures = []
        for i, a in enumerate(first):
            for b in first[i + 1:]:
                ha, hb = rows[a]["hash_ids"], rows[b]["hash_ids"]
                k = 0
                while k < min(len(ha), len(hb)) and ha[k] == hb[k]:
                    k += 1
                if k == 0:
                    continue
                pairs += 1
                ta, tb = ids[a], ids[b]
                want = min(k * block, len(ta), len(tb))
                got = common_prefix(ta, tb)
                whole_next = (k + 1) * block <= min(len(ta), len(tb))
                if got < want or (k < min(len(ha), len(hb)) and whole_next and got >= (k + 1) * block):
                    failures.append({"a": a, "b": b, "shared_ids": k, "want": want, "got": got})
        result["pairs"] = pairs
        result["prefix_failures"] = failures[:20]
    print(json.dumps(result))
    failed = mismatches or result.get("prefix_failures")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
