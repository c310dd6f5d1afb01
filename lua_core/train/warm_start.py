"""Starting a network from another checkpoint's weights (any family, same trunk)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..checkpoints.formats import config_from_metadata, is_recomputable, read_checkpoint
from ..model.detect import infer_config
from ..model.network import LUANet


def transfer_init(net: LUANet, path: str | Path) -> dict[str, Any]:
    """Start from another checkpoint (any family): load every tensor whose shape matches.

    The first conv and the heads' last convs are left at their fresh init when
    the latent width differs (cross-VAE transfer).  The trunk must match.
    """
    raw = read_checkpoint(path)
    src = config_from_metadata(raw.metadata) or infer_config(raw.tensors)
    dst = net.config
    for key in ("embed_dim", "depths", "num_heads", "window_size", "mlp_ratio", "head_num_feat"):
        if getattr(src, key) != getattr(dst, key):
            raise ValueError(f"{Path(path).name}: trunk differs ({key} {getattr(src, key)} vs {getattr(dst, key)}); "
                             f"transfer needs the same network size")
    own = net.state_dict()
    load, replaced, skipped = {}, [], []
    for k, v in raw.tensors.items():
        if is_recomputable(k):
            continue
        if k not in own:
            skipped.append(k)
        elif tuple(v.shape) == tuple(own[k].shape):
            load[k] = v.to(own[k].dtype)
        else:
            replaced.append(k)
    net.load_state_dict(load, strict=False)
    return {"from": Path(path).name, "family": raw.metadata.get("lua.family"), "replaced": replaced,
            "skipped": skipped, "loaded": len(load)}
