"""Which LUA latent family a ComfyUI MODEL works in, read from its latent format.

Channel count alone cannot tell SD1.5 from SDXL or SD3 from FLUX.1 (or Wan from FLUX.1), but
every ComfyUI model carries its ``latent_format`` (``model.model.latent_format``), whose class
names the VAE latent space. Subclasses are resolved through the MRO, most specific first
(``Flux`` derives from ``SD3``).
"""
from __future__ import annotations

from typing import Any, Optional

from ..lua_core.families import LatentFamily, get_family

# ComfyUI latent-format class name -> LUA family (same VAE latent space)
LATENT_FORMATS: dict[str, str] = {
    "SD15": "sd15",                 # SD1.x, SD2.x
    "SDXL": "sdxl",
    "SDXL_Playground_2_5": "sdxl",  # the SDXL VAE with other scale factors
    "SD3": "sd3",
    "Flux": "flux1",                # FLUX.1, Chroma, HiDream, Lumina 2 (the FLUX.1 VAE)
    "Flux2": "flux2",
}


def latent_format_of(model: Any) -> Any:
    """The ``latent_format`` object of a MODEL (ModelPatcher) or of a BaseModel."""
    inner = getattr(model, "model", model)
    fmt = getattr(inner, "latent_format", None)
    if fmt is None and hasattr(model, "get_model_object"):
        try:
            fmt = model.get_model_object("latent_format")
        except Exception:  # noqa: BLE001  (older/newer patchers: fall through to the error below)
            fmt = None
    if fmt is None:
        raise ValueError(f"LUA: the connected MODEL ({type(model).__name__}) has no latent format; connect the "
                         f"MODEL output of a checkpoint or diffusion-model loader")
    return fmt


def format_name(fmt: Any) -> str:
    return type(fmt).__name__


def family_of_model(model: Any) -> tuple[Optional[LatentFamily], str]:
    """``(family or None, latent-format name)`` for a MODEL; None when no LUA family covers it."""
    fmt = latent_format_of(model)
    for cls in type(fmt).__mro__:
        name = LATENT_FORMATS.get(cls.__name__)
        if name is not None:
            return get_family(name), format_name(fmt)
    return None, format_name(fmt)


def require_family(model: Any, what: str = "LUA") -> tuple[LatentFamily, str]:
    """Like :func:`family_of_model` but raises a ValueError naming the format when no adapter family covers it."""
    fam, fmt = family_of_model(model)
    if fam is None:
        raise ValueError(f"{what}: the connected model works in the {fmt} latent space, for which there is no LUA "
                         f"adapter (LUA covers SD1.5, SDXL, SD3, FLUX.1 and FLUX.2 latents; video latents are not "
                         f"supported)")
    return fam, fmt
