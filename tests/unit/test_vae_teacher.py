"""The user's VAE as the teacher (LUA Latent Upscale's ``vae`` input): API, engine, evaluation, fine-tune, kit."""
from __future__ import annotations

import random

import pytest
import torch
import torch.nn.functional as F

import lua_core
from lua_core.engine.vae_teacher import vae_teacher
from lua_core.eval.pipeline import LUA_VAE, PIXEL_ROUTE, PathRunner, latent_nmse
from lua_core.tae import TinyVAE, load_tae
from lua_core.toolkit.images import bicubic_down
from lua_core.toolkit.standin_vae import StandInVAE
from lua_core.train.finetune import FinetuneConfig, decoded_window, vae_standin_teacher
from tests.helpers import images

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def taes():
    return {f: load_tae(f) for f in ("sdxl", "flux2")}


def _teacher_model(factory, family, tae, gain=0.1):
    """A small teacher-skip adapter whose embedded tiny autoencoder is the family's."""
    model = factory(family, skip="tae", tae_groupnorm=lua_core.get_family(family).tae_groupnorm)
    model.net.skip.encoder.load_state_dict(tae.encoder.state_dict())
    model.net.skip.decoder.load_state_dict(tae.decoder.state_dict())
    with torch.no_grad():
        model.net.skip.gain.fill_(gain)
    return model


@pytest.mark.parametrize("family", ["sdxl", "flux2"])
def test_a_vae_made_of_the_adapters_own_autoencoder_gives_its_own_result(tiny_model_factory, taes, family):
    tae = taes[family]
    model = _teacher_model(tiny_model_factory, family, tae)
    z = model.family.to_comfy(tae.encode_raw(images(2, 64)))
    with torch.inference_mode():
        own = lua_core.upscale(model, z, 2)
        with_vae = lua_core.upscale(model, z, 2, vae=TinyVAE(tae))
        tiled = lua_core.upscale(model, z, 2, vae=TinyVAE(tae), tile_size=8, tile_overlap=4)
        tiled_own = lua_core.upscale(model, z, 2, tile_size=8, tile_overlap=4)
    scale = own.abs().max()
    assert with_vae.shape == own.shape
    assert (with_vae - own).abs().max() < 1e-3 * scale
    assert (tiled - tiled_own).abs().max() < 1e-3 * scale  # the teacher is added once, outside the tiles


def test_the_vae_teacher_replaces_the_skip_and_keeps_the_residual(tiny_model_factory, taes):
    tae = taes["sdxl"]
    model = _teacher_model(tiny_model_factory, "sdxl", tae, gain=0.0)
    lr = images(1, 64, seed=3)
    z = tae.encode_comfy(lr)
    with torch.inference_mode():
        out = lua_core.upscale(model, z, 2, vae=StandInVAE(lr, tae, model.family))
        expected = tae.encode_comfy(F.interpolate(lr, scale_factor=2, mode="bicubic", align_corners=False).clamp(0, 1))
    assert torch.allclose(out, expected, atol=1e-5)  # gain 0: the output is the teacher
    with torch.no_grad():
        model.net.skip.gain.fill_(0.5)
    with torch.inference_mode():
        moved = lua_core.upscale(model, z, 2, vae=StandInVAE(lr, tae, model.family))
    assert (moved - expected).abs().mean() > 1e-3


def test_fractional_scales_run_the_head_with_the_teacher_at_its_size(tiny_model_factory, taes):
    tae = taes["sdxl"]
    model = _teacher_model(tiny_model_factory, "sdxl", tae)
    z = tae.encode_comfy(images(1, 64))
    with torch.inference_mode():
        x2 = lua_core.upscale(model, z, 2, vae=TinyVAE(tae))
        x15 = lua_core.upscale(model, z, 1.5, vae=TinyVAE(tae))
    assert torch.allclose(x15, F.interpolate(x2, size=(12, 12), mode="area"), atol=1e-5)


