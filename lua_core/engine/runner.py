"""Run a LUA network over a batch of model-layout latents: tiles, memory, progress, cancel."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Optional

import torch

from ..errors import UpscaleCancelled
from ..model.network import Chunks, LUANet, pad_to_multiple, round_up
from .memory import auto_tile_size, bytes_per_pixel, chunk_plan, plan_memory
from .tiling import count_tiles, run_tiled

log = logging.getLogger(__name__)

ProgressFn = Callable[[int, int], None]
CancelFn = Callable[[], Optional[bool]]


@dataclass
class TilePlan:
    """How one upscale is split: ``tile`` 0 means the whole latent in one pass.

    ``tile`` is the tile height and, unless ``tile_w`` is set, also its width.
    ``chunks`` (None: the plain pass) runs each pass (the whole latent or each tile)
    chunked: same numbers, bounded memory, no overlap.
    """

    tile: int
    overlap: int
    batch_chunk: int
    tile_w: Optional[int] = None
    chunks: Optional[Chunks] = None

    @property
    def shape(self) -> tuple[int, int]:
        """``(tile_h, tile_w)``."""
        return self.tile, (self.tile_w or self.tile)


def is_oom(exc: BaseException) -> bool:
    if isinstance(exc, getattr(torch, "OutOfMemoryError", ())):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


def plan_tiles(net: LUANet, x: torch.Tensor, scale: int, tile_size: Optional[int], overlap: Optional[int],
               memory_budget: Optional[int]) -> TilePlan:
    """Resolve the user's tiling options against the model and input size.

    Automatic mode (``tile_size`` 0 or None): one plain pass when it fits the memory
    budget; else one chunked pass (windows and head rows in bands: same numbers, about
    the same time) when that fits; only else spatial tiles, the grid computing the
    fewest pixels that fits (tiles as large as the budget allows, possibly
    non-square), each run chunked, with an overlap of one window unless ``overlap``
    is given.  An explicit ``tile_size`` gives plain spatial tiles of that size.
    """
    cfg = net.config
    w = cfg.window_size
    b, _, h, wd = x.shape
    if overlap is not None and overlap < 0:
        raise ValueError(f"tile_overlap must be >= 0, got {overlap}")
    tile_w: Optional[int] = None
    chunks: Optional[Chunks] = None
    if tile_size is not None and tile_size < 0:
        raise ValueError(f"tile_size must be >= 0 (0 = automatic), got {tile_size}")
    automatic = not tile_size
    if automatic:
        tile, tile_w, chunks = plan_memory(cfg, scale, 1, h, wd, x.dtype, memory_budget, x.device,
                                           w if overlap is None else int(overlap))
        if overlap is None:
            overlap = w if tile else 0
    else:
        tile = round_up(int(tile_size), w)
    if tile and tile >= h and (tile_w or tile) >= wd:
        tile, tile_w = 0, None
    if tile_w == tile:
        tile_w = None
    if overlap is None:
        overlap = max(w, tile // 4) if tile else 0
    if tile:
        overlap = min(int(overlap), min(tile, tile_w or tile) // 2)
    else:
        tile_w = None
    chunk = b
    if tile or automatic:
        # several tiles' (or chunked passes') worth of memory never go to one pass: split the batch too
        chunk = 1 if (tile or chunks) else max(1, min(b, _batch_that_fits(net, x, scale, memory_budget)))
    return TilePlan(tile, int(overlap), chunk, tile_w, chunks)


def _batch_that_fits(net: LUANet, x: torch.Tensor, scale: int, budget: Optional[int]) -> int:
    _, _, h, w = x.shape
    for batch in range(x.shape[0], 0, -1):
        if auto_tile_size(net.config, scale, batch, h, w, x.dtype, budget, x.device) == 0:
            return batch
    return 1


def run_network(net: LUANet, x: torch.Tensor, scale: int, *, tile_size: Optional[int] = None,
                tile_overlap: Optional[int] = None, memory_budget: Optional[int] = None,
                progress: Optional[ProgressFn] = None, cancel: Optional[CancelFn] = None,
                teacher: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``(B, C, H, W)`` model-layout latent -> ``(B, C, H*scale, W*scale)`` with head ``x{scale}``.

    ``teacher``: a raw model-layout latent at the output size that replaces the network's own skip
    (see :meth:`LUANet.forward`); it is added once over the whole output.

    ``tile_size`` 0 (or None) picks a plain pass, a chunked pass or tiles from a memory
    estimate (see :func:`plan_tiles`); a positive size gives tiles of that size.  On an out-of-memory error
    the batch is split, then a plain pass turns chunked (with the chunks that fit a
    quarter of its estimated peak), then the tile size is halved (down to two
    windows), and the run restarts.
    """
    plan = plan_tiles(net, x, scale, tile_size, tile_overlap, memory_budget)
    window = net.config.window_size
    min_tile = 2 * window
    while True:
        try:
            return _execute(net, x, scale, plan, progress, cancel, teacher)
        except Exception as exc:  # noqa: BLE001 - only OOM is retried, the rest re-raised
            if not is_oom(exc):
                raise
            h, w = x.shape[-2:]
            th, tw = plan.shape if plan.tile else (h, w)
            current = max(th, tw)
            if plan.batch_chunk > 1:
                plan = TilePlan(plan.tile, plan.overlap, max(1, plan.batch_chunk // 2), plan.tile_w, plan.chunks)
            elif plan.chunks is None:
                chunks = chunk_plan(net.config, scale, 1, th, tw, x.dtype,
                                    int(bytes_per_pixel(net.config, scale, x.dtype) * th * tw / 4), x.device)
                plan = TilePlan(plan.tile, plan.overlap, 1, plan.tile_w,
                                chunks or Chunks(max(window * window, tw), 2 * tw))
            elif current // 2 >= min_tile:
                tile = (current // 2) // window * window
                plan = TilePlan(tile, min(plan.overlap or max(window, tile // 4), tile // 2), 1, None, plan.chunks)
            else:
                raise
            log.warning("LUA: out of memory, retrying with tile %s, batch chunk %s, chunks %s",
                        plan.tile, plan.batch_chunk, plan.chunks)
            if x.device.type == "cuda":
                torch.cuda.empty_cache()


def _execute(net: LUANet, x: torch.Tensor, scale: int, plan: TilePlan, progress: Optional[ProgressFn],
             cancel: Optional[CancelFn], teacher: Optional[torch.Tensor] = None) -> torch.Tensor:
    b, _, h, w = x.shape
    window = net.config.window_size
    ph, pw = round_up(h, window), round_up(w, window)
    per_chunk = count_tiles(ph, pw, plan.shape, plan.overlap, window) if plan.tile else 1
    chunks = range(0, b, plan.batch_chunk)
    total = per_chunk * len(chunks)
    done = 0

    def step() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, total)

    def check_cancel() -> None:
        if cancel is not None and cancel():
            raise UpscaleCancelled("LUA upscale cancelled")

    extra = {} if plan.chunks is None else {"chunks": plan.chunks}

    def forward(piece: torch.Tensor) -> torch.Tensor:
        check_cancel()
        return net(piece, scale, skip=teacher is None, **extra)

    def forward_without_skip(piece: torch.Tensor) -> torch.Tensor:
        check_cancel()
        return net(piece, scale, skip=False, **extra)

    def skip_of(start: int, part: torch.Tensor) -> torch.Tensor:
        if teacher is None:
            return net.skip_term(part, scale)
        return net.external_skip_term(teacher[start:start + part.shape[0]])

    outputs = []
    for start in chunks:
        part = x[start:start + plan.batch_chunk]
        if plan.tile:
            # pad once like the untiled pass (its far-edge reflection), tile, crop; the skip is
            # added once over the whole latent so tile borders do not change it
            padded = pad_to_multiple(part, window)
            y = run_tiled(forward_without_skip, padded, scale, plan.shape, plan.overlap, step, multiple=window)
            outputs.append(y[..., : h * scale, : w * scale] + skip_of(start, part).to(y.dtype))
        else:
            y = forward(part)
            outputs.append(y if teacher is None else y + skip_of(start, part).to(y.dtype))
            step()
    check_cancel()
    return torch.cat(outputs, 0) if len(outputs) > 1 else outputs[0]
