"""Metrics log (JSON lines of a training run: train and val records) and a small SVG plot of its loss curves (PNG too
when matplotlib is installed)."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Iterable, Optional

COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf")


class MetricsLog:
    """Append-only JSONL; on resume the lines after the resumed step are dropped."""

    def __init__(self, path: Path, enabled: bool = True) -> None:
        self.path = Path(path)
        self.enabled = enabled

    def truncate_after(self, step: int) -> None:
        if not self.enabled or not self.path.is_file():
            return
        keep = [ln for ln in self.path.read_text().splitlines() if ln.strip() and json.loads(ln).get("step", 0) <= step]
        self.path.write_text("".join(ln + "\n" for ln in keep))

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as f:
            f.write(json.dumps(record, sort_keys=True) + "\n")

    def records(self) -> list[dict[str, Any]]:
        if not self.path.is_file():
            return []
        return [json.loads(ln) for ln in self.path.read_text().splitlines() if ln.strip()]


def _value(r: dict[str, Any], key: str) -> Optional[float]:
    """``loss`` as logged, or a loss term averaged over the heads that logged it (``term/x<s>/<name>``)."""
    if key == "loss":
        vals = [r.get("loss")]
    else:
        vals = [v for k, v in r.items() if k.startswith("term/") and k.rsplit("/", 1)[-1] == key]
    vals = [v for v in vals if isinstance(v, (int, float)) and math.isfinite(v) and v > 0]
    return sum(vals) / len(vals) if vals else None


def _series(records: Iterable[dict[str, Any]], key: str) -> list[tuple[float, float]]:
    out = []
    for r in records:
        v = _value(r, key)
        if v is not None:
            out.append((r["step"], v))
    return out


def plot_losses(records: list[dict[str, Any]], path: Path, keys: Optional[list[str]] = None) -> list[Path]:
    """Write ``path`` (.svg, log-y) of the loss and of each term (mean over heads); a .png too if matplotlib is installed."""
    train = [r for r in records if r.get("kind") == "train"]
    if not train:
        return []
    keys = keys or ["loss"] + sorted({k.rsplit("/", 1)[-1] for r in train for k in r if k.startswith("term/")})
    series = {k: _series(train, k) for k in keys}
    series = {k: v for k, v in series.items() if v}
    written = [_svg(series, Path(path).with_suffix(".svg"), _stage_marks(train))]
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 4))
        for k, v in series.items():
            ax.plot([p[0] for p in v], [p[1] for p in v], label=k, lw=1)
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.legend(fontsize=7)
        fig.tight_layout()
        png = Path(path).with_suffix(".png")
        fig.savefig(png, dpi=100)
        plt.close(fig)
        written.append(png)
    except ImportError:
        pass
    return written


def _stage_marks(train: list[dict[str, Any]]) -> list[tuple[float, str]]:
    marks, last = [], None
    for r in train:
        if r.get("stage_name") != last:
            last = r.get("stage_name")
            marks.append((r["step"], str(last)))
    return marks


def _svg(series: dict[str, list[tuple[float, float]]], path: Path, marks: list[tuple[float, str]]) -> Path:
    w, h, pad = 720, 360, 48
    xs = [p[0] for v in series.values() for p in v]
    ys = [math.log10(p[1]) for v in series.values() for p in v]
    x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    y0, y1 = min(ys), max(ys) if max(ys) > min(ys) else min(ys) + 1

    def px(x: float) -> float:
        return pad + (x - x0) / (x1 - x0) * (w - 2 * pad)

    def py(y: float) -> float:
        return h - pad - (math.log10(y) - y0) / (y1 - y0) * (h - 2 * pad)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="11">',
             f'<rect width="{w}" height="{h}" fill="white"/>',
             f'<rect x="{pad}" y="{pad}" width="{w - 2 * pad}" height="{h - 2 * pad}" fill="none" stroke="#999"/>']
    for e in range(math.floor(y0), math.ceil(y1) + 1):
        if y0 <= e <= y1:
            parts.append(f'<text x="4" y="{py(10 ** e) + 4:.1f}">1e{e}</text>')
    for x, name in marks:
        parts.append(f'<line x1="{px(x):.1f}" y1="{pad}" x2="{px(x):.1f}" y2="{h - pad}" stroke="#ccc"/>')
        parts.append(f'<text x="{px(x) + 2:.1f}" y="{pad - 4}">{name}</text>')
    parts.append(f'<text x="{pad}" y="{h - 12}">step {int(x0)}</text><text x="{w - pad - 60}" y="{h - 12}">step {int(x1)}</text>')
    for i, (k, v) in enumerate(series.items()):
        c = COLORS[i % len(COLORS)]
        pts = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in v)
        parts.append(f'<polyline fill="none" stroke="{c}" stroke-width="1.2" points="{pts}"/>')
        parts.append(f'<text x="{w - pad + 4 - 150}" y="{pad + 14 + 13 * i}" fill="{c}">{k}</text>')
    parts.append("</svg>")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(parts))
    return path
