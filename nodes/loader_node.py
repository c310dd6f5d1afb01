"""Load LUA Model node."""
from __future__ import annotations

import logging
from typing import Any, Optional

import comfy.cli_args
import comfy.model_management as mm
import comfy.utils
import torch

from ..lua_core.api import load_model
from ..lua_core.checkpoints.download import DownloadError, download_entry
from ..lua_core.checkpoints.manifest import ManifestEntry
from ..lua_core.checkpoints.verify import verify_against_manifest, verify_layout
from ..lua_core.dtypes import dtype_name
from ..lua_core.families import served_models
from . import paths
from .model_family import check_model_family, require_family
from .model_wrapper import ManagedLUAModel

logger = logging.getLogger(__name__)

DTYPE_CHOICES = ["auto", "fp32", "bf16", "fp16"]


class LUAModelLoader:
    DESCRIPTION = ("Loads a Latent Upscaler Adapter (LUA) checkpoint from models/lua: the official lua_flux.pth "
                   "(FLUX.1) or one of the pack's .safetensors adapters. Entries marked (preview) are the pack's "
                   "CPU-trained adapters, which do not yet beat decoding and upscaling the image. Listed entries "
                   "that are not on disk yet are downloaded from the Hugging Face Hub on first use. With a MODEL "
                   "connected, 'auto' picks the best adapter for that model's latent family.")
    CATEGORY = "loaders"
    RETURN_TYPES = ("LUA_MODEL",)
    RETURN_NAMES = ("lua_model",)
    OUTPUT_TOOLTIPS = ("The adapter, for LUA Latent Upscale.",)
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model_name": (paths.model_choices(), {
                    "tooltip": f"Adapter checkpoint. Its latent family must match the VAE your latents come from "
                               f"({served_models()}). auto: the best adapter for the connected MODEL's "
                               "family (the official one when downloaded, else the bundled one). (preview): "
                               "trained briefly on a CPU, below decode + pixel upscale in quality."}),
                "dtype": (DTYPE_CHOICES, {
                    "default": "auto",
                    "tooltip": "Compute precision. auto: the dtype ComfyUI gives a VAE on this device "
                               "(model_management.vae_dtype): fp32 on CPU; the --fp32/bf16/fp16-vae flags, else bf16 "
                               "or fp16 where ComfyUI would use them (--force-fp32 and --force-fp16 are honoured)."}),
            },
            "optional": {
                "model": ("MODEL", {
                    "tooltip": "Optional: the diffusion model whose latents you upscale. Needed for auto; "
                               "otherwise the adapter's family is checked against it."}),
            },
        }

    @classmethod
    def VALIDATE_INPUTS(cls, model_name):
        """Accept every listed adapter with or without its (preview) label, so saved workflows survive a status
        change; anything else is refused the way ComfyUI refuses a value that is not in the list."""
        if model_name == paths.AUTO:
            return True
        name = paths.strip_label(model_name)
        if paths.find_local(name) is not None or paths.manifest_entry(name) is not None:
            return True
        return f"LUA model {model_name!r} is neither in models/lua nor in the weights manifest"

    def load(self, model_name: str, dtype: str = "auto", model: Any = None):
        if model_name == paths.AUTO:
            name = self._auto(model)
        else:
            name = paths.strip_label(model_name)
        entry = paths.manifest_entry(name)
        path = paths.find_local(name)
        if path is not None:
            verify_against_manifest(entry, path)
        else:
            if entry is None:
                raise ValueError(f"LUA model {name!r} is neither in models/lua nor in the weights manifest")
            path = download_with_progress(entry)
        device = mm.get_torch_device()
        lua = load_model(path, device="cpu", dtype=dtype if dtype != "auto" else auto_dtype(device))
        verify_layout(entry, lua.config, lua.family.name, path)
        if model is not None:
            check_model_family(lua, model, "Load LUA Model")
        note_status(name, entry)
        return (ManagedLUAModel.wrap(lua),)

    @staticmethod
    def _auto(model: Any) -> str:
        if model is None:
            raise ValueError("Load LUA Model: 'auto' needs the model input: connect the MODEL output of your "
                             "checkpoint (or diffusion model) loader, or pick an adapter by name")
        fam, fmt = require_family(model, "Load LUA Model")
        entry = paths.best_for_family(fam.name)
        if entry is None:
            raise ValueError(f"Load LUA Model: no LUA adapter for {fam.label} latents (model latent format {fmt}) is "
                             f"in models/lua or the weights manifest")
        logger.info("LUA: auto picked %s for the %s model (latent format %s)", entry.name, fam.label, fmt)
        return entry.name


def download_with_progress(entry: ManifestEntry) -> str:
    """Download a manifest entry into the lua models folder, with ComfyUI's progress bar and cancel button."""
    bar = comfy.utils.ProgressBar(100)
    folder = paths.download_folder()

    def progress(done: int, total: Optional[int]) -> None:
        if total:
            bar.update_absolute(min(100, int(100 * done / total)), 100)

    try:
        return str(download_entry(entry, folder, progress=progress, cancel=mm.throw_exception_if_processing_interrupted))
    except DownloadError as exc:
        raise RuntimeError(str(exc)) from exc


def note_status(name: str, entry: Optional[ManifestEntry]) -> None:
    """One console line when a preview adapter is used (driven by the manifest's status field)."""
    if entry is None or entry.status != "preview":
        return
    card = f"; see {entry.model_card}" if entry.model_card else ""
    logger.warning("LUA: %s is a PREVIEW adapter (CPU-trained): its results are below VAE Decode + Upscale Image "
                   "(pixel) for now%s", name, card)


def auto_dtype(device: torch.device) -> str:
    """``auto`` by ComfyUI's rules: fp32 on CPU; elsewhere the --fp32/bf16/fp16-vae flags (LUA works in the VAE's
    latent space and feeds VAE Decode), then bf16 / fp16 where model_management says the device should use them
    (both say no under --force-fp32; --force-fp16 puts fp16 first), else fp32."""
    if device.type == "cpu" or mm.is_device_cpu(device):
        return "fp32"
    args = comfy.cli_args.args
    order = [torch.float16, torch.bfloat16] if getattr(args, "force_fp16", False) else [torch.bfloat16, torch.float16]
    return dtype_name(mm.vae_dtype(device, allowed_dtypes=order))
