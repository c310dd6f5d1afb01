"""Helpers shared by the workflow tests (tests/integration/test_workflows.py) and the browser test.

They read the shipped workflows, prepare a test server so the runnable ones can run
(the LUA adapters they name and the example photo), and work out which model files
ComfyUI's front end should report missing.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional

import torch

import lua_core
from lua_core.checkpoints.export import save_checkpoint
from tests.helpers import tiny_config
from tests.support.workflow_api import FRONTEND_ONLY_TYPES

REPO = Path(__file__).resolve().parents[2]
WORKFLOW_DIR = REPO / "workflows"
BUNDLED_WEIGHTS = REPO / "weights"
ARTIFACTS = REPO / "artifacts"
PACK_NAME = "ComfyUI-LUA"
# ComfyUI ships input/example.png; the image-in workflows load it so a first queue works everywhere
INPUT_IMAGE = "example.png"
LUA_LIGHT_RE = re.compile(r"^lua_light_(sd15|sdxl|sd3|flux1|flux2)\.safetensors$")
# the (status) label Load LUA Model shows after a manifest entry's name, e.g. " (preview)"
LABEL_RE = re.compile(r" \((preview)\)$")

# Workflows that run with the tiny autoencoders (no diffusion model): file stem -> {SaveImage title or
# filename_prefix: expected (width, height)} for the 512 px working size they ship with.
RUNNABLE: dict[str, dict[str, tuple[int, int]]] = {
    "lua_image_upscale_x2_x4": {"LUA/x2": (1024, 1024), "LUA/x4": (2048, 2048)},
    "lua_compare_upscalers": {"LUA/compare_1_lua_x2": (1024, 1024), "LUA/compare_2_bislerp_x2": (1024, 1024),
                              "LUA/compare_3_pixel_lanczos_x2": (1024, 1024)},
}
# Latent family each workflow works in (its LUA adapter must be of this family).
FAMILY: dict[str, str] = {
    "lua_flux1_t2i_x2_x4": "flux1",
    "lua_sd35_t2i_x2_x4": "sd3",
    "lua_sdxl_t2i_x2_x4": "sdxl",
    "lua_sd15_hires_fix": "sd15",
    "lua_flux2_t2i_x2_x4": "flux2",
    "lua_image_upscale_x2_x4": "flux1",
    "lua_compare_upscalers": "flux1",
}
IMAGE_IN = "lua_image_upscale_x2_x4"


def workflow_paths() -> list[Path]:
    return sorted(WORKFLOW_DIR.glob("*.json"))


def load_workflow(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def lua_file_name(choice: str) -> str:
    """The file behind a Load LUA Model value (its status label removed)."""
    return LABEL_RE.sub("", choice)


def lua_model_names(workflows: Iterable[Mapping[str, Any]]) -> set[str]:
    """Every file a Load LUA Model node of these workflows selects by name (``auto`` left out)."""
    names = set()
    for wf in workflows:
        for node in wf["nodes"]:
            if node["type"] == "LUAModelLoader" and node["widgets_values"][0] != "auto":
                names.add(lua_file_name(node["widgets_values"][0]))
    return names


def ensure_lua_weights(names: Iterable[str], models_dir: Path) -> dict[str, str]:
    """Make every named adapter loadable: the bundled file in ``weights/`` when the pack ships it, otherwise
    a small random adapter of the right family written under that exact name to ``models_dir``.

    Returns ``{name: "bundled" | "random stand-in"}``.
    """
    used = {}
    for name in sorted(names):
        if (BUNDLED_WEIGHTS / name).is_file():
            used[name] = "bundled"
            continue
        if LUA_LIGHT_RE.match(name) is None and name in downloadable_entries():
            used[name] = "downloaded on first use (not run here)"
            continue
        target = models_dir / name
        if not target.is_file():
            match = LUA_LIGHT_RE.match(name)
            if match is None:
                raise ValueError(f"no bundled file and no known family for LUA weights {name!r}")
            fam = lua_core.get_family(match.group(1))
            torch.manual_seed(0)
            cfg = tiny_config(fam.model_channels, in_scale=fam.scale_factor, in_shift=fam.shift_factor)
            save_checkpoint(lua_core.LUANet(cfg), target, fam.name)
        used[name] = "random stand-in"
    return used


def downloadable_entries() -> set[str]:
    """Weights-manifest entries with a download URL (the loader fetches them itself)."""
    from lua_core.checkpoints.manifest import Manifest

    return {e.name for e in Manifest.load().entries if e.url}


def prepare_input_image(input_dir: Path, comfy_dir: Path) -> str:
    """Give the test server's (separate) input folder what every ComfyUI's input/ has: ComfyUI's own example.png."""
    target = input_dir / INPUT_IMAGE
    if not target.is_file():
        shutil.copyfile(Path(comfy_dir) / "input" / INPUT_IMAGE, target)
    return INPUT_IMAGE


def selected_models(node: Mapping[str, Any]) -> list[dict[str, str]]:
    """``properties.models`` entries the node's widgets select (what the front end checks on load)."""
    values = {v for v in node.get("widgets_values") or [] if isinstance(v, str) and v.strip()}
    return [m for m in (node.get("properties") or {}).get("models", []) if m.get("name") in values]


def expected_missing_models(workflow: Mapping[str, Any], server: Any) -> set[str]:
    """``"directory / name"`` of each selected model entry whose file the server does not list."""
    listing: dict[str, set[str]] = {}
    missing = set()
    for node in workflow["nodes"]:
        for m in selected_models(node):
            d = m["directory"]
            if d not in listing:
                listing[d] = set(server.get_json(f"/models/{d}"))
            if m["name"] not in listing[d]:
                missing.add(f"{d} / {m['name']}")
    return missing


def record_timing(key: str, seconds: float, note: str = "") -> None:
    """Add one measured run time to artifacts/workflow_timings.json (read by the report)."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / "workflow_timings.json"
    try:
        data = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        data = {}
    data[key] = {"seconds": round(seconds, 2), "note": note, "when": time.strftime("%Y-%m-%d %H:%M:%S"),
                 "cpu_count": os.cpu_count()}
    path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")


def is_frontend_only(node_type: str) -> bool:
    return node_type in FRONTEND_ONLY_TYPES


def save_prefix(node: Mapping[str, Any]) -> Optional[str]:
    """filename_prefix of a SaveImage node (its only widget)."""
    if node["type"] != "SaveImage":
        return None
    return (node.get("widgets_values") or [None])[0]
