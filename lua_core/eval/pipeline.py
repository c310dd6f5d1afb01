"""The evaluated paths for one HR crop and one scale: images (clamped to [0, 1]), latents and stage times.

HR ``(1, 3, H, W)`` -> LR (bicubic, anti-aliased, ``H/s``) -> encode -> [upscale latent] -> decode, or
decode at base size -> pixel resize.  The ceiling is the autoencoder's own round trip of the HR image.
Latent operations run on the ComfyUI LATENT of the family (packed for FLUX.2), as in a workflow.

The user's world: users decode with the family's full VAE, which gives back (nearly) the image the latent
came from.  ``pixel_route`` is their free route, VAE Decode -> Upscale Image By (bicubic), with the true LR
image standing in for the full VAE's decode; ``pixel_route_<peer>`` the same with an upscale model.  So that
only the upscale differs from LUA's, each is passed once through the same tiny autoencoder at the target
size, as LUA's latent is decoded by it.  ``lua_vae`` is LUA with its VAE input, given the same near-lossless
stand-in (``decode`` = the true LR image, ``encode`` = the tiny encoder; :mod:`lua_core.toolkit.standin_vae`,
which the fine-tune's VAE teacher uses too).  ``pixel_bicubic`` and
``pixel_lanczos`` resize the *tiny* decode, a comparator that shares the tiny decoder's loss with LUA's own
teacher.  Every path also yields a latent at the target size (the network's layout) for latent fidelity.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import torch
import torch.nn.functional as F

from ..api import LUAModel, upscale
from ..families import LatentFamily
from ..toolkit.clock import timed
from ..toolkit.images import bicubic_down
from ..toolkit.standin_vae import StandInVAE, standin_image
from .baselines import LATENT_METHODS, PIXEL_METHODS, latent_upscale, pixel_upscale
from .peers import PEERS, peer_upscale, unavailable_reason

CEILING = "vae_ceiling"
LUA = "lua"
LUA_VAE = "lua_vae"
PIXEL_ROUTE = "pixel_route"
ALL_PATHS: tuple[str, ...] = ((CEILING, LUA, LUA_VAE, PIXEL_ROUTE) + tuple(f"{PIXEL_ROUTE}_{p}" for p in PEERS)
                              + tuple(f"latent_{m}" for m in LATENT_METHODS)
                              + tuple(f"pixel_{m}" for m in PIXEL_METHODS))
LABELS = {
    CEILING: "VAE round trip of HR (ceiling)",
    LUA: "LUA (its own tiny teacher)",
    LUA_VAE: "LUA with the VAE input",
    PIXEL_ROUTE: "user's route: VAE decode + Upscale Image (bicubic)",
    **{f"{PIXEL_ROUTE}_{p}": f"user's route with {p.upper()} (decode + upscale model)" for p in PEERS},
    "latent_nearest": "latent nearest-exact (Upscale Latent)",
    "latent_bilinear": "latent bilinear",
    "latent_bicubic": "latent bicubic",
    "latent_bislerp": "latent bislerp",
    "pixel_bicubic": "tiny decode + pixel bicubic (shares the tiny decoder's loss)",
    "pixel_lanczos": "tiny decode + pixel Lanczos (shares the tiny decoder's loss)",
}
STAGES = ("encode", "upscale", "decode")


@dataclass
class PathResult:
    """One path's output image, its latent at the target size (network layout) and its stage times in seconds."""

    image: torch.Tensor
    times: dict[str, float] = field(default_factory=dict)
    latent: Optional[torch.Tensor] = None

    @property
    def total(self) -> float:
        return sum(self.times.values())


def peer_paths() -> tuple[str, ...]:
    return tuple(f"{PIXEL_ROUTE}_{p}" for p in PEERS)


