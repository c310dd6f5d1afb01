"""The LUA network: a shared SwinIR-style trunk and one pixel-shuffle head per scale.

``forward(z, head, chunks=Chunks(...))`` is the memory-bounded inference pass the
engine uses when one plain pass would not fit its memory budget.  It computes the same
numbers as the plain pass (the same operations on the same values; measured on CPU
bit-identical in most cases, max abs diff <= 5e-7 in fp32) with no overlap and no
recompute, keeping only

* two trunk feature maps (the working map and the residual group's skip) plus one chunk
  of windows at a time (attention, MLP hidden features: see
  :meth:`~.swin.SwinBlock.forward_chunked`); the first conv's output, needed again at
  the end of the trunk, is recomputed there band by band instead of being held;
* then the trunk output and the final output, with the upsampling head streamed over
  bands of rows: each 3x3 conv keeps the last two rows of its input as a line buffer,
  so every band flows through conv / LeakyReLU / pixel shuffle / ... / last conv
  without ever holding a full map at the upsampled resolution.
"""
from __future__ import annotations

import math
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn

from .config import LUAConfig
from .streaming import Chunks, ConvStream, add_bicubic_rows, conv_rows, row_bands
from .swin import RSTB
from .teacher_skip import TeacherSkip
from .tiling import pad_to_multiple


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

    def forward_banded(self, x: torch.Tensor, rows: int, sink: Callable[[torch.Tensor, int], None]) -> None:
        """The head over ``x`` ``(B, E, H, W)`` streamed in bands of ``rows`` input rows (no autograd).

        ``sink(band, start)`` receives consecutive bands of output rows (``start`` is the
        first output row), top to bottom; no full upsampled map is ever held.
        """
        act = self.conv_before[1]
        slope = act.negative_slope
        stages = [ConvStream(self.conv_before[0], lambda t: F.leaky_relu_(t, slope))]
        mods = list(self.upsample)
        for conv, shuffle in zip(mods[0::2], mods[1::2]):
            stages.append(ConvStream(conv, lambda t, ps=shuffle: F.pixel_shuffle(t, ps.upscale_factor)))
        stages.append(ConvStream(self.conv_last, lambda t: t))
        done = 0
        h = x.shape[2]
        for a, b in row_bands(h, rows):
            last = b == h
            t: Optional[torch.Tensor] = x[:, :, a:b]
            for stage in stages:
                t = stage.push(t, last)
                if t is None and not last:
                    break
            if t is not None:
                sink(t, done)
                done += t.shape[2]
                del t


