"""ComfyUI-LUA: Latent Upscaler Adapter nodes for ComfyUI (arXiv 2511.10629)."""
import importlib.util

WEB_DIRECTORY = "./web"

if importlib.util.find_spec("folder_paths") is not None:
    from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS
else:  # imported outside ComfyUI (e.g. pytest collecting the repo): lua_core works on its own
    NODE_CLASS_MAPPINGS: dict = {}
    NODE_DISPLAY_NAME_MAPPINGS: dict = {}

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY"]
