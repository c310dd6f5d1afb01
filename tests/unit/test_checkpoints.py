"""Checkpoint reading: the official layout, our safetensors, and files that must be refused."""
from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import lua_core
from lua_core.checkpoints.export import save_checkpoint
from lua_core.checkpoints.formats import CheckpointError, read_checkpoint
from lua_core.model.detect import infer_config
from tests.helpers import tiny_config


@pytest.fixture(scope="session")
def official_state(official_spec) -> dict:
    """Random weights in exactly the published layout (names and shapes from the spec file)."""
    gen = torch.Generator().manual_seed(0)
    state = {}
    for name, shape in official_spec["tensors"].items():
        if name.endswith("relative_position_index"):
            state[name] = torch.randint(0, 961, shape, generator=gen)
        else:
            state[name] = torch.randn(shape, generator=gen) * 0.02
    return state


@pytest.fixture(scope="session")
def official_pth(tmp_path_factory, official_state) -> Path:
    path = tmp_path_factory.mktemp("official") / "lua_flux.pth"
    torch.save({"params_ema": official_state}, path)
    return path


@pytest.mark.slow
def test_official_layout_pth_loads(official_pth, official_state):
    model = lua_core.load_model(official_pth)
    assert model.family.name == "flux1"
    assert model.config == lua_core.PAPER_CONFIG
    sd = model.net.state_dict()
    assert torch.equal(sd["conv_first.weight"], official_state["conv_first.weight"])
    assert torch.equal(sd["heads.x4.upsample.2.weight"], official_state["heads.x4.upsample.2.weight"])
    # the file's attn_mask/relative_position_index are recomputed, not taken from the file
    idx = "layers.0.residual_group.blocks.0.attn.relative_position_index"
    assert not torch.equal(sd[idx], official_state[idx])
    out = lua_core.upscale(model, torch.randn(1, 16, 5, 7), 2)
    assert out.shape == (1, 16, 10, 14) and torch.isfinite(out).all()


@pytest.mark.slow
def test_official_layout_without_buffers_and_with_params_wrapper(tmp_path, official_state):
    stripped = {k: v for k, v in official_state.items()
                if not k.endswith(("attn_mask", "relative_position_index"))}
    path = tmp_path / "no_buffers.pth"
    torch.save({"params": stripped}, path)
    model = lua_core.load_model(path)
    assert torch.equal(model.net.state_dict()["norm.weight"], official_state["norm.weight"])


def test_infer_config_from_official_shapes(official_state):
    assert infer_config(official_state) == lua_core.PAPER_CONFIG


class _Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_in_pth_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"params_ema": {"conv_first.weight": torch.zeros(1)}, "payload": _Exploit(marker)}, path)
    with pytest.raises(CheckpointError, match="refused to load"):
        lua_core.load_model(path)
    assert not marker.exists()


def test_raw_pickle_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    path.write_bytes(pickle.dumps(_Exploit(marker)))
    with pytest.raises(CheckpointError, match="not a PyTorch zip checkpoint"):
        lua_core.load_model(path)
    assert not marker.exists()


def test_non_tensor_entries_are_refused(tmp_path):
    path = tmp_path / "odd.pth"
    torch.save({"params_ema": {"conv_first.weight": torch.zeros(1), "step": 3}}, path)
    with pytest.raises(CheckpointError, match="not tensors"):
        read_checkpoint(path)


def _small_checkpoint(tmp_path: Path, family: str = "flux1") -> Path:
    fam = lua_core.get_family(family)
    net = lua_core.LUANet(tiny_config(fam.model_channels))
    return save_checkpoint(net, tmp_path / f"small_{family}.safetensors", family, training={"steps": 5})


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_truncated_files_are_refused(tmp_path, suffix):
    src = _small_checkpoint(tmp_path)
    if suffix == ".pth":
        pth = tmp_path / "whole.pth"
        torch.save(load_file(src), pth)
        src = pth
    data = src.read_bytes()
    bad = tmp_path / f"truncated{suffix}"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupted|truncated"):
        lua_core.load_model(bad)


