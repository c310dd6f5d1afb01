"""Inference engine: tiling, automatic tiles, OOM retry, progress, cancel."""
from __future__ import annotations

import pytest
import torch

import lua_core
from lua_core.engine import UpscaleCancelled, plan_tiles, run_network
from lua_core.engine.memory import auto_tile_size, bytes_per_pixel
from lua_core.model.tiling import count_tiles, feather_ramp, tile_spans
from tests.helpers import tiny_config

# Tiled vs untiled, random light-structure weights, 64-px tiles with 16-px overlap (measured:
# max 0.018, mean 4e-4 on outputs of mean magnitude 0.69): the stated tolerance.
TILE_MAX_TOL = 0.05
TILE_MEAN_TOL = 2e-3


@pytest.mark.parametrize("length,tile,overlap", [(10, 4, 1), (64, 32, 8), (33, 16, 4), (8, 16, 4), (100, 40, 39)])
def test_tiles_cover_everything_with_overlap(length, tile, overlap):
    spans = tile_spans(length, tile, overlap)
    covered = torch.zeros(length, dtype=torch.bool)
    for a, b in spans:
        covered[a:b] = True
        assert 0 <= a < b <= length and b - a <= max(tile, 1)
    assert covered.all()
    for (_, end), (start, _) in zip(spans, spans[1:]):
        assert end - start >= min(overlap, tile // 2)


def test_feather_ramps_sum_to_one_across_an_overlap():
    a = feather_ramp(32, 0, 8, torch.device("cpu"))
    b = feather_ramp(32, 8, 0, torch.device("cpu"))
    assert torch.allclose(a[-8:] + b[:8], torch.ones(8))
    assert (a > 0).all() and (b > 0).all()


@pytest.mark.slow
def test_tiled_matches_untiled_within_tolerance():
    torch.manual_seed(0)
    net = lua_core.LUANet(lua_core.LIGHT_CONFIG).eval()
    z = torch.randn(1, 16, 96, 96)
    with torch.inference_mode():
        full = net(z, 2)
        tiled = run_network(net, z, 2, tile_size=64, tile_overlap=16)
    diff = (tiled - full).abs()
    assert diff.max() < TILE_MAX_TOL and diff.mean() < TILE_MEAN_TOL
    # tiles that cover the whole latent are exactly the untiled pass
    with torch.inference_mode():
        assert torch.equal(run_network(net, z, 2, tile_size=96), full)


def test_tile_size_is_rounded_to_window_and_overlap_clamped():
    net = lua_core.LUANet(tiny_config(4))
    z = torch.zeros(2, 4, 100, 60)
    plan = plan_tiles(net, z, 2, tile_size=20, overlap=40, memory_budget=None)
    assert plan.shape == (24, 24) and plan.overlap == 12 and plan.batch_chunk == 1
    assert plan_tiles(net, z, 2, tile_size=0, overlap=None, memory_budget=None).tiled is False
    with pytest.raises(ValueError, match="tile_size"):
        plan_tiles(net, z, 2, tile_size=-1, overlap=None, memory_budget=None)


def test_auto_tile_follows_the_memory_budget():
    cfg = lua_core.LIGHT_CONFIG
    per_px = bytes_per_pixel(cfg, 4, torch.float32)
    cpu = torch.device("cpu")
    assert auto_tile_size(cfg, 4, 1, 64, 64, torch.float32, int(per_px * 64 * 64) + 1, cpu) == 0
    tile = auto_tile_size(cfg, 4, 1, 256, 256, torch.float32, int(per_px * 100 * 100), cpu)
    assert tile == 96  # largest window multiple whose square fits 100x100 pixels' worth
    assert auto_tile_size(cfg, 4, 1, 256, 256, torch.float32, 1, cpu) == 2 * cfg.window_size


class _OOMNet(lua_core.LUANet):
    """Raises an out-of-memory error for inputs above a pixel count, like a real allocator would."""

    limit = 24 * 24
    calls: list

    def forward(self, z, head=2, skip=True, **kwargs):
        self.calls.append(tuple(z.shape))
        if z.shape[0] * z.shape[-2] * z.shape[-1] > self.limit:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return super().forward(z, head, skip, **kwargs)


@pytest.mark.slow
def test_out_of_memory_retries_with_smaller_tiles():
    torch.manual_seed(0)
    net = _OOMNet(tiny_config(4)).eval()
    net.calls = []
    z = torch.randn(2, 4, 40, 40)
    with torch.inference_mode():
        out = run_network(net, z, 2, tile_size=0)
        ref = lua_core.LUANet.forward(net, z, 2)
    assert out.shape == (2, 4, 80, 80)
    assert net.calls[0] == (2, 4, 40, 40)
    assert max(s[-1] * s[-2] * s[0] for s in net.calls[-4:]) <= _OOMNet.limit
    assert (out - ref).abs().mean() < 0.05


def test_out_of_memory_gives_up_at_the_minimum_tile():
    net = _OOMNet(tiny_config(4)).eval()
    net.calls, net.limit = [], 1
    with pytest.raises(torch.OutOfMemoryError):
        run_network(net, torch.randn(1, 4, 40, 40), 2, tile_size=0)


@pytest.mark.slow
def test_progress_reports_every_tile():
    net = lua_core.LUANet(tiny_config(4)).eval()
    seen = []
    z = torch.randn(2, 4, 40, 40)
    with torch.inference_mode():
        run_network(net, z, 2, tile_size=16, tile_overlap=4, progress=lambda d, t: seen.append((d, t)))
    per_image = count_tiles(40, 40, 16, 4)
    total = 2 * per_image
    assert seen == [(i, total) for i in range(1, total + 1)]


def test_cancel_stops_promptly():
    net = lua_core.LUANet(tiny_config(4)).eval()
    calls = []

    def cancel():
        calls.append(1)
        return len(calls) > 3

    with pytest.raises(UpscaleCancelled), torch.inference_mode():
        run_network(net, torch.randn(1, 4, 64, 64), 2, tile_size=16, tile_overlap=4, cancel=cancel)
    assert len(calls) == 4  # stopped at the fourth tile of 25


def test_cancel_hook_may_raise_its_own_exception():
    class Interrupted(Exception):
        pass

    def cancel():
        raise Interrupted()

    net = lua_core.LUANet(tiny_config(4)).eval()
    with pytest.raises(Interrupted), torch.inference_mode():
        run_network(net, torch.randn(1, 4, 16, 16), 2, cancel=cancel)
