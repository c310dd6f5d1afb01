"""Pack what an accelerator session needs from ``../shared`` into a folder that travels with the repo.

The device machine receives the repository and the ignored paths a call names in ``carry`` (64 MiB
in all), not ``../shared``.  This writes ``<out>/shared`` in the same layout, small enough to carry:

- ``vae/``: the tiny autoencoders, copied unchanged;
- ``data/val/``: exactly the images the evaluation picks (``--val-count`` spread over the sorted
  folder), as lossless PNG centre crops, so ``python -m lua_core.eval`` gives the same figures there;
- ``data/train/``: one random ``--train-crop`` px crop of each of ``--train-images`` training
  photographs (WebP, ``--quality``), the raw material of the latent cache.

Point the code at it with ``LUA_SHARED_DIR=<out>/shared``; ``scripts/train_device.sh`` does.

    python scripts/device_kit.py --out .device_kit
"""
from __future__ import annotations

import argparse
import random
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lua_core.images import (  # noqa: E402
    center_crop,  # noqa: E402
    list_images,
    load_image,
)
from lua_core.locations import shared_dir  # noqa: E402
from lua_core.photo_sets import pick_val_images  # noqa: E402

MIB = 1 << 20


def _save(img, path: Path, quality: int | None) -> None:
    from PIL import Image

    arr = (img.permute(1, 2, 0) * 255).round().clamp(0, 255).byte().numpy()
    path.parent.mkdir(parents=True, exist_ok=True)
    if quality is None:
        Image.fromarray(arr).save(path, format="PNG", optimize=True)
    else:
        Image.fromarray(arr).save(path, format="WEBP", quality=quality, method=4)


def build_kit(out: Path, source: Path, train_images: int, train_crop: int, quality: int, val_count: int,
              val_crop: int, budget_mib: float, seed: int = 0) -> dict[str, int]:
    """Write ``out/shared``; returns bytes per part.  Refuses (and removes the half-written kit) past the budget."""
    dest = out / "shared"
    tmp = out / "shared.part"
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        shutil.copytree(source / "vae", tmp / "vae")
        root = source / "data" / "val"
        for f in pick_val_images(root, val_count):
            img = center_crop(load_image(f, val_crop), val_crop)
            _save(img, (tmp / "data" / "val" / f.relative_to(root)).with_suffix(".png"), None)
        root = source / "data" / "train"
        files = list_images(root)
        rng = random.Random(seed)
        for f in sorted(rng.sample(files, min(train_images, len(files)))):
            img = load_image(f, train_crop)
            h, w = img.shape[-2:]
            top, left = rng.randrange(h - train_crop + 1), rng.randrange(w - train_crop + 1)
            crop = img[:, top: top + train_crop, left: left + train_crop]
            _save(crop, (tmp / "data" / "train" / f.relative_to(root)).with_suffix(".webp"), quality)
        sizes = {part: sum(p.stat().st_size for p in (tmp / part).rglob("*") if p.is_file())
                 for part in ("vae", "data/val", "data/train")}
        total = sum(sizes.values())
        if total > budget_mib * MIB:
            raise ValueError(f"the kit takes {total / MIB:.1f} MiB, over the {budget_mib} MiB budget: "
                             "lower --train-images, --train-crop or --quality")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if dest.exists():
        shutil.rmtree(dest)
    tmp.rename(dest)
    return sizes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path(".device_kit"))
    ap.add_argument("--source", type=Path, default=None, help="the shared folder (default: $LUA_SHARED_DIR or ../shared)")
    ap.add_argument("--train-images", type=int, default=900)
    ap.add_argument("--train-crop", type=int, default=288)
    ap.add_argument("--quality", type=int, default=85)
    ap.add_argument("--val-count", type=int, default=12)
    ap.add_argument("--val-crop", type=int, default=256)
    ap.add_argument("--budget-mib", type=float, default=44.0,
                    help="refuse a larger kit (64 MiB travel in all, the repository included)")
    args = ap.parse_args()
    sizes = build_kit(args.out, args.source or shared_dir(), args.train_images, args.train_crop, args.quality,
                      args.val_count, args.val_crop, args.budget_mib)
    print(", ".join(f"{k}: {v / MIB:.1f} MiB" for k, v in sizes.items()), f"-> {args.out / 'shared'}")


if __name__ == "__main__":
    main()
