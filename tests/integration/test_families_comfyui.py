"""Our latent families (``lua_core.families.FAMILIES``) against ComfyUI's own latent formats
(``comfy.latent_formats`` of the provisioned ComfyUI 0.3.75, imported in-process): the table's format class
names, the node's mapping derived from them, the models each row says it serves (``comfy.supported_models``),
channel count, scale and shift, the scaled-latent conversion, the preview's channel count, FLUX.2's 2x2 packing
and the tiny autoencoder's name. Nothing here restates ComfyUI's numbers; ``LUA_SKIP_COMFY=1`` skips.
"""
from __future__ import annotations

import os
from types import ModuleType, SimpleNamespace

import pytest
import torch

from lua_core.families import FAMILIES, LatentFamily, comfy_format_families
from tests.helpers import import_comfy_pack

# a model a row names -> the ComfyUI 0.3.75 class (comfy.supported_models) whose latent format must be that row's
SUPPORTED_MODEL: dict[str, str] = {
    "SD1.x": "SD15", "SD2.x": "SD20", "SDXL": "SDXL", "SD3": "SD3", "SD3.5": "SD3", "FLUX.1": "Flux",
    "Chroma": "Chroma", "HiDream": "HiDream", "Lumina 2": "Lumina2", "Z-Image": "ZImage", "OmniGen2": "Omnigen2",
    "FLUX.2 [dev]": "Flux2",
}
# models a row names that have no class of their own in ComfyUI 0.3.75, and the latent format they use there
OTHER_ROUTE: dict[str, str] = {
    "Playground 2.5": "SDXL_Playground_2_5",  # an SDXL model whose format is swapped at load time
    "FLUX.2 [klein]": "Flux2",                # the FLUX.2 VAE; 0.3.75 detects only FLUX.2 [dev]'s transformer
}


@pytest.fixture(scope="module")
def comfy() -> SimpleNamespace:
    """ComfyUI's ``latent_formats`` and ``supported_models`` and this pack's ``nodes.model_family`` (CPU mode)."""
    if os.environ.get("LUA_SKIP_COMFY") == "1":
        pytest.skip("LUA_SKIP_COMFY=1")
    import_comfy_pack()
    import comfy.latent_formats
    import comfy.supported_models
    from comfyui_lua.nodes import model_family

    return SimpleNamespace(formats=comfy.latent_formats, models=comfy.supported_models, node=model_family)


@pytest.fixture(scope="module")
def latent_formats(comfy) -> ModuleType:
    return comfy.formats


def _format(latent_formats: ModuleType, family: str):
    """An instance of the (first) ComfyUI latent format class of ``family``'s row."""
    return getattr(latent_formats, FAMILIES[family].comfy_formats[0])()


def _model_with(fmt) -> SimpleNamespace:
    """A stand-in ComfyUI MODEL (patcher -> BaseModel -> latent_format) carrying ``fmt``."""
    return SimpleNamespace(model=SimpleNamespace(latent_format=fmt))


def test_node_mapping_is_the_tables(comfy):
    assert comfy.node.LATENT_FORMATS == comfy_format_families()
    assert set(comfy.node.LATENT_FORMATS.values()) == set(FAMILIES)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_format_class_exists_and_maps_back_to_its_family(comfy, family):
    """Each format class named in the row is in ComfyUI and, through the node's MRO lookup, resolves to the row
    (a subclass listed under another family, like Flux under SD3, must not win)."""
    for name in FAMILIES[family].comfy_formats:
        cls = getattr(comfy.formats, name)
        assert issubclass(cls, comfy.formats.LatentFormat), name
        fam, fmt = comfy.node.family_of_model(_model_with(cls()))
        assert fam is not None and fam.name == family and fmt == name


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_the_models_a_row_names_work_in_its_latent_space(comfy, family):
    """Every model the row names (tooltips, errors, README) is a ComfyUI model whose latent format maps to the row."""
    for model in FAMILIES[family].models.split(", "):
        assert model in SUPPORTED_MODEL or model in OTHER_ROUTE, f"{model!r}: say how ComfyUI serves it"
        if model in SUPPORTED_MODEL:
            fmt = getattr(comfy.models, SUPPORTED_MODEL[model]).latent_format()
        else:
            fmt = getattr(comfy.formats, OTHER_ROUTE[model])()
        fam, _ = comfy.node.family_of_model(_model_with(fmt))
        assert fam is not None and fam.name == family, model


def test_family_check_names_both_families(comfy):
    lua = SimpleNamespace(family=FAMILIES["sd15"], path=None)
    with pytest.raises(ValueError, match=r"is an SD1\.5 adapter .* SDXL latents .* pick an SDXL adapter"):
        comfy.node.check_model_family(lua, _model_with(comfy.formats.SDXL()), "node")
    with pytest.raises(ValueError, match=r"Mochi latent space.*LUA covers the latents of SD1\.5 \(SD1\.x, SD2\.x\)"):
        comfy.node.check_model_family(lua, _model_with(comfy.formats.Mochi()), "node")
    comfy.node.check_model_family(lua, _model_with(comfy.formats.SD15()), "node")


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
