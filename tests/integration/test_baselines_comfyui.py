"""Latent baselines against ComfyUI's own code, in-process: ``bislerp`` and the latent upscale methods of
``lua_core.eval.baselines`` give what ``comfy.utils`` (the Upscale Latent node) gives.

The pure-torch checks of the same functions are in ``tests/unit/test_eval_metrics.py``.
"""
from __future__ import annotations

import os
from types import ModuleType

import pytest
import torch

from lua_core.eval.baselines import bislerp, latent_upscale
from tests.helpers import slerp_edge_latent


def _latent(seed: int, shape: tuple[int, ...] = (2, 4, 5, 7)) -> torch.Tensor:
    return slerp_edge_latent(seed, shape)


def _comfy_utils() -> ModuleType:
    """ComfyUI's ``comfy.utils`` from the provisioned tree (skips when there is none)."""
    if os.environ.get("LUA_SKIP_COMFY") == "1":
        pytest.skip("LUA_SKIP_COMFY=1")
    from tests.helpers import comfyui_on_path

    comfyui_on_path()
    import comfy.utils

    return comfy.utils


@pytest.mark.parametrize("size", [(10, 14), (20, 28), (13, 9), (5, 7), (3, 4)])
def test_bislerp_matches_comfyui(size):
    cu = _comfy_utils()
    z = _latent(3)
    want = cu.bislerp(z.clone(), size[1], size[0])
    got = bislerp(z, *size)
    assert got.shape == want.shape
    assert torch.allclose(got, want, atol=1e-5, rtol=1e-5), float((got - want).abs().max())


@pytest.mark.parametrize("method,comfy", [("nearest", "nearest-exact"), ("bilinear", "bilinear"),
                                          ("bicubic", "bicubic"), ("bislerp", "bislerp")])
def test_latent_upscale_matches_comfyui_node(method, comfy):
    cu = _comfy_utils()
    z = torch.randn(1, 16, 6, 5, generator=torch.Generator().manual_seed(4))
    for s in (2, 4):
        want = cu.common_upscale(z.clone(), 5 * s, 6 * s, comfy, "disabled")
        assert torch.allclose(latent_upscale(z, s, method), want, atol=1e-5)
