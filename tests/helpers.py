"""Helpers shared by the test modules."""
from __future__ import annotations

from pathlib import Path

import torch

import lua_core


def tiny_config(channels: int = 16, **overrides) -> lua_core.LUAConfig:
    """A very small network (fast on CPU) with the light preset's structure."""
    base = dict(in_chans=channels, embed_dim=24, depths=(2, 2), num_heads=(3, 3), window_size=8, head_num_feat=16)
    base.update(overrides)
    return lua_core.LIGHT_CONFIG.replace(**base)


def comfyui_on_path() -> Path:
    """Make ComfyUI importable, as running from its environment does: ``$LUA_COMFYUI_DIR`` or the
    provisioned ``.cache/comfyui/ComfyUI`` (set up on demand) goes first on ``sys.path``, in CPU mode."""
    import os
    import sys
    from pathlib import Path

    from tests.support.comfy_server import DEFAULT_COMFY_DIR

    comfy_dir = Path(os.environ.get("LUA_COMFYUI_DIR") or DEFAULT_COMFY_DIR)
    if not (comfy_dir / "folder_paths.py").is_file():
        from tests.integration.conftest import _provision

        comfy_dir = _provision()
    if str(comfy_dir) not in sys.path:
        sys.path.insert(0, str(comfy_dir))
    from comfy.cli_args import args

    args.cpu = True
    return comfy_dir


def import_comfy_pack() -> dict:
    """Import ComfyUI's own modules (CPU mode) and this pack as package ``comfyui_lua``, in-process.

    Same pattern as ``tests/integration/test_nodes_inprocess.py``; the ComfyUI tree is
    ``$LUA_COMFYUI_DIR`` or the provisioned ``.cache/comfyui/ComfyUI`` (set up on demand).
    Callers skip when ``LUA_SKIP_COMFY=1``.
    """
    import importlib.util
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parent.parent
    comfyui_on_path()
    import comfy.model_management as mm
    import comfy.utils
    import folder_paths

    if "comfyui_lua" not in sys.modules:
        spec = importlib.util.spec_from_file_location("comfyui_lua", repo / "__init__.py",
                                                      submodule_search_locations=[str(repo)])
        module = importlib.util.module_from_spec(spec)
        sys.modules["comfyui_lua"] = module
        spec.loader.exec_module(module)
    return {"mm": mm, "utils": comfy.utils, "folder_paths": folder_paths, "pack": sys.modules["comfyui_lua"]}


def slerp_edge_latent(seed: int, shape: tuple[int, ...] = (2, 4, 5, 7)) -> torch.Tensor:
    """A random latent with a zero vector, opposite neighbours and parallel neighbours (slerp's edge cases)."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(shape, generator=g)
    z[0, :, 1, 2] = 0.0                 # a zero vector
    z[1, :, 2, 3] = -z[1, :, 2, 4]      # opposite neighbours
    z[1, :, 3, 1] = 2.0 * z[1, :, 3, 0]  # parallel neighbours
    return z


def images(n: int = 2, size: int = 64, seed: int = 0) -> torch.Tensor:
    """Smooth random images with an edge, in [0, 1] (``(n, 3, size, size)``)."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, 4, 4, generator=g)
    img = torch.nn.functional.interpolate(low, size=(size, size), mode="bicubic", align_corners=False)
    img[:, :, size // 4: size // 2, size // 3:] = 0.9
    return img.clamp(0, 1)
