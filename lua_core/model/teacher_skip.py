"""The teacher skip of the light adapters: ``encode(bicubic_up(decode(x)))`` with a tiny autoencoder.

A latent decoded by a VAE decoder trained adversarially turns blotchy when it is merely
smooth, so bicubic in latent space is the worst starting point a residual network can
refine.  The latent of the pixel-bicubic image (decode at base size with the family's tiny
autoencoder, bicubic in pixels, encode at the target size) already decodes close to pixel
bicubic; the network adds ``gain x residual`` on top of it.

The tiny autoencoder's weights live in the adapter file (``skip.encoder.*`` and
``skip.decoder.*``), so an adapter is self-contained.  Large inputs run in overlapping
tiles of the input latent (the autoencoder's receptive field is local), which bounds the
memory of the full-resolution encoder pass.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..tae import build_decoder, build_encoder
from .tiling import run_with_context

# Pixels per tile of the autoencoder passes (about 600 MB of fp32 activations per feature map).
TILE_PIXELS = 1536 * 1536
# Context around a tile, in latent pixels: measured on real latents, 16 makes tiled and whole
# passes agree to < 1e-3 (decoder and encoder alike); 8 leaves seams of up to 0.3 in the encoder.
TILE_MARGIN = 16


class TeacherSkip(nn.Module):
    """Tiny autoencoder (``encoder``/``decoder``) plus the learned ``gain`` of the network's residual.

    Works on *scaled* latents (the tiny autoencoder's units), ``(B, C, H, W)``.
    """

    def __init__(self, channels: int, tae_groupnorm: bool = False, gain: float = 0.1) -> None:
        super().__init__()
        self.encoder = build_encoder(channels, tae_groupnorm)
        self.decoder = build_decoder(channels, tae_groupnorm)
        self.gain = nn.Parameter(torch.tensor(float(gain)))

    def _decode(self, x: torch.Tensor) -> torch.Tensor:
        # channels-last convolutions are ~25 % faster here on CPU
        return self.decoder(x.contiguous(memory_format=torch.channels_last))

    def _encode(self, img: torch.Tensor) -> torch.Tensor:
        return self.encoder(img.contiguous(memory_format=torch.channels_last)).contiguous()

    def teacher(self, x: torch.Tensor, head: int, tile_pixels: int = TILE_PIXELS,
                margin: int = TILE_MARGIN) -> torch.Tensor:
        """``encode(bicubic_up(decode(x), head))``; each autoencoder pass runs in tiles of at most
        ``tile_pixels`` image pixels (context ``margin`` latent px) when the image is larger.

        Gradients flow only when the autoencoder's weights require them (frozen: no graph).
        """
        trainable = torch.is_grad_enabled() and any(p.requires_grad for p in self.encoder.parameters())
        with torch.set_grad_enabled(trainable):
            h, w = x.shape[-2:]
            side = int(math.isqrt(tile_pixels)) // 8  # latent px per tile side, context included
            if h * w * 64 <= tile_pixels:
                img = self._decode(x)
            else:
                img = run_with_context(self._decode, x, 8, max(side - 2 * margin, 1), margin)
            up = F.interpolate(img.clamp(0, 1), scale_factor=head, mode="bicubic", align_corners=False).clamp(0, 1)
            del img
            if h * w * 64 * head * head <= tile_pixels:
                return self._encode(up)
            return run_with_context(self._encode, up, 1 / 8, 8 * max(side - 2 * margin, 1), 8 * margin)
