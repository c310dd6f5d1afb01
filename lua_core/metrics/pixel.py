"""Pixel metrics on RGB images in ``[0, 1]``: PSNR, SSIM and the Laplacian-variance sharpness/noise measure.

All functions take ``(3, H, W)`` or ``(B, 3, H, W)`` float tensors and return one
float per image (a list for batches is left to the caller: pass one image at a time).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03
# ITU-R BT.601 luma weights (what OpenCV's RGB->GRAY uses)
LUMA = (0.299, 0.587, 0.114)


def _batch(img: torch.Tensor) -> torch.Tensor:
    if img.ndim == 3:
        img = img.unsqueeze(0)
    if img.ndim != 4:
        raise ValueError(f"expected an image (3, H, W) or a batch (B, 3, H, W), got shape {tuple(img.shape)}")
    return img.double()


def psnr(img: torch.Tensor, ref: torch.Tensor, data_range: float = 1.0) -> float:
    """PSNR in dB of ``img`` against ``ref`` (both clamped to ``[0, data_range]``); ``inf`` when identical."""
    a, b = _batch(img).clamp(0, data_range), _batch(ref).clamp(0, data_range)
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch: {tuple(a.shape)} vs {tuple(b.shape)}")
    mse = float(torch.mean((a - b) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(data_range ** 2 / mse)


def gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> torch.Tensor:
    """Normalised 2-D Gaussian ``(size, size)`` (float64)."""
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(x ** 2) / (2 * sigma ** 2))
    g = g / g.sum()
    return g[:, None] * g[None, :]


def ssim(img: torch.Tensor, ref: torch.Tensor, data_range: float = 1.0, window: int = SSIM_WINDOW,
         sigma: float = SSIM_SIGMA) -> float:
    """Mean SSIM (Wang et al. 2004): Gaussian 11x11 window, sigma 1.5, K1 0.01, K2 0.03.

    Computed per RGB channel over the *valid* window positions (no padding, as the
    reference MATLAB code) and averaged over channels and positions.
    """
    a, b = _batch(img).clamp(0, data_range), _batch(ref).clamp(0, data_range)
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch: {tuple(a.shape)} vs {tuple(b.shape)}")
    if min(a.shape[-2:]) < window:
        raise ValueError(f"SSIM needs images of at least {window}x{window} px, got {tuple(a.shape[-2:])}")
    c = a.shape[1]
    g = gaussian_window(window, sigma).sum(0).to(a.device)  # the 1-D Gaussian: the 2-D window is separable
    stack = torch.cat([a, b, a * a, b * b, a * b], 1)
    n = stack.shape[1]
    blurred = F.conv2d(F.conv2d(stack, g.view(1, 1, 1, -1).expand(n, 1, 1, window), groups=n),
                       g.view(1, 1, -1, 1).expand(n, 1, window, 1), groups=n)
    mu_a, mu_b, aa, bb, ab = blurred.split(c, 1)
    var_a = aa - mu_a ** 2
    var_b = bb - mu_b ** 2
    cov = ab - mu_a * mu_b
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    return float(s.mean())


def laplacian_variance(img: torch.Tensor) -> float:
    """Variance of the 3x3 Laplacian of the luma image in 0..255 units (OpenCV ``Laplacian(gray).var()``).

    The kernel is ``[[0, 1, 0], [1, -4, 1], [0, 1, 0]]`` with reflect-101 borders.  High values mean
    sharp detail or noise, low values blur; compare a path's value with the ground truth's.
    """
    x = _batch(img).clamp(0, 1) * 255.0
    if x.shape[1] != 3:
        raise ValueError(f"expected RGB images, got {x.shape[1]} channels")
    luma = sum(wt * x[:, i: i + 1] for i, wt in enumerate(LUMA))
    k = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]], dtype=torch.float64)
    lap = F.conv2d(F.pad(luma, (1, 1, 1, 1), mode="reflect"), k[None, None].to(x.device))
    return float(lap.var(unbiased=False))
