"""``evaluate()``: run every path over an image folder for one family and checkpoint, collect metrics and times.

Images: ``count`` files spread evenly over the sorted folder (``toolkit.photo_sets.pick_val_images``), each
centre-cropped to ``crop`` px (short sides below ``crop`` are first enlarged, bicubic; with ``native`` they are
not: such an image's crop is its short side rounded down to whole latent cells, so the ground truth holds no
interpolated pixels).  Metrics are means over images; stage times are medians over images.

The steps: :func:`_set_up` (adapter, family, images, autoencoder, paths, metrics, reused baselines),
:func:`~lua_core.eval.scoring.measure`, :func:`_result` (the JSON-able report) and the written reports.
"""
from __future__ import annotations

import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Union

import torch

from ..api import LUAModel
from ..families import LatentFamily, get_family
from ..metrics.perceptual import FETCH_COMMAND, PERCEPTUAL_NAMES, load_perceptual
from ..tae import load_tae
from ..vae_backends import load_vae
from .inputs import check_request, crop_sizes, open_checkpoint, pick_images, repo_relative
from .pipeline import LABELS, PathRunner
from .report import write_reports
from .reuse import BaselineReuse
from .scoring import PICTURE_COLUMNS, Measurements, Scorer, mean, measure, summarise


@dataclass
class _Setup:
    """Everything one evaluation runs with, decided before the first image is scored."""

    fam: LatentFamily
    checkpoint: Optional[dict[str, Any]]  # what the report says about the adapter's file (None: baselines only)
    scales: tuple[int, ...]
    folder: Path
    files: list[Path]
    crop: int  # the crop asked for
    native: bool
    crops: list[int]  # each image's crop side
    runner: PathRunner
    decoder: str
    paths: tuple[str, ...]
    skipped: dict[str, str]  # asked-for paths that cannot run here, with the reason
    scorer: Scorer
    no_metric: dict[str, str]  # perceptual metrics not computed, with the reason
    reuse: Optional[BaselineReuse]

    def summary(self) -> str:
        """The one-line announcement of the run."""
        return (f"{self.fam.label}: {len(self.files)} images, crop {self.crop}, scales {list(self.scales)}, "
                f"paths {', '.join(self.paths)}; "
                f"perceptual: {', '.join(self.scorer.nets) or 'none'}"
                + (f"; baselines reused from {self.reuse.source}" if self.reuse is not None else ""))


def _subject(family: Optional[str], checkpoint: Union[str, Path, LUAModel, None],
             dev: torch.device) -> tuple[LatentFamily, Optional[LUAModel], Optional[dict[str, Any]]]:
    """The family, the adapter (None: baselines only) and what the report says about its file."""
    model, info = open_checkpoint(checkpoint, family, dev) if checkpoint is not None else (None, None)
    if family is None and model is None:
        raise ValueError("pass a family when evaluating without a checkpoint")
    fam = model.family if model is not None else get_family(family)  # type: ignore[arg-type]
    return fam, model, info


def _autoencoder(fam: LatentFamily, tae: Any, vae: Optional[dict[str, Any]], dev: torch.device) -> tuple[Any, str]:
    """The judge's autoencoder (given, a full VAE, or the family's tiny one) and its name in the report."""
    if tae is None and vae is not None:
        tae = load_vae(fam, vae, device=dev)
    if tae is not None:
        return tae, getattr(tae, "name", type(tae).__name__)
    ae = load_tae(fam, device=dev)
    return ae, f"{getattr(ae, 'name', type(ae).__name__)} (tiny autoencoder)"


def _choose_paths(runner: PathRunner, scales: Sequence[int],
                  only_paths: Optional[Sequence[str]]) -> tuple[tuple[str, ...], dict[str, str]]:
    """The paths to run (all that can, or those of ``only_paths``) and the asked-for ones that cannot run here."""
    unavailable = runner.unavailable(scales)
    paths = runner.paths(scales) if only_paths is None else tuple(p for p in runner.paths(scales) if p in only_paths)
    skipped = {p: r for p, r in unavailable.items() if only_paths is None or p in only_paths}
    return paths, skipped


def _scorer(perceptual: bool, dev: torch.device,
            metrics_root: Union[str, Path, None]) -> tuple[Scorer, dict[str, str]]:
    """The scorer with the perceptual metrics that could be loaded, and why the others are missing."""
    if not perceptual:
        return Scorer({}), {n: "not computed (--no-perceptual)" for n in PERCEPTUAL_NAMES}
    nets, no_metric = load_perceptual(dev, metrics_root)
    return Scorer(nets), no_metric


