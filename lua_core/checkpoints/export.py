"""Writing our ``.safetensors`` checkpoints with metadata, atomically."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Mapping, Optional

import torch

from ..families import get_family
from ..model.network import LUANet
from .formats import METADATA_PREFIX, is_recomputable

FORMAT_VERSION = "1"


def checkpoint_metadata(model: LUANet, family: str, training: Optional[Mapping[str, Any]] = None) -> dict[str, str]:
    fam = get_family(family)
    if fam.model_channels != model.config.in_chans:
        raise ValueError(f"family {fam.name} has {fam.model_channels} latent channels but the model has {model.config.in_chans}")
    return {
        METADATA_PREFIX + "format_version": FORMAT_VERSION,
        METADATA_PREFIX + "config": model.config.to_json(),
        METADATA_PREFIX + "family": fam.name,
        METADATA_PREFIX + "scales": json.dumps(list(model.config.scales)),
        METADATA_PREFIX + "training": json.dumps(dict(training or {}), sort_keys=True),
    }


def save_checkpoint(model: LUANet, path: str | os.PathLike, family: str, *, training: Optional[Mapping[str, Any]] = None,
                    dtype: torch.dtype = torch.float16) -> Path:
    """Save ``model`` as ``.safetensors`` (recomputable buffers dropped) with LUA metadata.

    Writes to a temporary file in the same folder and renames it into place.
    """
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix.lower() != ".safetensors":
        raise ValueError(f"LUA checkpoints are saved as .safetensors, got {path.name}")
    metadata = checkpoint_metadata(model, family, training)
    tensors = {
        k: (v.detach().to("cpu", dtype) if v.is_floating_point() else v.detach().cpu()).contiguous()
        for k, v in model.state_dict().items() if not is_recomputable(k)
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=metadata)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; a ComfyUI running as another user must read it
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
