#!/usr/bin/env bash
# Create (or reuse) <repo>/.venv-tools with the pinned Python tools the
# tests use as independent references (requirements.txt beside this file).
#
# Idempotent: when the venv already has every pinned version, nothing is
# installed. Env overrides: PYTHON=/path/to/python3, TOOLS_VENV=/path/to/venv.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
VENV="${TOOLS_VENV:-$ROOT/.venv-tools}"
REQ="$HERE/requirements.txt"

log() { echo "[tools-setup] $*"; }
die() { echo "[tools-setup] ERROR: $*" >&2; exit 1; }

PY="${PYTHON:-$(command -v python3 || true)}"
[[ -n "$PY" && -x "$PY" ]] || die "no python3 found (set PYTHON=/path/to/python3)"
[[ -f "$REQ" ]] || die "missing $REQ"

# 0 when every 'name==version' pin of requirements.txt is installed.
venv_ok() {
    [[ -x "$VENV/bin/python" ]] || return 1
    "$VENV/bin/python" - "$REQ" <<'PY' || return 1
import re, sys
from importlib.metadata import version, PackageNotFoundError
bad = []
for line in open(sys.argv[1]):
    line = line.split("#", 1)[0].strip()
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
    print("[tools-setup] venv out of date: " + "; ".join(bad))
    sys.exit(1)
PY
}

if venv_ok; then
    log "venv $VENV already has the pinned versions; nothing to do"
    exit 0
fi
if [[ ! -x "$VENV/bin/python" ]]; then
    log "creating venv $VENV with $PY ($("$PY" --version 2>&1))"
    "$PY" -m venv "$VENV" || die "python -m venv failed (on Debian: apt-get install python3-venv)"
fi
log "installing $REQ"
"$VENV/bin/python" -m pip install --disable-pip-version-check -q -r "$REQ" \
    || die "pip install failed"
venv_ok || die "the venv still lacks a pinned version after installing"
log "venv $VENV ready"
