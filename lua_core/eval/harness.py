"""``evaluate()``: run every path over an image folder for one family and checkpoint, collect metrics and times.

Images: ``count`` files spread evenly over the sorted folder (``photo_sets.pick_val_images``), each
centre-cropped to ``crop`` px (short sides below ``crop`` are first enlarged, bicubic; with ``native`` they are
not: such an image's crop is its short side rounded down to whole latent cells, so the ground truth holds no
interpolated pixels).  Metrics are means
over images; stage times are medians over images.
"""
from __future__ import annotations

import json
import math
import os
import platform
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Union

import torch

from ..api import LUAModel, load_model
from ..checkpoints.manifest import file_sha256
from ..families import LatentFamily, get_family
from ..images import center_crop, load_image, native_crop_side
from ..locations import REPO_ROOT as REPO
from ..locations import shared_dir
from ..metrics import pixel as M
from ..metrics.perceptual import FETCH_COMMAND, PERCEPTUAL_NAMES, load_perceptual
from ..photo_sets import holdout_photos, pick_val_images, spread
from ..tae import load_tae
from ..vae_backends import load_vae
from .pipeline import CEILING, LABELS, LUA, LUA_VAE, PIXEL_ROUTE, STAGES, PathResult, PathRunner, latent_nmse, nearest_to
from .report import write_reports

PIXEL_METRICS = ("psnr", "ssim", "lapvar", "latent_nmse")
TIME_KEYS = tuple(f"{st}_ms" for st in STAGES)
PICTURE_COLUMNS = (("base", "base decode"), ("latent_bicubic", "latent bicubic"),
                   (PIXEL_ROUTE, "user's route (bicubic)"), (LUA, "LUA"), (LUA_VAE, "LUA + VAE"),
                   ("hr", "ground truth"))


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


def _open_checkpoint(checkpoint: Union[str, Path, LUAModel], family: Optional[str],
                     dev: torch.device) -> tuple[LUAModel, dict[str, Any]]:
    """The adapter to evaluate on ``dev`` and what the report says about its file."""
    if isinstance(checkpoint, LUAModel):
        model = checkpoint
    else:
        model = load_model(resolve_checkpoint(checkpoint), device=dev, dtype="fp32", family=family)
    model.to(dev)
    info = {"name": model.path.name if model.path else "in-memory model", "description": model.describe(),
            "path": _rel(model.path) if model.path else None,
            "sha256": file_sha256(model.path) if model.path else None, "scales": list(model.scales)}
    if family is not None and get_family(family).name != model.family.name:
        raise ValueError(f"the checkpoint is a {model.family.name} adapter, not {family}")
    return model, info


def crop_sizes(files: Sequence[Path], crop: int, unit: int, native: bool) -> list[int]:
    """Each image's crop side: ``crop``, or with ``native`` at most its short side (rounded down to ``unit``)."""
    if not native:
        return [crop] * len(files)
    try:
        return [native_crop_side(f, crop, unit) for f in files]
    except ValueError as exc:
        raise ValueError(f"{exc} (or drop --native)") from None


def _check_request(fam: LatentFamily, model: Optional[LUAModel], scales: Sequence[int], crop: int) -> tuple[int, ...]:
    """The scales as integers, after checking them and the crop against the family and the adapter."""
    scales = tuple(int(s) for s in scales)
    if not scales or any(s < 2 for s in scales):
        raise ValueError(f"scales must be integers >= 2, got {scales}")
    if model is not None and any(s > max(model.scales) for s in scales):
        raise ValueError(f"scales {scales} exceed the checkpoint's largest head x{max(model.scales)}")
    unit = fam.crop_unit(scales)
    if crop <= 0 or crop % unit:
        raise ValueError(f"crop must be a positive multiple of {unit} px for {fam.label} at x{max(scales)} "
                         f"(the LR crop must be whole latent cells), got {crop}")
    return scales


def _pick_images(images_dir: Union[str, Path, None], count: int) -> tuple[Path, list[Path]]:
    """``(folder, files)``: ``count`` images of a folder, or of the held-out photographs (:data:`HOLDOUT`)."""
    if str(images_dir) == HOLDOUT:
        folder = shared_dir() / "data" / "train"
        return folder, spread(holdout_photos(folder), count)
    folder = Path(images_dir) if images_dir is not None else default_images_dir()
    return folder, pick_val_images(folder, count)


class _Scorer:
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


