"""Memory estimates: when one pass fits, which chunks fit, which tiles fit."""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Optional

import torch

from ..model.config import LUAConfig
from ..model.streaming import Chunks
from ..model.tiling import largest_tile, round_up, tile_spans

CPU_BUDGET_CAP = 2 << 30  # bytes; beyond this CPU speed gains from bigger tiles are negligible
CPU_BUDGET_FRACTION = 0.3
GPU_BUDGET_FRACTION = 0.6


# Estimates are multiplied by this: allocator slack and the small tensors the model ignores.
MARGIN = 1.1
# The chunked head streams bands of at least this many rows (fewer only for shorter latents).
HEAD_MIN_ROWS = 2


@dataclass(frozen=True)
class Footprint:
    """Peak activation sizes of one forward pass, in elements per *input* latent pixel of one image.

    ``plain``: the single full pass (``LUANet.forward``).  The chunked pass
    (``forward(..., chunks=...)``) holds ``trunk_keep`` per pixel of the whole latent
    plus ``trunk_chunk`` per pixel of one trunk chunk while the trunk runs, then
    ``head_keep`` per latent pixel plus ``head_chunk`` per latent pixel of one head band.

    Calibrated on CPU (peak RSS of a child process, ``MALLOC_MMAP_THRESHOLD_`` fixed so
    freed blocks leave RSS; ``python -m lua_core.bench.chunking``): for the light and
    paper configs at 128² x4 and 256² x2, plain and chunked, the estimates before
    :data:`MARGIN` were 0.97-1.26x the measured peaks.  The plain peak is either the
    trunk's attention step (three maps held: first conv output, residual-group skip,
    block input; plus qkv, attention output, concatenation and projection of every
    window) or the last upsampling stage of the head (conv output and its pixel shuffle
    at 4x the channels).  Attention scores are
    never materialised by the fused kernels (CPU flash, CUDA memory-efficient), so they
    are not counted.
    """

    plain: float
    trunk_keep: float
    trunk_chunk: float
    head_keep: float
    head_chunk: float


def footprint(config: LUAConfig, head: int) -> Footprint:
    e, f, c, r = config.embed_dim, config.head_num_feat, config.in_chans, config.mlp_ratio
    levels = max(int(head).bit_length() - 1, 1)
    last = 4 ** (levels - 1)  # input pixels of the last upsampling stage per latent pixel
    window_step = 8 * e  # window buffer + norm, qkv (3), attention output + concatenation (2), projection
    mlp_step = (2 + 2 * r) * e  # window buffer + norm, hidden features + activation
    inputs = 3 * c  # the latent, normalised, padded
    trunk_plain = 3 * e + max(window_step, (1 + 2 * r) * e)
    head_plain = e + max(8 * f * last, (f + c) * 4 * last)
    tail = 3 * c * head * head  # crop, bicubic skip, normalisation
    if config.skip == "tae":  # teacher skip: the decoded image and its bicubic upscale (RGB, 8x per side)
        tail += 3 * 64 * (head * head + 1)
    return Footprint(
        plain=max(trunk_plain, head_plain, tail) + inputs,
        trunk_keep=2 * e + inputs,
        trunk_chunk=max(window_step, mlp_step),
        head_keep=e + c * head * head + inputs,
        # last upsampling stage: its input band, line-buffered copy, conv output, pixel shuffle
        head_chunk=max(10 * f * last, (2 * f + c) * 4 * last),
    )


def _elem_size(dtype: torch.dtype) -> int:
    return torch.finfo(dtype).bits // 8 if dtype.is_floating_point else 4


def bytes_per_pixel(config: LUAConfig, head: int, dtype: torch.dtype) -> float:
    """Estimated peak activation bytes per *input* latent pixel of one plain forward pass at ``head``."""
    return float(math.ceil(footprint(config, head).plain * _elem_size(dtype) * MARGIN))


def chunk_plan(config: LUAConfig, head: int, batch: int, height: int, width: int, dtype: torch.dtype,
               budget: Optional[int], device: torch.device) -> Optional[Chunks]:
    """The largest chunks with which the chunked pass over the whole latent fits the budget, or None.

    None when even the maps the chunked pass must hold (two trunk maps; then the trunk
    output and the result) plus the smallest trunk chunk (one row, and one window) and
    :data:`HEAD_MIN_ROWS` rows of head band exceed the budget: then spatial tiles are
    needed.
    """
    budget = default_budget(device) if budget is None else int(budget)
    fp = footprint(config, head)
    w = config.window_size
    hp, wp = round_up(height, w), round_up(width, w)
    area = hp * wp
    avail = budget / (_elem_size(dtype) * max(batch, 1) * MARGIN)
    trunk = (avail - fp.trunk_keep * area) / fp.trunk_chunk
    head = (avail - fp.head_keep * area) / fp.head_chunk
    if trunk < max(wp, w * w) or head < min(HEAD_MIN_ROWS, hp) * wp:
        return None
    return Chunks(int(min(trunk, area)), int(min(head, area)))


