"""ComfyUI-LUA core: the Latent Upscaler Adapter in plain PyTorch (no ComfyUI needed)."""
from .api import LUAModel, load_model, resolve_device, resolve_dtype, upscale
from .engine.vae_teacher import LatentVAE
from .errors import CheckpointError, DownloadError, UpscaleCancelled
from .families import FAMILIES, LatentFamily, get_family
from .model import LIGHT_CONFIG, PAPER_CONFIG, LUAConfig, LUANet, preset

__all__ = ["LUAModel", "load_model", "upscale", "LatentVAE", "resolve_device", "resolve_dtype", "UpscaleCancelled",
           "CheckpointError", "DownloadError", "FAMILIES",
           "LatentFamily", "get_family", "LUAConfig", "LUANet", "LIGHT_CONFIG", "PAPER_CONFIG", "preset"]
__version__ = "0.1.0"
