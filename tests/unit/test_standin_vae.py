"""The VAE teacher's stand-in is one helper: the fine-tune's teacher, the engine's teacher of the stand-in VAE and
the evaluation's user's route all give the same latent."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lua_core.engine.vae_teacher import vae_teacher
from lua_core.eval.pipeline import PIXEL_ROUTE, PathRunner
from lua_core.tae import load_tae
from lua_core.toolkit.images import bicubic_down, bicubic_up
from lua_core.toolkit.standin_vae import StandInVAE, standin_image, standin_teacher
from tests.helpers import images

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_bicubic_up_is_comfyuis_upscale_image_clamped():
    img = images(1, 16, seed=1)
    up = bicubic_up(img, 2)
    want = F.interpolate(img, scale_factor=2, mode="bicubic", align_corners=False)
    assert up.shape == (1, 3, 32, 32) and float(up.min()) >= 0 and float(up.max()) <= 1
    assert torch.equal(up, want.clamp(0, 1))


@pytest.mark.parametrize("family", ["sdxl", "flux2"])
def test_the_engine_teacher_of_the_stand_in_vae_is_the_stand_in_teacher(family):
    tae = load_tae(family)
    lr = images(1, 64, seed=4)
    with torch.inference_mode():
        z_lr = tae.encode_comfy(lr)
        engine = vae_teacher(StandInVAE(lr, tae, tae.family), z_lr, 2, tae.family)
        helper = standin_teacher(tae, lr, 2)
    assert engine.shape == helper.shape and torch.allclose(engine, helper, atol=1e-5)


def test_the_users_route_is_the_stand_in_teacher_through_the_decoder():
    tae = load_tae("sdxl")
    hr = images(1, 128, seed=6)
    outs, _ = PathRunner(tae, tae.family).run(hr, 2, [PIXEL_ROUTE])
    with torch.inference_mode():
        lr = bicubic_down(hr, 2)
        teacher = standin_teacher(tae, lr, 2)
        assert torch.equal(outs[PIXEL_ROUTE].latent, teacher)
        assert torch.equal(outs[PIXEL_ROUTE].image, tae.decode_raw(teacher).clamp(0, 1))
    assert torch.equal(standin_image(lr, 2), bicubic_up(lr, 2))


def test_the_stand_in_vae_decodes_only_its_own_latent():
    tae = load_tae("sdxl")
    lr = images(1, 64)
    vae = StandInVAE(lr, tae, tae.family)
    assert vae.decode(torch.zeros(1, 4, 8, 8)) is lr
    with pytest.raises(ValueError, match="only the latent of its own LR image"):
        vae.decode(torch.zeros(1, 4, 16, 16))
