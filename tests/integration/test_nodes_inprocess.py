"""Node functions called in-process against the real ComfyUI modules (folder_paths,
model_management, ProgressBar, interruption) from the provisioned ComfyUI tree."""
from __future__ import annotations

import http.server
import json
import logging
import os
import threading
import time
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


@pytest.mark.slow
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


def test_the_node_asks_comfyui_for_the_memory_its_plan_runs_on(comfy, flux_model, monkeypatch):
    mm = comfy["mm"]
    from comfyui_lua.lua_core.api import plan_upscale
    from comfyui_lua.nodes.upscale_node import LUALatentUpscale

    asked = []
    real = mm.load_models_gpu
    monkeypatch.setattr(mm, "load_models_gpu", lambda models, **kw: (asked.append(kw), real(models, **kw))[1])
    z = torch.randn(1, 16, 40, 40)
    LUALatentUpscale().upscale(flux_model, {"samples": z}, 2.0, 16, 4)
    plan = plan_upscale(flux_model.model, z, 2.0, tile_size=16, tile_overlap=4)  # CPU: the core's default budget
    assert plan.tiles.tiled and asked[-1]["memory_required"] == plan.memory_required > 0


def test_on_an_accelerator_the_budget_counts_what_comfyui_can_offload(comfy, flux_model, monkeypatch):
    """Other models' weights on the device count (ComfyUI offloads them when asked); this adapter's
    weights still to load and ComfyUI's reserve do not."""
    from types import SimpleNamespace

    mm = comfy["mm"]
    from comfyui_lua.lua_core.engine.memory import budget_from_free
    from comfyui_lua.nodes.model_wrapper import clearable_memory

    gpu, gib = torch.device("cuda", 0), 1 << 30
    patcher = flux_model.patcher
    monkeypatch.setattr(patcher, "load_device", gpu)
    diffusion = SimpleNamespace(loaded_size=lambda: 6 * gib)
    elsewhere = SimpleNamespace(loaded_size=lambda: 5 * gib)
    monkeypatch.setattr(mm, "current_loaded_models", [SimpleNamespace(model=diffusion, device=gpu),
                                                      SimpleNamespace(model=elsewhere, device=torch.device("cpu")),
                                                      SimpleNamespace(model=patcher, device=gpu)])
    monkeypatch.setattr(mm, "get_free_memory", lambda dev=None, torch_free_too=False: 2 * gib)
    monkeypatch.setattr(mm, "extra_reserved_memory", lambda: gib // 2)
    weights = patcher.model_size()
    assert clearable_memory(gpu, patcher) == 2 * gib + 6 * gib - weights - gib // 2
    assert flux_model.plan_budget() == budget_from_free(clearable_memory(gpu, patcher))
    monkeypatch.setattr(patcher, "load_device", torch.device("cpu"))
    assert flux_model.plan_budget() is None


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


# ------------------------------------------------------------------ ComfyUI-native behaviour
class _FakeModel:
    """What the LUA nodes read from a MODEL: ``.model.latent_format`` (ComfyUI's own classes)."""

    def __init__(self, fmt_name: str):
        import comfy.latent_formats

        self.model = type("BaseModelStub", (), {"latent_format": getattr(comfy.latent_formats, fmt_name)()})()


@pytest.mark.parametrize("fmt,family", [("SD15", "sd15"), ("SDXL", "sdxl"), ("SDXL_Playground_2_5", "sdxl"),
                                        ("SD3", "sd3"), ("Flux", "flux1"), ("Flux2", "flux2"), ("Wan21", None),
                                        ("Wan22", None), ("HunyuanVideo", None), ("LTXV", None)])
def test_family_is_read_from_the_models_latent_format(comfy, fmt, family):
    from comfyui_lua.nodes.model_family import family_of_model

    fam, name = family_of_model(_FakeModel(fmt))
    assert (fam.name if fam else None) == family and name == fmt  # Flux derives from SD3 in ComfyUI: MRO order


def test_choices_label_previews_from_the_manifest_status(comfy, monkeypatch):
    from comfyui_lua.nodes import paths

    manifest = Manifest.load()
    choices = paths.model_choices()
    assert choices[0] == "auto"
    for e in manifest.entries:
        assert (f"{e.name} (preview)" in choices) == (e.status == "preview")
        assert paths.strip_label(paths.label_for(e.name, e)) == e.name
    # the label follows the status field, not the file name
    data = json.loads((REPO / "weights_manifest.json").read_text())
    for m in data["models"]:
        if m.get("status") == "preview":
            m["status"] = "release"
    released = Manifest.from_dict(data)
    monkeypatch.setattr(paths, "load_manifest", lambda: released)
    assert not any(c.endswith("(preview)") for c in paths.model_choices())
    assert paths.strip_label("mine (preview).safetensors") == "mine (preview).safetensors"


def test_the_nodes_share_one_parse_of_the_manifest(comfy, monkeypatch):
    """The dropdown, validation and lookups do not re-read weights_manifest.json while it is unchanged."""
    from comfyui_lua.nodes import paths
    from comfyui_lua.nodes.loader_node import LUAModelLoader

    paths.load_manifest()
    parses = []
    real = paths.Manifest.from_dict
    monkeypatch.setattr(paths.Manifest, "from_dict",
                        staticmethod(lambda data, **kw: parses.append(kw.get("path")) or real(data, **kw)))
    paths.model_choices()
    assert LUAModelLoader.VALIDATE_INPUTS("lua_light_sdxl.safetensors (preview)") is True
    assert paths.manifest_entry("lua_flux.pth") is not None and paths.best_for_family("sdxl") is not None
    assert parses == []


def test_validate_inputs_accepts_names_with_or_without_the_label(comfy):
    from comfyui_lua.nodes.loader_node import LUAModelLoader

    assert LUAModelLoader.VALIDATE_INPUTS("auto") is True
    assert LUAModelLoader.VALIDATE_INPUTS("lua_light_sdxl.safetensors") is True
    assert LUAModelLoader.VALIDATE_INPUTS("lua_light_sdxl.safetensors (preview)") is True
    assert LUAModelLoader.VALIDATE_INPUTS("lua_flux.pth") is True  # downloadable
    assert "neither in models/lua" in LUAModelLoader.VALIDATE_INPUTS("nope.safetensors")


def test_auto_prefers_the_official_adapter_when_it_is_on_disk(comfy, monkeypatch):
    from comfyui_lua.nodes import paths

    real = paths.find_local
    assert paths.best_for_family("flux1").name == "lua_light_flux1.safetensors"  # lua_flux.pth not downloaded
    monkeypatch.setattr(paths, "find_local", lambda n: "/x/lua_flux.pth" if n == "lua_flux.pth" else real(n))
    assert paths.best_for_family("flux1").name == "lua_flux.pth"
    assert paths.best_for_family("sdxl").name == "lua_light_sdxl.safetensors"
    monkeypatch.setattr(paths, "find_local", lambda n: None)  # nothing on disk: what can be downloaded
    assert paths.best_for_family("flux1").name == "lua_flux.pth"
    assert paths.best_for_family("sdxl") is None


@pytest.mark.slow
def test_loader_auto_and_the_family_check(comfy, caplog):
    from comfyui_lua.nodes.loader_node import LUAModelLoader
    from comfyui_lua.nodes.upscale_node import LUALatentUpscale

    with caplog.at_level(logging.INFO):
        (managed,) = LUAModelLoader().load("auto", "fp32", model=_FakeModel("SDXL"))
    assert managed.model.family.name == "sdxl"
    assert "auto picked lua_light_sdxl.safetensors" in caplog.text
    status = {e.name: e.status for e in Manifest.load()}
    sdxl_log = caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO):
        LUAModelLoader().load("auto", "fp32", model=_FakeModel("SD15"))
    # the console note follows the manifest status (SDXL's adapter is released, SD1.5's a preview)
    for name, text in (("lua_light_sdxl.safetensors", sdxl_log), ("lua_light_sd15.safetensors", caplog.text)):
        assert (f"{name} is a PREVIEW adapter" in text) == (status[name] == "preview"), name
    with pytest.raises(ValueError, match="lua_light_sdxl.safetensors is an SDXL adapter but the connected model works "
                                         r"in SD1.5 latents \(latent format SD15\)"):
        LUALatentUpscale().upscale(managed, {"samples": torch.randn(1, 4, 8, 8)}, 2.0, 0, 8, model=_FakeModel("SD15"))
    (out,) = LUALatentUpscale().upscale(managed, {"samples": torch.randn(1, 4, 8, 8)}, 2.0, 0, 8,
                                        model=_FakeModel("SDXL"))
    assert out["samples"].shape == (1, 4, 16, 16)
    with pytest.raises(ValueError, match="an SD3 adapter but the connected model works in FLUX.1"):
        LUAModelLoader().load("lua_light_sd3.safetensors", "fp32", model=_FakeModel("Flux"))
    with pytest.raises(ValueError, match="'auto' needs the model input"):
        LUAModelLoader().load("auto", "fp32")
    with pytest.raises(ValueError, match="Wan21 latent space, for which there is no LUA adapter"):
        LUAModelLoader().load("auto", "fp32", model=_FakeModel("Wan21"))


