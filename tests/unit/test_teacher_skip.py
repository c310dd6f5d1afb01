"""The ``tae`` teacher skip: what it computes, its tiles, the network around it, its files and its fine-tune."""
from __future__ import annotations

import copy
import dataclasses
import json
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from lua_core.api import load_model
from lua_core.checkpoints.export import save_checkpoint
from lua_core.engine.memory import footprint, skip_reserve
from lua_core.engine.runner import run_network
from lua_core.families import get_family
from lua_core.locations import shared_dir
from lua_core.model.config import LIGHT_CONFIG
from lua_core.model.network import LUANet
from lua_core.model.streaming import Chunks
from lua_core.tae import load_tae
from lua_core.toolkit.images import center_crop, load_image
from lua_core.toolkit.photo_sets import holdout_photos, training_photos
from lua_core.train.crop_pool import PhotoPool
from lua_core.train.finetune import (
    FinetuneConfig,
    Finetuner,
    Validator,
    lpips_weight,
    photo_split,
    resumed_config,
    to_tae_skip,
    training_device,
)
from lua_core.train.finetune import main as finetune_main

REPO = Path(__file__).resolve().parents[2]
SDXL = REPO / "weights" / "lua_light_sdxl.safetensors"


@pytest.fixture(scope="module")
def tae():
    return load_tae("sdxl")


@pytest.fixture(scope="module")
def photo_latent(tae):
    """The TAE latent of a real 256 px photograph (32x32)."""
    val = sorted((shared_dir() / "data" / "val" / "urban100").iterdir())[0]
    img = center_crop(load_image(val, 256), 256)[None]
    with torch.no_grad():
        return tae.encode(img)


@pytest.fixture(scope="module")
def net() -> LUANet:
    """The bundled SDXL adapter (a teacher-skip file; a bicubic-skip one would be converted)."""
    return to_tae_skip(SDXL, "sdxl", 0.1)[0].eval()


@pytest.mark.slow
def test_bicubic_skip_checkpoint_converts(tmp_path, tae):
    fam = get_family("sdxl")
    old = LUANet(LIGHT_CONFIG.replace(in_chans=4, in_scale=fam.scale_factor))
    path = save_checkpoint(old, tmp_path / "bicubic.safetensors", "sdxl", dtype=torch.float32)
    new, info = to_tae_skip(path, "sdxl", 0.1)
    assert info["converted"] and info["loaded"] == len(old.state_dict()) - sum(
        "relative_position_index" in k or "attn_mask" in k for k in old.state_dict())
    assert new.config.skip == "tae" and new.skip.gain.item() == pytest.approx(0.1)
    assert torch.equal(new.conv_first.weight, old.conv_first.weight)
    assert torch.equal(new.heads["x4"].conv_last.weight, old.heads["x4"].conv_last.weight)
    for mine, theirs in ((new.skip.encoder, tae.encoder), (new.skip.decoder, tae.decoder)):
        for (k, a), (_, b) in zip(mine.state_dict().items(), theirs.state_dict().items()):
            assert torch.equal(a, b), k


@pytest.mark.slow
def test_teacher_is_the_pixel_bicubic_latent(net, tae, photo_latent):
    """``encode(bicubic_up(decode(z)))`` with the family's decoder (frozen in training) and the file's own encoder
    (the fine-tune may have trained it: ``encoder_lr``)."""
    own = copy.deepcopy(tae)
    own.encoder.load_state_dict(net.skip.encoder.state_dict())
    with torch.no_grad():
        want = own.encode(F.interpolate(tae.decode(photo_latent).clamp(0, 1), scale_factor=2, mode="bicubic",
                                        align_corners=False).clamp(0, 1))
        got = net.skip.teacher(photo_latent, 2)
    assert got.shape == (1, 4, 64, 64)
    assert (got - want).abs().max() < 2e-3  # channels-last kernels round differently


