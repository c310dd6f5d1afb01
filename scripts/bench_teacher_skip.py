#!/usr/bin/env python
"""Time a teacher-skip adapter against the family's full KL decoder and encoder (random weights).

    python -m scripts.bench_teacher_skip --checkpoint weights/lua_light_sdxl.safetensors --latent 64 --threads 2

Prints the median of ``--rounds`` timings of: the whole LUA upscale with its own tiny teacher (network + teacher
skip), the teacher skip alone, the network on a given teacher (what LUA adds with the VAE input), the full
decoder at the target size, and the VAE teacher's own passes with the full VAE (decode at base size, encode at
the target size: the "decode -> upscale -> encode" route the VAE input replaces); and the shares.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from lua_core.api import load_model
from lua_core.bench.vae_decoder import build_decoder
from lua_core.bench.vae_encoder import build_encoder


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
            x = net.normalise(z)
            skip = median_time(lambda: net.skip.teacher(x, s), a.rounds) if net.skip is not None else 0.0
            big = torch.randn(1, fam.model_channels, a.latent * s, a.latent * s)
            residual = median_time(lambda: net(z, s, teacher=big), a.rounds)
            dec, enc = build_decoder(fam.name), build_encoder(fam.name)
            decode = median_time(lambda: dec(big), max(1, a.rounds - 2))
            base_decode = median_time(lambda: dec(z), max(1, a.rounds - 2))
            encode = median_time(lambda: enc(torch.rand(1, 3, a.latent * s * 8, a.latent * s * 8)), max(1, a.rounds - 2))
            route = base_decode + encode
            print(f"{fam.label} {a.latent}² x{s} -> {a.latent * s * 8} px: LUA {lua:.2f} s (teacher skip {skip:.2f} s), "
                  f"full decode {decode:.2f} s, LUA share of the decode {100 * lua / decode:.1f} %; with the VAE input: "
                  f"network {residual:.2f} s + full decode at base {base_decode:.2f} s + full encode at target "
                  f"{encode:.2f} s = {residual + route:.2f} s, {100 * (residual + route) / decode:.1f} % of the target "
                  f"decode; the decode -> upscale -> encode route alone {route:.2f} s ({100 * route / decode:.1f} %), "
                  f"LUA adds {100 * residual / route:.1f} % to it", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
