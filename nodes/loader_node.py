"""Load LUA Model node."""
from __future__ import annotations

import os

import comfy.model_management as mm
import comfy.utils

from ..lua_core.api import load_model
from ..lua_core.checkpoints.download import DownloadError, download_entry
from ..lua_core.checkpoints.manifest import check_file
from . import paths
from .model_wrapper import ManagedLUAModel

DTYPE_CHOICES = ["auto", "fp32", "bf16", "fp16"]


class LUAModelLoader:
    DESCRIPTION = ("Loads a Latent Upscaler Adapter (LUA) checkpoint from models/lua: the official lua_flux.pth "
                   "(FLUX.1) or one of the pack's .safetensors adapters. Listed entries that are not on disk yet "
                   "are downloaded (sha256-verified) on first use.")
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
                    "tooltip": "Adapter checkpoint. Its latent family (SD1.5, SDXL, SD3, FLUX.1, FLUX.2) must match "
                               "the VAE your latents come from."}),
                "dtype": (DTYPE_CHOICES, {
                    "default": "auto",
                    "tooltip": "Compute precision. auto: fp32 on CPU, bf16 (or fp16) on GPU."}),
            }
        }

    def load(self, model_name: str, dtype: str = "auto"):
        path = paths.find_local(model_name)
        if path is not None:
            verify_against_manifest(model_name, path)
        if path is None:
            entry = paths.manifest_entry(model_name)
            if entry is None:
                raise ValueError(f"LUA model {model_name!r} is neither in models/lua nor in the weights manifest")
            bar = comfy.utils.ProgressBar(100)
            folder = paths.download_folder()

            def progress(done: int, total) -> None:
                if total:
                    bar.update_absolute(int(100 * done / total), 100)

            try:
                path = str(download_entry(entry, folder, progress=progress))
            except DownloadError as exc:
                raise RuntimeError(str(exc)) from exc
        device = mm.get_torch_device()
        model = load_model(path, device="cpu", dtype=dtype if dtype != "auto" else _auto_dtype(device))
        return (ManagedLUAModel.wrap(model),)


_VERIFIED: set[tuple] = set()


def verify_against_manifest(model_name: str, path: str) -> None:
    """Refuse a file on disk whose size or sha256 differs from its weights-manifest entry.

    Files without an entry (or entries without size/sha256) are not checked. A file
    that passed is remembered by path, size and mtime, so it is hashed once.
    """
    entry = paths.manifest_entry(model_name)
    if entry is None or (entry.sha256 is None and entry.size is None):
        return
    st = os.stat(path)
    key = (os.path.realpath(path), st.st_size, st.st_mtime_ns, entry.sha256, entry.size)
    if key in _VERIFIED:
        return
    try:
        check_file(path, sha256=entry.sha256, size=entry.size)
    except ValueError as exc:
        raise ValueError(f"LUA model {model_name!r} at {path} does not match the weights manifest ({exc}). "
                         f"Delete it so it is downloaded again, or rename it to use it as your own checkpoint") from exc
    _VERIFIED.add(key)


def _auto_dtype(device) -> str:
    from ..lua_core.api import resolve_dtype

    return {"torch.float32": "fp32", "torch.bfloat16": "bf16", "torch.float16": "fp16"}[str(resolve_dtype("auto", device))]
