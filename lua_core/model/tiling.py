"""Cutting a latent into windows and tiles, and putting the pieces back.

Two tilings share these spans:

* :func:`run_tiled` (the engine's spatial tiles): overlapping tiles whose outputs are
  feather-blended across the overlaps.  Tiles along an axis are *evenly sized*: for a
  requested tile ``T`` and overlap ``O`` the axis gets the fewest tiles of at most ``T``
  that cover it with at least ``O`` of overlap, and then every tile is shrunk to the
  smallest size (rounded up to ``multiple``, the network's window) that still covers the
  axis exactly with that overlap.  A stride of ``T - O`` with a clamped last tile would
  compute e.g. a 128-px axis with ``T=64, O=16`` as three 64-px tiles (2.25x the pixels in
  2-D); the even plan uses three 56-px tiles (1.72x) and never more pixels.
* :func:`run_with_context` (the teacher skip's autoencoder passes): disjoint core tiles,
  each computed with ``margin`` pixels of context around it and cropped back to its core,
  for operators with a local receptive field.

:func:`round_up` and :func:`pad_to_multiple` pad a latent to whole windows.
"""
from __future__ import annotations

from typing import Callable, Optional, Union

import torch
import torch.nn.functional as F


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


TileSize = Union[int, tuple[int, int]]


def tile_spans(length: int, tile: int, overlap: int, multiple: int = 1) -> list[tuple[int, int]]:
    """``(start, stop)`` of evenly sized tiles covering ``[0, length)`` with >= ``overlap`` between neighbours.

    No tile is longer than ``tile``; the tile count is the same as a stride of
    ``tile - overlap`` would give, and the tile length is the smallest multiple of
    ``multiple`` (capped at ``tile``) for which that count still covers the axis.
    """
    if tile >= length:
        return [(0, length)]
    step = max(tile - overlap, 1)
    n = 1 + -(-(length - tile) // step)
    ov = tile - step
    size = -(-(length + (n - 1) * ov) // n)
    size = min(tile, round_up(size, multiple))
    free = length - size
    starts = [(i * free + (n - 1) // 2) // (n - 1) for i in range(n)]
    return [(s, s + size) for s in starts]


def largest_tile(height: int, width: int, tile: TileSize, overlap: int, multiple: int = 1) -> tuple[int, int]:
    """``(height, width)`` of the largest tile of the evenly tiled plan."""
    th, tw = _pair(tile)
    return (max(b - a for a, b in tile_spans(height, th, overlap, multiple)),
            max(b - a for a, b in tile_spans(width, tw, overlap, multiple)))


def pixel_overhead(height: int, width: int, tile: TileSize, overlap: int, multiple: int = 1) -> float:
    """Pixels computed by the tiled plan divided by the pixels of one untiled pass (1.0 = no overhead)."""
    th, tw = _pair(tile)
    ys = tile_spans(height, th, overlap, multiple)
    xs = tile_spans(width, tw, overlap, multiple)
    return sum(b - a for a, b in ys) * sum(b - a for a, b in xs) / float(height * width)


def feather_ramp(size: int, lead: int, trail: int, device: torch.device) -> torch.Tensor:
    """1-D weights: linear ramps over the first ``lead`` and last ``trail`` samples, 1 elsewhere (never 0)."""
    w = torch.ones(size, device=device)
    if lead > 0:
        w[:lead] = torch.minimum(w[:lead], (torch.arange(lead, device=device) + 0.5) / lead)
    if trail > 0:
        w[size - trail:] = torch.minimum(w[size - trail:], (torch.arange(trail, 0, -1, device=device) - 0.5) / trail)
    return w


def _pair(tile: TileSize) -> tuple[int, int]:
    return (int(tile[0]), int(tile[1])) if isinstance(tile, (tuple, list)) else (int(tile), int(tile))


def count_tiles(height: int, width: int, tile: TileSize, overlap: int, multiple: int = 1) -> int:
    th, tw = _pair(tile)
    return len(tile_spans(height, th, overlap, multiple)) * len(tile_spans(width, tw, overlap, multiple))


def _ramps(spans: list[tuple[int, int]], factor: int, device: torch.device) -> list[torch.Tensor]:
    ramps = []
    for i, (a, b) in enumerate(spans):
        lead = spans[i - 1][1] - a if i > 0 else 0
        trail = b - spans[i + 1][0] if i + 1 < len(spans) else 0
        ramps.append(feather_ramp((b - a) * factor, max(lead, 0) * factor, max(trail, 0) * factor, device))
    return ramps


def run_tiled(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, factor: int, tile: TileSize, overlap: int,
              on_tile: Callable[[], None] = lambda: None, multiple: int = 1) -> torch.Tensor:
    """Apply ``fn`` (``(B,C,h,w)`` -> ``(B,C,h*factor,w*factor)``) tile by tile and blend the overlaps.

    Each tile's contribution is weighted by a ramp across the part it shares with a
    neighbour, so seams fade instead of cutting.  ``on_tile`` runs after every tile.
    ``multiple`` rounds the (evenly sized) tiles up to the network's window.
    """
    b, c, h, w = x.shape
    th, tw = _pair(tile)
    ys, xs = tile_spans(h, th, overlap, multiple), tile_spans(w, tw, overlap, multiple)
    wys, wxs = _ramps(ys, factor, x.device), _ramps(xs, factor, x.device)
    out = None
    weight = torch.zeros(1, 1, h * factor, w * factor, device=x.device, dtype=torch.float32)
    for (y0, y1), wy in zip(ys, wys):
        for (x0, x1), wx in zip(xs, wxs):
            piece = fn(x[:, :, y0:y1, x0:x1])
            if out is None:
                out = torch.zeros(b, piece.shape[1], h * factor, w * factor, device=x.device, dtype=torch.float32)
            wt = (wy[:, None] * wx[None, :])[None, None]
            out[:, :, y0 * factor:y1 * factor, x0 * factor:x1 * factor].addcmul_(piece.float(), wt)
            weight[:, :, y0 * factor:y1 * factor, x0 * factor:x1 * factor] += wt
            on_tile()
    assert out is not None
    return out.div_(weight).to(x.dtype)


def core_tiles(height: int, width: int, core: int) -> list[tuple[int, int, int, int]]:
    """``(top, left, bottom, right)`` of disjoint tiles of at most ``core`` x ``core`` covering the map."""
    return [(t, l, min(t + core, height), min(l + core, width))
            for t in range(0, height, core) for l in range(0, width, core)]


def run_with_context(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, factor: float, core: int,
                     margin: int) -> torch.Tensor:
    """``fn`` (output ``factor`` x its input's size) over disjoint ``core`` tiles of ``x``, each run with
    ``margin`` pixels of context on every side (fewer at the edges) and cropped back to its core."""
    h, w = x.shape[-2:]
    out: Optional[torch.Tensor] = None

    def at(v: int) -> int:
        return int(v * factor)

    for top, left, bottom, right in core_tiles(h, w, core):
        t0, l0 = max(top - margin, 0), max(left - margin, 0)
        y = fn(x[..., t0:min(bottom + margin, h), l0:min(right + margin, w)])
        if out is None:
            out = y.new_empty(*y.shape[:2], at(h), at(w))
        out[..., at(top):at(bottom), at(left):at(right)] = \
            y[..., at(top - t0):at(bottom - t0), at(left - l0):at(right - l0)]
    assert out is not None
    return out
