"""The chunked (memory-bounded) pass: same numbers as the plain pass, chosen by the automatic mode.

Correctness only: the peak-memory reduction is measured by ``python -m lua_core.bench.memory
--chunking`` (child processes, peak RSS), not asserted here.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import lua_core
from lua_core.engine import plan_tiles, run_network
from lua_core.engine.memory import HEAD_MIN_ROWS, MARGIN, bytes_per_pixel, chunk_plan, footprint, plan_memory
from lua_core.model.streaming import Chunks, add_bicubic_rows, row_bands
from lua_core.model.swin import shift_bands, split_bands
from tests.helpers import tiny_config

EXACT_TOL = 1e-5  # fp32; measured 0 (bit-identical) on CPU


def _paper_like(**kw) -> lua_core.LUAConfig:
    """The published structure (window 16, 12 heads, no skip), narrow enough for a unit test."""
    return lua_core.PAPER_CONFIG.replace(embed_dim=48, depths=(2,), num_heads=(12,), head_num_feat=32, **kw)


CONFIGS = {
    "light-like": tiny_config(4),
    "paper-like": _paper_like(in_chans=4),
    "normalised-no-skip": tiny_config(4, skip="none", in_scale=0.7, in_shift=0.2),
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
@pytest.mark.parametrize("size", [(24, 40), (13, 35), (33, 17), (8, 8)])
@pytest.mark.parametrize("scale", [2, 4])
def test_chunked_pass_equals_plain_pass(one_torch_thread, name, size, scale):
    torch.manual_seed(0)
    net = lua_core.LUANet(CONFIGS[name]).eval()
    z = torch.randn(2, 4, *size) * 2
    w = -(-size[1] // net.config.window_size) * net.config.window_size
    with torch.inference_mode():
        full = net(z, scale)
        # one window / one row per chunk, a few windows, a few rows, odd sizes, everything at once
        n = net.config.window_size ** 2
        for chunks in (Chunks(1, 1), Chunks(2 * n + 5, 3), Chunks(3 * w * net.config.window_size, 2 * w),
                       Chunks(10 ** 9, 10 ** 9)):
            out = net(z, scale, chunks=chunks)
            assert out.shape == full.shape and out.dtype == full.dtype and out.is_contiguous()
            assert (out - full).abs().max().item() <= EXACT_TOL, chunks


def test_chunks_are_ignored_while_autograd_records():
    torch.manual_seed(1)
    net = lua_core.LUANet(tiny_config(4)).eval()
    z = torch.randn(1, 4, 16, 24)
    out = net(z, 2, chunks=Chunks(1, 1))
    assert out.requires_grad
    with torch.no_grad():
        assert (out.detach() - net(z, 2)).abs().max() <= EXACT_TOL


@pytest.mark.parametrize("length,window,shift", [(64, 8, 4), (64, 8, 0), (8, 8, 4), (48, 16, 8), (40, 8, 4)])
@pytest.mark.parametrize("max_windows", [1, 2, 3, 100])
def test_window_row_chunks_cover_every_row_once(length, window, shift, max_windows):
    bands = shift_bands(length, window, shift)
    chunks = split_bands(bands, max_windows, window)
    seen = torch.zeros(length, dtype=torch.int64)
    total = 0
    for chunk in chunks:
        assert sum(n for n, _, _ in chunk) <= max(max_windows, 1)
        for n, segs, kind in chunk:
            total += n
            for a, b, off in segs:
                seen[a:b] += 1
                assert (b - a) % n == 0
    assert total == length // window
    assert (seen == 1).all()


def test_row_bands_cover_the_axis():
    assert row_bands(10, 4) == [(0, 4), (4, 8), (8, 10)]
    assert row_bands(3, 0) == [(0, 1), (1, 2), (2, 3)]


@pytest.mark.parametrize("rows", [1, 2, 3, 7, 100])
def test_banded_bicubic_equals_the_full_interpolation(rows):
    x = torch.randn(2, 3, 11, 9)
    for scale in (2, 4):
        out = torch.zeros(2, 3, 11 * scale, 9 * scale)
        add_bicubic_rows(out, x, scale, rows)
        full = F.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False)
        assert (out - full).abs().max() <= EXACT_TOL


@pytest.mark.parametrize("rows", [1, 2, 5, 40])
def test_streamed_head_equals_the_head(rows):
    torch.manual_seed(2)
    net = lua_core.LUANet(tiny_config(4)).eval()
    feats = torch.randn(1, 24, 13, 10).contiguous(memory_format=torch.channels_last)
    for scale in (2, 4):
        head = net.heads[f"x{scale}"]
        bands: list[tuple[int, torch.Tensor]] = []
        with torch.inference_mode():
            full = head(feats)
            head.forward_banded(feats, rows, lambda t, start: bands.append((start, t.clone())))
        starts = [s for s, _ in bands]
        assert starts == sorted(starts) and starts[0] == 0
        out = torch.cat([t for _, t in bands], 2)
        assert out.shape == full.shape and (out - full).abs().max() <= EXACT_TOL


# --- planning ---------------------------------------------------------------------------------------

def test_automatic_mode_prefers_one_chunked_pass_and_gives_the_plain_numbers():
    torch.manual_seed(3)
    net = lua_core.LUANet(tiny_config(4)).eval()
    z = torch.randn(1, 4, 64, 48)
    per_px = bytes_per_pixel(net.config, 4, torch.float32)
    for frac in (0.5, 0.3):
        budget = int(per_px * 64 * 48 * frac)
        plan = plan_tiles(net, z, 4, 0, None, budget)
        assert not plan.tiled and plan.chunks is not None and plan.batch_chunk == 1
        with torch.inference_mode():
            out = run_network(net, z, 4, memory_budget=budget)
            full = net(z, 4)
        assert (out - full).abs().max() <= EXACT_TOL
    # fits: the plain pass; explicit tiles: plain tiles as before
    assert plan_tiles(net, z, 4, 0, None, int(per_px * 64 * 48) + 1).chunks is None
    explicit = plan_tiles(net, z, 4, 32, 8, int(per_px * 64 * 48 * 0.3))
    assert explicit.shape == (32, 32) and explicit.chunks is None


@pytest.mark.parametrize("cfg", [lua_core.LIGHT_CONFIG, lua_core.PAPER_CONFIG], ids=["light", "paper"])
@pytest.mark.parametrize("scale", [2, 4])
@pytest.mark.parametrize("side", [64, 128, 256])
def test_chunk_plan_fits_the_budget_with_the_largest_chunks(cfg, scale, side):
    """Half and a quarter of the plain pass's estimate fit one chunked pass (no tiles) for these configs."""
    cpu = torch.device("cpu")
    fp = footprint(cfg, scale)
    assert fp.trunk_keep < fp.plain and fp.head_keep < fp.plain
    area = side * side
    for frac in (0.5, 0.25):
        budget = int(bytes_per_pixel(cfg, scale, torch.float32) * area * frac)
        chunks = chunk_plan(cfg, scale, 1, side, side, torch.float32, budget, cpu)
        assert chunks is not None, frac  # both budgets fit one chunked pass for these configs
        floats = budget / (4 * MARGIN)
        assert chunks.trunk >= max(side, cfg.window_size ** 2)
        assert fp.trunk_keep * area + fp.trunk_chunk * chunks.trunk <= floats
        assert fp.head_keep * area + fp.head_chunk * chunks.head_rows(side) * side <= floats
        # a bigger budget never gives smaller chunks
        more = chunk_plan(cfg, scale, 1, side, side, torch.float32, budget * 2, cpu)
        assert more.trunk >= chunks.trunk and more.head >= chunks.head
    assert plan_memory(cfg, scale, 1, side, side, torch.float32, 1 << 50, cpu, 8) == (0, 0, None)


