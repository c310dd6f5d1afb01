"""Inference engine: plan a pass (plain, chunked or tiled), then run it with progress and cancel."""
from ..errors import UpscaleCancelled
from .planning import TilePlan, make_tile_plan, plan_peak_bytes, plan_tiles
from .runner import run_network

__all__ = ["UpscaleCancelled", "TilePlan", "make_tile_plan", "plan_peak_bytes", "plan_tiles", "run_network"]
