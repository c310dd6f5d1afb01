"""Speed and memory of LUA against the alternatives: ``python -m lua_core.bench``.

Pipelines (batch 1), for a base image of ``P`` px and a factor ``s`` (latent side ``P/8``):

* **A** decode at base size (the cost paid anyway);
* **B** LUA x``s`` on the latent, then decode at ``sP`` (the LUA path);
* **C** decode at base size, then pixel-space SR x``s`` with the same SwinIR trunk on RGB;
* **D** decode at ``sP`` alone (what native high-resolution generation pays to decode);
* **E** decode at base size, then bicubic (``E-bicubic``) or Lanczos (``E-lanczos``, Pillow) resize.

The decoder is the real AutoencoderKL decoder of the family (:mod:`.vae_decoder`), the
LUA and SR networks are :class:`~lua_core.model.LUANet` with the ``light`` or ``paper``
config; all weights are random (timing does not depend on their values).  LUA runs
through the engine (``run_network``, automatic tiling) under ``torch.inference_mode``.

Also measured: our network against the straightforward implementation of the same
config (:mod:`.baseline`, same output within 1e-4), the tiled path against untiled,
and multiply-add counts of every pipeline at the issue's full sizes (meta tensors, no
compute) so CPU-sized timings can be related to 512->1024 / 1024->2048 / 1024->4096.

Every case runs in its own child process (peak RSS is that process's high-water mark,
weights and imports included; on CUDA ``max_memory_allocated``).  Each child warms up,
then times ``--repeats`` runs; ``--rounds`` rounds of all cases are interleaved and the
median over all timed runs is reported.  Results: JSON, Markdown and an SVG plot (plus a
PNG when matplotlib happens to be importable) in ``--out``.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional

import torch
import torch.nn.functional as F

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = Path("docs/benchmarks")
# The issue's sizes: (base px, factor).  CPU runs use smaller bases; ratios are reported.
FULL_SIZES = ((512, 2), (1024, 2), (1024, 4))
PRESETS: dict[str, dict[str, Any]] = {
    # CPU-feasible: 128->256 (the 512->1024 and 1024->2048 cases at 1/4 and 1/8 side),
    # 128->512 (1024->4096 at 1/8); the paper config's pixel SR only at the smallest size.
    "cpu": dict(sizes=[(128, 2), (128, 4), (256, 2)], paper_sizes=[(128, 2)], impl_latents=[32, 64],
                tiling=[(128, 4, (0.5, 0.25), True), (256, 2, (0.6, 0.3), False)], warmup=1, repeats=2, rounds=2),
    "quick": dict(sizes=[(64, 2)], paper_sizes=[], impl_latents=[16], tiling=[(64, 4, (0.5,), True)],
                  warmup=1, repeats=1, rounds=1),
    # GPU: the issue's sizes themselves.
    "gpu": dict(sizes=[(512, 2), (1024, 2), (1024, 4)], paper_sizes=[(512, 2), (1024, 2)],
                impl_latents=[128], tiling=[(128, 4, (0.5, 0.25), True), (512, 2, (0.6, 0.3), False)],
                warmup=2, repeats=5, rounds=2),
}


# ----------------------------------------------------------------------------- models

def lua_config(name: str, channels: int, tiny: bool = False):
    """The ``light``/``paper`` preset for ``channels`` latent channels (``tiny``: a very small stand-in)."""
    from ..model import preset

    cfg = preset(name).replace(in_chans=channels)
    if tiny:
        cfg = cfg.replace(embed_dim=24, depths=(2,), num_heads=(3,), head_num_feat=16,
                          window_size=min(cfg.window_size, 8))
    return cfg


def decoder_for(family: str, tiny: bool = False):
    """The family's KL decoder (``tiny``: 16-wide blocks, for the harness's own test)."""
    from .vae_decoder import DecoderConfig, KLDecoder, decoder_config

    cfg = decoder_config(family)
    if tiny:
        cfg = DecoderConfig(latent_channels=cfg.latent_channels, block_out_channels=(16, 16, 16, 16),
                            norm_groups=8, post_quant_conv=cfg.post_quant_conv)
    return KLDecoder(cfg).eval().requires_grad_(False)


def family_channels(family: str) -> int:
    from ..families import get_family

    return get_family(family).model_channels


# ----------------------------------------------------------------------------- timing helpers

def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _lanczos(img: torch.Tensor, scale: int) -> torch.Tensor:
    from PIL import Image

    arr = (img[0].float().clamp(-1, 1).add(1).mul(127.5)).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    pil = Image.fromarray(arr)
    out = pil.resize((pil.width * scale, pil.height * scale), Image.Resampling.LANCZOS)
    return torch.from_numpy(__import__("numpy").asarray(out).copy()).permute(2, 0, 1)[None]


def _maybe_compile(module: torch.nn.Module, enabled: bool) -> Callable:
    return torch.compile(module) if enabled else module


# ----------------------------------------------------------------------------- case runners (child side)

def run_pipeline(spec: dict) -> dict:
    """Time one pipeline stage by stage; returns per-stage and total samples."""
    from ..engine.runner import run_network
    from ..model import LUANet

    device = torch.device(spec["device"])
    dtype = getattr(torch, spec["dtype"])
    tiny = spec.get("tiny", False)
    fam, P, s, name = spec["family"], spec["base"], spec["scale"], spec["pipeline"]
    lat = P // 8
    torch.manual_seed(0)
    decoder = decoder_for(fam, tiny).to(device, dtype)
    stages: list[tuple[str, Callable[[Any], Any]]] = []
    z = torch.randn(1, family_channels(fam), lat, lat, device=device, dtype=dtype)
    if name == "B":
        lua = LUANet(lua_config(spec["config"], family_channels(fam), tiny)).eval().requires_grad_(False)
        lua = lua.to(device, dtype)
        fwd = _maybe_compile(lua, spec.get("compile", False))
        if spec.get("compile", False):
            stages.append(("lua", lambda t: fwd(t, s)))
        else:
            stages.append(("lua", lambda t: run_network(lua, t, s, tile_size=None)))
        stages.append(("decode_target", decoder))
    elif name == "C":
        sr = LUANet(lua_config(spec["config"], 3, tiny)).eval().requires_grad_(False).to(device, dtype)
        fwd = _maybe_compile(sr, spec.get("compile", False))
        stages.append(("decode_base", decoder))
        if spec.get("compile", False):
            stages.append(("pixel_sr", lambda img: fwd(img, s)))
        else:
            stages.append(("pixel_sr", lambda img: run_network(sr, img, s, tile_size=None)))
    elif name == "A":
        stages.append(("decode_base", decoder))
    elif name == "D":
        z = torch.randn(1, family_channels(fam), lat * s, lat * s, device=device, dtype=dtype)
        stages.append(("decode_target", decoder))
    elif name == "E-bicubic":
        stages.append(("decode_base", decoder))
        stages.append(("bicubic", lambda img: F.interpolate(img, scale_factor=s, mode="bicubic",
                                                            align_corners=False).clamp_(-1, 1)))
    elif name == "E-lanczos":
        stages.append(("decode_base", decoder))
        stages.append(("lanczos", lambda img: _lanczos(img, s)))
    else:
        raise ValueError(f"unknown pipeline {name!r}")
    rss_built = _peak_rss_mb()
    samples: dict[str, list[float]] = {n: [] for n, _ in stages}
    totals: list[float] = []
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    gc.collect()
    with torch.inference_mode():
        for i in range(spec["warmup"] + spec["repeats"]):
            x = z
            total = 0.0
            for stage, fn in stages:
                _sync(device)
                t0 = time.perf_counter()
                x = fn(x)
                _sync(device)
                dt = time.perf_counter() - t0
                total += dt
                if i >= spec["warmup"]:
                    samples[stage].append(dt)
            if i >= spec["warmup"]:
                totals.append(total)
            del x
    out = {"stages": samples, "total": totals, "rss_after_build_mb": rss_built, "peak_rss_mb": _peak_rss_mb()}
    if device.type == "cuda":
        out["max_allocated_mb"] = torch.cuda.max_memory_allocated(device) / 2 ** 20
    return out


def run_impl(spec: dict) -> dict:
    """Our network vs the straightforward implementation (alternating, same process, same input)."""
    from ..model import LUANet
    from .baseline import plain_forward

    device = torch.device(spec["device"])
    dtype = getattr(torch, spec["dtype"])
    torch.manual_seed(0)
    net = LUANet(lua_config(spec["config"], 16, spec.get("tiny", False))).eval().requires_grad_(False).to(device, dtype)
    z = torch.randn(1, 16, spec["latent"], spec["latent"], device=device, dtype=dtype)
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
                _sync(device)
                t0 = time.perf_counter()
                f()
                _sync(device)
                samples[k].append(time.perf_counter() - t0)
    ref = outs["plain"].float()
    diffs = {k: float((v.float() - ref).abs().max()) for k, v in outs.items() if k != "plain"}
    return {"samples": samples, "max_abs_diff": diffs, "output_abs_max": float(ref.abs().max()),
            "peak_rss_mb": _peak_rss_mb()}


def run_tiling(spec: dict) -> dict:
    """One upscale through the engine with a tiling option; peak memory first, accuracy after."""
    from ..engine.runner import plan_tiles, run_network
    from ..engine.tiling import count_tiles, pixel_overhead
    from ..model import LUANet

    device = torch.device(spec["device"])
    dtype = getattr(torch, spec["dtype"])
    torch.manual_seed(0)
    net = LUANet(lua_config(spec["config"], 16, spec.get("tiny", False))).eval().requires_grad_(False).to(device, dtype)
    n, s = spec["latent"], spec["scale"]
    z = torch.randn(1, 16, n, n, device=device, dtype=dtype)
    kw = dict(tile_size=spec["tile"], tile_overlap=spec["overlap"], memory_budget=spec["budget"])
    plan = plan_tiles(net, z, s, spec["tile"], spec["overlap"], spec["budget"])
    win = net.config.window_size
    rss_built = _peak_rss_mb()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    samples = []
    with torch.inference_mode():
        for i in range(spec["warmup"] + spec["repeats"]):
            _sync(device)
            t0 = time.perf_counter()
            out = run_network(net, z, s, **kw)
            _sync(device)
            if i >= spec["warmup"]:
                samples.append(time.perf_counter() - t0)
        peak = _peak_rss_mb()
        chunks = None if plan.chunks is None else {"trunk_px": plan.chunks.trunk, "head_rows": plan.chunks.head_rows(n)}
        result = {"samples": samples, "rss_after_build_mb": rss_built, "peak_rss_mb": peak,
                  "plan": {"tile": list(plan.shape) if plan.tile else 0, "overlap": plan.overlap,
                           "tiles": count_tiles(n, n, plan.shape, plan.overlap, win) if plan.tile else 1,
                           "pixel_overhead": pixel_overhead(n, n, plan.shape, plan.overlap, win) if plan.tile else 1.0,
                           "chunks": chunks}}
        if device.type == "cuda":
            result["max_allocated_mb"] = torch.cuda.max_memory_allocated(device) / 2 ** 20
        if plan.tile or plan.chunks is not None:
            ref = net(z, s)
            result["max_abs_diff_vs_untiled"] = float((out - ref).abs().max())
            result["mean_abs_diff_vs_untiled"] = float((out - ref).abs().mean())
    return result


RUNNERS = {"pipeline": run_pipeline, "impl": run_impl, "tiling": run_tiling}


def run_spec(spec: dict) -> dict:
    if spec.get("threads"):
        torch.set_num_threads(int(spec["threads"]))
    return RUNNERS[spec["kind"]](spec)


def run_in_child(spec: dict, timeout: Optional[float] = None) -> dict:
    """Run one case in a fresh interpreter; returns its JSON result (or an ``error``)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO_ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    try:
        proc = subprocess.run([sys.executable, "-m", "lua_core.bench.harness", "--child", json.dumps(spec)],
                              capture_output=True, text=True, env=env, timeout=timeout, cwd=str(REPO_ROOT))
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout} s"}
    if proc.returncode != 0:
        return {"error": (proc.stderr or proc.stdout).strip()[-2000:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- plan

def legacy_pixel_overhead(length: int, tile: int, overlap: int) -> float:
    """1-D pixel factor of the previous tiling plan (stride ``tile - overlap``, clamped full last tile)."""
    if tile >= length:
        return 1.0
    starts = list(range(0, length - tile, max(tile - overlap, 1))) + [length - tile]
    return len(starts) * tile / length


def build_cases(args: argparse.Namespace) -> list[dict]:
    """All case specs of a run, in the order of one round."""
    pre = PRESETS[args.preset]
    common = dict(device=args.device, dtype=args.dtype, threads=args.threads, tiny=args.tiny,
                  warmup=args.warmup if args.warmup is not None else pre["warmup"],
                  repeats=args.repeats if args.repeats is not None else pre["repeats"])
    configs = args.configs.split(",")
    cases: list[dict] = []
    if "pipelines" in args.groups:
        for fam in args.families.split(","):
            for base, scale in pre["sizes"]:
                key = dict(kind="pipeline", family=fam, base=base, scale=scale, **common)
                names = ["A", "D", "E-bicubic"] + (["E-lanczos"] if _has_pil() else [])
                cases += [dict(key, pipeline=p, config=None) for p in names]
                for cfg in configs:
                    cases.append(dict(key, pipeline="B", config=cfg, compile=args.compile))
                    if cfg != "paper" or (base, scale) in [tuple(x) for x in pre["paper_sizes"]]:
                        cases.append(dict(key, pipeline="C", config=cfg, compile=args.compile))
    if "impl" in args.groups:
        for cfg in configs:
            for lat in pre["impl_latents"]:
                cases.append(dict(kind="impl", config=cfg, latent=lat, scale=2, compile=args.compile, **common))
    if "tiling" in args.groups:
        from ..engine.memory import bytes_per_pixel

        for n, s, fracs, explicit in pre["tiling"]:
            per_px = bytes_per_pixel(lua_config("light", 16, args.tiny), s, getattr(torch, args.dtype))
            key = dict(kind="tiling", config="light", latent=n, scale=s, **common)
            cases.append(dict(key, case="untiled", tile=0, overlap=None, budget=None))
            cases.append(dict(key, case="auto (fits: untiled)", tile=None, overlap=None, budget=None))
            for frac in fracs:  # budgets that force the automatic plan to tile
                cases.append(dict(key, case=f"auto, budget {frac:g}x untiled", tile=None, overlap=None,
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
    if spec["kind"] == "pipeline":
        cfg = f"/{spec['config']}" if spec.get("config") else ""
        return f"pipeline {spec['family']} {spec['base']}x{spec['scale']} {spec['pipeline']}{cfg}"
    if spec["kind"] == "impl":
        return f"impl {spec['config']} latent{spec['latent']} x{spec['scale']}"
    return f"tiling {spec['config']} latent{spec['latent']} x{spec['scale']} {spec['case']}"


# ----------------------------------------------------------------------------- multiply-add counts

def count_macs(config_name: str, family: str, sizes=FULL_SIZES, tiny: bool = False) -> list[dict]:
    """Multiply-adds (FlopCounterMode / 2, meta tensors) of every pipeline stage at ``sizes``."""
    from torch.utils.flop_counter import FlopCounterMode

    from ..model import LUANet

    with torch.device("meta"):
        dec = decoder_for(family, tiny)
        lua = LUANet(lua_config(config_name, family_channels(family), tiny)).eval()
        sr = LUANet(lua_config(config_name, 3, tiny)).eval()

    def macs(fn: Callable[[], Any]) -> float:
        with FlopCounterMode(display=False) as fc:
            fn()
        return fc.get_total_flops() / 2.0

    rows = []
    ch = family_channels(family)
    with torch.inference_mode():
        for base, s in sizes:
            lat = base // 8
            z = torch.empty(1, ch, lat, lat, device="meta")
            zt = torch.empty(1, ch, lat * s, lat * s, device="meta")
            img = torch.empty(1, 3, base, base, device="meta")
            a, d = macs(lambda: dec(z)), macs(lambda: dec(zt))
            up, px = macs(lambda: lua(z, s)), macs(lambda: sr(img, s))
            rows.append({"config": config_name, "family": family, "base": base, "scale": s, "A": a, "D": d,
                         "lua": up, "pixel_sr": px, "B": up + d, "C": a + px,
                         "C_over_B": (a + px) / (up + d), "lua_share_of_D": up / d})
    return rows


# ----------------------------------------------------------------------------- aggregation and reports

def _med(xs: list[float]) -> Optional[float]:
    return statistics.median(xs) if xs else None


def aggregate(cases: list[dict], results: dict[str, list[dict]]) -> list[dict]:
    """Merge the rounds of each case: medians over all timed runs, max of the peaks."""
    rows = []
    for spec in cases:
        key = case_key(spec)
        runs = [r for r in results.get(key, []) if "error" not in r]
        errors = [r["error"] for r in results.get(key, []) if "error" in r]
        row: dict[str, Any] = {"key": key, "spec": spec, "runs": len(runs), "errors": errors, "_raw": runs}
        if runs:
            row["peak_rss_mb"] = max(r["peak_rss_mb"] for r in runs)
            if any("max_allocated_mb" in r for r in runs):
                row["max_allocated_mb"] = max(r.get("max_allocated_mb", 0.0) for r in runs)
            if spec["kind"] == "pipeline":
                row["total_s"] = _med([t for r in runs for t in r["total"]])
                row["stages_s"] = {st: _med([t for r in runs for t in r["stages"][st]]) for st in runs[0]["stages"]}
                row["samples"] = len([t for r in runs for t in r["total"]])
                row["rss_after_build_mb"] = max(r["rss_after_build_mb"] for r in runs)
            elif spec["kind"] == "impl":
                row["median_s"] = {k: _med([t for r in runs for t in r["samples"][k]]) for k in runs[0]["samples"]}
                row["samples"] = len([t for r in runs for t in r["samples"]["ours"]])
                row["max_abs_diff"] = {k: max(r["max_abs_diff"][k] for r in runs) for k in runs[0]["max_abs_diff"]}
                row["output_abs_max"] = runs[0]["output_abs_max"]
                row["speedup"] = row["median_s"]["plain"] / row["median_s"]["ours"]
                if "ours_compiled" in row["median_s"]:
                    row["speedup_compiled"] = row["median_s"]["plain"] / row["median_s"]["ours_compiled"]
            else:
                row["median_s"] = _med([t for r in runs for t in r["samples"]])
                row["samples"] = len([t for r in runs for t in r["samples"]])
                row["plan"] = runs[0]["plan"]
                row["rss_after_build_mb"] = max(r["rss_after_build_mb"] for r in runs)
                for k in ("max_abs_diff_vs_untiled", "mean_abs_diff_vs_untiled"):
                    if k in runs[0]:
                        row[k] = runs[0][k]
        rows.append(row)
    return rows


def summarise(rows: list[dict]) -> dict:
    """The ratios the issue asks for, from the aggregated rows."""
    by = {r["key"]: r for r in rows}
    summary: dict[str, Any] = {"pipelines": [], "impl": [], "tiling": []}
    groups = sorted({(r["spec"]["family"], r["spec"]["base"], r["spec"]["scale"]) for r in rows
                     if r["spec"]["kind"] == "pipeline"}, key=lambda g: (g[0], g[1], g[2]))
    # decode timings pooled over every process that decoded the same latent size (A, C, E decode the
    # base; B, D the target): the decode is identical work wherever it runs, so pooling its samples
    # takes most of the load noise of a shared machine out of the composed ratios below
    pooled: dict[tuple[str, int], list[float]] = {}
    for r in rows:
        sp = r["spec"]
        if sp["kind"] != "pipeline" or not r["runs"]:
            continue
        for run in r.get("_raw", []):
            for st, ts in run["stages"].items():
                if st.startswith("decode"):
                    lat = sp["base"] // 8 * (sp["scale"] if st == "decode_target" else 1)
                    pooled.setdefault((sp["family"], lat), []).extend(ts)
    for fam, base, s in groups:
        pre = f"pipeline {fam} {base}x{s} "
        t = lambda name: by.get(pre + name, {}).get("total_s")  # noqa: E731
        for cfg in sorted({r["spec"]["config"] for r in rows if r["key"].startswith(pre) and r["spec"]["config"]}):
            b, c = by.get(pre + f"B/{cfg}", {}), by.get(pre + f"C/{cfg}", {})
            entry: dict[str, Any] = {"family": fam, "base": base, "target": base * s, "scale": s, "config": cfg,
                                     "A": t("A"), "B": b.get("total_s"), "C": c.get("total_s"), "D": t("D"),
                                     "E_bicubic": t("E-bicubic"), "E_lanczos": t("E-lanczos")}
            st = b.get("stages_s", {})
            if st.get("lua") and st.get("decode_target"):
                entry["lua_s"] = st["lua"]
                entry["lua_share_of_target_decode"] = st["lua"] / st["decode_target"]
            if c.get("stages_s", {}).get("pixel_sr"):
                entry["pixel_sr_s"] = c["stages_s"]["pixel_sr"]
            dec_base = _med(pooled.get((fam, base // 8), []))
            dec_target = _med(pooled.get((fam, base // 8 * s), []))
            entry["pooled_decode_base_s"], entry["pooled_decode_target_s"] = dec_base, dec_target
            if dec_target and entry.get("lua_s") is not None:
                entry["B_composed"] = entry["lua_s"] + dec_target
                entry["B_over_D_composed"] = entry["B_composed"] / dec_target
            if dec_base and entry.get("pixel_sr_s") is not None:
                entry["C_composed"] = dec_base + entry["pixel_sr_s"]
                if entry.get("B_composed"):
                    entry["C_over_B_composed"] = entry["C_composed"] / entry["B_composed"]
            if entry["B"] and entry["C"]:
                entry["C_over_B"] = entry["C"] / entry["B"]
            if entry["B"] and entry["D"]:
                entry["B_over_D"] = entry["B"] / entry["D"]
            for e in ("E_bicubic", "E_lanczos"):
                if entry["B"] and entry[e]:
                    entry[f"B_over_{e}"] = entry["B"] / entry[e]
            entry["peak_rss_mb"] = {k: by[pre + k]["peak_rss_mb"] for k in ("A", "D", f"B/{cfg}", f"C/{cfg}")
                                    if "peak_rss_mb" in by.get(pre + k, {})}
            summary["pipelines"].append(entry)
    for r in rows:
        if r["spec"]["kind"] == "impl" and "speedup" in r:
            summary["impl"].append({"config": r["spec"]["config"], "latent": r["spec"]["latent"],
                                    "scale": r["spec"]["scale"], "ours_s": r["median_s"]["ours"],
                                    "plain_s": r["median_s"]["plain"], "speedup": r["speedup"],
                                    "speedup_compiled": r.get("speedup_compiled"),
                                    "max_abs_diff": r["max_abs_diff"]["ours"]})
    untiled = {(r["spec"]["latent"], r["spec"]["scale"]): r.get("median_s") for r in rows
               if r["spec"]["kind"] == "tiling" and r["spec"]["case"] == "untiled"}
    for r in rows:
        if r["spec"]["kind"] == "tiling" and "median_s" in r:
            sp = r["spec"]
            base_t = untiled.get((sp["latent"], sp["scale"]))
            item = {"case": sp["case"], "latent": sp["latent"], "scale": sp["scale"], "seconds": r["median_s"],
                    "time_overhead": (r["median_s"] / base_t - 1.0) if base_t else None,
                    "pixel_overhead": r["plan"]["pixel_overhead"] - 1.0, "tiles": r["plan"]["tiles"],
                    "tile": r["plan"]["tile"], "overlap": r["plan"]["overlap"], "chunks": r["plan"].get("chunks"),
                    "peak_rss_mb": r["peak_rss_mb"],
                    "max_abs_diff_vs_untiled": r.get("max_abs_diff_vs_untiled")}
            if sp["tile"]:
                item["previous_plan_pixel_overhead"] = legacy_pixel_overhead(sp["latent"], sp["tile"], sp["overlap"]) ** 2 - 1
            summary["tiling"].append(item)
    return summary


def machine_info() -> dict:
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = None
    try:
        with open("/proc/meminfo") as f:
            mem = round(int(f.readline().split()[1]) / 2 ** 20, 1)
    except (OSError, ValueError, IndexError):
        pass
    info = {"cpu": cpu, "logical_cpus": os.cpu_count(), "memory_gib": mem, "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(), "python": platform.python_version(),
            "platform": platform.platform(),
            "env": {k: os.environ[k] for k in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "MKL_NUM_THREADS")
                    if k in os.environ}}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    try:
        info["load_average"] = list(os.getloadavg())
    except OSError:
        pass
    return info


def _fmt_s(x: Optional[float]) -> str:
    if x is None:
        return "–"
    return f"{x * 1000:.1f} ms" if x < 1 else f"{x:.2f} s"


def _fmt_mb(x: Optional[float]) -> str:
    return "–" if x is None else f"{x:.0f}"


def _fmt_r(x: Optional[float], unit: str = "x") -> str:
    return "–" if x is None else f"{x:.2f}{unit}"


def write_markdown(report: dict, path: Path) -> None:
    s = report["summary"]
    m = report["machine"]
    lines = [f"# LUA benchmark ({report['settings']['device']}, {report['settings']['dtype']})", "",
             f"Command: `{report['command']}`", "",
             f"Machine: {m['cpu']}, {m['logical_cpus']} logical CPUs, {m.get('memory_gib')} GiB RAM"
             + (f", GPU {m['gpu']}" if m.get("gpu") else "") + f"; torch {m['torch']} ({m['torch_threads']} threads)"
             + (f"; env {m['env']}" if m.get("env") else "") + ".",
             f"Load average at start {report.get('load_start')}, at end {report.get('load_end')}; "
             f"wall time {report.get('wall_s', 0):.0f} s.", "",
             "Times are medians over all timed runs (after warm-up) of interleaved rounds, each case in its own "
             "process; peak RSS is that process's high-water mark (imports and weights included). Sizes are image "
             "pixels; the latent is 1/8 of the side. Random weights.", ""]
    if s["pipelines"]:
        lines += ["## Pipelines", "",
                  "A decode base · B LUA + decode target · C decode base + pixel SR (same trunk, RGB) · "
                  "D decode target · E decode base + bicubic / Lanczos", "",
                  "| family | config | size | A | B | C | D | E bicubic | E Lanczos | C/B | B/D | LUA stage "
                  "| LUA / decode(target) | pixel SR stage | peak RSS B / C / D (MB) |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for e in s["pipelines"]:
            rss = e.get("peak_rss_mb", {})
            lines.append(
                f"| {e['family']} | {e['config']} | {e['base']}→{e['target']} (x{e['scale']}) | {_fmt_s(e['A'])} | "
                f"{_fmt_s(e['B'])} | {_fmt_s(e['C'])} | {_fmt_s(e['D'])} | {_fmt_s(e['E_bicubic'])} | "
                f"{_fmt_s(e['E_lanczos'])} | {_fmt_r(e.get('C_over_B'))} | {_fmt_r(e.get('B_over_D'))} | "
                f"{_fmt_s(e.get('lua_s'))} | "
                f"{_fmt_r(100 * e['lua_share_of_target_decode'] if 'lua_share_of_target_decode' in e else None, ' %')} | "
                f"{_fmt_s(e.get('pixel_sr_s'))} | "
                f"{_fmt_mb(rss.get('B/' + e['config']))} / {_fmt_mb(rss.get('C/' + e['config']))} / "
                f"{_fmt_mb(rss.get('D'))} |")
        lines += ["", "Composed from stage medians, with the decode pooled over every process that decoded the same "
                  "size (less exposed to the machine's load swings than the per-process totals above):", "",
                  "| family | config | size | decode base | decode target | LUA | pixel SR | B composed | C composed "
                  "| C/B composed | B/D composed |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for e in s["pipelines"]:
            lines.append(
                f"| {e['family']} | {e['config']} | {e['base']}→{e['target']} (x{e['scale']}) | "
                f"{_fmt_s(e.get('pooled_decode_base_s'))} | {_fmt_s(e.get('pooled_decode_target_s'))} | "
                f"{_fmt_s(e.get('lua_s'))} | {_fmt_s(e.get('pixel_sr_s'))} | {_fmt_s(e.get('B_composed'))} | "
                f"{_fmt_s(e.get('C_composed'))} | {_fmt_r(e.get('C_over_B_composed'))} | "
                f"{_fmt_r(e.get('B_over_D_composed'))} |")
        lines.append("")
    if report.get("macs"):
        lines += ["## Multiply-adds at the issue's sizes (counted, not timed)", "",
                  "| family | config | size | A (GMAC) | B | C | D | C/B | LUA / decode(target) |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for r in report["macs"]:
            lines.append(f"| {r['family']} | {r['config']} | {r['base']}→{r['base'] * r['scale']} | {r['A'] / 1e9:.0f} | "
                         f"{r['B'] / 1e9:.0f} | {r['C'] / 1e9:.0f} | {r['D'] / 1e9:.0f} | {r['C_over_B']:.2f}x | "
                         f"{100 * r['lua_share_of_D']:.1f} % |")
        lines.append("")
    if s["impl"]:
        lines += ["## Our network vs the straightforward implementation (same weights, same input)", "",
                  "| config | latent | ours | straightforward | speed-up | max abs diff |" +
                  (" speed-up compiled |" if any(i.get("speedup_compiled") for i in s["impl"]) else ""),
                  "|---|---|---|---|---|---|" + ("---|" if any(i.get("speedup_compiled") for i in s["impl"]) else "")]
        for i in s["impl"]:
            extra = f" {_fmt_r(i.get('speedup_compiled'))} |" if any(j.get("speedup_compiled") for j in s["impl"]) else ""
            lines.append(f"| {i['config']} | {i['latent']}² x{i['scale']} | {_fmt_s(i['ours_s'])} | "
                         f"{_fmt_s(i['plain_s'])} | {i['speedup']:.2f}x | {i['max_abs_diff']:.1e} |{extra}")
        lines.append("")
    if s["tiling"]:
        lines += ["## Tiling (light config)", "",
                  "Budgets are fractions of the engine's estimate of the plain pass's peak; *chunked*: one pass "
                  "with windows and head rows in bands (same numbers; see `python -m lua_core.bench.chunking`).", "",
                  "| case | latent | tiles | tile (h, w) / overlap | time | time overhead | pixel overhead "
                  "| previous plan pixel overhead | peak RSS (MB) | max abs diff vs untiled |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for t in s["tiling"]:
            lines.append(
                f"| {t['case']} | {t['latent']}² x{t['scale']} | {t['tiles']} | {t['tile']} / {t['overlap']}"
                f"{', chunked' if t.get('chunks') else ''} | "
                f"{_fmt_s(t['seconds'])} | {_fmt_r(100 * t['time_overhead'] if t['time_overhead'] is not None else None, ' %')} | "
                f"{100 * t['pixel_overhead']:.1f} % | "
                f"{_fmt_r(100 * t['previous_plan_pixel_overhead'] if 'previous_plan_pixel_overhead' in t else None, ' %')} | "
                f"{t['peak_rss_mb']:.0f} | "
                f"{'–' if t['max_abs_diff_vs_untiled'] is None else format(t['max_abs_diff_vs_untiled'], '.3g')} |")
        lines.append("")
    errs = [r for r in report["rows"] if r["errors"]]
    if errs:
        lines += ["## Errors", ""] + [f"- {r['key']}: {r['errors'][0][:300]}" for r in errs] + [""]
    path.write_text("\n".join(lines))


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lua_core.bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="cpu", choices=sorted(PRESETS), help="sizes and repetitions")
    p.add_argument("--groups", default="pipelines,impl,tiling,macs",
                   help="comma list of pipelines, impl, tiling, macs")
    p.add_argument("--configs", default="light,paper")
    p.add_argument("--families", default="flux1", help="comma list of sd15, sdxl, sd3, flux1")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    p.add_argument("--threads", type=int, default=0, help="torch threads in each case (0 = torch's default)")
    p.add_argument("--warmup", type=int, default=None)
    p.add_argument("--repeats", type=int, default=None, help="timed runs per case and round")
    p.add_argument("--rounds", type=int, default=None, help="interleaved rounds over all cases")
    p.add_argument("--compile", action="store_true", help="also time torch.compile'd networks")
    p.add_argument("--in-process", action="store_true", help="run cases in this process (no per-case RSS)")
    p.add_argument("--case-timeout", type=float, default=1800.0)
    p.add_argument("--out", default=str(DEFAULT_OUT), help="folder for bench.json, bench.md, bench.svg")
    p.add_argument("--from-json", default=None, help="rebuild the reports from an earlier bench.json (no runs)")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted run from OUT/bench.partial.json (same options)")
    p.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)  # tiny models: the harness's own test
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child is not None:
        print(json.dumps(run_spec(json.loads(a.child))))
        return 0
    if a.from_json:
        return rebuild(Path(a.from_json), Path(a.out))
    a.groups = a.groups.split(",")
    pre = PRESETS[a.preset]
    rounds = a.rounds if a.rounds is not None else pre["rounds"]
    cases = build_cases(a)
    out_dir = Path(a.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    command = "python -m lua_core.bench " + " ".join(argv if argv is not None else sys.argv[1:])
    env_prefix = " ".join(f"{k}={v}" for k, v in machine_info()["env"].items())
    report: dict[str, Any] = {"command": (env_prefix + " " + command).strip(), "machine": machine_info(),
                              "settings": {"preset": a.preset, "rounds": rounds, "device": a.device, "dtype": a.dtype,
                                           "threads": a.threads, "compile": a.compile, "in_process": a.in_process,
                                           "warmup": cases[0]["warmup"] if cases else None,
                                           "repeats": cases[0]["repeats"] if cases else None},
                              "load_start": _load()}
    t_start = time.time()
    results: dict[str, list[dict]] = {}
    done: set[tuple[int, str]] = set()
    partial = out_dir / "bench.partial.json"
    if a.resume and partial.exists():
        state = json.loads(partial.read_text())
        results, done = state["results"], {(int(r), k) for r, k in state["done"]}
        report["load_start"], t_start = state["load_start"], time.time() - state["elapsed_s"]
    for r in range(rounds):
        order = cases if r % 2 == 0 else list(reversed(cases))  # interleave and alternate the order
        for i, spec in enumerate(order):
            key = case_key(spec)
            if (r, key) in done:
                continue
            t0 = time.time()
            res = run_spec(spec) if a.in_process else run_in_child(spec, a.case_timeout)
            results.setdefault(key, []).append(res)
            done.add((r, key))
            status = res.get("error", "ok")[:200]
            print(f"[round {r + 1}/{rounds} case {i + 1}/{len(order)}] {key}: {time.time() - t0:.1f} s {status}",
                  file=sys.stderr, flush=True)
            partial.write_text(json.dumps({"results": results, "done": sorted(done), "load_start": report["load_start"],
                                           "elapsed_s": time.time() - t_start}))
    if "macs" in a.groups:
        report["macs"] = [row for cfg in a.configs.split(",") for fam in a.families.split(",")
                          for row in count_macs(cfg, fam, tiny=a.tiny)]
    rows = aggregate(cases, results)
    report["summary"] = summarise(rows)
    for row in rows:
        row.pop("_raw", None)
    report["rows"] = rows
    report["raw"] = results
    report["load_end"] = _load()
    report["wall_s"] = time.time() - t_start
    rc = write_reports(report, out_dir)
    partial.unlink(missing_ok=True)
    return rc


def write_reports(report: dict, out_dir: Path) -> int:
    """bench.json, bench.md and the plots of a finished report."""
    from .plot import write_plots

    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "bench.json").write_text(json.dumps(report, indent=1, default=str))
    write_markdown(report, out_dir / "bench.md")
    written = write_plots(report, out_dir)
    print(json.dumps({"json": str(out_dir / "bench.json"), "markdown": str(out_dir / "bench.md"),
                      "plots": [str(w) for w in written]}))
    return 0


def rebuild(path: Path, out_dir: Path) -> int:
    """Re-aggregate an earlier report's raw results (e.g. after the summary gained a column)."""
    report = json.loads(path.read_text())
    cases = [r["spec"] for r in report["rows"]]
    rows = aggregate(cases, report["raw"])
    report["summary"] = summarise(rows)
    for row in rows:
        row.pop("_raw", None)
    report["rows"] = rows
    return write_reports(report, out_dir)


def _load() -> Optional[list[float]]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


if __name__ == "__main__":
    sys.exit(main())
