"""Pack what a fine-tune on an accelerator needs from ``../shared`` into a folder that travels with the repo.

The device machine receives the working tree (tracked and untracked, not ignored files) and the ignored
paths a call names in ``carry``, 64 MiB in all, not ``../shared``.  The shipped weights alone take most of
that, so the kit is for one family and fills what is left (the budget defaults to 64 MiB minus the
working tree, measured with git):

- ``shared/vae/``: that family's tiny autoencoder, copied unchanged;
- ``shared/data/holdout/`` and ``shared/data/val/``: the fine-tune's validation images (``--val-images``
  of the fixed held-out photographs and of ``data/val``, the picks and native crops it makes here), WebP;
- ``metrics/lpips_alex.safetensors``: the LPIPS(AlexNet) weights in fp16 (the loss; DISTS's VGG is too
  large to travel, so validation there scores PSNR and LPIPS);
- ``shared/data/train/``: one random ``--train-crop`` px crop (after a random 0.5-1x zoom) of as many
  training photographs (held-out ones excluded) as the budget allows, WebP ``--quality``.

``scripts/train_device.sh`` points the fine-tune at it (``LUA_SHARED_DIR``, ``LUA_METRICS_DIR``,
``holdout_dir``).

    python -m scripts.device_kit --family sdxl --out .device_kit
"""
from __future__ import annotations

import argparse
import io
import random
import shutil
import subprocess
from pathlib import Path

import torch

from lua_core.families import family_names, get_family
from lua_core.locations import shared_dir
from lua_core.metrics.perceptual import metrics_dir
from lua_core.tae import tae_files
from lua_core.toolkit.images import center_crop, load_image, native_crop_side
from lua_core.toolkit.photo_sets import holdout_photos, pick_val_images, spread, training_photos

MIB = 1 << 20
TRAVEL_MIB = 64.0
SCALES = (2, 4)


def _webp(img: torch.Tensor, quality: int, lossless: bool = False) -> bytes:
    from PIL import Image

    arr = (img.permute(1, 2, 0) * 255).round().clamp(0, 255).byte().numpy()
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="WEBP", quality=quality, method=4, lossless=lossless)
    return buf.getvalue()


NET_ONLY_DROPS = ("skip.encoder.", "skip.decoder.")


def network_part(adapter: Path) -> bytes:
    """A teacher-skip adapter without its tiny autoencoder (``skip.encoder.*``/``skip.decoder.*``), metadata kept:
    what a fine-tune on the VAE teacher starts from (:func:`restore_init` puts the family's autoencoder back)."""
    from safetensors import safe_open
    from safetensors.torch import save

    with safe_open(str(adapter), "pt") as f:
        meta = f.metadata() or {}
        tensors = {k: f.get_tensor(k) for k in f.keys() if not k.startswith(NET_ONLY_DROPS)}
    return save(tensors, metadata=meta)


