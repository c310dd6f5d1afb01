"""Reading LUA checkpoints safely: our ``.safetensors`` and the official ``.pth``.

Nothing here unpickles arbitrary objects: ``.pth`` files go through
``torch.load(weights_only=True)`` and must contain only tensors (optionally
under a ``params_ema``/``params``/``state_dict`` wrapper).
"""
from __future__ import annotations

import json
import math
import os
import pickle
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional

import torch

from ..errors import CheckpointError
from ..model.config import LUAConfig

SAFETENSORS_SUFFIXES = (".safetensors", ".sft")
PICKLE_SUFFIXES = (".pth", ".pt", ".ckpt", ".bin")
WRAPPER_KEYS = ("params_ema", "params", "state_dict", "model")
RECOMPUTABLE_BUFFERS = ("attn_mask", "relative_position_index")
METADATA_PREFIX = "lua."


@dataclass
class RawCheckpoint:
    """Tensors and string metadata read from a checkpoint file."""

    path: Path
    tensors: dict[str, torch.Tensor]
    metadata: dict[str, str] = field(default_factory=dict)
    wrapper: Optional[str] = None


def is_recomputable(name: str) -> bool:
    return name.rsplit(".", 1)[-1] in RECOMPUTABLE_BUFFERS


def _read_safetensors(path: Path) -> RawCheckpoint:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            metadata = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path.name}: not a readable .safetensors file (corrupted or truncated?): {exc}") from exc
    return RawCheckpoint(path, tensors, metadata)


