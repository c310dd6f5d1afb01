"""Overlapping tiles with feathered blending."""
from __future__ import annotations

from typing import Callable, Iterator

import torch


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets covering ``[0, length)`` with tiles of ``tile`` overlapping by at least ``overlap``."""
    if tile >= length:
        return [0]
    stride = max(tile - overlap, 1)
    starts = list(range(0, length - tile, stride))
    starts.append(length - tile)
    return starts


def feather_ramp(size: int, lead: int, trail: int, device: torch.device) -> torch.Tensor:
    """1-D weights: linear ramps over the first ``lead`` and last ``trail`` samples, 1 elsewhere (never 0)."""
    w = torch.ones(size, device=device)
    if lead > 0:
        w[:lead] = torch.minimum(w[:lead], (torch.arange(lead, device=device) + 0.5) / lead)
    if trail > 0:
        w[size - trail:] = torch.minimum(w[size - trail:], (torch.arange(trail, 0, -1, device=device) - 0.5) / trail)
    return w


def iter_tiles(height: int, width: int, tile: int, overlap: int) -> Iterator[tuple[int, int, int, int]]:
    """Yield ``(y0, y1, x0, x1)`` for every tile, row by row."""
    for y0 in tile_starts(height, tile, overlap):
        for x0 in tile_starts(width, tile, overlap):
            yield y0, min(y0 + tile, height), x0, min(x0 + tile, width)


def count_tiles(height: int, width: int, tile: int, overlap: int) -> int:
    return len(tile_starts(height, tile, overlap)) * len(tile_starts(width, tile, overlap))


def run_tiled(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, scale: int, tile: int, overlap: int,
              on_tile: Callable[[], None] = lambda: None) -> torch.Tensor:
    """Apply ``fn`` (``(B,C,h,w)`` -> ``(B,C,h*s,w*s)``) tile by tile and blend the overlaps.

    Each tile's contribution is weighted by a ramp across the part it shares with a
    neighbour, so seams fade instead of cutting.  ``on_tile`` runs after every tile.
    """
    b, c, h, w = x.shape
    out = None
    weight = torch.zeros(1, 1, h * scale, w * scale, device=x.device, dtype=torch.float32)
    ys, xs = tile_starts(h, tile, overlap), tile_starts(w, tile, overlap)
    for iy, y0 in enumerate(ys):
        y1 = min(y0 + tile, h)
        top = (ys[iy - 1] + tile - y0) if iy > 0 else 0
        bottom = (y1 - ys[iy + 1]) if iy + 1 < len(ys) else 0
        wy = feather_ramp((y1 - y0) * scale, top * scale, bottom * scale, x.device)
        for ix, x0 in enumerate(xs):
            x1 = min(x0 + tile, w)
            left = (xs[ix - 1] + tile - x0) if ix > 0 else 0
            right = (x1 - xs[ix + 1]) if ix + 1 < len(xs) else 0
            wx = feather_ramp((x1 - x0) * scale, left * scale, right * scale, x.device)
            piece = fn(x[:, :, y0:y1, x0:x1])
            if out is None:
                out = torch.zeros(b, piece.shape[1], h * scale, w * scale, device=x.device, dtype=torch.float32)
            wt = (wy[:, None] * wx[None, :])[None, None]
            out[:, :, y0 * scale:y1 * scale, x0 * scale:x1 * scale] += piece.float() * wt
            weight[:, :, y0 * scale:y1 * scale, x0 * scale:x1 * scale] += wt
            on_tile()
    assert out is not None
    return (out / weight).to(x.dtype)
