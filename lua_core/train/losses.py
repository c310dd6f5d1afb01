"""The math of the training loss terms (L1, FFT-L1, downsampled and high-pass L1, EAGLE).

All functions take ``(B, C, H, W)`` tensors and return a scalar (mean over
elements); they compute in float32 whatever the input dtype.  The terms a config can
weigh, and the weighted sum both trainers use, are in :mod:`.loss_registry`.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

# Scharr derivative along x (columns); its transpose differentiates along y.
SCHARR_X = torch.tensor([[-3.0, 0.0, 3.0], [-10.0, 0.0, 10.0], [-3.0, 0.0, 3.0]])
LUMA = (0.299, 0.587, 0.114)


def l1(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a.float() - b.float()).abs().mean()


def fft_magnitude(x: torch.Tensor, norm: str = "ortho") -> torch.Tensor:
    """|FFT2| per channel over the last two dims."""
    return torch.fft.fft2(x.float(), norm=norm).abs()


def fft_l1(a: torch.Tensor, b: torch.Tensor, norm: str = "ortho") -> torch.Tensor:
    """L1 between channel-wise 2-D FFT magnitudes."""
    return l1(fft_magnitude(a, norm), fft_magnitude(b, norm))


def downsample(x: torch.Tensor, factor: int) -> torch.Tensor:
    """Bicubic anti-aliased downsample by an integer factor (sizes floor-divided)."""
    if factor == 1:
        return x
    h, w = x.shape[-2:]
    return F.interpolate(x.float(), size=(max(1, h // factor), max(1, w // factor)), mode="bicubic",
                         antialias=True, align_corners=False)


def down_l1(a: torch.Tensor, b: torch.Tensor, factor: int) -> torch.Tensor:
    """L1 between bicubic-downsampled images (Stage II's ``||down_d(x_hat) - down_d(x)||_1``)."""
    return l1(downsample(a, factor), downsample(b, factor))


def gaussian_kernel1d(sigma: float, size: int) -> torch.Tensor:
    r = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    k = torch.exp(-(r ** 2) / (2 * sigma ** 2))
    return k / k.sum()


def gaussian_blur(x: torch.Tensor, sigma: float = 1.0, size: int = 5) -> torch.Tensor:
    """Separable depth-wise Gaussian blur with reflect padding (replicate where the image is too small)."""
    x = x.float()
    c = x.shape[1]
    k = gaussian_kernel1d(sigma, size).to(x.device)
    p = size // 2
    mode = "reflect" if min(x.shape[-2:]) > p else "replicate"
    x = F.pad(x, (p, p, p, p), mode=mode)
    x = F.conv2d(x, k.view(1, 1, 1, size).expand(c, 1, 1, size), groups=c)
    return F.conv2d(x, k.view(1, 1, size, 1).expand(c, 1, size, 1), groups=c)


def high_freq_l1(a: torch.Tensor, b: torch.Tensor, sigma: float = 1.0, size: int = 5) -> torch.Tensor:
    """L1 between high-pass residuals ``x - G_sigma(x)``."""
    return l1(a.float() - gaussian_blur(a, sigma, size), b.float() - gaussian_blur(b, sigma, size))


def luminance(x: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) RGB -> (B, 1, H, W) luma; a 1-channel input is returned as is."""
    x = x.float()
    if x.shape[1] == 1:
        return x
    w = torch.tensor(LUMA, device=x.device).view(1, 3, 1, 1)
    return (x * w).sum(1, keepdim=True)


def scharr_gradients(y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Scharr x/y derivatives of a 1-channel image (``valid`` convolution: 2 px smaller)."""
    kx = SCHARR_X.to(y.device).view(1, 1, 3, 3)
    return F.conv2d(y, kx), F.conv2d(y, kx.transpose(-1, -2))


def patch_variance(g: torch.Tensor, patch: int = 3) -> torch.Tensor:
    """Population variance over non-overlapping ``patch x patch`` cells (edges that do not fill a cell dropped)."""
    b, c, h, w = g.shape
    hh, ww = h // patch, w // patch
    g = g[..., : hh * patch, : ww * patch].reshape(b, c, hh, patch, ww, patch)
    return g.var(dim=(3, 5), unbiased=False)


def highpass_weight(h: int, w: int, cutoff: float = 0.5, device: Optional[torch.device] = None) -> torch.Tensor:
    """``1 - exp(-(u^2 + v^2) / (2 cutoff^2))`` on the FFT grid (u, v in cycles/sample, ``fftfreq`` order)."""
    u = torch.fft.fftfreq(h, device=device).view(h, 1)
    v = torch.fft.fftfreq(w, device=device).view(1, w)
    return 1 - torch.exp(-(u ** 2 + v ** 2) / (2 * cutoff ** 2))


def eagle_from_maps(va: torch.Tensor, vb: torch.Tensor, cutoff: float = 0.5) -> torch.Tensor:
    """High-pass weighted L1 between FFT magnitudes (unnormalised FFT) of two variance maps."""
    wgt = highpass_weight(va.shape[-2], va.shape[-1], cutoff, va.device)
    return (wgt * (torch.fft.fft2(va).abs() - torch.fft.fft2(vb).abs())).abs().mean()


def eagle_loss(a: torch.Tensor, b: torch.Tensor, patch: int = 3, cutoff: float = 0.5) -> torch.Tensor:
    """EAGLE: spectra of local gradient-variance maps (Scharr on luma, ``patch``-cells), x and y summed."""
    ga, gb = scharr_gradients(luminance(a)), scharr_gradients(luminance(b))
    total = a.new_zeros((), dtype=torch.float32)
    for da, db in zip(ga, gb):
        total = total + eagle_from_maps(patch_variance(da, patch), patch_variance(db, patch), cutoff)
    return total
