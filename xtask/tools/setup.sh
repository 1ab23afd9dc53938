#!/usr/bin/env bash
# Makes <repo>/.venv-tools with xtask/tools/requirements.txt, idempotently:
# an existing venv that already has every pinned version is left alone.
# CI calls it before the tests; the tests that need it skip (and under CI
# fail) without it.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
venv="$root/.venv-tools"
requirements="$root/xtask/tools/requirements.txt"
python="${PYTHON:-python3}"

satisfied() {
    [ -x "$venv/bin/python" ] || return 1
    "$venv/bin/python" - "$requirements" <<'PY'
import sys
from importlib.metadata import PackageNotFoundError, version

for line in open(sys.argv[1]):
    line = line.split("#", 1)[0].strip()
    if not line:
        continue
    name, _, pinned = line.partition("==")
    try:
        if version(name) != pinned:
            sys.exit(1)
    except PackageNotFoundError:
        sys.exit(1)
PY
}

if satisfied; then
    echo "$venv: every requirement already installed"
    exit 0
fi
if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet -r "$requirements"
satisfied
echo "$venv: ready"
