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
        raise CheckpointError(f"{path.name}: expected a dict of tensors (optionally under 'params_ema'), found {type(obj).__name__}")
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


_BLOCK_RE = re.compile(r"^layers\.(\d+)\.residual_group\.blocks\.(\d+)\.")


def _dim(tensors: Mapping[str, torch.Tensor], name: str, index: int) -> int:
    """Size of dimension ``index`` of tensor ``name``; CheckpointError naming it when absent or too flat."""
    shape = tuple(tensors[name].shape)  # KeyError -> "missing tensor" below
    if len(shape) <= index:
        raise CheckpointError(f"tensor {name!r} has shape {shape}; a LUA checkpoint has at least {index + 1} dimensions there")
    return int(shape[index])


def inference_sources(tensors: Mapping[str, torch.Tensor]) -> list[str]:
    """``name shape`` of the tensors :func:`infer_config` reads the architecture from (for error messages)."""
    tables = sorted((k for k in tensors if re.match(r"^layers\.\d+\.residual_group\.blocks\.0\.attn\."
                                                     r"relative_position_bias_table$", k)),
                    key=lambda k: int(k.split(".")[1]))
    names = ["conv_first.weight", *tables, "layers.0.residual_group.blocks.0.mlp.fc1.weight"]
    heads = sorted((k for k in tensors if re.match(r"^heads\.x\d+\.conv_before\.0\.weight$", k)),
                   key=lambda k: int(k.split(".")[1][1:]))
    names += heads[:1]
    return [f"{n} {tuple(tensors[n].shape)}" for n in names if n in tensors]


def infer_config(tensors: Mapping[str, torch.Tensor]) -> LUAConfig:
    """Derive the network config from tensor shapes (for files without our metadata).

    Raises :class:`CheckpointError` (naming the tensor where one is at fault) when the
    shapes do not describe a LUA network.
    """
    try:
        embed_dim, in_chans = _dim(tensors, "conv_first.weight", 0), _dim(tensors, "conv_first.weight", 1)
        blocks_of: dict[int, set[int]] = {}
        for name in tensors:
            m = _BLOCK_RE.match(name)
            if m:
                blocks_of.setdefault(int(m.group(1)), set()).add(int(m.group(2)))
        if not blocks_of or sorted(blocks_of) != list(range(len(blocks_of))):
            raise CheckpointError("no residual Swin layers found (is this a LUA checkpoint?)")
        for layer, blocks in blocks_of.items():
            if sorted(blocks) != list(range(len(blocks))):
                gap = min(set(range(max(blocks) + 1)) - blocks)
                raise CheckpointError(f"layer {layer} has tensors for block {max(blocks)} but none for block {gap} "
                                      f"(missing tensors 'layers.{layer}.residual_group.blocks.{gap}.*')")
        depths = tuple(len(blocks_of[i]) for i in range(len(blocks_of)))
        table = "layers.{}.residual_group.blocks.0.attn.relative_position_bias_table"
        heads = tuple(_dim(tensors, table.format(i), 1) for i in range(len(depths)))
        table_len = _dim(tensors, table.format(0), 0)
        window = (round(table_len ** 0.5) + 1) // 2
        hidden = _dim(tensors, "layers.0.residual_group.blocks.0.mlp.fc1.weight", 0)
        scales = sorted(int(m.group(1)) for k in tensors if (m := re.match(r"^heads\.x(\d+)\.conv_last\.weight$", k)))
        if not scales:
            raise CheckpointError("no upscale heads (heads.x2/heads.x4) found")
        head_feat = _dim(tensors, f"heads.x{scales[0]}.conv_before.0.weight", 0)
        qkv_bias = "layers.0.residual_group.blocks.0.attn.qkv.bias" in tensors
    except KeyError as exc:
        raise CheckpointError(f"missing tensor {exc.args[0]!r}: not a LUA checkpoint") from exc
    if embed_dim < 1:
        raise CheckpointError(f"tensor 'conv_first.weight' has shape {tuple(tensors['conv_first.weight'].shape)}: "
                              f"no feature channels")
    try:
        return LUAConfig(
            in_chans=in_chans, embed_dim=embed_dim, depths=depths, num_heads=heads, window_size=window,
            mlp_ratio=hidden / embed_dim, head_num_feat=head_feat, scales=tuple(scales), qkv_bias=qkv_bias,
        )
    except ValueError as exc:
        raise CheckpointError(f"the tensor shapes do not describe a LUA network ({exc}; architecture inferred "
                              f"from {', '.join(inference_sources(tensors))})") from exc


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


# Leeway for :func:`check_build_cost`: legitimate files hold every weight, so the network they
# describe is never larger than the tensors provided; only a crafted file gets near this bound.
BUILD_COST_FACTOR = 2.0
BUILD_COST_SLACK = 64 << 20  # bytes


def build_cost(config: LUAConfig) -> int:
    """Approximate bytes (fp32 parameters + index/mask buffers) that building ``config`` allocates.

    Counts the dominant terms only (it may undercount slightly, never by much).
    """
    e, c, f, w = config.embed_dim, config.in_chans, config.head_num_feat, config.window_size
    hidden = int(e * config.mlp_ratio)
    n = w * w
    mask_windows = (max(32, w) // w) ** 2
    params = c * e * 9 + 2 * e * e * 9  # conv_first, conv_after_body (+ one RSTB conv per layer below)
    buffers = 0
    for depth, heads in zip(config.depths, config.num_heads):
        params += e * e * 9
        params += depth * (4 * e * e + 2 * e * hidden + (2 * w - 1) ** 2 * heads)
        buffers += depth * n * n * 8  # relative_position_index (int64)
        buffers += (depth // 2) * mask_windows * n * n * 4  # attn_mask of shifted blocks
    for s in config.scales:
        params += e * f * 9 + int(math.log2(s)) * f * 4 * f * 9 + f * c * 9
    return 4 * params + buffers


def check_build_cost(config: LUAConfig, tensors: Mapping[str, torch.Tensor], source: str) -> None:
    """Refuse a config whose network would be far larger than the tensors the file provides.

    Runs before the network is built, so a small crafted file cannot make the loader
    allocate gigabytes (huge widths, thousands of blocks, a giant attention window).
    """
    provided = 4 * sum(v.numel() for v in tensors.values())
    cost = build_cost(config)
    if cost > BUILD_COST_FACTOR * provided + BUILD_COST_SLACK:
        raise CheckpointError(
            f"{source}: the architecture it describes (embed_dim {config.embed_dim}, depths {list(config.depths)}, "
            f"window_size {config.window_size}) needs about {cost / 2**20:.0f} MiB but the file provides only "
            f"{provided / 2**20:.1f} MiB of weights; refused before building the network")


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
