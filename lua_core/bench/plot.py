"""Plots of a benchmark report: always an SVG written by hand, a PNG too when matplotlib is importable."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Optional
from xml.sax.saxutils import escape

BARS = (("A", "A decode base", "#8c8c8c"), ("B", "B LUA + decode target", "#1f77b4"),
        ("C", "C decode + pixel SR", "#d62728"), ("D", "D decode target", "#2ca02c"),
        ("E_bicubic", "E decode + bicubic", "#ff7f0e"))


def _groups(report: dict) -> list[tuple[str, dict[str, Optional[float]]]]:
    out = []
    for e in report["summary"]["pipelines"]:
        label = f"{e['config']} {e['family']} {e['base']}→{e['target']}"
        out.append((label, {k: e.get(k) for k, _, _ in BARS}))
    return out


def svg_bars(report: dict) -> str:
    """Grouped bars of pipeline time per (config, size), log-scaled seconds."""
    groups = _groups(report)
    width, height, left, bottom, top = max(640, 110 + 150 * len(groups)), 420, 70, 80, 50
    plot_h = height - bottom - top
    vals = [v for _, g in groups for v in g.values() if v]
    if not vals:
        vals = [1.0]
    lo = math.floor(math.log10(min(vals))) if vals else -1
    hi = math.ceil(math.log10(max(vals))) if vals else 1
    hi = max(hi, lo + 1)

    def y(v: float) -> float:
        return top + plot_h * (1 - (math.log10(v) - lo) / (hi - lo))

    m = report.get("machine", {})
    title = (f"LUA pipelines, median time (log scale) — {m.get('gpu') or m.get('cpu', '')}, "
             f"{report['settings']['device']} {report['settings']['dtype']}")
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'font-family="sans-serif" font-size="11">',
             f'<rect width="{width}" height="{height}" fill="white"/>',
             f'<text x="{left}" y="20" font-size="13">{escape(title)}</text>']
    for e in range(lo, hi + 1):
        yy = y(10.0 ** e)
        parts.append(f'<line x1="{left}" x2="{width - 10}" y1="{yy:.1f}" y2="{yy:.1f}" stroke="#ddd"/>')
        label = f"{10.0 ** e:g} s"
        parts.append(f'<text x="{left - 6}" y="{yy + 4:.1f}" text-anchor="end">{label}</text>')
    bw = 22
    for gi, (label, g) in enumerate(groups):
        x0 = left + 20 + gi * 150
        for bi, (k, _, colour) in enumerate(BARS):
            v = g.get(k)
            if not v:
                continue
            yy = y(v)
            parts.append(f'<rect x="{x0 + bi * bw}" y="{yy:.1f}" width="{bw - 3}" height="{top + plot_h - yy:.1f}" '
                         f'fill="{colour}"><title>{escape(k)}: {v:.3g} s</title></rect>')
        parts.append(f'<text x="{x0 + 2.5 * bw:.0f}" y="{top + plot_h + 16}" text-anchor="middle">'
                     f'{escape(label)}</text>')
    for bi, (_, name, colour) in enumerate(BARS):
        lx = left + bi * 150
        parts.append(f'<rect x="{lx}" y="{height - 30}" width="12" height="12" fill="{colour}"/>')
        parts.append(f'<text x="{lx + 16}" y="{height - 20}">{escape(name)}</text>')
    parts.append(f'<line x1="{left}" x2="{left}" y1="{top}" y2="{top + plot_h}" stroke="black"/>')
    parts.append("</svg>")
    return "\n".join(parts)


def png_bars(report: dict, path: Path) -> bool:
    """The same chart through matplotlib, only if it is installed (it is not a dependency)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except Exception:  # noqa: BLE001 - optional
        return False
    groups = _groups(report)
    fig, ax = plt.subplots(figsize=(max(6, 1.8 * len(groups)), 4))
    bw = 0.16
    for bi, (k, name, colour) in enumerate(BARS):
        xs = [gi + bi * bw for gi, (_, g) in enumerate(groups) if g.get(k)]
        ys = [g[k] for _, g in groups if g.get(k)]
        ax.bar(xs, ys, bw, label=name, color=colour)
    ax.set_yscale("log")
    ax.set_ylabel("seconds (median)")
    ax.set_xticks([gi + 2 * bw for gi in range(len(groups))], [g for g, _ in groups], fontsize=8)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def write_plots(report: dict[str, Any], out_dir: Path) -> list[Path]:
    """Write ``bench.svg`` (and ``bench.png`` when possible); returns the paths written."""
    written = []
    if report["summary"]["pipelines"]:
        svg = out_dir / "bench.svg"
        svg.write_text(svg_bars(report))
        written.append(svg)
        png = out_dir / "bench.png"
        if png_bars(report, png):
            written.append(png)
    return written
