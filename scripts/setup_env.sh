#!/usr/bin/env bash
# Create/refresh the project virtual environment at <repo>/.venv.
#
# Idempotent: a stamp file inside the venv records a hash of everything that
# was installed; when it matches and torch still imports, nothing is done.
#
#   scripts/setup_env.sh            # create or update
#   LUA_FORCE_SETUP=1 scripts/setup_env.sh   # ignore the stamp, re-run pip
#
# Environment:
#   PYTHON      interpreter used to create the venv (default: python3)
#   LUA_VENV    venv location (default: <repo>/.venv)
# Works non-interactively (CI=true, no stdin, as root).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${LUA_VENV:-$REPO/.venv}"
PYTHON="${PYTHON:-python3}"
TORCH_SPEC="torch==2.14.1"
TORCHVISION_SPEC="torchvision==0.29.1"

export PIP_DISABLE_PIP_VERSION_CHECK=1
export PIP_NO_INPUT=1
export PIP_ROOT_USER_ACTION=ignore

# pip run with its output minus the "Location ... is ignored" noise some pip
# configurations (file:// extra indexes without every package) print.
pip_filtered() {
    "$VPY" -m pip "$@" 2>&1 | { grep -v -E "^WARNING: Location '.*' is ignored" || true; }
}

log() { echo "[setup_env] $*" >&2; }

cd "$REPO"

# Runtime requirements (owned by the package; only created when missing).
if [[ ! -f requirements.txt ]]; then
    log "creating requirements.txt"
    printf 'torch\nsafetensors\neinops\nnumpy\nhuggingface_hub\n' > requirements.txt
fi
# Development/test requirements.
if [[ ! -f requirements-dev.txt ]]; then
    log "creating requirements-dev.txt"
    printf 'pytest\nhypothesis\nrequests\npillow\npytest-timeout\nruff\n' > requirements-dev.txt
fi

if [[ ! -x "$VENV/bin/python" ]]; then
    log "creating venv at $VENV with $PYTHON ($("$PYTHON" --version 2>&1))"
    "$PYTHON" -m venv "$VENV"
fi
VPY="$VENV/bin/python"

STAMP="$VENV/.lua_setup_env.stamp"
want_hash="$( { echo "$TORCH_SPEC $TORCHVISION_SPEC"; "$VPY" --version 2>&1; cat requirements.txt requirements-dev.txt; } | sha256sum | cut -d' ' -f1)"

if [[ "${LUA_FORCE_SETUP:-0}" != "1" && -f "$STAMP" && "$(cat "$STAMP")" == "$want_hash" ]] \
   && "$VPY" - >/dev/null 2>&1 <<'PY'
# cheap check (no torch import): the pinned distributions are still installed
from importlib.metadata import version
assert version("torch").split("+")[0] == "2.14.1", version("torch")
assert version("torchvision").split("+")[0] == "0.29.1", version("torchvision")
for d in ("safetensors", "einops", "numpy", "huggingface_hub", "pytest", "hypothesis", "requests", "pillow",
          "pytest-timeout", "ruff"):
    version(d)
PY
then
    log "venv up to date ($VENV)"
    exit 0
fi

t0=$(date +%s)
# torch/torchvision pinned together (the CPU-capable builds that import side by side);
# the requirement files' unpinned "torch" is then already satisfied.
log "installing $TORCH_SPEC $TORCHVISION_SPEC + requirements.txt + requirements-dev.txt"
pip_filtered install -q "$TORCH_SPEC" "$TORCHVISION_SPEC" -r requirements.txt -r requirements-dev.txt
"$VPY" -c 'import torch, torchvision; print("[setup_env] torch", torch.__version__, "torchvision", torchvision.__version__)' >&2
echo "$want_hash" > "$STAMP"
log "done in $(( $(date +%s) - t0 ))s"