@pytest.mark.slow
@pytest.mark.parametrize("scale", [2, 4])
def test_tiled_teacher_matches_the_whole_pass(net, photo_latent, scale):
    if scale == 4:
        photo_latent = photo_latent[..., :16, :16]  # same tiling (several tiles), a quarter of the work
    with torch.no_grad():
        whole = net.skip.teacher(photo_latent, scale, tile_pixels=10 ** 9)
        tiled = net.skip.teacher(photo_latent, scale, tile_pixels=(40 * 8) ** 2)
    assert tiled.shape == whole.shape
    assert (tiled - whole).abs().max() < 3e-3
    # a margin that is too small shows: the check above can fail
    with torch.no_grad():
        rough = net.skip.teacher(photo_latent, scale, tile_pixels=(12 * 8) ** 2, margin=1)
    assert (rough - whole).abs().max() > 3e-2


@pytest.mark.slow
def test_network_output_is_teacher_plus_gain_times_residual(net, photo_latent):
    fam = get_family("sdxl")
    z = fam.tae_to_raw(photo_latent)
    with torch.no_grad():
        out = net(z, 2)
        residual = net(z, 2, skip=False)
        teacher = net.skip_term(z, 2)
        saved = net.skip.gain.item()
        net.skip.gain.fill_(0.0)
        only_teacher = net(z, 2)
        net.skip.gain.fill_(saved)
    assert torch.allclose(out, residual + teacher, atol=1e-4)
    with torch.no_grad():
        # raw units are 1/0.13 times larger
        assert (fam.raw_to_tae(only_teacher) - net.skip.teacher(photo_latent, 2)).abs().max() < 2e-3
    assert (out - only_teacher).abs().mean() > 1e-3  # the residual does something


@pytest.mark.slow
def test_chunked_and_tiled_passes_agree_with_the_plain_one(net, photo_latent):
    z = get_family("sdxl").tae_to_raw(photo_latent)
    with torch.no_grad():
        plain = net(z, 4)
        chunked = net(z, 4, chunks=Chunks(trunk=64, head=64))
        tiled = run_network(net, z, 4, tile_size=16, tile_overlap=8)
    assert torch.allclose(chunked, plain, atol=1e-4)
    assert tiled.shape == plain.shape
    assert (tiled - plain).abs().mean() < 0.02 * plain.abs().mean()


@pytest.mark.slow
def test_file_round_trip_keeps_the_skip(net, photo_latent, tmp_path):
    path = save_checkpoint(net, tmp_path / "tae_skip.safetensors", "sdxl", dtype=torch.float32)
    model = load_model(path, device="cpu", dtype="fp32")
    assert model.config.skip == "tae" and not model.config.tae_groupnorm
    z = get_family("sdxl").tae_to_raw(photo_latent)
    with torch.no_grad():
        assert torch.allclose(model.net(z, 2), net(z, 2), atol=1e-5)
    # a file of this kind converts to itself (no second conversion)
    again, info = to_tae_skip(path, "sdxl", 0.5)
    assert not info["converted"] and again.skip.gain.item() == pytest.approx(net.skip.gain.item())


def test_wrong_family_is_refused():
    with pytest.raises(ValueError, match="latent channels"):
        to_tae_skip(SDXL, "flux1", 0.1)


def test_memory_estimate_counts_the_skip():
    tae_cfg = LIGHT_CONFIG.replace(in_chans=4, skip="tae")
    assert footprint(tae_cfg, 4).plain > footprint(LIGHT_CONFIG.replace(in_chans=4), 4).plain
    assert skip_reserve(LIGHT_CONFIG, 2, 1, 128, 128, torch.float32) == 0
    small = skip_reserve(tae_cfg, 2, 1, 8, 8, torch.float32)
    large = skip_reserve(tae_cfg, 2, 1, 512, 512, torch.float32)
    assert 0 < small < large == skip_reserve(tae_cfg, 2, 1, 1024, 1024, torch.float32)  # bounded by the tile


def test_holdout_is_disjoint_from_training():
    train_dir = shared_dir() / "data" / "train"
    held = holdout_photos(train_dir)
    train = training_photos(train_dir)
    assert len(held) >= 24
    assert not set(held) & set(train)
    assert {p.parent.name for p in held} == {"sun_hays80", "imagenet_sample"}


