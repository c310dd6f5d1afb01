"""Reading LUA checkpoints safely: our ``.safetensors`` and the official ``.pth``.

Nothing here unpickles arbitrary objects: ``.pth`` files go through
``torch.load(weights_only=True)`` and must contain only tensors (optionally
under a ``params_ema``/``params``/``state_dict`` wrapper).
"""
from __future__ import annotations

import json
import os
import pickle
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional

import torch

from ..model.config import LUAConfig

SAFETENSORS_SUFFIXES = (".safetensors", ".sft")
PICKLE_SUFFIXES = (".pth", ".pt", ".ckpt", ".bin")
WRAPPER_KEYS = ("params_ema", "params", "state_dict", "model")
RECOMPUTABLE_BUFFERS = ("attn_mask", "relative_position_index")
METADATA_PREFIX = "lua."


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used; the message names the file and the problem."""


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
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise CheckpointError(f"{path.name}: could not be read (corrupted or truncated?): {exc}") from exc
    wrapper = None
    if isinstance(obj, Mapping):
        for key in WRAPPER_KEYS:
            if isinstance(obj.get(key), Mapping):
                obj, wrapper = obj[key], key
                break
    if not isinstance(obj, Mapping) or not obj:
        raise CheckpointError(f"{path.name}: expected a dict of tensors (optionally under 'params_ema'), found {type(obj).__name__}")
    bad = [k for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{path.name}: entries that are not tensors: {bad[:5]}")
    return RawCheckpoint(path, dict(obj), {}, wrapper)


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


_BLOCK_RE = re.compile(r"^layers\.(\d+)\.residual_group\.blocks\.(\d+)\.")


def infer_config(tensors: Mapping[str, torch.Tensor]) -> LUAConfig:
    """Derive the network config from tensor shapes (for files without our metadata)."""
    try:
        conv_first = tensors["conv_first.weight"]
        embed_dim, in_chans = int(conv_first.shape[0]), int(conv_first.shape[1])
        depth_of: dict[int, int] = {}
        for name in tensors:
            m = _BLOCK_RE.match(name)
            if m:
                layer, block = int(m.group(1)), int(m.group(2))
                depth_of[layer] = max(depth_of.get(layer, 0), block + 1)
        if not depth_of or sorted(depth_of) != list(range(len(depth_of))):
            raise CheckpointError("no residual Swin layers found (is this a LUA checkpoint?)")
        depths = tuple(depth_of[i] for i in range(len(depth_of)))
        heads = tuple(
            int(tensors[f"layers.{i}.residual_group.blocks.0.attn.relative_position_bias_table"].shape[1])
            for i in range(len(depths))
        )
        table_len = int(tensors["layers.0.residual_group.blocks.0.attn.relative_position_bias_table"].shape[0])
        window = (round(table_len ** 0.5) + 1) // 2
        hidden = int(tensors["layers.0.residual_group.blocks.0.mlp.fc1.weight"].shape[0])
        scales = sorted(int(m.group(1)) for k in tensors if (m := re.match(r"^heads\.x(\d+)\.conv_last\.weight$", k)))
        if not scales:
            raise CheckpointError("no upscale heads (heads.x2/heads.x4) found")
        head_feat = int(tensors[f"heads.x{scales[0]}.conv_before.0.weight"].shape[0])
        qkv_bias = "layers.0.residual_group.blocks.0.attn.qkv.bias" in tensors
    except KeyError as exc:
        raise CheckpointError(f"missing tensor {exc.args[0]!r}: not a LUA checkpoint") from exc
    return LUAConfig(
        in_chans=in_chans, embed_dim=embed_dim, depths=depths, num_heads=heads, window_size=window,
        mlp_ratio=hidden / embed_dim, head_num_feat=head_feat, scales=tuple(scales), qkv_bias=qkv_bias,
    )


def config_from_metadata(metadata: Mapping[str, str]) -> Optional[LUAConfig]:
    text = metadata.get(METADATA_PREFIX + "config")
    return LUAConfig.from_json(text) if text else None


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
        if k in expected and v.is_floating_point() and not torch.isfinite(v).all():
            problems.append(f"tensor {k!r} contains NaN or Inf")
    if problems:
        raise CheckpointError(f"{source}: " + "; ".join(problems))
    with torch.no_grad():
        model.load_state_dict({k: v for k, v in provided.items()}, strict=False)