def restore_init(part: Path, family: str, out: Path, vae_dir: Path) -> Path:
    """A loadable adapter from :func:`network_part`'s file plus the family's tiny autoencoder from ``vae_dir``."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    from lua_core.tae import TinyAutoencoder

    fam = get_family(family)
    tae = TinyAutoencoder(fam.tae_name, fam, vae_dir)
    with safe_open(str(part), "pt") as f:
        meta = f.metadata() or {}
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    for name, module in (("encoder", tae.encoder), ("decoder", tae.decoder)):
        tensors.update({f"skip.{name}.{k}": v.half() for k, v in module.state_dict().items()})
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out), metadata=meta)
    return out


def _write(path: Path, data: bytes) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return len(data)


def _zoomed_crop(path: Path, crop: int, rng: random.Random) -> torch.Tensor:
    """A random ``crop`` px square of the photograph after a random 0.5-1x downscale (never below the crop)."""
    import torch.nn.functional as F

    img = load_image(path, crop)
    h, w = img.shape[-2:]
    zoom = max(rng.uniform(0.5, 1.0), crop / min(h, w))
    if zoom < 1.0:
        size = (max(crop, round(h * zoom)), max(crop, round(w * zoom)))
        img = F.interpolate(img.unsqueeze(0), size=size, mode="bicubic", antialias=True,
                            align_corners=False).squeeze(0).clamp(0, 1)
        h, w = img.shape[-2:]
    top, left = rng.randrange(h - crop + 1), rng.randrange(w - crop + 1)
    return img[:, top:top + crop, left:left + crop]


def working_tree_mib(repo: Path) -> float:
    """MiB of what a device call sends besides ``carry``: tracked files and untracked files git does not ignore."""
    names = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=repo,
                           capture_output=True, check=True).stdout.split(b"\0")
    return sum((repo / n.decode()).stat().st_size for n in names if n and (repo / n.decode()).is_file()) / MIB


def build_kit(out: Path, source: Path, family: str, metrics_root: Path, train_crop: int, quality: int,
              val_images: int, val_crop: int, budget_mib: float, max_train: int | None = None,
              seed: int = 0, lossless_val: bool = False, init_from: Path | None = None) -> dict[str, int]:
    """Write ``out/shared`` and ``out/metrics`` for ``family`` (a comma-separated list for several); returns bytes
    per part.

    ``lossless_val``: the validation crops are lossless (then they double as the evaluation images: pass
    ``--val-images 24 --val-crop 512``); ``init_from``: a folder of adapters ``lua_light_<family>.safetensors`` whose
    network parts go to ``out/init`` (:func:`network_part`).  Training crops are added until the next would pass
    ``budget_mib``; the fixed parts alone over it are refused, and a refused or failed build leaves the previous
    kit as it was.
    """
    fams = [get_family(f) for f in family.split(",")]
    unit = min(f.crop_unit(SCALES) for f in fams)
    tmp = out.with_name(out.name + ".part")
    if tmp.exists():
        shutil.rmtree(tmp)
    budget = budget_mib * MIB
    sizes = {"vae": 0, "metrics": 0, "init": 0, "data/holdout": 0, "data/val": 0, "data/train": 0}
    try:
        for fam in fams:
            for f in tae_files(fam.tae_name, source / "vae"):
                sizes["vae"] += _write(tmp / "shared" / "vae" / f.name, f.read_bytes())
            if init_from is not None:
                sizes["init"] += _write(tmp / "init" / f"{fam.name}.safetensors",
                                        network_part(init_from / f"lua_light_{fam.name}.safetensors"))
        from safetensors.torch import load_file, save_file

        lpips = {k: v.half() if v.is_floating_point() else v for k, v in
                 load_file(str(metrics_root / "lpips_alex.safetensors")).items()}
        (tmp / "metrics").mkdir(parents=True)
        save_file(lpips, str(tmp / "metrics" / "lpips_alex.safetensors"))
        sizes["metrics"] = (tmp / "metrics" / "lpips_alex.safetensors").stat().st_size
        train_root = source / "data" / "train"
        picks = {"data/holdout": (train_root, spread(holdout_photos(train_root), val_images)),
                 "data/val": (source / "data" / "val", pick_val_images(source / "data" / "val", val_images))}
        for part, (root, paths) in picks.items():
            for p in paths:
                side = native_crop_side(p, val_crop, unit)
                img = center_crop(load_image(p), side)
                sizes[part] += _write((tmp / "shared" / part / p.relative_to(root)).with_suffix(".webp"),
                                      _webp(img, 95, lossless_val))
        fixed = sum(sizes.values())
        if fixed > budget:
            raise ValueError(f"the kit's fixed parts take {fixed / MIB:.1f} MiB, over the {budget_mib:.1f} MiB "
                             "budget: lower --val-images or free room in the working tree")
        rng = random.Random(seed)
        photos = training_photos(train_root)
        rng.shuffle(photos)
        for p in photos[:max_train]:
            data = _webp(_zoomed_crop(p, train_crop, rng), quality)
            if fixed + sizes["data/train"] + len(data) > budget:
                break
            sizes["data/train"] += _write((tmp / "shared" / "data" / "train" / p.relative_to(train_root))
                                          .with_suffix(".webp"), data)
        if sizes["data/train"] == 0:
            raise ValueError(f"no training crop fits the {budget_mib:.1f} MiB budget")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return sizes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--family", help=f"{family_names(' or ')} (comma-separated for several)")
    ap.add_argument("--lossless-val", action="store_true",
                    help="lossless validation crops, so they serve as the evaluation images on the device")
    ap.add_argument("--init-from", type=Path, default=None,
                    help="a folder of adapters (weights/) whose network parts travel in init/ (restored there by "
                         "--restore-init)")
    ap.add_argument("--restore-init", nargs=3, metavar=("PART", "FAMILY", "OUT"), default=None,
                    help="on the device: rebuild a loadable adapter from a network part and $LUA_SHARED_DIR/vae")
    ap.add_argument("--out", type=Path, default=Path(".device_kit"))
    ap.add_argument("--source", type=Path, default=None, help="the shared folder (default: $LUA_SHARED_DIR or ../shared)")
    ap.add_argument("--metrics", type=Path, default=None, help="the perceptual weights (default: $LUA_METRICS_DIR "
                    "or .cache/metrics)")
    ap.add_argument("--train-crop", type=int, default=320)
    ap.add_argument("--max-train", type=int, default=None, help="at most this many training crops")
    ap.add_argument("--quality", type=int, default=85)
    ap.add_argument("--val-images", type=int, default=4, help="per validation set (the fine-tune's val_images)")
    ap.add_argument("--val-crop", type=int, default=384)
    ap.add_argument("--budget-mib", type=float, default=None,
                    help="the kit's size (default: 64 MiB less the working tree and 0.25 MiB of slack)")
    args = ap.parse_args()
    if args.restore_init:
        part, fam, out = args.restore_init
        print(restore_init(Path(part), fam, Path(out), (args.source or shared_dir()) / "vae"))
        return
    if not args.family:
        ap.error("--family is required to build a kit")
    repo = Path(__file__).resolve().parents[1]
    budget = args.budget_mib if args.budget_mib is not None else TRAVEL_MIB - working_tree_mib(repo) - 0.25
    try:
        sizes = build_kit(args.out, args.source or shared_dir(), args.family, args.metrics or metrics_dir(),
                          args.train_crop, args.quality, args.val_images, args.val_crop, budget, args.max_train,
                          lossless_val=args.lossless_val, init_from=args.init_from)
    except (ValueError, FileNotFoundError) as exc:
        raise SystemExit(f"error: {exc}") from None
    crops = sum(1 for _ in (args.out / "shared" / "data" / "train").rglob("*.webp"))
    print(", ".join(f"{k}: {v / MIB:.2f} MiB" for k, v in sizes.items()),
          f"({crops} training crops; budget {budget:.2f} MiB) -> {args.out}")


if __name__ == "__main__":
    main()
