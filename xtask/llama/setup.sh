#!/usr/bin/env bash
# Create (or reuse) <repo>/.venv-llama with llama-cpp-python[server] + gguf.
#
# Idempotent: when the venv already has every version pinned in
# requirements.txt (and llama_cpp imports), nothing is reinstalled.
# llama-cpp-python is built from source (vendored llama.cpp), CPU only,
# without BLAS/OpenMP/curl/CUDA/Metal/llava, at nice 19 with 2 build jobs.
# A cold build took 7 minutes on a 2-core machine (see NOTES.md).
#
# Env overrides: PYTHON=/path/to/python3, LLAMA_VENV=/path/to/venv,
#                CMAKE_BUILD_PARALLEL_LEVEL (default 2).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
VENV="${LLAMA_VENV:-$ROOT/.venv-llama}"
REQ="$HERE/requirements.txt"

log() { echo "[llama-setup] $*"; }
die() { echo "[llama-setup] ERROR: $*" >&2; exit 1; }

if [[ -n "${PYTHON:-}" ]]; then
    PY="$PYTHON"
elif [[ -x /usr/bin/python3.11 ]]; then
    PY=/usr/bin/python3.11
else
    PY="$(command -v python3 || true)"
fi
[[ -n "$PY" && -x "$PY" ]] || die "no python interpreter found (need /usr/bin/python3.11 or python3)"
[[ -f "$REQ" ]] || die "missing $REQ"

# Returns 0 when every 'name==version' pin in requirements.txt is installed
# in the venv and llama_cpp / gguf import.
venv_ok() {
    [[ -x "$VENV/bin/python" ]] || return 1
    "$VENV/bin/python" - "$REQ" <<'PY' || return 1
import re, sys
from importlib.metadata import version, PackageNotFoundError
bad = []
for line in open(sys.argv[1]):
    line = line.split("#", 1)[0].strip()
    if not line:
        continue
    m = re.match(r"^([A-Za-z0-9_.\-]+)(\[[^\]]*\])?==([^\s;]+)", line)
    if not m:
        continue
    name, want = m.group(1), m.group(3)
    try:
        have = version(name)
    except PackageNotFoundError:
        have = None
    if have != want:
        bad.append(f"{name}: want {want}, have {have}")
if bad:
    print("[llama-setup] venv out of date: " + "; ".join(bad))
    sys.exit(1)
import llama_cpp, gguf  # noqa: F401  (the shared library must load)
import llama_cpp.server.app  # noqa: F401
PY
}

if venv_ok; then
    log "venv $VENV already has the pinned versions; nothing to do"
    exit 0
fi

if [[ ! -x "$VENV/bin/python" ]]; then
    log "creating venv $VENV with $PY ($("$PY" --version 2>&1))"
    "$PY" -m venv "$VENV" || die "python -m venv failed (on Debian: apt-get install python3.11-venv)"
else
    log "reusing existing venv $VENV"
fi

log "upgrading pip"
"$VENV/bin/python" -m pip install --disable-pip-version-check -q --upgrade pip \
    || die "pip upgrade failed"

# CPU-only, no optional system deps, no network at build time:
#  GGML_NATIVE=OFF   portable x86-64 build (AVX2/FMA/F16C baseline), not -march=native
#  GGML_BLAS=OFF     no OpenBLAS
#  GGML_OPENMP=OFF   no libgomp dependency (ggml uses its own threadpool)
#  LLAMA_CURL=OFF    no libcurl (model download support not wanted)
#  LLAVA_BUILD=OFF   skip the multimodal mtmd library (imported lazily, not needed)
#  LLAMA_BUILD_{TESTS,EXAMPLES,TOOLS,SERVER}=OFF  only the libraries the bindings load
export CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF -DGGML_BLAS=OFF -DGGML_OPENMP=OFF -DLLAMA_CURL=OFF -DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF -DGGML_CUDA=OFF -DGGML_METAL=OFF -DGGML_VULKAN=OFF}"
export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-2}"
export FORCE_CMAKE=1

log "installing $(grep -v '^\s*#' "$REQ" | grep -v '^\s*$' | tr '\n' ' ')"
log "CMAKE_ARGS=$CMAKE_ARGS"
log "CMAKE_BUILD_PARALLEL_LEVEL=$CMAKE_BUILD_PARALLEL_LEVEL (compiling llama.cpp under nice -n 19; about 7 min cold on 2 cores)"
start=$(date +%s)
if ! nice -n 19 "$VENV/bin/python" -m pip install --disable-pip-version-check -r "$REQ"; then
    die "pip install -r $REQ failed (see the compiler/cmake output above)"
fi
log "pip install took $(( $(date +%s) - start )) s"

venv_ok || die "installed, but the venv check still fails (llama_cpp does not import?)"
log "ok: $VENV ($("$VENV/bin/python" -c 'import llama_cpp; print("llama_cpp", llama_cpp.__version__)'))"
