"""Run a LUA network over a batch of model-layout latents: tiles, memory, progress, cancel."""
from __future__ import annotations

import logging
from dataclasses import replace
from typing import Callable, Optional

import torch

from ..errors import UpscaleCancelled
from ..model.network import LUANet
from ..model.streaming import Chunks
from ..model.tiling import count_tiles, pad_to_multiple, round_up, run_tiled
from .memory import bytes_per_pixel, chunk_plan
from .planning import TilePlan, plan_tiles

log = logging.getLogger(__name__)

ProgressFn = Callable[[int, int], None]
CancelFn = Callable[[], Optional[bool]]


def is_oom(exc: BaseException) -> bool:
    if isinstance(exc, getattr(torch, "OutOfMemoryError", ())):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


def run_network(net: LUANet, x: torch.Tensor, head: int, *, tile_size: int = 0,
                tile_overlap: Optional[int] = None, memory_budget: Optional[int] = None,
                progress: Optional[ProgressFn] = None, cancel: Optional[CancelFn] = None,
                teacher: Optional[torch.Tensor] = None, plan: Optional[TilePlan] = None) -> torch.Tensor:
    """``(B, C, H, W)`` model-layout latent -> ``(B, C, H*head, W*head)`` with head ``x{head}``.

    ``teacher``: a raw model-layout latent at the output size that replaces the network's own skip
    (see :meth:`LUANet.forward`); it is added once over the whole output.

    ``plan``: a :class:`TilePlan` made beforehand (:func:`~.planning.make_tile_plan`); without one the
    tiling options are planned here (:func:`~.planning.plan_tiles`: ``tile_size`` 0 picks a plain
    pass, a chunked pass or tiles from a memory estimate; a positive size gives tiles of that size).
    On an out-of-memory error the batch is split, then a plain pass turns chunked (with the chunks
    that fit a quarter of its estimated peak), then the tile size is halved (down to two windows),
    and the run restarts.
    """
    if plan is None:
        plan = plan_tiles(net, x, head, tile_size, tile_overlap, memory_budget)
    while True:
        try:
            return _execute(net, x, head, plan, progress, cancel, teacher)
        except Exception as exc:  # noqa: BLE001 - only OOM is retried, the rest re-raised
            if not is_oom(exc):
                raise
            smaller = _smaller_plan(net, x, head, plan)
            if smaller is None:
                raise
            plan = smaller
            log.warning("LUA: out of memory, retrying with tiles %s, batch chunk %s, chunks %s",
                        plan.shape, plan.batch_chunk, plan.chunks)
            if x.device.type == "cuda":
                torch.cuda.empty_cache()


def _smaller_plan(net: LUANet, x: torch.Tensor, head: int, plan: TilePlan) -> Optional[TilePlan]:
    """The next plan to try after ``plan`` ran out of memory; None when tiles are already the smallest."""
    window = net.config.window_size
    th, tw = plan.shape if plan.tiled else tuple(x.shape[-2:])
    if plan.batch_chunk > 1:
        return replace(plan, batch_chunk=max(1, plan.batch_chunk // 2))
    if plan.chunks is None:
        chunks = chunk_plan(net.config, head, 1, th, tw, x.dtype,
                            int(bytes_per_pixel(net.config, head, x.dtype) * th * tw / 4), x.device)
        return replace(plan, batch_chunk=1, chunks=chunks or Chunks(max(window * window, tw), 2 * tw))
    current = max(th, tw)
    if current // 2 >= 2 * window:
        tile = (current // 2) // window * window
        return TilePlan(tile, tile, min(plan.overlap or max(window, tile // 4), tile // 2), 1, plan.chunks)
    return None


def _execute(net: LUANet, x: torch.Tensor, head: int, plan: TilePlan, progress: Optional[ProgressFn],
             cancel: Optional[CancelFn], teacher: Optional[torch.Tensor] = None) -> torch.Tensor:
    b, _, h, w = x.shape
    window = net.config.window_size
    ph, pw = round_up(h, window), round_up(w, window)
    per_chunk = count_tiles(ph, pw, plan.shape, plan.overlap, window) if plan.tiled else 1
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
        return net(piece, head, skip=teacher is None, **extra)

    def forward_without_skip(piece: torch.Tensor) -> torch.Tensor:
        check_cancel()
        return net(piece, head, skip=False, **extra)

    def skip_of(start: int, part: torch.Tensor) -> torch.Tensor:
        if teacher is None:
            return net.skip_term(part, head)
        return net.external_skip_term(teacher[start:start + part.shape[0]])

    outputs = []
    for start in chunks:
        part = x[start:start + plan.batch_chunk]
        if plan.tiled:
            # pad once like the untiled pass (its far-edge reflection), tile, crop; the skip is
            # added once over the whole latent so tile borders do not change it
            padded = pad_to_multiple(part, window)
            y = run_tiled(forward_without_skip, padded, head, plan.shape, plan.overlap, step, multiple=window)
            outputs.append(y[..., : h * head, : w * head] + skip_of(start, part).to(y.dtype))
        else:
            y = forward(part)
            outputs.append(y if teacher is None else y + skip_of(start, part).to(y.dtype))
            step()
    check_cancel()
    return torch.cat(outputs, 0) if len(outputs) > 1 else outputs[0]
