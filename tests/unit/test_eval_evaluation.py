"""The evaluation end to end (lua_core.eval.evaluate and ``python -m lua_core.eval``) on two
validation crops with the bundled FLUX.1 adapter and the FLUX.1 tiny autoencoder."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from lua_core.eval import ALL_PATHS, evaluate, resolve_checkpoint
from lua_core.eval.__main__ import main as cli_main
from lua_core.metrics.perceptual import FETCH_COMMAND

REPO = Path(__file__).resolve().parents[2]
BUNDLED = REPO / "weights" / "lua_light_flux1.safetensors"


@pytest.fixture(scope="module")
def val_dir(shared_dir) -> Path:
    return shared_dir / "data" / "val"


@pytest.fixture(scope="module")
def run(tmp_path_factory, val_dir, one_torch_thread):
    if not BUNDLED.is_file():
        pytest.skip("bundled adapter weights/lua_light_flux1.safetensors missing")
    out = tmp_path_factory.mktemp("eval") / "{family}"
    empty_metrics = tmp_path_factory.mktemp("no_metrics")  # perceptual weights absent: reported, not fatal
    result = evaluate(None, "lua_light_flux1.safetensors", val_dir, (2, 4), 128, 2, out_dir=out,
                      metrics_root=empty_metrics)
    return result, Path(result["out_dir"])


@pytest.mark.slow
def test_reports_written(run):
    result, out = run
    assert out.name == "flux1" and result["family"] == "flux1"
    data = json.loads((out / "results.json").read_text())
    assert data["images"]["count"] == 2 and data["scales"] == [2, 4]
    md = (out / "results.md").read_text()
    for label in result["labels"].values():
        assert md.count(f"| {label} |") + md.count(f"| **{label}** |") == 2  # one row per scale
    assert "LPIPS: unavailable" in md and FETCH_COMMAND in md and "DISTS: unavailable" in md
    from PIL import Image

    with Image.open(out / "crops.jpg") as im:
        assert im.width >= 5 * 128 and im.height >= 2 * 128  # five columns, two scales


@pytest.mark.slow
def test_every_path_measured(run):
    result, _ = run
    assert result["paths"] == list(ALL_PATHS)
    assert result["metrics"]["psnr"] == "ok" and result["metrics"]["lpips"].startswith("unavailable")
    for key in ("x2", "x4"):
        for path in ALL_PATHS:
            r = result["results"][key][path]
            assert math.isfinite(r["psnr"]) and 0 < r["ssim"] <= 1 and r["lapvar"] > 0, (key, path)
            assert "lpips" not in r
            t = r["time_ms"]
            assert t["total"] > 0 and t["decode"] > 0 and t["encode"] > 0
            assert len(result["per_image"][key][path]["psnr"]) == 2


@pytest.mark.slow
def test_quality_ordering(run):
    result, _ = run
    for key in ("x2", "x4"):
        r = result["results"][key]
        assert r["vae_ceiling"]["psnr"] > r["latent_bicubic"]["psnr"] + 3, key
        assert r["lua"]["psnr"] > r["latent_bicubic"]["psnr"] + 1, key
        assert r["lua"]["ssim"] > r["latent_bicubic"]["ssim"], key
    # x4 is harder than x2 for every upscaling path
    for path in ALL_PATHS[1:]:
        assert result["results"]["x4"][path]["psnr"] < result["results"]["x2"][path]["psnr"], path


def test_cli_baselines_only(tmp_path, val_dir, one_torch_thread):
    code = cli_main(["--family", "flux1", "--no-lua", "--images", str(val_dir), "--images-count", "1", "--crop", "64",
                     "--scales", "2", "--out", str(tmp_path), "--no-perceptual", "--quiet"])
    assert code == 0
    data = json.loads((tmp_path / "results.json").read_text())
    assert "lua" not in data["results"]["x2"] and data["checkpoint"] is None
    assert data["metrics"]["lpips"].startswith("not computed")
    assert "| latent bislerp |" in (tmp_path / "results.md").read_text()


def test_cli_argument_errors(tmp_path, val_dir, capsys):
    assert cli_main(["--no-lua"]) == 2                      # baselines need a family
    assert cli_main(["--family", "flux1"]) == 2             # neither a checkpoint nor --no-lua
    assert cli_main(["--family", "flux1", "--no-lua", "--crop", "100", "--images", str(val_dir),
                     "--out", str(tmp_path), "--quiet"]) == 1
    assert "multiple of 32" in capsys.readouterr().err
    assert cli_main(["--checkpoint", "no_such_model.safetensors", "--quiet", "--out", str(tmp_path)]) == 1


def test_resolve_checkpoint():
    assert resolve_checkpoint("lua_light_flux1.safetensors").resolve() == BUNDLED.resolve()
    assert resolve_checkpoint(BUNDLED) == BUNDLED
    with pytest.raises(FileNotFoundError, match="not downloaded|neither"):
        resolve_checkpoint("lua_flux.pth")


def test_holdout_set_and_path_subset(tmp_path, one_torch_thread):
    from lua_core.locations import shared_dir
    from lua_core.toolkit.photo_sets import holdout_photos

    result = evaluate("sd15", None, "holdout", (2,), 64, 2, out_dir=tmp_path, perceptual=False,
                      only_paths=["pixel_bicubic", "vae_ceiling"])
    assert result["paths"] == ["vae_ceiling", "pixel_bicubic"]
    held = {str(p.relative_to(shared_dir() / "data" / "train")) for p in holdout_photos(shared_dir() / "data" / "train")}
    assert len(result["images"]["names"]) == 2 and set(result["images"]["names"]) <= held


def test_baselines_reused_from_an_earlier_report(tmp_path, one_torch_thread):
    """A candidate's evaluation takes the baseline rows of an earlier report and scores only LUA afresh."""
    sd15 = REPO / "weights" / "lua_light_sd15.safetensors"
    kw = dict(perceptual=False, only_paths=["lua", "pixel_bicubic", "latent_bicubic", "vae_ceiling"])
    full = evaluate(None, sd15, "holdout", (2,), 64, 2, out_dir=tmp_path / "full", **kw)
    report_path = tmp_path / "full" / "results.json"
    report = json.loads(report_path.read_text())
    report["per_image"]["x2"]["pixel_bicubic"]["ssim"][0] = 0.123  # only a reused row can carry this
    report_path.write_text(json.dumps(report))

    again = evaluate(None, sd15, "holdout", (2,), 64, 2, out_dir=tmp_path / "again", reuse_baselines=tmp_path / "full", **kw)
    assert again["baselines_reused_from"]["paths"] == ["latent_bicubic", "pixel_bicubic", "vae_ceiling"]
    assert again["per_image"]["x2"]["pixel_bicubic"]["ssim"][0] == 0.123
    for path in full["paths"]:
        assert again["per_image"]["x2"][path]["psnr"] == pytest.approx(full["per_image"]["x2"][path]["psnr"], abs=1e-6)
    assert again["per_image"]["x2"]["lua"]["ssim"] == pytest.approx(full["per_image"]["x2"]["lua"]["ssim"], abs=1e-6)
    assert "reused from" in (tmp_path / "again" / "results.md").read_text()

    with pytest.raises(ValueError, match="other crop"):
        evaluate(None, sd15, "holdout", (2,), 128, 2, reuse_baselines=tmp_path / "full", **kw)
    with pytest.raises(ValueError, match="other image names"):
        evaluate(None, sd15, "holdout", (2,), 64, 3, reuse_baselines=tmp_path / "full", **kw)
    report["per_image"]["x2"]["pixel_bicubic"]["psnr"][1] += 0.5  # a baseline that no longer matches
    report_path.write_text(json.dumps(report))
    with pytest.raises(ValueError, match="pixel_bicubic x2 .* baselines differ"):
        evaluate(None, sd15, "holdout", (2,), 64, 2, reuse_baselines=tmp_path / "full", **kw)


