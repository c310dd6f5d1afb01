"""The Markdown report (``bench.md``) of a finished benchmark run."""
from __future__ import annotations

from pathlib import Path
from typing import Optional


def _fmt_s(x: Optional[float]) -> str:
    if x is None:
        return "–"
    return f"{x * 1000:.1f} ms" if x < 1 else f"{x:.2f} s"


def _fmt_mb(x: Optional[float]) -> str:
    return "–" if x is None else f"{x:.0f}"


def _fmt_r(x: Optional[float], unit: str = "x") -> str:
    return "–" if x is None else f"{x:.2f}{unit}"


def _pct(x: Optional[float]) -> str:
    return _fmt_r(None if x is None else 100 * x, " %")


def write_markdown(report: dict, path: Path) -> None:
    """Write ``report`` as Markdown tables to ``path``."""
    s = report["summary"]
    lines = header_lines(report)
    if s["pipelines"]:
        lines += pipeline_lines(s["pipelines"]) + composed_lines(s["pipelines"])
    if report.get("macs"):
        lines += macs_lines(report["macs"])
    if s["impl"]:
        lines += impl_lines(s["impl"])
    if s["tiling"]:
        lines += tiling_lines(s["tiling"])
    errs = [r for r in report["rows"] if r["errors"]]
    if errs:
        lines += ["## Errors", ""] + [f"- {r['key']}: {r['errors'][0][:300]}" for r in errs] + [""]
    path.write_text("\n".join(lines))


def header_lines(report: dict) -> list[str]:
    """Title, command, machine, load and how to read the numbers."""
    m = report["machine"]
    machine = (f"Machine: {m['cpu']}, {m['logical_cpus']} logical CPUs, {m.get('memory_gib')} GiB RAM"
               + (f", GPU {m['gpu']}" if m.get("gpu") else "") + f"; torch {m['torch']} ({m['torch_threads']} threads)"
               + (f"; env {m['env']}" if m.get("env") else "") + ".")
    return [f"# LUA benchmark ({report['settings']['device']}, {report['settings']['dtype']})", "",
            f"Command: `{report['command']}`", "",
            machine,
            f"Load average at start {report.get('load_start')}, at end {report.get('load_end')}; "
            f"wall time {report.get('wall_s', 0):.0f} s.", "",
            "Times are medians over all timed runs (after warm-up) of interleaved rounds, each case in its own "
            "process; peak RSS is that process's high-water mark (imports and weights included). Sizes are image "
            "pixels; the latent is 1/8 of the side. Random weights.", ""]


def _size(e: dict) -> str:
    return f"{e['base']}→{e['target']} (x{e['scale']})"


