#!/usr/bin/env bash
# Start the local llama-cpp-python server on a free loopback port, capture raw
# HTTP responses of the OpenAI endpoints with curl, then stop the server.
#
#   capture.sh [MODEL.gguf] [OUTDIR]
#
# Defaults: model = ${TMPDIR:-/tmp}/xtask-llama/tiny-llama.gguf (made if missing),
# OUTDIR = /tmp/xtask-llama/captures. For each case NAME it writes
#   NAME.raw.txt  curl -sN -i --raw : status line, headers, chunked framing
#   NAME.txt      curl -sN -i       : status line, headers, de-chunked body
# plus concurrent_{queue,interrupt}_{A,B}.txt (two overlapping streams,
# timestamped). All traffic goes to 127.0.0.1 only.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
VENV="${LLAMA_VENV:-$ROOT/.venv-llama}"
MODEL="${1:-${TMPDIR:-/tmp}/xtask-llama/tiny-llama.gguf}"
OUT="${2:-/tmp/xtask-llama/captures}"
mkdir -p "$OUT"

if [[ ! -f "$MODEL" ]]; then
    mkdir -p "$(dirname "$MODEL")"
    "$VENV/bin/python" "$HERE/make_gguf.py" "$MODEL"
fi

PYV="$VENV/bin/python"
PID=""
# start_server LOGNAME [extra llama_cpp.server flags...]  -> sets PID, BASE
start_server() {
    local log="$OUT/$1"; shift
    PORT="$("$PYV" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
    BASE="http://127.0.0.1:$PORT"
    "$HERE/serve.sh" "$PORT" "$MODEL" "$@" >"$log" 2>&1 &
    PID=$!
    echo "server pid $PID on $BASE ($*)"
    for _ in $(seq 1 120); do
        if curl -sf --max-time 2 "$BASE/v1/models" >/dev/null 2>&1; then return 0; fi
        kill -0 "$PID" 2>/dev/null || { echo "server died:"; cat "$log"; exit 1; }
        sleep 0.5
    done
    echo "server not up after 60 s"; cat "$log"; exit 1
}
stop_server() {
    if [[ -n "$PID" ]]; then kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; PID=""; fi
}
trap stop_server EXIT

start_server server.log

# cap NAME METHOD PATH [BODY]   (BODY is sent verbatim, may be invalid JSON)
cap() {
    local name="$1" method="$2" path="$3" body="${4-}"
    local args=(-sN -i --max-time 60 -X "$method" "$BASE$path")
    if [[ -n "$body" ]]; then
        args+=(-H 'Content-Type: application/json' --data-binary "$body")
    fi
    curl "${args[@]}" --raw >"$OUT/$name.raw.txt" || true
    curl "${args[@]}"       >"$OUT/$name.txt" || true
    echo "captured $name ($(head -1 "$OUT/$name.txt" | tr -d '\r'))"
}

M='"model":"tiny-llama"'
cap models            GET  /v1/models
cap chat_stream       POST /v1/chat/completions "{$M,\"messages\":[{\"role\":\"user\",\"content\":\"hello\"}],\"max_tokens\":16,\"stream\":true,\"stream_options\":{\"include_usage\":true}}"
cap chat_nostream     POST /v1/chat/completions "{$M,\"messages\":[{\"role\":\"user\",\"content\":\"hello\"}],\"max_tokens\":16,\"stream\":false,\"stream_options\":{\"include_usage\":true}}"
cap chat_stream_stop  POST /v1/chat/completions "{$M,\"messages\":[{\"role\":\"user\",\"content\":\"hello\"}],\"max_tokens\":16,\"stream\":true,\"logit_bias\":{\"2\":100}}"
cap chat_stream_t0_seed POST /v1/chat/completions "{$M,\"messages\":[{\"role\":\"system\",\"content\":\"be brief\"},{\"role\":\"user\",\"content\":\"hello\"}],\"max_tokens\":8,\"stream\":true,\"temperature\":0,\"seed\":1}"
cap chat_stream_n2    POST /v1/chat/completions "{$M,\"messages\":[{\"role\":\"user\",\"content\":\"hello\"}],\"max_tokens\":4,\"stream\":true,\"n\":2}"
cap chat_stream_empty_deltas POST /v1/chat/completions "{$M,\"messages\":[{\"role\":\"user\",\"content\":\"hello\"}],\"max_tokens\":3,\"stream\":true,\"logit_bias\":{\"1\":100}}"
cap chat_stream_stopseq POST /v1/chat/completions "{$M,\"messages\":[{\"role\":\"user\",\"content\":\"hello\"}],\"max_tokens\":16,\"stream\":true,\"temperature\":0,\"stop\":[\" new\"]}"
cap chat_nostream_no_model POST /v1/chat/completions '{"messages":[{"role":"user","content":"hello"}],"max_tokens":2}'
cap chat_nostream_other_model POST /v1/chat/completions '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hello"}],"max_tokens":2}'
cap completions_stream_empty_deltas POST /v1/completions "{$M,\"prompt\":\"hello\",\"max_tokens\":3,\"stream\":true,\"logit_bias\":{\"1\":100}}"
cap completions_stream   POST /v1/completions "{$M,\"prompt\":\"hello\",\"max_tokens\":16,\"stream\":true,\"stream_options\":{\"include_usage\":true}}"
cap completions_nostream POST /v1/completions "{$M,\"prompt\":\"hello\",\"max_tokens\":16,\"stream\":false}"
cap completions_stop_stream POST /v1/completions "{$M,\"prompt\":\"hello\",\"max_tokens\":16,\"stream\":true,\"logit_bias\":{\"2\":100}}"
cap completions_list1_stream   POST /v1/completions "{$M,\"prompt\":[\"a\"],\"max_tokens\":4,\"stream\":true}"
cap completions_list2_stream   POST /v1/completions "{$M,\"prompt\":[\"a\",\"b\"],\"max_tokens\":4,\"stream\":true}"
cap completions_list2_nostream POST /v1/completions "{$M,\"prompt\":[\"a\",\"b\"],\"max_tokens\":4,\"stream\":false}"
cap err_bad_json          POST /v1/chat/completions '{"model":"tiny-llama","messages":[{"role":"user","content":"hello"}'
cap err_max_tokens_neg    POST /v1/chat/completions "{$M,\"messages\":[{\"role\":\"user\",\"content\":\"hello\"}],\"max_tokens\":-5,\"stream\":true}"
cap err_max_tokens_neg_completions POST /v1/completions "{$M,\"prompt\":\"hello\",\"max_tokens\":-5}"
cap err_wrong_type        POST /v1/chat/completions "{$M,\"messages\":\"hello\",\"stream\":true}"
cap err_missing_messages  POST /v1/chat/completions "{$M,\"max_tokens\":4,\"stream\":true}"
cap err_unknown_field     POST /v1/chat/completions "{$M,\"messages\":[{\"role\":\"user\",\"content\":\"hello\"}],\"max_tokens\":4,\"frobnicate\":true}"
LONG="$(printf 'the %.0s' $(seq 1 700))"
cap err_ctx_overflow_nostream POST /v1/completions "{$M,\"prompt\":\"$LONG\",\"max_tokens\":4}"
cap err_ctx_overflow_stream   POST /v1/completions "{$M,\"prompt\":\"$LONG\",\"max_tokens\":4,\"stream\":true}"
cap err_ctx_overflow_chat_stream POST /v1/chat/completions "{$M,\"messages\":[{\"role\":\"user\",\"content\":\"$LONG\"}],\"max_tokens\":4,\"stream\":true}"
cap err_not_found         GET  /v1/nope
cap err_method            GET  /v1/chat/completions

