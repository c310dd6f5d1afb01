"""The ``comfy`` training autoencoder backend: a VAE file through ComfyUI's own loader, in-process.

The tests load a real TAESD-style VAE file (``taesd_encoder.*``/``taesd_decoder.*`` plus
``vae_scale``/``vae_shift``, as ComfyUI's VAELoader builds it for taef1) with ComfyUI 0.3.75's
``comfy.sd.VAE``; they are skipped only when no ComfyUI tree is found (``$LUA_COMFYUI_DIR``, an
importable ``comfy``, or ``.cache/comfyui/ComfyUI`` from ``scripts/setup_comfyui.sh``) or when
``LUA_SKIP_COMFY=1``. The comparison with diffusers skips when ``diffusers`` is not installed.
The tiny-autoencoder and diffusers backends are tested in ``tests/unit/test_train_vae_backends.py``.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from lua_core.families import get_family
from lua_core.locations import REPO_ROOT as REPO
from lua_core.locations import expand_path, shared_dir
from lua_core.tae import load_tae
from lua_core.train.config import load_config
from lua_core.vae_backends import load_vae
from tests.helpers import comfyui_on_path, images

SMOKE = REPO / "configs" / "train" / "smoke.json"
TAEF1_SCALE, TAEF1_SHIFT = 0.3611, 0.1159  # what ComfyUI's VAELoader.load_taesd sets for taef1


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _need_comfy() -> Path:
    if os.environ.get("LUA_SKIP_COMFY") == "1":
        pytest.skip("LUA_SKIP_COMFY=1")
    return comfyui_on_path()


def taesd_state(name: str, scale: float, shift: float) -> dict[str, torch.Tensor]:
    """A VAE state dict as ComfyUI's VAELoader.load_taesd builds it from the shared tiny-autoencoder files."""
    from safetensors.torch import load_file

    sd = {}
    for part in ("encoder", "decoder"):
        for k, v in load_file(str(shared_dir() / "vae" / f"{name}_{part}.safetensors")).items():
            sd[f"taesd_{part}.{k}"] = v
    sd["vae_scale"] = torch.tensor(scale)
    sd["vae_shift"] = torch.tensor(shift)
    return sd


@pytest.fixture(scope="module")
def comfy_vae_file(tmp_path_factory) -> Path:
    _need_comfy()
    from safetensors.torch import save_file

    path = tmp_path_factory.mktemp("comfy_vae") / "taef1_comfy.safetensors"
    save_file(taesd_state("taef1", TAEF1_SCALE, TAEF1_SHIFT), str(path))
    return path


@pytest.fixture(scope="module")
def comfy_vae(comfy_vae_file):
    return load_vae("flux1", {"backend": "comfy", "path": str(comfy_vae_file)})


def test_comfy_backend_matches_tae_and_comfyui_wrappers(comfy_vae, comfy_vae_file):
    import comfy.sd

    assert isinstance(comfy_vae.comfy_vae, comfy.sd.VAE) and comfy_vae.name == "comfy:taef1_comfy.safetensors"
    assert not any(p.requires_grad for p in comfy_vae.parameters())
    tae = load_tae("flux1")
    img = images(2, 64)
    with torch.no_grad():
        z = comfy_vae.encode_raw(img)
        z_ref = tae.encode_raw(img)
        assert z.shape == (2, 16, 8, 8) and z.dtype == torch.float32
        assert torch.allclose(z, z_ref, atol=1e-5, rtol=1e-5)  # same raw ComfyUI convention
        assert torch.allclose(comfy_vae.decode_raw(z_ref), tae.decode_raw(z_ref), atol=1e-5)
        # and what ComfyUI's own VAE wrapper (VAEEncode/VAEDecode nodes: BHWC images) gives
        assert torch.allclose(comfy_vae.comfy_vae.encode(img.movedim(1, -1)), z, atol=1e-6)
        dec = comfy_vae.comfy_vae.decode(z).movedim(-1, 1)
        assert torch.allclose(dec, comfy_vae.decode_raw(z).clamp(0, 1), atol=1e-6)
    ident = comfy_vae.identity()
    assert ident["backend"] == "comfy" and ident["path"] == str(comfy_vae_file.resolve())
    assert ident["size"] == comfy_vae_file.stat().st_size
    with pytest.raises(ValueError, match="multiple of 8"):
        comfy_vae.encode_raw(images(1, 60))


