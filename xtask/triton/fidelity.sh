#!/usr/bin/env bash
# Simulator fidelity: the same loads against a real Triton (serve.py) and
# against stub-server with the same cost parameters, over KServe v2.
#
#   xtask/triton/fidelity.sh OUT_DIR
#
# Needs the release binaries (cargo build --release) and Triton's venv
# (.venv-triton, which `./run_tests --server triton` makes). Four cases:
# the baseline and the optimized client, each without and with server-side
# dynamic batching (max_queue_delay 2100 us, what the workflow chose); a
# fresh server for every run. Prints one TSV line per run and writes the
# loadgen summaries to OUT_DIR. Traffic goes to 127.0.0.1 only.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
out="${1:?usage: $0 OUT_DIR}"
mkdir -p "$out"
python="${TRITON_PYTHON:-$root/.venv-triton/bin/python}"
loadgen="$root/target/release/loadgen"
stub="$root/target/release/stub-server"
delay_us=2100

# Starts a fresh server of `kind` (triton or stub) with dynamic batching
# `dyn` (on or off); sets $server_pid and $base from its first stdout line.
start_server() {
    local kind="$1" dyn="$2" stdout="$out/server.stdout" extra=()
    : >"$stdout"
    if [ "$kind" = triton ]; then
        [ "$dyn" = on ] && extra=(--dynamic-batching --max-queue-delay-us "$delay_us")
        "$python" "$root/xtask/triton/serve.py" --http-port 0 --instances 2 --max-batch-size 32 "${extra[@]}" >"$stdout" 2>>"$out/servers.log" &
    else
        [ "$dyn" = on ] && extra=(--dynamic-batching --batch-window-ms "$(awk "BEGIN{print $delay_us/1000}")")
        "$stub" --bind 127.0.0.1:0 --workers 2 --base-ms 100 --per-item-ms 2 --jitter 0.1 --seed 42 --max-batch 32 "${extra[@]}" >"$stdout" 2>>"$out/servers.log" &
    fi
    server_pid=$!
    for _ in $(seq 600); do
        grep -q "^listening on " "$stdout" && break
        sleep 0.1
    done
    base="$(sed -n 's/^listening on //p' "$stdout" | head -1)"
    [ -n "$base" ] || { echo "$kind did not start; see $out/servers.log" >&2; exit 1; }
}

printf 'server\tdynamic_batching\tclient\tp50_ms\tp95_ms\tp99_ms\tfailed\n'
for dyn in off on; do
    for client in baseline optimized; do
        for kind in triton stub; do
            start_server "$kind" "$dyn"
            summary="$out/$kind-$dyn-$client.json"
            "$loadgen" --url "$base" --api kserve-v2 --profile "$client" -q --json "$summary" >/dev/null || true
            kill "$server_pid"; wait "$server_pid" 2>/dev/null || true
            python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); print("\t".join([sys.argv[2],sys.argv[3],sys.argv[4]]+["%.1f"%s[k] for k in ("p50_ms","p95_ms","p99_ms")]+[str(s["failed"])]))' "$summary" "$kind" "$dyn" "$client"
        done
    done
done
