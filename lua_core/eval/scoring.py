"""Scoring the paths over the images: per-image rows of metrics and stage times, their summary, the picture."""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import torch

from ..metrics import pixel as M
from ..metrics.perceptual import PERCEPTUAL_NAMES
from ..toolkit.images import center_crop, load_image
from .pipeline import CEILING, LUA, LUA_VAE, PIXEL_ROUTE, STAGES, PathResult, PathRunner, latent_nmse, nearest_to
from .reuse import BaselineReuse

PIXEL_METRICS = ("psnr", "ssim", "lapvar", "latent_nmse")
TIME_KEYS = tuple(f"{st}_ms" for st in STAGES)
PICTURE_COLUMNS = (("base", "base decode"), ("latent_bicubic", "latent bicubic"),
                   (PIXEL_ROUTE, "user's route (bicubic)"), (LUA, "LUA"), (LUA_VAE, "LUA + VAE"),
                   ("hr", "ground truth"))
PerImage = dict[str, dict[str, dict[str, list]]]  # per_image[x{s}][path][metric] -> one value per image


def mean(values: Sequence[Optional[float]]) -> Optional[float]:
    """The mean of the values that are not None (inf when any is inf; None when none is left)."""
    vals = [v for v in values if v is not None]
    if not vals:
        return None
    return math.inf if any(math.isinf(v) for v in vals) else sum(vals) / len(vals)


def _median(values: Sequence[float]) -> Optional[float]:
    return statistics.median(values) if values else None


class Picture:
    """Keeps the tiles of the most detailed image seen so far (highest HR Laplacian variance)."""

    def __init__(self) -> None:
        self.score = -1.0
        self.name = ""
        self.rows: dict[int, dict[str, torch.Tensor]] = {}
        self.pending: dict[int, dict[str, torch.Tensor]] = {}

    def offer(self, scale: int, hr: torch.Tensor, base: torch.Tensor, outs: dict[str, PathResult]) -> None:
        tiles = {"hr": hr, "base": nearest_to(base, tuple(hr.shape[-2:]))}
        tiles.update({k: outs[k].image for k, _ in PICTURE_COLUMNS if k in outs})
        self.pending[scale] = {k: (v[0].clamp(0, 1) * 255).round().to(torch.uint8).cpu() for k, v in tiles.items()}

    def commit(self, name: str, score: float) -> None:
        if score > self.score:
            self.score, self.name, self.rows = score, name, self.pending
        self.pending = {}


class Scorer:
    """Pixel metrics, the loaded perceptual metrics and the stage times of one path's result."""

    def __init__(self, nets: dict[str, Any]) -> None:
        self.nets = nets
        self.metric_names = PIXEL_METRICS + tuple(n for n in PERCEPTUAL_NAMES if n in nets)

    def references(self, hr: torch.Tensor) -> dict[str, Any]:
        with torch.inference_mode():
            return {name: net.reference(hr) for name, net in self.nets.items()}

    def __call__(self, result: PathResult, hr: torch.Tensor, refs: dict[str, Any], z_hr: torch.Tensor) -> dict[str, float]:
        img = result.image
        row = {"psnr": M.psnr(img, hr), "ssim": M.ssim(img, hr), "lapvar": M.laplacian_variance(img),
               "latent_nmse": latent_nmse(result.latent, z_hr) if result.latent is not None else None}
        with torch.inference_mode():
            for name, net in self.nets.items():
                row[name] = float(net.distance(img, refs[name])[0])
        row.update({f"{k}_ms": v * 1000.0 for k, v in result.times.items()})
        return row


@dataclass
class Measurements:
    """Per-image rows (``per_image[x{s}][path][metric]``), the HR sharpness and the picture's tiles."""

    per_image: PerImage
    hr_lapvar: list[float] = field(default_factory=list)
    picture: Picture = field(default_factory=Picture)


@dataclass
class _ImageRun:
    """One image's crop and what every path of it is scored against (its references and HR latent)."""

    index: int
    name: str
    hr: torch.Tensor
    refs: dict[str, Any]
    z_hr: torch.Tensor


def measure(files: Sequence[Path], crops: Sequence[int], scales: tuple[int, ...], paths: tuple[str, ...],
            runner: PathRunner, scorer: Scorer, dev: torch.device, say: Callable[[str], None],
            reuse: Optional[BaselineReuse] = None) -> Measurements:
    """Run every path on every image at every scale and score it (or take its checked row from ``reuse``)."""
    keys = scorer.metric_names + TIME_KEYS
    got = Measurements({f"x{s}": {p: {m: [] for m in keys} for p in paths} for s in scales})
    reused = reuse.paths() if reuse is not None else set()

    def score(path: str, result: PathResult, image: _ImageRun, key: str) -> dict:
        if path in reused:
            return reuse.row(key, path, image.index, M.psnr(result.image, image.hr), image.name)  # type: ignore[union-attr]
        return scorer(result, image.hr, image.refs, image.z_hr)

    for i, f in enumerate(files):
        hr = center_crop(load_image(f, crops[i]), crops[i])[None].to(dev)
        refs = scorer.references(hr) if set(paths) - reused else {}
        got.hr_lapvar.append(M.laplacian_variance(hr))
        z_hr, t_hr = runner.hr_latent(hr)
        image = _ImageRun(i, f.name, hr, refs, z_hr)
        ceiling = runner.ceiling(z_hr, t_hr) if CEILING in paths else None
        for s in scales:
            outs, base = runner.run(hr, s, paths)
            rows = {p: score(p, r, image, f"x{s}") for p, r in outs.items()}
            if ceiling is not None:
                rows[CEILING] = score(CEILING, ceiling, image, f"x{s}")
            for p in paths:
                for k, v in rows[p].items():
                    got.per_image[f"x{s}"][p][k].append(v)
            got.picture.offer(s, hr, base, outs)
        got.picture.commit(f.name, got.hr_lapvar[-1])
        say(f"[{i + 1}/{len(files)}] {f.name}: PSNR {_progress_line(got.per_image, scales, paths)}")
    return got


def _progress_line(per_image: PerImage, scales: Sequence[int], paths: Sequence[str]) -> str:
    """The last image's PSNR of the main paths, per scale."""
    return "; ".join(f"x{s} " + ", ".join(f"{p} {per_image[f'x{s}'][p]['psnr'][-1]:.2f}"
                                          for p in (LUA, LUA_VAE, PIXEL_ROUTE, "latent_bicubic") if p in paths)
                     for s in scales)


def summarise(per_image: PerImage, metric_names: Sequence[str]) -> dict[str, Any]:
    """Means of the metrics and medians of the stage times, per scale and path."""
    results: dict[str, Any] = {}
    for key, by_path in per_image.items():
        results[key] = {}
        for p, vals in by_path.items():
            entry: dict[str, Any] = {m: mean(vals[m]) for m in metric_names}
            entry["time_ms"] = {st: _median(vals[f"{st}_ms"]) for st in STAGES}
            entry["time_ms"]["total"] = _median([sum(t) for t in zip(*(vals[k] for k in TIME_KEYS))])
            results[key][p] = entry
    return results
