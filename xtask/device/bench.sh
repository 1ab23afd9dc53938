#!/usr/bin/env bash
# The prepared device run: loadgen at scale and beside its peers on a
# 16-core Linux machine with no network, in under 8 minutes, from a bundle
# made here (`--prepare`): stripped release binaries (loadgen, stub-server,
# xtask) and the peers carried beside them (wrk and nginx unpacked from
# their Debian packages with their libraries, oha, optionally aiperf's
# wheels and a tokenizer).
#
# On the device (`--run`, the default), with CPUs 0-7 for the client and
# 8-15 for the server (xtask bench pins each half, as `taskset -c` would):
#   1. scale: 1,000 concurrent streams three times, then 10,000, of 256
#      tokens at a 20 ms schedule against stub-server --sse-stamps:
#      loadgen's CPU per 1,000 tokens, peak RSS per stream, client delay
#      from the write stamps (as root, the client's CPUs kept to loadgen
#      with --isolate-client);
#   2. plain HTTP: loadgen, wrk and oha against stub-server and nginx on
#      the 8 client cores (xtask bench's throughput rounds, no criterion,
#      no ./run_tests);
#   3. only with --with-aiperf and wheels in the bundle: loadgen beside
#      aiperf at 1,000 streams.
# Every table goes into one folder: --out DIR, else $OUT, else
# ./device-bench-out.
#
# Usage:
#   bench.sh --prepare BUNDLE          (here: build, strip, unpack peers)
#   bench.sh [--run] [--bundle DIR] [--out DIR] [--streams N] [--rounds N]
#            [--duration-s S] [--with-aiperf] [--dry-run]
#   --bundle DIR    the bundle (default: the folder this script is in)
#   --streams N     streams of the scale run, 1 to 100000 (default 10000)
#   --rounds N      throughput rounds per comparison, 1 to 20 (default 3)
#   --duration-s S  seconds per throughput run, 1 to 60 (default 3)
#   --with-aiperf   also run the aiperf side by side (needs wheels/)
#   --dry-run       print the plan and what the bundle lacks; run nothing
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
mode=run
bundle="$here"
out="${OUT:-$PWD/device-bench-out}"
streams=10000
rounds=3
duration_s=3
with_aiperf=0
dry_run=0
prepare_dir=""

die() {
    echo "bench.sh: $*" >&2
    exit 2
}

# A whole number within bounds, or a message saying what is allowed.
bounded() {
    local flag="$1" value="$2" min="$3" max="$4"
    if ! [[ "$value" =~ ^[0-9]{1,9}$ ]] || [ "$value" -lt "$min" ] || [ "$value" -gt "$max" ]; then
        die "$flag $value: must be a whole number from $min to $max"
    fi
}

need_value() {
    [ "$2" -ge 2 ] || die "$1 needs a value"
}

while [ $# -gt 0 ]; do
    case "$1" in
        --prepare)
            need_value "$1" $#
            mode=prepare
            prepare_dir="$2"
            shift 2
            ;;
        --run)
            mode=run
            shift
            ;;
        --bundle)
            need_value "$1" $#
            bundle="$2"
            shift 2
            ;;
        --out)
            need_value "$1" $#
            out="$2"
            shift 2
            ;;
        --streams)
            need_value "$1" $#
            bounded --streams "$2" 1 100000
            streams="$2"
            shift 2
            ;;
        --rounds)
            need_value "$1" $#
            bounded --rounds "$2" 1 20
            rounds="$2"
            shift 2
            ;;
        --duration-s)
            need_value "$1" $#
            bounded --duration-s "$2" 1 60
            duration_s="$2"
            shift 2
            ;;
        --with-aiperf)
            with_aiperf=1
            shift
            ;;
        --dry-run)
            dry_run=1
            shift
            ;;
        -h | --help)
            sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
            exit 0
            ;;
        *)
            die "unknown argument $1 (allowed: --prepare DIR, --run, --bundle DIR, --out DIR, --streams N, --rounds N, --duration-s S, --with-aiperf, --dry-run, --help)"
            ;;
    esac
done

# Runs a step, or prints it under --dry-run.
step() {
    if [ "$dry_run" = 1 ]; then
        printf '+ %q' "$1"
        shift
        printf ' %q' "$@"
        printf '\n'
    else
        "$@"
    fi
}

# Runs a measuring step with its output also in $out/steps.log, or prints
# it under --dry-run; a failed step is said and the next one still runs.
measured() {
    if [ "$dry_run" = 1 ]; then
        step "$@"
        return 0
    fi
    local rc=0
    echo "+ $*" >>"$out/steps.log"
    "$@" 2>&1 | tee -a "$out/steps.log" || rc=$?
    if [ "$rc" != 0 ]; then
        echo "step failed with exit code $rc: $*" | tee -a "$out/steps.log" >&2
    fi
}

