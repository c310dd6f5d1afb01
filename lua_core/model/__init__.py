"""LUA network definition."""
from .config import LIGHT_CONFIG, PAPER_CONFIG, PRESETS, LUAConfig, preset
from .network import LUANet
from .tiling import pad_to_multiple

__all__ = ["LUAConfig", "LUANet", "PAPER_CONFIG", "LIGHT_CONFIG", "PRESETS", "preset", "pad_to_multiple"]
