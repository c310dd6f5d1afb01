"""AlexNet and VGG16 convolutional trunks in plain PyTorch (torchvision's ``features`` layout, no torchvision).

Parameter names match ``torchvision.models.alexnet().features`` / ``vgg16().features``
(``<index>.weight``, ``<index>.bias``), so converted ImageNet weights load either way.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

# (out channels, kernel, stride, padding) per conv; "M" = 3x3/2 max-pool (AlexNet) or 2x2/2 (VGG)
ALEX_LAYERS: tuple = ((64, 11, 4, 2), "M", (192, 5, 1, 2), "M", (384, 3, 1, 1), (256, 3, 1, 1), (256, 3, 1, 1), "M")
VGG16_LAYERS: tuple = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")

# indices (in the features Sequential) of the ReLUs LPIPS reads
ALEX_TAPS = (1, 4, 7, 9, 11)
VGG16_TAPS = (3, 8, 15, 22, 29)
ALEX_CHANNELS = (64, 192, 384, 256, 256)
VGG16_CHANNELS = (64, 128, 256, 512, 512)


def _conv_stack(specs, pool: int) -> nn.Sequential:
    """Conv+ReLU layers from ``(c_out, kernel, stride, pad)`` specs (a bare int: 3x3, stride 1, pad 1);
    ``"M"`` is a max-pool of kernel ``pool`` and stride 2."""
    layers: list[nn.Module] = []
    c_in = 3
    for spec in specs:
        if spec == "M":
            layers.append(nn.MaxPool2d(pool, 2))
            continue
        c_out, k, s, p = (spec, 3, 1, 1) if isinstance(spec, int) else spec
        layers += [nn.Conv2d(c_in, c_out, k, s, p), nn.ReLU(inplace=False)]
        c_in = c_out
    return nn.Sequential(*layers)


def alexnet_features() -> nn.Sequential:
    """``torchvision.models.alexnet().features`` (13 modules)."""
    return _conv_stack(ALEX_LAYERS, pool=3)


def vgg16_features() -> nn.Sequential:
    """``torchvision.models.vgg16().features`` (31 modules)."""
    return _conv_stack(VGG16_LAYERS, pool=2)


class L2Pool(nn.Module):
    """DISTS's anti-aliased pooling: ``sqrt(hanning3x3 * x^2)`` with stride 2 (replaces VGG's max-pools)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        a = torch.tensor([0.5, 1.0, 0.5])  # numpy.hanning(5)[1:-1]
        g = a[:, None] * a[None, :]
        self.register_buffer("filter", (g / g.sum())[None, None].repeat(channels, 1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.conv2d(x * x, self.filter, stride=2, padding=1, groups=x.shape[1])
        return (out + 1e-12).sqrt()


def with_l2_pooling(features: nn.Sequential) -> nn.Sequential:
    """A copy of a VGG16 trunk up to relu5_3 with its first four max-pools replaced by :class:`L2Pool`."""
    layers: list[nn.Module] = []
    channels = 3
    for m in list(features)[:30]:
        if isinstance(m, nn.Conv2d):
            channels = m.out_channels
        layers.append(L2Pool(channels) if isinstance(m, nn.MaxPool2d) else m)
    return nn.Sequential(*layers)


def tapped(features: nn.Sequential, x: torch.Tensor, taps: Sequence[int]) -> list[torch.Tensor]:
    """Run ``features`` up to the last tap; return the activations after each tapped module."""
    out = []
    last = max(taps)
    for i, m in enumerate(features):
        x = m(x)
        if i in taps:
            out.append(x)
        if i == last:
            break
    return out