def skip_reserve(config: LUAConfig, head: int, batch: int, height: int, width: int, dtype: torch.dtype) -> int:
    """Bytes the ``tae`` teacher skip's autoencoder passes hold beside the per-pixel estimate.

    Its tiles cover at most ``TILE_PIXELS`` image pixels with about three 64-channel maps live.
    """
    if config.skip != "tae":
        return 0
    from ..model.teacher_skip import TILE_PIXELS

    pixels = min(TILE_PIXELS, height * width * 64 * head * head)
    return int(3 * 64 * pixels * _elem_size(dtype) * max(batch, 1) * MARGIN)


def pass_peak_bytes(config: LUAConfig, head: int, batch: int, height: int, width: int, dtype: torch.dtype,
                    chunks: Optional[Chunks] = None) -> int:
    """Estimated peak activation bytes of one pass over ``batch`` latents of ``height x width`` (padded to
    whole windows): the plain pass, or the chunked pass with ``chunks``.  The teacher skip's reserve is not
    included (it depends on the whole latent, not on a tile: see :func:`skip_reserve`)."""
    w = config.window_size
    hp, wp = round_up(height, w), round_up(width, w)
    area = hp * wp
    if chunks is None:
        return int(bytes_per_pixel(config, head, dtype) * area * max(batch, 1))
    fp = footprint(config, head)
    trunk = min(area, max(chunks.trunk, wp, w * w))
    band = min(area, chunks.head_rows(wp) * wp)
    elems = max(fp.trunk_keep * area + fp.trunk_chunk * trunk, fp.head_keep * area + fp.head_chunk * band)
    return int(math.ceil(elems * _elem_size(dtype) * max(batch, 1) * MARGIN))


def plan_memory(config: LUAConfig, head: int, batch: int, height: int, width: int, dtype: torch.dtype,
                budget: Optional[int], device: torch.device,
                overlap: int) -> tuple[int, int, Optional[Chunks]]:
    """``(tile_h, tile_w, chunks)`` for the automatic mode; ``(0, 0, None)``: one plain pass.

    In order of preference: one plain pass if it fits; else one chunked pass (same
    numbers, no overlap, about the same time) with the largest chunks that fit; else
    evenly sized spatial tiles (see :func:`auto_tile_shape`) each run chunked.
    """
    budget = default_budget(device) if budget is None else int(budget)
    budget = max(budget - skip_reserve(config, head, batch, height, width, dtype), 1)
    w = config.window_size
    if pass_peak_bytes(config, head, batch, height, width, dtype) <= budget:
        return 0, 0, None
    chunks = chunk_plan(config, head, batch, height, width, dtype, budget, device)
    if chunks is not None:
        return 0, 0, chunks
    th, tw = auto_tile_shape(config, head, batch, height, width, dtype, budget, device, overlap, chunked=True)
    largest_h, largest_w = largest_tile(height, width, (th, tw), overlap, w)
    chunks = chunk_plan(config, head, batch, largest_h, largest_w, dtype, budget, device)
    if chunks is None:  # nothing fits: the smallest chunks
        chunks = Chunks(max(w * w, round_up(largest_w, w)), HEAD_MIN_ROWS * round_up(largest_w, w))
    return th, tw, chunks


def available_memory(device: torch.device) -> int:
    """Free bytes on ``device`` (CUDA: driver figure; CPU: MemAvailable)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    if hasattr(os, "sysconf"):
        try:
            return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (ValueError, OSError):
            pass
    return 4 << 30


def budget_from_free(free: int) -> int:
    """The share of an accelerator's free memory one upscale may plan for."""
    return int(free * GPU_BUDGET_FRACTION)


def default_budget(device: torch.device) -> int:
    free = available_memory(device)
    if device.type == "cuda":
        return budget_from_free(free)
    return int(min(free * CPU_BUDGET_FRACTION, CPU_BUDGET_CAP))


