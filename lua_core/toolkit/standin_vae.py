"""The near-lossless stand-in of the user's VAE, the same in fine-tuning and evaluation.

LUA Latent Upscale's ``vae`` input makes the teacher ``encode(bicubic(decode(z)))`` with the user's full VAE
(:mod:`lua_core.engine.vae_teacher`).  Without that VAE, training and evaluation stand in a VAE that decodes
the latent back to the true low-res image and encodes with the family's tiny encoder, so the teacher is the
tiny encoder of the bicubic-enlarged true LR image.  Both sides take it from here, so it cannot drift apart.
"""
from __future__ import annotations

from typing import Any

import torch

from ..families import LatentFamily
from .images import bicubic_up


def standin_image(lr: torch.Tensor, scale: int) -> torch.Tensor:
    """What the user's route shows before any encode: the stand-in's decode (the true LR image), bicubic x``scale``."""
    return bicubic_up(lr, scale)


def standin_teacher(tae: Any, lr: torch.Tensor, scale: int) -> torch.Tensor:
    """The teacher the stand-in VAE gives for the LR image ``lr`` at ``scale``: a raw model-layout latent
    (``tae.encode_raw`` of :func:`standin_image`)."""
    return tae.encode_raw(standin_image(lr, scale))


class StandInVAE:
    """The stand-in as a :class:`~lua_core.engine.vae_teacher.LatentVAE` (ComfyUI LATENT convention), for
    ``upscale(..., vae=)``: ``decode`` gives the true LR image, ``encode`` is the tiny encoder."""

    def __init__(self, lr: torch.Tensor, tae: Any, family: LatentFamily) -> None:
        self.lr, self.tae, self.family = lr, tae, family

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        d = self.family.comfy_downscale
        if tuple(latent.shape[-2:]) != (self.lr.shape[-2] // d, self.lr.shape[-1] // d):
            raise ValueError("the stand-in VAE decodes only the latent of its own LR image")
        return self.lr

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return self.family.to_comfy(self.tae.encode_raw(images))