def _manifest_with_status(status: str) -> Manifest:
    """The shipped manifest with every bundled adapter's status set to ``status``."""
    data = json.loads((REPO / "weights_manifest.json").read_text())
    for m in data["models"]:
        if m.get("status") in ("preview", "release"):
            m["status"] = status
    return Manifest.from_dict(data)


@pytest.mark.slow
@pytest.mark.parametrize("status", ["release", "preview"])
def test_the_preview_note_follows_the_status(comfy, monkeypatch, caplog, status):
    from comfyui_lua.nodes import loader_node, paths

    manifest = _manifest_with_status(status)
    monkeypatch.setattr(paths, "load_manifest", lambda: manifest)
    with caplog.at_level(logging.INFO):
        loader_node.LUAModelLoader().load("lua_light_sd15.safetensors", "fp32")
    assert ("lua_light_sd15.safetensors is a PREVIEW adapter" in caplog.text) == (status == "preview")


def test_video_latents_are_refused(comfy, flux_model):
    from comfyui_lua.nodes.upscale_node import LUALatentUpscale, LUALatentUpscaleToSize

    with pytest.raises(ValueError, match=r"video latent \(5-D.*no LUA adapter supports video latents"):
        LUALatentUpscale().upscale(flux_model, {"samples": torch.randn(1, 16, 3, 8, 8)}, 2.0, 0, 8)
    with pytest.raises(ValueError, match=r"video latent \(5-D"):
        LUALatentUpscaleToSize().upscale(flux_model, {"samples": torch.randn(1, 16, 3, 8, 8)}, 128, 0, 0, 8)


