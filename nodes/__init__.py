"""ComfyUI nodes of the LUA pack (classic NODE_CLASS_MAPPINGS API)."""
from .paths import register_folder

register_folder()

from .loader_node import LUAModelLoader  # noqa: E402  (folder must be registered first)
from .upscale_node import LUALatentUpscale, LUALatentUpscaleToSize  # noqa: E402

NODE_CLASS_MAPPINGS = {
    "LUAModelLoader": LUAModelLoader,
    "LUALatentUpscale": LUALatentUpscale,
    "LUALatentUpscaleToSize": LUALatentUpscaleToSize,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "LUAModelLoader": "Load LUA Model",
    "LUALatentUpscale": "LUA Latent Upscale",
    "LUALatentUpscaleToSize": "LUA Latent Upscale To Size",
}
