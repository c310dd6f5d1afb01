"""The evaluated paths for one HR crop and one scale: images (clamped to [0, 1]) plus per-stage wall times.

HR ``(1, 3, H, W)`` -> LR (bicubic, anti-aliased, ``H/s``) -> encode -> [upscale latent] -> decode, or
decode at base size -> pixel resize.  The ceiling is the autoencoder's own round trip of the HR image.
Latent operations run on the ComfyUI LATENT of the family (packed for FLUX.2), as in a workflow.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import torch
import torch.nn.functional as F

from ..api import LUAModel, upscale
from ..clock import timed
from ..families import LatentFamily
from ..images import bicubic_down
from .baselines import LATENT_METHODS, PIXEL_METHODS, latent_upscale, pixel_upscale

CEILING = "vae_ceiling"
LUA = "lua"
ALL_PATHS: tuple[str, ...] = ((CEILING, LUA) + tuple(f"latent_{m}" for m in LATENT_METHODS)
                              + tuple(f"pixel_{m}" for m in PIXEL_METHODS))
LABELS = {
    CEILING: "VAE round trip of HR (ceiling)",
    LUA: "LUA",
    "latent_nearest": "latent nearest-exact",
    "latent_bilinear": "latent bilinear",
    "latent_bicubic": "latent bicubic",
    "latent_bislerp": "latent bislerp",
    "pixel_bicubic": "decode + pixel bicubic",
    "pixel_lanczos": "decode + pixel Lanczos",
}
STAGES = ("encode", "upscale", "decode")


@dataclass
class PathResult:
    """One path's output image and its stage times in seconds."""

    image: torch.Tensor
    times: dict[str, float] = field(default_factory=dict)

    @property
    def total(self) -> float:
        return sum(self.times.values())


class PathRunner:
    """Runs the paths with one autoencoder (``encode_raw``/``decode_raw`` in the network layout) and model."""

    def __init__(self, tae: Any, family: LatentFamily, model: Optional[LUAModel] = None,
                 device: torch.device | str = "cpu") -> None:
        self.tae = tae
        self.family = family
        self.model = model
        self.device = torch.device(device)

    def paths(self) -> tuple[str, ...]:
        return tuple(p for p in ALL_PATHS if p != LUA or self.model is not None)

    def _encode(self, img: torch.Tensor) -> tuple[torch.Tensor, float]:
        return timed(lambda: self.tae.encode_raw(img), self.device)

    def _decode(self, z: torch.Tensor) -> tuple[torch.Tensor, float]:
        return timed(lambda: self.tae.decode_raw(z).clamp(0, 1), self.device)

    @torch.inference_mode()
    def ceiling(self, hr: torch.Tensor) -> PathResult:
        """The autoencoder's reconstruction of the HR image (no upscaling: the best any latent path can do)."""
        z, t_enc = self._encode(hr)
        img, t_dec = self._decode(z)
        return PathResult(img, {"encode": t_enc, "upscale": 0.0, "decode": t_dec})

    @torch.inference_mode()
    def run(self, hr: torch.Tensor, scale: int, paths: Optional[Sequence[str]] = None
            ) -> tuple[dict[str, PathResult], torch.Tensor]:
        """Every path except the ceiling for one HR crop: ``({path: result}, base decode of the LR latent)``."""
        wanted = [p for p in (paths or self.paths()) if p != CEILING]
        lr = bicubic_down(hr, scale)
        z_lr, t_enc = self._encode(lr)
        base, t_base = self._decode(z_lr)
        comfy = self.family.to_comfy(z_lr)
        out: dict[str, PathResult] = {}
        for path in wanted:
            if path == LUA:
                if self.model is None:
                    raise ValueError("the LUA path needs a checkpoint")
                up, t_up = timed(lambda: upscale(self.model, comfy, scale), self.device)
            elif path.startswith("latent_"):
                method = path[len("latent_"):]
                up, t_up = timed(lambda: latent_upscale(comfy, scale, method), self.device)
            elif path.startswith("pixel_"):
                method = path[len("pixel_"):]
                img, t_up = timed(lambda: pixel_upscale(base, scale, method), self.device)
                out[path] = PathResult(img, {"encode": t_enc, "upscale": t_up, "decode": t_base})
                continue
            else:
                raise ValueError(f"unknown path {path!r}; known: {', '.join(ALL_PATHS)}")
            img, t_dec = self._decode(self.family.to_model(up))
            out[path] = PathResult(img, {"encode": t_enc, "upscale": t_up, "decode": t_dec})
        return out, base


def nearest_to(img: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Nearest-neighbour enlargement (for showing a base-size decode next to full-size outputs)."""
    return F.interpolate(img, size=size, mode="nearest")
