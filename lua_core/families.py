"""Latent families: channel width, ComfyUI's latent scale/shift, and FLUX.2's packing and normalisation.

ComfyUI's LATENT holds *raw* VAE latents.  The tiny autoencoders (TAESD family)
work on *scaled* latents: ``tae = (raw - shift) * scale``.  Channel count alone
cannot tell sd15 from sdxl or sd3 from flux1, so checkpoints record their family.

FLUX.2's LATENT is the VAE latent packed 2x2 into 128 channels and normalised by the
VAE's batch-norm running statistics.  The network sees it unpacked and un-normalised
(32 channels at 1/8, what ``taef2`` encodes to); the statistics are in
``latent_stats.json`` (estimated from our photographs, see
``scripts/estimate_latent_stats.py``: the real VAE's are not available here).
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
    """What the pack needs to know about one VAE latent space.

    ``model_channels``/``model_downscale`` describe the latent the network sees;
    ``comfy_channels``/``comfy_downscale`` the LATENT ComfyUI carries.  They differ
    only for FLUX.2, whose ComfyUI latent packs 2x2 cells of the 32-channel 1/8
    latent into 128 channels at 1/16 (``(c pi pj)`` channel order).
    """

    name: str
    label: str
    model_channels: int
    scale_factor: float
    shift_factor: float = 0.0
    pack: int = 1
    tae_name: Optional[str] = None
    batch_norm: bool = False  # ComfyUI's LATENT is normalised by the VAE's batch-norm statistics

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


FAMILIES: dict[str, LatentFamily] = {
    f.name: f
    for f in (
        LatentFamily("sd15", "SD1.5", 4, 0.18215, tae_name="taesd"),
        LatentFamily("sdxl", "SDXL", 4, 0.13025, tae_name="taesdxl"),
        LatentFamily("sd3", "SD3", 16, 1.5305, 0.0609, tae_name="taesd3"),
        LatentFamily("flux1", "FLUX.1", 16, 0.3611, 0.1159, tae_name="taef1"),
        # the batch-norm normalisation takes the place of a scale/shift, which are identity
        LatentFamily("flux2", "FLUX.2", 32, 1.0, 0.0, pack=2, tae_name="taef2", batch_norm=True),
    )
}


def get_family(name: str) -> LatentFamily:
    """Look a family up by name (``sd15``, ``sdxl``, ``sd3``, ``flux1``, ``flux2``)."""
    key = (name or "").strip().lower()
    if key not in FAMILIES:
        raise ValueError(f"unknown latent family {name!r}; known families: {', '.join(FAMILIES)}")
    return FAMILIES[key]


def families_for_channels(channels: int) -> list[LatentFamily]:
    """Families whose ComfyUI LATENT has this many channels."""
    return [f for f in FAMILIES.values() if f.comfy_channels == channels]
