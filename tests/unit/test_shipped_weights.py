"""The adapters bundled in weights/ against the baselines a user would otherwise pick, on real validation
photographs decoded with each family's tiny autoencoder (the shipping bar, checked in CI).

The ship bar (LPIPS below decode + pixel bicubic's and Lanczos's, PSNR within 0.5 dB of pixel bicubic's,
at x2 and x4 on 512 px crops) is measured by ``scripts/release_adapter.py``; here every adapter must clearly
beat every latent upscaler and stay below the autoencoder's ceiling, and a ``release`` one must not trail
pixel bicubic by more than the allowance on these small crops either.
"""
from __future__ import annotations

import pytest

from lua_core.checkpoints.manifest import REPO_ROOT, Manifest
from lua_core.eval import evaluate

# evaluates every adapter in weights/ on real photographs (tens of seconds on a CPU)
pytestmark = pytest.mark.slow

BUNDLED = [e for e in Manifest.load() if e.bundled is not None]
IMAGES = 4      # spread over ../shared/data/val
CROP = 128      # px; x4 inputs are 32 px images (4x4 latents, FLUX.2 packs 2x2)
LATENT_PATHS = ("latent_nearest", "latent_bilinear", "latent_bicubic", "latent_bislerp")
PSNR_ALLOWANCE_DB = 0.5  # the ship bar: PSNR within 0.5 dB of decode + pixel bicubic
MIN_GAIN_DB = 0.5  # dB over the best latent upscaler (the weakest bundled adapter, SDXL x2, measures ~0.85 here)


@pytest.fixture(scope="module", params=BUNDLED, ids=[e.family for e in BUNDLED])
def measured(request, shared_dir, one_torch_thread):
    entry = request.param
    crop = CROP * (2 if entry.family == "flux2" else 1)  # FLUX.2's packed x4 input needs 64 px crops
    result = evaluate(None, REPO_ROOT / entry.bundled, shared_dir / "data" / "val", entry.scales, crop, IMAGES,
                      perceptual=False)
    return entry, result


def test_status_agrees_with_the_pixel_bicubic_bar(measured):
    """The ship bar is measured on 512 px crops by the release script; here a ``release`` adapter must at
    least stay within its PSNR allowance of pixel bicubic on these small crops too."""
    entry, result = measured
    gaps = {key: rows["lua"]["psnr"] - rows["pixel_bicubic"]["psnr"] for key, rows in result["results"].items()}
    assert entry.status in ("release", "preview"), entry.status
    if entry.status == "release":
        assert all(g > -PSNR_ALLOWANCE_DB for g in gaps.values()), (
            f"{entry.name} is marked release but trails decode + pixel bicubic by more than "
            f"{PSNR_ALLOWANCE_DB} dB: {gaps}")


def test_beats_every_latent_upscaler(measured):
    entry, result = measured
    for key, rows in result["results"].items():
        best = max(rows[p]["psnr"] for p in LATENT_PATHS)
        assert rows["lua"]["psnr"] > best + MIN_GAIN_DB, (entry.name, key, rows["lua"]["psnr"], best)
        assert rows["lua"]["ssim"] > max(rows[p]["ssim"] for p in LATENT_PATHS), (entry.name, key)
        assert rows["lua"]["psnr"] < rows["vae_ceiling"]["psnr"]  # nothing beats the autoencoder's own round trip
