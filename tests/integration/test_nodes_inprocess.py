"""Node functions called in-process against the real ComfyUI modules (folder_paths,
model_management, ProgressBar, interruption) from the provisioned ComfyUI tree."""
from __future__ import annotations

import http.server
import os
import threading
from pathlib import Path

import pytest
import torch

import lua_core
from lua_core.checkpoints.export import save_checkpoint
from lua_core.checkpoints.manifest import Manifest, file_sha256
from tests.helpers import import_comfy_pack, tiny_config

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def comfy():
    """ComfyUI's own modules (CPU mode) and the pack as package ``comfyui_lua``."""
    if os.environ.get("LUA_SKIP_COMFY") == "1":
        pytest.skip("LUA_SKIP_COMFY=1")
    return import_comfy_pack()


@pytest.fixture
def flux_model(comfy, tmp_path):
    torch.manual_seed(0)
    net = lua_core.LUANet(tiny_config(16))
    path = save_checkpoint(net, tmp_path / "inproc_flux1.safetensors", "flux1")
    from comfyui_lua.nodes.model_wrapper import ManagedLUAModel

    return ManagedLUAModel.wrap(lua_core.load_model(path))


def test_folder_registration_merges(comfy, tmp_path):
    fp = comfy["folder_paths"]
    from comfyui_lua.nodes import paths

    saved = fp.folder_names_and_paths.pop("lua", None)
    upscale_before = fp.folder_names_and_paths["latent_upscale_models"]
    try:
        user = str(tmp_path / "user_lua")
        fp.folder_names_and_paths["lua"] = ([user], set())  # as extra_model_paths.yaml creates it
        paths.register_folder()
        paths.register_folder()
        registered, exts = fp.folder_names_and_paths["lua"]
        assert registered[0] == user and registered.count(paths.default_folder()) == 1
        assert {".safetensors", ".pth"} <= exts
        (tmp_path / "user_lua").mkdir()
        (tmp_path / "user_lua" / "notes.txt").write_text("x")
        (tmp_path / "user_lua" / ".lua_flux.pth.0123.part").write_bytes(b"x")
        (tmp_path / "user_lua" / "mine.safetensors").write_bytes(b"x")
        choices = paths.model_choices()
        assert "mine.safetensors" in choices and "notes.txt" not in choices
        assert not any(c.endswith(".part") for c in choices)
        assert fp.folder_names_and_paths["latent_upscale_models"] is upscale_before
    finally:
        if saved is not None:
            fp.folder_names_and_paths["lua"] = saved


def test_latent_keys_are_kept_and_mask_resized(comfy, flux_model):
    from comfyui_lua.nodes.upscale_node import LUALatentUpscale

    samples = {"samples": torch.randn(2, 16, 6, 8), "batch_index": [3, 4],
               "noise_mask": torch.rand(2, 1, 48, 64), "custom_key": "kept"}
    (out,) = LUALatentUpscale().upscale(flux_model, samples, 2.0, 0, 8)
    assert out["samples"].shape == (2, 16, 12, 16)
    assert out["batch_index"] == [3, 4] and out["custom_key"] == "kept"
    assert out["noise_mask"].shape == (2, 1, 96, 128)
    assert samples["samples"].shape == (2, 16, 6, 8)  # input dict untouched


def test_bad_latent_dicts(comfy, flux_model):
    from comfyui_lua.nodes.upscale_node import LUALatentUpscale

    node = LUALatentUpscale()
    with pytest.raises(ValueError, match="no 'samples'"):
        node.upscale(flux_model, {"latent": torch.zeros(1, 16, 4, 4)}, 2.0, 0, 8)
    with pytest.raises(ValueError, match="batch is empty"):
        node.upscale(flux_model, {"samples": torch.zeros(0, 16, 4, 4)}, 2.0, 0, 8)
    with pytest.raises(ValueError, match="exceeds this model's largest head"):
        node.upscale(flux_model, {"samples": torch.zeros(1, 16, 4, 4)}, 5.0, 0, 8)


def test_progress_bar_sees_every_tile(comfy, flux_model):
    utils = comfy["utils"]
    from comfyui_lua.nodes.upscale_node import LUALatentUpscale

    seen = []
    utils.set_progress_bar_global_hook(lambda value, total, preview, node_id=None: seen.append((value, total)))
    try:
        LUALatentUpscale().upscale(flux_model, {"samples": torch.randn(1, 16, 40, 40)}, 2.0, 16, 4)
    finally:
        utils.set_progress_bar_global_hook(None)
    assert seen[-1] == (9, 9) and [v for v, _ in seen] == list(range(1, 10))


def test_interrupt_flag_stops_the_upscale(comfy, flux_model):
    mm = comfy["mm"]
    from comfyui_lua.nodes.upscale_node import LUALatentUpscale

    mm.interrupt_current_processing(True)
    try:
        with pytest.raises(mm.InterruptProcessingException):
            LUALatentUpscale().upscale(flux_model, {"samples": torch.randn(1, 16, 40, 40)}, 2.0, 16, 4)
    finally:
        mm.interrupt_current_processing(False)


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def test_loader_downloads_a_manifest_entry(comfy, tmp_path, monkeypatch):
    """A listed entry that is not on disk is fetched (from a local server), verified and loaded."""
    from comfyui_lua.nodes import loader_node, paths

    served = tmp_path / "served"
    served.mkdir()
    torch.manual_seed(1)
    src = save_checkpoint(lua_core.LUANet(tiny_config(4)), served / "dl_sd15.safetensors", "sd15")
    handler = lambda *a, **k: _Quiet(*a, directory=str(served), **k)  # noqa: E731
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        entry = {"name": "dl_sd15.safetensors", "filename": "dl_sd15.safetensors", "family": "sd15",
                 "scales": [2, 4], "config": "light", "size": src.stat().st_size, "sha256": file_sha256(src),
                 "url": f"http://127.0.0.1:{httpd.server_port}/dl_sd15.safetensors", "bundled": None,
                 "license": "Apache-2.0", "source": "test", "description": "test entry"}
        manifest = Manifest.from_dict({"format_version": 1, "models": [entry]})
        monkeypatch.setattr(paths, "load_manifest", lambda: manifest)
        dest = tmp_path / "models_lua"
        monkeypatch.setattr(paths, "download_folder", lambda: str(dest))
        monkeypatch.setattr(paths, "find_local", lambda name: None)
        assert "dl_sd15.safetensors" in paths.model_choices()
        (managed,) = loader_node.LUAModelLoader().load("dl_sd15.safetensors", "fp32")
        assert managed.model.family.name == "sd15"
        assert (dest / "dl_sd15.safetensors").read_bytes() == src.read_bytes()
    finally:
        httpd.shutdown()


def test_loader_offline_says_where_to_put_the_file(comfy, monkeypatch, tmp_path):
    from comfyui_lua.nodes import loader_node, paths

    monkeypatch.setattr(paths, "find_local", lambda name: None)
    monkeypatch.setattr(paths, "download_folder", lambda: str(tmp_path))
    entry = paths.manifest_entry("lua_flux.pth")
    assert entry is not None
    # point the official entry at a closed local port: the "offline" case, without touching the internet
    monkeypatch.setattr(paths, "manifest_entry", lambda name: type(entry)(**{**entry.__dict__,
                        "url": "http://127.0.0.1:9/lua_flux.pth"}))
    with pytest.raises(RuntimeError, match=f"place it at {tmp_path}"):
        loader_node.LUAModelLoader().load("lua_flux.pth", "auto")
    assert list(tmp_path.iterdir()) == []
