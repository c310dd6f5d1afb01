"""The ``lua`` model folder: registration with ComfyUI's folder_paths and the dropdown list."""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Optional

import folder_paths

from ..lua_core.checkpoints.manifest import Manifest, ManifestEntry, load_cached

FOLDER_KEY = "lua"
EXTENSIONS = {".safetensors", ".sft", ".pth", ".pt"}
PACK_ROOT = Path(__file__).resolve().parent.parent


def default_folder() -> str:
    return os.path.join(folder_paths.models_dir, FOLDER_KEY)


def register_folder() -> None:
    """Add ``models/lua`` (and the pack's bundled ``weights/``) to the ``lua`` key.

    Paths already registered (e.g. from extra_model_paths.yaml) are kept in front;
    ours are appended only when missing, and our extensions are merged in.
    """
    paths_to_add = [default_folder(), str(PACK_ROOT / "weights")]
    entry = folder_paths.folder_names_and_paths.get(FOLDER_KEY)
    if entry is None:
        folder_paths.folder_names_and_paths[FOLDER_KEY] = (list(paths_to_add), set(EXTENSIONS))
        return
    paths, extensions = entry
    for p in paths_to_add:
        if p not in paths:
            paths.append(p)
    if isinstance(extensions, set):
        extensions.update(EXTENSIONS)  # an empty set would list every file, .part downloads included
    else:
        folder_paths.folder_names_and_paths[FOLDER_KEY] = (paths, set(extensions) | EXTENSIONS)


def load_manifest() -> Manifest:
    """The shipped weights manifest, parsed once and re-read when the file changes."""
    return load_cached()


AUTO = "auto"
# manifest status -> dropdown label suffix (entries without one, or official/release ones, show the bare name)
STATUS_LABELS = {"preview": "preview"}
_LABEL_RE = re.compile(r"^(?P<name>.+?) \((?P<label>[a-z]+)\)$")
# which adapter ``auto`` prefers for a family: lower is better
STATUS_RANK = {"official": 0, "release": 1, None: 2, "preview": 3}


def label_for(name: str, entry: Optional[ManifestEntry] = None) -> str:
    """The dropdown value of a file: ``name``, or ``name (preview)`` when its manifest entry is a preview."""
    entry = entry if entry is not None else manifest_entry(name)
    suffix = STATUS_LABELS.get(entry.status) if entry is not None and entry.status else None
    return f"{name} ({suffix})" if suffix else name


def strip_label(choice: str) -> str:
    """The file name behind a dropdown value (``x.safetensors (preview)`` -> ``x.safetensors``).

    Workflows saved while an adapter was a preview keep working after its status changes, and
    the other way round: the label is display only.
    """
    m = _LABEL_RE.match(choice or "")
    if m and m.group("label") in STATUS_LABELS.values():
        return m.group("name")
    return choice


def model_choices() -> list[str]:
    """``auto``, files on disk in any ``lua`` folder, then manifest entries not downloaded yet; labelled."""
    manifest = load_manifest()
    on_disk = list(folder_paths.get_filename_list(FOLDER_KEY))
    names = set(on_disk)
    missing = sorted(e.name for e in manifest.entries if e.name not in names)

    def label(name: str) -> str:
        try:
            entry = manifest.get(name)
        except (KeyError, ValueError):
            entry = None
        return label_for(name, entry) if entry is not None else name

    return [AUTO] + [label(n) for n in sorted(on_disk) + missing]


def best_for_family(family: str) -> Optional[ManifestEntry]:
    """The adapter ``auto`` picks for a family: official > release > unlabelled > preview, preferring
    files already on disk (an official checkpoint that is not downloaded yet loses to a bundled one)."""
    entries = [e for e in load_manifest().entries if e.family == family]
    present = [e for e in entries if find_local(e.name) is not None]
    pool = present or [e for e in entries if e.url is not None]
    if not pool:
        return None
    return min(pool, key=lambda e: (STATUS_RANK.get(e.status, 2), entries.index(e)))


def find_local(name: str) -> Optional[str]:
    return folder_paths.get_full_path(FOLDER_KEY, name)


def download_folder() -> str:
    """Where a manifest entry is downloaded: the first writable ``lua`` folder (models/lua by default)."""
    for p in folder_paths.get_folder_paths(FOLDER_KEY):
        if Path(p).resolve() == (PACK_ROOT / "weights").resolve():
            continue
        return p
    return default_folder()


def manifest_entry(name: str) -> Optional[ManifestEntry]:
    manifest = load_manifest()
    try:
        return manifest.get(name)
    except (KeyError, ValueError):
        return None
