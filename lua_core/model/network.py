"""The LUA network: a shared SwinIR-style trunk and one pixel-shuffle head per scale.

``forward(z, scale, chunks=Chunks(...))`` is the memory-bounded inference pass the
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
from dataclasses import dataclass
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn

from .config import LUAConfig
from .swin import RSTB, conv_rows, row_bands
from .teacher_skip import TeacherSkip


@dataclass(frozen=True)
class Chunks:
    """Band sizes of the memory-bounded pass, in latent pixels per image.

    ``trunk``: at most this many pixels per chunk of the transformer trunk (whole
    windows for attention + MLP, at least one; whole rows for the norms and convs, at
    least one); ``head``: input pixels per row band of the upsampling head (whole rows,
    at least one).
    """

    trunk: int
    head: int

    def head_rows(self, width: int) -> int:
        """Rows per head band for a (padded) latent ``width`` wide."""
        return max(1, self.head // max(width, 1))


class _ConvStream:
    """A 3x3, stride-1, padding-1 conv applied to a map that arrives in bands of rows, top to bottom.

    Keeps the last two input rows between bands (a zero row stands in above the top and
    below the bottom, as the conv's padding), so each output row is computed exactly once
    from exactly the rows the full conv would use.
    """

    def __init__(self, conv: nn.Conv2d, post: Callable[[torch.Tensor], torch.Tensor]) -> None:
        self.conv, self.post = conv, post
        self.carry: Optional[torch.Tensor] = None

    def push(self, rows: Optional[torch.Tensor], last: bool) -> Optional[torch.Tensor]:
        if rows is None and not last:
            return None
        ref = rows if rows is not None else self.carry
        assert ref is not None
        # channels-last like the bands: torch.cat of mixed layouts falls back to NCHW (another conv kernel)
        zero = ref.new_zeros(ref.shape[0], ref.shape[1], 1, ref.shape[3]).contiguous(memory_format=torch.channels_last)
        parts = [zero if self.carry is None else self.carry]
        if rows is not None:
            parts.append(rows)
        if last:
            parts.append(zero)
        buf = torch.cat(parts, 2)
        del parts, rows
        self.carry = None if last else buf[:, :, -2:].clone()
        if buf.shape[2] < 3:
            return None
        out = F.conv2d(buf, self.conv.weight, self.conv.bias, stride=1, padding=(0, 1))
        del buf
        return self.post(out)


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
        stages = [_ConvStream(self.conv_before[0], lambda t: F.leaky_relu_(t, slope))]
        mods = list(self.upsample)
        for conv, shuffle in zip(mods[0::2], mods[1::2]):
            stages.append(_ConvStream(conv, lambda t, ps=shuffle: F.pixel_shuffle(t, ps.upscale_factor)))
        stages.append(_ConvStream(self.conv_last, lambda t: t))
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


def round_up(n: int, multiple: int) -> int:
    """``n`` rounded up to a multiple of ``multiple`` (a side padded to whole windows)."""
    return -(-n // multiple) * multiple


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


def add_bicubic_rows(out: torch.Tensor, x: torch.Tensor, scale: int, rows: int) -> None:
    """``out += bicubic(x, scale)`` (align_corners=False), computed in bands of ``rows`` input rows.

    Each band reads two rows of halo on either side, clamped at the edges exactly as
    the full interpolation clamps, so the sum is the full interpolation's.
    """
    h = x.shape[2]
    for a, b in row_bands(h, rows):
        lo, hi = max(a - 2, 0), min(b + 2, h)
        up = F.interpolate(x[:, :, lo:hi], scale_factor=scale, mode="bicubic", align_corners=False)
        out[:, :, a * scale:b * scale] += up[:, :, (a - lo) * scale:(b - lo) * scale]


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

    def forward(self, z: torch.Tensor, scale: int = 2, skip: bool = True, *,
                chunks: Optional[Chunks] = None, teacher: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``skip=False`` leaves out the skip (the tiled engine adds it once over the whole latent).

        ``chunks`` selects the memory-bounded pass (same numbers, bounded temporaries; see
        the module docstring); it is ignored while autograd records.  ``teacher`` (a ``tae``-skip
        network only): a raw latent at the output size that takes the place of the network's own
        teacher, e.g. ``encode(bicubic(decode(z)))`` with the user's full VAE.
        """
        if teacher is not None:
            return self.forward(z, scale, False, chunks=chunks) + self.external_skip_term(teacher)
        if scale not in self.config.scales:
            raise ValueError(f"this LUA model has heads for scales {list(self.config.scales)}, not x{scale}")
        cfg = self.config
        h, w = z.shape[-2:]
        x = (z - cfg.in_shift) * cfg.in_scale if (cfg.in_shift or cfg.in_scale != 1.0) else z
        recording = torch.is_grad_enabled() and (z.requires_grad or self.conv_first.weight.requires_grad)
        if chunks is not None and not recording:
            return self._forward_chunked(x, scale, skip, chunks)
        out = self.heads[f"x{scale}"](self.features(pad_to_multiple(x, cfg.window_size)))
        out = self._add_skip(out[..., : h * scale, : w * scale], x, scale, skip)
        if cfg.in_shift or cfg.in_scale != 1.0:
            out = out / cfg.in_scale + cfg.in_shift
        return out.contiguous()

    def _forward_chunked(self, x: torch.Tensor, scale: int, skip: bool, chunks: Chunks) -> torch.Tensor:
        cfg = self.config
        b, c, h, w = x.shape
        xp = pad_to_multiple(x, cfg.window_size)
        feats = self.features_chunked(xp, chunks.trunk)
        del xp
        out = x.new_empty(b, c, h * scale, w * scale)

        def sink(band: torch.Tensor, start: int) -> None:
            stop = min(start + band.shape[2], h * scale)
            if stop > start:
                out[:, :, start:stop] = band[:, :, : stop - start, : w * scale]

        head_rows = chunks.head_rows(feats.shape[-1])
        self.heads[f"x{scale}"].forward_banded(feats, head_rows, sink)
        del feats
        if self.skip is not None:
            out.mul_(self.skip.gain)
            if skip:
                out.add_(self.skip.teacher(x, scale))
        elif skip and cfg.skip == "bicubic":
            add_bicubic_rows(out, x, scale, head_rows)
        if cfg.in_shift or cfg.in_scale != 1.0:
            out.div_(cfg.in_scale).add_(cfg.in_shift)
        return out

    def _add_skip(self, out: torch.Tensor, x: torch.Tensor, scale: int, skip: bool) -> torch.Tensor:
        """Head output ``out`` (normalised units) plus the skip of ``x``; the ``tae`` gain applies even without it."""
        if self.skip is not None:
            out = out * self.skip.gain
            return out + self.skip.teacher(x, scale) if skip else out
        if skip and self.config.skip == "bicubic":
            return out + F.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False)
        return out

    def skip_term(self, z: torch.Tensor, scale: int) -> torch.Tensor:
        """The skip's contribution to ``forward``'s raw output (zero when the config has none)."""
        cfg = self.config
        if cfg.skip == "none":
            return torch.zeros((), dtype=z.dtype, device=z.device)
        x = (z - cfg.in_shift) * cfg.in_scale
        if self.skip is not None:
            return self.skip.teacher(x, scale) / cfg.in_scale
        return F.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False) / cfg.in_scale

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
        cfg = self.config
        h, w = z.shape[-2:]
        x = (z - cfg.in_shift) * cfg.in_scale
        feats = self.features(pad_to_multiple(x, cfg.window_size))
        result = {}
        for s in cfg.scales:
            out = self._add_skip(self.heads[f"x{s}"](feats)[..., : h * s, : w * s], x, s, True)
            result[s] = (out / cfg.in_scale + cfg.in_shift).contiguous()
        return result

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
