"""Wall-clock timing of device work, shared by evaluation and the benchmarks."""
from __future__ import annotations

import time
from typing import Any, Callable

import torch


def sync(device: torch.device) -> None:
    """Wait for queued device work so a wall-clock reading covers it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device) -> tuple[Any, float]:
    """``(fn(), seconds)`` with the device synchronised around the call."""
    sync(device)
    t0 = time.perf_counter()
    out = fn()
    sync(device)
    return out, time.perf_counter() - t0
