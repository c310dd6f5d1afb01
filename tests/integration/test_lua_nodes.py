"""The LUA nodes inside a real ComfyUI: end to end, official checkpoint, bad inputs, cancel."""
from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

import lua_core
from lua_core.checkpoints.export import save_checkpoint
from tests.helpers import tiny_config

FLUX_MODEL = "itest_flux1.safetensors"
SD15_MODEL = "itest_sd15.safetensors"
SLOW_MODEL = "itest_flux1_light.safetensors"


@pytest.fixture(scope="module")
def models(comfy_server) -> Path:
    folder = Path(comfy_server.lua_models_dir)
    for name, family, cfg in [(FLUX_MODEL, "flux1", None), (SD15_MODEL, "sd15", None),
                              (SLOW_MODEL, "flux1", lua_core.LIGHT_CONFIG)]:
        fam = lua_core.get_family(family)
        torch.manual_seed(0)
        cfg = (cfg or tiny_config(fam.model_channels)).replace(
            in_chans=fam.model_channels, in_scale=fam.scale_factor, in_shift=fam.shift_factor)
        save_checkpoint(lua_core.LUANet(cfg), folder / name, family)
    return folder


@pytest.fixture(scope="module")
def photo(comfy_server, shared_dir) -> str:
    src = sorted((shared_dir / "data" / "val" / "bsds500").glob("*"))[0]
    with Image.open(src) as im:
        im.convert("RGB").resize((96, 64), Image.LANCZOS).save(comfy_server.input_dir / "itest_photo.png")
    return "itest_photo.png"


def write_latent(server, name: str, tensor: torch.Tensor) -> str:
    save_file({"latent_tensor": tensor.contiguous(), "latent_format_version_0": torch.tensor([])},
              str(server.input_dir / name))
    return name


def image_graph(photo: str, model: str, scale: float, tile: int = 0, vae: str = "taef1") -> dict:
    return {
        "1": {"class_type": "LoadImage", "inputs": {"image": photo}},
        "2": {"class_type": "VAELoader", "inputs": {"vae_name": vae}},
        "3": {"class_type": "VAEEncode", "inputs": {"pixels": ["1", 0], "vae": ["2", 0]}},
        "4": {"class_type": "LUAModelLoader", "inputs": {"model_name": model, "dtype": "auto"}},
        "5": {"class_type": "LUALatentUpscale", "inputs": {"lua_model": ["4", 0], "samples": ["3", 0],
                                                           "scale_by": scale, "tile_size": tile, "tile_overlap": 8}},
        "6": {"class_type": "VAEDecode", "inputs": {"samples": ["5", 0], "vae": ["2", 0]}},
        "7": {"class_type": "SaveImage", "inputs": {"images": ["6", 0], "filename_prefix": f"itest_x{scale}"}},
    }


def latent_graph(latent_file: str, model: str, scale: float = 2.0, tile: int = 0, overlap: int = 8) -> dict:
    return {
        "1": {"class_type": "LoadLatent", "inputs": {"latent": latent_file}},
        "2": {"class_type": "LUAModelLoader", "inputs": {"model_name": model, "dtype": "fp32"}},
        "3": {"class_type": "LUALatentUpscale", "inputs": {"lua_model": ["2", 0], "samples": ["1", 0],
                                                           "scale_by": scale, "tile_size": tile,
                                                           "tile_overlap": overlap}},
        "4": {"class_type": "SaveLatent", "inputs": {"samples": ["3", 0], "filename_prefix": "itest_latent"}},
    }


