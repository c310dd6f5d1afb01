"""Network configuration of the Latent Upscaler Adapter and its presets."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any, Mapping

SKIP_MODES = ("none", "bicubic", "tae")


@dataclass(frozen=True)
class LUAConfig:
    """Hyper-parameters of a LUA network (SwinIR-style trunk + per-scale heads).

    ``in_scale``/``in_shift`` normalise raw latents before the trunk
    (``(z - shift) * scale``) and are undone on the output; the official
    checkpoint uses none (1 / 0).  ``skip`` adds a bicubic upsample of the
    input to the head output (no parameters, so the state-dict layout is
    unchanged), or, with ``"tae"``, the teacher latent
    ``encode(bicubic_up(decode(x)))`` of a tiny autoencoder held in the network
    (``skip.*`` tensors; ``tae_groupnorm`` selects taef2's layout) to the head
    output times a learned gain.  The ``tae`` skip works in the tiny
    autoencoder's units, so ``in_scale``/``in_shift`` must be the family's.
    """

    in_chans: int = 16
    embed_dim: int = 360
    depths: tuple[int, ...] = (6, 6, 6, 6, 6, 6)
    num_heads: tuple[int, ...] = (12, 12, 12, 12, 12, 12)
    window_size: int = 16
    mlp_ratio: float = 2.0
    head_num_feat: int = 256
    scales: tuple[int, ...] = (2, 4)
    qkv_bias: bool = True
    leaky_relu_slope: float = 0.01
    in_scale: float = 1.0
    in_shift: float = 0.0
    skip: str = "none"
    tae_groupnorm: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "depths", tuple(int(d) for d in self.depths))
        object.__setattr__(self, "num_heads", tuple(int(h) for h in self.num_heads))
        object.__setattr__(self, "scales", tuple(sorted(int(s) for s in self.scales)))
        problems = []
        if self.in_chans < 1:
            problems.append(f"in_chans must be >= 1, got {self.in_chans}")
        if len(self.depths) == 0 or len(self.depths) != len(self.num_heads):
            problems.append(f"depths {self.depths} and num_heads {self.num_heads} must be non-empty and of equal length")
        for h in self.num_heads:
            if h < 1 or self.embed_dim % h:
                problems.append(f"embed_dim {self.embed_dim} is not divisible by num_heads {h}")
        if self.window_size < 1:
            problems.append(f"window_size must be >= 1, got {self.window_size}")
        if not self.scales:
            problems.append("scales must not be empty")
        for s in self.scales:
            if s < 2 or s & (s - 1):
                problems.append(f"scale {s} is not a power of two >= 2")
        if self.skip not in SKIP_MODES:
            problems.append(f"skip must be one of {SKIP_MODES}, got {self.skip!r}")
        if self.in_scale == 0:
            problems.append("in_scale must not be 0")
        if problems:
            raise ValueError("invalid LUA config: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        for k in ("depths", "num_heads", "scales"):
            d[k] = list(d[k])
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "LUAConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown LUA config keys: {unknown}")
        return cls(**dict(data))

    @classmethod
    def from_json(cls, text: str) -> "LUAConfig":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"LUA config is not valid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise ValueError("LUA config JSON must be an object")
        return cls.from_dict(data)

    def replace(self, **changes: Any) -> "LUAConfig":
        return dataclasses.replace(self, **changes)


# The published LUA-FLUX checkpoint (lua_flux.pth): ~55 M parameters.
PAPER_CONFIG = LUAConfig()

# Our own small config (~1.8 M parameters) that trains on a 2-core CPU.
LIGHT_CONFIG = LUAConfig(
    embed_dim=72,
    depths=(4, 4, 4, 4),
    num_heads=(6, 6, 6, 6),
    window_size=8,
    mlp_ratio=2.0,
    head_num_feat=64,
    skip="bicubic",
)

PRESETS: dict[str, LUAConfig] = {"paper": PAPER_CONFIG, "light": LIGHT_CONFIG}


def preset(name: str, **overrides: Any) -> LUAConfig:
    """Return a named preset (``paper`` or ``light``) with optional overrides."""
    if name not in PRESETS:
        raise ValueError(f"unknown LUA preset {name!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[name].replace(**overrides) if overrides else PRESETS[name]