def _read_pickle(path: Path) -> RawCheckpoint:
    if not zipfile.is_zipfile(path):
        # Legacy (non-zip) torch files are refused: weights_only loading of them is the
        # least exercised path and every current torch writes zip archives.
        raise CheckpointError(f"{path.name}: not a PyTorch zip checkpoint (corrupted, truncated, or a legacy/raw pickle)")
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"{path.name}: refused to load: the file contains Python objects other than plain tensors "
            f"(it could run code when unpickled). Only weights-only checkpoints are accepted. Details: {str(exc).splitlines()[0]}"
        ) from exc
    except Exception as exc:  # noqa: BLE001 - a malformed pickle can raise almost anything (IndexError, TypeError, ...)
        raise CheckpointError(f"{path.name}: could not be read (corrupted or truncated?): "
                              f"{type(exc).__name__}: {exc}") from exc
    wrapper = None
    if isinstance(obj, Mapping):
        for key in WRAPPER_KEYS:
            if isinstance(obj.get(key), Mapping):
                obj, wrapper = obj[key], key
                break
    if not isinstance(obj, Mapping) or not obj:
        raise CheckpointError(f"{path.name}: expected a dict of tensors (optionally under 'params_ema'), "
                              f"found {type(obj).__name__}")
    bad = [k for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{path.name}: entries that are not tensors: {bad[:5]}")
    _check_tensor_bytes(path, obj)
    return RawCheckpoint(path, dict(obj), {}, wrapper)


def _check_tensor_bytes(path: Path, tensors: Mapping[str, torch.Tensor]) -> None:
    """Refuse tensors that declare more data than their storages hold.

    A crafted ``.pth`` can view a tiny storage with zero or overlapping strides as a
    huge tensor; anything that then reads every element (a NaN check, a copy into the
    network) would allocate the declared size. The storages are what torch actually
    read from the archive (it checks each record's size), so the bound cannot be forged.
    """
    storages: dict[int, int] = {}
    for v in tensors.values():
        storage = v.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
    stored = sum(storages.values())
    declared = sum(v.numel() * v.element_size() for v in tensors.values())
    if declared > stored:
        name, big = max(tensors.items(), key=lambda kv: kv[1].numel() * kv[1].element_size())
        raise CheckpointError(
            f"{path.name}: the tensors declare {declared} bytes of data but their storages hold only {stored} "
            f"(overlapping or broadcast views are not accepted; largest: {name!r} with shape {tuple(big.shape)})")


def read_checkpoint(path: str | os.PathLike) -> RawCheckpoint:
    """Read tensors and metadata from a ``.safetensors`` or weights-only ``.pth`` file."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"checkpoint not found: {p}")
    if p.stat().st_size == 0:
        raise CheckpointError(f"{p.name}: file is empty")
    suffix = p.suffix.lower()
    if suffix in SAFETENSORS_SUFFIXES:
        return _read_safetensors(p)
    if suffix in PICKLE_SUFFIXES:
        return _read_pickle(p)
    raise CheckpointError(f"{p.name}: unsupported checkpoint type {suffix!r}; use .safetensors or .pth")


_INT_FIELDS = ("in_chans", "embed_dim", "window_size", "head_num_feat")
_INT_LIST_FIELDS = ("depths", "num_heads", "scales")
_FLOAT_FIELDS = ("mlp_ratio", "leaky_relu_slope", "in_scale", "in_shift")


def config_from_metadata(metadata: Mapping[str, str], source: str = "checkpoint") -> Optional[LUAConfig]:
    """The ``lua.config`` metadata as a :class:`LUAConfig` (None if absent).

    Field types and finiteness are checked here, so a malformed or hostile entry is
    a :class:`CheckpointError` naming ``source`` and the field, never a TypeError.
    """
    text = metadata.get(METADATA_PREFIX + "config")
    if not text:
        return None
    key = METADATA_PREFIX + "config"
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{source}: metadata field {key!r} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise CheckpointError(f"{source}: metadata field {key!r} must be a JSON object, got {type(data).__name__}")

    def bad(name: str, what: str) -> CheckpointError:
        return CheckpointError(f"{source}: metadata field {key!r}: {name!r} must be {what}, got {data[name]!r}")

    def is_int(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    for name in _INT_FIELDS:
        if name in data and not (is_int(data[name]) and data[name] >= 1):
            raise bad(name, "a positive integer")
    for name in _INT_LIST_FIELDS:
        if name in data and not (isinstance(data[name], list) and all(is_int(v) and v >= 1 for v in data[name])):
            raise bad(name, "a list of positive integers")
    for name in _FLOAT_FIELDS:
        if name in data and not ((is_int(data[name]) or isinstance(data[name], float)) and math.isfinite(data[name])):
            raise bad(name, "a finite number")
    for name in ("qkv_bias", "tae_groupnorm"):
        if name in data and not isinstance(data[name], bool):
            raise bad(name, "true or false")
    if "skip" in data and not isinstance(data["skip"], str):
        raise bad("skip", "a string")
    try:
        return LUAConfig.from_dict(data)
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"{source}: metadata field {key!r} is not a valid LUA config: {exc}") from exc


def json_metadata(metadata: Mapping[str, str], key: str, default: Any = None) -> Any:
    text = metadata.get(METADATA_PREFIX + key)
    if text is None:
        return default
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"metadata field {METADATA_PREFIX + key!r} is not valid JSON: {exc}") from exc


def load_into(model: torch.nn.Module, tensors: Mapping[str, torch.Tensor], source: str) -> None:
    """Load ``tensors`` into ``model``; recomputable buffers may be present or absent.

    Raises :class:`CheckpointError` naming missing, unexpected or mis-shaped tensors.
    """
    expected = {k: v for k, v in model.state_dict().items()}
    provided = {k: v for k, v in tensors.items() if not is_recomputable(k)}
    missing = sorted(k for k in expected if k not in provided and not is_recomputable(k))
    unexpected = sorted(k for k in tensors if k not in expected)
    problems = []
    if missing:
        problems.append(f"missing tensors {missing[:5]}{' ...' if len(missing) > 5 else ''} ({len(missing)} in all)")
    if unexpected:
        problems.append(f"unexpected tensors {unexpected[:5]}{' ...' if len(unexpected) > 5 else ''} ({len(unexpected)} in all)")
    for k, v in tensors.items():
        if k in expected and tuple(v.shape) != tuple(expected[k].shape):
            if is_recomputable(k) and k.endswith("attn_mask"):
                continue  # computed for another construction size; never used at run time
            problems.append(f"tensor {k!r} has shape {tuple(v.shape)}, the model expects {tuple(expected[k].shape)}")
    for k, v in provided.items():
        if k in expected and expected[k].is_floating_point() and not v.is_floating_point():
            problems.append(f"tensor {k!r} has dtype {v.dtype}, the model expects floating-point weights")
        elif k in expected and v.is_floating_point() and not torch.isfinite(v).all():
            problems.append(f"tensor {k!r} contains NaN or Inf")
    if problems:
        raise CheckpointError(f"{source}: " + "; ".join(problems))
    with torch.no_grad():
        model.load_state_dict({k: v for k, v in provided.items()}, strict=False)
