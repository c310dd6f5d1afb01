"""How one network pass is split, decided once: a plain pass, a chunked pass, or spatial tiles."""
from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any, Optional

import torch

from ..model.config import LUAConfig
from ..model.network import LUANet
from ..model.streaming import Chunks
from ..model.tiling import largest_tile, round_up
from .memory import default_budget, pass_peak_bytes, plan_memory, skip_reserve


@dataclass(frozen=True)
class TilePlan:
    """How one upscale is split.

    ``tile_h`` x ``tile_w`` is the largest tile (0 x 0: the whole latent in one pass);
    ``overlap`` the overlap between neighbouring tiles; ``batch_chunk`` the images per pass;
    ``chunks`` (None: the plain pass) runs each pass (the whole latent or each tile) chunked:
    same numbers, bounded memory, no overlap.
    """

    tile_h: int
    tile_w: int
    overlap: int
    batch_chunk: int
    chunks: Optional[Chunks] = None

    @property
    def tiled(self) -> bool:
        return self.tile_h > 0

    @property
    def shape(self) -> tuple[int, int]:
        """``(tile_h, tile_w)``."""
        return self.tile_h, self.tile_w


def check_tiling_options(tile_size: Any, tile_overlap: Any, memory_budget: Any) -> int:
    """Check the tiling options (ValueError naming the option) and return ``tile_size``: 0 is automatic,
    its one sentinel.  ``tile_overlap`` and ``memory_budget`` may be None (their defaults)."""
    if tile_size is None:
        raise ValueError("tile_size must be an integer >= 0 (0 = automatic), got None")
    for name, value in (("tile_size", tile_size), ("tile_overlap", tile_overlap), ("memory_budget", memory_budget)):
        if value is None:
            continue
        if not isinstance(value, numbers.Integral) or isinstance(value, bool):
            raise ValueError(f"{name} must be an integer or None, got {value!r}")
        if value < 0:
            hint = " (0 = automatic)" if name == "tile_size" else ""
            raise ValueError(f"{name} must be >= 0{hint}, got {value}")
    return int(tile_size or 0)


def make_tile_plan(config: LUAConfig, head: int, batch: int, height: int, width: int, dtype: torch.dtype,
                   device: torch.device, tile_size: int, overlap: Optional[int], budget: Optional[int]) -> TilePlan:
    """Resolve checked tiling options against the model and a ``(batch, height, width)`` model-layout latent
    (``budget`` None: :func:`~.memory.default_budget` of ``device``, read once).

    Automatic mode (``tile_size`` 0): one plain pass when it fits the memory budget; else one
    chunked pass (windows and head rows in bands: same numbers, about the same time) when that
    fits; only else spatial tiles, the grid computing the fewest pixels that fits (tiles as large
    as the budget allows, possibly non-square), each run chunked, with an overlap of one window
    unless ``overlap`` is given.  A positive ``tile_size`` gives plain spatial tiles of that size.
    """
    budget = default_budget(device) if budget is None else int(budget)
    w = config.window_size
    chunks: Optional[Chunks] = None
    automatic = tile_size == 0
    if automatic:
        tile_h, tile_w, chunks = plan_memory(config, head, 1, height, width, dtype, budget, device,
                                             w if overlap is None else int(overlap))
        if overlap is None:
            overlap = w if tile_h else 0
    else:
        tile_h = tile_w = round_up(tile_size, w)
    if tile_h and tile_h >= height and tile_w >= width:
        tile_h = tile_w = 0
    if overlap is None:
        overlap = max(w, tile_h // 4) if tile_h else 0
    if tile_h:
        overlap = min(int(overlap), min(tile_h, tile_w) // 2)
    else:
        tile_w = 0
    batch_chunk = batch
    if tile_h or automatic:
        # several tiles' (or chunked passes') worth of memory never go to one pass: split the batch too
        batch_chunk = 1 if (tile_h or chunks) else _batch_that_fits(config, head, batch, height, width, dtype,
                                                                    budget)
    return TilePlan(tile_h, tile_w, int(overlap), batch_chunk, chunks)


def _batch_that_fits(config: LUAConfig, head: int, batch: int, height: int, width: int, dtype: torch.dtype,
                     budget: int) -> int:
    for b in range(batch, 0, -1):
        if pass_peak_bytes(config, head, b, height, width, dtype) <= budget:
            return b
    return 1


def plan_tiles(net: LUANet, x: torch.Tensor, head: int, tile_size: int = 0,
               overlap: Optional[int] = None, memory_budget: Optional[int] = None) -> TilePlan:
    """:func:`make_tile_plan` for the model-layout latent ``x`` ``(B, C, H, W)`` (its dtype and device),
    with the options checked; ``memory_budget`` None: :func:`~.memory.default_budget` of its device."""
    tile_size = check_tiling_options(tile_size, overlap, memory_budget)
    b, _, h, w = x.shape
    return make_tile_plan(net.config, head, b, h, w, x.dtype, x.device, tile_size, overlap, memory_budget)


def plan_peak_bytes(config: LUAConfig, head: int, plan: TilePlan, height: int, width: int,
                    dtype: torch.dtype) -> int:
    """Estimated peak bytes beside the weights of running ``plan`` on ``height x width`` latents: one
    pass over its largest tile (or the whole latent) for ``batch_chunk`` images, plus the teacher
    skip's reserve.  In automatic mode this is the figure the plan was fitted to the budget with."""
    th, tw = height, width
    if plan.tiled:
        th, tw = largest_tile(height, width, plan.shape, plan.overlap, config.window_size)
    return (pass_peak_bytes(config, head, plan.batch_chunk, th, tw, dtype, plan.chunks)
            + skip_reserve(config, head, plan.batch_chunk, height, width, dtype))
