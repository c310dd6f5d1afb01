#!/usr/bin/env bash
# The main job: installs what it needs, then runs the image-in example workflow in a headless
# ComfyUI and writes its x2/x4 images to output/demo/.
#   bash scripts/run_demo.sh [--image PATH] [--out DIR]
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
bash scripts/setup_env.sh
bash scripts/setup_comfyui.sh >/dev/null
export LUA_COMFYUI_DIR="$REPO/.cache/comfyui/ComfyUI"
exec "$REPO/.venv/bin/python" -m scripts.run_demo "$@"
