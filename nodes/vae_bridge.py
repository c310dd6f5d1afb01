"""ComfyUI's VAE in the shape ``lua_core`` asks for (:class:`lua_core.engine.vae_teacher.LatentVAE`)."""
from __future__ import annotations

from typing import Any

import torch

from ..lua_core.families import LatentFamily


class ComfyLatentVAE:
    """``decode(latent)`` -> ``(B, 3, H, W)`` images in [0, 1]; ``encode(images)`` -> LATENT tensor.

    Both go through ComfyUI's own ``VAE.decode``/``VAE.encode``, so model management, offloading and the
    tiled fallback on out-of-memory are ComfyUI's.
    """

    def __init__(self, vae: Any, family: LatentFamily, what: str) -> None:
        if not (callable(getattr(vae, "decode", None)) and callable(getattr(vae, "encode", None))):
            raise ValueError(f"{what}: the vae input is not a ComfyUI VAE ({type(vae).__name__})")
        channels = getattr(vae, "latent_channels", None)
        if channels is not None and int(channels) != family.comfy_channels:
            raise ValueError(f"{what}: the connected VAE makes {channels}-channel latents, but this {family.label} "
                             f"adapter works on {family.comfy_channels}-channel {family.label} latents; connect "
                             f"the {family.label} VAE the workflow decodes with")
        self.vae = vae

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        img = self.vae.decode(latent)
        if img.ndim == 5:  # some VAEs return a frame axis for images
            img = img.reshape(-1, *img.shape[-3:])
        return img[..., :3].movedim(-1, 1).float()

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return self.vae.encode(images.movedim(1, -1).contiguous())
