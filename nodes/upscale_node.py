"""LUA Latent Upscale nodes."""
from __future__ import annotations

import logging
from typing import Any, Optional

import comfy.model_management as mm
import comfy.utils
import torch
import torch.nn.functional as F

from ..lua_core.api import LUAModel, plan_teacher, plan_upscale, run_plan
from ..lua_core.families import twins_text
from .model_family import check_model_family
from .model_wrapper import ManagedLUAModel
from .vae_bridge import ComfyLatentVAE

logger = logging.getLogger(__name__)

TILE_TOOLTIP = ("Tile side in latent pixels (0 = automatic: one pass when it fits in memory, otherwise one chunked "
                "pass with the same result, tiles only if even that does not fit). Smaller tiles use less memory.")
OVERLAP_TOOLTIP = "Overlap between neighbouring tiles in latent pixels; overlaps are feather-blended to hide seams."
MODEL_TOOLTIP = ("Optional: the diffusion model the latent comes from. When connected, an adapter of another latent "
                 f"family ({twins_text()}, which channel counts cannot tell apart) is refused.")
VAE_TOOLTIP = ("Optional, recommended: the VAE the workflow decodes with. The adapter then builds on that VAE's own "
               "decode (upscaled in pixels and encoded at the target size) instead of its tiny built-in "
               "autoencoder: the result is as faithful as VAE Decode -> Upscale Image, and sharper. Costs one "
               "decode at the input size and one encode at the output size.")
OPTIONAL = {"model": ("MODEL", {"tooltip": MODEL_TOOLTIP}), "vae": ("VAE", {"tooltip": VAE_TOOLTIP})}
TILING_INPUTS = {
    "tile_size": ("INT", {"default": 0, "min": 0, "max": 4096, "step": 8, "tooltip": TILE_TOOLTIP}),
    "tile_overlap": ("INT", {"default": 16, "min": 0, "max": 512, "step": 1, "tooltip": OVERLAP_TOOLTIP}),
}


def _inputs(samples_tooltip: str, size_inputs: dict[str, Any]) -> dict[str, Any]:
    """INPUT_TYPES of an upscale node: the adapter, the latent, how large, then tiling (widget order)."""
    return {
        "required": {
            "lua_model": ("LUA_MODEL", {"tooltip": "Adapter from Load LUA Model."}),
            "samples": ("LATENT", {"tooltip": samples_tooltip}),
            **size_inputs,
            **TILING_INPUTS,
        },
        "optional": dict(OPTIONAL),
    }


def _check_latent_dict(samples: Any, model: Optional[LUAModel] = None) -> torch.Tensor:
    """The LATENT's ``samples`` tensor and ``noise_mask``, checked before anything is loaded (the tensor
    itself is checked against the adapter by :func:`plan_upscale`)."""
    if not isinstance(samples, dict) or "samples" not in samples:
        raise ValueError("LUA Latent Upscale: the LATENT input has no 'samples' tensor")
    x = samples["samples"]
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"LUA Latent Upscale: LATENT 'samples' must be a tensor, got {type(x).__name__}")
    if x.ndim in (4, 5) and x.shape[0] == 0:
        raise ValueError("LUA Latent Upscale: the LATENT batch is empty (0 images)")
    if x.ndim == 5 and model is not None and not getattr(model.family, "video", False):
        raise ValueError(f"LUA Latent Upscale: this is a video latent (5-D, shape {tuple(x.shape)}) from a video "
                         f"VAE (Wan, HunyuanVideo, LTXV, ...); the {model.family.label} adapter was trained on "
                         f"image latents only and no LUA adapter supports video latents yet")
    mask = samples.get("noise_mask")
    if isinstance(mask, torch.Tensor) and (mask.ndim < 2 or mask.shape[-1] < 1 or mask.shape[-2] < 1):
        raise ValueError(f"LUA Latent Upscale: the LATENT 'noise_mask' must have at least 2 dimensions with a "
                         f"non-empty height and width, got shape {tuple(mask.shape)}")
    return x


def _resize_mask(mask: torch.Tensor, sh: float, sw: float) -> torch.Tensor:
    """Resize a noise mask's last two dims by the latent's scale factors."""
    h, w = mask.shape[-2:]
    size = (max(1, round(h * sh)), max(1, round(w * sw)))
    if mask.numel() == 0:  # an empty leading dimension: nothing to resample
        return mask.new_zeros(*mask.shape[:-2], *size)
    flat = mask.reshape(-1, 1, h, w).float()
    out = F.interpolate(flat, size=size, mode="bilinear", align_corners=False)
    return out.reshape(*mask.shape[:-2], *size).to(mask.dtype)