def test_nodes_are_registered_with_tooltips(comfy_server, models):
    info = comfy_server.object_info(refresh=True)
    for node in ("LUAModelLoader", "LUALatentUpscale", "LUALatentUpscaleToSize"):
        assert node in info, f"{node} missing; import failures: {comfy_server.import_failures()}"
        assert info[node]["description"]
        for name, spec in info[node]["input"]["required"].items():
            assert spec[1].get("tooltip"), f"{node}.{name} has no tooltip"
    assert info["LUAModelLoader"]["display_name"] == "Load LUA Model"
    assert info["LUAModelLoader"]["output"] == ["LUA_MODEL"]
    choices = comfy_server.combo_options("LUAModelLoader", "model_name")
    assert FLUX_MODEL in choices and SD15_MODEL in choices
    assert "lua_flux.pth" in choices  # manifest entry offered before it is downloaded


@pytest.mark.parametrize("scale", [2, 4])
def test_image_in_workflow_gives_exact_size(comfy_server, models, photo, scale):
    result = comfy_server.run_prompt(image_graph(photo, FLUX_MODEL, float(scale)), timeout=300)
    assert result.ok, result.error
    paths = comfy_server.image_paths(result)
    assert len(paths) == 1
    with Image.open(paths[0]) as im:
        assert im.size == (96 * scale, 64 * scale)


def test_fractional_scale_and_to_size(comfy_server, models, photo):
    result = comfy_server.run_prompt(image_graph(photo, FLUX_MODEL, 1.5), timeout=300)
    assert result.ok, result.error
    with Image.open(comfy_server.image_paths(result)[0]) as im:
        assert im.size == (144, 96)
    graph = image_graph(photo, FLUX_MODEL, 2.0)
    graph["5"] = {"class_type": "LUALatentUpscaleToSize",
                  "inputs": {"lua_model": ["4", 0], "samples": ["3", 0], "width": 200, "height": 0,
                             "tile_size": 0, "tile_overlap": 8}}
    result = comfy_server.run_prompt(graph, timeout=300)
    assert result.ok, result.error
    with Image.open(comfy_server.image_paths(result)[0]) as im:
        assert im.size == (200, 136)  # 25 latent px wide, 17 high keeps 96:64 as closely as latents allow


def test_official_layout_checkpoint_runs_in_comfyui(comfy_server, models, official_spec, tmp_path_factory):
    gen = torch.Generator().manual_seed(0)
    state = {k: (torch.randn(v, generator=gen) * 0.02 if not k.endswith("relative_position_index")
                 else torch.zeros(v, dtype=torch.int64)) for k, v in official_spec["tensors"].items()}
    torch.save({"params_ema": state}, models / "lua_flux.pth")
    latent = write_latent(comfy_server, "itest_flux.latent", torch.randn(1, 16, 6, 10))
    result = comfy_server.run_prompt(latent_graph(latent, "lua_flux.pth"), timeout=300)
    assert result.ok, result.error


@pytest.mark.parametrize("name,tensor,message", [
    ("nan", torch.full((1, 16, 8, 8), float("nan")), "NaN or Inf"),
    ("wrong_width", torch.randn(1, 4, 8, 8), "4 channels but this FLUX.1 adapter expects 16"),
    ("empty_batch", torch.zeros(0, 16, 8, 8), "batch is empty"),
    ("too_small", torch.zeros(1, 16, 0, 8), "too small"),
])
def test_bad_latents_fail_clearly_and_server_keeps_serving(comfy_server, models, photo, name, tensor, message):
    latent = write_latent(comfy_server, f"itest_{name}.latent", tensor)
    result = comfy_server.run_prompt(latent_graph(latent, FLUX_MODEL), timeout=120)
    assert not result.ok
    assert result.node_type == "LUALatentUpscale" and message in result.error
    follow_up = comfy_server.run_prompt(image_graph(photo, FLUX_MODEL, 2.0), timeout=300)
    assert follow_up.ok, follow_up.error


def test_latent_of_another_family_is_refused(comfy_server, models, photo):
    """An SD1.5 adapter fed a FLUX.1 latent (16 channels) names both widths."""
    result = comfy_server.run_prompt(image_graph(photo, SD15_MODEL, 2.0), timeout=300)
    assert not result.ok
    assert "16 channels but this SD1.5 adapter expects 4" in result.error


