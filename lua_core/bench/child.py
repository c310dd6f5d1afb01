"""Running one case: dispatch by kind, in this process or a fresh interpreter (``cli --child``)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Callable, Optional

import torch

from .network_runs import run_impl, run_tiling
from .pipelines import run_pipeline

REPO_ROOT = Path(__file__).resolve().parents[2]
RUNNERS: dict[str, Callable[[dict], dict]] = {"pipeline": run_pipeline, "impl": run_impl, "tiling": run_tiling}


def run_spec(spec: dict) -> dict:
    """Run one case here, with the spec's torch thread count."""
    if spec.get("threads"):
        torch.set_num_threads(int(spec["threads"]))
    return RUNNERS[spec["kind"]](spec)


def run_in_child(spec: dict, timeout: Optional[float] = None) -> dict:
    """Run one case in a fresh interpreter; returns its JSON result (or an ``error``)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO_ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    try:
        proc = subprocess.run([sys.executable, "-m", "lua_core.bench.cli", "--child", json.dumps(spec)],
                              capture_output=True, text=True, env=env, timeout=timeout, cwd=str(REPO_ROOT))
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout} s"}
    if proc.returncode != 0:
        return {"error": (proc.stderr or proc.stdout).strip()[-2000:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])
