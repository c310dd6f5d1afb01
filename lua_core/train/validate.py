"""Validation: PSNR of the decoded LUA output against the HR image, with bicubic baselines and latent L1.

Encoding and decoding use the run's frozen autoencoder (tiny autoencoder or full VAE); ``psnr_tae``
is that autoencoder's round trip (the ceiling), whichever backend it is.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import torch
import torch.nn.functional as F

from ..metrics.pixel import psnr
from ..tae import TinyAutoencoder
from ..toolkit.images import bicubic_down, center_crop, load_image
from ..vae_backends import VAEBackend


class Validator:
    """Fixed centre crops; baselines (autoencoder round trip, latent bicubic, pixel bicubic) computed once."""

    def __init__(self, images: Sequence[Path], tae: TinyAutoencoder | VAEBackend, scales: Sequence[int], crop: int,
                 normalize=None, device: Optional[torch.device] = None) -> None:
        self.tae = tae
        self.scales = tuple(scales)
        self.device = device or torch.device("cpu")
        self.normalize = normalize or (lambda z: z)
        self.names = [p.name for p in images]
        self.hr = torch.stack([center_crop(load_image(p, crop), crop) for p in images]).to(self.device)
        with torch.no_grad():
            self.z_hr = tae.encode_raw(self.hr)
            self.z_lr = {s: tae.encode_raw(bicubic_down(self.hr, s)) for s in self.scales}
            self.baseline = self._baselines()

    def _psnr_each(self, img: torch.Tensor) -> float:
        return sum(psnr(img[i], self.hr[i]) for i in range(len(img))) / len(img)

    @torch.no_grad()
    def _baselines(self) -> dict[str, float]:
        out = {"psnr_tae": self._psnr_each(self.tae.decode_raw(self.z_hr))}
        for s in self.scales:
            z = self.z_lr[s]
            zb = F.interpolate(z, scale_factor=s, mode="bicubic", align_corners=False)
            out[f"x{s}/psnr_latent_bicubic"] = self._psnr_each(self.tae.decode_raw(zb))
            img_lr = self.tae.decode_raw(z).clamp(0, 1)
            out[f"x{s}/psnr_pixel_bicubic"] = self._psnr_each(
                F.interpolate(img_lr, scale_factor=s, mode="bicubic", align_corners=False))
            out[f"x{s}/latent_l1_bicubic"] = float((self.normalize(zb) - self.normalize(self.z_hr)).abs().mean())
        return out

    @torch.no_grad()
    def run(self, net: torch.nn.Module) -> dict[str, float]:
        """Metrics of ``net`` (LR latents in, raw latents out), merged with the baselines."""
        was_training = net.training
        net.eval()
        out = dict(self.baseline)
        for s in self.scales:
            pred = net(self.z_lr[s], s).float()
            out[f"x{s}/psnr"] = self._psnr_each(self.tae.decode_raw(pred))
            out[f"x{s}/latent_l1"] = float((self.normalize(pred) - self.normalize(self.z_hr)).abs().mean())
        net.train(was_training)
        return out
