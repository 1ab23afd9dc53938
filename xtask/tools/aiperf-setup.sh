#!/usr/bin/env bash
# Makes <repo>/.venv-aiperf with PyPI's aiperf at one pinned version, for
# `cargo xtask bench --aiperf-only` (the side-by-side with loadgen), apart
# from .venv-tools so that aiperf's many dependencies pin nothing of the
# tests' references. Idempotent: a venv that already has the version is
# left alone. The bench only ever points aiperf at 127.0.0.1.
#
# Usage: aiperf-setup.sh [--wheels DIR]
#   --wheels DIR  install from wheels in DIR, with no index (a machine
#                 without network; `pip download aiperf==VERSION -d DIR`
#                 on one with it makes DIR)
set -euo pipefail
AIPERF_VERSION=0.13.0
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
venv="${AIPERF_VENV:-$root/.venv-aiperf}"
python="${PYTHON:-python3}"
wheels=""
while [ $# -gt 0 ]; do
    case "$1" in
        --wheels)
            [ $# -ge 2 ] || { echo "--wheels needs a directory of wheels" >&2; exit 2; }
            wheels="$2"
            shift 2
            ;;
        *)
            echo "unknown argument $1 (allowed: --wheels DIR)" >&2
            exit 2
            ;;
    esac
done

if [ -x "$venv/bin/aiperf" ] && [ "$("$venv/bin/python" -c 'from importlib.metadata import version; print(version("aiperf"))' 2>/dev/null)" = "$AIPERF_VERSION" ]; then
    echo "$venv: aiperf $AIPERF_VERSION already installed"
    exit 0
fi
if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
fi
if [ -n "$wheels" ]; then
    "$venv/bin/python" -m pip install --quiet --no-index --find-links "$wheels" "aiperf==$AIPERF_VERSION"
else
    "$venv/bin/python" -m pip install --quiet --upgrade pip
    "$venv/bin/python" -m pip install --quiet "aiperf==$AIPERF_VERSION"
fi
"$venv/bin/aiperf" --version >/dev/null 2>&1 || "$venv/bin/aiperf" --help >/dev/null
echo "$venv: aiperf $AIPERF_VERSION ready"
