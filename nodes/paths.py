"""The ``lua`` model folder: registration with ComfyUI's folder_paths and the dropdown list."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import folder_paths

from ..lua_core.checkpoints.manifest import Manifest, ManifestEntry

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
    return Manifest.load()


def model_choices() -> list[str]:
    """Files on disk in any ``lua`` folder, then manifest entries not downloaded yet."""
    on_disk = list(folder_paths.get_filename_list(FOLDER_KEY))
    names = set(on_disk)
    missing = sorted(e.name for e in load_manifest().entries if e.name not in names)
    return sorted(on_disk) + missing


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
