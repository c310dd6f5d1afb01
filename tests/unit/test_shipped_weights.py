"""The adapters bundled in weights/ against the baselines a user would otherwise pick, on real validation
photographs decoded with each family's tiny autoencoder (the shipping bar, checked in CI).

The ship bar (against the user's route, VAE Decode -> Upscale Image with a near-lossless VAE, passed through
the same tiny autoencoder: LPIPS at most its, PSNR within 0.5 dB of it, at x2 and x4 on 512 px crops of both
image sets) is measured by ``scripts/release_finetuned.py``.  Here every adapter must clearly beat every
latent upscaler and stay below the autoencoder's ceiling, a ``release`` one must not trail the user's route
by more than the allowance on these small crops either (with its VAE input when it was trained for one), and
the manifest's verdict without the VAE input must agree with what is measured.
"""
from __future__ import annotations

import pytest

from lua_core.checkpoints.manifest import REPO_ROOT, Manifest
from lua_core.eval import evaluate
from lua_core.families import get_family

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
    crop = CROP * get_family(entry.family).pack  # a packed (FLUX.2) x4 input needs 64 px crops
    result = evaluate(None, REPO_ROOT / entry.bundled, shared_dir / "data" / "val", entry.scales, crop, IMAGES,
                      perceptual=False, only_paths=("lua", "lua_vae", "pixel_route", "vae_ceiling") + LATENT_PATHS)
    return entry, result


def _judged(entry) -> str:
    return "lua_vae" if (entry.training or {}).get("teacher") == "vae" else "lua"


def _gaps(result, path: str) -> dict[str, float]:
    return {key: rows[path]["psnr"] - rows["pixel_route"]["psnr"] for key, rows in result["results"].items()}


def test_status_agrees_with_the_users_route_bar(measured):
    """The ship bar is measured on 512 px crops by the release script; here a ``release`` adapter must at
    least stay within its PSNR allowance of the user's route on these small crops too."""
    entry, result = measured
    gaps = _gaps(result, _judged(entry))
    assert entry.status in ("release", "preview"), entry.status
    if entry.status == "release":
        assert all(g > -PSNR_ALLOWANCE_DB for g in gaps.values()), (
            f"{entry.name} is marked release but trails the user's route (VAE Decode -> Upscale Image) by more "
            f"than {PSNR_ALLOWANCE_DB} dB: {gaps}")


def test_without_its_vae_a_vae_teacher_adapter_is_labelled_preview(measured):
    """The tiny built-in teacher cannot see what the full VAE shows at base size: without the VAE input the
    user's route is more faithful, and the manifest must say so."""
    entry, result = measured
    if _judged(entry) != "lua_vae":
        pytest.skip("not a VAE-teacher adapter")
    gaps = _gaps(result, "lua")
    assert all(g < -PSNR_ALLOWANCE_DB for g in gaps.values()), gaps
    assert entry.training["without_vae"]["status"] == "preview"


def test_beats_every_latent_upscaler(measured):
    entry, result = measured
    for key, rows in result["results"].items():
        best = max(rows[p]["psnr"] for p in LATENT_PATHS)
        for path in ("lua", _judged(entry)):
            assert rows[path]["psnr"] > best + MIN_GAIN_DB, (entry.name, key, path, rows[path]["psnr"], best)
            assert rows[path]["ssim"] > max(rows[p]["ssim"] for p in LATENT_PATHS), (entry.name, key)
        assert rows["lua"]["psnr"] < rows["vae_ceiling"]["psnr"]  # nothing beats the autoencoder's own round trip
