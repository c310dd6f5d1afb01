"""Merging the rounds of each case into one row: medians over all timed runs, maxima of the peaks."""
from __future__ import annotations

import statistics
from typing import Any, Optional

from .specs import case_key


def median(xs: list[float]) -> Optional[float]:
    """The median of ``xs``, ``None`` when empty."""
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
            _KIND_FIELDS.get(spec["kind"], _tiling_fields)(row, runs)
        rows.append(row)
    return rows


def _pipeline_fields(row: dict, runs: list[dict]) -> None:
    row["total_s"] = median([t for r in runs for t in r["total"]])
    row["stages_s"] = {st: median([t for r in runs for t in r["stages"][st]]) for st in runs[0]["stages"]}
    row["samples"] = len([t for r in runs for t in r["total"]])
    row["rss_after_build_mb"] = max(r["rss_after_build_mb"] for r in runs)


def _impl_fields(row: dict, runs: list[dict]) -> None:
    row["median_s"] = {k: median([t for r in runs for t in r["samples"][k]]) for k in runs[0]["samples"]}
    row["samples"] = len([t for r in runs for t in r["samples"]["ours"]])
    row["max_abs_diff"] = {k: max(r["max_abs_diff"][k] for r in runs) for k in runs[0]["max_abs_diff"]}
    row["output_abs_max"] = runs[0]["output_abs_max"]
    row["speedup"] = row["median_s"]["plain"] / row["median_s"]["ours"]
    if "ours_compiled" in row["median_s"]:
        row["speedup_compiled"] = row["median_s"]["plain"] / row["median_s"]["ours_compiled"]


def _tiling_fields(row: dict, runs: list[dict]) -> None:
    row["median_s"] = median([t for r in runs for t in r["samples"]])
    row["samples"] = len([t for r in runs for t in r["samples"]])
    row["plan"] = runs[0]["plan"]
    row["rss_after_build_mb"] = max(r["rss_after_build_mb"] for r in runs)
    for k in ("max_abs_diff_vs_untiled", "mean_abs_diff_vs_untiled"):
        if k in runs[0]:
            row[k] = runs[0][k]


_KIND_FIELDS = {"pipeline": _pipeline_fields, "impl": _impl_fields, "tiling": _tiling_fields}