def test_video_latent_is_refused(comfy_server, models):
    """A 5-D latent comes from a video VAE (Wan, HunyuanVideo, LTXV); no adapter was trained on one."""
    latent = write_latent(comfy_server, "itest_video.latent", torch.randn(2, 16, 3, 6, 8))
    result = comfy_server.run_prompt(latent_graph(latent, FLUX_MODEL, scale=2.0), timeout=300)
    assert not result.ok and result.node_type == "LUALatentUpscale"
    assert "video latent (5-D, shape (2, 16, 3, 6, 8))" in result.error and "FLUX.1 adapter" in result.error


# ---------------------------------------------------------------- the MODEL input and auto
def model_graph(fmt: str, model_name: str, channels: int, size: int = 64, model_on_upscale: bool = True,
                loader_gets_model: bool = True) -> dict:
    """Stub MODEL of a latent format (tests/integration/comfy_stub_nodes) -> Load LUA Model -> LUA x2 -> SaveLatent."""
    empty = ({"class_type": "EmptySD3LatentImage", "inputs": {"width": size, "height": size, "batch_size": 1}}
             if channels == 16 else
             {"class_type": "EmptyLatentImage", "inputs": {"width": size, "height": size, "batch_size": 1}})
    graph = {
        "1": {"class_type": "LUATestStubModel", "inputs": {"latent_format": fmt}},
        "2": {"class_type": "LUAModelLoader", "inputs": {"model_name": model_name, "dtype": "auto"}},
        "3": empty,
        "4": {"class_type": "LUALatentUpscale", "inputs": {"lua_model": ["2", 0], "samples": ["3", 0],
                                                           "scale_by": 2.0, "tile_size": 0, "tile_overlap": 8}},
        "5": {"class_type": "SaveLatent", "inputs": {"samples": ["4", 0], "filename_prefix": "itest_model"}},
    }
    if loader_gets_model:
        graph["2"]["inputs"]["model"] = ["1", 0]
    if model_on_upscale:
        graph["4"]["inputs"]["model"] = ["1", 0]
    return graph


def _choice(comfy_server, name: str) -> str:
    return next(c for c in comfy_server.combo_options("LUAModelLoader", "model_name") if c.split(" (")[0] == name)


def test_loader_lists_auto_and_marks_previews_from_the_manifest(comfy_server, models):
    from lua_core.checkpoints.manifest import Manifest

    choices = comfy_server.combo_options("LUAModelLoader", "model_name")
    assert choices[0] == "auto"
    info = comfy_server.object_info()["LUAModelLoader"]
    assert info["input"]["optional"]["model"][0] == "MODEL"
    for entry in Manifest.load().entries:
        label = f"{entry.name} (preview)"
        if entry.status == "preview":
            assert label in choices and entry.name not in choices
        else:
            assert entry.name in choices and label not in choices


@pytest.mark.parametrize("fmt,family,channels", [("Flux", "flux1", 16), ("SD3", "sd3", 16), ("SDXL", "sdxl", 4),
                                                 ("SD15", "sd15", 4)])
def test_auto_picks_the_adapter_of_the_models_family(comfy_server, models, fmt, family, channels):
    official_present = (models / "lua_flux.pth").is_file()  # written by the official-layout test above
    expected = "lua_flux.pth" if family == "flux1" and official_present else f"lua_light_{family}.safetensors"
    result = comfy_server.run_prompt(model_graph(fmt, "auto", channels), timeout=300)
    assert result.ok, result.error
    assert f"LUA: auto picked {expected} for the" in comfy_server.log_text()
    saved = max(comfy_server.output_dir.glob("itest_model*.latent"), key=lambda p: p.stat().st_mtime)
    from safetensors.torch import load_file

    assert load_file(str(saved))["latent_tensor"].shape == (1, channels, 16, 16)


