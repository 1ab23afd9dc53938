#!/usr/bin/env bash
# Build llama.cpp's own `llama-server` (C++, CPU only) into
# <repo>/.llama-server/bin/llama-server, from the llama.cpp sources vendored in
# the llama-cpp-python source package on PyPI (nothing else is downloaded;
# no model is fetched at build or run time).
#
# Idempotent: when the binary exists and answers --version, nothing is done.
# About 12 minutes on 2 cores (nice 19).
#
# The same directory holds a small venv (.llama-server/venv) with `gguf` and
# numpy, which make_gguf.py uses to write the tiny model the server serves.
#
# Env overrides: PYTHON=/path/to/python3, LLAMA_SERVER_DIR=/path,
#                CMAKE_BUILD_PARALLEL_LEVEL (default: nproc).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
DIR="${LLAMA_SERVER_DIR:-$ROOT/.llama-server}"
VERSION=0.3.36
BIN="$DIR/bin/llama-server"

log() { echo "[llama-server] $*"; }
die() { echo "[llama-server] ERROR: $*" >&2; exit 1; }

if [[ -n "${PYTHON:-}" ]]; then
    PY="$PYTHON"
elif [[ -x /usr/bin/python3.11 ]]; then
    PY=/usr/bin/python3.11
else
    PY="$(command -v python3 || true)"
fi
[[ -n "$PY" && -x "$PY" ]] || die "no python interpreter found"

venv_ok() {
    [[ -x "$DIR/venv/bin/python" ]] && "$DIR/venv/bin/python" -c 'import gguf, numpy' 2>/dev/null
}

if ! venv_ok; then
    log "venv $DIR/venv (gguf, numpy, scikit-build-core)"
    "$PY" -m venv "$DIR/venv" || die "python -m venv failed (on Debian: apt-get install python3.11-venv)"
    "$DIR/venv/bin/python" -m pip install --disable-pip-version-check -q \
        gguf==0.19.0 numpy==2.4.6 scikit-build-core==0.11.6 || die "pip install failed"
fi

if [[ -x "$BIN" ]] && "$BIN" --version >/dev/null 2>&1; then
    log "$BIN already built; nothing to do"
    exit 0
fi

command -v cmake >/dev/null 2>&1 || {
    log "installing cmake (Debian)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq cmake >/dev/null \
        || die "cmake is missing and could not be installed"
}

SRC="$DIR/src"
mkdir -p "$SRC"
if [[ ! -f "$SRC/llama-cpp-python-$VERSION/vendor/llama.cpp/CMakeLists.txt" ]]; then
    log "fetching the llama-cpp-python $VERSION source package (PyPI)"
    "$DIR/venv/bin/python" -m pip download --disable-pip-version-check -q --no-deps \
        --no-binary :all: --no-build-isolation "llama-cpp-python==$VERSION" -d "$SRC" \
        || die "pip download llama-cpp-python==$VERSION failed"
    tar -xzf "$SRC/llama_cpp_python-$VERSION.tar.gz" -C "$SRC" 2>/dev/null \
        || tar -xzf "$SRC"/llama*cpp*python-$VERSION.tar.gz -C "$SRC" \
        || die "cannot unpack the source package"
    if [[ -d "$SRC/llama_cpp_python-$VERSION" && ! -d "$SRC/llama-cpp-python-$VERSION" ]]; then
        mv "$SRC/llama_cpp_python-$VERSION" "$SRC/llama-cpp-python-$VERSION"
    fi
fi
LLAMA="$SRC/llama-cpp-python-$VERSION/vendor/llama.cpp"
[[ -f "$LLAMA/CMakeLists.txt" ]] || die "no vendored llama.cpp in the source package ($LLAMA)"

export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}"
start=$(date +%s)
log "configuring (CPU only, portable x86-64, no curl)"
cmake -S "$LLAMA" -B "$DIR/build" -DCMAKE_BUILD_TYPE=Release \
    -DLLAMA_BUILD_SERVER=ON -DLLAMA_CURL=OFF -DGGML_NATIVE=OFF \
    -DGGML_BLAS=OFF -DGGML_OPENMP=OFF -DGGML_CUDA=OFF -DGGML_METAL=OFF -DGGML_VULKAN=OFF \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DBUILD_SHARED_LIBS=OFF \
    >"$DIR/cmake-configure.log" 2>&1 || { tail -30 "$DIR/cmake-configure.log" >&2; die "cmake configure failed"; }
log "building llama-server with $CMAKE_BUILD_PARALLEL_LEVEL jobs (about 12 minutes on 2 cores)"
nice -n 19 cmake --build "$DIR/build" --target llama-server >"$DIR/cmake-build.log" 2>&1 \
    || { tail -40 "$DIR/cmake-build.log" >&2; die "build failed"; }
mkdir -p "$DIR/bin"
cp "$DIR/build/bin/llama-server" "$BIN"
"$BIN" --version >/dev/null 2>&1 || die "the built llama-server does not run"
log "ok: $BIN ($(( $(date +%s) - start )) s)"
