"""Evaluation: LUA versus ComfyUI's latent upscales and pixel resizes, per family.

``python -m lua_core.eval`` (CLI) or :func:`evaluate` (API).  Pixel metrics need only torch; LPIPS and
DISTS need the weights converted by ``python -m lua_core.metrics.fetch`` and are reported as
unavailable without them.
"""
from .evaluation import evaluate
from .inputs import resolve_checkpoint
from .pipeline import ALL_PATHS, LABELS

__all__ = ["evaluate", "resolve_checkpoint", "ALL_PATHS", "LABELS"]
