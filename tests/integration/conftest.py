"""Fixtures for tests against a real ComfyUI server.

* ``comfy_server`` (session): provisions ComfyUI with ``scripts/setup_comfyui.sh``
  (idempotent, ~0.1 s when already done), starts one server for the whole session
  and stops it at the end. A failure to provision or start FAILS the tests; they are
  skipped only when ``LUA_SKIP_COMFY=1`` is set.
* ``lua_models_dir``: the folder the server searches for the ``lua`` model type
  (in addition to ``<ComfyUI>/models/lua``); tests may drop checkpoints there. The
  combo lists are re-read by ComfyUI on every ``/object_info`` call.

Environment:
  LUA_SKIP_COMFY=1     skip every test that needs the server
  LUA_COMFYUI_DIR      use an existing ComfyUI tree (setup script is not run)
  LUA_COMFY_PYTHON     interpreter for ComfyUI (default: the one running pytest)

Every test using ``comfy_server`` gets the ``comfy`` and ``slow`` markers, so ``-m "not comfy"``
(or the fast tier, ``-m "not slow"``) deselects them. On failure the server log path and tail are
attached to the report.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.support.comfy_server import DEFAULT_COMFY_DIR, SETUP_SCRIPT, ComfyServer, ComfyServerError

_SERVER_KEY = pytest.StashKey[ComfyServer]()
STUB_NODES = Path(__file__).resolve().parent / "comfy_stub_nodes"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "comfy: needs a real ComfyUI server (tests/integration; LUA_SKIP_COMFY=1 skips them)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "comfy_server" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.comfy)
            item.add_marker(pytest.mark.slow)  # starts (or shares) a ComfyUI server process


def _provision() -> Path:
    """Run setup_comfyui.sh (unless LUA_COMFYUI_DIR points at an existing tree)."""
    custom = os.environ.get("LUA_COMFYUI_DIR")
    if custom:
        return Path(custom)
    t0 = time.monotonic()
    proc = subprocess.run(
        ["bash", str(SETUP_SCRIPT)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=1800,
    )
    if proc.returncode != 0:
        pytest.fail(
            f"{SETUP_SCRIPT} failed with exit code {proc.returncode}:\n{proc.stdout[-8000:]}",
            pytrace=False,
        )
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    path = Path(lines[-1]) if lines else DEFAULT_COMFY_DIR
    print(f"[comfy] setup_comfyui.sh: {time.monotonic() - t0:.1f}s -> {path}")
    return path


@pytest.fixture(scope="session")
def comfy_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    if os.environ.get("LUA_SKIP_COMFY") == "1":
        pytest.skip("LUA_SKIP_COMFY=1: ComfyUI integration tests disabled")
    comfy_dir = _provision()
    # a test-only node that makes MODELs with a chosen latent format (no diffusion model files exist here)
    server = ComfyServer(root=tmp_path_factory.mktemp("comfy"), comfy_dir=comfy_dir,
                         extra_model_paths={"custom_nodes": STUB_NODES})
    request.config.stash[_SERVER_KEY] = server
    try:
        server.start()
    except ComfyServerError as e:
        pytest.fail(f"ComfyUI failed to start: {e}", pytrace=False)
    print(f"[comfy] server {server.base_url} started in {server.startup_seconds:.1f}s; log {server.log_path}")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def lua_models_dir(comfy_server: ComfyServer) -> Path:
    return Path(comfy_server.lua_models_dir)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    rep = outcome.get_result()
    if not rep.failed or "comfy_server" not in getattr(item, "fixturenames", ()):
        return
    server = item.config.stash.get(_SERVER_KEY, None)
    if server is None:
        return
    running = "running" if server.is_running() else "NOT running"
    rep.sections.append((
        "ComfyUI server log",
        f"log file: {server.log_path} (server {running})\n--- last lines ---\n{server.log_tail(60)}",
    ))
