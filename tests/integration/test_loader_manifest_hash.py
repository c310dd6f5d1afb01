"""The weights manifest's sha256 and size, enforced by the real loader node (ComfyUI's own modules and
this pack, in-process): a local file whose hash differs is refused and kept, a download whose hash
differs is deleted. ``LUA_SKIP_COMFY=1`` skips them. The downloads themselves are tested without
ComfyUI in ``tests/unit/test_download.py`` and ``tests/unit/test_hostile_files.py``.
"""
from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path
from typing import Any, Iterator, Optional

import pytest
import torch

import lua_core
from lua_core.checkpoints.export import save_checkpoint
from lua_core.checkpoints.manifest import Manifest, file_sha256
from tests.helpers import import_comfy_pack, tiny_config
from tests.support.file_server import FileServer, serve_files


@pytest.fixture(scope="module")
def good_files(tmp_path_factory) -> dict[str, Path]:
    """A small valid FLUX.1 adapter as our .safetensors (with metadata)."""
    folder = tmp_path_factory.mktemp("good")
    torch.manual_seed(0)
    net = lua_core.LUANet(tiny_config(16))
    return {"safetensors": save_checkpoint(net, folder / "good.safetensors", "flux1", dtype=torch.float16)}


@pytest.fixture
def server() -> Iterator[FileServer]:
    with serve_files() as srv:
        yield srv


@pytest.fixture(scope="module")
def comfy():
    if os.environ.get("LUA_SKIP_COMFY") == "1":
        pytest.skip("LUA_SKIP_COMFY=1")
    return import_comfy_pack()


def _entry(name: str, path: Optional[Path], url: Optional[str], sha256: Optional[str] = None,
           size: Optional[int] = None) -> dict[str, Any]:
    return {"name": name, "filename": name, "family": "flux1", "scales": [2, 4], "config": "light",
            "size": size if size is not None else (path.stat().st_size if path else None),
            "sha256": sha256 if sha256 is not None else (file_sha256(path) if path else None),
            "url": url, "bundled": None, "license": "Apache-2.0", "source": "test", "description": ""}


@pytest.fixture
def loader_env(comfy, tmp_path, monkeypatch):
    """The loader node with a test manifest, a test models folder and find_local looking there only."""
    from comfyui_lua.nodes import loader_node, paths

    folder = tmp_path / "models_lua"
    folder.mkdir()
    state: dict[str, Any] = {"entries": []}
    monkeypatch.setattr(paths, "load_manifest", lambda: Manifest.from_dict(
        {"format_version": 1, "models": state["entries"]}))
    monkeypatch.setattr(paths, "download_folder", lambda: str(folder))
    monkeypatch.setattr(paths, "find_local", lambda name: str(folder / name) if (folder / name).is_file() else None)
    return loader_node, folder, state


def test_loader_refuses_a_local_file_whose_sha256_differs(loader_env, good_files):
    loader_node, folder, state = loader_env
    shutil.copy(good_files["safetensors"], folder / "lua_test.safetensors")
    genuine = hashlib.sha256(b"the published file").hexdigest()
    state["entries"] = [_entry("lua_test.safetensors", None, "http://127.0.0.1:9/x.safetensors", sha256=genuine,
                               size=(folder / "lua_test.safetensors").stat().st_size)]
    with pytest.raises(ValueError, match=f"does not match the weights manifest .*sha256 mismatch: expected {genuine}"):
        loader_node.LUAModelLoader().load("lua_test.safetensors", "fp32")
    state["entries"][0]["size"] = 123
    with pytest.raises(ValueError, match="size mismatch: expected 123 bytes"):
        loader_node.LUAModelLoader().load("lua_test.safetensors", "fp32")
    # the user's file is refused, not deleted; with the right hash it loads
    state["entries"] = [_entry("lua_test.safetensors", folder / "lua_test.safetensors", None)]
    (managed,) = loader_node.LUAModelLoader().load("lua_test.safetensors", "fp32")
    assert managed.model.family.name == "flux1"


def test_loader_deletes_a_download_whose_sha256_differs(loader_env, good_files, server):
    loader_node, folder, state = loader_env
    server.add("lua_dl.safetensors", good_files["safetensors"].read_bytes())
    wrong = hashlib.sha256(b"something else").hexdigest()
    state["entries"] = [_entry("lua_dl.safetensors", None, server.url("ok", "lua_dl.safetensors"), sha256=wrong,
                               size=good_files["safetensors"].stat().st_size)]
    with pytest.raises(RuntimeError, match=f"sha256 mismatch: expected {wrong}") as info:
        loader_node.LUAModelLoader().load("lua_dl.safetensors", "fp32")
    assert f"place it at {folder / 'lua_dl.safetensors'}" in str(info.value)
    assert list(folder.iterdir()) == []  # neither the file nor a .part nor a lock is left
    assert server.requests == ["/ok/lua_dl.safetensors"]