def test_native_crops_enlarge_nothing(tmp_path, one_torch_thread):
    """With ``native`` an image smaller than the crop keeps its own pixels: a smaller crop, never an enlargement."""
    from PIL import Image

    from lua_core.eval.inputs import crop_sizes

    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name, (w, h) in {"a_big.png": (200, 160), "b_small.png": (150, 100)}.items():
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype="uint8")).save(folder / name)
    files = sorted(folder.iterdir())
    assert crop_sizes(files, 128, 32, native=False) == [128, 128]
    assert crop_sizes(files, 128, 32, native=True) == [128, 96]
    with pytest.raises(ValueError, match="smaller than one crop unit"):
        crop_sizes(files, 128, 128, native=True)

    kw = dict(perceptual=False, only_paths=["pixel_bicubic", "vae_ceiling"])
    native = evaluate("sd15", None, folder, (2,), 128, 2, out_dir=tmp_path / "native", native=True, **kw)
    enlarged = evaluate("sd15", None, folder, (2,), 128, 2, out_dir=tmp_path / "enlarged", **kw)
    assert native["images"]["crops"] == [128, 96] and "crops" not in enlarged["images"]
    # the big image is measured the same way; the small one differs (its own pixels, not an enlargement)
    for path in ("pixel_bicubic", "vae_ceiling"):
        a, b = native["per_image"]["x2"][path]["psnr"], enlarged["per_image"]["x2"][path]["psnr"]
        assert a[0] == pytest.approx(b[0], abs=1e-6) and abs(a[1] - b[1]) > 0.1
    assert "native resolution" in (tmp_path / "native" / "results.md").read_text()
    with pytest.raises(ValueError, match="other native crops"):
        evaluate("sd15", None, folder, (2,), 128, 2, reuse_baselines=tmp_path / "enlarged", native=True, **kw)
