"""Loss terms on hand-computed cases, and the registry both trainers build their loss from."""
from __future__ import annotations

import math

import pytest
import torch

from lua_core.train import losses as L
from lua_core.train.loss_registry import REGISTRY, HeadOutputs, TermOptions, loss_formula, loss_term, weighted_loss

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_fft_l1_constant_and_impulse():
    # ortho FFT of a constant c on 4x4: DC = 16c / 4 = 4c, other bins 0 -> mean |.| = 4c / 16
    a = torch.full((1, 1, 4, 4), 2.0)
    assert L.fft_l1(a, torch.zeros_like(a)).item() == pytest.approx(0.5)
    # an impulse has a flat spectrum of 1 / sqrt(16) = 0.25
    d = torch.zeros(1, 1, 4, 4)
    d[..., 0, 0] = 1
    assert L.fft_l1(d, torch.zeros_like(d)).item() == pytest.approx(0.25)
    # the magnitude ignores a circular shift; the plain L1 does not
    assert L.fft_l1(d, torch.roll(d, (1, 2), (-2, -1))).item() == pytest.approx(0.0, abs=1e-7)
    assert L.l1(d, torch.roll(d, 1, -1)).item() == pytest.approx(2 / 16)


def test_gaussian_kernel_and_hf_term_on_impulse():
    k = L.gaussian_kernel1d(1.0, 5)
    e1, e2 = math.exp(-0.5), math.exp(-2.0)
    g0 = 1 / (1 + 2 * e1 + 2 * e2)
    assert k.tolist() == pytest.approx([e2 * g0, e1 * g0, g0, e1 * g0, e2 * g0])
    # impulse in the middle of 9x9: residual 1 - g0^2 at the centre, -g_i g_j around (sum 1 - g0^2)
    x = torch.zeros(1, 1, 9, 9)
    x[..., 4, 4] = 1
    assert L.high_freq_l1(x, torch.zeros_like(x)).item() == pytest.approx(2 * (1 - g0 ** 2) / 81, rel=1e-5)
    # constants of any level have no high frequencies
    assert L.high_freq_l1(torch.full((1, 3, 8, 8), 0.9), torch.zeros(1, 3, 8, 8)).item() == pytest.approx(0, abs=1e-6)


def test_downsample_term():
    a, b = torch.full((1, 3, 16, 16), 0.75), torch.full((1, 3, 16, 16), 0.25)
    assert L.down_l1(a, b, 2).item() == pytest.approx(0.5, abs=1e-6)
    assert L.downsample(a, 4).shape == (1, 3, 4, 4)
    # a one-pixel checkerboard is (almost) removed by the anti-aliased downsample; plain L1 sees all of it
    ii, jj = torch.meshgrid(torch.arange(32), torch.arange(32), indexing="ij")
    cb = ((ii + jj) % 2).float().view(1, 1, 32, 32)
    flat = torch.full_like(cb, 0.5)
    assert L.l1(cb, flat).item() == pytest.approx(0.5)
    assert L.down_l1(cb, flat, 2).item() < 0.1


def test_scharr_and_patch_variance_by_hand():
    # Y = j^2 along x: Scharr x = 16 * (Y[j+1] - Y[j-1]) = 64 j at centres j = 1, 2, 3
    y = (torch.arange(5.0) ** 2).view(1, 1, 1, 5).expand(1, 1, 5, 5)
    gx, gy = L.scharr_gradients(y)
    assert gx[0, 0].tolist() == [[64.0, 128.0, 192.0]] * 3
    assert gy.abs().max().item() == 0
    v = L.patch_variance(gx, 3)
    assert v.shape == (1, 1, 1, 1)
    assert v.item() == pytest.approx(64 ** 2 * 2 / 3)


