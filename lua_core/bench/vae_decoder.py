"""The AutoencoderKL decoder of SD1.5 / SDXL / SD3 / FLUX.1, built from its config (random weights).

Only for timing and memory: the benchmark needs the real decoder's architecture
(layers, channel widths, resolutions), not its trained weights.  Layout of the
standard KL decoder:

* ``conv_in`` 3x3: latent channels -> 512;
* mid block: resnet(512), single-head self-attention over all positions (GroupNorm,
  q/k/v/out projections, residual), resnet(512);
* four up blocks with output widths 512, 512, 256, 128, each three resnets
  (GroupNorm(32) -> SiLU -> 3x3 conv, twice, plus a 1x1 shortcut when the width
  changes), the first three followed by nearest x2 upsampling and a 3x3 conv;
* GroupNorm(32) -> SiLU -> ``conv_out`` 3x3 to RGB.

SD1.5/SDXL decode 4-channel latents through a 1x1 ``post_quant_conv`` first; SD3 and
FLUX.1 decode 16-channel latents without it.  The attention goes through
``scaled_dot_product_attention`` like the reference implementations' default
processors.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..families import FAMILIES


@dataclass(frozen=True)
class DecoderConfig:
    """Hyper-parameters of a KL decoder."""

    latent_channels: int
    block_out_channels: tuple[int, ...] = (128, 256, 512, 512)
    layers_per_block: int = 2
    norm_groups: int = 32
    post_quant_conv: bool = False
    out_channels: int = 3


# which families' VAEs decode through a post_quant_conv; FLUX.2's decoder (batch-norm, packing) is not modelled
_POST_QUANT_CONV: dict[str, bool] = {"sd15": True, "sdxl": True, "sd3": False, "flux1": False}

DECODER_CONFIGS: dict[str, DecoderConfig] = {
    name: DecoderConfig(latent_channels=FAMILIES[name].model_channels, post_quant_conv=pq)
    for name, pq in _POST_QUANT_CONV.items()
}


def decoder_config(family: str) -> DecoderConfig:
    """Decoder config for a latent family name (one of :data:`DECODER_CONFIGS`)."""
    if family not in DECODER_CONFIGS:
        raise ValueError(f"no decoder config for family {family!r}; choose one of {sorted(DECODER_CONFIGS)}")
    return DECODER_CONFIGS[family]


class ResBlock(nn.Module):
    """GroupNorm -> SiLU -> conv, twice, with a 1x1 shortcut when the width changes."""

    def __init__(self, cin: int, cout: int, groups: int) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, cin, eps=1e-6)
        self.conv1 = nn.Conv2d(cin, cout, 3, 1, 1)
        self.norm2 = nn.GroupNorm(groups, cout, eps=1e-6)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1)
        self.shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return self.shortcut(x) + h


class SelfAttention(nn.Module):
    """Single-head attention over all ``H*W`` positions (the mid block's)."""

    def __init__(self, channels: int, groups: int) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(groups, channels, eps=1e-6)
        self.q = nn.Linear(channels, channels)
        self.k = nn.Linear(channels, channels)
        self.v = nn.Linear(channels, channels)
        self.out = nn.Linear(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        t = self.norm(x).flatten(2).transpose(1, 2)  # (B, HW, C)
        q, k, v = (p(t).unsqueeze(1) for p in (self.q, self.k, self.v))
        o = F.scaled_dot_product_attention(q, k, v).squeeze(1)
        return x + self.out(o).transpose(1, 2).reshape(b, c, h, w)


class UpBlock(nn.Module):
    """``layers`` resnets, then (optionally) nearest x2 upsampling and a 3x3 conv."""

    def __init__(self, cin: int, cout: int, layers: int, groups: int, upsample: bool) -> None:
        super().__init__()
        self.resnets = nn.ModuleList(ResBlock(cin if i == 0 else cout, cout, groups) for i in range(layers))
        self.upsample_conv = nn.Conv2d(cout, cout, 3, 1, 1) if upsample else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for r in self.resnets:
            x = r(x)
        if self.upsample_conv is not None:
            x = self.upsample_conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))
        return x


class KLDecoder(nn.Module):
    """The KL-VAE decoder: ``(B, latent_channels, h, w)`` -> ``(B, 3, 8h, 8w)``."""

    def __init__(self, config: DecoderConfig) -> None:
        super().__init__()
        self.config = config
        chans = config.block_out_channels
        g = config.norm_groups
        top = chans[-1]
        lc = config.latent_channels
        self.post_quant_conv = nn.Conv2d(lc, lc, 1) if config.post_quant_conv else None
        self.conv_in = nn.Conv2d(lc, top, 3, 1, 1)
        self.mid = nn.ModuleList([ResBlock(top, top, g), SelfAttention(top, g), ResBlock(top, top, g)])
        blocks = []
        prev = top
        rev = list(reversed(chans))
        for i, cout in enumerate(rev):
            blocks.append(UpBlock(prev, cout, config.layers_per_block + 1, g, upsample=i < len(rev) - 1))
            prev = cout
        self.up = nn.ModuleList(blocks)
        self.norm_out = nn.GroupNorm(g, chans[0], eps=1e-6)
        self.conv_out = nn.Conv2d(chans[0], config.out_channels, 3, 1, 1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if self.post_quant_conv is not None:
            z = self.post_quant_conv(z)
        x = self.conv_in(z)
        for m in self.mid:
            x = m(x)
        for blk in self.up:
            x = blk(x)
        return self.conv_out(F.silu(self.norm_out(x)))

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def build_decoder(family: str, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> KLDecoder:
    """A randomly initialised decoder of ``family`` in eval mode without gradients."""
    return KLDecoder(decoder_config(family)).eval().requires_grad_(False).to(device=device, dtype=dtype)
