"""Image files and the pixel operations shared by training and evaluation (read, crop, resize)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")


def list_images(folder: str | os.PathLike, max_images: Optional[int] = None) -> list[Path]:
    """Image files under ``folder`` (recursive), sorted for reproducibility."""
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder not found: {root}")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTS and p.is_file())
    if not files:
        raise FileNotFoundError(f"no images ({', '.join(IMAGE_EXTS)}) under {root}")
    return files[:max_images] if max_images else files


def load_image(path: Path, min_side: int = 0) -> torch.Tensor:
    """RGB image as float ``(3, H, W)`` in [0, 1]; upscaled (bicubic) when its short side is below ``min_side``."""
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("RGB")
        w, h = im.size
        if min(w, h) < min_side:
            f = min_side / min(w, h)
            im = im.resize((max(min_side, round(w * f)), max(min_side, round(h * f))), Image.BICUBIC)
        arr = np.array(im, dtype=np.uint8)
    return torch.from_numpy(arr).permute(2, 0, 1).float().div_(255)


def short_side(path: Path) -> int:
    """The short side of an image file in pixels (reads only its header)."""
    from PIL import Image

    with Image.open(path) as im:
        return min(im.size)


def native_crop_side(path: Path, crop: int, unit: int) -> int:
    """The side of the largest square crop, at most ``crop`` px and a multiple of ``unit``, that fits the image
    without enlarging it."""
    side = min(crop, short_side(path) // unit * unit)
    if side < unit:
        raise ValueError(f"{path} is smaller than one crop unit ({unit} px); leave it out or enlarge it")
    return side


def center_crop(img: torch.Tensor, size: int) -> torch.Tensor:
    """The central ``size`` x ``size`` square of ``(..., H, W)``."""
    h, w = img.shape[-2:]
    top, left = (h - size) // 2, (w - size) // 2
    return img[..., top: top + size, left: left + size]


def bicubic_down(img: torch.Tensor, factor: int) -> torch.Tensor:
    """Bicubic anti-aliased downsample of ``(B, 3, H, W)`` by ``factor``, clamped to [0, 1]."""
    if factor == 1:
        return img
    h, w = img.shape[-2:]
    out = F.interpolate(img, size=(h // factor, w // factor), mode="bicubic", antialias=True, align_corners=False)
    return out.clamp_(0, 1)


def bicubic_up(img: torch.Tensor, scale: int) -> torch.Tensor:
    """Bicubic enlargement of ``(B, 3, H, W)`` by ``scale`` (ComfyUI's Upscale Image By), clamped to [0, 1]."""
    return F.interpolate(img, scale_factor=scale, mode="bicubic", align_corners=False).clamp(0, 1)
