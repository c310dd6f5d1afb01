"""The family table: one row per latent family (channels, ComfyUI's latent scale/shift and format classes,
the models it serves, its tiny autoencoder, FLUX.2's packing and normalisation), and what derives from it.

ComfyUI's LATENT holds *raw* VAE latents.  The tiny autoencoders (TAESD family)
work on *scaled* latents: ``tae = (raw - shift) * scale``.  Channel count alone
cannot tell sd15 from sdxl or sd3 from flux1, so checkpoints record their family.

FLUX.2's LATENT is the VAE latent packed 2x2 into 128 channels and normalised by the
VAE's batch-norm running statistics.  The network sees it unpacked and un-normalised
(32 channels at 1/8, what ``taef2`` encodes to); the statistics are in
``latent_stats.json`` (estimated from our photographs, see
``python -m scripts.estimate_latent_stats``: the real VAE's are not available here).
"""
from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import torch
from einops import rearrange


@dataclass(frozen=True)
class LatentFamily:
    """One row of the family table: everything the pack knows about one VAE latent space.

    ``model_channels``/``model_downscale`` describe the latent the network sees;
    ``comfy_channels``/``comfy_downscale`` the LATENT ComfyUI carries.  They differ
    only for FLUX.2, whose ComfyUI latent packs 2x2 cells of the 32-channel 1/8
    latent into 128 channels at 1/16 (``(c pi pj)`` channel order).

    ``comfy_formats`` are the ComfyUI latent-format class names of this latent space
    (``comfy.latent_formats``; subclasses resolve through the MRO), ``models`` the
    diffusion models users know that work in it.  The tiny autoencoder ``tae_name``
    encodes to the network's layout (``model_channels`` latent channels);
    ``tae_groupnorm`` says its blocks carry taef2's GroupNorm branch.
    """

    name: str
    label: str
    model_channels: int
    scale_factor: float
    shift_factor: float = 0.0
    pack: int = 1
    batch_norm: bool = False  # ComfyUI's LATENT is normalised by the VAE's batch-norm statistics
    comfy_formats: tuple[str, ...] = ()
    models: str = ""
    tae_name: Optional[str] = None
    tae_groupnorm: bool = False

    @property
    def packed(self) -> bool:
        """Whether ComfyUI's LATENT packs the network's latent (``pack > 1``)."""
        return self.pack > 1

    @property
    def comfy_channels(self) -> int:
        return self.model_channels * self.pack * self.pack

    @property
    def model_downscale(self) -> int:
        return 8

    @property
    def comfy_downscale(self) -> int:
        return 8 * self.pack

    def crop_unit(self, scales: Sequence[int]) -> int:
        """The px an image crop's side must be a multiple of: whole latent cells of its LR image at the largest
        scale (FLUX.2: whole packed cells)."""
        return self.comfy_downscale * max(scales)

    def to_model(self, latent: torch.Tensor) -> torch.Tensor:
        """ComfyUI LATENT ``(B, C, H, W)`` -> the network's layout (unpacks FLUX.2)."""
        if self.pack == 1:
            return latent
        if self.batch_norm:
            mean, std = _normalisation(self.name, latent)
            latent = latent * std + mean
        return rearrange(latent, "b (c ph pw) h w -> b c (h ph) (w pw)", ph=self.pack, pw=self.pack)

    def to_comfy(self, latent: torch.Tensor) -> torch.Tensor:
        """The network's layout -> ComfyUI LATENT (packs FLUX.2); sizes must be multiples of the pack."""
        if self.pack == 1:
            return latent
        h, w = latent.shape[-2:]
        if h % self.pack or w % self.pack:
            raise ValueError(f"{self.label} latents must have even height/width to pack, got {h}x{w}")
        packed = rearrange(latent, "b c (h ph) (w pw) -> b (c ph pw) h w", ph=self.pack, pw=self.pack)
        if self.batch_norm:
            mean, std = _normalisation(self.name, packed)
            packed = (packed - mean) / std
        return packed

    def raw_to_tae(self, raw: torch.Tensor) -> torch.Tensor:
        """Raw (ComfyUI) latent -> the scaled latent the tiny autoencoder decodes."""
        return (raw - self.shift_factor) * self.scale_factor

    def tae_to_raw(self, tae: torch.Tensor) -> torch.Tensor:
        """Scaled tiny-autoencoder latent -> raw (ComfyUI) latent."""
        return tae / self.scale_factor + self.shift_factor


STATS_PATH = Path(__file__).with_name("latent_stats.json")
BATCH_NORM_EPS = 1e-4  # the FLUX.2 VAE's batch-norm epsilon (as ComfyUI applies it)


