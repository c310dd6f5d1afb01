"""Peak memory and tiling accuracy of one upscale, each case in a fresh process.

    python -m lua_core.bench.memory --config light --size 256 --scale 4 --tile 0
    python -m lua_core.bench.memory --all     # the table quoted in the README

Peak RSS comes from ``resource.getrusage`` of a child process that builds a random
model of the config and runs one upscale, so imports and weights are included.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch


def run_case(config: str, size: int, scale: int, tile: int, overlap: int | None) -> dict:
    from lua_core.engine.planning import plan_tiles
    from lua_core.engine.runner import run_network
    from lua_core.model import LUANet, preset

    torch.manual_seed(0)
    net = LUANet(preset(config)).eval().requires_grad_(False)
    z = torch.randn(1, net.config.in_chans, size, size)
    plan = plan_tiles(net, z, scale, tile, overlap, None)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    with torch.inference_mode():
        out = run_network(net, z, scale, plan=plan)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"config": config, "latent": size, "scale": scale, "tile": list(plan.shape) if plan.tiled else 0,
            "overlap": plan.overlap,
            "seconds": round(seconds, 2), "peak_rss_mb": round(peak / 1024, 1),
            "rss_before_run_mb": round(base / 1024, 1), "output": list(out.shape)}


def in_subprocess(args: list[str]) -> dict:
    proc = subprocess.run([sys.executable, "-m", "lua_core.bench.memory", "--json", *args],
                          capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="light", choices=["light", "paper"])
    p.add_argument("--size", type=int, default=256, help="latent side")
    p.add_argument("--scale", type=int, default=4)
    p.add_argument("--tile", type=int, default=0, help="tile side (0, the default: automatic)")
    p.add_argument("--overlap", type=int, default=None)
    p.add_argument("--json", action="store_true", help="print one JSON line (used for child processes)")
    p.add_argument("--all", action="store_true", help="run the README's cases, each in its own process")
    a = p.parse_args(argv)
    if a.all:
        cases = [["--config", "light", "--size", "256", "--scale", "4"],
                 ["--config", "light", "--size", "256", "--scale", "4", "--tile", "64"],
                 ["--config", "light", "--size", "256", "--scale", "4", "--tile", "0"],
                 ["--config", "paper", "--size", "64", "--scale", "4"]]
        for case in cases:
            print(json.dumps(in_subprocess(case)), flush=True)
        return 0
    result = run_case(a.config, a.size, a.scale, a.tile, a.overlap)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
