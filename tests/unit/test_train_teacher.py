"""The pixel-bicubic teacher latent: what it is, where it is cached, and a Stage I that trains on it."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lua_core.metrics.pixel import psnr
from lua_core.tae import load_tae
from lua_core.toolkit.images import bicubic_down
from lua_core.train import config_from_dict, train
from lua_core.train.data import subcrop
from lua_core.train.loss_registry import HeadOutputs, weighted_loss
from lua_core.train.teacher import cached_teacher_latents, teacher_latents

from .test_train_run import TINY_MODEL, data_dirs, quiet  # noqa: F401  (fixture re-export)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _photo(size: int = 64) -> torch.Tensor:
    """A deterministic image with smooth colour and some edges."""
    y, x = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    img = torch.stack([0.5 + 0.4 * torch.sin(6 * x + 2 * y), 0.5 + 0.4 * torch.cos(5 * y), (x > 0.5).float() * 0.8])
    return img[None].clamp(0, 1)


def test_teacher_is_the_latent_of_the_pixel_bicubic_image():
    tae = load_tae("flux1")
    hr = _photo(64)
    z_lr = tae.encode_raw(bicubic_down(hr, 2))
    got = teacher_latents(tae, z_lr, (2,))["b2"]
    with torch.no_grad():
        up = F.interpolate(tae.decode_raw(z_lr).clamp(0, 1), scale_factor=2, mode="bicubic", align_corners=False)
        want = tae.encode_raw(up.clamp(0, 1))
    assert got.shape == (1, 16, 8, 8) and torch.allclose(got, want, atol=1e-5)
    # it decodes close to pixel bicubic and far better than the latent bicubic it replaces as a target
    with torch.no_grad():
        lat_bic = tae.decode_raw(F.interpolate(z_lr, scale_factor=2, mode="bicubic", align_corners=False))
        teach = tae.decode_raw(got)
    assert psnr(teach[0], up[0].clamp(0, 1)) > psnr(lat_bic[0], up[0].clamp(0, 1)) + 3


def test_teacher_cache_is_written_once_and_reused(tmp_path):
    tae = load_tae("sd15")
    z = torch.randn(3, 4, 4, 4) * 0.5 / 0.18215
    first = cached_teacher_latents(tae, tmp_path, z, (2, 4))
    assert set(first) == {"b2", "b4"} and first["b4"].shape == (3, 4, 16, 16)
    mtime = (tmp_path / "teacher.safetensors").stat().st_mtime_ns
    again = cached_teacher_latents(tae, tmp_path, z, (2, 4))
    assert (tmp_path / "teacher.safetensors").stat().st_mtime_ns == mtime
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not list(tmp_path.glob("*.part"))
    # fewer samples read a prefix without rewriting the file
    other = cached_teacher_latents(tae, tmp_path, z[:2], (2,))
    assert torch.equal(other["b2"], first["b2"][:2])
    assert (tmp_path / "teacher.safetensors").stat().st_mtime_ns == mtime


def test_teacher_cache_extends_with_new_samples_only(tmp_path, monkeypatch):
    import lua_core.train.teacher as teacher_mod

    tae = load_tae("sd15")
    z = torch.randn(5, 4, 4, 4) * 0.5 / 0.18215
    cached_teacher_latents(tae, tmp_path, z[:3], (2,))
    seen = []
    real = teacher_mod.teacher_latents
    monkeypatch.setattr(teacher_mod, "teacher_latents", lambda v, zz, sc, **kw: (seen.append(len(zz)), real(v, zz, sc))[1])
    grown = cached_teacher_latents(tae, tmp_path, z, (2,))
    assert seen == [2, 2]                      # a 2-sample check of the stored prefix, then the 2 new samples
    assert torch.allclose(grown["b2"], real(tae, z, (2,))["b2"], atol=1e-5)
    # a stored teacher that no longer matches the samples (another cache's file) is recomputed whole
    seen.clear()
    again = cached_teacher_latents(tae, tmp_path, z.flip(0), (2,))
    assert seen == [2, 5] and torch.allclose(again["b2"], real(tae, z.flip(0), (2,))["b2"], atol=1e-5)


def test_teacher_terms_by_hand_and_named_errors():
    pred, tgt, teach = torch.zeros(1, 2, 4, 4), torch.ones(1, 2, 4, 4), torch.full((1, 2, 4, 4), 3.0)
    loss, terms = weighted_loss({"teacher_l1": 2.0, "latent_l1": 1.0}, HeadOutputs(pred, tgt, teacher_lat=teach))
    assert {k: float(v) for k, v in terms.items()} == {"latent_l1": 1.0, "teacher_l1": 3.0}
    assert float(loss) == pytest.approx(7.0)
    with pytest.raises(ValueError, match="teacher latents"):
        weighted_loss({"teacher_l1": 1.0}, HeadOutputs(pred, tgt))


def test_subcrop_cuts_teacher_latents_like_targets():
    b = {"lr": torch.arange(16.).view(1, 1, 4, 4), "t2": torch.arange(64.).view(1, 1, 8, 8),
         "b2": torch.arange(64.).view(1, 1, 8, 8) + 100, "t4": torch.zeros(1, 1, 16, 16),
         "b4": torch.zeros(1, 1, 16, 16)}
    g = torch.Generator().manual_seed(0)
    out = subcrop(b, 64, 128, (2, 4), g)
    assert out["b2"].shape == out["t2"].shape == (1, 1, 4, 4)
    assert torch.equal(out["b2"], out["t2"] + 100)


@pytest.mark.slow
@pytest.mark.parametrize("cache", [True, False])
def test_teacher_stage_trains_with_and_without_the_cache(data_dirs, tmp_path, cache):  # noqa: F811
    train_dir, val_dir, cache_dir = data_dirs
    cfg = config_from_dict({
        "name": "tiny_teacher", "family": "flux1", "seed": 3, "model": TINY_MODEL,
        "data": {"train_dir": str(train_dir), "val_dir": str(val_dir), "crop": 64, "num_samples": 16, "shard_size": 8,
                 "cache": cache, "cache_dir": str(tmp_path / "cache"), "val_images": 0, "encode_batch": 8},
        "stages": [{"name": "latent", "steps": 30, "batch_size": 4, "lr": 2e-3, "milestones": [0.9],
                    "weights": {"teacher_l1": 1.0, "teacher_fft": 0.1}}],
        "checkpoint": {"every": 100, "log_every": 1, "export_dtype": "fp32"}})
    out = train(cfg, out_dir=tmp_path / "run", show_progress=False, log=quiet)
    losses = [l for _, l in out["losses"]]
    assert len(losses) == 30 and sum(losses[-5:]) < 0.8 * sum(losses[:5])
    assert (next((tmp_path / "cache").glob("*/teacher.safetensors"), None) is not None) == cache