def test_empty_and_unknown_files(tmp_path):
    (tmp_path / "empty.safetensors").write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        lua_core.load_model(tmp_path / "empty.safetensors")
    (tmp_path / "model.onnx").write_bytes(b"x")
    with pytest.raises(CheckpointError, match="unsupported checkpoint type"):
        lua_core.load_model(tmp_path / "model.onnx")
    with pytest.raises(CheckpointError, match="not found"):
        lua_core.load_model(tmp_path / "missing.safetensors")


def test_mismatched_shape_names_the_tensor(tmp_path):
    src = _small_checkpoint(tmp_path)
    tensors = load_file(src)
    with open(src, "rb") as f:
        header_len = int.from_bytes(f.read(8), "little")
        metadata = json.loads(f.read(header_len))["__metadata__"]
    tensors["heads.x2.conv_last.weight"] = torch.zeros(16, 8, 3, 3, dtype=torch.float16)
    del tensors["norm.bias"]
    tensors["extra.weight"] = torch.zeros(2)
    bad = tmp_path / "bad.safetensors"
    save_file(tensors, bad, metadata=metadata)
    with pytest.raises(CheckpointError) as info:
        lua_core.load_model(bad)
    text = str(info.value)
    assert "heads.x2.conv_last.weight" in text and "(16, 8, 3, 3)" in text
    assert "norm.bias" in text and "extra.weight" in text


def test_nan_weights_are_refused(tmp_path):
    src = _small_checkpoint(tmp_path)
    tensors = load_file(src)
    tensors["conv_first.bias"][0] = float("nan")
    bad = tmp_path / "nan.pth"
    torch.save(tensors, bad)
    with pytest.raises(CheckpointError, match="conv_first.bias.*NaN"):
        lua_core.load_model(bad, family="flux1")


def test_export_round_trip(tmp_path):
    torch.manual_seed(0)
    net = lua_core.LUANet(tiny_config(4, in_scale=0.18215)).eval()
    path = save_checkpoint(net, tmp_path / "sd15.safetensors", "sd15", training={"stage": "I", "steps": 12})
    raw = read_checkpoint(path)
    assert not any(k.endswith(("attn_mask", "relative_position_index")) for k in raw.tensors)
    assert all(v.dtype == torch.float16 for v in raw.tensors.values())
    assert raw.metadata["lua.family"] == "sd15" and json.loads(raw.metadata["lua.scales"]) == [2, 4]
    model = lua_core.load_model(path)
    assert model.family.name == "sd15" and model.config == net.config
    assert model.training_summary == {"stage": "I", "steps": 12}
    z = torch.randn(1, 4, 12, 12) * 5
    with torch.no_grad():
        expected = net(z, 4)
    assert (lua_core.upscale(model, z, 4) - expected).abs().max() < 1e-2 * expected.abs().max()
    assert not list(tmp_path.glob(".*.part"))
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # readable by a ComfyUI running as another user


def test_export_refuses_wrong_family_width(tmp_path):
    net = lua_core.LUANet(tiny_config(4))
    with pytest.raises(ValueError, match="16 latent channels"):
        save_checkpoint(net, tmp_path / "x.safetensors", "flux1")


def test_family_metadata_is_authoritative(tmp_path):
    path = _small_checkpoint(tmp_path, "sd3")
    assert lua_core.load_model(path).family.name == "sd3"
    with pytest.raises(CheckpointError, match="family 'sd3', not 'flux1'"):
        lua_core.load_model(path, family="flux1")


def test_metadataless_non_flux_needs_family(tmp_path):
    net = lua_core.LUANet(tiny_config(4))
    path = tmp_path / "plain.pth"
    torch.save({"params_ema": net.state_dict()}, path)
    with pytest.raises(CheckpointError, match="pass family="):
        lua_core.load_model(path)
    assert lua_core.load_model(path, family="sdxl").family.name == "sdxl"
    with pytest.raises(CheckpointError, match="needs 16 latent channels"):
        lua_core.load_model(path, family="sd3")
