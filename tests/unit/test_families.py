"""Latent families: the family table, what derives from it, downscale, FLUX.2 packing, conversions, lookup.

Channel counts, scale/shift factors, FLUX.2's packing and the format class names are compared with
ComfyUI's own ``comfy.latent_formats`` in ``tests/integration/test_families_comfyui.py``.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from lua_core import tae as T
from lua_core.families import (
    FAMILIES,
    batch_norm_stats,
    channel_twins,
    comfy_format_families,
    family_names,
    family_of_tae,
    get_family,
    served_models,
)
from lua_core.model.teacher_skip import TeacherSkip

REPO = Path(__file__).resolve().parents[2]


def test_downscale_and_channel_twins():
    downscale = {n: f.comfy_downscale for n, f in FAMILIES.items()}
    assert downscale == {"sd15": 8, "sdxl": 8, "sd3": 8, "flux1": 8, "flux2": 16}
    assert [tuple(f.name for f in g) for g in channel_twins()] == [("sd15", "sdxl"), ("sd3", "flux1")]


def test_every_row_is_complete():
    """A row names its ComfyUI formats, the models it serves and its tiny autoencoder; names are unique."""
    formats = [fmt for f in FAMILIES.values() for fmt in f.comfy_formats]
    assert len(formats) == len(set(formats)), "a ComfyUI latent format belongs to one family"
    taes = [f.tae_name for f in FAMILIES.values()]
    assert len(taes) == len(set(taes)) and all(taes)
    for f in FAMILIES.values():
        assert f.comfy_formats and f.models and f.label, f.name
        assert f.packed == (f.pack > 1) and f.comfy_channels == f.model_channels * f.pack ** 2
        assert not f.batch_norm or f.packed, "the batch-norm normalisation is applied to the packed latent"


def test_tae_tables_derive_from_the_family_table():
    assert T.TAE_NAMES == tuple(f.tae_name for f in FAMILIES.values())
    for f in FAMILIES.values():
        assert family_of_tae(f.tae_name) is f
    with pytest.raises(ValueError, match="unknown tiny autoencoder 'taefoo'; known: taesd, "):
        family_of_tae("taefoo")


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_tae_layout_from_the_row_loads_the_shared_files(family):
    """The row's channels and GroupNorm flag build exactly the layout of the family's tiny-autoencoder files,
    and the teacher skip (the same flag) takes those tensors: a wrong flag or channel count fails here."""
    fam = get_family(family)
    tae = T.load_tae(fam)
    assert tae.latent_channels == fam.model_channels
    assert tae.encoder[-1].out_channels == tae.decoder[1].in_channels == fam.model_channels
    has_branch = any(isinstance(m, T.GroupNormBranch) for m in tae.modules())
    assert has_branch == fam.tae_groupnorm
    skip = TeacherSkip(fam.model_channels, fam.tae_groupnorm)
    skip.encoder.load_state_dict(tae.encoder.state_dict())  # strict: same keys and shapes
    skip.decoder.load_state_dict(tae.decoder.state_dict())


def test_text_lists_come_from_the_table():
    assert family_names() == ", ".join(FAMILIES)
    assert family_names(" or ").endswith("flux1 or flux2")
    assert comfy_format_families() == {fmt: f.name for f in FAMILIES.values() for fmt in f.comfy_formats}
    for f in FAMILIES.values():
        assert f"{f.label} ({f.models})" in served_models()
    assert "Z-Image" in served_models() and "Chroma" in served_models() and "klein" in served_models()


def test_readme_family_table_matches_the_table():
    """The README's latent-family table lists every row with its formats, models and tiny autoencoder."""
    text = (REPO / "README.md").read_text().split("\n## Latent families\n", 1)[1].split("\n## ", 1)[0]
    rows = {m.group(1): m.group(0) for m in re.finditer(r"^\| [^|]* \(`(\w+)`\) \|.*$", text, re.M)}
    assert set(rows) == set(FAMILIES)
    for f in FAMILIES.values():
        formats = ", ".join(f"`{fmt}`" for fmt in f.comfy_formats)
        assert rows[f.name] == f"| {f.label} (`{f.name}`) | {formats} | {f.models} | `{f.tae_name}` |", f.name


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
