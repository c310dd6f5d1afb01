"""Smoke tests against a real ComfyUI 0.3.75 (started once per session, CPU)."""

from __future__ import annotations

import pytest
from PIL import Image

from tests.support.comfy_server import PACK_DIR_NAME, ComfyServer, PromptValidationError

pytestmark = [pytest.mark.comfy, pytest.mark.timeout(600)]

TAE_NAMES = ["taesd", "taesdxl", "taesd3", "taef1"]


def decode_prompt(empty_node: str, vae_name: str, size: int = 64, prefix: str = "smoke") -> dict:
    """<empty latent> -> VAEDecode(VAELoader(vae_name)) -> SaveImage."""
    return {
        "1": {"class_type": empty_node, "inputs": {"width": size, "height": size, "batch_size": 1}},
        "2": {"class_type": "VAELoader", "inputs": {"vae_name": vae_name}},
        "3": {"class_type": "VAEDecode", "inputs": {"samples": ["1", 0], "vae": ["2", 0]}},
        "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": prefix}},
    }


def test_server_started(comfy_server: ComfyServer):
    assert comfy_server.is_running()
    stats = comfy_server.system_stats()
    assert stats["system"]["comfyui_version"] == "0.3.75"
    assert [d["type"] for d in stats["devices"]] == ["cpu"]
    assert comfy_server.startup_seconds is not None and comfy_server.startup_seconds < 120


def test_startup_made_no_network_calls(comfy_server: ComfyServer):
    # the audit hook only records; any entry means start-up tried to reach the internet
    assert comfy_server.network_attempts() == []


def test_object_info_lists_core_nodes(comfy_server: ComfyServer):
    info = comfy_server.object_info()
    for node in ("EmptyLatentImage", "EmptySD3LatentImage", "VAELoader", "VAEDecode",
                 "VAEEncode", "LoadImage", "SaveImage", "LatentUpscale", "LatentUpscaleBy"):
        assert node in info, node
    vaes = comfy_server.combo_options("VAELoader", "vae_name")
    for name in TAE_NAMES:
        assert name in vaes, (name, vaes)


@pytest.mark.parametrize(
    "empty_node,vae_name",
    [("EmptySD3LatentImage", "taef1"),  # 16-channel latent, as FLUX.1 uses
     ("EmptyLatentImage", "taesd")],    # 4-channel latent (SD1.x)
)
def test_core_prompt_writes_png(comfy_server: ComfyServer, empty_node: str, vae_name: str):
    prompt = decode_prompt(empty_node, vae_name, 64, prefix=f"smoke_{vae_name}")
    res = comfy_server.wait_for(comfy_server.queue_prompt(prompt), timeout=120)
    assert res.ok, res.error
    paths = comfy_server.image_paths(res, "4")
    assert len(paths) == 1
    assert paths[0].is_file() and paths[0].suffix == ".png"
    with Image.open(paths[0]) as im:
        assert im.size == (64, 64)


def test_execution_error_is_reported(comfy_server: ComfyServer):
    # EmptyLatentImage makes 4 channels; taef1 wants 16: passes validation, fails in VAEDecode
    res = comfy_server.run_prompt(decode_prompt("EmptyLatentImage", "taef1", prefix="smoke_err"), timeout=120)
    assert not res.ok and res.status == "error"
    assert res.node_type == "VAEDecode"
    assert "channels" in res.error
    # the server survives an execution error
    assert comfy_server.run_prompt(decode_prompt("EmptyLatentImage", "taesd", prefix="smoke_after"),
                                   timeout=120).ok


def test_validation_error_raises(comfy_server: ComfyServer):
    with pytest.raises(PromptValidationError) as ei:
        comfy_server.queue_prompt(decode_prompt("EmptyLatentImage", "no_such_vae.safetensors"))
    assert "2" in ei.value.node_errors


def test_upload_image_roundtrip(comfy_server: ComfyServer, tmp_path):
    src = tmp_path / "upload_src.png"
    Image.new("RGB", (48, 32), (200, 30, 30)).save(src)
    name = comfy_server.upload_image(src, subfolder="smoke")
    assert name == "smoke/upload_src.png"
    assert (comfy_server.input_dir / "smoke" / "upload_src.png").is_file()
    prompt = {
        "1": {"class_type": "LoadImage", "inputs": {"image": name}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "smoke_upload"}},
    }
    res = comfy_server.run_prompt(prompt, timeout=60)
    assert res.ok, res.error
    with Image.open(comfy_server.image_paths(res)[0]) as im:
        assert im.size == (48, 32)


def test_interrupt_and_free_when_idle(comfy_server: ComfyServer):
    comfy_server.interrupt()
    comfy_server.free(unload_models=True, free_memory=True)
    assert comfy_server.run_prompt(decode_prompt("EmptyLatentImage", "taesd", prefix="smoke_free"),
                                   timeout=120).ok


def test_lua_models_dir_is_registered(comfy_server: ComfyServer):
    text = comfy_server.log_text()
    assert f"Adding extra search path lua {comfy_server.lua_models_dir}" in text


def test_node_pack_imported(comfy_server: ComfyServer):
    """The ComfyUI-LUA pack (custom_nodes/ComfyUI-LUA -> repo root) imports cleanly."""
    failures = [ln for ln in comfy_server.import_failures() if PACK_DIR_NAME in ln]
    assert not failures, "ComfyUI-LUA failed to import:\n" + "\n".join(failures)
    info = comfy_server.object_info()
    for node in ("LUAModelLoader", "LUALatentUpscale"):
        assert node in info, f"{node} missing from /object_info"
        assert info[node]["python_module"] == f"custom_nodes.{PACK_DIR_NAME}"


def test_lua_models_dir_listed_by_loader(comfy_server: ComfyServer, lua_models_dir):
    """A file dropped into the test's lua folder shows up in LUAModelLoader's combo."""
    dummy = lua_models_dir / "zz_smoke_dummy.safetensors"
    dummy.write_bytes(b"")
    try:
        assert dummy.name in comfy_server.combo_options("LUAModelLoader", "model_name")
    finally:
        dummy.unlink()
