"""Latent families: downscale, FLUX.2 packing, conversions, lookup.

Channel counts, scale/shift factors and FLUX.2's packing are compared with ComfyUI's own
``comfy.latent_formats`` in ``tests/integration/test_families_comfyui.py``.
"""
from __future__ import annotations

import pytest
import torch

from lua_core.families import FAMILIES, batch_norm_stats, families_for_channels, get_family


def test_downscale_and_channel_lookup():
    downscale = {n: f.comfy_downscale for n, f in FAMILIES.items()}
    assert downscale == {"sd15": 8, "sdxl": 8, "sd3": 8, "flux1": 8, "flux2": 16}
    assert {f.name for f in families_for_channels(16)} == {"sd3", "flux1"}


def test_flux2_pack_order_and_normalisation_match_comfyui():
    """ComfyUI packs with rearrange('... c (i pi) (j pj) -> ... (c pi pj) i j'), then batch-normalises each packed
    channel with the VAE's running statistics: (z - mean) / sqrt(var + 1e-4)."""
    fam = get_family("flux2")
    mean, std = batch_norm_stats("flux2")
    z = torch.arange(2 * 32 * 4 * 6, dtype=torch.float32).reshape(2, 32, 4, 6) / 100
    packed = fam.to_comfy(z)
    assert packed.shape == (2, 128, 2, 3)
    c, pi, pj, i, j = 5, 1, 0, 1, 2
    k = c * 4 + pi * 2 + pj
    assert packed[1, k, i, j] == pytest.approx(float((z[1, c, i * 2 + pi, j * 2 + pj] - mean[k, 0, 0]) / std[k, 0, 0]))
    assert torch.allclose(fam.to_model(packed), z, atol=1e-5)
    with pytest.raises(ValueError, match="even"):
        fam.to_comfy(torch.zeros(1, 32, 3, 4))


@pytest.mark.slow
def test_flux2_statistics_normalise_tiny_autoencoder_latents(shared_dir):
    """The estimated statistics bring taef2 latents of photographs never used to estimate them (the val set)
    close to zero mean and unit variance per packed channel, as ComfyUI's FLUX.2 LATENT is."""
    from lua_core.tae import load_tae
    from lua_core.toolkit.images import center_crop, load_image
    from lua_core.toolkit.photo_sets import pick_val_images

    fam, tae = get_family("flux2"), load_tae("flux2")
    imgs = torch.stack([center_crop(load_image(p, 256), 256) for p in pick_val_images(shared_dir / "data" / "val", 8)])
    with torch.inference_mode():
        packed = fam.to_comfy(tae.encode_raw(imgs))
    per_channel_mean = packed.mean(dim=(0, 2, 3))
    per_channel_var = packed.var(dim=(0, 2, 3))
    assert per_channel_mean.abs().mean() < 0.25
    assert 0.6 < float(per_channel_var.mean()) < 1.6


def test_tae_conversion_round_trip():
    fam = get_family("flux1")
    raw = torch.randn(1, 16, 4, 4)
    assert torch.allclose(fam.tae_to_raw(fam.raw_to_tae(raw)), raw, atol=1e-6)
    assert torch.allclose(fam.raw_to_tae(torch.full((1,), fam.shift_factor)), torch.zeros(1))


def test_unknown_family():
    with pytest.raises(ValueError, match="unknown latent family 'sd2'"):
        get_family("sd2")
    assert get_family(" FLUX1 ").name == "flux1"
