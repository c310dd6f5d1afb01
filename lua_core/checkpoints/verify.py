"""Is a checkpoint on disk the one its weights-manifest entry describes?

:func:`verify_against_manifest` checks a file's size and sha256 (each file version is hashed once per
process); :func:`verify_layout` checks that a loaded network of an entry without a sha256 (the official
``lua_flux.pth``) has its preset's exact layout and the entry's family.
"""
from __future__ import annotations

import os
from typing import Any, Optional

from ..model.config import PRESETS, LUAConfig
from .manifest import ManifestEntry, PathLike, check_file

# the architecture fields an entry's preset fixes (the rest, e.g. in_scale, are not part of the file's layout)
LAYOUT_FIELDS: tuple[str, ...] = ("in_chans", "embed_dim", "depths", "num_heads", "window_size", "mlp_ratio",
                                  "head_num_feat", "scales")

# files that passed: (realpath, size, mtime_ns, expected sha256, expected size)
_VERIFIED: set[tuple] = set()


def verify_against_manifest(entry: Optional[ManifestEntry], path: PathLike) -> None:
    """Refuse a file on disk whose size or sha256 differs from its weights-manifest entry.

    Files without an entry (or entries without size/sha256) are not checked. A file
    that passed is remembered by path, size and mtime, so it is hashed once.
    """
    if entry is None or (entry.sha256 is None and entry.size is None):
        return
    st = os.stat(path)
    key = (os.path.realpath(path), st.st_size, st.st_mtime_ns, entry.sha256, entry.size)
    if key in _VERIFIED:
        return
    try:
        check_file(path, sha256=entry.sha256, size=entry.size)
    except ValueError as exc:
        raise ValueError(f"LUA model {entry.name!r} at {path} does not match the weights manifest ({exc}). "
                         f"Delete it so it is downloaded again, or rename it to use it as your own checkpoint") from exc
    _VERIFIED.add(key)


def layout_differences(entry: ManifestEntry, config: LUAConfig, family: str) -> list[str]:
    """How ``config`` and ``family`` differ from the entry's preset and family, one readable item per field."""
    want = PRESETS[entry.config]
    diffs = [f"{f} {getattr(config, f)!r} (expected {getattr(want, f)!r})" for f in LAYOUT_FIELDS
             if _comparable(getattr(config, f)) != _comparable(getattr(want, f))]
    if family != entry.family:
        diffs.append(f"family {family} (expected {entry.family})")
    return diffs


def verify_layout(entry: Optional[ManifestEntry], config: LUAConfig, family: str, path: PathLike) -> None:
    """A manifest entry without a sha256 (the official lua_flux.pth) must have its preset's exact layout.

    ``config`` and ``family`` (its name) are those of the network loaded from ``path``. The file was
    read weights-only and every tensor name and shape matched the architecture inferred from it
    (missing or unexpected tensors are refused by the loader); here that architecture must also be
    the entry's preset, so only the published layout (the paper config: 502 weights plus 54
    recomputable buffers, 556 tensors) is accepted.
    """
    if entry is None or entry.sha256 is not None or entry.config not in PRESETS:
        return
    diffs = layout_differences(entry, config, family)
    if diffs:
        raise ValueError(f"LUA model {entry.name!r} at {path} is not the published {entry.config}-config checkpoint: "
                         f"{'; '.join(diffs)}. Delete it so it is downloaded again, or rename it to use it as your "
                         f"own checkpoint")


def _comparable(value: Any) -> Any:
    """A list and a tuple of the same items compare equal (configs read from JSON carry lists)."""
    return tuple(value) if isinstance(value, (list, tuple)) else value
