#!/usr/bin/env bash
# Start llama-cpp-python's OpenAI-compatible server in the foreground.
#
#   serve.sh PORT MODEL.gguf [extra llama_cpp.server flags...]
#
# Listens on 127.0.0.1:PORT only. The caller backgrounds it, polls
# GET /v1/models until it answers, and kills the PID when done
# (exec is used, so $! of `serve.sh ... &` is the server itself).
#
# Streaming needs no flag: "stream": true on /v1/chat/completions and
# /v1/completions returns text/event-stream. Flags that matter:
#   --interrupt_requests False  (default True: a new request arriving while
#        a stream is running cuts that stream short with data: [DONE];
#        for concurrent/load tests requests must queue instead)
#   --disable_ping_events False (default): sse-starlette sends ": ping - <ts>"
#        comment lines every 15 s on a stream that runs that long
#   --model_alias NAME   id reported by /v1/models (any request "model" works:
#        unknown names fall back to the loaded model)
#   --verbose False      keeps llama.cpp's load log / timings off stderr
# Env: LLAMA_VENV (default <repo>/.venv-llama), LLAMA_THREADS (default 1),
#      LLAMA_MODEL_ALIAS (default: model file name without .gguf),
#      LLAMA_VERBOSE (default False).
set -euo pipefail

if [[ $# -lt 2 ]]; then
    echo "usage: $0 PORT MODEL.gguf [extra llama_cpp.server flags...]" >&2
    exit 2
fi
PORT="$1"; MODEL="$2"; shift 2

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
VENV="${LLAMA_VENV:-$ROOT/.venv-llama}"
PY="$VENV/bin/python"

[[ -x "$PY" ]] || { echo "serve.sh: no venv at $VENV; run xtask/llama/setup.sh first" >&2; exit 1; }
[[ -f "$MODEL" ]] || { echo "serve.sh: model file $MODEL not found (make it with xtask/llama/make_gguf.py)" >&2; exit 1; }

ALIAS="${LLAMA_MODEL_ALIAS:-$(basename "$MODEL" .gguf)}"

exec "$PY" -m llama_cpp.server \
    --model "$MODEL" \
    --model_alias "$ALIAS" \
    --host 127.0.0.1 \
    --port "$PORT" \
    --n_ctx 512 \
    --n_threads "${LLAMA_THREADS:-1}" \
    --n_threads_batch "${LLAMA_THREADS:-1}" \
    --interrupt_requests False \
    --verbose "${LLAMA_VERBOSE:-False}" \
    "$@"
