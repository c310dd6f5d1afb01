"""Our latent families (``lua_core.families.FAMILIES``) against ComfyUI's own latent formats
(``comfy.latent_formats`` of the provisioned ComfyUI 0.3.75, imported in-process): channel count,
scale and shift, the scaled-latent conversion, the preview's channel count, FLUX.2's 2x2 packing and
the tiny autoencoder's name. Nothing here restates ComfyUI's numbers; ``LUA_SKIP_COMFY=1`` skips.
"""
from __future__ import annotations

import os
from types import ModuleType

import pytest
import torch

from lua_core.families import FAMILIES, LatentFamily
from tests.helpers import import_comfy_pack

# our family -> the ComfyUI latent format class of the same VAE latent space
COMFY_FORMAT: dict[str, str] = {"sd15": "SD15", "sdxl": "SDXL", "sd3": "SD3", "flux1": "Flux", "flux2": "Flux2"}


@pytest.fixture(scope="module")
def latent_formats() -> ModuleType:
    """ComfyUI's ``comfy.latent_formats`` (CPU mode, loaded like the other in-process tests)."""
    if os.environ.get("LUA_SKIP_COMFY") == "1":
        pytest.skip("LUA_SKIP_COMFY=1")
    import_comfy_pack()
    import comfy.latent_formats

    return comfy.latent_formats


def _format(latent_formats: ModuleType, family: str):
    """An instance of the ComfyUI latent format class that matches ``family``."""
    return getattr(latent_formats, COMFY_FORMAT[family])()


def test_every_family_has_a_comfyui_format(latent_formats):
    assert set(COMFY_FORMAT) == set(FAMILIES)
    for name in COMFY_FORMAT.values():
        assert issubclass(getattr(latent_formats, name), latent_formats.LatentFormat), name


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_channels_scale_and_shift_match_comfyui(latent_formats, family):
    fam: LatentFamily = FAMILIES[family]
    fmt = _format(latent_formats, family)
    assert fmt.latent_dimensions == 2  # an image latent (B, C, H, W)
    assert fam.comfy_channels == fmt.latent_channels
    assert fam.scale_factor == pytest.approx(fmt.scale_factor, rel=0, abs=1e-12)
    assert fam.shift_factor == pytest.approx(getattr(fmt, "shift_factor", 0.0), rel=0, abs=1e-12)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_scaled_latent_conversion_is_comfyuis_process_in_and_out(latent_formats, family):
    """``raw_to_tae``/``tae_to_raw`` are ComfyUI's ``process_in``/``process_out`` (what its samplers and TAESD see)."""
    fam = FAMILIES[family]
    fmt = _format(latent_formats, family)
    raw = torch.randn(2, fam.comfy_channels, 4, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert torch.allclose(fam.raw_to_tae(raw), fmt.process_in(raw.clone()), rtol=0, atol=1e-12)
    assert torch.allclose(fam.tae_to_raw(raw), fmt.process_out(raw.clone()), rtol=0, atol=1e-12)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_model_channels_and_packing_match_comfyuis_preview(latent_formats, family):
    """ComfyUI's latent preview has one RGB row per channel of the unpacked latent and, for a packed latent
    (FLUX.2), unpacks it first with ``latent_rgb_factors_reshape``: our ``model_channels`` and ``to_model``.

    ``to_model`` may also undo a per-channel normalisation of the packed LATENT (an affine map per channel);
    the difference quotient ``(f(x) - f(0)) / (f(1) - f(0))`` cancels it and leaves the unpacking alone."""
    fam = FAMILIES[family]
    fmt = _format(latent_formats, family)
    assert len(fmt.latent_rgb_factors) == fam.model_channels
    assert (fmt.latent_rgb_factors_reshape is not None) == (fam.pack > 1)
    if fmt.latent_rgb_factors_reshape is not None:
        shape = (2, fam.comfy_channels, 3, 5)
        packed = torch.randn(shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
        zero = fam.to_model(torch.zeros(shape, dtype=torch.float64))
        unpacked = (fam.to_model(packed) - zero) / (fam.to_model(torch.ones(shape, dtype=torch.float64)) - zero)
        assert torch.allclose(unpacked, fmt.latent_rgb_factors_reshape(packed), rtol=0, atol=1e-9)


def test_tiny_autoencoders_are_the_ones_comfyui_previews_with(latent_formats):
    """Where ComfyUI names a TAESD preview decoder for the format, it is our family's tiny autoencoder."""
    named = {f: _format(latent_formats, f).taesd_decoder_name for f in FAMILIES}
    checked = {f: d for f, d in named.items() if d is not None}
    assert checked, "ComfyUI names no TAESD decoder for any family"
    for family, decoder in checked.items():
        assert decoder == f"{FAMILIES[family].tae_name}_decoder", family