class _BadVAE:
    def __init__(self, decode_shape=None, encode_shape=None, nan=False):
        self.decode_shape, self.encode_shape, self.nan = decode_shape, encode_shape, nan

    def decode(self, latent):
        b, _, h, w = latent.shape
        return torch.rand(self.decode_shape or (b, 3, h * 8, w * 8))

    def encode(self, images):
        b, _, h, w = images.shape
        out = torch.zeros(self.encode_shape or (b, 4, h // 8, w // 8))
        return out.fill_(float("nan")) if self.nan else out


@pytest.mark.parametrize("vae,message", [
    (object(), "decode\\(latent\\) and encode\\(images\\)"),
    (_BadVAE(decode_shape=(1, 3, 10, 10)), "decode returned shape \\(1, 3, 10, 10\\), expected \\(1, 3, 64, 64\\)"),
    (_BadVAE(encode_shape=(1, 16, 16, 16)), "encode returned shape .* expected \\(1, 4, 16, 16\\).*latent family"),
    (_BadVAE(nan=True), "encode returned NaN"),
])
def test_a_wrong_vae_is_refused_by_name(tiny_model_factory, vae, message):
    model = tiny_model_factory("sdxl", skip="tae")
    with pytest.raises(ValueError, match=message):
        lua_core.upscale(model, torch.randn(1, 4, 8, 8), 2, vae=vae)


def test_an_adapter_without_a_teacher_refuses_a_vae(tiny_model_factory, taes):
    model = tiny_model_factory("sdxl", skip="bicubic")
    assert model.teacher == "bicubic"
    with pytest.raises(ValueError, match="cannot use a VAE; leave the vae input unconnected"):
        lua_core.upscale(model, torch.randn(1, 4, 8, 8), 2, vae=TinyVAE(taes["sdxl"]))


def test_vae_teacher_is_the_encode_of_the_bicubic_decode(taes):
    tae = taes["flux2"]
    fam = tae.family
    z = tae.encode_comfy(images(1, 64))
    got = vae_teacher(TinyVAE(tae), z, 2, fam)
    img = tae.decode_comfy(z)
    want = fam.to_model(tae.encode_comfy(F.interpolate(img, scale_factor=2, mode="bicubic",
                                                       align_corners=False).clamp(0, 1)))
    assert got.shape == (1, 32, 16, 16) and torch.allclose(got, want, atol=1e-5)


def test_the_users_route_is_the_stand_in_teacher_decoded(tiny_model_factory, taes):
    """With a zero residual, LUA with the VAE input is exactly the user's route: the yardstick is fair."""
    tae = taes["sdxl"]
    model = _teacher_model(tiny_model_factory, "sdxl", tae, gain=0.0)
    runner = PathRunner(tae, model.family, model)
    hr = images(1, 128, seed=5)
    outs, _ = runner.run(hr, 2, [LUA_VAE, PIXEL_ROUTE, "lua", "latent_bicubic", "pixel_bicubic"])
    assert torch.allclose(outs[LUA_VAE].image, outs[PIXEL_ROUTE].image, atol=1e-4)
    z_hr, _ = runner.hr_latent(hr)
    assert latent_nmse(z_hr, z_hr) == 0.0
    assert latent_nmse(outs[LUA_VAE].latent, z_hr) == pytest.approx(latent_nmse(outs[PIXEL_ROUTE].latent, z_hr),
                                                                    rel=1e-3)
    assert all(r.latent is not None and r.latent.shape == (1, 4, 16, 16) for r in outs.values())


def test_missing_upscale_models_are_reported_not_run(tiny_model_factory, taes, monkeypatch):
    from lua_core.eval import pipeline

    monkeypatch.setattr(pipeline, "unavailable_reason", lambda name, scale: f"no {name}")
    runner = PathRunner(taes["sdxl"], taes["sdxl"].family, None)
    assert runner.unavailable((2,)) == {"pixel_route_fsrcnn": "no fsrcnn", "pixel_route_espcn": "no espcn"}
    assert "pixel_route_fsrcnn" not in runner.paths((2,)) and PIXEL_ROUTE in runner.paths((2,))


def test_peer_networks_upscale_when_opencv_contrib_is_there():
    from lua_core.eval.peers import peer_upscale, unavailable_reason

    if unavailable_reason("fsrcnn", 2):
        pytest.skip(unavailable_reason("fsrcnn", 2))
    img = images(1, 32, seed=2)
    for name in ("fsrcnn", "espcn"):
        out = peer_upscale(img, 2, name)
        assert out.shape == (1, 3, 64, 64) and 0 <= float(out.min()) and float(out.max()) <= 1
        bicubic = F.interpolate(img, scale_factor=2, mode="bicubic", align_corners=False)
        assert (out - bicubic).abs().mean() < 0.1  # an upscale of the same picture, not noise
    with pytest.raises(ValueError, match="unknown upscale model"):
        peer_upscale(img, 2, "edsr")


def test_the_fine_tune_trains_on_the_vae_teacher(tiny_model_factory, taes):
    tae = taes["sdxl"]
    model = _teacher_model(tiny_model_factory, "sdxl", tae, gain=0.0)
    net = model.net.train().requires_grad_(True)

    class Pool:
        def crops(self, rng, count, size):
            return images(count, size, seed=rng.randrange(1000))

    cfg = FinetuneConfig(family="sdxl", init="x", batch=1, teacher="vae", lr_sizes_x2=(8,), window=8, margin=1)
    img, ref = decoded_window(net, tae, Pool(), cfg, random.Random("0:0"), 2)
    hr = Pool().crops(random.Random("0:0"), 1, 128)
    with torch.no_grad():
        teacher = vae_standin_teacher(tae, bicubic_down(hr, 2), 2)
        assert torch.allclose(net(tae.encode_raw(bicubic_down(hr, 2)), 2, teacher=teacher), teacher, atol=1e-5)
    assert img.shape == ref.shape == (1, 3, 48, 48)
    loss = (img - ref).abs().mean()
    loss.backward()
    assert net.skip.gain.grad is not None and float(net.skip.gain.grad.abs()) > 0


def test_the_teacher_of_a_loaded_adapter_comes_from_its_training_record(tiny_model_factory):
    assert tiny_model_factory("sdxl", skip="tae").teacher == "tae"
    model = tiny_model_factory("sdxl", skip="tae")
    model.metadata["lua.training"] = '{"config": {"teacher": "vae"}}'
    assert model.teacher == "vae"


def test_a_teacher_made_beforehand_gives_the_same_result(tiny_model_factory, taes):
    """The node makes the teacher before it loads the adapter (plan_teacher), then runs the plan with it."""
    from lua_core.api import plan_teacher, plan_upscale, run_plan

    tae = taes["flux2"]
    model = _teacher_model(tiny_model_factory, "flux2", tae)
    z = tae.encode_comfy(images(1, 64))
    plan = plan_upscale(model, z, 2)
    teacher = plan_teacher(model, z, plan, TinyVAE(tae))
    assert teacher.shape == (1, 32, 16, 16)
    with torch.inference_mode():
        direct = run_plan(model, z, plan, vae=TinyVAE(tae))
        made = run_plan(model, z, plan, teacher=teacher)
    assert torch.equal(direct, made)
    with pytest.raises(ValueError, match="the teacher has shape \\(1, 32, 8, 8\\), this plan needs \\(1, 32, 16, 16\\)"):
        run_plan(model, z, plan, teacher=teacher[..., :8, :8])
    assert plan_teacher(model, z, plan_upscale(model, z, 1), TinyVAE(tae)) is None  # no head runs: no VAE pass
