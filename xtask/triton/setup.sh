#!/usr/bin/env bash
# Creates the venv serve.py runs in and installs the pinned requirements.
#
#   xtask/triton/setup.sh VENV_DIR
#
# The venv must be made from the system Python /usr/bin/python3.11 (Debian's
# 3.11.2): Triton's Python backend stub links the system libpython3.11.so, and
# a venv of another 3.11 build (pyenv's, say) fails at model load with
# "'_thread.RLock' object has no attribute '_recursion_count'".
set -euo pipefail

PY=/usr/bin/python3.11
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

if [ $# -ne 1 ]; then
    echo "usage: $0 VENV_DIR" >&2
    exit 2
fi
venv="$1"

if [ ! -x "$PY" ]; then
    echo "error: $PY not found; Triton's Python backend needs the system Python 3.11" >&2
    echo "       (Debian/Ubuntu: apt-get install -y python3.11 python3.11-venv)" >&2
    exit 1
fi
# Debian splits venv/ensurepip into python3.11-venv; without it `-m venv` fails
# half-way, so check first.
if ! "$PY" -c 'import venv, ensurepip' 2>/dev/null; then
    echo "error: $PY has no working venv module (ensurepip missing)" >&2
    echo "       (Debian/Ubuntu: apt-get install -y python3.11-venv)" >&2
    exit 1
fi
# The backend stub loads libpython3.11.so at model load (Debian: libpython3.11).
if ! "$PY" -c 'import ctypes.util, sys; sys.exit(0 if ctypes.util.find_library("python3.11") else 1)'; then
    echo "error: libpython3.11.so not found; Triton's Python backend stub links it" >&2
    echo "       (Debian/Ubuntu: apt-get install -y libpython3.11)" >&2
    exit 1
fi

"$PY" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --no-input -r "$here/requirements.txt"
# pip check catches a requirements.txt that no longer fits together.
"$venv/bin/python" -m pip check
"$venv/bin/python" -c 'import pytriton, numpy; print("pytriton", pytriton.__version__, "ready in", __import__("sys").prefix)'