# Byte-level views of the main streams (line endings, framing).
for n in chat_stream completions_stream; do
    od -c "$OUT/$n.raw.txt" >"$OUT/$n.raw.od.txt"
done
# Per-chunk arrival times of a longer stream (is each event flushed on its own?).
curl -sN --max-time 60 -H 'Content-Type: application/json' \
    --data-binary "{$M,\"messages\":[{\"role\":\"user\",\"content\":\"hello\"}],\"max_tokens\":64,\"stream\":true}" \
    "$BASE/v1/chat/completions" | while IFS= read -r line; do
        printf '%s %s\n' "$(date +%s.%N | cut -c1-14)" "${line:0:60}"
    done >"$OUT/chat_stream_timing.txt"
stop_server

# --- Phase 2: concurrency, queuing and keep-alive pings -----------------
# A long stream A (4000 tokens, ~20 s on 2 cores: llama-cpp-python's per-token
# detokenize is O(n^2)) and a short stream B sent 1 s later. n_ctx is raised
# so A can run that long. serve.sh passes --interrupt_requests False.
# stream_pair NAME: writes NAME_A.txt / NAME_B.txt, timestamped lines
# (seconds since A was sent), trimmed to the interesting lines.
stream_pair() {
    local name="$1" t0; t0="$(date +%s.%N)"
    local A="$OUT/.$name.A.full" B="$OUT/.$name.B.full"
    curl -sN -i --max-time 120 -H 'Content-Type: application/json' \
        --data-binary "{$M,\"prompt\":\"hello\",\"max_tokens\":4000,\"stream\":true}" \
        "$BASE/v1/completions" | T0="$t0" "$PYV" "$HERE/tslines.py" >"$A" &
    local ca=$!
    sleep 1
    curl -sN -i --max-time 120 -H 'Content-Type: application/json' \
        --data-binary "{$M,\"messages\":[{\"role\":\"user\",\"content\":\"hello\"}],\"max_tokens\":4,\"stream\":true}" \
        "$BASE/v1/chat/completions" | T0="$t0" "$PYV" "$HERE/tslines.py" >"$B"
    wait "$ca" || true
    for x in A B; do
        local f="$OUT/.$name.$x.full"
        {
            echo "# $(grep -c ' data: ' "$f") data lines, $(grep -c ' : ' "$f") comment lines;"
            echo "# first 16 lines, every ': ' comment line with 1 line around it, last 4 lines"
            awk -v n="$(wc -l <"$f")" 'NR<=16 || NR>n-4 {print; next} / : /{print prev; print; getline; print; next} {prev=$0}' "$f"
        } >"$OUT/${name}_$x.txt"
        rm -f "$f"
    done
    echo "captured ${name}_A/B"
}
start_server server_concurrent.log --n_ctx 8192
stream_pair concurrent_queue
stop_server
# --- Phase 3: the same with llama-cpp-python's default --interrupt_requests True
start_server server_interrupt.log --n_ctx 8192 --interrupt_requests True
stream_pair concurrent_interrupt
stop_server
echo "done; servers stopped"
