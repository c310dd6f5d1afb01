"""``evaluate()``: run every path over an image folder for one family and checkpoint, collect metrics and times.

Images: ``count`` files spread evenly over the sorted folder (``train.validate.pick_val_images``), each
centre-cropped to ``crop`` px (short sides below ``crop`` are first enlarged, bicubic).  Metrics are means
over images; stage times are medians over images.
"""
from __future__ import annotations

import math
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Union

import torch

from ..api import LUAModel, load_model
from ..checkpoints.manifest import file_sha256
from ..families import get_family
from ..tae import load_tae, shared_dir
from ..train.data import load_image
from ..train.validate import center_crop, pick_val_images, spread
from . import metrics as M
from .perceptual import FETCH_COMMAND, PERCEPTUAL_NAMES, load_perceptual
from .pipeline import CEILING, LABELS, LUA, STAGES, PathRunner, PathResult, nearest_to

REPO = Path(__file__).resolve().parents[2]
PIXEL_METRICS = ("psnr", "ssim", "lapvar")
TIME_KEYS = tuple(f"{st}_ms" for st in STAGES)
PICTURE_COLUMNS = (("base", "base decode"), ("latent_bicubic", "latent bicubic"),
                   ("pixel_bicubic", "pixel bicubic"), (LUA, "LUA"), ("hr", "ground truth"))


# ``images_dir`` value that selects the held-out clean photographs of the training folder.
HOLDOUT = "holdout"


def default_images_dir() -> Path:
    """``<shared>/data/val`` (``$LUA_SHARED_DIR`` or ``<repo>/../shared``)."""
    return shared_dir() / "data" / "val"


def resolve_checkpoint(name: Union[str, Path]) -> Path:
    """A checkpoint path, or a name from ``weights_manifest.json`` (bundled file or ``models/lua`` download)."""
    p = Path(name).expanduser()
    if p.is_file():
        return p
    if not p.is_absolute() and (REPO / p).is_file():
        return REPO / p
    from ..checkpoints.manifest import Manifest

    manifest = Manifest.load()
    entry = manifest.by_filename(str(name)) if str(name) not in manifest else manifest.get(str(name))
    if entry is None:
        raise FileNotFoundError(f"checkpoint {name!r} is neither a file nor a name in weights_manifest.json "
                                f"(known: {', '.join(manifest.names())})")
    bundled = manifest.bundled_path(entry)
    if bundled is not None and bundled.is_file():
        return bundled
    for folder in (REPO.parent.parent / "models" / "lua", REPO / "models" / "lua", REPO / "weights"):
        if (folder / entry.filename).is_file():
            return folder / entry.filename
    raise FileNotFoundError(f"{entry.name} is listed in weights_manifest.json but not downloaded "
                            f"(url: {entry.url}); put it in ComfyUI's models/lua folder or pass its path")


def _mean(values: Sequence[float]) -> Optional[float]:
    vals = [v for v in values if v is not None]
    if not vals:
        return None
    return math.inf if any(math.isinf(v) for v in vals) else sum(vals) / len(vals)


def _median(values: Sequence[float]) -> Optional[float]:
    return statistics.median(values) if values else None


def _rel(path: Path) -> str:
    """``path`` relative to the repository when it is inside the repository's parent (``../shared/...``)."""
    p, repo = path.resolve(), REPO.resolve()
    if p == repo.parent or repo.parent in p.parents:
        return os.path.relpath(p, repo)
    return str(path)


class _Picture:
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


