"""Tiny autoencoders, training data (pairs, cache, sampling), schedule, EMA, configs and the CLI helpers."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import lua_core
from lua_core import tae as T
from lua_core.locations import REPO_ROOT as REPO
from lua_core.locations import shared_dir
from lua_core.metrics.pixel import psnr
from lua_core.toolkit.images import bicubic_down, center_crop, list_images
from lua_core.train import config_from_dict, load_config
from lua_core.train.config import StageConfig, apply_sets
from lua_core.train.data import LatentCache, PairMaker, SampleSource, batch_indices, rank_slice, subcrop
from lua_core.train.ema import EMA
from lua_core.train.run_log import MetricsLog
from lua_core.train.schedule import choose_heads, milestones

SHARED = shared_dir()
CONFIGS = sorted((REPO / "configs" / "train").glob("*.json"))


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def val_crop() -> torch.Tensor:
    from lua_core.toolkit.images import load_image

    path = sorted((SHARED / "data" / "val").rglob("*.jpg"))[0]
    return center_crop(load_image(path, 128), 128)[None]


@pytest.mark.parametrize("family", list(lua_core.FAMILIES))
def test_tae_round_trip_per_family(family, val_crop):
    fam = lua_core.get_family(family)
    tae = T.load_tae(family)
    with torch.no_grad():
        lat = tae.encode(val_crop)
        assert lat.shape == (1, fam.model_channels, 16, 16)
        raw = tae.encode_raw(val_crop)
        assert torch.allclose(fam.raw_to_tae(raw), lat, atol=1e-5)
        out = tae.decode_raw(raw)
    assert out.shape == val_crop.shape
    # an untrained decoder would be near 10 dB; the distilled ones are far above (ref. README: 29-33 dB at 768 px)
    assert psnr(out, val_crop) > 19.0
    # the latent carries the image: a different image's latent decodes much worse
    with torch.no_grad():
        other = tae.decode(tae.encode(val_crop.flip(-1)))
    assert psnr(other, val_crop) < psnr(out, val_crop) - 3


def test_taef2_has_the_groupnorm_branch_and_all_tensors_load():
    tae = T.load_tae("flux2")
    assert len(tae.encoder.state_dict()) == len(tae.decoder.state_dict()) == 79  # as in both files (67 + branch)
    assert len(T.load_tae("flux1").encoder.state_dict()) == 67
    assert sum(isinstance(m, torch.nn.GroupNorm) for m in tae.modules()) == 6
    with pytest.raises(ValueError, match="unknown tiny autoencoder"):
        T.TinyAutoencoder("taefoo")
    with pytest.raises(FileNotFoundError):
        T.tae_files("taef1", root=REPO)


def _images(tmp_path: Path, n: int = 5, size: int = 72) -> Path:
    from PIL import Image

    g = torch.Generator().manual_seed(0)
    for i in range(n):
        arr = (torch.rand(size, size + 8 * i, 3, generator=g) * 255).to(torch.uint8).numpy()
        Image.fromarray(arr).save(tmp_path / f"{i}.png")
    return tmp_path


def test_pairs_are_deterministic_and_cover_every_image(tmp_path):
    imgs = list_images(_images(tmp_path))
    tae = T.load_tae("sd15")
    a = PairMaker(imgs, tae, 64, (2, 4), seed=1)
    b = PairMaker(imgs, tae, 64, (2, 4), seed=1)
    assert [a.spec(i) for i in range(10)] == [b.spec(i) for i in range(10)]
    assert sorted(a.spec(i).image for i in range(5)) == list(range(5))  # one round uses each image once
    assert [a.spec(i) for i in range(10)] != [PairMaker(imgs, tae, 64, (2, 4), seed=2).spec(i) for i in range(10)]
    s = a.make([0, 1])
    assert s["lr"].shape == (2, 4, 2, 2) and s["t2"].shape == (2, 4, 4, 4) and s["t4"].shape == (2, 4, 8, 8)
    assert s["pix"].dtype == torch.uint8 and s["pix"].shape == (2, 3, 64, 64)
    hr = a.crop_image(0)[None]
    assert torch.equal(s["pix"][:1], (hr * 255).round().to(torch.uint8))
    with torch.no_grad():
        assert torch.allclose(s["lr"][:1], tae.encode_raw(bicubic_down(hr, 4)), atol=1e-5)


def test_cache_builds_once_and_matches_on_the_fly(tmp_path):
    (tmp_path / "img").mkdir()
    imgs = list_images(_images(tmp_path / "img"))
    maker = PairMaker(imgs, T.load_tae("sd15"), 64, (2, 4), seed=0)
    cache = LatentCache(tmp_path / "cache", {"family": "sd15", "k": 1}, num_samples=10, shard_size=4)
    assert cache.missing_shards() == [0, 1, 2]
    cache.build(maker, [1], show_progress=False)   # as DDP rank 1 of 2 would
    assert cache.missing_shards() == [0, 2]
    cache.build(maker, show_progress=False)
    assert cache.missing_shards() == []
    data = LatentCache(tmp_path / "cache", {"family": "sd15", "k": 1}, 10, 4).load()
    assert data["lr"].shape[0] == 10
    on_the_fly = SampleSource(maker).batch([9, 2])
    cached = SampleSource(maker, data).batch([9, 2])
    for k in on_the_fly:
        assert torch.allclose(on_the_fly[k].float(), cached[k].float(), atol=1e-4), k
    assert LatentCache(tmp_path / "cache", {"family": "sd15", "k": 2}, 10, 4).missing_shards() == [0, 1, 2]


def test_cache_grows_by_encoding_only_new_samples_and_reads_prefixes(tmp_path):
    (tmp_path / "img").mkdir()
    imgs = list_images(_images(tmp_path / "img"))
    maker = PairMaker(imgs, T.load_tae("sd15"), 64, (2, 4), seed=0)
    key = {"family": "sd15", "k": 1}
    small = LatentCache(tmp_path / "cache", key, num_samples=6, shard_size=4)
    small.build(maker, show_progress=False)
    assert [small.shard_count(k) for k in range(2)] == [4, 2]
    first = small.shard_path(0).stat().st_mtime_ns
    big = LatentCache(tmp_path / "cache", key, num_samples=10, shard_size=4)
    assert big.dir == small.dir and big.missing_shards() == [1, 2]   # the short last shard is redone
    big.build(maker, show_progress=False)
    assert big.shard_path(0).stat().st_mtime_ns == first
    data = big.load()
    fresh = SampleSource(maker).batch(list(range(10)))
    assert torch.allclose(data["lr"], fresh["lr"], atol=1e-4) and torch.equal(data["pix"], fresh["pix"])
    prefix = LatentCache(tmp_path / "cache", key, num_samples=5, shard_size=4)
    assert prefix.missing_shards() == [] and torch.equal(prefix.load()["lr"], data["lr"][:5])
    # a torn shard counts as missing instead of failing the load
    big.shard_path(2).write_bytes(b"not a safetensors file")
    assert big.missing_shards() == [2]
    with pytest.raises(ValueError, match="num_samples"):
        LatentCache(tmp_path / "cache", key, num_samples=0, shard_size=4)


def test_subcrop_keeps_latents_and_pixels_aligned():
    lr = torch.arange(64.0).view(1, 1, 8, 8)
    batch = {"lr": lr, "t2": F.interpolate(lr, scale_factor=2), "t4": F.interpolate(lr, scale_factor=4),
             "pix": F.interpolate(lr, scale_factor=32)}
    out = subcrop(batch, 96, 256, (2, 4), torch.Generator().manual_seed(5))
    assert out["lr"].shape[-1] == 3
    assert torch.equal(out["t2"], F.interpolate(out["lr"], scale_factor=2))
    assert torch.equal(out["t4"], F.interpolate(out["lr"], scale_factor=4))
    assert torch.equal(out["pix"], F.interpolate(out["lr"], scale_factor=32))
    assert subcrop(batch, 256, 256, (2, 4), torch.Generator()) is batch


def test_batch_indices_epochs_and_rank_shards():
    seen = [i for step in range(5) for i in batch_indices(7, 0, step, 4, 20)]
    assert sorted(seen) == list(range(20))                     # one epoch = every sample once
    assert batch_indices(7, 0, 5, 4, 20) != seen[:4]            # the next epoch is reshuffled
    assert batch_indices(7, 0, 3, 4, 20) == seen[12:16]         # pure function of the step
    assert batch_indices(7, 1, 0, 4, 20) != seen[:4]            # stages draw differently
    idx = batch_indices(7, 0, 0, 4, 20)
    assert rank_slice(idx, 0, 2) + rank_slice(idx, 1, 2) == idx
    with pytest.raises(ValueError):
        rank_slice(idx, 0, 3)


def test_heads_schedule_and_milestones():
    st = StageConfig(name="s", steps=100, both_heads_frac=0.75)
    assert milestones(st) == [50, 75, 90]
    assert all(choose_heads(0, 0, t, st, (2, 4)) == (2, 4) for t in range(75))
    late = [choose_heads(0, 0, t, st, (2, 4)) for t in range(75, 100)]
    assert set(late) == {(2,), (4,)}
    assert late == [choose_heads(0, 0, t, st, (4, 2)) for t in range(75, 100)]
    assert choose_heads(0, 0, 99, st, (2,)) == (2,)


def test_ema_update_by_hand():
    net = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        net.weight.fill_(1.0)
    ema = EMA(net, decay=0.9, warmup=False)
    with torch.no_grad():
        net.weight.fill_(3.0)
    ema.update(net)
    assert ema.model.weight.item() == pytest.approx(0.9 * 1 + 0.1 * 3)
    warm = EMA(net, decay=0.999, warmup=True)
    assert warm.current_decay() == pytest.approx(0.1)   # (1 + 0) / (10 + 0)
    warm.num_updates = 10 ** 6
    assert warm.current_decay() == 0.999
    state = ema.state_dict()
    other = EMA(torch.nn.Linear(1, 1, bias=False), 0.5)
    other.load_state_dict(state)
    assert other.model.weight.item() == pytest.approx(1.2) and other.decay == 0.9


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_shipped_configs_parse_with_family_normalisation(path):
    cfg = load_config(path)
    fam = cfg.fam
    expected = lua_core.LIGHT_CONFIG.replace(in_chans=fam.model_channels, in_scale=fam.scale_factor,
                                             in_shift=fam.shift_factor)
    overrides = cfg.model.get("overrides") or {}
    assert cfg.model_config() == (expected.replace(**overrides) if overrides else expected)
    if cfg.name.endswith("_light"):
        assert not overrides
    if cfg.init_from and not cfg.name.endswith("_light_cpu"):  # a fine-tune: the pixel stage alone
        assert [s.name for s in cfg.stages] == ["pixel"] and cfg.stages[0].betas == (0.9, 0.99)
        return
    assert [s.name for s in cfg.stages] == ["latent", "joint", "pixel"]
    if cfg.name.endswith("_light_cpu"):  # the CPU recipes aim Stage I at the pixel-bicubic teacher latent
        assert cfg.stages[0].weights == {"teacher_l1": 1.0, "teacher_fft": 0.1} and cfg.stages[0].needs_teacher
        assert not cfg.stages[0].needs_pixels and cfg.stages[2].needs_pixels
    else:
        assert cfg.stages[0].weights == {"latent_l1": 1.0, "latent_fft": 0.1}
    assert cfg.stages[2].betas == (0.9, 0.99)


def test_all_families_have_a_light_config():
    names = {p.stem for p in CONFIGS}
    assert {f"{f}_light" for f in lua_core.FAMILIES} <= names and "smoke" in names
    assert {f"{f}_light_cpu" for f in lua_core.FAMILIES} <= names


def test_config_errors_are_named():
    base = json.loads((REPO / "configs" / "train" / "smoke.json").read_text())
    with pytest.raises(ValueError, match="unknown keys"):
        config_from_dict({**base, "bogus": 1})
    with pytest.raises(ValueError, match="unknown loss terms"):
        config_from_dict(apply_sets(json.loads(json.dumps(base)), ['stages.0.weights={"l2": 1}']))
    with pytest.raises(ValueError, match="multiple of 32"):
        config_from_dict(apply_sets(json.loads(json.dumps(base)), ["data.crop=100"]))
    with pytest.raises(ValueError, match="unknown latent family"):
        config_from_dict({**base, "family": "sd2"})


def test_apply_sets_and_metrics_truncate(tmp_path):
    d = apply_sets({"data": {"crop": 1}, "stages": [{"steps": 1}]}, ["data.crop=64", "stages.0.steps=9", "name=x"])
    assert d == {"data": {"crop": 64}, "stages": [{"steps": 9}], "name": "x"}
    log = MetricsLog(tmp_path / "m.jsonl")
    for s in range(1, 6):
        log.write({"kind": "train", "step": s, "loss": 1.0 / s})
    log.truncate_after(3)
    assert [r["step"] for r in log.records()] == [1, 2, 3]
