"""LUA_MODEL: a loaded adapter handed to ComfyUI's model management."""
from __future__ import annotations

from dataclasses import dataclass

import comfy.model_management as mm
import comfy.model_patcher

from ..lua_core.api import LUAModel


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

    def load(self, memory_required: int) -> None:
        """Load the weights onto the compute device, freeing ``memory_required`` bytes beside them
        (an upscale plan's figure for one pass)."""
        mm.load_models_gpu([self.patcher], memory_required=int(memory_required), force_full_load=True)
