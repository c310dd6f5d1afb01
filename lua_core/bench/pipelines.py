"""Timed run of one pipeline (A-E of :mod:`.cli`), stage by stage, in a case process."""
from __future__ import annotations

import gc
from functools import partial
from typing import Any, Callable

import torch
import torch.nn.functional as F

from ..engine.runner import run_network
from ..model import LUANet
from ..toolkit.clock import timed
from .models import decoder_for, family_channels, lua_config
from .timing import peak_rss_mb, record_device_peak, reset_device_peak, spec_device

Stage = tuple[str, Callable[[Any], Any]]


def run_pipeline(spec: dict) -> dict:
    """Time one pipeline stage by stage; returns per-stage and total samples."""
    device, dtype = spec_device(spec)
    fam, s, lat = spec["family"], spec["scale"], spec["base"] // 8
    torch.manual_seed(0)
    decoder = decoder_for(fam, spec.get("tiny", False)).to(device, dtype)
    z = torch.randn(1, family_channels(fam), lat, lat, device=device, dtype=dtype)
    if spec["pipeline"] == "D":
        z = torch.randn(1, family_channels(fam), lat * s, lat * s, device=device, dtype=dtype)
    stages = pipeline_stages(spec, decoder, device, dtype)
    rss_built = peak_rss_mb()
    reset_device_peak(device)
    gc.collect()
    samples, totals = time_stages(stages, z, spec["warmup"], spec["repeats"], device)
    out = {"stages": samples, "total": totals, "rss_after_build_mb": rss_built, "peak_rss_mb": peak_rss_mb()}
    record_device_peak(out, device)
    return out


def pipeline_stages(spec: dict, decoder: torch.nn.Module, device: torch.device, dtype: torch.dtype) -> list[Stage]:
    """The named stages of ``spec["pipeline"]``, each a function of the previous stage's output."""
    name, s = spec["pipeline"], spec["scale"]
    if name == "A":
        return [("decode_base", decoder)]
    if name == "D":
        return [("decode_target", decoder)]
    if name == "B":
        lua = _network(spec, family_channels(spec["family"]), device, dtype)
        return [("lua", _network_stage(lua, s, spec.get("compile", False))), ("decode_target", decoder)]
    if name == "C":
        sr = _network(spec, 3, device, dtype)
        return [("decode_base", decoder), ("pixel_sr", _network_stage(sr, s, spec.get("compile", False)))]
    if name == "E-bicubic":
        return [("decode_base", decoder), ("bicubic", lambda img: _bicubic(img, s))]
    if name == "E-lanczos":
        return [("decode_base", decoder), ("lanczos", lambda img: _lanczos(img, s))]
    raise ValueError(f"unknown pipeline {name!r}")


def time_stages(stages: list[Stage], z: torch.Tensor, warmup: int, repeats: int,
                device: torch.device) -> tuple[dict[str, list[float]], list[float]]:
    """Per-stage and whole-pipeline seconds of the ``repeats`` passes after ``warmup`` ones."""
    samples: dict[str, list[float]] = {n: [] for n, _ in stages}
    totals: list[float] = []
    with torch.inference_mode():
        for i in range(warmup + repeats):
            times = _one_pass(stages, z, device)
            if i >= warmup:
                for (name, _), dt in zip(stages, times):
                    samples[name].append(dt)
                totals.append(sum(times))
    return samples, totals


def _one_pass(stages: list[Stage], z: torch.Tensor, device: torch.device) -> list[float]:
    x = z
    times = []
    for _, fn in stages:
        x, dt = timed(partial(fn, x), device)
        times.append(dt)
    return times


def _network(spec: dict, channels: int, device: torch.device, dtype: torch.dtype) -> LUANet:
    net = LUANet(lua_config(spec["config"], channels, spec.get("tiny", False))).eval().requires_grad_(False)
    return net.to(device, dtype)


def _network_stage(net: torch.nn.Module, scale: int, compile_: bool) -> Callable[[Any], Any]:
    """``net`` at ``scale``: compiled and called directly, or through the engine without tiling."""
    if compile_:
        fwd = torch.compile(net)
        return lambda t: fwd(t, scale)
    return lambda t: run_network(net, t, scale, tile_size=0)


def _bicubic(img: torch.Tensor, scale: int) -> torch.Tensor:
    return F.interpolate(img, scale_factor=scale, mode="bicubic", align_corners=False).clamp_(-1, 1)


def _lanczos(img: torch.Tensor, scale: int) -> torch.Tensor:
    import numpy as np
    from PIL import Image

    arr = (img[0].float().clamp(-1, 1).add(1).mul(127.5)).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    pil = Image.fromarray(arr)
    out = pil.resize((pil.width * scale, pil.height * scale), Image.Resampling.LANCZOS)
    return torch.from_numpy(np.asarray(out).copy()).permute(2, 0, 1)[None]
