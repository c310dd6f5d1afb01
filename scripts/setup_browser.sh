#!/usr/bin/env bash
# Install the headless browser the browser test drives: Debian's `chromium` package (/usr/bin/chromium).
#
# Idempotent and non-interactive (CI=true, no stdin, as root on a fresh Debian machine): when
# /usr/bin/chromium already runs, nothing is done. The test talks to Chromium over the DevTools
# protocol on a pipe (--remote-debugging-pipe) from Python's standard library, so no npm or PyPI
# package is needed.
#   bash scripts/setup_browser.sh
# Environment:
#   LUA_BROWSER   another Chromium/Chrome binary to use (then nothing is installed)
set -euo pipefail

log() { echo "[setup_browser] $*" >&2; }

browser="${LUA_BROWSER:-/usr/bin/chromium}"
if "$browser" --version >/dev/null 2>&1; then
    log "$("$browser" --version) already installed"
    exit 0
fi
if [[ -n "${LUA_BROWSER:-}" ]]; then
    log "ERROR: LUA_BROWSER=$LUA_BROWSER does not run"
    exit 1
fi

SUDO=""
if [[ "$(id -u)" != "0" ]]; then
    command -v sudo >/dev/null 2>&1 || { log "ERROR: need root (or sudo) to apt-get install chromium"; exit 1; }
    SUDO="sudo -n"
fi
export DEBIAN_FRONTEND=noninteractive
t0=$(date +%s)
log "installing Debian's chromium package"
$SUDO apt-get update -qq </dev/null
$SUDO apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core </dev/null >/dev/null
/usr/bin/chromium --version >&2
log "done in $(( $(date +%s) - t0 ))s"
