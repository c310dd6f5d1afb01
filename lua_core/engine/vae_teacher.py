"""The teacher computed with the user's own VAE: ``encode(bicubic_up(decode(z)))`` at the head's size.

A light adapter's residual sits on a teacher latent.  Without a VAE the adapter makes it with the tiny
autoencoder it carries, which loses what a full VAE would show at base size; given the VAE the workflow
decodes with anyway, the teacher is that VAE's decode at base size, upscaled in pixels, encoded at the
target size (what "VAE Decode -> Upscale Image -> VAE Encode" gives), and the residual is added on top.
It costs one decode at base size and one encode at the target size with that VAE.
"""
from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
import torch.nn.functional as F

from ..families import LatentFamily


@runtime_checkable
class LatentVAE(Protocol):
    """A VAE in the family's ComfyUI LATENT convention.

    ``decode(latent)`` returns images ``(B, 3, H, W)`` in ``[0, 1]``; ``encode(images)`` takes such images
    and returns a LATENT tensor ``(B, C, H/d, W/d)`` (``d`` the family's ComfyUI downscale).
    """

    def decode(self, latent: torch.Tensor) -> torch.Tensor: ...

    def encode(self, images: torch.Tensor) -> torch.Tensor: ...


def _check(what: str, got: torch.Tensor, want: tuple[int, ...]) -> torch.Tensor:
    if not isinstance(got, torch.Tensor):
        raise ValueError(f"the VAE's {what} returned {type(got).__name__}, not a tensor")
    if tuple(got.shape) != want:
        raise ValueError(f"the VAE's {what} returned shape {tuple(got.shape)}, expected {want} "
                         f"(is it the VAE of this adapter's latent family?)")
    if not torch.isfinite(got).all():
        raise ValueError(f"the VAE's {what} returned NaN or Inf values")
    return got


def vae_teacher(vae: LatentVAE, latent: torch.Tensor, head: int, family: LatentFamily) -> torch.Tensor:
    """``family.to_model(vae.encode(bicubic(vae.decode(latent), head)))``: the raw model-layout teacher of a
    ``(B, C, H, W)`` ComfyUI latent at ``head`` x its size (fp32, on the latent's device)."""
    if not isinstance(vae, LatentVAE):
        raise ValueError(f"vae must have decode(latent) and encode(images) methods, got {type(vae).__name__}")
    b, c, h, w = latent.shape
    d = family.comfy_downscale
    img = _check("decode", vae.decode(latent), (b, 3, h * d, w * d)).float()
    up = F.interpolate(img.clamp(0, 1), size=(h * d * head, w * d * head), mode="bicubic",
                       align_corners=False).clamp(0, 1)
    del img
    z = _check("encode", vae.encode(up), (b, c, h * head, w * head))
    return family.to_model(z.to(latent.device, torch.float32))
