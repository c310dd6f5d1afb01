"""What one evaluation runs on: the adapter's file, the scales and crop it is asked for, the images and their crops."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import torch

from ..api import LUAModel, load_model
from ..checkpoints.manifest import file_sha256
from ..families import LatentFamily, get_family
from ..locations import REPO_ROOT as REPO
from ..locations import shared_dir
from ..toolkit.images import native_crop_side
from ..toolkit.photo_sets import holdout_photos, pick_val_images, spread

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


def repo_relative(path: Path) -> str:
    """``path`` relative to the repository when it is inside the repository's parent (``../shared/...``)."""
    p, repo = path.resolve(), REPO.resolve()
    if p == repo.parent or repo.parent in p.parents:
        return os.path.relpath(p, repo)
    return str(path)


def open_checkpoint(checkpoint: Union[str, Path, LUAModel], family: Optional[str],
                    dev: torch.device) -> tuple[LUAModel, dict[str, Any]]:
    """The adapter to evaluate on ``dev`` and what the report says about its file."""
    if isinstance(checkpoint, LUAModel):
        model = checkpoint
    else:
        model = load_model(resolve_checkpoint(checkpoint), device=dev, dtype="fp32", family=family)
    model.to(dev)
    info = {"name": model.path.name if model.path else "in-memory model", "description": model.describe(),
            "path": repo_relative(model.path) if model.path else None,
            "sha256": file_sha256(model.path) if model.path else None, "scales": list(model.scales)}
    if family is not None and get_family(family).name != model.family.name:
        raise ValueError(f"the checkpoint is a {model.family.name} adapter, not {family}")
    return model, info


def check_request(fam: LatentFamily, model: Optional[LUAModel], scales: Sequence[int], crop: int) -> tuple[int, ...]:
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


def pick_images(images_dir: Union[str, Path, None], count: int) -> tuple[Path, list[Path]]:
    """``(folder, files)``: ``count`` images of a folder, or of the held-out photographs (:data:`HOLDOUT`)."""
    if str(images_dir) == HOLDOUT:
        folder = shared_dir() / "data" / "train"
        return folder, spread(holdout_photos(folder), count)
    folder = Path(images_dir) if images_dir is not None else default_images_dir()
    return folder, pick_val_images(folder, count)


def crop_sizes(files: Sequence[Path], crop: int, unit: int, native: bool) -> list[int]:
    """Each image's crop side: ``crop``, or with ``native`` at most its short side (rounded down to ``unit``)."""
    if not native:
        return [crop] * len(files)
    try:
        return [native_crop_side(f, crop, unit) for f in files]
    except ValueError as exc:
        raise ValueError(f"{exc} (or drop --native)") from None
