"""Inference engine: tiling, memory planning, progress and cancellation."""
from ..errors import UpscaleCancelled
from .runner import TilePlan, plan_tiles, run_network

__all__ = ["UpscaleCancelled", "TilePlan", "plan_tiles", "run_network"]
