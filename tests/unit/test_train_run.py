"""Tiny real training runs: loss goes down, exact resume, export/load round trip, DDP with 2 CPU processes."""
from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import lua_core
from lua_core.locations import REPO_ROOT as REPO
from lua_core.train import Trainer, config_from_dict, train

TINY_MODEL = {"preset": "light", "overrides": {"embed_dim": 24, "depths": [1, 1], "num_heads": [3, 3], "head_num_feat": 16}}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def make_images(folder: Path, count: int, size: int = 80, seed: int = 0) -> Path:
    """Smooth random colour fields with a few hard edges (PNG)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        low = torch.from_numpy(rng.random((1, 3, 5, 5), dtype=np.float32))
        img = torch.nn.functional.interpolate(low, size=(size, size), mode="bicubic", align_corners=False)[0]
        r0, c0 = rng.integers(0, size // 2, 2)
        img[:, r0: r0 + size // 3, c0: c0 + size // 4] = torch.from_numpy(rng.random((3, 1, 1), dtype=np.float32))
        arr = (img.clamp(0, 1).permute(1, 2, 0).numpy() * 255).astype(np.uint8)
        Image.fromarray(arr).save(folder / f"img_{i:03d}.png")
    return folder


@pytest.fixture(scope="module")
def data_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("train_data")
    return make_images(root / "train", 12), make_images(root / "val", 2, size=72, seed=1), root / "cache"


def tiny_cfg(data_dirs, stages, **top):
    train_dir, val_dir, cache = data_dirs
    d = {
        "name": "tiny", "family": "flux1", "seed": 3, "model": TINY_MODEL,
        "data": {"train_dir": str(train_dir), "val_dir": str(val_dir), "crop": 64, "num_samples": 16, "shard_size": 8,
                 "cache_dir": str(cache), "val_images": 1, "val_crop": 64, "encode_batch": 8},
        "stages": stages, "checkpoint": {"every": 2, "log_every": 1, "export_dtype": "fp32"},
    }
    for k, v in top.items():
        d[k] = {**d[k], **v} if isinstance(v, dict) and k in d else v
    return config_from_dict(d)


THREE_STAGES = [
    {"name": "latent", "steps": 4, "batch_size": 2, "lr": 1e-3, "both_heads_frac": 0.5},
    {"name": "joint", "steps": 2, "batch_size": 2, "crop": 32,
     "weights": {"latent_l1": 1.0, "latent_fft": 0.1, "pix_down_l1": 0.1, "pix_hf_l1": 0.05}},
    {"name": "pixel", "steps": 2, "batch_size": 2, "betas": [0.9, 0.99], "both_heads_frac": 0.5,
     "weights": {"pix_l1": 10.0, "pix_fft": 1.0, "eagle": 5e-5}},
]


def quiet(_msg: str) -> None:
    pass


@pytest.mark.slow
def test_tiny_run_loss_goes_down(data_dirs, tmp_path):
    cfg = tiny_cfg(data_dirs, [{"name": "latent", "steps": 40, "batch_size": 4, "lr": 2e-3, "milestones": [0.9]}],
                   data={"val_images": 0})
    out = train(cfg, out_dir=tmp_path, show_progress=False, log=quiet)
    losses = [l for _, l in out["losses"]]
    assert len(losses) == 40 and all(np.isfinite(losses))
    first, last = np.mean(losses[:5]), np.mean(losses[-5:])
    assert last < 0.8 * first, (first, last)
    recs = [json.loads(ln) for ln in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in recs if r["kind"] == "train"] == list(range(1, 41))
    assert (tmp_path / "losses.svg").read_text().startswith("<svg")


def _final_state(out_dir: Path) -> dict:
    return torch.load(out_dir / "state" / "latest.pt", weights_only=True)


@pytest.mark.slow
@pytest.mark.parametrize("split", [3, 6])  # mid-stage and exactly at a stage boundary
def test_resume_is_exact(data_dirs, tmp_path, split):
    cfg = tiny_cfg(data_dirs, THREE_STAGES, data={"val_images": 0})
    straight = train(cfg, out_dir=tmp_path / "a", show_progress=False, log=quiet)
    part1 = train(cfg, out_dir=tmp_path / "b", max_steps=split, show_progress=False, log=quiet)
    assert not part1["finished"] and part1["global_step"] == split
    part2 = train(cfg, out_dir=tmp_path / "b", resume=True, show_progress=False, log=quiet)
    assert part2["finished"] and part2["global_step"] == 8
    assert part1["losses"] + part2["losses"] == straight["losses"]  # bit-identical floats
    sa, sb = _final_state(tmp_path / "a"), _final_state(tmp_path / "b")
    for key in ("net", "ema"):
        a, b = sa[key], sb[key]
        a, b = (a["model"], b["model"]) if key == "ema" else (a, b)
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a), key
    la = [json.loads(x)["loss"] for x in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    lb = [json.loads(x)["loss"] for x in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert la == lb


def test_export_round_trip_through_load_model(data_dirs, tmp_path):
    cfg = tiny_cfg(data_dirs, THREE_STAGES[:1] + [dict(THREE_STAGES[2], steps=1)])
    trainer = Trainer(cfg, out_dir=tmp_path, show_progress=False, log=quiet)
    summary = trainer.fit()
    path = Path(summary["export"])
    model = lua_core.load_model(path)
    assert model.family.name == "flux1" and model.config == trainer.mcfg
    meta = model.training_summary
    assert meta["steps_per_stage"] == {"latent": 4, "pixel": 1}
    assert meta["validation"]["x2/psnr"] > 5 and "x4/psnr_latent_bicubic" in meta["validation"]
    assert meta["data"]["num_samples"] == 16 and meta["tae"] == "taef1"
    z = torch.randn(1, 16, 5, 6)
    with torch.no_grad():
        ref = trainer.ema.model(z, 2)
    assert torch.equal(lua_core.upscale(model, z, 2, tile_size=0), ref)  # exported weights are the EMA's
    assert not torch.equal(ref, trainer.net(z, 2).detach())


def test_transfer_init_replaces_first_and_last_convs(tmp_path):
    from lua_core.checkpoints.export import save_checkpoint
    from lua_core.train import transfer_init

    base = lua_core.LIGHT_CONFIG.replace(embed_dim=24, depths=(1,), num_heads=(3,), head_num_feat=8)
    torch.manual_seed(0)
    src = lua_core.LUANet(base.replace(in_chans=4, in_scale=0.18215))
    p = save_checkpoint(src, tmp_path / "sd15.safetensors", "sd15", dtype=torch.float32)
    torch.manual_seed(1)
    dst = lua_core.LUANet(base.replace(in_chans=16, in_scale=0.3611, in_shift=0.1159))
    before = copy.deepcopy(dst.state_dict())
    info = transfer_init(dst, p)
    assert sorted(info["replaced"]) == sorted(["conv_first.weight", "heads.x2.conv_last.weight", "heads.x2.conv_last.bias",
                                               "heads.x4.conv_last.weight", "heads.x4.conv_last.bias"])
    after = dst.state_dict()
    assert torch.equal(after["conv_first.weight"], before["conv_first.weight"])
    assert torch.equal(after["conv_first.bias"], src.state_dict()["conv_first.bias"])
    assert torch.equal(after["layers.0.conv.weight"], src.state_dict()["layers.0.conv.weight"])
    with pytest.raises(ValueError, match="trunk differs"):
        transfer_init(lua_core.LUANet(base.replace(embed_dim=36, num_heads=(3,))), p)


@pytest.mark.slow
def test_ddp_two_cpu_processes_match_one_process(data_dirs, tmp_path):
    stages = [{"name": "latent", "steps": 3, "batch_size": 4, "both_heads_frac": 0.5},
              {"name": "pixel", "steps": 2, "batch_size": 2, "crop": 32, "both_heads_frac": 0.0,
               "weights": {"pix_l1": 10.0, "pix_fft": 1.0, "eagle": 5e-5}}]
    cfg = tiny_cfg(data_dirs, stages, data={"val_images": 0, "cache_dir": str(tmp_path / "cache")},
                   runtime={"threads": 1})
    cfg_path = tmp_path / "cfg.json"
    cfg_path.write_text(json.dumps(cfg.to_dict(), default=str))
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "lua_core.train",
           "--config", str(cfg_path), "--out", str(tmp_path / "ddp"), "--no-progress"]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    # both ranks encoded shards of the cache (rank k builds shards k, k+2, ...)
    assert len(list((tmp_path / "cache").rglob("shard_*.safetensors"))) == 2
    single = train(cfg, out_dir=tmp_path / "one", show_progress=False, log=quiet)
    ddp_losses = [json.loads(x)["loss"] for x in (tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()]
    assert ddp_losses == pytest.approx([l for _, l in single["losses"]], rel=1e-4)
    a = _final_state(tmp_path / "ddp")["net"]
    b = _final_state(tmp_path / "one")["net"]
    assert max((a[k].float() - b[k].float()).abs().max().item() for k in a) < 2e-3
    assert (tmp_path / "ddp" / "tiny.safetensors").is_file()


def test_flux2_trains_unpacked_and_exports_a_packed_adapter(data_dirs, tmp_path):
    cfg = tiny_cfg(data_dirs, [dict(THREE_STAGES[0], steps=2), dict(THREE_STAGES[2], steps=1)], family="flux2",
                   data={"val_images": 0, "num_samples": 4, "shard_size": 4})
    summary = train(cfg, out_dir=tmp_path, show_progress=False, log=quiet)
    model = lua_core.load_model(summary["export"])
    assert model.family.name == "flux2" and model.config.in_chans == 32 and model.config.in_scale == 1.0
    packed = torch.randn(1, 128, 4, 4)
    assert lua_core.upscale(model, packed, 2).shape == (1, 128, 8, 8)