def run_upscale(lua_model: ManagedLUAModel, samples: dict, scale: Optional[float], size: Optional[tuple[int, int]],
                tile_size: int, tile_overlap: int, model: Any = None, vae: Any = None,
                what: str = "LUA Latent Upscale") -> dict:
    """Shared body of both nodes: validate, load via model management, upscale with progress and cancel."""
    if model is not None:
        check_model_family(lua_model.model, model, what)
    model = lua_model.model
    x = _check_latent_dict(samples, model)
    teacher_vae = ComfyLatentVAE(vae, model.family, what) if vae is not None else None
    if teacher_vae is not None and model.net.skip is None:
        # e.g. `auto` picked the official lua_flux.pth in a workflow wired for the bundled adapters
        logger.info("LUA: %s has no teacher; the vae input is not used", model.describe())
        teacher_vae = None
    elif teacher_vae is None and model.teacher == "vae":
        logger.warning("LUA: %s was trained on the VAE's own decode: connect the vae input of %s (the VAE you decode "
                       "with); without it the adapter falls back to its tiny autoencoder, a preview below VAE Decode "
                       "-> Upscale Image", model.describe(), what)
    plan = plan_upscale(model, x, scale, size=size, tile_size=tile_size, tile_overlap=tile_overlap,
                        memory_budget=lua_model.plan_budget())
    # the VAE's passes first: loading the VAE may make ComfyUI offload other models, the adapter included
    teacher = plan_teacher(model, x, plan, teacher_vae) if teacher_vae is not None else None
    lua_model.load(plan.memory_required)  # the plan's own peak: what the engine runs on
    bar = comfy.utils.ProgressBar(1)

    def progress(done: int, total: int) -> None:
        bar.update_absolute(done, total)

    def cancel() -> bool:
        mm.throw_exception_if_processing_interrupted()
        return False

    out = run_plan(model, x, plan, progress=progress, cancel=cancel, teacher=teacher)
    result = dict(samples)
    result["samples"] = out
    if isinstance(samples.get("noise_mask"), torch.Tensor):
        (h, w), (th, tw) = plan.source, plan.target
        result["noise_mask"] = _resize_mask(samples["noise_mask"], th / h, tw / w)
    return result


class LUALatentUpscale:
    DESCRIPTION = ("Upscales a LATENT with a Latent Upscaler Adapter before VAE Decode: the x2/x4 head closest "
                   "above the factor runs and the result is resized to the exact size. Place it between KSampler "
                   "and VAE Decode and connect the same VAE to its vae input (the bundled adapters need it for "
                   "full quality); the latent must come from the adapter's model family (connect the optional "
                   "model input to have that checked). Video (5-D) latents are refused.")
    CATEGORY = "latent/LUA"
    RETURN_TYPES = ("LATENT",)
    OUTPUT_TOOLTIPS = ("The upscaled latent (batch_index kept, noise_mask resized).",)
    FUNCTION = "upscale"

    @classmethod
    def INPUT_TYPES(cls):
        return _inputs("Latent to upscale (e.g. from KSampler or VAE Encode).", {
            "scale_by": ("FLOAT", {"default": 2.0, "min": 1.0, "max": 4.0, "step": 0.05,
                                   "tooltip": "Upscale factor. 2 and 4 use a head directly; other factors run "
                                              "the next larger head and resize."}),
        })

    def upscale(self, lua_model, samples, scale_by: float, tile_size: int = 0, tile_overlap: int = 16, model=None,
                vae=None):
        return (run_upscale(lua_model, samples, scale_by, None, tile_size, tile_overlap, model, vae),)


class LUALatentUpscaleToSize:
    DESCRIPTION = ("Upscales a LATENT with a Latent Upscaler Adapter to an exact image size in pixels "
                   "(0 for one side keeps the aspect ratio).")
    CATEGORY = "latent/LUA"
    RETURN_TYPES = ("LATENT",)
    OUTPUT_TOOLTIPS = ("The upscaled latent.",)
    FUNCTION = "upscale"

    @classmethod
    def INPUT_TYPES(cls):
        return _inputs("Latent to upscale.", {
            "width": ("INT", {"default": 2048, "min": 0, "max": 16384, "step": 8,
                              "tooltip": "Target image width in pixels (0 = from height, keeping aspect)."}),
            "height": ("INT", {"default": 2048, "min": 0, "max": 16384, "step": 8,
                               "tooltip": "Target image height in pixels (0 = from width, keeping aspect)."}),
        })

    def upscale(self, lua_model, samples, width: int, height: int, tile_size: int = 0, tile_overlap: int = 16,
                model=None, vae=None):
        what = "LUA Latent Upscale To Size"
        if model is not None:
            check_model_family(lua_model.model, model, what)
        x = _check_latent_dict(samples, lua_model.model)
        down = lua_model.model.family.comfy_downscale
        h, w = x.shape[-2:] if x.ndim >= 2 else (0, 0)
        if width <= 0 and height <= 0:
            raise ValueError("LUA Latent Upscale To Size: width and height cannot both be 0")
        # an empty side is left to plan_upscale, which names the problem with the latent
        th = height // down if height > 0 else (round(h * (width // down) / w) if w else 1)
        tw = width // down if width > 0 else (round(w * (height // down) / h) if h else 1)
        return (run_upscale(lua_model, samples, None, (max(th, 1), max(tw, 1)), tile_size, tile_overlap, None, vae,
                            what),)