class LUANet(nn.Module):
    """Latent Upscaler Adapter.  ``forward(z, head)`` maps ``(B, C, H, W)`` to ``(B, C, H*head, W*head)``.

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
        self.skip: Optional[TeacherSkip] = TeacherSkip(c, config.tae_groupnorm) if config.skip == "tae" else None

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

    def features_chunked(self, z: torch.Tensor, pixels: int) -> torch.Tensor:
        """:meth:`features` with bounded memory (no autograd): chunks of at most ``pixels`` pixels per image.

        Holds two ``(B, H, W, E)`` maps at a time plus one chunk's temporaries; the
        first conv's output is recomputed band by band for the final skip instead of
        being kept through the trunk.  Returns a channels-last ``(B, E, H, W)`` tensor.
        """
        zc = z.contiguous(memory_format=torch.channels_last)
        b, _, h, w = z.shape
        t = z.new_empty(b, h, w, self.config.embed_dim)
        bands = row_bands(h, pixels // w)
        for a, e in bands:
            t[:, a:e] = self.patch_embed.norm(conv_rows(self.conv_first, zc, a, e).permute(0, 2, 3, 1))
        for layer in self.layers:
            t = layer.forward_chunked(t, pixels)
        for a, e in bands:
            t[:, a:e] = self.norm(t[:, a:e])
        tc = t.permute(0, 3, 1, 2)
        feats = torch.empty_like(tc)  # channels-last like tc
        for a, e in bands:
            torch.add(conv_rows(self.conv_after_body, tc, a, e), conv_rows(self.conv_first, zc, a, e),
                      out=feats[:, :, a:e])
        return feats

    def normalise(self, z: torch.Tensor) -> torch.Tensor:
        """A raw latent in the units the network works in (the config's ``in_shift``/``in_scale``)."""
        cfg = self.config
        return (z - cfg.in_shift) * cfg.in_scale if (cfg.in_shift or cfg.in_scale != 1.0) else z

    def denormalise(self, out: torch.Tensor, in_place: bool = False) -> torch.Tensor:
        """The network's output back in raw latent units (the inverse of :meth:`normalise`)."""
        cfg = self.config
        if not (cfg.in_shift or cfg.in_scale != 1.0):
            return out
        return out.div_(cfg.in_scale).add_(cfg.in_shift) if in_place else out / cfg.in_scale + cfg.in_shift

    def forward(self, z: torch.Tensor, head: int = 2, skip: bool = True, *,
                chunks: Optional[Chunks] = None, teacher: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The ``x{head}`` upscale of a raw latent.  ``skip=False`` leaves out the skip (the tiled engine
        adds it once over the whole latent).

        ``chunks`` selects the memory-bounded pass (same numbers, bounded temporaries; see
        the module docstring); it is ignored while autograd records.  ``teacher`` (a ``tae``-skip
        network only): a raw latent at the output size that takes the place of the network's own
        teacher, e.g. ``encode(bicubic(decode(z)))`` with the user's full VAE.
        """
        if teacher is not None:
            return self.forward(z, head, False, chunks=chunks) + self.external_skip_term(teacher)
        if head not in self.config.scales:
            raise ValueError(f"this LUA model has heads for scales {list(self.config.scales)}, not x{head}")
        h, w = z.shape[-2:]
        x = self.normalise(z)
        recording = torch.is_grad_enabled() and (z.requires_grad or self.conv_first.weight.requires_grad)
        if chunks is not None and not recording:
            return self._forward_chunked(x, head, skip, chunks)
        out = self.heads[f"x{head}"](self.features(pad_to_multiple(x, self.config.window_size)))
        out = self.add_skip(out[..., : h * head, : w * head], x, head, skip)
        return self.denormalise(out).contiguous()

    def _forward_chunked(self, x: torch.Tensor, head: int, skip: bool, chunks: Chunks) -> torch.Tensor:
        b, c, h, w = x.shape
        xp = pad_to_multiple(x, self.config.window_size)
        feats = self.features_chunked(xp, chunks.trunk)
        del xp
        out = x.new_empty(b, c, h * head, w * head)

        def sink(band: torch.Tensor, start: int) -> None:
            stop = min(start + band.shape[2], h * head)
            if stop > start:
                out[:, :, start:stop] = band[:, :, : stop - start, : w * head]

        head_rows = chunks.head_rows(feats.shape[-1])
        self.heads[f"x{head}"].forward_banded(feats, head_rows, sink)
        del feats
        return self.denormalise(self.add_skip(out, x, head, skip, rows=head_rows), in_place=True)

    def skip_of(self, x: torch.Tensor, head: int) -> Optional[torch.Tensor]:
        """The skip of a normalised latent ``x`` at ``head`` x its size, in network units: the teacher
        (``tae``), the bicubic upsample (``bicubic``), or None (``none``)."""
        if self.skip is not None:
            return self.skip.teacher(x, head)
        if self.config.skip == "bicubic":
            return F.interpolate(x, scale_factor=head, mode="bicubic", align_corners=False)
        return None

    def add_skip(self, out: torch.Tensor, x: torch.Tensor, head: int, skip: bool = True,
                 rows: Optional[int] = None) -> torch.Tensor:
        """Head output ``out`` (network units) plus the skip of ``x``; the ``tae`` gain applies even without it.

        ``rows``: work in place on ``out`` and add a bicubic skip in bands of that many input rows
        (the chunked pass, which never holds a second full-size map).
        """
        if self.skip is not None:
            out = out.mul_(self.skip.gain) if rows is not None else out * self.skip.gain
        if not skip:
            return out
        if rows is not None and self.skip is None and self.config.skip == "bicubic":
            add_bicubic_rows(out, x, head, rows)
            return out
        term = self.skip_of(x, head)
        if term is None:
            return out
        return out.add_(term) if rows is not None else out + term

    def skip_term(self, z: torch.Tensor, head: int) -> torch.Tensor:
        """The skip's contribution to ``forward``'s raw output for the raw latent ``z`` (zero without a skip)."""
        term = self.skip_of(self.normalise(z), head)
        if term is None:
            return torch.zeros((), dtype=z.dtype, device=z.device)
        return term / self.config.in_scale

    def external_skip_term(self, teacher: torch.Tensor) -> torch.Tensor:
        """The skip term (as :meth:`skip_term`) of a teacher computed outside: a raw latent at the output size.

        Only a ``tae``-skip network has a residual made for an ``encode(bicubic(decode(z)))`` teacher.
        """
        if self.skip is None:
            raise ValueError(f"this adapter's residual sits on a {self.config.skip!r} skip, not on a VAE teacher; "
                             "only teacher-skip adapters (lua_light_*) take a VAE")
        return teacher - self.config.in_shift

    def forward_all(self, z: torch.Tensor) -> dict[int, torch.Tensor]:
        """Every head on one shared trunk pass (used in multi-scale training)."""
        h, w = z.shape[-2:]
        x = self.normalise(z)
        feats = self.features(pad_to_multiple(x, self.config.window_size))
        result = {}
        for s in self.config.scales:
            out = self.add_skip(self.heads[f"x{s}"](feats)[..., : h * s, : w * s], x, s)
            result[s] = self.denormalise(out).contiguous()
        return result

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