class PathRunner:
    """Runs the paths with one autoencoder (``encode_raw``/``decode_raw`` in the network layout) and model."""

    def __init__(self, tae: Any, family: LatentFamily, model: Optional[LUAModel] = None,
                 device: torch.device | str = "cpu") -> None:
        self.tae = tae
        self.family = family
        self.model = model
        self.device = torch.device(device)

    def unavailable(self, scales: Sequence[int]) -> dict[str, str]:
        """Paths that cannot run here, with the reason (a missing optional dependency or model file)."""
        out = {}
        for p in PEERS:
            reasons = [r for r in (unavailable_reason(p, s) for s in scales) if r]
            if reasons:
                out[f"{PIXEL_ROUTE}_{p}"] = reasons[0]
        if self.model is not None and self.model.net.skip is None:
            out[LUA_VAE] = f"the adapter's residual sits on a {self.model.config.skip!r} skip, not on a VAE teacher"
        return out

    def paths(self, scales: Sequence[int] = (2, 4)) -> tuple[str, ...]:
        missing = self.unavailable(scales)
        return tuple(p for p in ALL_PATHS if p not in missing and (p not in (LUA, LUA_VAE) or self.model is not None))

    def _encode(self, img: torch.Tensor) -> tuple[torch.Tensor, float]:
        return timed(lambda: self.tae.encode_raw(img), self.device)

    def _decode(self, z: torch.Tensor) -> tuple[torch.Tensor, float]:
        return timed(lambda: self.tae.decode_raw(z).clamp(0, 1), self.device)

    @torch.inference_mode()
    def hr_latent(self, hr: torch.Tensor) -> tuple[torch.Tensor, float]:
        """The latent of the true HR image (what latent fidelity is measured against) and its encode time."""
        return self._encode(hr)

    @torch.inference_mode()
    def ceiling(self, z_hr: torch.Tensor, t_enc: float) -> PathResult:
        """The autoencoder's reconstruction of the HR image (no upscaling: the best any latent path can do)."""
        img, t_dec = self._decode(z_hr)
        return PathResult(img, {"encode": t_enc, "upscale": 0.0, "decode": t_dec}, z_hr)

    def _through_tae(self, up: torch.Tensor, t_up: float) -> PathResult:
        """A pixel route's upscaled image passed once through the tiny autoencoder at the target size."""
        z, t_enc = self._encode(up)
        img, t_dec = self._decode(z)
        return PathResult(img, {"encode": t_enc, "upscale": t_up, "decode": t_dec}, z)

    @torch.inference_mode()
    def run(self, hr: torch.Tensor, scale: int, paths: Optional[Sequence[str]] = None
            ) -> tuple[dict[str, PathResult], torch.Tensor]:
        """Every path except the ceiling for one HR crop: ``({path: result}, base decode of the LR latent)``."""
        wanted = [p for p in (paths or self.paths((scale,))) if p != CEILING]
        lr = bicubic_down(hr, scale)
        z_lr, t_enc = self._encode(lr)
        base, t_base = self._decode(z_lr)
        comfy = self.family.to_comfy(z_lr)
        out: dict[str, PathResult] = {}
        for path in wanted:
            if path in (LUA, LUA_VAE):
                if self.model is None:
                    raise ValueError("the LUA paths need a checkpoint")
                vae = StandInVAE(lr, self.tae, self.family) if path == LUA_VAE else None
                up, t_up = timed(lambda: upscale(self.model, comfy, scale, vae=vae), self.device)
            elif path.startswith("latent_"):
                method = path[len("latent_"):]
                up, t_up = timed(lambda: latent_upscale(comfy, scale, method), self.device)
            elif path == PIXEL_ROUTE:
                img, t_up = timed(lambda: standin_image(lr, scale), self.device)
                out[path] = self._through_tae(img, t_up)
                continue
            elif path.startswith(PIXEL_ROUTE + "_"):
                peer = path[len(PIXEL_ROUTE) + 1:]
                img, t_up = timed(lambda: peer_upscale(lr, scale, peer), self.device)
                out[path] = self._through_tae(img, t_up)
                continue
            elif path.startswith("pixel_"):
                method = path[len("pixel_"):]
                img, t_up = timed(lambda: pixel_upscale(base, scale, method), self.device)
                out[path] = PathResult(img, {"encode": t_enc, "upscale": t_up, "decode": t_base},
                                       self.tae.encode_raw(img))
                continue
            else:
                raise ValueError(f"unknown path {path!r}; known: {', '.join(ALL_PATHS)}")
            z_up = self.family.to_model(up)
            img, t_dec = self._decode(z_up)
            out[path] = PathResult(img, {"encode": t_enc, "upscale": t_up, "decode": t_dec}, z_up)
        return out, base


def latent_nmse(latent: torch.Tensor, reference: torch.Tensor) -> float:
    """Mean squared difference to the true image's latent divided by that latent's variance (0 = identical)."""
    ref = reference.float()
    return float(((latent.float() - ref) ** 2).mean() / ref.var().clamp_min(1e-12))


def nearest_to(img: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Nearest-neighbour enlargement (for showing a base-size decode next to full-size outputs)."""
    return F.interpolate(img, size=size, mode="nearest")