def test_the_console_notes_a_preview_adapter_only(comfy_server, models):
    """The server's console says PREVIEW for an adapter whose manifest status is ``preview``, and only then."""
    from lua_core.checkpoints.manifest import Manifest

    status = {e.name: e.status for e in Manifest.load()}
    for name, fmt in (("lua_light_sd15.safetensors", "SD15"), ("lua_light_sdxl.safetensors", "SDXL")):
        result = comfy_server.run_prompt(model_graph(fmt, _choice(comfy_server, name), 4), timeout=300)
        assert result.ok, result.error
        assert (f"LUA: {name} is a PREVIEW adapter" in comfy_server.log_text()) == (status[name] == "preview"), name


@pytest.mark.parametrize("fmt,adapter,channels,node,want", [
    # same channel count, so only the MODEL can tell
    ("Flux", "lua_light_sd3.safetensors", 16, "LUAModelLoader", "is an SD3 adapter but the connected model works in "
                                                                  "FLUX.1 latents (latent format Flux)"),
    ("SDXL", "lua_light_sd15.safetensors", 4, "LUAModelLoader", "is an SD1.5 adapter but the connected model works in "
                                                                  "SDXL latents (latent format SDXL)"),
    ("SD3", "lua_light_flux1.safetensors", 16, "LUALatentUpscale", "is a FLUX.1 adapter but the connected model "
                                                                     "works in SD3 latents (latent format SD3)"),
])
def test_an_adapter_of_another_family_is_refused(comfy_server, models, fmt, adapter, channels, node, want):
    graph = model_graph(fmt, _choice(comfy_server, adapter), channels, loader_gets_model=node == "LUAModelLoader")
    result = comfy_server.run_prompt(graph, timeout=300)
    assert not result.ok and result.node_type == node, result.error
    assert want in result.error and adapter in result.error


def test_video_model_is_refused_by_auto(comfy_server, models):
    result = comfy_server.run_prompt(model_graph("Wan21", "auto", 16), timeout=300)
    assert not result.ok and result.node_type == "LUAModelLoader"
    assert "Wan21 latent space, for which there is no LUA adapter" in result.error


def test_auto_without_a_model_says_what_to_connect(comfy_server, models):
    result = comfy_server.run_prompt(model_graph("Flux", "auto", 16, model_on_upscale=False,
                                                 loader_gets_model=False), timeout=300)
    assert not result.ok and "'auto' needs the model input" in result.error


def test_saved_workflows_survive_a_status_change(comfy_server, models):
    """A workflow saved with the bare name (or with a label the entry no longer has) still validates and runs."""
    for value in ("lua_light_flux1.safetensors", "lua_light_flux1.safetensors (preview)"):
        result = comfy_server.run_prompt(model_graph("Flux", value, 16), timeout=300)
        assert result.ok, result.error
    from tests.support.comfy_server import PromptValidationError

    with pytest.raises(PromptValidationError) as info:
        comfy_server.queue_prompt(model_graph("Flux", "no_such_adapter.safetensors", 16))
    assert "neither in models/lua nor in the weights manifest" in str(info.value.response)


def test_cancel_stops_a_long_tiled_run(comfy_server, models):
    latent = write_latent(comfy_server, "itest_big.latent", torch.randn(1, 16, 192, 192))
    prompt_id = comfy_server.queue_prompt(latent_graph(latent, SLOW_MODEL, scale=4.0, tile=16, overlap=4))
    # wait until the upscale node is running, then press cancel
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not comfy_server.queue()["queue_running"]:
        time.sleep(0.1)
    time.sleep(3.0)
    t0 = time.monotonic()
    comfy_server.interrupt()
    result = comfy_server.wait_for(prompt_id, timeout=120)
    stopped_after = time.monotonic() - t0
    assert result.status == "interrupted", result.error
    assert stopped_after < 10, f"took {stopped_after:.1f}s to stop"
    latent = write_latent(comfy_server, "itest_after_cancel.latent", torch.randn(1, 16, 8, 8))
    assert comfy_server.run_prompt(latent_graph(latent, FLUX_MODEL), timeout=120).ok
