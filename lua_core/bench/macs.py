"""Multiply-add counts of every pipeline at the issue's full sizes (meta tensors, nothing computed)."""
from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
from torch.utils.flop_counter import FlopCounterMode

from ..model import LUANet
from .models import decoder_for, family_channels, lua_config

# The sizes: (base px, factor).  CPU runs use smaller bases; ratios are reported.
FULL_SIZES = ((512, 2), (1024, 2), (1024, 4))


def _macs(fn: Callable[..., Any], *args: Any) -> float:
    """Multiply-adds of ``fn(*args)``."""
    with FlopCounterMode(display=False) as fc:
        fn(*args)
    return fc.get_total_flops() / 2.0


def count_macs(config_name: str, family: str, sizes: Sequence[tuple[int, int]] = FULL_SIZES,
               tiny: bool = False) -> list[dict]:
    """Multiply-adds (FlopCounterMode / 2, meta tensors) of every pipeline stage at ``sizes``."""
    with torch.device("meta"):
        dec = decoder_for(family, tiny)
        lua = LUANet(lua_config(config_name, family_channels(family), tiny)).eval()
        sr = LUANet(lua_config(config_name, 3, tiny)).eval()
    rows = []
    ch = family_channels(family)
    with torch.inference_mode():
        for base, s in sizes:
            lat = base // 8
            z = torch.empty(1, ch, lat, lat, device="meta")
            zt = torch.empty(1, ch, lat * s, lat * s, device="meta")
            img = torch.empty(1, 3, base, base, device="meta")
            a, d = _macs(dec, z), _macs(dec, zt)
            up, px = _macs(lua, z, s), _macs(sr, img, s)
            rows.append({"config": config_name, "family": family, "base": base, "scale": s, "A": a, "D": d,
                         "lua": up, "pixel_sr": px, "B": up + d, "C": a + px,
                         "C_over_B": (a + px) / (up + d), "lua_share_of_D": up / d})
    return rows
