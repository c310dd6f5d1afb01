"""The device kit: one family's fine-tune inputs, sized to what a device call can carry."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from lua_core.toolkit.images import center_crop, list_images, load_image
from lua_core.toolkit.photo_sets import holdout_photos, training_photos
from lua_core.train.finetune import FinetuneConfig, photo_split
from scripts.device_kit import MIB, build_kit, working_tree_mib


def _write(path, h, w, seed, smooth=False):
    path.parent.mkdir(parents=True, exist_ok=True)
    if smooth:  # a gradient that WebP keeps nearly exactly, and that tells one crop from another
        y, x = np.mgrid[0:h, 0:w]
        arr = np.stack([x * 255 / w, y * 255 / h, np.full((h, w), 40 * (seed % 5))], -1).astype(np.uint8)
    else:
        arr = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    Image.fromarray(arr).save(path)


@pytest.fixture
def shared(tmp_path):
    root = tmp_path / "shared"
    (root / "vae").mkdir(parents=True)
    for part in ("encoder", "decoder"):
        (root / "vae" / f"taesd_{part}.safetensors").write_bytes(part.encode() * 10)
    (root / "vae" / "taef1_encoder.safetensors").write_bytes(b"not this family")
    for i in range(3):
        _write(root / "data" / "val" / f"v{i}.png", 70 + i, 90, i)
    for i in range(6):  # every 5th large SUN scene is held out: s0 and s5
        _write(root / "data" / "train" / "sun_hays80" / f"s{i}.png", 520, 530, 10 + i, smooth=True)
    for i in range(4):
        _write(root / "data" / "train" / "bsds500" / f"b{i}.png", 96, 100, 20 + i)
    metrics = tmp_path / "metrics"
    metrics.mkdir()
    save_file({"features.0.weight": torch.randn(4, 3, 3, 3), "lin.0.weight": torch.rand(1, 4, 1, 1)},
              str(metrics / "lpips_alex.safetensors"))
    return root


def test_kit_holds_one_family_its_validation_picks_and_disjoint_training_crops(shared, tmp_path):
    sizes = build_kit(tmp_path / "kit", shared, "sd15", tmp_path / "metrics", train_crop=64, quality=80,
                      val_images=2, val_crop=96, budget_mib=10)
    kit = tmp_path / "kit"
    assert sorted(p.name for p in (kit / "shared" / "vae").iterdir()) == \
        ["taesd_decoder.safetensors", "taesd_encoder.safetensors"]
    assert (kit / "shared" / "vae" / "taesd_decoder.safetensors").read_bytes() == b"decoder" * 10
    lpips = load_file(str(kit / "metrics" / "lpips_alex.safetensors"))
    original = load_file(str(tmp_path / "metrics" / "lpips_alex.safetensors"))
    assert lpips["features.0.weight"].dtype == torch.float16
    assert torch.allclose(lpips["features.0.weight"].float(), original["features.0.weight"], atol=2e-3)
    held = [p.stem for p in list_images(kit / "shared" / "data" / "holdout")]
    assert held == [p.stem for p in holdout_photos(shared / "data" / "train")] == ["s0", "s5"]
    for p in list_images(kit / "shared" / "data" / "holdout"):
        assert Image.open(p).size == (96, 96)  # the fine-tune's native crop (a multiple of the 32 px unit)
    assert [Image.open(p).size for p in list_images(kit / "shared" / "data" / "val")] == [(64, 64), (64, 64)]
    train = list_images(kit / "shared" / "data" / "train")
    assert sorted(p.stem for p in train) == sorted(p.stem for p in training_photos(shared / "data" / "train"))
    assert all(Image.open(p).size == (64, 64) for p in train)
    assert sum(sizes.values()) == sum(p.stat().st_size for p in kit.rglob("*") if p.is_file())
    cfg = FinetuneConfig(family="sd15", init="x", holdout_dir=str(kit / "shared" / "data" / "holdout"))
    train_split, held_split = photo_split(cfg, kit / "shared" / "data" / "train")
    assert not {p.stem for p in train_split} & {p.stem for p in held_split}
    assert not (tmp_path / "kit.part").exists()


def test_validation_crops_match_what_the_fine_tune_cuts(shared, tmp_path):
    build_kit(tmp_path / "kit", shared, "sd15", tmp_path / "metrics", 64, 80, 2, 96, budget_mib=10)
    source = holdout_photos(shared / "data" / "train")[0]
    kept = load_image(tmp_path / "kit" / "shared" / "data" / "holdout" / "sun_hays80" / "s0.webp")
    assert (kept - center_crop(load_image(source), 96)).abs().mean() < 0.01  # WebP q95 of the same centre crop


def test_training_crops_stop_at_the_budget(shared, tmp_path):
    full = build_kit(tmp_path / "a", shared, "sd15", tmp_path / "metrics", 64, 80, 1, 64, budget_mib=10)
    fixed = sum(v for k, v in full.items() if k != "data/train")
    budget = (fixed + full["data/train"] / 2) / MIB
    part = build_kit(tmp_path / "b", shared, "sd15", tmp_path / "metrics", 64, 80, 1, 64, budget_mib=budget)
    assert 0 < part["data/train"] < full["data/train"] and sum(part.values()) <= budget * MIB


def test_a_kit_over_budget_is_refused_and_leaves_the_old_kit(shared, tmp_path):
    build_kit(tmp_path / "kit", shared, "sd15", tmp_path / "metrics", 64, 80, 1, 64, budget_mib=10)
    before = sorted(p.name for p in (tmp_path / "kit").rglob("*"))
    with pytest.raises(ValueError, match="fixed parts take .* over the 0.0 MiB budget"):
        build_kit(tmp_path / "kit", shared, "sd15", tmp_path / "metrics", 64, 80, 1, 64, budget_mib=1e-5)
    with pytest.raises(FileNotFoundError, match="taesd3_encoder"):
        build_kit(tmp_path / "kit", shared, "sd3", tmp_path / "metrics", 64, 80, 1, 64, budget_mib=10)
    assert sorted(p.name for p in (tmp_path / "kit").rglob("*")) == before
    assert not (tmp_path / "kit.part").exists()


def test_working_tree_size_counts_tracked_and_untracked_files_not_ignored(tmp_path):
    import subprocess

    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    (repo / ".gitignore").write_text("ignored/\n")
    (repo / "a.bin").write_bytes(b"a" * MIB)
    (repo / "ignored").mkdir()
    (repo / "ignored" / "big.bin").write_bytes(b"b" * 3 * MIB)
    assert working_tree_mib(repo) == pytest.approx(1.0, abs=1e-3)


def test_network_part_travels_without_the_autoencoder_and_is_restored_loadable(tmp_path):
    from safetensors import safe_open

    from lua_core.api import load_model
    from lua_core.locations import REPO_ROOT, shared_dir
    from lua_core.tae import load_tae
    from scripts.device_kit import network_part, restore_init

    adapter = REPO_ROOT / "weights" / "lua_light_sd3.safetensors"
    part = tmp_path / "sd3.safetensors"
    part.write_bytes(network_part(adapter))
    assert part.stat().st_size < adapter.stat().st_size * 0.5
    with safe_open(str(part), "pt") as f, safe_open(str(adapter), "pt") as g:
        assert not any(k.startswith(("skip.encoder.", "skip.decoder.")) for k in f.keys())
        assert "skip.gain" in f.keys() and f.metadata() == g.metadata()
        assert all(torch.equal(f.get_tensor(k), g.get_tensor(k)) for k in f.keys())
    restored = load_model(restore_init(part, "sd3", tmp_path / "out" / "lua_light_sd3.safetensors", shared_dir() / "vae"))
    tae = load_tae("sd3")
    for name, module in (("encoder", tae.encoder), ("decoder", tae.decoder)):
        mine = getattr(restored.net.skip, name).state_dict()
        assert all(torch.allclose(mine[k], v.half().float()) for k, v in module.state_dict().items())
    assert restored.family.name == "sd3" and restored.teacher == load_model(adapter).teacher
