"""What a report records about the machine it ran on."""
from __future__ import annotations

import os
import platform
from typing import Optional

import torch

THREAD_ENV = ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "MKL_NUM_THREADS")


def machine_info() -> dict:
    """CPU, memory, GPU, torch and Python versions, thread settings and the load average."""
    info = {"cpu": cpu_name(), "logical_cpus": os.cpu_count(), "memory_gib": memory_gib(),
            "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(), "platform": platform.platform(),
            "env": {k: os.environ[k] for k in THREAD_ENV if k in os.environ}}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    try:
        info["load_average"] = list(os.getloadavg())
    except OSError:
        pass
    return info


def cpu_name() -> str:
    """The CPU model from ``/proc/cpuinfo``, else what :func:`platform.processor` says."""
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return cpu


def memory_gib() -> Optional[float]:
    """Total RAM in GiB from ``/proc/meminfo`` (``None`` where unreadable)."""
    try:
        with open("/proc/meminfo") as f:
            return round(int(f.readline().split()[1]) / 2 ** 20, 1)
    except (OSError, ValueError, IndexError):
        return None


def load_average() -> Optional[list[float]]:
    """The 1/5/15-minute load average, rounded (``None`` where the platform has none)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None
