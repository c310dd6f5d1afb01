"""Evaluation metrics and baselines (lua_core.metrics.pixel / baselines): hand-computed values.

Parity with ComfyUI's own ``comfy.utils`` is checked in-process in ``tests/integration/test_baselines_comfyui.py``.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lua_core.eval.baselines import bislerp, latent_upscale, pixel_upscale, slerp_vectors
from lua_core.metrics import pixel as M
from tests.helpers import slerp_edge_latent


# --------------------------------------------------------------------------- PSNR
def test_psnr_hand_computed():
    ref = torch.zeros(3, 16, 16, dtype=torch.float64)
    assert M.psnr(ref + 0.1, ref) == pytest.approx(20.0, abs=1e-9)          # mse 0.01
    img = ref.clone()
    img[:, :8] = 0.2                                                           # half the pixels off by 0.2
    assert M.psnr(img, ref) == pytest.approx(10 * math.log10(1 / 0.02), abs=1e-9)
    assert M.psnr(ref, ref) == math.inf
    # values outside [0, 1] are clamped first: 1.5 counts as 1.0
    assert M.psnr(torch.full((3, 4, 4), 1.5), torch.full((3, 4, 4), 0.5)) == pytest.approx(10 * math.log10(4))


def test_psnr_shape_mismatch():
    with pytest.raises(ValueError, match="shape"):
        M.psnr(torch.zeros(3, 8, 8), torch.zeros(3, 8, 9))


# --------------------------------------------------------------------------- SSIM
def test_ssim_identical_and_constant():
    g = torch.Generator().manual_seed(0)
    img = torch.rand(3, 32, 32, generator=g)
    assert M.ssim(img, img) == pytest.approx(1.0, abs=1e-12)
    # constant images: only the luminance term is left, (2ab + C1) / (a^2 + b^2 + C1)
    c1 = (0.01) ** 2
    want = (2 * 0.2 * 0.4 + c1) / (0.2 ** 2 + 0.4 ** 2 + c1)
    assert M.ssim(torch.full((3, 20, 20), 0.2, dtype=torch.float64),
                  torch.full((3, 20, 20), 0.4, dtype=torch.float64)) == pytest.approx(want, rel=1e-10)


def test_ssim_single_window_matches_numpy():
    """An 11x11 image has exactly one valid window: compute its Gaussian-weighted statistics by hand."""
    rng = np.random.default_rng(1)
    a, b = rng.random((3, 11, 11)), rng.random((3, 11, 11))
    x = np.arange(11) - 5.0
    g = np.exp(-x ** 2 / (2 * 1.5 ** 2))
    w = np.outer(g, g) / np.outer(g, g).sum()
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    vals = []
    for ca, cb in zip(a, b):
        ma, mb = (w * ca).sum(), (w * cb).sum()
        va, vb = (w * ca * ca).sum() - ma ** 2, (w * cb * cb).sum() - mb ** 2
        cov = (w * ca * cb).sum() - ma * mb
        vals.append((2 * ma * mb + c1) * (2 * cov + c2) / ((ma ** 2 + mb ** 2 + c1) * (va + vb + c2)))
    assert M.ssim(torch.from_numpy(a), torch.from_numpy(b)) == pytest.approx(float(np.mean(vals)), rel=1e-10)


def test_ssim_orders_degradations():
    g = torch.Generator().manual_seed(2)
    ref = torch.rand(3, 48, 48, generator=g)
    slight = (ref + 0.02 * torch.randn(ref.shape, generator=g)).clamp(0, 1)
    heavy = (ref + 0.2 * torch.randn(ref.shape, generator=g)).clamp(0, 1)
    assert 1.0 > M.ssim(slight, ref) > M.ssim(heavy, ref)
    assert M.ssim(heavy, ref) == pytest.approx(M.ssim(ref, heavy), rel=1e-12)  # symmetric
    with pytest.raises(ValueError, match="at least 11"):
        M.ssim(torch.zeros(3, 8, 8), torch.zeros(3, 8, 8))


# --------------------------------------------------------------------------- Laplacian variance
def test_laplacian_variance_known_patterns():
    assert M.laplacian_variance(torch.full((3, 16, 16), 0.37)) == pytest.approx(0.0, abs=1e-9)
    # grey checkerboard 0/255: every Laplacian response is +-4*255 (reflect-101 borders keep the pattern)
    yy, xx = torch.meshgrid(torch.arange(16), torch.arange(16), indexing="ij")
    board = ((yy + xx) % 2).float().expand(3, 16, 16)
    assert M.laplacian_variance(board) == pytest.approx((4 * 255.0) ** 2, rel=1e-6)
    # a blurred board has far less high-frequency energy
    blurred = F.avg_pool2d(board[None], 3, 1, 1, count_include_pad=False)[0]
    assert M.laplacian_variance(blurred) < 0.2 * M.laplacian_variance(board)


def test_laplacian_variance_uses_luma():
    img = torch.zeros(3, 8, 8)
    img[0, 4, 4] = 1.0  # a red impulse: luma 0.299 * 255
    lap = torch.zeros(8, 8, dtype=torch.float64)
    v = 0.299 * 255
    lap[4, 4] = -4 * v
    for dy, dx in ((0, 1), (1, 0), (0, -1), (-1, 0)):
        lap[4 + dy, 4 + dx] = v
    assert M.laplacian_variance(img) == pytest.approx(float(lap.var(unbiased=False)), rel=1e-9)


# --------------------------------------------------------------------------- bislerp and latent methods
def _latent(seed: int, shape: tuple[int, ...] = (2, 4, 5, 7)) -> torch.Tensor:
    return slerp_edge_latent(seed, shape)


def test_bislerp_shape_endpoints_and_constant():
    z = _latent(0)
    out = bislerp(z, 10, 14)
    assert out.shape == (2, 4, 10, 14) and out.dtype == z.dtype and torch.isfinite(out).all()
    for r_in, r_out in ((0, 0), (-1, -1)):
        for c_in, c_out in ((0, 0), (-1, -1)):
            assert torch.allclose(out[..., r_out, c_out], z[..., r_in, c_in], atol=1e-6)
    const = torch.randn(1, 4, 1, 1).expand(1, 4, 3, 3).contiguous()
    assert torch.allclose(bislerp(const, 12, 12), const[..., :1, :1].expand(1, 4, 12, 12), atol=1e-6)
    assert torch.allclose(bislerp(3.0 * z, 10, 14), 3.0 * out, atol=1e-5)  # positively homogeneous


def test_slerp_vectors_edge_cases():
    a = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 0.0], [1.0, 0.0]])
    b = torch.tensor([[0.0, 2.0], [-1.0, 0.0], [0.0, 3.0], [3.0, 0.0]])
    t = torch.full((4, 1), 0.5)
    out = slerp_vectors(a, b, t)
    r = math.sqrt(0.5) * 1.5                                  # 45 degrees, length (1 + 2) / 2
    assert torch.allclose(out[0], torch.tensor([r, r]), atol=1e-6)
    assert torch.allclose(out[1], torch.zeros(2), atol=1e-6)  # opposite: linear blend
    assert torch.isfinite(out).all()
    assert torch.allclose(out[3], a[3])                       # parallel: ComfyUI keeps the first vector


def test_latent_upscale_rejects_unknown():
    with pytest.raises(ValueError, match="unknown latent method"):
        latent_upscale(torch.zeros(1, 4, 2, 2), 2, "area51")


def test_pixel_upscale_lanczos_and_bicubic():
    img = torch.full((1, 3, 8, 6), 0.25)
    for method in ("bicubic", "lanczos"):
        out = pixel_upscale(img, 4, method)
        assert out.shape == (1, 3, 32, 24)
        assert torch.allclose(out, torch.full_like(out, 0.25), atol=1e-5)
    g = torch.Generator().manual_seed(5)
    x = torch.rand(1, 3, 16, 16, generator=g)
    lz, bc = pixel_upscale(x, 2, "lanczos"), pixel_upscale(x, 2, "bicubic")
    assert 0 <= float(lz.min()) and float(lz.max()) <= 1
    assert float((lz - bc).abs().mean()) < 0.05  # two interpolators of the same image agree closely
