"""Timed runs of the network alone in a case process: against the straightforward implementation, and tiled."""
from __future__ import annotations

from typing import Callable

import torch

from ..engine.planning import TilePlan, plan_tiles
from ..engine.runner import run_network
from ..model import LUANet
from ..model.tiling import count_tiles, pixel_overhead
from ..toolkit.clock import timed
from .baseline import plain_forward
from .models import lua_config
from .timing import peak_rss_mb, record_device_peak, reset_device_peak, spec_device


def _light_input(spec: dict) -> tuple[LUANet, torch.Tensor]:
    """The spec's 16-channel network and a random square latent of ``spec["latent"]`` px (seeded)."""
    device, dtype = spec_device(spec)
    torch.manual_seed(0)
    net = LUANet(lua_config(spec["config"], 16, spec.get("tiny", False))).eval().requires_grad_(False).to(device, dtype)
    z = torch.randn(1, 16, spec["latent"], spec["latent"], device=device, dtype=dtype)
    return net, z


def run_impl(spec: dict) -> dict:
    """Our network vs the straightforward implementation (alternating, same process, same input)."""
    device, _ = spec_device(spec)
    net, z = _light_input(spec)
    s = spec["scale"]
    fns: dict[str, Callable[[], torch.Tensor]] = {"ours": lambda: net(z, s), "plain": lambda: plain_forward(net, z, s)}
    if spec.get("compile", False):
        compiled = torch.compile(net)
        fns["ours_compiled"] = lambda: compiled(z, s)
    samples: dict[str, list[float]] = {k: [] for k in fns}
    with torch.inference_mode():
        outs = {k: f() for k, f in fns.items()}  # warm-up (and compilation)
        for _ in range(spec["warmup"] - 1):
            for f in fns.values():
                f()
        for _ in range(spec["repeats"]):
            for k, f in fns.items():
                samples[k].append(timed(f, device)[1])
    ref = outs["plain"].float()
    diffs = {k: float((v.float() - ref).abs().max()) for k, v in outs.items() if k != "plain"}
    return {"samples": samples, "max_abs_diff": diffs, "output_abs_max": float(ref.abs().max()),
            "peak_rss_mb": peak_rss_mb()}


def run_tiling(spec: dict) -> dict:
    """One upscale through the engine with a tiling option; peak memory first, accuracy after."""
    device, _ = spec_device(spec)
    net, z = _light_input(spec)
    n, s = spec["latent"], spec["scale"]
    kw = dict(tile_size=spec["tile"], tile_overlap=spec["overlap"], memory_budget=spec["budget"])
    plan = plan_tiles(net, z, s, spec["tile"], spec["overlap"], spec["budget"])
    rss_built = peak_rss_mb()
    reset_device_peak(device)
    samples = []
    with torch.inference_mode():
        for i in range(spec["warmup"] + spec["repeats"]):
            out, dt = timed(lambda: run_network(net, z, s, **kw), device)
            if i >= spec["warmup"]:
                samples.append(dt)
        result = {"samples": samples, "rss_after_build_mb": rss_built, "peak_rss_mb": peak_rss_mb(),
                  "plan": plan_summary(plan, n, net.config.window_size)}
        record_device_peak(result, device)
        if plan.tiled or plan.chunks is not None:
            ref = net(z, s)
            result["max_abs_diff_vs_untiled"] = float((out - ref).abs().max())
            result["mean_abs_diff_vs_untiled"] = float((out - ref).abs().mean())
    return result


def plan_summary(plan: TilePlan, n: int, window: int) -> dict:
    """Tile shape, overlap, tile count, pixel factor and chunking of ``plan`` on an ``n`` x ``n`` latent."""
    chunks = None if plan.chunks is None else {"trunk_px": plan.chunks.trunk, "head_rows": plan.chunks.head_rows(n)}
    return {"tile": list(plan.shape) if plan.tiled else 0, "overlap": plan.overlap,
            "tiles": count_tiles(n, n, plan.shape, plan.overlap, window) if plan.tiled else 1,
            "pixel_overhead": pixel_overhead(n, n, plan.shape, plan.overlap, window) if plan.tiled else 1.0,
            "chunks": chunks}
