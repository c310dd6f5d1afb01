#!/usr/bin/env python
"""Time a teacher-skip adapter against the target-size decode of the family's full KL decoder (random weights).

    python scripts/bench_teacher_skip.py --checkpoint weights/lua_light_sdxl.safetensors --latent 64 --threads 2

Prints the median of ``--rounds`` timings of: the whole LUA upscale (network + teacher skip), the teacher skip
alone, and the full decoder at the target size; and the LUA share of that decode.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lua_core.api import load_model  # noqa: E402
from lua_core.bench.vae_decoder import build_decoder  # noqa: E402


def median_time(fn, rounds: int) -> float:
    fn()
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--latent", type=int, default=64, help="input latent side (default 64: 512 px)")
    p.add_argument("--scales", default="2,4")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    model = load_model(a.checkpoint, device="cpu", dtype="fp32")
    net, fam = model.net, model.family
    z = torch.randn(1, fam.model_channels, a.latent, a.latent)
    with torch.inference_mode():
        for s in (int(v) for v in a.scales.split(",")):
            lua = median_time(lambda: net(z, s), a.rounds)
            x = (z - net.config.in_shift) * net.config.in_scale
            skip = median_time(lambda: net.skip.teacher(x, s), a.rounds) if net.skip is not None else 0.0
            dec = build_decoder(fam.name)
            big = torch.randn(1, fam.model_channels, a.latent * s, a.latent * s)
            decode = median_time(lambda: dec(big), max(1, a.rounds - 2))
            print(f"{fam.label} {a.latent}² x{s} -> {a.latent * s * 8} px: LUA {lua:.2f} s (teacher skip {skip:.2f} s), "
                  f"full decode {decode:.2f} s, LUA share of the decode {100 * lua / decode:.1f} %", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
