"""The floating-point dtypes the pack computes and stores in, by their short names."""
from __future__ import annotations

import torch

DTYPES: dict[str, torch.dtype] = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
ALIASES: dict[str, str] = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}


def dtype_from_name(name: str) -> torch.dtype:
    """``fp32``/``bf16``/``fp16`` (or ``float32``/``bfloat16``/``float16``) -> the torch dtype."""
    key = ALIASES.get(str(name).lower(), str(name).lower())
    if key not in DTYPES:
        raise ValueError(f"unknown dtype {name!r}; choose one of {', '.join(DTYPES)}")
    return DTYPES[key]


def dtype_name(dtype: torch.dtype) -> str:
    """The short name of a supported dtype (``str(dtype)`` for any other)."""
    return next((k for k, v in DTYPES.items() if v == dtype), str(dtype))