def test_photo_pool_crops():
    import random

    paths = sorted((shared_dir() / "data" / "val" / "bsds500").iterdir())[:3]
    pool = PhotoPool(paths)
    a = pool.crops(random.Random(1), 2, 96)
    b = pool.crops(random.Random(1), 2, 96)
    assert a.shape == (2, 3, 96, 96) and torch.equal(a, b)
    assert 0 <= a.min() and a.max() <= 1 and a.std() > 0.02


def _tiny_photo_sets(tmp_path, photos: int):
    """``tmp_path/train`` with ``photos`` SUN photographs and ``tmp_path/val`` with one BSDS500 image; returns the latter."""
    train = tmp_path / "train" / "sun_hays80"
    train.mkdir(parents=True)
    for p in sorted((shared_dir() / "data" / "train" / "sun_hays80").iterdir())[:photos]:
        shutil.copy(p, train / p.name)
    val = tmp_path / "val"
    val.mkdir()
    shutil.copy(sorted((shared_dir() / "data" / "val" / "bsds500").iterdir())[0], val)
    return val


@pytest.mark.slow
def test_finetune_runs_exports_and_resumes(tmp_path):
    val = _tiny_photo_sets(tmp_path, 4)
    cfg = FinetuneConfig(family="sdxl", init=str(SDXL), batch=1, lpips=0.0, lr_sizes_x2=(8,), lr_sizes_x4=(4,),
                         window=8, val_every=2, val_crop=128, val_images=1, train_dir=str(tmp_path / "train"),
                         val_dir=str(val))
    out = tmp_path / "run"
    Finetuner(cfg, out, threads=1).run(seconds=600, max_steps=2)
    assert (out / "best.safetensors").is_file() and (out / "state.pt").is_file()
    first = torch.load(out / "state.pt", weights_only=False)
    assert first["step"] == 2 and len(first["history"]) == 2  # step 0 and step 2
    assert sorted(p.name for p in out.glob("step_*.safetensors")) == ["step_00000.safetensors", "step_00002.safetensors"]
    slower = dataclasses.replace(cfg, lr=cfg.lr / 4)
    resumed = Finetuner(slower, out, threads=1)
    assert {g["lr"] for g in resumed.opt.param_groups} == {cfg.lr / 4}  # the saved optimizer's rate is overridden
    resumed.run(seconds=600, max_steps=3)
    state = torch.load(out / "state.pt", weights_only=False)
    assert state["step"] == 3 and len(state["history"]) == 2
    Finetuner(cfg, out, threads=1).run(seconds=600, max_steps=4, validate_at_end=True)  # a stint that ends off-beat
    state = torch.load(out / "state.pt", weights_only=False)
    assert [h["step"] for h in state["history"]] == [0, 2, 4] and (out / "step_00004.safetensors").is_file()
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert sum("start" in r for r in records) == 1
    assert load_model(out / "best.safetensors", device="cpu").config.skip == "tae"


def test_x2_head_can_weigh_lpips_apart():
    """``lpips_x2`` sets the x2 head's LPIPS weight; unset, both heads use ``lpips``."""
    base = FinetuneConfig(family="sdxl", init="x", lpips=1.0)
    assert lpips_weight(base, 2) == lpips_weight(base, 4) == 1.0
    tuned = FinetuneConfig(family="sdxl", init="x", lpips=1.0, lpips_x2=3.0)
    assert lpips_weight(tuned, 2) == 3.0 and lpips_weight(tuned, 4) == 1.0


def test_validator_native_crops_keep_small_images_unenlarged():
    """BSDS500 photographs (481 x 321) get a 320 px crop of their own pixels with ``native``, not an enlargement."""
    photo = sorted((shared_dir() / "data" / "val" / "bsds500").iterdir())[0]
    fam = get_family("sdxl")
    tae = load_tae(fam)
    native = Validator(tae, {"val": [photo]}, 384, (2, 4), native=True, unit=fam.crop_unit((2, 4)))
    enlarged = Validator(tae, {"val": [photo]}, 384, (2, 4))
    assert native.crops == {photo.name: 320} and enlarged.crops == {photo.name: 384}
    hr = native.items[0][2]
    assert hr.shape[-2:] == (320, 320)
    assert torch.equal(hr[0], center_crop(load_image(photo), 320))  # the file's pixels, untouched


