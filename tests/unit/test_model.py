"""The network: published layout, equivalence with a plain implementation, caches."""
from __future__ import annotations

import pytest
import torch

import lua_core
from lua_core.model import swin
from tests.helpers import tiny_config
from tests.reference_swinir import reference_forward


@pytest.mark.slow
def test_paper_config_matches_official_layout(official_spec):
    net = lua_core.LUANet(lua_core.PAPER_CONFIG)
    sd = net.state_dict()
    spec = official_spec["tensors"]
    assert set(sd) == set(spec)
    wrong = {k: (tuple(sd[k].shape), tuple(v)) for k, v in spec.items() if tuple(sd[k].shape) != tuple(v)}
    assert wrong == {}
    assert net.num_parameters() == official_spec["parameter_count"]
    cfg = official_spec["config"]
    assert (net.config.embed_dim, net.config.window_size, net.config.head_num_feat) == (
        cfg["embed_dim"], cfg["window_size"], cfg["head_num_feat"])


def test_light_config_is_small():
    n = lua_core.LUANet(lua_core.LIGHT_CONFIG).num_parameters()
    assert 1_000_000 <= n <= 3_000_000


@pytest.mark.parametrize("scale", [2, 4])
@pytest.mark.parametrize("size", [(8, 8), pytest.param((21, 35), marks=pytest.mark.slow),
                                  pytest.param((16, 9), marks=pytest.mark.slow)])
def test_matches_plain_implementation(scale, size):
    torch.manual_seed(1)
    net = lua_core.LUANet(tiny_config(4)).eval()
    z = torch.randn(2, 4, *size) * 3
    with torch.no_grad():
        fast = net(z, scale)
        plain = reference_forward(net, z, scale)
    assert fast.shape == (2, 4, size[0] * scale, size[1] * scale)
    assert (fast - plain).abs().max().item() < 1e-4


@pytest.mark.slow
def test_paper_structure_matches_plain_implementation():
    """Window 16 with 12 heads and no skip, as in the published config (narrower to stay fast)."""
    torch.manual_seed(2)
    cfg = lua_core.PAPER_CONFIG.replace(embed_dim=48, depths=(2,), num_heads=(12,), head_num_feat=32)
    net = lua_core.LUANet(cfg).eval()
    z = torch.randn(1, 16, 20, 33)
    with torch.no_grad():
        assert (net(z, 4) - reference_forward(net, z, 4)).abs().max().item() < 1e-4


@pytest.mark.slow
def test_bias_cache_follows_weight_updates():
    torch.manual_seed(3)
    net = lua_core.LUANet(tiny_config(4, skip="none")).eval()
    z = torch.randn(1, 4, 16, 16)
    with torch.inference_mode():
        before = net(z, 2)
    with torch.no_grad():
        for layer in net.layers:
            for blk in layer.residual_group.blocks:
                blk.attn.relative_position_bias_table.add_(5 * torch.randn_like(blk.attn.relative_position_bias_table))
    with torch.inference_mode():
        after = net(z, 2)
        plain = reference_forward(net, z, 2)
    # a stale cache would reproduce `before`, which differs from the plain pass by far more than the tolerance
    assert (after - before).abs().max() > 1e-3
    assert (after - plain).abs().max() < 1e-5


def test_shift_mask_cache_reuses_and_matches():
    swin._SHIFT_MASK_CACHE.clear()
    a = swin.cached_shift_mask(32, 48, 8, 4, torch.device("cpu"), torch.float32)
    b = swin.cached_shift_mask(32, 48, 8, 4, torch.device("cpu"), torch.float32)
    assert a is b
    assert torch.equal(a, swin.build_shift_mask(32, 48, 8, 4))
    assert a.shape == (4 * 6, 64, 64)


def test_gradients_flow_in_training_mode():
    net = lua_core.LUANet(tiny_config(4)).train()
    out = net.forward_all(torch.randn(1, 4, 12, 12))
    loss = sum(o.square().mean() for o in out.values())
    loss.backward()
    table = net.layers[0].residual_group.blocks[1].attn.relative_position_bias_table
    assert table.grad is not None and table.grad.abs().sum() > 0
    assert set(out) == {2, 4} and out[4].shape[-1] == 48


@pytest.mark.parametrize("bad", [
    dict(scales=(3,)), dict(embed_dim=50, num_heads=(6, 6)), dict(depths=(2,), num_heads=(3, 3)), dict(skip="x"),
    dict(scales=()),
])
def test_invalid_config_is_refused(bad):
    with pytest.raises(ValueError, match="invalid LUA config"):
        tiny_config(4, **bad)


def test_config_json_round_trip():
    cfg = tiny_config(16, in_scale=0.3611)
    assert lua_core.LUAConfig.from_json(cfg.to_json()) == cfg
    with pytest.raises(ValueError, match="unknown LUA config keys"):
        lua_core.LUAConfig.from_dict({"bogus": 1})


def test_unknown_head_is_refused():
    net = lua_core.LUANet(tiny_config(4, scales=(2,)))
    with pytest.raises(ValueError, match="x4"):
        net(torch.randn(1, 4, 8, 8), 4)


def test_weights_created_in_inference_mode():
    """ComfyUI loads and runs nodes under torch.inference_mode()."""
    with torch.inference_mode():
        net = lua_core.LUANet(tiny_config(4)).eval()
        out = net(torch.randn(1, 4, 10, 10), 2)
        again = net(torch.randn(1, 4, 10, 10), 2)
    assert out.shape == again.shape == (1, 4, 20, 20)
