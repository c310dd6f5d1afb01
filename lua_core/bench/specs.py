"""Presets and case specs: what one benchmark run measures, one JSON-able dict per case."""
from __future__ import annotations

import argparse
from typing import Any

import torch

from ..engine.memory import bytes_per_pixel
from .models import lua_config

PRESETS: dict[str, dict[str, Any]] = {
    # CPU-feasible: 128->256 (the 512->1024 and 1024->2048 cases at 1/4 and 1/8 side),
    # 128->512 (1024->4096 at 1/8); the paper config's pixel SR only at the smallest size.
    "cpu": dict(sizes=[(128, 2), (128, 4), (256, 2)], paper_sizes=[(128, 2)], impl_latents=[32, 64],
                tiling=[(128, 4, (0.5, 0.25), True), (256, 2, (0.6, 0.3), False)], warmup=1, repeats=2, rounds=2),
    "quick": dict(sizes=[(64, 2)], paper_sizes=[], impl_latents=[16], tiling=[(64, 4, (0.5,), True)],
                  warmup=1, repeats=1, rounds=1),
    # GPU: the sizes themselves.
    "gpu": dict(sizes=[(512, 2), (1024, 2), (1024, 4)], paper_sizes=[(512, 2), (1024, 2)],
                impl_latents=[128], tiling=[(128, 4, (0.5, 0.25), True), (512, 2, (0.6, 0.3), False)],
                warmup=2, repeats=5, rounds=2),
}


def build_cases(args: argparse.Namespace) -> list[dict]:
    """All case specs of a run, in the order of one round."""
    pre = PRESETS[args.preset]
    common = dict(device=args.device, dtype=args.dtype, threads=args.threads, tiny=args.tiny,
                  warmup=args.warmup if args.warmup is not None else pre["warmup"],
                  repeats=args.repeats if args.repeats is not None else pre["repeats"])
    configs = args.configs.split(",")
    cases: list[dict] = []
    if "pipelines" in args.groups:
        cases += pipeline_cases(pre, args.families.split(","), configs, args.compile, common)
    if "impl" in args.groups:
        cases += impl_cases(pre, configs, args.compile, common)
    if "tiling" in args.groups:
        cases += tiling_cases(pre, args.tiny, args.dtype, common)
    return cases


def pipeline_cases(pre: dict, families: list[str], configs: list[str], compile_: bool, common: dict) -> list[dict]:
    """Pipelines A, D, E at every size, B and C per config (the paper config's C only at its sizes)."""
    paper_sizes = [tuple(x) for x in pre["paper_sizes"]]
    cases: list[dict] = []
    for fam in families:
        for base, scale in pre["sizes"]:
            key = dict(kind="pipeline", family=fam, base=base, scale=scale, **common)
            names = ["A", "D", "E-bicubic"] + (["E-lanczos"] if _has_pil() else [])
            cases += [dict(key, pipeline=p, config=None) for p in names]
            for cfg in configs:
                cases.append(dict(key, pipeline="B", config=cfg, compile=compile_))
                if cfg != "paper" or (base, scale) in paper_sizes:
                    cases.append(dict(key, pipeline="C", config=cfg, compile=compile_))
    return cases


def impl_cases(pre: dict, configs: list[str], compile_: bool, common: dict) -> list[dict]:
    """Our network against the straightforward implementation, per config and latent size."""
    return [dict(kind="impl", config=cfg, latent=lat, scale=2, compile=compile_, **common)
            for cfg in configs for lat in pre["impl_latents"]]


def tiling_cases(pre: dict, tiny: bool, dtype: str, common: dict) -> list[dict]:
    """Untiled, automatic (fitting and under tight budgets) and explicit tiling of the light config."""
    cases: list[dict] = []
    for n, s, fracs, explicit in pre["tiling"]:
        per_px = bytes_per_pixel(lua_config("light", 16, tiny), s, getattr(torch, dtype))
        key = dict(kind="tiling", config="light", latent=n, scale=s, **common)
        cases.append(dict(key, case="untiled", tile=0, overlap=None, budget=None))
        cases.append(dict(key, case="auto (fits: untiled)", tile=0, overlap=None, budget=None))
        for frac in fracs:  # budgets that force the automatic plan to tile
            cases.append(dict(key, case=f"auto, budget {frac:g}x untiled", tile=0, overlap=None,
                              budget=int(per_px * n * n * frac)))
        if explicit:
            cases.append(dict(key, case="explicit tile 64 / overlap 16", tile=min(64, n // 2), overlap=16,
                              budget=None))
    return cases


def _has_pil() -> bool:
    try:
        import PIL  # noqa: F401
    except ImportError:
        return False
    return True


def case_key(spec: dict) -> str:
    """The case's name in progress lines, results and reports."""
    if spec["kind"] == "pipeline":
        cfg = f"/{spec['config']}" if spec.get("config") else ""
        return f"pipeline {spec['family']} {spec['base']}x{spec['scale']} {spec['pipeline']}{cfg}"
    if spec["kind"] == "impl":
        return f"impl {spec['config']} latent{spec['latent']} x{spec['scale']}"
    return f"tiling {spec['config']} latent{spec['latent']} x{spec['scale']} {spec['case']}"
