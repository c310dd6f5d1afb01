"""Where things are: the repository, the shared data folder, the local cache."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_dir() -> Path:
    """The shared data folder: ``$LUA_SHARED_DIR`` or ``<repo>/../shared``."""
    env = os.environ.get("LUA_SHARED_DIR")
    return Path(env) if env else REPO_ROOT.parent / "shared"


def cache_dir() -> Path:
    """The local cache (runs, latents, metric weights, ComfyUI): ``<repo>/.cache``."""
    return REPO_ROOT / ".cache"


def expand_path(text: Optional[str | os.PathLike]) -> Optional[Path]:
    """Expand ``${shared}``, ``${repo}`` and ``~`` in a path string; ``None`` stays ``None``."""
    if text is None:
        return None
    text = str(text).replace("${shared}", str(shared_dir())).replace("${repo}", str(REPO_ROOT))
    return Path(text).expanduser()