def test_below_the_chunked_floor_tiles_run_chunked():
    cfg = lua_core.LIGHT_CONFIG
    cpu = torch.device("cpu")
    fp = footprint(cfg, 4)
    floor = (fp.head_keep * 128 * 128 + fp.head_chunk * HEAD_MIN_ROWS * 128) * 4 * MARGIN
    th, tw, chunks = plan_memory(cfg, 4, 1, 128, 128, torch.float32, int(floor * 0.9), cpu, 8)
    assert th and tw and chunks is not None


class _ChunkAwareOOMNet(lua_core.LUANet):
    """Runs out of memory on the plain pass over a large input, like a tight allocator would."""

    calls: list

    def forward(self, z, head=2, skip=True, **kwargs):
        self.calls.append((tuple(z.shape), kwargs.get("chunks")))
        if kwargs.get("chunks") is None and z.shape[-2] * z.shape[-1] > 32 * 32:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return super().forward(z, head, skip, **kwargs)


def test_out_of_memory_turns_the_plain_pass_chunked_before_tiling():
    torch.manual_seed(4)
    net = _ChunkAwareOOMNet(tiny_config(4)).eval()
    net.calls = []
    z = torch.randn(1, 4, 48, 48)
    with torch.inference_mode():
        out = run_network(net, z, 2, tile_size=0)
        full = lua_core.LUANet.forward(net, z, 2)
    assert [c is None for _, c in net.calls] == [True, False]
    assert net.calls[1][0] == (1, 4, 48, 48)  # still one pass over the whole latent
    assert (out - full).abs().max() <= EXACT_TOL