def _set_up(family: Optional[str], checkpoint: Union[str, Path, LUAModel, None], images_dir: Union[str, Path, None],
            scales: Sequence[int], crop: int, count: int, native: bool, tae: Any, vae: Optional[dict[str, Any]],
            only_paths: Optional[Sequence[str]], perceptual: bool, metrics_root: Union[str, Path, None],
            reuse_baselines: Union[str, Path, None], dev: torch.device) -> _Setup:
    """Check the request and load what the run needs, in the order a failure is cheapest to report."""
    fam, model, info = _subject(family, checkpoint, dev)
    scales = check_request(fam, model, scales, crop)
    folder, files = pick_images(images_dir, count)
    crops = crop_sizes(files, crop, fam.crop_unit(scales), native)
    ae, decoder = _autoencoder(fam, tae, vae, dev)
    runner = PathRunner(ae, fam, model, dev)
    paths, skipped = _choose_paths(runner, scales, only_paths)
    scorer, no_metric = _scorer(perceptual, dev, metrics_root)
    reuse = BaselineReuse(reuse_baselines) if reuse_baselines is not None else None
    if reuse is not None:
        reuse.check(fam, decoder, folder, files, crop, native, scales, scorer.metric_names)
    return _Setup(fam, info, scales, folder, files, crop, native, crops, runner, decoder, paths, skipped, scorer,
                  no_metric, reuse)


def _environment(dev: torch.device) -> dict[str, Any]:
    return {"torch": torch.__version__, "device": str(dev), "threads": torch.get_num_threads(),
            "python": platform.python_version(), "machine": platform.machine(),
            "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}


def _result(setup: _Setup, got: Measurements, dev: torch.device) -> dict[str, Any]:
    """The JSON-able report of a run: settings, summary per scale and path, per-image rows, environment."""
    s = setup
    result: dict[str, Any] = {
        "family": s.fam.name, "family_label": s.fam.label, "checkpoint": s.checkpoint,
        "decoder": s.decoder,
        "images": {"dir": repo_relative(s.folder), "count": len(s.files),
                   "names": [str(p.relative_to(s.folder)) for p in s.files],
                   "crop": s.crop, **({"native": True, "crops": s.crops} if s.native else {})},
        "scales": list(s.scales), "paths": list(s.paths), "labels": {p: LABELS[p] for p in s.paths},
        "metrics": {**{m: "ok" for m in s.scorer.metric_names}, **s.no_metric}, "fetch_command": FETCH_COMMAND,
        **({"unavailable_paths": s.skipped} if s.skipped else {}),
        "hr_lapvar": mean(got.hr_lapvar),
        "results": summarise(got.per_image, s.scorer.metric_names),
        "per_image": got.per_image,
        "picture": {"image": got.picture.name,
                    "columns": [c for c, _ in PICTURE_COLUMNS if c in s.paths or c in ("base", "hr")]},
        "environment": _environment(dev),
    }
    if s.reuse is not None:
        result["baselines_reused_from"] = {"report": repo_relative(s.reuse.source),
                                           "date": s.reuse.report["environment"]["date"],
                                           "paths": sorted(s.reuse.paths() & set(s.paths))}
    return result


def evaluate(family: Optional[str] = None, checkpoint: Union[str, Path, LUAModel, None] = None,
             images_dir: Union[str, Path, None] = None, scales: Sequence[int] = (2, 4), crop: int = 256,
             count: int = 12, *, out_dir: Union[str, Path, None] = None, perceptual: bool = True,
             device: Union[str, torch.device] = "cpu", metrics_root: Union[str, Path, None] = None,
             tae: Any = None, log: Optional[Callable[[str], None]] = None,
             only_paths: Optional[Sequence[str]] = None,
             reuse_baselines: Union[str, Path, None] = None, native: bool = False,
             vae: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    """Evaluate LUA and the baselines; returns the JSON-able result (and writes the reports to ``out_dir``).

    ``checkpoint``: a path, a manifest name, a loaded :class:`LUAModel`, or None (baselines only; then
    ``family`` is required).  ``family`` defaults to the checkpoint's; ``{family}`` in ``out_dir`` is replaced.
    ``tae`` overrides the decoder (default: the family's tiny autoencoder).  ``perceptual=False`` skips
    LPIPS/DISTS; ``only_paths`` limits the paths run (the ceiling is always part of the report when listed).
    ``reuse_baselines``: an earlier report (``results.json`` or its folder) on the same images and settings
    whose baseline rows are taken instead of scoring those paths again (each checked by its PSNR).
    ``native``: no image is enlarged; one whose short side is below ``crop`` gets a smaller crop.
    ``vae``: a full VAE as the judge and the VAE teacher's encoder instead of the tiny autoencoder
    (``{"backend": "comfy" | "diffusers", "path": ...}``, :func:`lua_core.vae_backends.load_vae`).
    """
    t_start = time.perf_counter()
    say = log or (lambda _msg: None)
    dev = torch.device(device)
    setup = _set_up(family, checkpoint, images_dir, scales, crop, count, native, tae, vae, only_paths, perceptual,
                    metrics_root, reuse_baselines, dev)
    say(setup.summary())
    got = measure(setup.files, setup.crops, setup.scales, setup.paths, setup.runner, setup.scorer, dev, say,
                  setup.reuse)
    result = _result(setup, got, dev)
    result["wall_time_s"] = round(time.perf_counter() - t_start, 2)
    if out_dir is not None:
        out = Path(str(out_dir).replace("{family}", setup.fam.name))
        written = write_reports(result, out, got.picture.rows)
        result["out_dir"] = str(out)
        say("wrote " + ", ".join(str(p) for p in written))
    return result
