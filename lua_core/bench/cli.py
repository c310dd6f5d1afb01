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
and multiply-add counts of every pipeline at the full benchmark sizes (meta tensors, no
compute) so CPU-sized timings can be related to 512->1024 / 1024->2048 / 1024->4096.

Every case runs in its own child process (peak RSS is that process's high-water mark,
weights and imports included; on CUDA ``max_memory_allocated``).  Each child warms up,
then times ``--repeats`` runs; ``--rounds`` rounds of all cases are interleaved and the
median over all timed runs is reported.  Results: JSON, Markdown and an SVG plot (plus a
PNG when matplotlib happens to be importable) in ``--out``.
"""
from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from pathlib import Path
from typing import Any, Optional

import torch

from .child import run_in_child, run_spec
from .machine import load_average, machine_info
from .macs import count_macs
from .reports import attach_summary, rebuild, write_reports
from .rounds import Progress, run_rounds
from .specs import PRESETS, build_cases
from .vae_decoder import DECODER_CONFIGS

DEFAULT_OUT = Path("docs/benchmarks")


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m lua_core.bench``."""
    p = argparse.ArgumentParser(prog="python -m lua_core.bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="cpu", choices=sorted(PRESETS), help="sizes and repetitions")
    p.add_argument("--groups", default="pipelines,impl,tiling,macs",
                   help="comma list of pipelines, impl, tiling, macs")
    p.add_argument("--configs", default="light,paper")
    p.add_argument("--families", default="flux1", help=f"comma list of {', '.join(DECODER_CONFIGS)}")
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
    return p


def main(argv: Optional[list[str]] = None) -> int:
    """Run the benchmark (or one ``--child`` case, or a ``--from-json`` rebuild); 0 on success."""
    a = build_parser().parse_args(argv)
    if a.child is not None:
        print(json.dumps(run_spec(json.loads(a.child))))
        return 0
    if a.from_json:
        return rebuild(Path(a.from_json), Path(a.out))
    a.groups = a.groups.split(",")
    rounds = a.rounds if a.rounds is not None else PRESETS[a.preset]["rounds"]
    cases = build_cases(a)
    out_dir = Path(a.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    report = new_report(a, argv, rounds, cases)
    partial = out_dir / "bench.partial.json"
    if a.resume and partial.exists():
        progress = Progress.resume(partial)
        report["load_start"] = progress.load_start
    else:
        progress = Progress(partial, report["load_start"])
    run = run_spec if a.in_process else functools.partial(run_in_child, timeout=a.case_timeout)
    run_rounds(cases, rounds, run, progress)
    finish_report(report, a, cases, progress)
    rc = write_reports(report, out_dir)
    partial.unlink(missing_ok=True)
    return rc


def new_report(a: argparse.Namespace, argv: Optional[list[str]], rounds: int, cases: list[dict]) -> dict[str, Any]:
    """The report's command, machine and settings, before any case runs."""
    command = "python -m lua_core.bench " + " ".join(argv if argv is not None else sys.argv[1:])
    machine = machine_info()
    env_prefix = " ".join(f"{k}={v}" for k, v in machine["env"].items())
    return {"command": (env_prefix + " " + command).strip(), "machine": machine,
            "settings": {"preset": a.preset, "rounds": rounds, "device": a.device, "dtype": a.dtype,
                         "threads": a.threads, "compile": a.compile, "in_process": a.in_process,
                         "warmup": cases[0]["warmup"] if cases else None,
                         "repeats": cases[0]["repeats"] if cases else None},
            "load_start": load_average()}


def finish_report(report: dict, a: argparse.Namespace, cases: list[dict], progress: Progress) -> None:
    """Add multiply-add counts, rows, summary, raw results and the closing load and wall time."""
    if "macs" in a.groups:
        report["macs"] = [row for cfg in a.configs.split(",") for fam in a.families.split(",")
                          for row in count_macs(cfg, fam, tiny=a.tiny)]
    attach_summary(report, cases, progress.results)
    report["raw"] = progress.results
    report["load_end"] = load_average()
    report["wall_s"] = time.time() - progress.t_start


if __name__ == "__main__":
    sys.exit(main())