def auto_tile_size(config: LUAConfig, head: int, batch: int, height: int, width: int, dtype: torch.dtype,
                   budget: Optional[int], device: torch.device) -> int:
    """Largest window-multiple square tile whose estimated peak fits the budget; 0 means no tiling needed."""
    budget = default_budget(device) if budget is None else int(budget)
    per_px = bytes_per_pixel(config, head, dtype) * max(batch, 1)
    w = config.window_size
    padded = round_up(height, w) * round_up(width, w)
    if padded * per_px <= budget:
        return 0
    side = int((budget / per_px) ** 0.5) // w * w
    return max(side, 2 * w)


def widest_tile(config: LUAConfig, head: int, batch: int, tile_h: int, dtype: torch.dtype, budget: int,
                chunked: bool) -> int:
    """Widest window-multiple tile of (padded) height ``tile_h`` whose estimated peak fits ``budget``: the
    plain pass, or (``chunked``) its held maps plus the smallest trunk chunk and :data:`HEAD_MIN_ROWS`
    rows of head band."""
    w = config.window_size
    if not chunked:
        max_area = budget / (bytes_per_pixel(config, head, dtype) * max(batch, 1))
        return int(max_area // tile_h) // w * w
    fp = footprint(config, head)
    avail = budget / (_elem_size(dtype) * max(batch, 1) * MARGIN)
    rows = min(HEAD_MIN_ROWS, tile_h)
    by_head = avail / (fp.head_keep * tile_h + fp.head_chunk * rows)
    by_trunk = min(avail / (fp.trunk_keep * tile_h + fp.trunk_chunk),  # one row of trunk chunk
                   (avail - fp.trunk_chunk * w * w) / (fp.trunk_keep * tile_h))  # one window
    return int(min(by_head, by_trunk)) // w * w


def tile_heights(height: int, window: int, overlap: int) -> list[int]:
    """The tile height of each evenly sized grid of ``1, 2, ...`` rows of tiles that is worth trying
    (taller than the overlap, at least two windows)."""
    heights = [height]
    for rows in range(2, max(1, height // window) + 1):
        th = round_up(-(-(height + (rows - 1) * overlap) // rows), window)
        if height > th > overlap and th >= 2 * window:
            heights.append(th)
    return heights


def grid_cost(height: int, width: int, tile_h: int, tile_w: int, overlap: int, window: int) -> tuple[int, int]:
    """``(pixels computed, tiles)`` of the evenly tiled plan (overlaps and window padding included)."""
    ys, xs = tile_spans(height, tile_h, overlap, window), tile_spans(width, tile_w, overlap, window)
    area = sum(round_up(b - a, window) for a, b in ys) * sum(round_up(b - a, window) for a, b in xs)
    return area, len(ys) * len(xs)


def auto_tile_shape(config: LUAConfig, head: int, batch: int, height: int, width: int, dtype: torch.dtype,
                    budget: Optional[int], device: torch.device, overlap: int,
                    chunked: bool = False) -> tuple[int, int]:
    """``(tile_h, tile_w)`` for the cheapest evenly tiled plan that fits the budget; ``(0, 0)``: no tiling.

    ``chunked``: the tiles run the chunked pass, else the plain pass (see :func:`widest_tile`).
    Every grid of evenly sized tiles (see :mod:`lua_core.model.tiling`) whose largest tile fits the
    budget is a candidate; the one computing the fewest pixels in total (overlaps and window padding
    included) wins, then the one with fewer tiles.  Tiles may be non-square: 2x3 tiles of 132x96 beat
    3x3 tiles of 96x96 when the budget allows a 128x128 square.
    """
    budget = default_budget(device) if budget is None else int(budget)
    if pass_peak_bytes(config, head, batch, height, width, dtype) <= budget:
        return 0, 0
    w = config.window_size
    best: Optional[tuple[tuple[int, int], tuple[int, int]]] = None
    for th in tile_heights(height, w, overlap):
        tw_max = widest_tile(config, head, batch, round_up(th, w), dtype, budget, chunked)
        if tw_max < 2 * w or tw_max <= overlap:
            continue
        tw = width if tw_max >= round_up(width, w) else tw_max
        cost = grid_cost(height, width, th, tw, overlap, w)
        if best is None or cost < best[0]:
            best = cost, (th, tw)
    if best is None:  # nothing fits: the smallest tiles allowed
        side = max(2 * w, auto_tile_size(config, head, batch, height, width, dtype, budget, device))
        return side, side
    return best[1]