@pytest.mark.parametrize("case,expected", [
    ({}, "bf16"),                                              # a GPU where ComfyUI would use bf16
    ({"bf16": False}, "fp16"),                                 # only fp16 (e.g. Turing, or emulated bf16)
    ({"bf16": False, "fp16": False}, "fp32"),                  # what --force-fp32 makes both say
    ({"force_fp16": True}, "fp16"),                            # --force-fp16 puts fp16 first
    ({"fp32_vae": True}, "fp32"), ({"bf16_vae": True, "bf16": False}, "bf16"), ({"fp16_vae": True}, "fp16"),
])
def test_auto_dtype_follows_comfyuis_rules(comfy, monkeypatch, case, expected):
    mm = comfy["mm"]
    from comfy.cli_args import args
    from comfyui_lua.nodes.loader_node import auto_dtype

    seen = []
    monkeypatch.setattr(mm, "should_use_bf16", lambda device=None, **k: seen.append(device) or case.get("bf16", True))
    monkeypatch.setattr(mm, "should_use_fp16", lambda device=None, **k: seen.append(device) or case.get("fp16", True))
    for flag in ("force_fp16", "fp32_vae", "bf16_vae", "fp16_vae"):
        monkeypatch.setattr(args, flag, bool(case.get(flag, False)))
    cuda = torch.device("cuda", 0)
    assert auto_dtype(cuda) == expected
    assert all(d == cuda for d in seen)  # asked about the load device
    assert auto_dtype(torch.device("cpu")) == "fp32"


def test_force_fp32_flag_reaches_auto(comfy, monkeypatch):
    """The real model_management functions, with --force-fp32 set: fp32 even where the GPU could do better."""
    mm = comfy["mm"]
    from comfyui_lua.nodes.loader_node import auto_dtype

    monkeypatch.setattr(mm, "FORCE_FP32", True)
    monkeypatch.setattr(mm, "is_device_cpu", lambda d: False)
    assert auto_dtype(torch.device("cuda", 0)) == "fp32"


