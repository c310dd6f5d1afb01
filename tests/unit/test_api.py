"""The public API: lua_core.load_model / lua_core.upscale on ComfyUI-convention latents."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import lua_core
from tests.helpers import tiny_config


@pytest.mark.parametrize("scale,expected", [(2, (20, 26)), (4, (40, 52)), (1.5, (15, 20)), (3, (30, 39)), (1, (10, 13))])
def test_output_sizes_for_any_scale(tiny_model_factory, scale, expected):
    model = tiny_model_factory("flux1")
    out = lua_core.upscale(model, torch.randn(2, 16, 10, 13), scale)
    assert out.shape == (2, 16, *expected)


def test_fractional_scale_is_area_resized_head_output(tiny_model_factory):
    model = tiny_model_factory("sd15")
    z = torch.randn(1, 4, 16, 16) * 4
    x2 = lua_core.upscale(model, z, 2)
    x15 = lua_core.upscale(model, z, 1.5)
    assert torch.allclose(x15, F.interpolate(x2, size=(24, 24), mode="area"), atol=1e-5)


def test_upscale_to_exact_size(tiny_model_factory):
    model = tiny_model_factory("sdxl")
    out = lua_core.upscale(model, torch.randn(1, 4, 16, 24), size=(50, 70))
    assert out.shape == (1, 4, 50, 70)


def test_video_latents_fold_framewise(tiny_model_factory):
    model = tiny_model_factory("flux1")
    v = torch.randn(2, 16, 3, 8, 10)
    out = lua_core.upscale(model, v, 2)
    assert out.shape == (2, 16, 3, 16, 20)
    frame = lua_core.upscale(model, v[:, :, 1], 2)
    assert torch.allclose(out[:, :, 1], frame, atol=1e-6)


def test_flux2_packed_latents(tiny_model_factory):
    model = tiny_model_factory("flux2")
    fam = model.family
    packed = torch.randn(1, 128, 6, 5)
    out = lua_core.upscale(model, packed, 2)
    assert out.shape == (1, 128, 12, 10)
    with torch.no_grad():
        direct = model.net(fam.to_model(packed), 2)
    assert torch.allclose(out, fam.to_comfy(direct), atol=1e-5)


def test_dtype_and_device_of_the_input_are_kept(tiny_model_factory):
    model = tiny_model_factory("flux1")
    z = torch.randn(1, 16, 8, 8)
    ref = lua_core.upscale(model, z, 2)
    for dt in ("bf16", "fp16"):
        out = lua_core.upscale(model, z.half(), 2, dtype=dt)
        assert out.dtype == torch.float16
        assert (out.float() - ref).abs().max() < 0.05 * ref.abs().max()
    assert model.dtype == torch.float32  # a per-call dtype does not change the loaded model


def test_non_contiguous_input(tiny_model_factory):
    model = tiny_model_factory("flux1")
    z = torch.randn(1, 16, 12, 10).transpose(-1, -2)
    assert not z.is_contiguous()
    assert torch.allclose(lua_core.upscale(model, z, 2), lua_core.upscale(model, z.contiguous(), 2), atol=1e-6)


def test_empty_batch_gives_empty_result(tiny_model_factory):
    model = tiny_model_factory("flux1")
    assert lua_core.upscale(model, torch.zeros(0, 16, 8, 8), 2).shape == (0, 16, 16, 16)


@pytest.mark.parametrize("latent,message", [
    (torch.randn(1, 4, 8, 8), "4 channels but this FLUX.1 adapter expects 16"),
    (torch.randn(16, 8, 8), "4-D"),
    (torch.ones(1, 16, 8, 8, dtype=torch.int64), "floating-point"),
    (torch.full((1, 16, 8, 8), float("nan")), "NaN or Inf"),
    (torch.full((1, 16, 8, 8), float("inf")), "NaN or Inf"),
    (torch.zeros(1, 16, 0, 8), "too small"),
    ([1, 2, 3], "torch.Tensor"),
])
def test_bad_latents_raise_clear_errors(tiny_model_factory, latent, message):
    model = tiny_model_factory("flux1")
    with pytest.raises(ValueError, match=message):
        lua_core.upscale(model, latent, 2)


@pytest.mark.parametrize("kwargs,message", [
    (dict(scale=8), "exceeds this model's largest head x4"),
    (dict(scale=0.5), "smaller than the latent"),
    (dict(scale=float("nan")), "positive number"),
    (dict(scale=-2), "positive number"),
    (dict(size=(4, 40)), "smaller than the latent"),
    (dict(scale=2, tile_size=-3), "tile_size"),
    (dict(scale=2, dtype="int8"), "unknown dtype"),
])
def test_bad_options_raise_clear_errors(tiny_model_factory, kwargs, message):
    model = tiny_model_factory("flux1")
    with pytest.raises(ValueError, match=message):
        lua_core.upscale(model, torch.randn(1, 16, 8, 8), **kwargs)


def test_one_pixel_latent(tiny_model_factory):
    model = tiny_model_factory("flux1")
    out = lua_core.upscale(model, torch.randn(1, 16, 1, 1), 4)
    assert out.shape == (1, 16, 4, 4) and torch.isfinite(out).all()


def test_load_model_dtype_and_describe(tiny_model_factory, tmp_path):
    model = tiny_model_factory("sd3")
    m16 = lua_core.load_model(model.path, dtype="bf16")
    assert m16.dtype == torch.bfloat16 and "SD3" in m16.describe()
    with pytest.raises(ValueError, match="unknown dtype"):
        lua_core.load_model(model.path, dtype="fp8")


def test_a_per_call_dtype_never_rounds_the_stored_weights(tiny_model_factory):
    """A bf16 call computes on a cast copy, kept for the next bf16 call; the fp32 weights stay exact."""
    model = tiny_model_factory("flux1")
    weights = {k: v.clone() for k, v in model.net.state_dict().items()}
    z = torch.randn(1, 16, 8, 8)
    fresh = lua_core.upscale(model, z, 2)
    lua_core.upscale(model, z, 2, dtype="bf16")
    copy = model.net_for(torch.bfloat16)
    assert copy is not model.net and copy is model.net_for(torch.bfloat16)
    assert next(copy.parameters()).dtype == torch.bfloat16
    assert all(torch.equal(v, weights[k]) for k, v in model.net.state_dict().items())
    assert torch.equal(lua_core.upscale(model, z, 2), fresh)
    assert model.net_for(torch.float32) is model.net
    model.to("cpu")  # moving the model drops the copies (they would hold memory on the old device)
    assert not model._casts


def test_the_plan_asks_for_the_memory_it_runs_on(tiny_model_factory):
    from lua_core.api import plan_upscale, run_plan
    from lua_core.engine import plan_peak_bytes

    model = tiny_model_factory("flux1")
    z = torch.randn(2, 16, 48, 40)
    plain = plan_upscale(model, z, 2, memory_budget=1 << 40)
    assert not plain.tiles.tiled and plain.tiles.chunks is None and plain.tiles.batch_chunk == 2
    assert plain.memory_required == plan_peak_bytes(model.config, 2, plain.tiles, 48, 40, torch.float32)
    budget = plain.memory_required // 6
    tight = plan_upscale(model, z, 2, memory_budget=budget)
    assert tight.tiles != plain.tiles  # split (batch, chunks or tiles) to fit
    assert tight.memory_required == plan_peak_bytes(model.config, 2, tight.tiles, 48, 40, torch.float32)
    assert tight.memory_required <= budget
    with torch.inference_mode():
        diff = (run_plan(model, z, tight) - run_plan(model, z, plain)).abs()
    assert diff.mean() < 0.01  # tiles of a random net: small seams (chunks and batch splits: none)


@pytest.mark.parametrize("tile_size,match", [(-1, "tile_size must be >= 0 \\(0 = automatic\\), got -1"),
                                              (2.5, "tile_size must be an integer"),
                                              (True, "tile_size must be an integer"),
                                              (None, "tile_size must be an integer >= 0 \\(0 = automatic\\), got None")])
def test_tile_size_is_checked_once_with_one_sentinel(tiny_model_factory, tile_size, match):
    from lua_core.api import plan_upscale

    model = tiny_model_factory("flux1")
    with pytest.raises(ValueError, match=match):
        plan_upscale(model, torch.randn(1, 16, 8, 8), 2, tile_size=tile_size)
    assert not plan_upscale(model, torch.randn(1, 16, 8, 8), 2, tile_size=0).tiles.tiled  # 0: automatic


def test_run_network_runs_the_plan_it_is_given():
    from lua_core.engine import TilePlan, run_network

    torch.manual_seed(0)
    net = lua_core.LUANet(tiny_config(16)).eval()
    calls = []
    real = net.forward

    def spy(z, head=2, skip=True, **kw):
        calls.append(tuple(z.shape))
        return real(z, head, skip, **kw)

    net.forward = spy
    z = torch.randn(1, 16, 32, 32)
    with torch.inference_mode():
        run_network(net, z, 2, plan=TilePlan(16, 16, 8, 1))
    assert calls and all(shape[-2:] == (16, 16) for shape in calls)  # tiles, though 0 (automatic) would not tile