@functools.lru_cache(maxsize=None)
def batch_norm_stats(family: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mean, std)`` of a family's packed latent channels, float32 ``(C, 1, 1)``; ``std = sqrt(var + eps)``."""
    stats = json.loads(STATS_PATH.read_text())[family]
    mean = torch.tensor(stats["mean"], dtype=torch.float32).view(-1, 1, 1)
    std = (torch.tensor(stats["var"], dtype=torch.float32) + float(stats["eps"])).sqrt().view(-1, 1, 1)
    return mean, std


def _normalisation(family: str, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    mean, std = batch_norm_stats(family)
    if like.shape[-3] != mean.shape[0]:
        raise ValueError(f"{family} latents have {mean.shape[0]} packed channels, got {like.shape[-3]}")
    return mean.to(like.device, like.dtype), std.to(like.device, like.dtype)


# THE family table: one row per latent family.  Everything else (TAE tables, the node's format mapping and
# messages, tooltips, help strings, scripts) derives from it; docs/DESIGN.md "Adding a latent family".
FAMILIES: dict[str, LatentFamily] = {
    f.name: f
    for f in (
        LatentFamily("sd15", "SD1.5", 4, 0.18215, comfy_formats=("SD15",), models="SD1.x, SD2.x",
                     tae_name="taesd"),
        LatentFamily("sdxl", "SDXL", 4, 0.13025, comfy_formats=("SDXL", "SDXL_Playground_2_5"),
                     models="SDXL, Playground 2.5", tae_name="taesdxl"),
        LatentFamily("sd3", "SD3", 16, 1.5305, 0.0609, comfy_formats=("SD3",), models="SD3, SD3.5",
                     tae_name="taesd3"),
        LatentFamily("flux1", "FLUX.1", 16, 0.3611, 0.1159, comfy_formats=("Flux",),
                     models="FLUX.1, Chroma, HiDream, Lumina 2, Z-Image, OmniGen2", tae_name="taef1"),
        # the batch-norm normalisation takes the place of a scale/shift, which are identity
        LatentFamily("flux2", "FLUX.2", 32, 1.0, 0.0, pack=2, batch_norm=True, comfy_formats=("Flux2",),
                     models="FLUX.2 [dev], FLUX.2 [klein]", tae_name="taef2", tae_groupnorm=True),
    )
}


def get_family(name: str) -> LatentFamily:
    """Look a family up by name (one of :data:`FAMILIES`)."""
    key = (name or "").strip().lower()
    if key not in FAMILIES:
        raise ValueError(f"unknown latent family {name!r}; known families: {family_names()}")
    return FAMILIES[key]


def family_names(last: str = ", ") -> str:
    """The family names, ``"sd15, sdxl, sd3, flux1, flux2"`` (``last`` joins the final two)."""
    return _join([f.name for f in FAMILIES.values()], last)


def served_models() -> str:
    """Each family with the models that work in it: ``"SD1.5 (SD1.x, SD2.x), ..."``."""
    return "; ".join(f"{f.label} ({f.models})" if f.models else f.label for f in FAMILIES.values())


def channel_twins() -> list[tuple[LatentFamily, ...]]:
    """Groups of families whose ComfyUI LATENTs have the same channel count (channels cannot tell them apart)."""
    groups: dict[int, list[LatentFamily]] = {}
    for f in FAMILIES.values():
        groups.setdefault(f.comfy_channels, []).append(f)
    return [tuple(g) for g in groups.values() if len(g) > 1]


def twins_text(sep: str = " vs ") -> str:
    """``"SD1.5 vs SDXL, SD3 vs FLUX.1"``: the families that only the latent format tells apart."""
    return ", ".join(sep.join(f.label for f in g) for g in channel_twins())


def comfy_format_families() -> dict[str, str]:
    """ComfyUI latent-format class name -> family name, from the table's ``comfy_formats``."""
    return {fmt: f.name for f in FAMILIES.values() for fmt in f.comfy_formats}


def family_of_tae(tae_name: str) -> LatentFamily:
    """The family whose tiny autoencoder is ``tae_name``."""
    for f in FAMILIES.values():
        if f.tae_name == tae_name:
            return f
    known = ", ".join(f.tae_name for f in FAMILIES.values() if f.tae_name)
    raise ValueError(f"unknown tiny autoencoder {tae_name!r}; known: {known}")


def _join(items: list[str], last: str) -> str:
    return ", ".join(items[:-1]) + last + items[-1] if len(items) > 1 else "".join(items)