class _Reuse:
    """Baseline rows of an earlier report on the same images, crop, family and decoder.

    The baselines do not depend on the checkpoint, so a candidate's evaluation scores only its own path
    and takes the others' rows from the earlier report.  Each reused row is checked: the path's image is
    still made and its PSNR must match the stored one.
    """

    TOLERANCE_DB = 0.01

    def __init__(self, source: Union[str, Path]) -> None:
        self.source = Path(source)
        if self.source.is_dir():
            self.source = self.source / "results.json"
        if not self.source.is_file():
            raise FileNotFoundError(f"no earlier report to reuse baselines from: {self.source}")
        self.report = json.loads(self.source.read_text())
        self.per_image: dict[str, dict[str, dict[str, list]]] = self.report["per_image"]

    def check(self, fam: LatentFamily, decoder: str, folder: Path, files: Sequence[Path], crop: int, native: bool,
              scales: Sequence[int], metric_names: Sequence[str]) -> None:
        """Refuse a report made on other images, crop, scales, family, decoder or metrics."""
        old, names = self.report, [str(p.relative_to(folder)) for p in files]
        wanted = {"family": fam.name, "decoder": decoder, "crop": crop, "native crops": native, "image names": names}
        found = {"family": old["family"], "decoder": old["decoder"], "crop": old["images"]["crop"],
                 "native crops": old["images"].get("native", False), "image names": old["images"]["names"]}
        for key, value in wanted.items():
            if found[key] != value:
                shown = "" if key == "image names" else f" ({found[key]!r}; this run: {value!r})"
                raise ValueError(f"{self.source} was made with other {key}{shown}; baselines can only be reused "
                                 f"from a report on the same images and settings")
        missing = [f"x{s}" for s in scales if f"x{s}" not in self.per_image]
        unscored = [m for m in metric_names if old["metrics"].get(m) != "ok"]
        if missing or unscored:
            raise ValueError(f"{self.source} lacks {', '.join(missing + unscored)}; evaluate without reusing baselines")

    def paths(self) -> set[str]:
        """The paths whose rows can be reused (every path of the report but LUA)."""
        return {p for rows in self.per_image.values() for p in rows if p != LUA}

    def row(self, scale_key: str, path: str, index: int, psnr_now: float, image: str) -> dict[str, float]:
        """The stored row of one image, after checking its PSNR against the image made now."""
        stored = {k: v[index] for k, v in self.per_image[scale_key][path].items()}
        if abs(stored["psnr"] - psnr_now) > self.TOLERANCE_DB:
            raise ValueError(f"{path} {scale_key} on {image} measures {psnr_now:.3f} dB now and {stored['psnr']:.3f} dB "
                             f"in {self.source}; the baselines differ, so evaluate without reusing them")
        return stored


@dataclass
class _Measurements:
    """Per-image rows (``per_image[x{s}][path][metric]``), the HR sharpness and the picture's tiles."""

    per_image: dict[str, dict[str, dict[str, list]]]
    hr_lapvar: list[float] = field(default_factory=list)
    picture: _Picture = field(default_factory=_Picture)


def _measure(files: Sequence[Path], crops: Sequence[int], scales: tuple[int, ...], paths: tuple[str, ...], runner: PathRunner,
             scorer: _Scorer, dev: torch.device, say: Callable[[str], None],
             reuse: Optional[_Reuse] = None) -> _Measurements:
    """Run every path on every image at every scale and score it (or take its checked row from ``reuse``)."""
    keys = scorer.metric_names + TIME_KEYS
    got = _Measurements({f"x{s}": {p: {m: [] for m in keys} for p in paths} for s in scales})
    reused = reuse.paths() if reuse is not None else set()

    def score(path: str, result: PathResult, hr: torch.Tensor, refs: dict[str, Any], z_hr: torch.Tensor,
              key: str, i: int) -> dict:
        if path in reused:
            return reuse.row(key, path, i, M.psnr(result.image, hr), files[i].name)  # type: ignore[union-attr]
        return scorer(result, hr, refs, z_hr)

    for i, f in enumerate(files):
        hr = center_crop(load_image(f, crops[i]), crops[i])[None].to(dev)
        refs = scorer.references(hr) if set(paths) - reused else {}
        got.hr_lapvar.append(M.laplacian_variance(hr))
        z_hr, t_hr = runner.hr_latent(hr)
        ceiling = runner.ceiling(z_hr, t_hr) if CEILING in paths else None
        for s in scales:
            outs, base = runner.run(hr, s, paths)
            rows = {p: score(p, r, hr, refs, z_hr, f"x{s}", i) for p, r in outs.items()}
            if ceiling is not None:
                rows[CEILING] = score(CEILING, ceiling, hr, refs, z_hr, f"x{s}", i)
            for p in paths:
                for k, v in rows[p].items():
                    got.per_image[f"x{s}"][p][k].append(v)
            got.picture.offer(s, hr, base, outs)
        got.picture.commit(f.name, got.hr_lapvar[-1])
        msg = "; ".join(f"x{s} " + ", ".join(f"{p} {got.per_image[f'x{s}'][p]['psnr'][-1]:.2f}"
                                             for p in (LUA, LUA_VAE, PIXEL_ROUTE, "latent_bicubic") if p in paths)
                        for s in scales)
        say(f"[{i + 1}/{len(files)}] {f.name}: PSNR {msg}")
    return got


