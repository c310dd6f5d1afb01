"""Latent families: factors, FLUX.2 packing, lookup."""
from __future__ import annotations

import pytest
import torch

from lua_core.families import FAMILIES, families_for_channels, get_family


def test_comfyui_factors_recorded():
    assert get_family("sd15").scale_factor == 0.18215
    assert get_family("sdxl").scale_factor == 0.13025
    assert (get_family("sd3").scale_factor, get_family("sd3").shift_factor) == (1.5305, 0.0609)
    assert (get_family("flux1").scale_factor, get_family("flux1").shift_factor) == (0.3611, 0.1159)


def test_channels_and_downscale():
    widths = {n: (f.model_channels, f.comfy_channels, f.comfy_downscale) for n, f in FAMILIES.items()}
    assert widths == {"sd15": (4, 4, 8), "sdxl": (4, 4, 8), "sd3": (16, 16, 8), "flux1": (16, 16, 8),
                      "flux2": (32, 128, 16)}
    assert {f.name for f in families_for_channels(16)} == {"sd3", "flux1"}


def test_flux2_pack_order_matches_comfyui():
    """ComfyUI packs with rearrange('... c (i pi) (j pj) -> ... (c pi pj) i j')."""
    fam = get_family("flux2")
    z = torch.arange(2 * 32 * 4 * 6, dtype=torch.float32).reshape(2, 32, 4, 6)
    packed = fam.to_comfy(z)
    assert packed.shape == (2, 128, 2, 3)
    c, pi, pj, i, j = 5, 1, 0, 1, 2
    assert packed[1, c * 4 + pi * 2 + pj, i, j] == z[1, c, i * 2 + pi, j * 2 + pj]
    assert torch.equal(fam.to_model(packed), z)
    with pytest.raises(ValueError, match="even"):
        fam.to_comfy(torch.zeros(1, 32, 3, 4))


def test_tae_conversion_round_trip():
    fam = get_family("flux1")
    raw = torch.randn(1, 16, 4, 4)
    assert torch.allclose(fam.tae_to_raw(fam.raw_to_tae(raw)), raw, atol=1e-6)
    assert torch.allclose(fam.raw_to_tae(torch.full((1,), 0.1159)), torch.zeros(1))


def test_unknown_family():
    with pytest.raises(ValueError, match="unknown latent family 'sd2'"):
        get_family("sd2")
    assert get_family(" FLUX1 ").name == "flux1"
