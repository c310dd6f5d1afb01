"""LUA_MODEL: a loaded adapter handed to ComfyUI's model management."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import comfy.model_management as mm
import comfy.model_patcher
import torch

from ..lua_core.api import LUAModel
from ..lua_core.engine.memory import budget_from_free


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

    def plan_budget(self) -> Optional[int]:
        """The memory budget an upscale plan is fitted to: on an accelerator the engine's share
        (``budget_from_free``) of what ComfyUI can make free there for this adapter; None on the CPU,
        where the core's capped default keeps RSS bounded."""
        device = self.patcher.load_device
        if device.type == "cpu":
            return None
        return budget_from_free(clearable_memory(device, self.patcher))


def clearable_memory(device: torch.device, patcher: "comfy.model_patcher.ModelPatcher") -> int:
    """Bytes ComfyUI can have free on ``device`` for a pass beside ``patcher``'s weights: free now, plus
    the weights of other models loaded there (``load_models_gpu`` offloads them when asked for the memory),
    less ``patcher``'s weights still to load and ComfyUI's reserve."""
    others = 0
    for loaded in list(getattr(mm, "current_loaded_models", ())):
        other = loaded.model
        if other is None or other is patcher or loaded.device != device:
            continue
        others += other.loaded_size()
    on_device = patcher.loaded_size() if patcher.current_loaded_device() == device else 0
    pending = patcher.model_size() - on_device
    return max(0, int(mm.get_free_memory(device)) + others - pending - int(mm.extra_reserved_memory()))
