"""Turning raw case results into the written report: bench.json, bench.md and the plots."""
from __future__ import annotations

import json
from pathlib import Path

from .aggregate import aggregate
from .markdown import write_markdown
from .plot import write_plots
from .summary import summarise


def attach_summary(report: dict, cases: list[dict], results: dict[str, list[dict]]) -> None:
    """Aggregate ``results`` per case into ``report["rows"]`` and summarise them into ``report["summary"]``."""
    rows = aggregate(cases, results)
    report["summary"] = summarise(rows)
    for row in rows:
        row.pop("_raw", None)
    report["rows"] = rows


def write_reports(report: dict, out_dir: Path) -> int:
    """bench.json, bench.md and the plots of a finished report."""
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
    attach_summary(report, [r["spec"] for r in report["rows"]], report["raw"])
    return write_reports(report, out_dir)