def test_comfy_backend_decode_is_differentiable(comfy_vae):
    with torch.no_grad():
        z0 = comfy_vae.encode_raw(images(1, 32))
    z = z0.clone().requires_grad_(True)
    target = images(1, 32, seed=3)
    loss = (comfy_vae.decode_raw(z) - target).abs().mean()
    loss.backward()
    assert z.grad is not None and torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0
    assert all(p.grad is None for p in comfy_vae.parameters())  # the VAE stays frozen
    # a small step along the gradient lowers the pixel loss: the gradient is the decoder's
    with torch.no_grad():
        moved = (comfy_vae.decode_raw(z - 0.5 * z.grad / z.grad.abs().max()) - target).abs().mean()
    assert moved < loss.detach()


def test_comfy_backend_refuses_wrong_or_incomplete_vaes(comfy_vae_file, tmp_path):
    from safetensors.torch import save_file

    with pytest.raises(ValueError, match="16-channel"):
        load_vae("sd15", {"backend": "comfy", "path": str(comfy_vae_file)})
    sd = taesd_state("taef1", TAEF1_SCALE, TAEF1_SHIFT)
    del sd["taesd_decoder.3.conv.0.weight"]  # ComfyUI would load it with a random conv (strict=False)
    save_file(sd, str(tmp_path / "broken.safetensors"))
    with pytest.raises(ValueError, match="incomplete"):
        load_vae("flux1", {"backend": "comfy", "path": str(tmp_path / "broken.safetensors")})
    save_file({"something.weight": torch.zeros(2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(ValueError, match="no VAE weights"):
        load_vae("flux1", {"backend": "comfy", "path": str(tmp_path / "other.safetensors")})
    # a full checkpoint: the VAE under first_stage_model. is found
    full = {f"first_stage_model.{k}": v for k, v in taesd_state("taef1", TAEF1_SCALE, TAEF1_SHIFT).items()}
    full["model.diffusion_model.x.weight"] = torch.zeros(3)
    save_file(full, str(tmp_path / "checkpoint.safetensors"))
    vae = load_vae("flux1", {"backend": "comfy", "path": str(tmp_path / "checkpoint.safetensors")})
    img = images(1, 32)
    with torch.no_grad():
        assert torch.allclose(vae.encode_raw(img), load_tae("flux1").encode_raw(img), atol=1e-5)
    with pytest.raises(FileNotFoundError):
        load_vae("flux1", {"backend": "comfy", "path": str(comfy_vae_file.parent / "nope.safetensors")})


def flux2_comfy_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """A full-size FLUX.2-layout VAE state dict in ComfyUI's native keys (random weights, fp16), built from
    ComfyUI's own AutoencoderKL class on the meta device so only the tensors we fill take memory."""
    from comfy.ldm.models.autoencoder import AutoencoderKL

    ddconfig = {"double_z": True, "z_channels": 32, "resolution": 256, "in_channels": 3, "out_ch": 3, "ch": 128,
                "ch_mult": [1, 2, 4, 4], "num_res_blocks": 2, "attn_resolutions": [], "dropout": 0.0,
                "batch_norm_latent": True}
    with torch.device("meta"):
        shapes = {k: (v.shape, v.dtype) for k, v in AutoencoderKL(ddconfig=ddconfig, embed_dim=32).state_dict().items()}
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for k, (shape, dtype) in shapes.items():
        if not dtype.is_floating_point:
            sd[k] = torch.zeros(shape, dtype=dtype)
        elif k == "bn.running_mean":
            sd[k] = torch.randn(shape, generator=g) * 0.5
        elif k == "bn.running_var":
            sd[k] = torch.rand(shape, generator=g) + 0.5
        elif len(shape) > 1:
            fan_in = shape[1:].numel()
            sd[k] = (torch.randn(shape, generator=g) / fan_in ** 0.5).half()
        else:
            sd[k] = (torch.ones(shape) if k.endswith(".weight") else torch.zeros(shape)).half()  # norms; biases
    return sd


@pytest.mark.slow
def test_comfy_flux2_vae_gives_comfyui_latents_unpacked(tmp_path):
    """ComfyUI's FLUX.2 VAE returns 128-channel, batch-norm-normalised, 2x2-packed latents; the backend hands
    the network the same numbers unpacked (family.to_model) and decodes them back through the packed form."""
    _need_comfy()
    from safetensors.torch import save_file

    from lua_core.vae_backends import import_comfy

    import_comfy()
    path = tmp_path / "flux2_ae.safetensors"
    save_file(flux2_comfy_state(), str(path))
    b = load_vae("flux2", {"backend": "comfy", "path": str(path)})
    fam = get_family("flux2")
    assert b.comfy_vae.latent_channels == 128 and b.comfy_vae.spacial_compression_encode() == 16
    img = images(1, 32)
    with torch.no_grad():
        z = b.encode_raw(img)
        packed = b.comfy_vae.encode(img.movedim(1, -1))  # what the VAEEncode node puts in a LATENT
        assert packed.shape == (1, 128, 2, 2) and z.shape == (1, 32, 4, 4)
        assert torch.allclose(z, fam.to_model(packed), atol=1e-6)
        dec = b.comfy_vae.decode(packed).movedim(-1, 1)  # what the VAEDecode node shows
        assert torch.allclose(b.decode_raw(z).clamp(0, 1), dec, atol=1e-5)
    zg = z.clone().requires_grad_(True)
    b.decode_raw(zg).mean().backward()
    assert zg.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="multiple of 16"):
        b.encode_raw(images(1, 24))


def test_tiny_training_run_with_comfy_backend(comfy_vae_file, tmp_path):
    from safetensors import safe_open
    from safetensors.torch import load_file

    from lua_core.toolkit.images import list_images
    from lua_core.train.__main__ import main
    from lua_core.train.data import PairMaker

    cache = tmp_path / "cache"
    vae = {"backend": "comfy", "path": str(comfy_vae_file)}
    sets = {"data.vae": vae, "data.cache_dir": str(cache), "data.crop": 64, "data.val_crop": 64,
            "data.num_samples": 4, "data.shard_size": 4, "data.max_images": 4, "data.val_images": 1,
            "model.overrides.depths": [1, 1], "stages.0.steps": 2, "stages.1.steps": 1, "stages.2.steps": 1,
            "checkpoint.export_dtype": "fp32"}
    argv = ["--config", str(SMOKE), "--out", str(tmp_path / "run"), "--no-progress", "--threads", "1"]
    for k, v in sets.items():
        argv += ["--set", f"{k}={json.dumps(v)}"]
    assert main(argv) == 0
    records = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if r["kind"] == "train"]
    assert train[-1]["stage_name"] == "pixel"
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in train)
    val = [r for r in records if r["kind"] == "val"][-1]
    assert val["psnr_tae"] > 15 and val["x2/psnr"] > 5
    # the exported adapter records the backend; the cache key holds the VAE file's identity
    with safe_open(str(tmp_path / "run" / "smoke.safetensors"), "pt") as f:
        training = json.loads(f.metadata()["lua.training"])
    assert training["vae"]["backend"] == "comfy" and training["tae"] == "comfy:taef1_comfy.safetensors"
    (cache_dir,) = list(cache.iterdir())
    key = json.loads((cache_dir / "key.json").read_text())
    assert key["vae"]["path"] == str(comfy_vae_file.resolve()) and key["vae"]["mtime_ns"] > 0
    # targets and inputs are raw latents in the TAE's convention (taef1 through ComfyUI == taef1)
    cfg = load_config(SMOKE, {"data": {"max_images": 4, "crop": 64, "num_samples": 4}})
    maker = PairMaker(list_images(expand_path(cfg.data.train_dir), 4), load_tae("flux1"), 64, (2, 4), cfg.seed,
                      True, True)
    ref = maker.make(range(4))
    got = load_file(str(cache_dir / "shard_00000.safetensors"))
    assert torch.equal(got["pix"], ref["pix"])
    for name in ("lr", "t2", "t4"):
        assert torch.allclose(got[name], ref[name], atol=1e-4), name


