"""Tiled vs untiled output: max and mean absolute difference, whole image and away from borders.

    python -m lua_core.bench.tile_seams [--checkpoint PATH] [--size 128] [--scale 4] [--tiles 32,64] [--overlap 16]

Without ``--checkpoint`` a random light-config FLUX.1 model is used.  Inputs are
latents of the model's family with unit-variance TAE statistics (raw = tae / scale + shift).
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import torch


def compare(model, size: int, scale: int, tile: int, overlap: int, border: int = 8, seed: int = 0) -> dict:
    from lua_core import upscale

    fam = model.family
    g = torch.Generator().manual_seed(seed)
    z = fam.tae_to_raw(torch.randn(1, fam.comfy_channels, size, size, generator=g))
    t0 = time.perf_counter()
    full = upscale(model, z, scale, tile_size=0)
    t_full = time.perf_counter() - t0
    t0 = time.perf_counter()
    tiled = upscale(model, z, scale, tile_size=tile, tile_overlap=overlap)
    t_tiled = time.perf_counter() - t0
    diff = (tiled - full).abs()
    inner = diff[..., border * scale:-border * scale, border * scale:-border * scale]
    return {"latent": size, "scale": scale, "tile": tile, "overlap": overlap,
            "max_abs_diff": float(diff.max()), "mean_abs_diff": float(diff.mean()),
            "max_abs_diff_inner": float(inner.max()), "output_std": float(full.std()),
            "seconds_untiled": round(t_full, 2), "seconds_tiled": round(t_tiled, 2)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--scale", type=int, default=4)
    p.add_argument("--tiles", default="32,64")
    p.add_argument("--overlap", type=int, default=16)
    a = p.parse_args(argv)
    import lua_core

    if a.checkpoint:
        model = lua_core.load_model(a.checkpoint)
    else:
        fam = lua_core.get_family("flux1")
        torch.manual_seed(0)
        cfg = lua_core.LIGHT_CONFIG.replace(in_scale=fam.scale_factor, in_shift=fam.shift_factor)
        model = lua_core.LUAModel(lua_core.LUANet(cfg).eval().requires_grad_(False), fam)
    for tile in (int(t) for t in a.tiles.split(",")):
        print(json.dumps(compare(model, a.size, a.scale, tile, a.overlap)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
