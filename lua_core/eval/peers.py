"""Small pixel super-resolution networks (FSRCNN, ESPCN) from ``<shared>/peers``: the user's
"decode + upscale model" route in side-by-side evaluations (never bundled).

They run through OpenCV's ``dnn_superres`` (``opencv-contrib-python-headless``, an optional evaluation
dependency: ``requirements-eval.txt``), on 8-bit BGR images as OpenCV's API takes them.
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import torch

from ..locations import shared_dir

PEERS = ("fsrcnn", "espcn")
INSTALL = "pip install 'opencv-contrib-python-headless>=4.8,<4.11'"


def peers_dir() -> Path:
    return shared_dir() / "peers"


def peer_file(name: str, scale: int, folder: Optional[Union[str, Path]] = None) -> Path:
    """``<peers>/FSRCNN_x2.pb`` and the like."""
    if name not in PEERS:
        raise ValueError(f"unknown upscale model {name!r}; known: {', '.join(PEERS)}")
    return Path(folder or peers_dir()) / f"{name.upper()}_x{scale}.pb"


def unavailable_reason(name: str, scale: int, folder: Optional[Union[str, Path]] = None) -> Optional[str]:
    """Why the peer cannot run here (missing OpenCV contrib or model file), or None when it can."""
    try:
        import cv2

        cv2.dnn_superres.DnnSuperResImpl_create  # noqa: B018  (contrib build check)
    except (ImportError, AttributeError):
        return f"OpenCV's dnn_superres is not installed ({INSTALL})"
    path = peer_file(name, scale, folder)
    return None if path.is_file() else f"{path} not found"


@functools.lru_cache(maxsize=None)
def _model(path: str, name: str, scale: int) -> Any:
    import cv2

    sr = cv2.dnn_superres.DnnSuperResImpl_create()
    sr.readModel(path)
    sr.setModel(name, scale)
    return sr


def peer_upscale(img: torch.Tensor, scale: int, name: str, folder: Optional[Union[str, Path]] = None) -> torch.Tensor:
    """Upscale ``(N, 3, H, W)`` images in [0, 1] with a peer network; returns ``(N, 3, H*s, W*s)`` in [0, 1]."""
    reason = unavailable_reason(name, scale, folder)
    if reason:
        raise ValueError(f"{name} x{scale}: {reason}")
    sr = _model(str(peer_file(name, scale, folder)), name, scale)
    out = []
    for im in img.detach().float().cpu().clamp(0, 1):
        bgr = np.ascontiguousarray((im.flip(0).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))
        up = sr.upsample(bgr)
        out.append(torch.from_numpy(np.ascontiguousarray(up[..., ::-1])).permute(2, 0, 1).float() / 255)
    return torch.stack(out).to(img.device, img.dtype)
