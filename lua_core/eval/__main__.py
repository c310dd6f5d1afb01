"""``python -m lua_core.eval``: evaluate a LUA checkpoint against ComfyUI's latent upscales and pixel resizes.

Examples::

    python -m lua_core.eval --checkpoint weights/lua_light_flux1.safetensors --images-count 12 --threads 1
    python -m lua_core.eval --checkpoint lua_light_flux1.safetensors          # a weights_manifest.json name
    python -m lua_core.eval --family sdxl --no-lua                            # baselines only
    python -m lua_core.eval --checkpoint new.safetensors --reuse-baselines docs/eval/sdxl  # score LUA only
    python -m lua_core.metrics.fetch                                          # once: LPIPS / DISTS weights

Writes ``results.json``, ``results.md`` and ``crops.jpg`` to ``--out`` (default ``docs/eval/<family>``).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Optional

import torch

from ..families import family_names
from ..locations import REPO_ROOT as REPO
from ..locations import expand_path
from .evaluation import evaluate
from .report import MD_NAME


def _scales(text: str) -> tuple[int, ...]:
    try:
        vals = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"--scales expects integers like 2,4, got {text!r}") from exc
    if not vals:
        raise argparse.ArgumentTypeError("--scales is empty")
    return vals


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m lua_core.eval", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", default="${shared}/data/val",
                   help="image folder, searched recursively (${shared} and ${repo} are expanded; default %(default)s), "
                        "or 'holdout': the clean photographs held out of ${shared}/data/train")
    p.add_argument("--paths", default=None,
                   help="comma-separated subset of paths to run (default: all), e.g. lua,pixel_bicubic,pixel_lanczos")
    p.add_argument("--family", default=None, help=f"{family_names()} (default: the checkpoint's)")
    p.add_argument("--checkpoint", default=None, help="a .safetensors/.pth path or a weights_manifest.json name")
    p.add_argument("--no-lua", action="store_true", help="baselines only (no checkpoint; needs --family)")
    p.add_argument("--scales", type=_scales, default=(2, 4), help="comma list (default 2,4)")
    p.add_argument("--crop", type=int, default=256, help="centre crop in px (default %(default)s)")
    p.add_argument("--native", action="store_true",
                   help="enlarge nothing: an image whose short side is below --crop gets a smaller crop (its short "
                        "side rounded down to whole latent cells), so the ground truth holds no interpolated pixels")
    p.add_argument("--images-count", type=int, default=12, help="images, spread over the folder (default %(default)s)")
    p.add_argument("--out", default=None, help="report folder; {family} is replaced (default docs/eval/{family})")
    p.add_argument("--device", default="cpu", help="cpu, cuda, ... (default %(default)s)")
    p.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0 = torch's default)")
    p.add_argument("--no-perceptual", action="store_true", help="skip LPIPS and DISTS")
    p.add_argument("--metrics-dir", default=None, help="converted perceptual weights (default $LUA_METRICS_DIR "
                                                       "or .cache/metrics)")
    p.add_argument("--reuse-baselines", default=None, metavar="REPORT",
                   help="an earlier results.json (or its folder) on the same images and settings: take its baseline "
                        "rows instead of scoring them again (each is checked by its PSNR)")
    p.add_argument("--vae", default=None, metavar="PATH",
                   help="judge with a full VAE instead of the tiny autoencoder (also the VAE teacher's encoder): a "
                        "ComfyUI VAE file, or with --vae-backend diffusers a diffusers AutoencoderKL file or folder")
    p.add_argument("--vae-backend", default="comfy", choices=("comfy", "diffusers"), help="how --vae is loaded")
    p.add_argument("--quiet", action="store_true")
    return p


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    if args.no_lua and args.checkpoint:
        print("error: --no-lua and --checkpoint exclude each other", file=sys.stderr)
        return 2
    if not args.no_lua and not args.checkpoint:
        print("error: pass --checkpoint (or --no-lua with --family for baselines only)", file=sys.stderr)
        return 2
    if args.no_lua and not args.family:
        print("error: --no-lua needs --family", file=sys.stderr)
        return 2
    out = args.out or str(REPO / "docs" / "eval" / "{family}")
    t0 = time.perf_counter()
    try:
        images = args.images if args.images == "holdout" else expand_path(args.images)
        result = evaluate(args.family, None if args.no_lua else args.checkpoint, images,
                          args.scales, args.crop, args.images_count, out_dir=out,
                          only_paths=args.paths.split(",") if args.paths else None,
                          perceptual=not args.no_perceptual, device=args.device,
                          metrics_root=expand_path(args.metrics_dir),
                          reuse_baselines=expand_path(args.reuse_baselines), native=args.native,
                          vae={"backend": args.vae_backend, "path": args.vae} if args.vae else None,
                          log=None if args.quiet else (lambda m: print(m, flush=True)))
    except (ValueError, FileNotFoundError, ImportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if not args.quiet:
        print()
        print((Path(result["out_dir"]) / MD_NAME).read_text())
        print(f"done in {time.perf_counter() - t0:.1f} s")
    return 0 if result else 1


if __name__ == "__main__":
    sys.exit(main())
