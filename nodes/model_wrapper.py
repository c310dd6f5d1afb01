"""LUA_MODEL: a loaded adapter handed to ComfyUI's model management."""
from __future__ import annotations

from dataclasses import dataclass

import comfy.model_management as mm
import comfy.model_patcher

from ..lua_core.api import LUAModel
from ..lua_core.engine.memory import bytes_per_pixel, skip_reserve


@dataclass
class ManagedLUAModel:
    """An adapter plus the ModelPatcher that lets ComfyUI load and offload it."""

    model: LUAModel
    patcher: "comfy.model_patcher.ModelPatcher"

    @classmethod
    def wrap(cls, model: LUAModel) -> "ManagedLUAModel":
        patcher = comfy.model_patcher.ModelPatcher(model.net, load_device=mm.get_torch_device(),
                                                   offload_device=mm.unet_offload_device())
        return cls(model, patcher)

    def load(self, latent_pixels: int, scale: int) -> None:
        """Load the weights onto the compute device, freeing room for one pass's activations."""
        cfg, dtype = self.model.config, self.model.dtype
        activations = bytes_per_pixel(cfg, scale, dtype) * latent_pixels + skip_reserve(cfg, scale, 1, latent_pixels, 1, dtype)
        mm.load_models_gpu([self.patcher], memory_required=int(activations), force_full_load=True)