# builds, saves and loads a full-size (random) FLUX.2 VAE twice
@pytest.mark.slow
def test_comfy_and_diffusers_agree_on_a_flux2_vae(tmp_path):
    """A full-size (random) FLUX.2 VAE in diffusers format, through ComfyUI's loader and through diffusers."""
    diffusers = pytest.importorskip("diffusers", reason="diffusers is not installed (optional VAE backend)")
    if not hasattr(diffusers, "AutoencoderKLFlux2"):
        pytest.skip("this diffusers has no AutoencoderKLFlux2")
    _need_comfy()
    torch.manual_seed(0)
    model = diffusers.AutoencoderKLFlux2()
    with torch.no_grad():
        model.bn.running_mean.normal_()
        model.bn.running_var.uniform_(0.5, 2.0)
    model.save_pretrained(str(tmp_path / "f2"))
    c = load_vae("flux2", {"backend": "comfy", "path": str(tmp_path / "f2" / "diffusion_pytorch_model.safetensors")})
    d = load_vae("flux2", {"backend": "diffusers", "path": str(tmp_path / "f2")})
    img = images(1, 32)
    with torch.no_grad():
        zc, zd = c.encode_raw(img), d.encode_raw(img)
        assert zc.shape == (1, 32, 4, 4)
        assert torch.allclose(zc, zd, atol=1e-4)
        assert torch.allclose(get_family("flux2").to_model(c.comfy_vae.encode(img.movedim(1, -1))), zc, atol=1e-6)
        assert torch.allclose(c.decode_raw(zc), d.decode_raw(zc), atol=1e-4)


