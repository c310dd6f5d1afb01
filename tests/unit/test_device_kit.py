"""The device kit: a carryable copy of ../shared whose validation set reproduces the evaluation's crops."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from lua_core.images import center_crop, list_images, load_image
from lua_core.photo_sets import pick_val_images
from scripts.device_kit import build_kit


def _write(path, h, w, seed):
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)


@pytest.fixture
def shared(tmp_path):
    root = tmp_path / "shared"
    (root / "vae").mkdir(parents=True)
    (root / "vae" / "taesd_decoder.safetensors").write_bytes(b"x" * 100)
    for i in range(7):
        _write(root / "data" / "val" / ("a" if i < 4 else "b") / f"v{i}.png", 70 + i, 90, i)
    for i in range(5):
        _write(root / "data" / "train" / f"t{i}.png", 80, 100 + i, 10 + i)
    return root


def test_kit_keeps_the_evaluated_crops_exactly(shared, tmp_path):
    sizes = build_kit(tmp_path / "kit", shared, train_images=3, train_crop=64, quality=90, val_count=3,
                      val_crop=64, budget_mib=10)
    kit = tmp_path / "kit" / "shared"
    assert (kit / "vae" / "taesd_decoder.safetensors").read_bytes() == b"x" * 100
    picked = pick_val_images(shared / "data" / "val", 3)
    copied = pick_val_images(kit / "data" / "val", 3)
    assert [p.relative_to(shared / "data" / "val").with_suffix("") for p in picked] == \
        [p.relative_to(kit / "data" / "val").with_suffix("") for p in copied]
    for a, b in zip(picked, copied):
        assert torch.equal(center_crop(load_image(a, 64), 64), center_crop(load_image(b, 64), 64))
    train = list_images(kit / "data" / "train")
    assert len(train) == 3 and all(Image.open(p).size == (64, 64) for p in train)
    assert sizes["vae"] == 100 and sizes["data/train"] > 0
    assert not (tmp_path / "kit" / "shared.part").exists()


def test_kit_over_budget_is_refused_and_leaves_the_old_kit(shared, tmp_path):
    build_kit(tmp_path / "kit", shared, 2, 64, 90, 2, 64, budget_mib=10)
    before = sorted(p.name for p in (tmp_path / "kit" / "shared").rglob("*"))
    with pytest.raises(ValueError, match="over the 1e-05 MiB budget"):
        build_kit(tmp_path / "kit", shared, 5, 64, 90, 3, 64, budget_mib=1e-5)
    assert sorted(p.name for p in (tmp_path / "kit" / "shared").rglob("*")) == before
    assert not (tmp_path / "kit" / "shared.part").exists()
