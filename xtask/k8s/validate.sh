#!/usr/bin/env bash
# Validates every manifest under deploy/kubernetes/ offline: first against
# the Kubernetes OpenAPI schemas kubernetes-validate ships (--strict: an
# unknown or misspelt field is an error), for the oldest and the newest
# Kubernetes we mean to support; then that the Jobs agree with each other
# (the shard count in the Indexed Job, its loadgen --shard and the merge
# Job's shard directories). No cluster, no network beyond the pip install.
#
# The venv is <repo>/.venv-k8s (reused while it holds every pin of
# requirements.txt). Env overrides: PYTHON=/path/to/python3,
# K8S_VENV=/path/to/venv, K8S_VERSIONS="1.30.0 1.37.0",
# K8S_MANIFESTS=/path/to/dir (another copy of the manifests).
# Exit status: 0 every manifest is valid, 1 one is not, 2 setup failed.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
VENV="${K8S_VENV:-$ROOT/.venv-k8s}"
REQ="$HERE/requirements.txt"
MANIFESTS="${K8S_MANIFESTS:-$ROOT/deploy/kubernetes}"
# 1.30: an older release, so that a field too new for a cluster that lags
# behind is caught; 1.37: the newest schemas this kubernetes-validate ships.
VERSIONS="${K8S_VERSIONS:-1.30.0 1.37.0}"

die() { echo "[k8s-validate] ERROR: $*" >&2; exit 2; }

PY="${PYTHON:-$(command -v python3 || true)}"
[[ -n "$PY" && -x "$PY" ]] || die "no python3 found (set PYTHON=/path/to/python3)"

# Whether every 'name==version' pin of requirements.txt is installed.
venv_ok() {
    [[ -x "$VENV/bin/python" && -x "$VENV/bin/kubernetes-validate" ]] || return 1
    "$VENV/bin/python" - "$REQ" <<'PY'
import re, sys
from importlib.metadata import version, PackageNotFoundError
for line in open(sys.argv[1]):
    m = re.match(r"\s*([A-Za-z0-9_.-]+)==([^\s#]+)", line)
    if not m:
        continue
    try:
        if version(m.group(1)) != m.group(2):
            sys.exit(1)
    except PackageNotFoundError:
        sys.exit(1)
PY
}

if ! venv_ok; then
    echo "[k8s-validate] installing $REQ into $VENV"
    "$PY" -m venv "$VENV" || die "cannot create the venv $VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$REQ" \
        || die "cannot install $REQ"
fi

mapfile -t files < <(find "$MANIFESTS" -type f \( -name '*.yaml' -o -name '*.yml' \) | sort)
[[ ${#files[@]} -gt 0 ]] || die "no manifests under $MANIFESTS"

status=0
for version in $VERSIONS; do
    "$VENV/bin/kubernetes-validate" --strict --kubernetes-version "$version" "${files[@]}" || status=1
done

# What no schema can say: the three places the shard count appears agree.
"$VENV/bin/python" - "$MANIFESTS" <<'PY' || status=1
import re, sys, yaml
from pathlib import Path

root = Path(sys.argv[1])
def load(name):
    return yaml.safe_load((root / name).read_text())

errors = []
job = load("loadgen-job.yaml")
spec = job["spec"]
shards = spec.get("completions")
if spec.get("completionMode") != "Indexed":
    errors.append("loadgen-job.yaml: spec.completionMode must be Indexed")
if spec.get("parallelism") != shards:
    errors.append(f"loadgen-job.yaml: spec.parallelism {spec.get('parallelism')} != completions {shards} (every shard must run at once)")
if spec.get("backoffLimit") != 0:
    errors.append("loadgen-job.yaml: spec.backoffLimit must be 0 (a retried shard sends its part twice)")
script = " ".join(job["spec"]["template"]["spec"]["containers"][0]["command"])
m = re.search(r"--shard\s+(\d+)\b", script)
if not m or int(m.group(1)) != shards:
    errors.append(f"loadgen-job.yaml: loadgen --shard {m.group(1) if m else '?'} != completions {shards}")
merge = load("merge-job.yaml")["spec"]["template"]["spec"]["containers"][0]["command"]
dirs = [a for a in merge if a.startswith("/results/shard-")]
want = [f"/results/shard-{i}" for i in range(shards or 0)]
if dirs != want:
    errors.append(f"merge-job.yaml: shard directories {dirs} != {want}")
for e in errors:
    print(f"ERROR {e}")
if not errors:
    print(f"INFO loadgen-job.yaml and merge-job.yaml agree on {shards} shards")
sys.exit(1 if errors else 0)
PY

if [[ $status -ne 0 ]]; then
    echo "[k8s-validate] FAILED: see the ERROR lines above" >&2
fi
exit "$status"
