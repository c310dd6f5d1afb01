"""Which LUA latent family a ComfyUI MODEL works in, read from its latent format, and the check that an
adapter matches it.

Channel count alone cannot tell SD1.5 from SDXL or SD3 from FLUX.1 (or Wan from FLUX.1), but
every ComfyUI model carries its ``latent_format`` (``model.model.latent_format``), whose class
names the VAE latent space. Subclasses are resolved through the MRO, most specific first
(``Flux`` derives from ``SD3``). The format classes of each family are in the family table
(``LatentFamily.comfy_formats`` in ``lua_core/families.py``).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

from ..lua_core.families import LatentFamily, comfy_format_families, get_family, served_models

if TYPE_CHECKING:
    from ..lua_core.api import LUAModel

# ComfyUI latent-format class name -> LUA family (same VAE latent space), from the family table
LATENT_FORMATS: dict[str, str] = comfy_format_families()


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
                         f"adapter (LUA covers the latents of {served_models()}; video latents are not supported)")
    return fam, fmt


def check_model_family(lua: "LUAModel", model: Any, node: str) -> None:
    """Refuse an adapter of another latent family than the connected MODEL, naming both."""
    fam, fmt = require_family(model, node)
    if fam.name != lua.family.name:
        name = lua.path.name if lua.path else "the adapter"
        raise ValueError(f"{node}: {name} is {with_article(lua.family.label)} adapter but the connected model works "
                         f"in {fam.label} latents (latent format {fmt}); pick {with_article(fam.label)} adapter (or "
                         f"'auto' in Load LUA Model)")


def with_article(label: str) -> str:
    """A family label with its indefinite article: SD is read letter by letter (an SD1.5, an SDXL, an SD3),
    FLUX as a word (a FLUX.1)."""
    return f"{'an' if label[:1] in 'S' else 'a'} {label}"
