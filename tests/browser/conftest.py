"""Fixtures of the browser test: a headless Chromium (Debian's package) and its own ComfyUI test server.

* ``chromium``: the browser binary. When none is found, ``scripts/setup_browser.sh`` installs
  Debian's ``chromium`` (as root; idempotent). ``LUA_SKIP_BROWSER=1`` skips the browser tests;
  a browser that cannot be found or installed fails them under CI=true and skips them elsewhere.
* ``browser_server``: a real ComfyUI 0.3.75 (``tests/support/comfy_server.py``), separate from the
  integration tests' server so the page sees fresh settings and its own input/output folders;
  stopped when the browser module is done.

Tests here get the ``browser``, ``comfy`` and ``slow`` markers (``-m "not browser"`` deselects them).
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.browser.cdp import find_chromium
from tests.support.comfy_server import ComfyServer, ComfyServerError

REPO = Path(__file__).resolve().parents[2]
SETUP = REPO / "scripts" / "setup_browser.sh"
HERE = Path(__file__).resolve().parent


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "browser: drives headless Chromium against a real ComfyUI "
                                       "(tests/browser; LUA_SKIP_BROWSER=1 skips them)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.browser)
            item.add_marker(pytest.mark.comfy)
            item.add_marker(pytest.mark.slow)


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def chromium() -> str:
    if os.environ.get("LUA_SKIP_BROWSER") == "1":
        pytest.skip("LUA_SKIP_BROWSER=1: browser tests disabled")
    found = find_chromium()
    if found is None and (os.geteuid() == 0 or shutil.which("sudo")):
        proc = subprocess.run(["bash", str(SETUP)], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, timeout=900)
        if proc.returncode != 0:
            _unavailable(f"{SETUP} failed ({proc.returncode}):\n{proc.stdout[-4000:]}")
        found = find_chromium()
    if found is None:
        _unavailable("no Chromium found (run scripts/setup_browser.sh or set LUA_BROWSER)")
    return found


@pytest.fixture(scope="module")
def browser_server(tmp_path_factory: pytest.TempPathFactory):
    if os.environ.get("LUA_SKIP_COMFY") == "1":
        pytest.skip("LUA_SKIP_COMFY=1: ComfyUI integration tests disabled")
    from tests.integration.conftest import _provision

    server = ComfyServer(root=tmp_path_factory.mktemp("comfy_browser"), comfy_dir=_provision())
    try:
        server.start()
    except ComfyServerError as e:
        pytest.fail(f"ComfyUI failed to start: {e}", pytrace=False)
    try:
        yield server
    finally:
        server.stop(timeout=5)
