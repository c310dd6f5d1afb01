"""The ship bar of scripts/release_finetuned.py, on made-up figures."""
from __future__ import annotations

import json

from safetensors import safe_open

from lua_core.families import get_family
from lua_core.locations import REPO_ROOT
from scripts import release_finetuned as rel


def _result(lua_psnr: float, lua_lpips: float, path: str = "lua") -> dict:
    rows = {path: {"psnr": lua_psnr, "lpips": lua_lpips}, "pixel_route": {"psnr": 26.0, "lpips": 0.30},
            "pixel_bicubic": {"psnr": 22.0, "lpips": 0.40}, "latent_bicubic": {"psnr": 18.0, "lpips": 0.6},
            "vae_ceiling": {"psnr": 27.0, "lpips": 0.10}}
    return {"results": {"x2": rows}}


def test_bar_is_the_users_route_lpips_at_most_its():
    assert rel.bar_misses(rel.figures(_result(26.0, 0.30))) == []
    misses = rel.bar_misses(rel.figures(_result(26.0, 0.301)))
    assert len(misses) == 1 and "LPIPS" in misses[0] and "user's route" in misses[0]


def test_bar_allows_half_a_db_below_the_users_route():
    assert rel.bar_misses(rel.figures(_result(25.6, 0.2))) == []
    misses = rel.bar_misses(rel.figures(_result(25.4, 0.2)))
    assert len(misses) == 1 and "PSNR" in misses[0]


def test_tiny_decode_bicubic_is_not_the_judge():
    # beating bicubic of the tiny decode by far is no pass when the user's route is better
    misses = rel.bar_misses(rel.figures(_result(23.0, 0.35)))
    assert len(misses) == 2


def test_a_vae_teacher_adapter_is_judged_with_its_vae_input():
    figs = rel.figures(_result(25.9, 0.25, path="lua_vae"))
    assert rel.judged_path("vae") == "lua_vae" and rel.judged_path("tae") == "lua"
    assert rel.bar_misses(figs, "lua_vae") == []
    assert rel.bar_misses(figs, "lua") == ["x2: not measured"]
    assert rel.aim_misses(figs, "lua_vae") == ["x2: LPIPS 0.83x, -0.10 dB"]  # PSNR below the route: not the aim
    assert rel.aim_misses(rel.figures(_result(26.1, 0.25, path="lua_vae")), "lua_vae") == []


def test_gap_closed_between_latent_bicubic_and_the_users_route():
    figs = rel.figures(_result(22.0, 0.45))
    assert figs["x2"]["lua_gap_closed_psnr"] == 0.5
    assert figs["x2"]["lua_gap_closed_lpips"] == 0.5


def test_reports_of_one_file_merge_by_path_only_on_the_same_images():
    a = {"images": {"names": ["a.png"], "count": 1, "crop": 512}, "scales": [2], "paths": ["lua_vae", "pixel_route"],
         "labels": {"lua_vae": "A", "pixel_route": "R"},
         "results": {"x2": {"lua_vae": {"psnr": 1.0}, "pixel_route": {"psnr": 2.0}}}}
    b = {"images": {"names": ["a.png"], "count": 1, "crop": 512, "native": True, "crops": [512]}, "scales": [2],
         "paths": ["lua", "pixel_route"], "labels": {"lua": "L", "pixel_route": "R"},
         "results": {"x2": {"lua": {"psnr": 3.0}, "pixel_route": {"psnr": 9.0}}}, "environment": {"device": "cpu"}}
    merged = rel.merged_reports([a, b])
    assert merged["paths"] == ["lua_vae", "pixel_route", "lua"]
    assert merged["results"]["x2"]["lua"] == {"psnr": 3.0} and merged["results"]["x2"]["pixel_route"] == {"psnr": 2.0}
    assert merged["merged_from"][0]["paths"] == ["lua"]
    other = {**b, "images": {"names": ["b.png"], "count": 1, "crop": 512}}
    try:
        rel.merged_reports([a, other])
    except ValueError as exc:
        assert "other images" in str(exc)
    else:
        raise AssertionError("reports on other images merged")