def pipeline_lines(pipelines: list[dict]) -> list[str]:
    """The per-process pipeline totals, stage times and peak RSS."""
    lines = ["## Pipelines", "",
             "A decode base · B LUA + decode target · C decode base + pixel SR (same trunk, RGB) · "
             "D decode target · E decode base + bicubic / Lanczos", "",
             "| family | config | size | A | B | C | D | E bicubic | E Lanczos | C/B | B/D | LUA stage "
             "| LUA / decode(target) | pixel SR stage | peak RSS B / C / D (MB) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for e in pipelines:
        rss = e.get("peak_rss_mb", {})
        lines.append(
            f"| {e['family']} | {e['config']} | {_size(e)} | {_fmt_s(e['A'])} | "
            f"{_fmt_s(e['B'])} | {_fmt_s(e['C'])} | {_fmt_s(e['D'])} | {_fmt_s(e['E_bicubic'])} | "
            f"{_fmt_s(e['E_lanczos'])} | {_fmt_r(e.get('C_over_B'))} | {_fmt_r(e.get('B_over_D'))} | "
            f"{_fmt_s(e.get('lua_s'))} | {_pct(e.get('lua_share_of_target_decode'))} | "
            f"{_fmt_s(e.get('pixel_sr_s'))} | "
            f"{_fmt_mb(rss.get('B/' + e['config']))} / {_fmt_mb(rss.get('C/' + e['config']))} / "
            f"{_fmt_mb(rss.get('D'))} |")
    return lines


def composed_lines(pipelines: list[dict]) -> list[str]:
    """B and C composed from stage medians with the pooled decode times."""
    lines = ["", "Composed from stage medians, with the decode pooled over every process that decoded the same "
             "size (less exposed to the machine's load swings than the per-process totals above):", "",
             "| family | config | size | decode base | decode target | LUA | pixel SR | B composed | C composed "
             "| C/B composed | B/D composed |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for e in pipelines:
        lines.append(
            f"| {e['family']} | {e['config']} | {_size(e)} | "
            f"{_fmt_s(e.get('pooled_decode_base_s'))} | {_fmt_s(e.get('pooled_decode_target_s'))} | "
            f"{_fmt_s(e.get('lua_s'))} | {_fmt_s(e.get('pixel_sr_s'))} | {_fmt_s(e.get('B_composed'))} | "
            f"{_fmt_s(e.get('C_composed'))} | {_fmt_r(e.get('C_over_B_composed'))} | "
            f"{_fmt_r(e.get('B_over_D_composed'))} |")
    return lines + [""]


def macs_lines(macs: list[dict]) -> list[str]:
    """Multiply-add counts of each pipeline at the issue's sizes."""
    lines = ["## Multiply-adds at the issue's sizes (counted, not timed)", "",
             "| family | config | size | A (GMAC) | B | C | D | C/B | LUA / decode(target) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in macs:
        lines.append(f"| {r['family']} | {r['config']} | {r['base']}→{r['base'] * r['scale']} | {r['A'] / 1e9:.0f} | "
                     f"{r['B'] / 1e9:.0f} | {r['C'] / 1e9:.0f} | {r['D'] / 1e9:.0f} | {r['C_over_B']:.2f}x | "
                     f"{100 * r['lua_share_of_D']:.1f} % |")
    return lines + [""]


def impl_lines(impl: list[dict]) -> list[str]:
    """Our network against the straightforward implementation (a compiled column when measured)."""
    compiled = any(i.get("speedup_compiled") for i in impl)
    lines = ["## Our network vs the straightforward implementation (same weights, same input)", "",
             "| config | latent | ours | straightforward | speed-up | max abs diff |"
             + (" speed-up compiled |" if compiled else ""),
             "|---|---|---|---|---|---|" + ("---|" if compiled else "")]
    for i in impl:
        extra = f" {_fmt_r(i.get('speedup_compiled'))} |" if compiled else ""
        lines.append(f"| {i['config']} | {i['latent']}² x{i['scale']} | {_fmt_s(i['ours_s'])} | "
                     f"{_fmt_s(i['plain_s'])} | {i['speedup']:.2f}x | {i['max_abs_diff']:.1e} |{extra}")
    return lines + [""]


def tiling_lines(tiling: list[dict]) -> list[str]:
    """Each tiling case's plan, time and pixel overheads, memory and accuracy."""
    lines = ["## Tiling (light config)", "",
             "Budgets are fractions of the engine's estimate of the plain pass's peak; *chunked*: one pass "
             "with windows and head rows in bands (same numbers; see `python -m lua_core.bench.chunking`).", "",
             "| case | latent | tiles | tile (h, w) / overlap | time | time overhead | pixel overhead "
             "| previous plan pixel overhead | peak RSS (MB) | max abs diff vs untiled |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for t in tiling:
        diff = t["max_abs_diff_vs_untiled"]
        lines.append(
            f"| {t['case']} | {t['latent']}² x{t['scale']} | {t['tiles']} | {t['tile']} / {t['overlap']}"
            f"{', chunked' if t.get('chunks') else ''} | "
            f"{_fmt_s(t['seconds'])} | {_pct(t['time_overhead'])} | {100 * t['pixel_overhead']:.1f} % | "
            f"{_pct(t.get('previous_plan_pixel_overhead'))} | {t['peak_rss_mb']:.0f} | "
            f"{'–' if diff is None else format(diff, '.3g')} |")
    return lines + [""]
