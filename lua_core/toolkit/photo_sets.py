"""Which photographs train, validate and evaluate: the fixed held-out set and even picks from a folder."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from .images import list_images, short_side

# Held out: every 5th SUN scene, and every other ImageNet photograph whose short side is >= 512 px
# (so 512 px evaluation crops are real pixels, not an upscale).
HOLDOUT_FOLDERS = {"sun_hays80": 5, "imagenet_sample": 2}
HOLDOUT_MIN_SIDE = 512


def spread(paths: Sequence[Path], count: int) -> list[Path]:
    """``count`` of ``paths`` spread evenly over the list (all of them when there are no more)."""
    if count >= len(paths):
        return list(paths)
    step = len(paths) / count
    return [paths[int(i * step)] for i in range(count)]


def pick_val_images(folder: str | Path, count: int) -> list[Path]:
    """``count`` images spread evenly over the sorted list (deterministic)."""
    return spread(list_images(folder), count)


def holdout_photos(train_dir: str | os.PathLike) -> list[Path]:
    """The fixed held-out photographs of a training folder (sorted; never trained on)."""
    root = Path(train_dir)
    picked: list[Path] = []
    for folder, every in HOLDOUT_FOLDERS.items():
        if not (root / folder).is_dir():
            continue
        large = [p for p in list_images(root / folder) if short_side(p) >= HOLDOUT_MIN_SIDE]
        picked += large[::every]
    return sorted(picked)


def training_photos(train_dir: str | os.PathLike) -> list[Path]:
    """Every photograph of the training folder except the held-out ones."""
    held = set(holdout_photos(train_dir))
    return [p for p in list_images(train_dir) if p not in held]
