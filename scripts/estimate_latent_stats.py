"""Estimate FLUX.2's latent batch-norm statistics from tiny-autoencoder latents of our photographs.

ComfyUI's FLUX.2 LATENT is the VAE's 2x2-packed 128-channel latent normalised by the VAE's batch-norm
running statistics (``(z - mean) / sqrt(var + 1e-4)``).  The real statistics ship inside the FLUX.2 VAE,
which these machines cannot download; this script measures the per-channel mean and variance of packed
``taef2`` latents over random crops of the training photographs (held-out ones excluded) and writes
them to ``lua_core/latent_stats.json``, which :mod:`lua_core.families` reads.

    python -m scripts.estimate_latent_stats --crops 512 --crop 256 --threads 2
"""
from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import torch
from einops import rearrange

from lua_core.families import BATCH_NORM_EPS, STATS_PATH
from lua_core.locations import shared_dir
from lua_core.tae import load_tae
from lua_core.toolkit.photo_sets import training_photos
from lua_core.train.crop_pool import PhotoPool


def packed_moments(crops: int, crop: int, batch: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Per-channel mean and variance of packed ``taef2`` latents of ``crops`` random crops, and the sample count."""
    tae = load_tae("flux2")
    pool = PhotoPool(training_photos(shared_dir() / "data" / "train"), min_zoom=0.5)
    rng = random.Random(seed)
    total = torch.zeros(128, dtype=torch.float64)
    squares = torch.zeros(128, dtype=torch.float64)
    count = 0
    with torch.inference_mode():
        for start in range(0, crops, batch):
            hr = pool.crops(rng, min(batch, crops - start), crop)
            z = rearrange(tae.encode_raw(hr), "b c (h ph) (w pw) -> b (c ph pw) h w", ph=2, pw=2).double()
            total += z.sum(dim=(0, 2, 3))
            squares += (z * z).sum(dim=(0, 2, 3))
            count += z.shape[0] * z.shape[2] * z.shape[3]
    mean = total / count
    return mean, squares / count - mean * mean, count


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--crops", type=int, default=512)
    p.add_argument("--crop", type=int, default=256, help="crop side in pixels (a multiple of 16)")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=STATS_PATH)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    mean, var, count = packed_moments(args.crops, args.crop, args.batch, args.seed)
    data = json.loads(args.out.read_text()) if args.out.is_file() else {}
    data["flux2"] = {
        "what": "batch-norm running statistics of FLUX.2's packed 128-channel latent (channel order (c pi pj))",
        "source": (f"estimated: per-channel mean/variance of taef2 latents of {args.crops} random {args.crop} px "
                   f"crops (0.5-1x zoom, flips, rotations) of ../shared/data/train minus the held-out photographs, "
                   f"{count} latent cells; `python -m scripts.estimate_latent_stats --crops {args.crops} "
                   f"--crop {args.crop} --seed {args.seed}`. The real VAE's statistics differ."),
        "eps": BATCH_NORM_EPS,
        "mean": [round(float(v), 6) for v in mean],
        "var": [round(float(v), 6) for v in var],
    }
    tmp = args.out.with_suffix(".json.part")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    tmp.replace(args.out)
    print(f"wrote {args.out}: mean {float(mean.mean()):+.4f} (min {float(mean.min()):+.4f}, max {float(mean.max()):+.4f}), "
          f"var {float(var.mean()):.4f} (min {float(var.min()):.4f}, max {float(var.max()):.4f})")


if __name__ == "__main__":
    main()