def test_the_card_names_the_in_run_validation_crops():
    assert rel.validation_text({"val_images": 6, "val_crop": 384, "val_native": True}) == (
        "6 held-out + 6 val crops of 384 px at native resolution")
    assert rel.validation_text({}) == "4 held-out + 4 val crops of 384 px, small val images enlarged"


def test_native_report_is_described_and_reproduced():
    native = {"images": {"count": 24, "crop": 512, "native": True, "crops": [320] * 22 + [512] * 2},
              "paths": ["lua_vae", "pixel_route"], "environment": {"device": "cuda"}}
    enlarged = {"images": {"count": 24, "crop": 512}, "paths": ["lua"], "environment": {"device": "cpu"}}
    assert rel.crop_description(native["images"]) == ("512 px at native resolution (nothing enlarged; "
                                                      "22 smaller images cropped to 320 px)")
    assert rel.crop_description(enlarged["images"]) == "512 px"
    assert " --crop 512 --native " in rel.eval_command("a.safetensors", "val", native)
    assert "--native" not in rel.eval_command("a.safetensors", "val", enlarged)
    assert "--images holdout " in rel.eval_command("a.safetensors", "holdout", enlarged)
    assert rel.eval_command("a.safetensors", "val", native).endswith("--paths lua_vae,pixel_route --device cuda")
    assert rel.eval_command("a.safetensors", "val", enlarged).endswith("--paths lua --threads 1")


def test_the_card_says_whether_the_encoder_was_trained_and_where_the_run_started():
    assert rel.encoder_text({}) == "" and rel.encoder_text({"encoder_lr": 0.0}) == ""
    trained = rel.encoder_text({"encoder_lr": 5e-5})
    assert "encoder was trained" in trained and "5e-05" in trained and "decoder is the original" in trained
    assert "converted" in rel.origin_text({"init": {"from": "lua_light_flux1.safetensors", "converted": True}})
    warm = rel.origin_text({"init": {"from": "lua_light_sd15.safetensors", "converted": False}})
    assert "teacher-skip adapter `lua_light_sd15.safetensors`" in warm and "converted" not in warm


def test_another_files_report_lends_only_its_baseline_rows():
    report = {"paths": ["lua_vae", "lua", "pixel_route", "latent_bicubic"]}
    assert rel.baseline_rows(report)["paths"] == ["pixel_route", "latent_bicubic"]
    assert report["paths"] == ["lua_vae", "lua", "pixel_route", "latent_bicubic"]  # the original is left alone


def test_the_cards_loss_comes_from_the_registry_and_the_shipped_metadata_reads():
    """The card's formula is the loss registry's, from the fine-tune config stored in a shipped file."""
    with safe_open(str(REPO_ROOT / "weights" / "lua_light_sdxl.safetensors"), "pt") as f:
        meta = json.loads(f.metadata()["lua.training"])
    assert meta["recipe"] == "finetune"
    lines = rel.card_training(get_family("sdxl"), meta, "lua_vae", "a CPU")
    loss = next(line for line in lines if line.startswith("- Loss: "))
    assert loss.startswith("- Loss: 10.0 x L1 + 1.0 x FFT-L1 + 0.6 x LPIPS(AlexNet) (x2 head 1.5) on a decoded")
    assert "--set teacher='\"vae\"'" in lines[2] and "VAE teacher's stand-in" in loss


def test_every_bundled_card_states_the_loss_its_file_was_trained_with():
    """The card's loss line is the loss registry's formula of the recipe stored in the file."""
    from lua_core.train.finetune import recipe_formula, resumed_config

    cards = sorted((REPO_ROOT / "weights").glob("lua_light_*.md"))
    assert len(cards) == 5
    for card in cards:
        with safe_open(str(card.with_suffix(".safetensors")), "pt") as f:
            training = json.loads(f.metadata()["lua.training"])
        formula = recipe_formula(resumed_config(training.get("config") or training, {}))
        loss_lines = [line for line in card.read_text().splitlines() if line.startswith("- Loss: ")]
        assert len(loss_lines) == 1 and loss_lines[0].startswith(f"- Loss: {formula} on a decoded"), card.name
