"""Which network a state dict describes: its config from tensor shapes, and what building it would cost.

Beside the network it inspects, as the spandrel loaders do: :func:`infer_config` reads the
architecture of a file without metadata (the official ``lua_flux.pth``) from a few tensors'
shapes; :func:`build_cost` prices a config by building it on the meta device, so a crafted file
is refused before anything real is allocated.
"""
from __future__ import annotations

import re
from typing import Mapping

import torch

from ..errors import CheckpointError
from .config import LUAConfig
from .network import LUANet

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


# Leeway for :func:`check_build_cost`: legitimate files hold every weight, so the network they
# describe is never larger than the tensors provided; only a crafted file gets near this bound.
BUILD_COST_FACTOR = 2.0
BUILD_COST_SLACK = 64 << 20  # bytes


def _module_bytes(module: torch.nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in (*module.parameters(), *module.buffers()))


def build_cost(config: LUAConfig) -> int:
    """Bytes of parameters and buffers (fp32) that building ``config`` allocates, measured on the meta device."""
    with torch.device("meta"):
        return _module_bytes(LUANet(config))


def check_build_cost(config: LUAConfig, tensors: Mapping[str, torch.Tensor], source: str) -> None:
    """Refuse a config whose network would be far larger than the tensors the file provides.

    Runs before the network is built, so a small crafted file cannot make the loader
    allocate gigabytes (huge widths, thousands of blocks, a giant attention window).
    """
    provided = 4 * sum(v.numel() for v in tensors.values())
    if sum(config.depths) > len(tensors):
        # every block holds several tensors: this file cannot be the network it describes (and a
        # crafted block count should not be built, even on the meta device)
        raise CheckpointError(
            f"{source}: the architecture it describes has {sum(config.depths)} transformer blocks but the file "
            f"holds only {len(tensors)} tensors; refused before building the network")
    cost = build_cost(config)
    if cost > BUILD_COST_FACTOR * provided + BUILD_COST_SLACK:
        raise CheckpointError(
            f"{source}: the architecture it describes (embed_dim {config.embed_dim}, depths {list(config.depths)}, "
            f"window_size {config.window_size}) needs about {cost / 2**20:.0f} MiB but the file provides only "
            f"{provided / 2**20:.1f} MiB of weights; refused before building the network")
