"""Prints the exact request bodies input.py sends, one per line.

Uses input.py's own build_payload and httpx's own JSON encoding, so the
output is what goes on the wire. Regenerate the golden file with:

    python3 crates/model/tests/golden/make_golden.py > crates/model/tests/golden/input_py_bodies.jsonl
"""
import importlib.util
import pathlib
import sys

import httpx

ROOT = pathlib.Path(__file__).resolve().parents[4]
spec = importlib.util.spec_from_file_location("input_py", ROOT / "input.py")
input_py = importlib.util.module_from_spec(spec)
spec.loader.exec_module(input_py)

out = sys.stdout.buffer
for i in range(input_py.TOTAL_REQUESTS):
    request = httpx.Request("POST", input_py.API_URL, json=input_py.build_payload(i))
    out.write(request.content + b"\n")
