"""Training autoencoder backends: the tiny autoencoder (default, unchanged) and diffusers' AutoencoderKL;
config parsing and cache identity.

The ``comfy`` backend (a VAE file through ComfyUI's own loader, in-process) is tested in
``tests/integration/test_vae_backends_comfyui.py``. The diffusers tests skip when ``diffusers`` is not installed.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import sys
from pathlib import Path

import pytest
import torch

from lua_core.errors import ComfyUINotFound
from lua_core.families import get_family
from lua_core.locations import REPO_ROOT as REPO
from lua_core.locations import shared_dir
from lua_core.tae import load_tae
from lua_core.train import config_from_dict
from lua_core.train.config import load_config
from lua_core.vae_backends import TAEBackend, VAEConfig, file_identity, import_comfy, load_vae
from tests.helpers import images

SMOKE = REPO / "configs" / "train" / "smoke.json"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# --------------------------------------------------------------------------- config and identity
def test_configs_without_vae_keep_fingerprint_and_cache_key():
    cfg = load_config(SMOKE)
    assert cfg.data.vae is None
    # the fingerprint is the pre-backend formula: data.vae does not enter it while it is the default
    d = dataclasses.asdict(cfg)
    legacy = {k: v for k, v in d.items() if k not in ("runtime", "checkpoint", "name")}
    legacy["data"].pop("vae")
    expected = hashlib.sha256(json.dumps(legacy, sort_keys=True, default=str).encode()).hexdigest()[:16]
    assert cfg.fingerprint() == expected
    assert load_config(SMOKE, {"data": {"vae": {"backend": "tae"}}}).fingerprint() == expected
    assert load_config(SMOKE, {"data": {"vae": "tae"}}).fingerprint() == expected
    other = load_config(SMOKE, {"data": {"vae": {"backend": "comfy", "path": "/x/ae.safetensors"}}})
    assert other.fingerprint() != expected
    # the default backend adds nothing to the latent-cache key (existing caches stay valid)
    vae = load_vae(cfg.fam, cfg.data.vae)
    assert isinstance(vae, TAEBackend) and vae.name == "taef1" and vae.identity() is None


def test_vae_config_parsing_and_errors():
    cfg = load_config(SMOKE, {"data": {"vae": {"backend": "comfy", "path": "${shared}/vae/ae.safetensors",
                                                "dtype": "bf16", "hash": "sha256"}}})
    v = cfg.data.vae
    assert isinstance(v, VAEConfig) and (v.backend, v.dtype, v.hash) == ("comfy", "bf16", "sha256")
    again = config_from_dict(json.loads(json.dumps(cfg.to_dict(), default=str)))  # as DDP ranks re-read it
    assert again.data.vae == v and again.fingerprint() == cfg.fingerprint()
    bad = [({"backend": "vqgan"}, "unknown; known"), ({"backend": "comfy"}, "needs data.vae.path"),
           ({"backend": "comfy", "path": "a", "colour": 1}, "unknown keys"),
           ({"backend": "diffusers", "path": "a", "dtype": "fp8"}, "dtype"),
           ({"backend": "comfy", "path": "a", "subfolder": "vae"}, "diffusers backend only"),
           ({"backend": "tae", "hash": "md5"}, "hash")]
    for value, msg in bad:
        with pytest.raises(ValueError, match=msg):
            load_config(SMOKE, {"data": {"vae": value}})
    # FLUX.2's full VAE works on packed 1/16 latents: LR crops must be whole packed cells
    with pytest.raises(ValueError, match="multiple of 64"):
        load_config(SMOKE, {"family": "flux2", "data": {"crop": 96, "val_crop": 96,
                                                          "vae": {"backend": "comfy", "path": "a"}}})
    assert load_config(SMOKE, {"family": "flux2", "data": {"crop": 96, "val_crop": 96}}).data.crop == 96


@pytest.mark.slow
def test_tae_backend_is_lua_core_tae(tmp_path):
    img = images()
    for fam in ("flux1", "flux2"):
        ref = load_tae(fam)
        b = load_vae(fam)
        with torch.no_grad():
            z = b.encode_raw(img)
            assert torch.equal(z, ref.encode_raw(img))
            assert torch.equal(b.decode_raw(z), ref.decode_raw(z))
        assert b.device == torch.device("cpu") and not any(p.requires_grad for p in b.parameters())
    # the default folder spelled out is still the default; another folder or dtype is an identity of its own
    assert load_vae("flux1", {"backend": "tae", "path": str(shared_dir() / "vae")}).identity() is None
    for part in ("encoder", "decoder"):
        shutil.copy(shared_dir() / "vae" / f"taef1_{part}.safetensors", tmp_path)
    ident = load_vae("flux1", {"backend": "tae", "path": str(tmp_path)}).identity()
    assert ident["name"] == "taef1" and len(ident["files"]) == 2
    half = load_vae("flux1", {"backend": "tae", "dtype": "bf16"})
    assert half.identity() == {"backend": "tae", "name": "taef1", "dtype": "bf16"}
    with torch.no_grad():
        assert half.encode_raw(img).dtype == torch.float32


def test_file_identity_tracks_the_file(tmp_path):
    a = tmp_path / "a" / "vae.safetensors"
    a.parent.mkdir()
    a.write_bytes(b"x" * 100)
    s1 = file_identity(a)
    assert s1["path"] == str(a.resolve()) and s1["size"] == 100
    a.write_bytes(b"y" * 101)
    assert file_identity(a) != s1
    b = tmp_path / "b.safetensors"
    shutil.copy(a, b)
    assert file_identity(a, "sha256") == {"file": "vae.safetensors", "sha256": hashlib.sha256(b"y" * 101).hexdigest()}
    assert file_identity(b, "sha256")["sha256"] == file_identity(a, "sha256")["sha256"]
    with pytest.raises(FileNotFoundError):
        file_identity(tmp_path / "missing.safetensors")



def test_comfy_backend_needs_comfyui_importable(monkeypatch):
    """Nothing is added to sys.path: without an importable ComfyUI the error says to run from its environment."""
    for name in [m for m in sys.modules if m == "comfy" or m.startswith("comfy.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if not (Path(p or ".") / "comfy" / "sd.py").is_file()])
    before = list(sys.path)
    with pytest.raises(ComfyUINotFound, match="ComfyUI's environment"):
        import_comfy()
    assert sys.path == before


# --------------------------------------------------------------------------- diffusers
TINY_KL = dict(down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
               block_out_channels=(8, 8, 16, 16), layers_per_block=1, norm_num_groups=4)


def test_diffusers_backend_is_the_posterior_mode(tmp_path):
    diffusers = pytest.importorskip("diffusers", reason="diffusers is not installed (optional VAE backend)")
    torch.manual_seed(0)
    model = diffusers.AutoencoderKL(latent_channels=16, **TINY_KL).eval()
    model.save_pretrained(str(tmp_path / "kl"))
    b = load_vae("flux1", {"backend": "diffusers", "path": str(tmp_path / "kl")})
    img = images(2, 32)
    with torch.no_grad():
        ref = model.encode(img * 2 - 1).latent_dist.mode()
        assert torch.allclose(b.encode_raw(img), ref, atol=1e-5)
        assert torch.allclose(b.decode_raw(ref), (model.decode(ref).sample + 1) / 2, atol=1e-5)
    z = ref.clone().requires_grad_(True)
    b.decode_raw(z).mean().backward()
    assert z.grad.abs().sum() > 0 and all(p.grad is None for p in b.parameters())
    assert b.identity()["class"] == "AutoencoderKL" and len(b.identity()["files"]) >= 2
    with pytest.raises(ValueError, match="16-channel"):
        load_vae("sd15", {"backend": "diffusers", "path": str(tmp_path / "kl")})


def test_diffusers_flux2_pipeline_folder_is_packed_and_normalised(tmp_path):
    diffusers = pytest.importorskip("diffusers", reason="diffusers is not installed (optional VAE backend)")
    if not hasattr(diffusers, "AutoencoderKLFlux2"):
        pytest.skip("this diffusers has no AutoencoderKLFlux2")
    torch.manual_seed(0)
    model = diffusers.AutoencoderKLFlux2(latent_channels=32, **TINY_KL).eval()
    with torch.no_grad():
        model.bn.running_mean.normal_()
        model.bn.running_var.uniform_(0.5, 2.0)
    model.save_pretrained(str(tmp_path / "pipe" / "vae"))
    b = load_vae("flux2", {"backend": "diffusers", "path": str(tmp_path / "pipe")})  # finds the vae subfolder
    assert b.subfolder == "vae"
    fam = get_family("flux2")
    img = images(1, 32)
    with torch.no_grad():
        lat = model.encode(img * 2 - 1).latent_dist.mode()
        eps = model.config.batch_norm_eps
        packed = (fam.to_comfy(lat) - model.bn.running_mean.view(1, -1, 1, 1)) / torch.sqrt(
            model.bn.running_var.view(1, -1, 1, 1) + eps)
        z = b.encode_raw(img)
        assert z.shape == (1, 32, 4, 4)
        assert torch.allclose(fam.to_comfy(z), packed, atol=1e-5)  # ComfyUI's FLUX.2 LATENT, unpacked
        assert torch.allclose(b.decode_raw(z), (model.decode(lat).sample + 1) / 2, atol=1e-4)
