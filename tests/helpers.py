"""Helpers shared by the test modules."""
from __future__ import annotations

import lua_core


def tiny_config(channels: int = 16, **overrides) -> lua_core.LUAConfig:
    """A very small network (fast on CPU) with the light preset's structure."""
    base = dict(in_chans=channels, embed_dim=24, depths=(2, 2), num_heads=(3, 3), window_size=8, head_num_feat=16)
    base.update(overrides)
    return lua_core.LIGHT_CONFIG.replace(**base)