prepare() {
    local dir="$1" root target debs
    root="$(cd "$here/../.." && pwd)"
    target="${CARGO_TARGET_DIR:-$root/target}"
    step mkdir -p "$dir/bin" "$dir/peers/bin" "$dir/peers/root" "$dir/debs"
    step cargo build --release --manifest-path "$root/Cargo.toml" -p loadgen -p stub-server -p xtask
    for bin in loadgen stub-server xtask; do
        step strip -o "$dir/bin/$bin" "$target/release/$bin"
    done
    step cp "${BASH_SOURCE[0]}" "$dir/bench.sh"
    # wrk and nginx with the libraries a bare machine may lack, unpacked
    # rather than installed: the device needs no root and no apt.
    debs=(wrk libluajit-5.1-2 libluajit-5.1-common nginx nginx-common libpcre2-8-0 libssl3 zlib1g)
    if [ "$dry_run" = 1 ]; then
        step apt-get download "${debs[@]}"
    else
        (cd "$dir/debs" && apt-get download "${debs[@]}")
        for deb in "$dir"/debs/*.deb; do
            dpkg-deb -x "$deb" "$dir/peers/root"
        done
        # Unpacked, the packages are not carried (a device run carries
        # 64 MiB at most).
        rm -rf "$dir/debs"
    fi
    # oha: the one installed here (cargo install oha), if any.
    if command -v oha >/dev/null; then
        step cp "$(command -v oha)" "$dir/peers/bin/oha"
    else
        echo "oha not found here: the bundle goes without it (cargo install oha --locked)" >&2
    fi
    # aiperf: its wheels and a tokenizer, only when asked (hundreds of MB).
    if [ "$with_aiperf" = 1 ]; then
        step "$root/.venv-aiperf/bin/python" -m pip download --quiet -d "$dir/wheels" aiperf==0.13.0
        step mkdir -p "$dir/tokenizer"
        step "$root/.venv-aiperf/bin/python" "$root/xtask/tools/make_bpe_tokenizer.py" "$dir/tokenizer/tokenizer.json"
        step cp "$root/xtask/tools/aiperf-setup.sh" "$dir/aiperf-setup.sh"
    fi
    echo "bundle ready: $dir (run $dir/bench.sh on the device)"
}

# What the bundle lacks, one line each; empty when complete.
lacking() {
    local bin
    for bin in loadgen stub-server xtask; do
        [ -x "$bundle/bin/$bin" ] || echo "bin/$bin (required)"
    done
    [ -x "$bundle/peers/root/usr/bin/wrk" ] || echo "peers/root/usr/bin/wrk (the plain comparison goes without wrk)"
    [ -x "$bundle/peers/root/usr/sbin/nginx" ] || echo "peers/root/usr/sbin/nginx (no nginx target, no HTTPS comparison)"
    [ -x "$bundle/peers/bin/oha" ] || echo "peers/bin/oha (the plain comparison goes without oha)"
    if [ "$with_aiperf" = 1 ]; then
        [ -d "$bundle/wheels" ] || echo "wheels/ (aiperf's, for --with-aiperf)"
        [ -f "$bundle/tokenizer/tokenizer.json" ] || echo "tokenizer/tokenizer.json (for --with-aiperf)"
    fi
}

run() {
    local missing libs started line
    missing="$(lacking)"
    if [ -n "$missing" ]; then
        echo "the bundle $bundle lacks:" >&2
        while IFS= read -r line; do echo "  $line" >&2; done <<<"$missing"
        if echo "$missing" | grep -q "(required)" && [ "$dry_run" = 0 ]; then
            die "cannot run without the binaries: make the bundle with --prepare"
        fi
    fi
    # The peers on PATH (xtask finds them there) with their libraries.
    export PATH="$bundle/peers/bin:$bundle/peers/root/usr/bin:$bundle/peers/root/usr/sbin:$PATH"
    libs="$bundle/peers/root/usr/lib/x86_64-linux-gnu:$bundle/peers/root/lib/x86_64-linux-gnu"
    export LD_LIBRARY_PATH="$libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    # 10,000 sockets a side: loadgen and stub-server raise their soft limit
    # to the hard one; raise the hard one too where allowed.
    ulimit -Hn 1048576 2>/dev/null || true
    ulimit -Sn "$(ulimit -Hn)" 2>/dev/null || true
    started=$SECONDS
    if [ "$dry_run" = 0 ]; then
        mkdir -p "$out"
        {
            echo "# Device run $(date -u +%Y-%m-%dT%H:%M:%SZ)"
            echo
            echo "- machine: $(nproc) CPUs, $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo), $(uname -r)"
            echo "- open files: soft $(ulimit -Sn), hard $(ulimit -Hn)"
            echo "- bundle: $bundle"
        } >"$out/machine.md"
    else
        echo "plan (nothing runs; tables would go to $out):"
    fi
    # 1. Scale (bounded: 10,000 streams take about 6 s of answers): 1,000
    #    streams three times for the client-delay bars, then --streams. As
    #    root the client's CPUs are kept to loadgen (--isolate-client).
    isolate=()
    [ "$(id -u)" = 0 ] && isolate=(--isolate-client)
    measured timeout 180 "$bundle/bin/xtask" bench --scale-only --scale-streams "1000,1000,1000,$streams" \
        "${isolate[@]}" --bin-dir "$bundle/bin" --label device --out "$out"
    # 2. Plain HTTP against wrk and oha on the 8 client cores.
    measured timeout 270 "$bundle/bin/xtask" bench --bin-dir "$bundle/bin" --skip-stats --skip-run-tests \
        --rounds "$rounds" --duration-s "$duration_s" --label device --out "$out"
    # 3. aiperf beside loadgen, when asked and carried.
    if [ "$with_aiperf" = 1 ]; then
        measured env AIPERF_VENV="$out/.venv-aiperf" bash "$bundle/aiperf-setup.sh" --wheels "$bundle/wheels"
        measured timeout 240 "$bundle/bin/xtask" bench --aiperf-only --aiperf-concurrency 1000 \
            --aiperf-venv "$out/.venv-aiperf" --aiperf-tokenizer "$bundle/tokenizer" \
            --bin-dir "$bundle/bin" --label device --out "$out"
    fi
    if [ "$dry_run" = 0 ]; then
        echo "done in $((SECONDS - started)) s; tables in $out"
    fi
}

if [ "$mode" = prepare ]; then
    prepare "$prepare_dir"
else
    run
fi
