"""Test-only ComfyUI node: a MODEL that carries a chosen latent format and nothing else.

No diffusion model can be downloaded on the test machines, so this stands in for a checkpoint
loader: it returns a real ``comfy.model_patcher.ModelPatcher`` around a one-parameter module whose
``latent_format`` is an instance of ComfyUI's own class (``comfy.latent_formats.<name>``), which is
all the LUA nodes read from a MODEL. Loaded only by the test server (``custom_nodes`` entry of its
extra_model_paths.yaml); never shipped (``.comfyignore`` leaves tests/ out).
"""
import comfy.latent_formats
import comfy.model_management
import comfy.model_patcher
import torch

FORMATS = ["SD15", "SDXL", "SD3", "Flux", "Flux2", "Wan21", "HunyuanVideo"]


class _StubDiffusionModel(torch.nn.Module):
    def __init__(self, latent_format):
        super().__init__()
        self.latent_format = latent_format
        self.weight = torch.nn.Parameter(torch.zeros(1))


class LUATestStubModel:
    CATEGORY = "testing"
    RETURN_TYPES = ("MODEL",)
    FUNCTION = "make"
    DESCRIPTION = "Test stand-in for a checkpoint loader: a MODEL with only a latent format."

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"latent_format": (FORMATS, {"tooltip": "comfy.latent_formats class"})}}

    def make(self, latent_format):
        fmt = getattr(comfy.latent_formats, latent_format)()
        model = _StubDiffusionModel(fmt)
        return (comfy.model_patcher.ModelPatcher(model, load_device=comfy.model_management.get_torch_device(),
                                                 offload_device=comfy.model_management.unet_offload_device()),)


NODE_CLASS_MAPPINGS = {"LUATestStubModel": LUATestStubModel}
