"""The AutoencoderKL encoder of SD1.5 / SDXL / SD3 / FLUX.1, built from its config (random weights).

Only for timing (the cost of the VAE teacher's target-size encode); the layout mirrors the decoder of
:mod:`.vae_decoder`: ``conv_in`` 3x3 (3 -> 128), four down blocks of two resnets (widths 128, 256, 512, 512),
the first three followed by a stride-2 3x3 conv, the mid block (resnet, single-head attention, resnet),
GroupNorm -> SiLU -> ``conv_out`` 3x3 to twice the latent channels (mean and log-variance), and for SD1.5/SDXL
a 1x1 ``quant_conv``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .vae_decoder import DecoderConfig, ResBlock, SelfAttention, decoder_config


class DownBlock(nn.Module):
    """``layers`` resnets, then (optionally) a stride-2 3x3 conv (right/bottom padding, as the reference)."""

    def __init__(self, cin: int, cout: int, layers: int, groups: int, downsample: bool) -> None:
        super().__init__()
        self.resnets = nn.ModuleList(ResBlock(cin if i == 0 else cout, cout, groups) for i in range(layers))
        self.down_conv = nn.Conv2d(cout, cout, 3, 2, 0) if downsample else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for r in self.resnets:
            x = r(x)
        if self.down_conv is not None:
            x = self.down_conv(F.pad(x, (0, 1, 0, 1)))
        return x


class KLEncoder(nn.Module):
    """The KL-VAE encoder: ``(B, 3, 8h, 8w)`` -> ``(B, 2 * latent_channels, h, w)``."""

    def __init__(self, config: DecoderConfig) -> None:
        super().__init__()
        chans, g, lc = config.block_out_channels, config.norm_groups, config.latent_channels
        self.conv_in = nn.Conv2d(3, chans[0], 3, 1, 1)
        blocks, prev = [], chans[0]
        for i, cout in enumerate(chans):
            blocks.append(DownBlock(prev, cout, config.layers_per_block, g, downsample=i < len(chans) - 1))
            prev = cout
        self.down = nn.ModuleList(blocks)
        self.mid = nn.ModuleList([ResBlock(prev, prev, g), SelfAttention(prev, g), ResBlock(prev, prev, g)])
        self.norm_out = nn.GroupNorm(g, prev, eps=1e-6)
        self.conv_out = nn.Conv2d(prev, 2 * lc, 3, 1, 1)
        self.quant_conv = nn.Conv2d(2 * lc, 2 * lc, 1) if config.post_quant_conv else None

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        x = self.conv_in(img)
        for blk in self.down:
            x = blk(x)
        for m in self.mid:
            x = m(x)
        x = self.conv_out(F.silu(self.norm_out(x)))
        return self.quant_conv(x) if self.quant_conv is not None else x


def build_encoder(family: str, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> KLEncoder:
    """A randomly initialised encoder of ``family`` in eval mode without gradients."""
    return KLEncoder(decoder_config(family)).eval().requires_grad_(False).to(device=device, dtype=dtype)