def test_entry_without_sha256_must_have_its_presets_layout(comfy, tmp_path, monkeypatch):
    """lua_flux.pth has no sha256 in the manifest: the file must be the paper config's exact layout."""
    from comfyui_lua.nodes import loader_node, paths

    torch.manual_seed(0)
    fake = tmp_path / "lua_flux.pth"  # the official file's format (params_ema .pth), another architecture
    torch.save({"params_ema": lua_core.LUANet(tiny_config(16)).state_dict()}, fake)
    monkeypatch.setattr(paths, "find_local", lambda n: str(fake) if n == "lua_flux.pth" else None)
    with pytest.raises(ValueError, match="is not the published paper-config checkpoint: embed_dim 24 "
                                         r"\(expected 360\)"):
        loader_node.LUAModelLoader().load("lua_flux.pth", "fp32")
    # a light-config entry without a sha256 accepts a light-config file (the check compares with the preset)
    light = save_checkpoint(lua_core.LUANet(lua_core.LIGHT_CONFIG.replace(in_chans=16)), tmp_path / "l.safetensors",
                            "flux1")
    entry = {"name": "l.safetensors", "filename": "l.safetensors", "family": "flux1", "scales": [2, 4],
             "config": "light", "size": None, "sha256": None, "url": None, "bundled": None,
             "license": "Apache-2.0", "source": "test", "description": ""}
    monkeypatch.setattr(paths, "load_manifest", lambda: Manifest.from_dict({"format_version": 1, "models": [entry]}))
    monkeypatch.setattr(paths, "find_local", lambda n: str(light))
    (managed,) = loader_node.LUAModelLoader().load("l.safetensors", "fp32")
    assert managed.model.config.embed_dim == lua_core.LIGHT_CONFIG.embed_dim


def test_loader_downloads_from_the_hub_with_progress_and_cancel(comfy, tmp_path, monkeypatch):
    """A manifest entry on the Hub (HF_ENDPOINT pointing at a local server that answers like it): ComfyUI's cancel
    stops the transfer with its own exception, nothing is left in models/lua; the next queue downloads and loads."""
    pytest.importorskip("huggingface_hub")
    from comfyui_lua.nodes import loader_node, paths
    from huggingface_hub import constants

    from tests.unit import test_hub_download as hubtest

    mm, utils = comfy["mm"], comfy["utils"]
    torch.manual_seed(2)
    src = save_checkpoint(lua_core.LUANet(tiny_config(16)), tmp_path / "hub_flux1.safetensors", "flux1")
    data = src.read_bytes()
    state = {"files": {"hub_flux1.safetensors": data}, "log": [], "lock": threading.Lock(), "cut_first": False,
             "cut_done": False, "pause": threading.Event()}
    servers = [hubtest._Server("hub", state), hubtest._Server("storage", state)]
    state["storage_url"] = servers[1].url
    for s in servers:
        threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        monkeypatch.setenv("HF_ENDPOINT", servers[0].url)
        monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf_cache"))
        monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf_cache"))
        monkeypatch.setattr(constants, "DOWNLOAD_CHUNK_SIZE", 16 * 1024)
        entry = {"name": "hub_flux1.safetensors", "filename": "hub_flux1.safetensors", "family": "flux1",
                 "scales": [2, 4], "config": "light", "size": len(data), "sha256": file_sha256(src),
                 "url": f"https://huggingface.co/{hubtest.REPO_ID}/resolve/main/hub_flux1.safetensors",
                 "bundled": None, "license": "Apache-2.0", "source": "test", "description": ""}
        manifest = Manifest.from_dict({"format_version": 1, "models": [entry]})
        dest = tmp_path / "models_lua"
        monkeypatch.setattr(paths, "load_manifest", lambda: manifest)
        monkeypatch.setattr(paths, "download_folder", lambda: str(dest))
        monkeypatch.setattr(paths, "find_local",
                            lambda n: str(dest / n) if (dest / n).is_file() else None)
        seen = []
        utils.set_progress_bar_global_hook(lambda value, total, preview, node_id=None: seen.append(value))

        def press_cancel_soon():
            while not seen or max(seen) < 5:
                time.sleep(0.01)
            mm.interrupt_current_processing(True)

        threading.Thread(target=press_cancel_soon, daemon=True).start()
        try:
            with pytest.raises(mm.InterruptProcessingException):
                loader_node.LUAModelLoader().load("hub_flux1.safetensors", "fp32")
        finally:
            mm.interrupt_current_processing(False)
        assert not dest.exists() or [p.name for p in dest.iterdir()] == []
        state["pause"] = None
        seen.clear()
        (managed,) = loader_node.LUAModelLoader().load("hub_flux1.safetensors", "fp32")
        utils.set_progress_bar_global_hook(None)
        assert managed.model.family.name == "flux1" and (dest / "hub_flux1.safetensors").read_bytes() == data
        assert seen and max(seen) == 100
    finally:
        utils.set_progress_bar_global_hook(None)
        for s in servers:
            s.shutdown()
            s.server_close()


