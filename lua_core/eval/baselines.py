"""Baselines a user would otherwise pick: ComfyUI's Upscale Latent methods and pixel resizes.

Latent methods work on the ComfyUI LATENT (raw values, the family's ComfyUI layout), as the
built-in "Upscale Latent" node does: ``nearest-exact``, ``bilinear``, ``bicubic``
(``torch.nn.functional.interpolate``, ``align_corners=False``) and ``bislerp``.
Pixel methods resize the image decoded at base size: bicubic (PyTorch) and Lanczos (Pillow).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..toolkit.images import bicubic_up

LATENT_METHODS = ("nearest", "bilinear", "bicubic", "bislerp")
PIXEL_METHODS = ("bicubic", "lanczos")


def _source_coords(length_old: int, length_new: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor,
                                                                                     torch.Tensor]:
    """Per output index: lower/upper source index and blend ratio, as half-pixel-centred linear resampling.

    Source position ``(i + 0.5) * old / new - 0.5`` clamped at 0; the upper neighbour is clamped at the
    last index (these are the sampling positions of ``interpolate(mode="bilinear")``).
    """
    scale = length_old / length_new
    pos = ((torch.arange(length_new, dtype=torch.float64, device=device) + 0.5) * scale - 0.5).clamp(min=0.0)
    lo = pos.floor().long().clamp(max=length_old - 1)
    ratio = (pos - lo.double()).float()
    ratio = torch.where(lo >= length_old - 1, torch.zeros_like(ratio), ratio)
    hi = (lo + 1).clamp(max=length_old - 1)
    return lo, hi, ratio


def slerp_vectors(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Spherical blend of channel vectors ``a``/``b`` (``(N, C)``) by ``t`` (``(N, 1)``), ComfyUI's variant.

    Directions are slerped, the length is blended linearly (``|a| (1-t) + |b| t``).  Nearly parallel
    pairs return ``a``; nearly opposite pairs fall back to the linear blend; zero vectors have no direction.
    """
    na = a.norm(dim=-1, keepdim=True)
    nb = b.norm(dim=-1, keepdim=True)
    ua = torch.where(na == 0, torch.zeros_like(a), a / na)
    ub = torch.where(nb == 0, torch.zeros_like(b), b / nb)
    dot = (ua * ub).sum(-1, keepdim=True)
    omega = torch.acos(dot)
    sin_omega = torch.sin(omega)
    direction = (torch.sin((1.0 - t) * omega) * ua + torch.sin(t * omega) * ub) / sin_omega
    out = direction * (na * (1.0 - t) + nb * t)
    out = torch.where(dot < eps - 1, a * (1.0 - t) + b * t, out)
    return torch.where(dot > 1 - eps, a, out)


def _slerp_axis(x: torch.Tensor, new_len: int, axis: int) -> torch.Tensor:
    """Resample ``(N, C, H, W)`` along ``axis`` (2 or 3) to ``new_len`` by slerping neighbouring pixels."""
    lo, hi, ratio = _source_coords(x.shape[axis], new_len, x.device)
    xa, xb = x.index_select(axis, lo), x.index_select(axis, hi)
    shape = [1, 1, 1, 1]
    shape[axis] = new_len
    t = ratio.view(shape).expand(x.shape[0], 1, *([new_len, x.shape[3]] if axis == 2 else [x.shape[2], new_len]))
    c = x.shape[1]
    flat = lambda v: v.movedim(1, -1).reshape(-1, v.shape[1])  # noqa: E731
    out = slerp_vectors(flat(xa), flat(xb), flat(t))
    return out.reshape(*xa.movedim(1, -1).shape[:-1], c).movedim(-1, 1)


def bislerp(latent: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Resize ``(N, C, H, W)`` to ``(height, width)``: slerp between channel vectors along W, then H.

    Same semantics as ComfyUI's ``bislerp`` upscale method (``comfy.utils.bislerp``).
    """
    dtype = latent.dtype
    x = _slerp_axis(latent.float(), width, 3)
    x = _slerp_axis(x, height, 2)
    return x.to(dtype)


def latent_upscale(latent: torch.Tensor, scale: int, method: str) -> torch.Tensor:
    """ComfyUI "Upscale Latent" on a LATENT ``(N, C, H, W)`` by an integer ``scale``."""
    h, w = latent.shape[-2:]
    size = (h * scale, w * scale)
    if method == "bislerp":
        return bislerp(latent, *size)
    mode = {"nearest": "nearest-exact", "bilinear": "bilinear", "bicubic": "bicubic"}.get(method)
    if mode is None:
        raise ValueError(f"unknown latent method {method!r}; known: {', '.join(LATENT_METHODS)}")
    return F.interpolate(latent, size=size, mode=mode)


def pil_lanczos(img: torch.Tensor, scale: int) -> torch.Tensor:
    """Lanczos resize (Pillow, per channel in float: no 8-bit rounding) of ``(N, 3, H, W)`` in [0, 1]."""
    from PIL import Image

    out = []
    for im in img.detach().float().cpu().clamp(0, 1):
        chans = []
        for ch in im.numpy():
            pil = Image.fromarray(np.ascontiguousarray(ch, dtype=np.float32), mode="F")
            pil = pil.resize((pil.width * scale, pil.height * scale), Image.Resampling.LANCZOS)
            chans.append(np.asarray(pil, dtype=np.float32))
        out.append(torch.from_numpy(np.stack(chans)))
    return torch.stack(out).to(img.device, img.dtype).clamp(0, 1)


def pixel_upscale(img: torch.Tensor, scale: int, method: str) -> torch.Tensor:
    """Resize a decoded image ``(N, 3, H, W)`` by ``scale``: ``bicubic`` (PyTorch) or ``lanczos`` (Pillow)."""
    if method == "bicubic":
        return bicubic_up(img, scale)
    if method == "lanczos":
        return pil_lanczos(img, scale)
    raise ValueError(f"unknown pixel method {method!r}; known: {', '.join(PIXEL_METHODS)}")
