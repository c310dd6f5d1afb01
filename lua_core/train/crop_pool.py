"""Training photographs held in memory, with fresh random crops on every draw.

Which photographs (the training folder minus the fixed held-out set) is decided by
:mod:`lua_core.toolkit.photo_sets`.
"""
from __future__ import annotations

import random
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F


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
