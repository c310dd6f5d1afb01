"""Perceptual metrics LPIPS (AlexNet, v0.1) and DISTS, from weights converted by ``lua_core.metrics.fetch``.

Weights live in :func:`metrics_dir` (``$LUA_METRICS_DIR`` or ``<repo>/.cache/metrics``) as safetensors:

* ``lpips_alex.safetensors`` / ``lpips_vgg.safetensors``: the ImageNet trunk (torchvision
  ``features.<i>.weight|bias`` names) plus the LPIPS linear heads ``lin.<k>.weight`` (``(1, C, 1, 1)``);
* ``dists.safetensors``: DISTS's ``alpha``/``beta`` (``(1, 1475, 1, 1)``), used with the VGG16 trunk.

When a file is missing the metric is *unavailable* (:func:`load_perceptual` says why) instead of failing.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Union

import torch
from torch import nn

from ..errors import MetricUnavailable
from ..locations import cache_dir
from . import backbones as bb

FETCH_COMMAND = "python -m lua_core.metrics.fetch"
LPIPS_FILES = {"alex": "lpips_alex.safetensors", "vgg": "lpips_vgg.safetensors"}
DISTS_FILE = "dists.safetensors"
DISTS_CHANNELS = (3, 64, 128, 256, 512, 512)


def metrics_dir() -> Path:
    """Folder of the converted perceptual weights: ``$LUA_METRICS_DIR`` or ``<repo>/.cache/metrics``."""
    env = os.environ.get("LUA_METRICS_DIR")
    return Path(env) if env else cache_dir() / "metrics"





def _load(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise MetricUnavailable(f"{path.name} not found in {path.parent} (run `{FETCH_COMMAND}`)")
    from safetensors.torch import load_file

    return load_file(str(path))


def _trunk(net: str, state: dict[str, torch.Tensor]) -> nn.Sequential:
    features = bb.alexnet_features() if net == "alex" else bb.vgg16_features()
    sub = {k[len("features."):]: v.float() for k, v in state.items() if k.startswith("features.")}
    features.load_state_dict(sub, strict=True)
    return features


class LPIPS(nn.Module):
    """LPIPS v0.1 (Zhang et al. 2018): unit-normalised trunk activations, squared differences,
    per-layer linear heads, spatial mean, summed over the five layers.  Inputs in ``[0, 1]``."""

    def __init__(self, net: str = "alex", root: Optional[Union[str, Path]] = None) -> None:
        super().__init__()
        if net not in LPIPS_FILES:
            raise ValueError(f"unknown LPIPS trunk {net!r}; known: {', '.join(LPIPS_FILES)}")
        state = _load(Path(root or metrics_dir()) / LPIPS_FILES[net])
        self.net_name = net
        self.features = _trunk(net, state)
        self.taps = bb.ALEX_TAPS if net == "alex" else bb.VGG16_TAPS
        chans = bb.ALEX_CHANNELS if net == "alex" else bb.VGG16_CHANNELS
        self.lin = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in chans)
        for k, conv in enumerate(self.lin):
            conv.weight.data.copy_(state[f"lin.{k}.weight"].float().reshape(conv.weight.shape))
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1))
        self.eval().requires_grad_(False)

    @property
    def name(self) -> str:
        return "lpips" if self.net_name == "alex" else f"lpips_{self.net_name}"

    def reference(self, img: torch.Tensor) -> list[torch.Tensor]:
        """Normalised activations of ``img`` (``(B, 3, H, W)`` in [0, 1]); reuse them for many comparisons."""
        x = (img * 2 - 1 - self.shift) / self.scale
        return [f / (f.pow(2).sum(1, keepdim=True).sqrt() + 1e-10) for f in bb.tapped(self.features, x, self.taps)]

    def distance(self, img: torch.Tensor, ref: list[torch.Tensor]) -> torch.Tensor:
        """LPIPS of ``img`` against precomputed :meth:`reference` features: ``(B,)``."""
        feats = self.reference(img)
        return sum(lin((a - b) ** 2).mean((2, 3)) for lin, a, b in zip(self.lin, feats, ref)).flatten()

    def forward(self, img: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        return self.distance(img, self.reference(ref))


class DISTS(nn.Module):
    """DISTS (Ding et al. 2020, ``DISTS_pytorch`` 0.1): structure and texture similarity of VGG16 features
    (L2-pooled trunk) weighted by the learned ``alpha``/``beta``.  Inputs in ``[0, 1]``; lower is better."""

    name = "dists"

    def __init__(self, root: Optional[Union[str, Path]] = None) -> None:
        super().__init__()
        folder = Path(root or metrics_dir())
        weights = _load(folder / DISTS_FILE)
        self.features = bb.with_l2_pooling(_trunk("vgg", _load(folder / LPIPS_FILES["vgg"])))
        self.register_buffer("alpha", weights["alpha"].float().reshape(1, -1, 1, 1))
        self.register_buffer("beta", weights["beta"].float().reshape(1, -1, 1, 1))
        if self.alpha.shape[1] != sum(DISTS_CHANNELS):
            raise MetricUnavailable(f"{DISTS_FILE}: alpha has {self.alpha.shape[1]} channels, "
                                    f"expected {sum(DISTS_CHANNELS)} (re-run `{FETCH_COMMAND}`)")
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))
        self.eval().requires_grad_(False)

    def reference(self, img: torch.Tensor) -> list[torch.Tensor]:
        h = (img - self.mean) / self.std
        return [img] + bb.tapped(self.features, h, bb.VGG16_TAPS)

    def distance(self, img: torch.Tensor, ref: list[torch.Tensor]) -> torch.Tensor:
        feats = self.reference(img)
        c1 = c2 = 1e-6
        total = self.alpha.sum() + self.beta.sum()
        alphas = torch.split(self.alpha / total, DISTS_CHANNELS, dim=1)
        betas = torch.split(self.beta / total, DISTS_CHANNELS, dim=1)
        d1 = d2 = 0.0
        for x, y, a, b in zip(feats, ref, alphas, betas):
            mx, my = x.mean((2, 3), keepdim=True), y.mean((2, 3), keepdim=True)
            s1 = (2 * mx * my + c1) / (mx ** 2 + my ** 2 + c1)
            vx = ((x - mx) ** 2).mean((2, 3), keepdim=True)
            vy = ((y - my) ** 2).mean((2, 3), keepdim=True)
            cov = (x * y).mean((2, 3), keepdim=True) - mx * my
            s2 = (2 * cov + c2) / (vx + vy + c2)
            d1 = d1 + (a * s1).sum(1, keepdim=True)
            d2 = d2 + (b * s2).sum(1, keepdim=True)
        return (1 - (d1 + d2)).flatten()

    def forward(self, img: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        return self.distance(img, self.reference(ref))


PERCEPTUAL_NAMES = ("lpips", "dists")


def load_perceptual(device: Union[str, torch.device] = "cpu", root: Optional[Union[str, Path]] = None,
                    names: tuple[str, ...] = PERCEPTUAL_NAMES) -> tuple[dict[str, nn.Module], dict[str, str]]:
    """Build the perceptual metrics that can run: ``({name: module}, {name: why unavailable})``."""
    ready: dict[str, nn.Module] = {}
    missing: dict[str, str] = {}
    for name in names:
        try:
            module = LPIPS("alex", root) if name == "lpips" else DISTS(root) if name == "dists" else None
            if module is None:
                raise ValueError(f"unknown perceptual metric {name!r}; known: {', '.join(PERCEPTUAL_NAMES)}")
            ready[name] = module.to(device)
        except MetricUnavailable as exc:
            missing[name] = f"unavailable ({exc})"
    return ready, missing
