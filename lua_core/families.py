"""Latent families: channel width, ComfyUI's latent scale/shift, and FLUX.2's 2x2 packing.

ComfyUI's LATENT holds *raw* VAE latents.  The tiny autoencoders (TAESD family)
work on *scaled* latents: ``tae = (raw - shift) * scale``.  Channel count alone
cannot tell sd15 from sdxl or sd3 from flux1, so checkpoints record their family.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch


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

    @property
    def comfy_channels(self) -> int:
        return self.model_channels * self.pack * self.pack

    @property
    def model_downscale(self) -> int:
        return 8

    @property
    def comfy_downscale(self) -> int:
        return 8 * self.pack

    def to_model(self, latent: torch.Tensor) -> torch.Tensor:
        """ComfyUI LATENT ``(B, C, H, W)`` -> the network's layout (unpacks FLUX.2)."""
        if self.pack == 1:
            return latent
        b, c, h, w = latent.shape
        p = self.pack
        x = latent.reshape(b, c // (p * p), p, p, h, w)
        return x.permute(0, 1, 4, 2, 5, 3).reshape(b, c // (p * p), h * p, w * p)

    def to_comfy(self, latent: torch.Tensor) -> torch.Tensor:
        """The network's layout -> ComfyUI LATENT (packs FLUX.2); sizes must be multiples of the pack."""
        if self.pack == 1:
            return latent
        b, c, h, w = latent.shape
        p = self.pack
        if h % p or w % p:
            raise ValueError(f"{self.label} latents must have even height/width to pack, got {h}x{w}")
        x = latent.reshape(b, c, h // p, p, w // p, p)
        return x.permute(0, 1, 3, 5, 2, 4).reshape(b, c * p * p, h // p, w // p)

    def raw_to_tae(self, raw: torch.Tensor) -> torch.Tensor:
        """Raw (ComfyUI) latent -> the scaled latent the tiny autoencoder decodes."""
        return (raw - self.shift_factor) * self.scale_factor

    def tae_to_raw(self, tae: torch.Tensor) -> torch.Tensor:
        """Scaled tiny-autoencoder latent -> raw (ComfyUI) latent."""
        return tae / self.scale_factor + self.shift_factor


FAMILIES: dict[str, LatentFamily] = {
    f.name: f
    for f in (
        LatentFamily("sd15", "SD1.5", 4, 0.18215, tae_name="taesd"),
        LatentFamily("sdxl", "SDXL", 4, 0.13025, tae_name="taesdxl"),
        LatentFamily("sd3", "SD3", 16, 1.5305, 0.0609, tae_name="taesd3"),
        LatentFamily("flux1", "FLUX.1", 16, 0.3611, 0.1159, tae_name="taef1"),
        # ComfyUI's FLUX.2 latent is already normalised by the VAE's batch-norm
        # statistics, so its scale/shift are identity; the model works unpacked.
        LatentFamily("flux2", "FLUX.2", 32, 1.0, 0.0, pack=2, tae_name="taef2"),
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
