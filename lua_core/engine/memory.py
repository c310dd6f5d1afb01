"""Memory estimates used to pick a tile size automatically."""
from __future__ import annotations

import os
from typing import Optional

import torch

from ..model.config import LUAConfig

CPU_BUDGET_CAP = 2 << 30  # bytes; beyond this CPU speed gains from bigger tiles are negligible
CPU_BUDGET_FRACTION = 0.3
GPU_BUDGET_FRACTION = 0.6


def bytes_per_pixel(config: LUAConfig, scale: int, dtype: torch.dtype) -> float:
    """Rough peak activation bytes per *input* latent pixel for one forward pass at ``scale``."""
    e, f, n = config.embed_dim, config.head_num_feat, config.window_size ** 2
    heads = max(config.num_heads)
    trunk = e * (6 + config.mlp_ratio)
    attention = 3 * n * heads  # scores, softmax output, bias+shift mask
    head = f * (1 + sum(8 * 4 ** i for i in range(int(scale).bit_length() - 1)))
    out = config.in_chans * scale * scale * 3
    size = torch.finfo(dtype).bits // 8 if dtype.is_floating_point else 4
    return float(size * (trunk + attention + head + out))


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


def default_budget(device: torch.device) -> int:
    free = available_memory(device)
    if device.type == "cuda":
        return int(free * GPU_BUDGET_FRACTION)
    return int(min(free * CPU_BUDGET_FRACTION, CPU_BUDGET_CAP))


def auto_tile_size(config: LUAConfig, scale: int, batch: int, height: int, width: int, dtype: torch.dtype,
                   budget: Optional[int], device: torch.device) -> int:
    """Largest window-multiple square tile whose estimated peak fits the budget; 0 means no tiling needed."""
    budget = default_budget(device) if budget is None else int(budget)
    per_px = bytes_per_pixel(config, scale, dtype) * max(batch, 1)
    w = config.window_size
    padded = (-(-height // w) * w) * (-(-width // w) * w)
    if padded * per_px <= budget:
        return 0
    side = int((budget / per_px) ** 0.5) // w * w
    return max(side, 2 * w)


def auto_tile_shape(config: LUAConfig, scale: int, batch: int, height: int, width: int, dtype: torch.dtype,
                    budget: Optional[int], device: torch.device, overlap: int) -> tuple[int, int]:
    """``(tile_h, tile_w)`` for the cheapest evenly tiled plan that fits the budget; ``(0, 0)``: no tiling.

    Every grid of ``n_h x n_w`` evenly sized tiles (see :mod:`.tiling`) whose largest
    tile fits the budget is a candidate; the one computing the fewest pixels in total
    (overlaps and window padding included) wins, then the one with fewer tiles.
    Tiles may be non-square: 2x3 tiles of 132x96 beat 3x3 tiles of 96x96 when the
    budget allows a 128x128 square.
    """
    from .tiling import tile_spans

    budget = default_budget(device) if budget is None else int(budget)
    per_px = bytes_per_pixel(config, scale, dtype) * max(batch, 1)
    w = config.window_size
    pad = lambda n: -(-n // w) * w  # noqa: E731
    if pad(height) * pad(width) * per_px <= budget:
        return 0, 0
    max_area = budget / per_px
    best: Optional[tuple[int, int]] = None
    best_shape = (0, 0)
    for nh in range(1, max(1, height // w) + 1):
        if nh == 1:
            th = height
        else:
            th = pad(-(-(height + (nh - 1) * overlap) // nh))
            if th >= height or th <= overlap or th < 2 * w:
                continue
        ys = tile_spans(height, th, overlap, w)
        tw_max = int(max_area // pad(th)) // w * w
        if tw_max < 2 * w or tw_max <= overlap:
            continue
        tw = width if tw_max >= pad(width) else tw_max
        xs = tile_spans(width, tw, overlap, w)
        area = sum(pad(b - a) for a, b in ys) * sum(pad(b - a) for a, b in xs)
        key = (area, len(ys) * len(xs))
        if best is None or key < best:
            best = key
            best_shape = (th, tw)
    if best is None:  # nothing fits: the smallest tiles allowed
        side = max(2 * w, auto_tile_size(config, scale, batch, height, width, dtype, budget, device))
        return side, side
    return best_shape
