"""Training photographs held in memory, fresh random crops on every draw, and the held-out split.

The held-out set is a fixed part of the clean photographs of the training folder (SUN and
ImageNet: smooth regions where pixel bicubic is strong and an adapter's blotches show);
``training_photos`` leaves it out, ``holdout_photos`` is what the evaluation reports on.
"""
from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .data import list_images

# Held out: every 5th SUN scene, and every other ImageNet photograph whose short side is >= 512 px
# (so 512 px evaluation crops are real pixels, not an upscale).
HOLDOUT_FOLDERS = {"sun_hays80": 5, "imagenet_sample": 2}
HOLDOUT_MIN_SIDE = 512


def _short_side(path: Path) -> int:
    from PIL import Image

    with Image.open(path) as im:
        return min(im.size)


def holdout_photos(train_dir: str | os.PathLike) -> list[Path]:
    """The fixed held-out photographs of a training folder (sorted; never trained on)."""
    root = Path(train_dir)
    picked: list[Path] = []
    for folder, every in HOLDOUT_FOLDERS.items():
        if not (root / folder).is_dir():
            continue
        large = [p for p in list_images(root / folder) if _short_side(p) >= HOLDOUT_MIN_SIDE]
        picked += large[::every]
    return sorted(picked)


def training_photos(train_dir: str | os.PathLike) -> list[Path]:
    """Every photograph of the training folder except the held-out ones."""
    held = set(holdout_photos(train_dir))
    return [p for p in list_images(train_dir) if p not in held]


class PhotoPool:
    """Photographs as uint8 tensors in memory; :meth:`crops` draws augmented square crops.

    Each crop comes from a random photograph, downscaled by a random factor in
    ``[min_zoom, 1]`` (never below the crop size), at a random place, randomly flipped and
    rotated by a multiple of 90 degrees.
    """

    def __init__(self, paths: Sequence[Path], min_zoom: float = 0.5, max_side: Optional[int] = 1024) -> None:
        from PIL import Image

        if not paths:
            raise ValueError("no training photographs")
        self.min_zoom = float(min_zoom)
        self.images: list[torch.Tensor] = []
        for p in paths:
            with Image.open(p) as im:
                im = im.convert("RGB")
                if max_side and max(im.size) > max_side:
                    f = max_side / max(im.size)
                    im = im.resize((round(im.size[0] * f), round(im.size[1] * f)), Image.BICUBIC)
                self.images.append(torch.from_numpy(np.array(im, dtype=np.uint8)).permute(2, 0, 1).contiguous())

    def __len__(self) -> int:
        return len(self.images)

    def crop(self, rng: random.Random, size: int) -> torch.Tensor:
        """One ``(3, size, size)`` float crop in [0, 1]."""
        img = self.images[rng.randrange(len(self.images))]
        h, w = img.shape[-2:]
        zoom = rng.uniform(self.min_zoom, 1.0)
        src = max(size, round(size / zoom))
        src = min(src, h, w) if min(h, w) >= size else min(h, w)
        top, left = rng.randrange(h - src + 1), rng.randrange(w - src + 1)
        x = img[:, top:top + src, left:left + src].float().div_(255).unsqueeze(0)
        if src != size:
            x = F.interpolate(x, size=(size, size), mode="bicubic", antialias=src > size, align_corners=False)
        x = x.squeeze(0).clamp_(0, 1)
        if rng.random() < 0.5:
            x = x.flip(-1)
        rot = rng.randrange(4)
        return torch.rot90(x, rot, dims=(-2, -1)).contiguous() if rot else x

    def crops(self, rng: random.Random, count: int, size: int) -> torch.Tensor:
        return torch.stack([self.crop(rng, size) for _ in range(count)])