def test_resumed_runs_keep_their_validation_protocol():
    old = dataclasses.asdict(FinetuneConfig(family="sdxl", init="x"))
    del old["val_native"]  # a state saved before the field existed
    assert resumed_config(old, {}).val_native is False
    assert resumed_config(old, {"val_native": True}).val_native is True
    assert resumed_config({**old, "lr_sizes_x2": [16, 20]}, {}).lr_sizes_x2 == (16, 20)
    assert FinetuneConfig(family="sdxl", init="x").val_native is True  # new runs validate natively


@pytest.mark.slow
def test_finetune_can_train_the_teachers_encoder(tmp_path):
    """``encoder_lr`` trains the embedded tiny encoder (its own rate), never the decoder; a run cannot switch it."""
    val = _tiny_photo_sets(tmp_path, 2)
    cfg = FinetuneConfig(family="sdxl", init=str(SDXL), batch=1, lpips=0.0, lr_sizes_x2=(8,), lr_sizes_x4=(4,),
                         window=8, val_every=100, val_crop=128, val_images=1, train_dir=str(tmp_path / "train"),
                         val_dir=str(val), encoder_lr=1e-3)
    out = tmp_path / "run"
    tuner = Finetuner(cfg, out, threads=1)
    assert [g["lr"] for g in tuner.opt.param_groups] == [cfg.lr, 1e-3]
    enc0 = {k: v.clone() for k, v in tuner.net.skip.encoder.state_dict().items()}
    dec0 = {k: v.clone() for k, v in tuner.net.skip.decoder.state_dict().items()}
    tuner.run(seconds=600, max_steps=1)
    assert any(not torch.equal(v, tuner.net.skip.encoder.state_dict()[k]) for k, v in enc0.items())
    assert all(torch.equal(v, tuner.net.skip.decoder.state_dict()[k]) for k, v in dec0.items())
    ema = torch.load(out / "state.pt", weights_only=False)["ema"]["model"]
    assert any(not torch.equal(v, ema[f"skip.encoder.{k}"]) for k, v in enc0.items())  # the exported EMA moves too
    with pytest.raises(ValueError, match="encoder"):
        Finetuner(dataclasses.replace(cfg, encoder_lr=0.0), out, threads=1)
    frozen = FinetuneConfig(family="sdxl", init="x")
    assert frozen.encoder_lr == 0.0


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error a machine without CUDA gives")
def test_finetune_refuses_an_absent_device_clearly(tmp_path, capsys):
    with pytest.raises(ValueError, match="no CUDA device"):
        training_device("cuda")
    with pytest.raises(SystemExit, match="no CUDA device"):
        finetune_main(["--family", "sdxl", "--init", str(SDXL), "--out", str(tmp_path / "run"), "--device", "cuda",
                       "--max-steps", "1"])
    assert not (tmp_path / "run").exists()  # refused before anything was written
    assert training_device("cpu") == torch.device("cpu")


def test_a_separate_holdout_folder_validates_and_the_train_folder_trains_whole(tmp_path):
    """The device kit carries held-out crops apart from the training crops (too small to meet the held-out rule)."""
    train_dir = shared_dir() / "data" / "train"
    if not train_dir.is_dir():
        pytest.skip("../shared/data/train is not here")
    default = FinetuneConfig(family="sdxl", init="x")
    train, held = photo_split(default, train_dir)
    assert held == holdout_photos(train_dir) and train == training_photos(train_dir)
    kit = tmp_path / "kit"
    for name in ("train/sun/a.webp", "train/sun/b.webp", "holdout/sun/c.webp"):
        (kit / name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (64, 64)).save(kit / name)
    split = photo_split(dataclasses.replace(default, holdout_dir=str(kit / "holdout")), kit / "train")
    assert split == ([kit / "train/sun/a.webp", kit / "train/sun/b.webp"], [kit / "holdout/sun/c.webp"])
