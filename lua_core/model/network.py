"""The LUA network: a shared SwinIR-style trunk and one pixel-shuffle head per scale."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .config import LUAConfig
from .swin import RSTB


class PatchEmbed(nn.Module):
    """Holds the LayerNorm applied to the flattened features (``patch_embed.norm``)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)


class UpscaleHead(nn.Module):
    """conv + LeakyReLU, then [conv, PixelShuffle(2)] x log2(scale), then conv back to the latent width."""

    def __init__(self, embed_dim: int, num_feat: int, out_chans: int, scale: int, slope: float) -> None:
        super().__init__()
        self.scale = scale
        self.conv_before = nn.Sequential(nn.Conv2d(embed_dim, num_feat, 3, 1, 1), nn.LeakyReLU(slope, inplace=True))
        stages: list[nn.Module] = []
        for _ in range(int(math.log2(scale))):
            stages += [nn.Conv2d(num_feat, 4 * num_feat, 3, 1, 1), nn.PixelShuffle(2)]
        self.upsample = nn.Sequential(*stages)
        self.conv_last = nn.Conv2d(num_feat, out_chans, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_last(self.upsample(self.conv_before(x)))


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Pad bottom/right to a multiple of ``multiple``: reflect where the size allows, replicate beyond."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    while ph or pw:
        # reflect needs pad < size; a tiny latent gets reflected as far as possible, then replicated
        rh, rw = min(ph, x.shape[-2] - 1), min(pw, x.shape[-1] - 1)
        if rh == 0 and rw == 0:
            return F.pad(x, (0, pw, 0, ph), mode="replicate")
        x = F.pad(x, (0, rw, 0, rh), mode="reflect")
        ph, pw = ph - rh, pw - rw
    return x


class LUANet(nn.Module):
    """Latent Upscaler Adapter.  ``forward(z, scale)`` maps ``(B, C, H, W)`` to ``(B, C, H*s, W*s)``.

    Input and output are raw latents; any normalisation in the config is applied inside.
    """

    def __init__(self, config: LUAConfig) -> None:
        super().__init__()
        self.config = config
        c, e = config.in_chans, config.embed_dim
        self.conv_first = nn.Conv2d(c, e, 3, 1, 1)
        self.patch_embed = PatchEmbed(e)
        self.layers = nn.ModuleList(
            RSTB(e, d, h, config.window_size, config.mlp_ratio, config.qkv_bias)
            for d, h in zip(config.depths, config.num_heads)
        )
        self.norm = nn.LayerNorm(e)
        self.conv_after_body = nn.Conv2d(e, e, 3, 1, 1)
        self.heads = nn.ModuleDict(
            {f"x{s}": UpscaleHead(e, config.head_num_feat, c, s, config.leaky_relu_slope) for s in config.scales}
        )
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    @property
    def scales(self) -> tuple[int, ...]:
        return self.config.scales

    def features(self, z: torch.Tensor) -> torch.Tensor:
        """Trunk on an already normalised, window-padded input ``(B, C, H, W)`` -> ``(B, E, H, W)``.

        Works channels-last throughout: the convolutions run (faster) on NHWC memory and
        the transformer's ``(B, H, W, C)`` activations are plain views of it, no copies.
        The result is a channels-last ``(B, E, H, W)`` tensor.
        """
        feats = self.conv_first(z.contiguous(memory_format=torch.channels_last))
        t = self.patch_embed.norm(feats.permute(0, 2, 3, 1))
        for layer in self.layers:
            t = layer(t)
        t = self.norm(t).permute(0, 3, 1, 2)
        return self.conv_after_body(t) + feats

    def forward(self, z: torch.Tensor, scale: int = 2, skip: bool = True) -> torch.Tensor:
        """``skip=False`` leaves out the bicubic skip (the tiled engine adds it once over the whole latent)."""
        if scale not in self.config.scales:
            raise ValueError(f"this LUA model has heads for scales {list(self.config.scales)}, not x{scale}")
        cfg = self.config
        h, w = z.shape[-2:]
        x = (z - cfg.in_shift) * cfg.in_scale if (cfg.in_shift or cfg.in_scale != 1.0) else z
        out = self.heads[f"x{scale}"](self.features(pad_to_multiple(x, cfg.window_size)))
        out = out[..., : h * scale, : w * scale]
        if skip and cfg.skip == "bicubic":
            out = out + F.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False)
        if cfg.in_shift or cfg.in_scale != 1.0:
            out = out / cfg.in_scale + cfg.in_shift
        return out.contiguous()

    def skip_term(self, z: torch.Tensor, scale: int) -> torch.Tensor:
        """The bicubic skip's contribution to ``forward``'s raw output (zero when the config has none)."""
        cfg = self.config
        if cfg.skip != "bicubic":
            return torch.zeros((), dtype=z.dtype, device=z.device)
        x = (z - cfg.in_shift) * cfg.in_scale
        return F.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False) / cfg.in_scale

    def forward_all(self, z: torch.Tensor) -> dict[int, torch.Tensor]:
        """Every head on one shared trunk pass (used in multi-scale training)."""
        cfg = self.config
        h, w = z.shape[-2:]
        x = (z - cfg.in_shift) * cfg.in_scale
        feats = self.features(pad_to_multiple(x, cfg.window_size))
        result = {}
        for s in cfg.scales:
            out = self.heads[f"x{s}"](feats)[..., : h * s, : w * s]
            if cfg.skip == "bicubic":
                out = out + F.interpolate(x, scale_factor=s, mode="bicubic", align_corners=False)
            result[s] = (out / cfg.in_scale + cfg.in_shift).contiguous()
        return result

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