def test_evaluation_judges_with_a_full_vae_file(comfy_vae_file, tmp_path):
    """``python -m lua_core.eval --vae``: the ComfyUI VAE file is the judge and the VAE teacher's encoder; with
    taef1 in that file every row equals the tiny-autoencoder evaluation's."""
    from lua_core.eval import evaluate
    from lua_core.eval.__main__ import main as eval_main

    weights = REPO / "weights" / "lua_light_flux1.safetensors"
    kw = dict(images_dir=shared_dir() / "data" / "val", scales=(2,), crop=64, count=1, perceptual=False,
              only_paths=("lua_vae", "pixel_route", "latent_bicubic"))
    tiny = evaluate(None, weights, **kw)
    full = evaluate(None, weights, vae={"backend": "comfy", "path": str(comfy_vae_file)}, **kw)
    assert tiny["decoder"] == "taef1 (tiny autoencoder)" and full["decoder"] == "comfy:taef1_comfy.safetensors"
    for path in kw["only_paths"]:
        assert abs(full["results"]["x2"][path]["psnr"] - tiny["results"]["x2"][path]["psnr"]) < 0.01, path
    assert eval_main(["--checkpoint", str(weights), "--images-count", "1", "--crop", "64", "--scales", "2",
                      "--no-perceptual", "--paths", "pixel_route", "--vae", str(comfy_vae_file), "--quiet",
                      "--out", str(tmp_path / "report")]) == 0
    assert json.loads((tmp_path / "report" / "results.json").read_text())["decoder"].startswith("comfy:")
    assert eval_main(["--checkpoint", str(weights), "--vae", str(tmp_path / "missing.safetensors"), "--quiet",
                      "--out", str(tmp_path / "x")]) == 1


def test_fine_tune_trains_against_a_full_vae_file(comfy_vae_file, tmp_path):
    """``python -m lua_core.train.finetune --vae``: a run whose loss, VAE teacher and validation use a ComfyUI VAE."""
    from lua_core.train.finetune import FinetuneConfig, Finetuner

    cfg = FinetuneConfig(family="flux1", init=str(REPO / "weights" / "lua_light_flux1.safetensors"), batch=1,
                         teacher="vae", val_images=1, val_crop=64, lr_sizes_x2=(8,), lr_sizes_x4=(4,), window=8,
                         margin=1, lpips=0.0, vae=str(comfy_vae_file))
    tuner = Finetuner(cfg, tmp_path / "run", threads=1)
    assert tuner.tae.name == "comfy:taef1_comfy.safetensors"
    tuner.run(60, max_steps=2, validate_at_end=True)
    assert tuner.step == 2 and (tmp_path / "run" / "best.safetensors").is_file()
    saved = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[-1])
    assert saved["val"]["step"] == 2