def _summarise(per_image: dict[str, dict[str, dict[str, list]]], metric_names: Sequence[str]) -> dict[str, Any]:
    """Means of the metrics and medians of the stage times, per scale and path."""
    results: dict[str, Any] = {}
    for key, by_path in per_image.items():
        results[key] = {}
        for p, vals in by_path.items():
            entry: dict[str, Any] = {m: _mean(vals[m]) for m in metric_names}
            entry["time_ms"] = {st: _median(vals[f"{st}_ms"]) for st in STAGES}
            entry["time_ms"]["total"] = _median([sum(t) for t in zip(*(vals[k] for k in TIME_KEYS))])
            results[key][p] = entry
    return results


def _environment(dev: torch.device) -> dict[str, Any]:
    return {"torch": torch.__version__, "device": str(dev), "threads": torch.get_num_threads(),
            "python": platform.python_version(), "machine": platform.machine(),
            "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}


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
    model, ckpt_info = _open_checkpoint(checkpoint, family, dev) if checkpoint is not None else (None, None)
    if family is None and model is None:
        raise ValueError("pass a family when evaluating without a checkpoint")
    fam = model.family if model is not None else get_family(family)  # type: ignore[arg-type]
    scales = _check_request(fam, model, scales, crop)
    folder, files = _pick_images(images_dir, count)
    crops = crop_sizes(files, crop, fam.crop_unit(scales), native)
    if tae is None and vae is not None:
        tae = load_vae(fam, vae, device=dev)
    tiny = tae is None
    ae = tae if tae is not None else load_tae(fam, device=dev)
    runner = PathRunner(ae, fam, model, dev)
    unavailable = runner.unavailable(scales)
    paths = runner.paths(scales) if only_paths is None else tuple(p for p in runner.paths(scales) if p in only_paths)
    skipped = {p: r for p, r in unavailable.items() if only_paths is None or p in only_paths}
    nets, no_metric = load_perceptual(dev, metrics_root) if perceptual else ({}, {
        n: "not computed (--no-perceptual)" for n in PERCEPTUAL_NAMES})
    scorer = _Scorer(nets)
    decoder_name = getattr(ae, "name", type(ae).__name__)
    decoder = f"{decoder_name} (tiny autoencoder)" if tiny else decoder_name
    reuse = _Reuse(reuse_baselines) if reuse_baselines is not None else None
    if reuse is not None:
        reuse.check(fam, decoder, folder, files, crop, native, scales, scorer.metric_names)
    say(f"{fam.label}: {len(files)} images, crop {crop}, scales {list(scales)}, paths {', '.join(paths)}; "
        f"perceptual: {', '.join(nets) or 'none'}"
        + (f"; baselines reused from {reuse.source}" if reuse is not None else ""))
    got = _measure(files, crops, scales, paths, runner, scorer, dev, say, reuse)
    result: dict[str, Any] = {
        "family": fam.name, "family_label": fam.label, "checkpoint": ckpt_info,
        "decoder": decoder,
        "images": {"dir": _rel(folder), "count": len(files), "names": [str(p.relative_to(folder)) for p in files],
                   "crop": crop, **({"native": True, "crops": crops} if native else {})},
        "scales": list(scales), "paths": list(paths), "labels": {p: LABELS[p] for p in paths},
        "metrics": {**{m: "ok" for m in scorer.metric_names}, **no_metric}, "fetch_command": FETCH_COMMAND,
        **({"unavailable_paths": skipped} if skipped else {}),
        "hr_lapvar": _mean(got.hr_lapvar),
        "results": _summarise(got.per_image, scorer.metric_names),
        "per_image": got.per_image,
        "picture": {"image": got.picture.name,
                    "columns": [c for c, _ in PICTURE_COLUMNS if c in paths or c in ("base", "hr")]},
        "environment": _environment(dev),
    }
    if reuse is not None:
        result["baselines_reused_from"] = {"report": _rel(reuse.source), "date": reuse.report["environment"]["date"],
                                           "paths": sorted(reuse.paths() & set(paths))}
    result["wall_time_s"] = round(time.perf_counter() - t_start, 2)
    if out_dir is not None:
        out = Path(str(out_dir).replace("{family}", fam.name))
        written = write_reports(result, out, got.picture.rows)
        result["out_dir"] = str(out)
        say("wrote " + ", ".join(str(p) for p in written))
    return result
