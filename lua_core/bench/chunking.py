"""Memory-bounded upscales: the chunked pass against spatial tiles and the plain pass.

    python -m lua_core.bench.chunking                      # light + paper, 128² x4 and 256² x2
    python -m lua_core.bench.chunking --configs light --cases 128x4 --rounds 5

For every config and case the modes are: the plain pass (``tile_size=0``), and for each
budget (a fraction of the engine's estimate of the plain pass's peak): the automatic
mode (now one chunked pass when that fits) and spatial tiles of the plain pass (what the
automatic mode ran before: the cheapest even tile grid that fits the same budget, one
window of overlap).

* **Peak RSS**: each mode once in a fresh child process (``resource.getrusage`` high-water
  mark, imports and weights included; "activation" is that minus the RSS just before
  the run, after a warm-up on a small input), twice: with glibc's default allocator
  settings (what a ComfyUI process gets: its dynamic mmap threshold keeps freed large
  blocks in the heap, so RSS runs well above the live tensors) and with
  ``MALLOC_MMAP_THRESHOLD_=131072`` (large blocks go back to the system when freed, so
  the activation is close to the peak of live tensors, which the engine's estimate models).
* **Time**: all modes of a case in one child process, interleaved for ``--rounds``
  rounds (order alternating), median per mode; the overhead is against the plain pass's
  median in the same process, so both saw the same machine load.
* **Max abs diff** against the plain pass's output.

Random weights, ``torch.set_num_threads(--threads)`` (1 by default: on a shared 2-core
machine two OpenMP threads can be far slower).  Writes JSON (``--out``) and a Markdown
table (``--markdown``).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Optional

import torch

from ..engine.planning import TilePlan, plan_tiles

REPO_ROOT = Path(__file__).resolve().parents[2]


def _rss_now_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _setup(config: str, size: int, scale: int, seed: int = 0):
    from ..model import LUANet, preset

    torch.manual_seed(seed)
    net = LUANet(preset(config)).eval().requires_grad_(False)
    z = torch.randn(1, net.config.in_chans, size, size, generator=torch.Generator().manual_seed(seed)) * 2
    return net, z


def resolve(net, z: torch.Tensor, scale: int, mode: dict):
    """The engine plan of one mode (``plain``, ``auto`` with a budget, ``tiles`` with a budget)."""
    from ..engine.memory import auto_tile_shape, bytes_per_pixel

    n = z.shape[-1] * z.shape[-2]
    budget = None
    if mode["kind"] != "plain":
        budget = int(bytes_per_pixel(net.config, scale, z.dtype) * n * mode["budget"])
    if mode["kind"] == "plain":
        return plan_tiles(net, z, scale, 0, None, None), budget
    if mode["kind"] == "auto":
        return plan_tiles(net, z, scale, 0, None, budget), budget
    w = net.config.window_size
    th, tw = auto_tile_shape(net.config, scale, 1, z.shape[-2], z.shape[-1], z.dtype, budget, z.device, w)
    return TilePlan(th, tw if th else 0, w if th else 0, 1), budget


def _describe(net, z: torch.Tensor, plan) -> dict:
    from ..model.tiling import count_tiles, pixel_overhead

    h, w = z.shape[-2:]
    win = net.config.window_size
    out: dict[str, Any] = {"tiles": 1, "tile": 0, "overlap": 0, "pixel_overhead": 0.0, "chunks": None}
    if plan.tiled:
        out.update(tiles=count_tiles(h, w, plan.shape, plan.overlap, win), tile=list(plan.shape),
                   overlap=plan.overlap, pixel_overhead=pixel_overhead(h, w, plan.shape, plan.overlap, win) - 1.0)
    if plan.chunks is not None:
        out["chunks"] = {"trunk_px": plan.chunks.trunk, "head_rows": plan.chunks.head_rows(w)}
    return out


def _run(net, z, scale, plan):
    from ..engine.runner import _execute

    return _execute(net, z, scale, plan, None, None)


def child_memory(spec: dict) -> dict:
    """One run of one mode; peak RSS."""
    net, z = _setup(spec["config"], spec["size"], spec["scale"])
    plan, budget = resolve(net, z, spec["scale"], spec["mode"])
    with torch.inference_mode():
        _run(net, z[..., :16, :16].contiguous(), spec["scale"], TilePlan(0, 0, 0, 1, plan.chunks))
        before_max = _peak_rss_mb()
        base = _rss_now_mb()
        t0 = time.perf_counter()
        _run(net, z, spec["scale"], plan)
        seconds = time.perf_counter() - t0
        peak = _peak_rss_mb()
    return {"peak_rss_mb": peak, "activation_mb": peak - base, "rss_before_mb": base,
            "peak_before_mb": before_max, "seconds_single": seconds, "budget_mb": (budget or 0) / 2 ** 20,
            **_describe(net, z, plan)}


def child_timing(spec: dict) -> dict:
    """All modes of one case, interleaved; medians and max abs diff against the plain pass."""
    net, z = _setup(spec["config"], spec["size"], spec["scale"])
    s = spec["scale"]
    plans = [resolve(net, z, s, m)[0] for m in spec["modes"]]
    samples: list[list[float]] = [[] for _ in plans]
    with torch.inference_mode():
        outs = [_run(net, z, s, p) for p in plans]  # warm-up, and the outputs compared
        ref = outs[0]
        diffs = [float((o - ref).abs().max()) for o in outs]
        del outs
        for r in range(spec["rounds"]):
            order = list(range(len(plans)))
            if r % 2:
                order.reverse()
            for i in order:
                t0 = time.perf_counter()
                _run(net, z, s, plans[i])
                samples[i].append(time.perf_counter() - t0)
    return {"samples": samples, "max_abs_diff": diffs, "output_abs_max": float(ref.abs().max()),
            "load": list(os.getloadavg())}


LIVE_ENV = {"MALLOC_MMAP_THRESHOLD_": "131072"}


def in_child(kind: str, spec: dict, threads: int, timeout: Optional[float] = None,
             extra_env: Optional[dict] = None) -> dict:
    env = dict(os.environ)
    env.update(extra_env or {})
    env["PYTHONPATH"] = str(REPO_ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    proc = subprocess.run([sys.executable, "-m", "lua_core.bench.chunking", "--child", kind, "--threads", str(threads),
                           json.dumps(spec)], capture_output=True, text=True, env=env, timeout=timeout,
                          cwd=str(REPO_ROOT))
    if proc.returncode != 0:
        return {"error": (proc.stderr or proc.stdout).strip()[-2000:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def mode_name(mode: dict) -> str:
    if mode["kind"] == "plain":
        return "plain pass (untiled)"
    what = "auto (chunked)" if mode["kind"] == "auto" else "spatial tiles (previous auto)"
    return f"{what}, budget {mode['budget']:g}x"


def run_all(configs: list[str], cases: list[tuple[int, int]], budgets: list[float], rounds: int, threads: int,
            log=print, kinds: tuple[str, ...] = ("auto", "tiles"), memory: bool = True) -> dict:
    modes = [{"kind": "plain"}] + [{"kind": k, "budget": b} for b in budgets for k in kinds]
    report: dict[str, Any] = {"torch": torch.__version__, "threads": threads, "rounds": rounds,
                              "load_start": list(os.getloadavg()), "results": []}
    t_start = time.time()
    for cfg in configs:
        for size, scale in cases:
            base = {"config": cfg, "size": size, "scale": scale}
            mem = []
            for m in modes:
                if not memory:
                    net, z = _setup(cfg, size, scale)
                    plan, budget = resolve(net, z, scale, m)
                    mem.append({"budget_mb": (budget or 0) / 2 ** 20, **_describe(net, z, plan)})
                    continue
                t0 = time.time()
                res = in_child("memory", dict(base, mode=m), threads)
                live = in_child("memory", dict(base, mode=m), threads, extra_env=LIVE_ENV)
                if "error" not in live:
                    res["live_activation_mb"] = live["activation_mb"]
                    res["live_peak_rss_mb"] = live["peak_rss_mb"]
                mem.append(res)
                log(f"{cfg} {size}² x{scale} {mode_name(m)}: memory {time.time() - t0:.0f} s "
                    f"{res.get('error', '')[:300]} {live.get('error', '')[:300]}")
            t0 = time.time()
            timing = in_child("timing", dict(base, modes=modes, rounds=rounds), threads)
            log(f"{cfg} {size}² x{scale}: timing {time.time() - t0:.0f} s {timing.get('error', '')[:300]}")
            rows = []
            medians = [statistics.median(s) for s in timing["samples"]] if "samples" in timing else None
            for i, m in enumerate(modes):
                row = {"mode": mode_name(m), **mem[i]}
                if medians:
                    row.update(seconds=medians[i], seconds_min=min(timing["samples"][i]),
                               time_overhead=medians[i] / medians[0] - 1.0,
                               max_abs_diff=timing["max_abs_diff"][i], samples=timing["samples"][i])
                rows.append(row)
            report["results"].append({**base, "rows": rows, "output_abs_max": timing.get("output_abs_max"),
                                      "load_after_timing": timing.get("load")})
    report["load_end"] = list(os.getloadavg())
    report["wall_s"] = time.time() - t_start
    return report


def _rerun_title(report: dict) -> str:
    cases = ", ".join(f"{r['config']} {r['size']}² x{r['scale']}" for r in report["results"])
    return f"## Re-run: {cases}, {report['rounds']} rounds"


def _load(values: list[float]) -> str:
    return "[" + ", ".join(f"{v:.2f}" for v in values) + "]"


def _fmt_s(x: float) -> str:
    return f"{x * 1e3:.0f} ms" if x < 1 else f"{x:.2f} s"


def _summary(report: dict) -> list[str]:
    """One line per case and budget: the chunked pass next to the spatial tiles (needs timing and live memory)."""
    lines = []
    for res in report["results"]:
        rows = {r["mode"]: r for r in res["rows"]}
        plain = rows.get(mode_name({"kind": "plain"}), {})
        budgets = sorted({float(m.rsplit(" ", 1)[-1][:-1]) for m in rows if "budget" in m}, reverse=True)
        for b in budgets:
            c = rows.get(mode_name({"kind": "auto", "budget": b}), {})
            t = rows.get(mode_name({"kind": "tiles", "budget": b}), {})
            if not all("time_overhead" in r and "live_activation_mb" in r for r in (c, t, plain)):
                continue
            lines.append(f"| {res['config']} {res['size']}² x{res['scale']} | {b:g}x | {100 * c['time_overhead']:+.1f} % "
                         f"| {c['live_activation_mb']:.0f} ({plain['live_activation_mb']:.0f}) "
                         f"| {100 * t['time_overhead']:+.1f} % | {t['live_activation_mb']:.0f} | {c['max_abs_diff']:.2g} |")
    return lines


def markdown(report: dict, command: str, title: str = "# Memory-bounded upscales on CPU: chunked pass vs spatial tiles",
             level: str = "##") -> str:
    lines = [title, "",
             f"Command: `{command}`", "",
             f"torch {report['torch']}, {report['threads']} thread(s) (`torch.set_num_threads`), float32, random "
             f"weights, batch 1.  Load average at start {_load(report['load_start'])}, at end {_load(report['load_end'])} "
             f"(2-core machine shared with training jobs: single timings scatter by ±10-20 %, so every mode of a case "
             f"is timed in one process, interleaved over {report['rounds']} rounds, and compared by medians); "
             f"wall time {report['wall_s']:.0f} s.", ""]
    if level == "##":
        lines += ["Budget = fraction of the engine's estimate of the plain pass's peak activations "
                  "(`bytes_per_pixel x H x W`).  *Peak RSS* is a fresh process's high-water mark (imports and "
                  "weights included) and *activation* that minus the RSS just before the run, with glibc's default "
                  "allocator settings (what ComfyUI gets); *live* is the activation with "
                  "`MALLOC_MMAP_THRESHOLD_=131072`, where freed large blocks leave RSS at once, i.e. about the peak "
                  "of live tensors, which is what the budget and the engine's estimate are about.  Max abs diff is "
                  "against the plain pass's output (float32).", ""]
    summary = _summary(report)
    if summary and level == "##":
        lines += ["The automatic mode runs one *chunked* pass when the plain pass does not fit the budget: the "
                  "transformer blocks work in place on the feature map a chunk of windows at a time (attention and "
                  "MLP hidden features exist only per chunk), the first conv's output is recomputed at the end of the "
                  "trunk instead of being held, and the upsampling head streams bands of rows through its convs and "
                  "pixel shuffles with a two-row line buffer per conv.  No overlap, no recompute of the network, the "
                  "same operations on the same values; spatial tiles are left for budgets below what the chunked "
                  "pass must hold (two trunk feature maps, or the trunk output plus the result).", "",
                  "## Summary", "", "| case | budget | chunked: time overhead | chunked: live MB (plain) "
                  "| tiles: time overhead | tiles: live MB | chunked max abs diff |",
                  "|---|---|---|---|---|---|---|"] + summary + [""]
    for res in report["results"]:
        lines += [f"{level} {res['config']} config, {res['size']}² latent x{res['scale']}", "",
                  "| mode | budget (MB) | plan | time (median) | time overhead | peak RSS (MB) | activation (MB) "
                  "| live (MB) | max abs diff |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for r in res["rows"]:
            if "error" in r:
                lines.append(f"| {r['mode']} | error: {r['error'][:100]} |")
                continue
            if r["chunks"]:
                plan = f"1 pass, chunks of {r['chunks']['trunk_px']} px / head bands of {r['chunks']['head_rows']} rows"
            elif r["tiles"] > 1:
                plan = f"{r['tiles']} tiles {r['tile']} / {r['overlap']}, +{100 * r['pixel_overhead']:.1f} % px"
            else:
                plan = "1 plain pass"
            if r["chunks"] and r["tiles"] > 1:
                plan = (f"{r['tiles']} tiles {r['tile']} / {r['overlap']} (+{100 * r['pixel_overhead']:.1f} % px), "
                        "chunked")
            live = f"{r['live_activation_mb']:.0f}" if "live_activation_mb" in r else "–"
            budget = f"{r['budget_mb']:.0f}" if r["budget_mb"] else "–"
            timed = (f"{_fmt_s(r['seconds'])} | {100 * r['time_overhead']:+.1f} %" if "seconds" in r else "– | –")
            diff = f"{r['max_abs_diff']:.2g}" if "max_abs_diff" in r else "–"
            mb = (lambda k: f"{r[k]:.0f}" if k in r else "–")  # noqa: E731 - not measured in --timing-only runs
            lines.append(f"| {r['mode']} | {budget} | {plan} | {timed} | {mb('peak_rss_mb')} | "
                         f"{mb('activation_mb')} | {live} | {diff} |")
        lines.append("")
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", default="light,paper")
    p.add_argument("--cases", default="128x4,256x2", help="comma list of LATENTxSCALE")
    p.add_argument("--budgets", default="0.5,0.25", help="fractions of the estimated plain peak")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--kinds", default="auto,tiles", help="modes besides the plain pass: auto, tiles")
    p.add_argument("--timing-only", action="store_true", help="skip the peak-RSS child processes")
    p.add_argument("--from-json", nargs="+", default=None,
                   help="only write the Markdown of earlier JSON reports (several: one document, in order)")
    p.add_argument("--out", default=None, help="JSON report path")
    p.add_argument("--markdown", default=None, help="Markdown report path")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    p.add_argument("spec", nargs="?", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    if a.child:
        fn = child_memory if a.child == "memory" else child_timing
        print(json.dumps(fn(json.loads(a.spec))))
        return 0
    if a.from_json:
        reports = [json.loads(Path(f).read_text()) for f in a.from_json]
        md = "\n".join([markdown(reports[0], reports[0]["command"])] +
                       [markdown(r, r["command"], title=_rerun_title(r), level="###") for r in reports[1:]] +
                       ["Markdown rebuilt with `python -m lua_core.bench.chunking --from-json "
                        + " ".join(a.from_json) + (f" --markdown {a.markdown}`" if a.markdown else "`"), ""])
    else:
        cases = [tuple(int(v) for v in c.split("x")) for c in a.cases.split(",")]
        report = run_all(a.configs.split(","), cases, [float(b) for b in a.budgets.split(",")], a.rounds, a.threads,
                         log=lambda m: print(m, file=sys.stderr, flush=True), kinds=tuple(a.kinds.split(",")),
                         memory=not a.timing_only)
        report["command"] = "python -m lua_core.bench.chunking " + " ".join(argv if argv is not None else sys.argv[1:])
        if a.out:
            Path(a.out).parent.mkdir(parents=True, exist_ok=True)
            Path(a.out).write_text(json.dumps(report, indent=1))
        md = markdown(report, report["command"])
    if a.markdown:
        Path(a.markdown).parent.mkdir(parents=True, exist_ok=True)
        Path(a.markdown).write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
