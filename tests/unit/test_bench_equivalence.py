"""Regression guards for the fast paths: caches, window kinds and tiling give the plain numbers.

Correctness only, never timing: every optimised path (inference gather/scatter with
four window kinds, cached bias and masks, channels-last trunk, even tiles, automatic
tile grids) is compared with the straightforward computation of the same weights.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import lua_core
from lua_core.bench.baseline import plain_forward, plain_shift_mask
from lua_core.engine import plan_tiles, run_network
from lua_core.engine.memory import auto_tile_shape, auto_tile_size, bytes_per_pixel
from lua_core.model import swin
from lua_core.model.tiling import pixel_overhead, run_tiled, tile_spans
from tests.helpers import tiny_config

TOL = 1e-4


def _paper_like(**kw) -> lua_core.LUAConfig:
    """The published structure (window 16, 12 heads, no skip), narrow enough for a unit test."""
    return lua_core.PAPER_CONFIG.replace(embed_dim=48, depths=(2,), num_heads=(12,), head_num_feat=32, **kw)


@pytest.mark.parametrize("cfg", [tiny_config(4), _paper_like(in_chans=4)], ids=["light-like", "paper-like"])
@pytest.mark.parametrize("size", [pytest.param((16, 16), marks=pytest.mark.slow),
                                  pytest.param((24, 40), marks=pytest.mark.slow),
                                  pytest.param((13, 35), marks=pytest.mark.slow), (8, 8)])
@pytest.mark.parametrize("scale", [2, 4])
def test_inference_path_matches_straightforward(cfg, size, scale):
    torch.manual_seed(0)
    net = lua_core.LUANet(cfg).eval()
    z = torch.randn(2, 4, *size) * 2
    with torch.inference_mode():
        fast = net(z, scale)
        plain = plain_forward(net, z, scale)
    assert fast.shape == plain.shape == (2, 4, size[0] * scale, size[1] * scale)
    assert fast.is_contiguous()
    assert (fast - plain).abs().max().item() < TOL


def test_autograd_path_matches_inference_path_and_plain():
    torch.manual_seed(1)
    net = lua_core.LUANet(tiny_config(4)).eval()
    z = torch.randn(1, 4, 24, 32)
    train_out = net(z, 2)  # autograd records: the roll/partition path
    assert train_out.requires_grad
    with torch.no_grad():
        fast = net(z, 2)
        plain = plain_forward(net, z, 2)
    assert (train_out.detach() - fast).abs().max() < TOL
    assert (fast - plain).abs().max() < TOL


@pytest.mark.parametrize("hw", [(8, 8), (16, 24), (32, 16)])
def test_block_inference_equals_roll_partition_per_block(hw):
    torch.manual_seed(2)
    for shifted in (False, True):
        blk = swin.SwinBlock(24, 3, 8, shifted=shifted, mlp_ratio=2.0, qkv_bias=True).eval()
        x = torch.randn(2, *hw, 24)
        with torch.no_grad():
            fast = blk._attention_inference(x)
            classic = blk._attention_autograd(x)
        assert (fast - classic).abs().max() < 1e-5


@pytest.mark.parametrize("length,window", [(8, 8), (16, 8), (48, 8), (32, 16), (64, 16)])
def test_shift_bands_reproduce_the_cyclic_roll(length, window):
    shift = window // 2
    rolled = torch.roll(torch.arange(length), -shift)
    for n, segments, kind in swin.shift_bands(length, window, shift):
        assert kind in (0, 1)
    # the bands, read in order, are exactly the rolled axis
    order = [i for _, segments, _ in swin.shift_bands(length, window, shift)
             for a, b, _ in segments for i in range(a, b)]
    assert order == rolled.tolist()


def test_window_kind_masks_match_the_per_window_masks():
    """The four cached kind patterns are the masks build_shift_mask gives at every resolution."""
    for h, w, ws in [(32, 48, 8), (16, 16, 8), (64, 32, 16)]:
        full = swin.build_shift_mask(h, w, ws, ws // 2)
        kinds = swin.cached_shift_mask(2 * ws, 2 * ws, ws, ws // 2, torch.device("cpu"), torch.float32)
        nh, nw = h // ws, w // ws
        for i in range(nh):
            for j in range(nw):
                kind = 2 * (i == nh - 1) + (j == nw - 1)
                assert torch.equal(full[i * nw + j], kinds[kind])
        assert torch.equal(full, plain_shift_mask(h, w, ws, ws // 2, torch.device("cpu")))


def test_caches_are_reused_and_repeat_runs_are_bit_identical():
    torch.manual_seed(3)
    net = lua_core.LUANet(tiny_config(4)).eval()
    z = torch.randn(1, 4, 24, 24)
    attn = net.layers[0].residual_group.blocks[1].attn
    with torch.inference_mode():
        first = net(z, 2)
        bias = attn.position_bias(torch.float32)
        assert attn.position_bias(torch.float32) is bias  # cached, not rebuilt
        second = net(z, 2)
    assert torch.equal(first, second)
    with torch.no_grad():  # an optimiser-style update must invalidate the cache
        attn.relative_position_bias_table.add_(1.0)
    with torch.inference_mode():
        assert attn.position_bias(torch.float32) is not bias
        third = net(z, 2)
        plain = plain_forward(net, z, 2)
    assert (third - plain).abs().max() < TOL


def test_compat_window_attention_forward_matches_attend():
    torch.manual_seed(4)
    attn = swin.WindowAttention(24, 8, 3).eval()
    x = torch.randn(2, 4, 64, 24)
    mask = swin.build_shift_mask(16, 16, 8, 4)
    with torch.no_grad():
        a = attn(x, mask)
        b = torch.stack([attn.attend(x[:, i], [2], [mask[i]]) for i in range(4)], 1)
        c = attn(x, None)
        d = attn.attend(x.reshape(8, 64, 24), [8], [None]).view(2, 4, 64, 24)
    assert (a - b).abs().max() < 1e-5 and (c - d).abs().max() < 1e-5


# ----------------------------------------------------------------------------- tiling


@settings(max_examples=200, deadline=None)
@given(length=st.integers(1, 300), tile=st.integers(2, 200), overlap=st.integers(0, 64),
       multiple=st.sampled_from([1, 8, 16]))
def test_even_tiles_cover_exactly_and_never_cost_more_than_the_stride_plan(length, tile, overlap, multiple):
    overlap = min(overlap, tile // 2)
    spans = tile_spans(length, tile, overlap, multiple)
    covered = torch.zeros(length, dtype=torch.bool)
    for a, b in spans:
        assert 0 <= a < b <= length and b - a <= max(tile, 1)
        covered[a:b] = True
    assert covered.all()
    sizes = {b - a for a, b in spans}
    assert len(sizes) == 1  # evenly sized
    for (a0, b0), (a1, _) in zip(spans, spans[1:]):
        assert b0 - a1 >= overlap
    if tile < length:
        legacy = list(range(0, length - tile, max(tile - overlap, 1))) + [length - tile]
        assert len(spans) == len(legacy)
        assert sum(b - a for a, b in spans) <= len(legacy) * tile


def test_even_tiles_cut_the_example_overhead():
    # 128-px latent, tile 64, overlap 16, window 8: 3x3 tiles of 56 instead of 64
    assert tile_spans(128, 64, 16, 8) == [(0, 56), (36, 92), (72, 128)]
    assert pixel_overhead(128, 128, 64, 16, 8) == pytest.approx((3 * 56 / 128) ** 2)


def test_blending_is_exact_for_a_pointwise_upscale():
    """With a position-independent fn the feathered tiles must rebuild the untiled output."""
    x = torch.randn(2, 3, 50, 37)
    fn = lambda t: F.interpolate(t, scale_factor=2, mode="nearest") * 3 - 1  # noqa: E731
    full = fn(x)
    for tile, overlap in [((16, 24), 4), (20, 8), (32, 0)]:
        tiled = run_tiled(fn, x, 2, tile, overlap, multiple=8)
        assert (tiled - full).abs().max() < 1e-5


@pytest.mark.slow
def test_tiled_network_within_tolerance_and_full_tiles_exact():
    torch.manual_seed(5)
    net = lua_core.LUANet(tiny_config(4)).eval()
    z = torch.randn(1, 4, 48, 40)
    with torch.inference_mode():
        full = net(z, 2)
        assert torch.equal(run_network(net, z, 2, tile_size=48), full)
        assert torch.equal(run_network(net, z, 2, tile_size=0, memory_budget=1 << 40), full)
        tiled = run_network(net, z, 2, tile_size=24, tile_overlap=8)
    assert (tiled - full).abs().mean() < 0.05


@pytest.mark.parametrize("side", [48, 64, 96, 128, 200])
def test_auto_grid_fits_the_budget_and_beats_square_tiles(side):
    cfg = lua_core.LIGHT_CONFIG
    cpu = torch.device("cpu")
    per_px = bytes_per_pixel(cfg, 4, torch.float32)
    budget = int(per_px * side * side)
    th, tw = auto_tile_shape(cfg, 4, 1, 256, 256, torch.float32, budget, cpu, 8)
    assert th and tw
    pad = lambda n: -(-n // 8) * 8  # noqa: E731
    largest_h = max(b - a for a, b in tile_spans(256, th, 8, 8))
    largest_w = max(b - a for a, b in tile_spans(256, tw, 8, 8))
    assert pad(largest_h) * pad(largest_w) * per_px <= budget
    square = auto_tile_size(cfg, 4, 1, 256, 256, torch.float32, budget, cpu)
    assert pixel_overhead(256, 256, (th, tw), 8, 8) <= pixel_overhead(256, 256, square, 8, 8) + 1e-9
    assert auto_tile_shape(cfg, 4, 1, 64, 64, torch.float32, 1 << 40, cpu, 8) == (0, 0)


@pytest.mark.slow
def test_automatic_plan_uses_one_window_of_overlap_and_runs():
    """Below what even the chunked pass needs, automatic tiles (each run chunked) overlap by one window."""
    torch.manual_seed(6)
    net = lua_core.LUANet(tiny_config(4)).eval()
    z = torch.randn(1, 4, 128, 128)
    per_px = bytes_per_pixel(net.config, 2, torch.float32)
    budget = int(per_px * 128 * 128 * 0.2)
    plan = plan_tiles(net, z, 2, 0, None, budget)
    assert plan.tiled and plan.overlap == net.config.window_size and plan.chunks is not None
    assert pixel_overhead(128, 128, plan.shape, plan.overlap, 8) <= 1.125
    with torch.inference_mode():
        out = run_network(net, z, 2, memory_budget=budget)
        full = net(z, 2)
    assert (out - full).abs().mean() < 0.05