def test_highpass_weight_and_eagle_from_maps():
    w = L.highpass_weight(4, 4, 0.5)
    assert w[0, 0].item() == 0.0
    assert w[2, 0].item() == pytest.approx(1 - math.exp(-0.25 / 0.5))  # u = -0.5
    assert w[1, 1].item() == pytest.approx(1 - math.exp(-(0.0625 + 0.0625) / 0.5))
    # a unit impulse map has |FFT| = 1 everywhere: the loss is the mean weight
    va = torch.zeros(1, 1, 4, 4)
    va[..., 0, 0] = 1
    freqs = [0, 0.25, -0.5, -0.25]
    expected = sum(1 - math.exp(-(u * u + v * v) / 0.5) for u in freqs for v in freqs) / 16
    assert L.eagle_from_maps(va, torch.zeros_like(va)).item() == pytest.approx(expected, rel=1e-6)
    # a uniform variance offset only moves the DC bin, which the high-pass weight removes
    assert L.eagle_from_maps(torch.full((1, 1, 4, 4), 3.0), torch.zeros(1, 1, 4, 4)).item() == pytest.approx(0, abs=1e-6)


def test_eagle_loss_on_patterns():
    flat = torch.full((1, 3, 20, 20), 0.5)
    assert L.eagle_loss(flat, torch.full_like(flat, 0.2)).item() == 0.0  # no gradients at all
    ii, jj = torch.meshgrid(torch.arange(20), torch.arange(20), indexing="ij")
    stripes = ((jj // 2) % 2).float().expand(1, 3, 20, 20)
    assert L.eagle_loss(stripes, stripes).item() == 0.0
    blob = torch.exp(-((ii - 9.5) ** 2 + (jj - 9.5) ** 2) / 18).expand(1, 3, 20, 20)
    assert L.eagle_loss(blob, flat).item() > 0
    # the luma is what counts: swapping colour channels of a grey image changes nothing
    assert L.luminance(torch.ones(1, 3, 2, 2)).flatten().tolist() == pytest.approx([1.0] * 4)


def loss(weights, pred_lat=None, target_lat=None, pred_img=None, target_img=None, lpips_fn=None):
    """One head's weighted loss and its terms as floats."""
    total, values = weighted_loss(weights, HeadOutputs(pred_lat, target_lat, None, pred_img, target_img, lpips_fn),
                                  TermOptions(down_factor=2))
    return total, {k: float(v.detach()) for k, v in values.items()}


def test_weighted_loss_weights_and_errors():
    a, b = torch.ones(1, 4, 4, 4), torch.zeros(1, 4, 4, 4)
    total, terms = loss({"latent_l1": 2.0, "latent_fft": 0.0}, a, b)
    assert terms == {"latent_l1": 1.0}  # a term weighted 0 is not computed
    assert total.item() == pytest.approx(2.0)
    img = torch.zeros(1, 3, 8, 8)
    total, terms = loss({"pix_l1": 10.0}, a, b, img + 0.1, img)
    assert total.item() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="decoded and target images"):
        loss({"pix_l1": 1.0}, a, b)
    with pytest.raises(ValueError, match="at least one loss term"):
        loss({}, a, b)
    with pytest.raises(ValueError, match="unknown loss terms \\['pix_l2'\\]"):
        loss({"pix_l2": 1.0}, a, b)


def test_every_term_is_registered_once_with_what_it_needs():
    assert list(REGISTRY) == ["latent_l1", "latent_fft", "teacher_l1", "teacher_fft", "pix_down_l1", "pix_hf_l1",
                              "pix_l1", "pix_fft", "eagle", "lpips"]
    assert {t.needs for t in REGISTRY.values()} == {"latent", "teacher", "pixels"}
    with pytest.raises(ValueError, match="registered twice"):
        loss_term("pix_l1", "pixels", "L1")(lambda x, o: x.pred_img.sum())


def test_a_registered_term_is_a_config_weight(monkeypatch):
    from lua_core.train.config import StageConfig

    monkeypatch.setitem(REGISTRY, "pix_l2", REGISTRY["pix_l1"].__class__(
        "pix_l2", "pixels", "L2", lambda x, o: ((x.pred_img - x.target_img) ** 2).mean()))
    stage = StageConfig(name="s", steps=1, weights={"pix_l2": 4.0})
    assert stage.needs_pixels and not stage.needs_teacher
    img = torch.zeros(1, 3, 8, 8)
    total, terms = loss(stage.weights, None, None, img + 0.5, img)
    assert terms == {"pix_l2": 0.25} and total.item() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="unknown loss terms"):
        StageConfig(name="s", steps=1, weights={"pix_l3": 1.0})