def test_the_vae_input_makes_the_teacher_with_comfyuis_own_vae(comfy, caplog):
    """LUA Latent Upscale with ComfyUI's VAE (taef1 loaded by comfy.sd.VAE, as VAELoader builds it) gives what
    lua_core gives with the same autoencoder as the VAE; a VAE of another family is refused by name."""
    import comfy.sd
    from comfyui_lua.nodes.model_wrapper import ManagedLUAModel
    from comfyui_lua.nodes.upscale_node import LUALatentUpscale, LUALatentUpscaleToSize

    from lua_core.tae import TinyVAE, load_tae
    from tests.integration.test_vae_backends_comfyui import TAEF1_SCALE, TAEF1_SHIFT, taesd_state

    tae = load_tae("flux1")
    model = lua_core.load_model(REPO / "weights" / "lua_light_flux1.safetensors")
    managed = ManagedLUAModel.wrap(model)
    vae = comfy.sd.VAE(sd=taesd_state("taef1", TAEF1_SCALE, TAEF1_SHIFT))
    from tests.helpers import images

    z = tae.encode_comfy(images(1, 64, seed=4))
    with torch.inference_mode():
        want = lua_core.upscale(model, z, 2, vae=TinyVAE(tae))
    caplog.set_level(logging.WARNING)
    (got,) = LUALatentUpscale().upscale(managed, {"samples": z}, 2.0, vae=vae)
    assert got["samples"].shape == want.shape
    assert (got["samples"] - want).abs().max() < 0.02 * want.abs().max()
    assert "connect the vae input" not in caplog.text
    (sized,) = LUALatentUpscaleToSize().upscale(managed, {"samples": z}, 128, 128, vae=vae)
    assert (sized["samples"] - got["samples"]).abs().max() < 1e-4
    LUALatentUpscale().upscale(managed, {"samples": z}, 2.0)
    assert "connect the vae input" in caplog.text  # the bundled adapter was trained on the VAE teacher

    sdxl_vae = comfy.sd.VAE(sd=taesd_state("taesdxl", 0.13025, 0.0))
    with pytest.raises(ValueError, match="4-channel latents, but this FLUX.1 adapter works on 16-channel"):
        LUALatentUpscale().upscale(managed, {"samples": z}, 2.0, vae=sdxl_vae)


def test_an_adapter_without_a_teacher_leaves_a_connected_vae_unused(comfy, flux_model):
    """A workflow wired for the bundled adapters keeps working when `auto` picks an adapter without a teacher."""
    import comfy.sd
    from comfyui_lua.nodes.upscale_node import LUALatentUpscale

    from tests.integration.test_vae_backends_comfyui import TAEF1_SCALE, TAEF1_SHIFT, taesd_state

    vae = comfy.sd.VAE(sd=taesd_state("taef1", TAEF1_SCALE, TAEF1_SHIFT))
    z = torch.randn(1, 16, 8, 8)
    assert flux_model.model.net.skip is None
    (with_vae,) = LUALatentUpscale().upscale(flux_model, {"samples": z}, 2.0, vae=vae)
    (without,) = LUALatentUpscale().upscale(flux_model, {"samples": z}, 2.0)
    assert torch.equal(with_vae["samples"], without["samples"])
