"""The ratios a report leads with, computed from the aggregated rows."""
from __future__ import annotations

from typing import Any, Optional

from .aggregate import median


def summarise(rows: list[dict]) -> dict:
    """The ratios the issue asks for, from the aggregated rows."""
    return {"pipelines": pipeline_entries(rows), "impl": impl_entries(rows), "tiling": tiling_entries(rows)}


def pooled_decodes(rows: list[dict]) -> dict[tuple[str, int], list[float]]:
    """Decode samples of every process that decoded the same latent size, keyed by (family, latent side).

    A, C and E decode the base, B and D the target: the decode is identical work wherever it runs,
    so pooling its samples takes most of the load noise of a shared machine out of the composed ratios.
    """
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
    return pooled


def pipeline_entries(rows: list[dict]) -> list[dict]:
    """One entry per family, size and config: pipeline totals, stage times and their ratios."""
    by = {r["key"]: r for r in rows}
    pooled = pooled_decodes(rows)
    groups = sorted({(r["spec"]["family"], r["spec"]["base"], r["spec"]["scale"]) for r in rows
                     if r["spec"]["kind"] == "pipeline"}, key=lambda g: (g[0], g[1], g[2]))
    entries = []
    for fam, base, s in groups:
        pre = f"pipeline {fam} {base}x{s} "
        for cfg in sorted({r["spec"]["config"] for r in rows if r["key"].startswith(pre) and r["spec"]["config"]}):
            entry = _pipeline_entry(by, pre, fam, base, s, cfg)
            dec_base, dec_target = pooled.get((fam, base // 8), []), pooled.get((fam, base // 8 * s), [])
            _add_composed(entry, median(dec_base), median(dec_target))
            _add_ratios(entry)
            entry["peak_rss_mb"] = {k: by[pre + k]["peak_rss_mb"] for k in ("A", "D", f"B/{cfg}", f"C/{cfg}")
                                    if "peak_rss_mb" in by.get(pre + k, {})}
            entries.append(entry)
    return entries


def _pipeline_entry(by: dict[str, dict], pre: str, fam: str, base: int, s: int, cfg: str) -> dict[str, Any]:
    """Totals of the group's pipelines, and the LUA and pixel-SR stage times of its B and C."""
    def total(name: str) -> Optional[float]:
        return by.get(pre + name, {}).get("total_s")

    b, c = by.get(pre + f"B/{cfg}", {}), by.get(pre + f"C/{cfg}", {})
    entry: dict[str, Any] = {"family": fam, "base": base, "target": base * s, "scale": s, "config": cfg,
                             "A": total("A"), "B": b.get("total_s"), "C": c.get("total_s"), "D": total("D"),
                             "E_bicubic": total("E-bicubic"), "E_lanczos": total("E-lanczos")}
    st = b.get("stages_s", {})
    if st.get("lua") and st.get("decode_target"):
        entry["lua_s"] = st["lua"]
        entry["lua_share_of_target_decode"] = st["lua"] / st["decode_target"]
    if c.get("stages_s", {}).get("pixel_sr"):
        entry["pixel_sr_s"] = c["stages_s"]["pixel_sr"]
    return entry


def _add_composed(entry: dict, dec_base: Optional[float], dec_target: Optional[float]) -> None:
    """B and C composed from stage medians with the pooled decode times."""
    entry["pooled_decode_base_s"], entry["pooled_decode_target_s"] = dec_base, dec_target
    if dec_target and entry.get("lua_s") is not None:
        entry["B_composed"] = entry["lua_s"] + dec_target
        entry["B_over_D_composed"] = entry["B_composed"] / dec_target
    if dec_base and entry.get("pixel_sr_s") is not None:
        entry["C_composed"] = dec_base + entry["pixel_sr_s"]
        if entry.get("B_composed"):
            entry["C_over_B_composed"] = entry["C_composed"] / entry["B_composed"]


def _add_ratios(entry: dict) -> None:
    """C/B, B/D and B over each resize, from the per-process totals."""
    if entry["B"] and entry["C"]:
        entry["C_over_B"] = entry["C"] / entry["B"]
    if entry["B"] and entry["D"]:
        entry["B_over_D"] = entry["B"] / entry["D"]
    for e in ("E_bicubic", "E_lanczos"):
        if entry["B"] and entry[e]:
            entry[f"B_over_{e}"] = entry["B"] / entry[e]


def impl_entries(rows: list[dict]) -> list[dict]:
    """Our network's and the straightforward implementation's times, per config and size."""
    return [{"config": r["spec"]["config"], "latent": r["spec"]["latent"], "scale": r["spec"]["scale"],
             "ours_s": r["median_s"]["ours"], "plain_s": r["median_s"]["plain"], "speedup": r["speedup"],
             "speedup_compiled": r.get("speedup_compiled"), "max_abs_diff": r["max_abs_diff"]["ours"]}
            for r in rows if r["spec"]["kind"] == "impl" and "speedup" in r]


def tiling_entries(rows: list[dict]) -> list[dict]:
    """Each tiling case's time and pixel overheads against the untiled case of its size."""
    untiled = {(r["spec"]["latent"], r["spec"]["scale"]): r.get("median_s") for r in rows
               if r["spec"]["kind"] == "tiling" and r["spec"]["case"] == "untiled"}
    entries = []
    for r in rows:
        if r["spec"]["kind"] != "tiling" or "median_s" not in r:
            continue
        sp, plan = r["spec"], r["plan"]
        base_t = untiled.get((sp["latent"], sp["scale"]))
        item = {"case": sp["case"], "latent": sp["latent"], "scale": sp["scale"], "seconds": r["median_s"],
                "time_overhead": (r["median_s"] / base_t - 1.0) if base_t else None,
                "pixel_overhead": plan["pixel_overhead"] - 1.0, "tiles": plan["tiles"],
                "tile": plan["tile"], "overlap": plan["overlap"], "chunks": plan.get("chunks"),
                "peak_rss_mb": r["peak_rss_mb"], "max_abs_diff_vs_untiled": r.get("max_abs_diff_vs_untiled")}
        if sp["tile"]:
            legacy = legacy_pixel_overhead(sp["latent"], sp["tile"], sp["overlap"])
            item["previous_plan_pixel_overhead"] = legacy ** 2 - 1
        entries.append(item)
    return entries


def legacy_pixel_overhead(length: int, tile: int, overlap: int) -> float:
    """1-D pixel factor of the previous tiling plan (stride ``tile - overlap``, clamped full last tile)."""
    if tile >= length:
        return 1.0
    starts = list(range(0, length - tile, max(tile - overlap, 1))) + [length - tile]
    return len(starts) * tile / length