def test_the_formula_a_model_card_prints():
    recipe = {"pix_l1": 10.0, "pix_fft": 1.0, "lpips": 0.3}
    assert loss_formula({2: recipe, 4: recipe}) == "10.0 x L1 + 1.0 x FFT-L1 + 0.3 x LPIPS(AlexNet)"
    assert loss_formula({2: {**recipe, "lpips": 1.5}, 4: {**recipe, "lpips": 0.6}}) == (
        "10.0 x L1 + 1.0 x FFT-L1 + 0.6 x LPIPS(AlexNet) (x2 head 1.5)")
    assert loss_formula({2: {"latent_l1": 1.0, "eagle": 5e-5}, 4: {"latent_l1": 1.0}}) == (
        "1.0 x latent L1 + 0.0 x EAGLE (x2 head 5e-05)")


def test_lpips_term_uses_the_given_network_and_names_a_missing_one():
    pred, tgt = torch.zeros(2, 3, 8, 8), torch.ones(2, 3, 8, 8)
    lat = torch.zeros(2, 4, 1, 1)
    calls = []

    def fake_lpips(a, b):
        calls.append((a.shape, b.shape))
        return torch.tensor([0.25, 0.75])

    total, terms = loss({"lpips": 2.0, "pix_l1": 1.0}, lat, lat, pred, tgt, lpips_fn=fake_lpips)
    assert calls == [((2, 3, 8, 8), (2, 3, 8, 8))]
    assert terms == {"pix_l1": 1.0, "lpips": 0.5} and float(total) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="LPIPS network"):
        loss({"lpips": 1.0}, lat, lat, pred, tgt)


def test_lpips_term_trains_through_the_real_network():
    from lua_core.metrics.perceptual import LPIPS, MetricUnavailable

    try:
        net = LPIPS("alex")
    except MetricUnavailable as exc:
        pytest.skip(str(exc))
    torch.manual_seed(0)
    target = torch.rand(1, 3, 64, 64)
    pred = torch.full_like(target, 0.5).requires_grad_(True)
    _, first = loss({"lpips": 1.0}, pred, pred, pred, target, lpips_fn=net)
    opt = torch.optim.Adam([pred], lr=0.02)
    for _ in range(20):
        total, _ = loss({"lpips": 1.0}, pred, pred, pred, target, lpips_fn=net)
        opt.zero_grad()
        total.backward()
        opt.step()
    _, last = loss({"lpips": 1.0}, pred, pred, pred, target, lpips_fn=net)
    assert last["lpips"] < 0.5 * first["lpips"]
    assert all(not p.requires_grad for p in net.parameters())


def test_the_shipped_recipe_is_built_from_the_registry():
    """The fine-tune's ``l1``/``fft``/``lpips`` fields weigh registry terms; its formula comes from the registry."""
    from lua_core.train.finetune import CONFIG_WEIGHTS, FinetuneConfig, recipe_formula, term_weights

    assert set(CONFIG_WEIGHTS.values()) <= set(REGISTRY)
    cfg = FinetuneConfig(family="sdxl", init="x", lpips=0.6, lpips_x2=1.5)
    assert term_weights(cfg, 2) == {"pix_l1": 10.0, "pix_fft": 1.0, "lpips": 1.5}
    assert term_weights(cfg, 4) == {"pix_l1": 10.0, "pix_fft": 1.0, "lpips": 0.6}
    assert recipe_formula(cfg) == "10.0 x L1 + 1.0 x FFT-L1 + 0.6 x LPIPS(AlexNet) (x2 head 1.5)"
    img, ref = torch.zeros(1, 3, 8, 8), torch.full((1, 3, 8, 8), 0.5)
    total, terms = weighted_loss(term_weights(cfg, 4), HeadOutputs(pred_img=img, target_img=ref,
                                                                   lpips_fn=lambda a, b: torch.tensor([0.5])))
    assert set(terms) == {"pix_l1", "pix_fft", "lpips"}
    assert float(total) == pytest.approx(10 * 0.5 + float(L.fft_l1(img, ref)) + 0.6 * 0.5)