def evaluate(family: Optional[str] = None, checkpoint: Union[str, Path, LUAModel, None] = None,
             images_dir: Union[str, Path, None] = None, scales: Sequence[int] = (2, 4), crop: int = 256,
             count: int = 12, *, out_dir: Union[str, Path, None] = None, perceptual: bool = True,
             device: Union[str, torch.device] = "cpu", metrics_root: Union[str, Path, None] = None,
             tae: Any = None, log: Optional[Callable[[str], None]] = None,
             only_paths: Optional[Sequence[str]] = None) -> dict[str, Any]:
    """Evaluate LUA and the baselines; returns the JSON-able result (and writes the reports to ``out_dir``).

    ``checkpoint``: a path, a manifest name, a loaded :class:`LUAModel`, or None (baselines only; then
    ``family`` is required).  ``family`` defaults to the checkpoint's; ``{family}`` in ``out_dir`` is replaced.  ``tae`` overrides the decoder
    (default: the family's tiny autoencoder).  ``perceptual=False`` skips LPIPS/DISTS; ``only_paths``
    limits the paths run (the ceiling is always part of the report when listed).
    """
    t_start = time.perf_counter()
    say = log or (lambda _msg: None)
    dev = torch.device(device)
    model: Optional[LUAModel] = None
    ckpt_info: Optional[dict[str, Any]] = None
    if checkpoint is not None:
        if isinstance(checkpoint, LUAModel):
            model = checkpoint
        else:
            path = resolve_checkpoint(checkpoint)
            model = load_model(path, device=dev, dtype="fp32", family=family)
        model.to(dev)
        ckpt_info = {"name": model.path.name if model.path else "in-memory model", "description": model.describe(),
                     "path": _rel(model.path) if model.path else None,
                     "sha256": file_sha256(model.path) if model.path else None, "scales": list(model.scales)}
        if family is not None and get_family(family).name != model.family.name:
            raise ValueError(f"the checkpoint is a {model.family.name} adapter, not {family}")
    if family is None and model is None:
        raise ValueError("pass a family when evaluating without a checkpoint")
    fam = model.family if model is not None else get_family(family)  # type: ignore[arg-type]
    scales = tuple(int(s) for s in scales)
    if not scales or any(s < 2 for s in scales):
        raise ValueError(f"scales must be integers >= 2, got {scales}")
    if model is not None and any(s > max(model.scales) for s in scales):
        raise ValueError(f"scales {scales} exceed the checkpoint's largest head x{max(model.scales)}")
    unit = 8 * fam.pack * max(scales)
    if crop <= 0 or crop % unit:
        raise ValueError(f"crop must be a positive multiple of {unit} px for {fam.label} at x{max(scales)} "
                         f"(the LR crop must be whole latent cells), got {crop}")
    if str(images_dir) == HOLDOUT:
        from ..train.photos import holdout_photos

        held = holdout_photos(shared_dir() / "data" / "train")
        files = spread(held, count)
        folder = shared_dir() / "data" / "train"
    else:
        folder = Path(images_dir) if images_dir is not None else default_images_dir()
        files = pick_val_images(folder, count)

    ae = tae if tae is not None else load_tae(fam, device=dev)
    decoder_name = getattr(ae, "name", type(ae).__name__)
    runner = PathRunner(ae, fam, model, dev)
    paths = runner.paths() if only_paths is None else tuple(p for p in runner.paths() if p in only_paths)
    nets, unavailable = load_perceptual(dev, metrics_root) if perceptual else ({}, {
        n: "not computed (--no-perceptual)" for n in PERCEPTUAL_NAMES})
    metric_names = PIXEL_METRICS + tuple(n for n in PERCEPTUAL_NAMES if n in nets)
    say(f"{fam.label}: {len(files)} images, crop {crop}, scales {list(scales)}, paths {', '.join(paths)}; "
        f"perceptual: {', '.join(nets) or 'none'}")

    per_image: dict[str, dict[str, dict[str, list]]] = {
        f"x{s}": {p: {m: [] for m in metric_names + TIME_KEYS} for p in paths} for s in scales}
    hr_lapvar: list[float] = []
    picture = _Picture()

    def score(result: PathResult, hr: torch.Tensor, refs: dict[str, Any]) -> dict[str, float]:
        img = result.image
        row = {"psnr": M.psnr(img, hr), "ssim": M.ssim(img, hr), "lapvar": M.laplacian_variance(img)}
        with torch.inference_mode():
            for name, net in nets.items():
                row[name] = float(net.distance(img, refs[name])[0])
        row.update({f"{k}_ms": v * 1000.0 for k, v in result.times.items()})
        return row

    for i, f in enumerate(files):
        hr = center_crop(load_image(f, crop), crop)[None].to(dev)
        with torch.inference_mode():
            refs = {name: net.reference(hr) for name, net in nets.items()}
        hr_lapvar.append(M.laplacian_variance(hr))
        ceiling_row = score(runner.ceiling(hr), hr, refs)
        for s in scales:
            outs, base = runner.run(hr, s, paths)
            rows = {CEILING: ceiling_row, **{p: score(r, hr, refs) for p, r in outs.items()}}
            for p in paths:
                for k, v in rows[p].items():
                    per_image[f"x{s}"][p][k].append(v)
            picture.offer(s, hr, base, outs)
        picture.commit(f.name, hr_lapvar[-1])
        msg = "; ".join(f"x{s} " + ", ".join(f"{p} {per_image[f'x{s}'][p]['psnr'][-1]:.2f}"
                                             for p in (LUA, "latent_bicubic", "pixel_bicubic") if p in paths)
                        for s in scales)
        say(f"[{i + 1}/{len(files)}] {f.name}: PSNR {msg}")

    results: dict[str, Any] = {}
    for key, by_path in per_image.items():
        results[key] = {}
        for p, vals in by_path.items():
            entry: dict[str, Any] = {m: _mean(vals[m]) for m in metric_names}
            entry["time_ms"] = {st: _median(vals[f"{st}_ms"]) for st in STAGES}
            entry["time_ms"]["total"] = _median([sum(t) for t in zip(*(vals[k] for k in TIME_KEYS))])
            results[key][p] = entry

    metric_status = {m: "ok" for m in metric_names}
    for name, why in unavailable.items():
        metric_status[name] = why
    result: dict[str, Any] = {
        "family": fam.name, "family_label": fam.label, "checkpoint": ckpt_info,
        "decoder": f"{decoder_name} (tiny autoencoder)" if tae is None else decoder_name,
        "images": {"dir": _rel(folder), "count": len(files), "names": [str(p.relative_to(folder)) for p in files],
                   "crop": crop},
        "scales": list(scales), "paths": list(paths), "labels": {p: LABELS[p] for p in paths},
        "metrics": metric_status, "fetch_command": FETCH_COMMAND,
        "hr_lapvar": _mean(hr_lapvar),
        "results": results,
        "per_image": per_image,
        "picture": {"image": picture.name, "columns": [c for c, _ in PICTURE_COLUMNS if c != LUA or model]},
        "environment": {"torch": torch.__version__, "device": str(dev), "threads": torch.get_num_threads(),
                        "python": platform.python_version(), "machine": platform.machine(),
                        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")},
    }
    result["wall_time_s"] = round(time.perf_counter() - t_start, 2)
    if out_dir is not None:
        from .report import write_reports

        out = Path(str(out_dir).replace("{family}", fam.name))
        written = write_reports(result, out, picture.rows)
        result["out_dir"] = str(out)
        say("wrote " + ", ".join(str(p) for p in written))
    return result
