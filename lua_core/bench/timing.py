"""Clock and memory readings shared by the timed runs of a case process."""
from __future__ import annotations

import resource

import torch


def spec_device(spec: dict) -> tuple[torch.device, torch.dtype]:
    """The device and dtype a case spec names."""
    return torch.device(spec["device"]), getattr(torch, spec["dtype"])


def peak_rss_mb() -> float:
    """This process's resident-set high-water mark in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def reset_device_peak(device: torch.device) -> None:
    """Start a fresh ``max_memory_allocated`` window on CUDA (no-op elsewhere)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def record_device_peak(result: dict, device: torch.device) -> None:
    """Add ``max_allocated_mb`` to ``result`` on CUDA."""
    if device.type == "cuda":
        result["max_allocated_mb"] = torch.cuda.max_memory_allocated(device) / 2 ** 20
