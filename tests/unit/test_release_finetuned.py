"""The ship bar of scripts/release_finetuned.py, on made-up figures."""
from __future__ import annotations

import importlib.util
from pathlib import Path

spec = importlib.util.spec_from_file_location(
    "release_finetuned", Path(__file__).resolve().parents[2] / "scripts" / "release_finetuned.py")
rel = importlib.util.module_from_spec(spec)
spec.loader.exec_module(rel)  # type: ignore[union-attr]


def _result(lua_psnr: float, lua_lpips: float) -> dict:
    rows = {"lua": {"psnr": lua_psnr, "lpips": lua_lpips}, "pixel_bicubic": {"psnr": 22.0, "lpips": 0.30},
            "pixel_lanczos": {"psnr": 22.0, "lpips": 0.29}, "latent_bicubic": {"psnr": 18.0, "lpips": 0.6},
            "vae_ceiling": {"psnr": 26.0, "lpips": 0.10}}
    return {"results": {"x2": rows}}


def test_bar_needs_lpips_below_both_pixel_resizes():
    assert rel.bar_misses(rel.figures(_result(22.0, 0.28))) == []
    misses = rel.bar_misses(rel.figures(_result(22.0, 0.295)))  # below bicubic, not below Lanczos
    assert len(misses) == 1 and "LPIPS" in misses[0]


def test_bar_allows_half_a_db_below_bicubic():
    assert rel.bar_misses(rel.figures(_result(21.6, 0.2))) == []
    misses = rel.bar_misses(rel.figures(_result(21.4, 0.2)))
    assert len(misses) == 1 and "PSNR" in misses[0]


def test_gap_closed():
    figs = rel.figures(_result(24.0, 0.20))
    assert figs["x2"]["gap_closed_psnr"] == 0.5
    assert figs["x2"]["gap_closed_lpips"] == 0.5


def test_the_card_names_the_in_run_validation_crops():
    assert rel.validation_text({"val_images": 6, "val_crop": 384, "val_native": True}) == (
        "6 held-out + 6 val crops of 384 px at native resolution")
    assert rel.validation_text({}) == "4 held-out + 4 val crops of 384 px, small val images enlarged"


def test_native_report_is_described_and_reproduced():
    native = {"images": {"count": 24, "crop": 512, "native": True, "crops": [320] * 22 + [512] * 2}}
    enlarged = {"images": {"count": 24, "crop": 512}}
    assert rel.crop_description(native["images"]) == ("512 px at native resolution (nothing enlarged; "
                                                      "22 smaller images cropped to 320 px)")
    assert rel.crop_description(enlarged["images"]) == "512 px"
    assert " --crop 512 --native " in rel.eval_command("a.safetensors", "val", native)
    assert "--native" not in rel.eval_command("a.safetensors", "val", enlarged)
    assert "--images holdout " in rel.eval_command("a.safetensors", "holdout", enlarged)


def test_the_card_says_whether_the_encoder_was_trained_and_where_the_run_started():
    assert rel.encoder_text({}) == "" and rel.encoder_text({"encoder_lr": 0.0}) == ""
    trained = rel.encoder_text({"encoder_lr": 5e-5})
    assert "encoder was trained" in trained and "5e-05" in trained and "decoder is the original" in trained
    assert "converted" in rel.origin_text({"init": {"from": "lua_light_flux1.safetensors", "converted": True}})
    warm = rel.origin_text({"init": {"from": "lua_light_sd15.safetensors", "converted": False}})
    assert "teacher-skip adapter `lua_light_sd15.safetensors`" in warm and "converted" not in warm
