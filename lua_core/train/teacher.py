"""Teacher latents: the latent of the pixel-bicubic image, ``encode(bicubic_up(decode(z_lr)))``.

Pixel bicubic after decoding at base size is the baseline an adapter must beat, and it is a
deterministic function of the LR latent, so a network can learn it from latent losses alone
(no decoder in the loop, ~10x cheaper per sample than the pixel stages on a CPU).  The decoded
teacher latent lands within ~0.2 dB of pixel bicubic; a Stage I aimed at it starts the pixel
stages from a network that is already near that baseline instead of a blurry latent mean.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F


@torch.no_grad()
def teacher_latents(vae, z_lr: torch.Tensor, scales: Sequence[int], batch: int = 16) -> dict[str, torch.Tensor]:
    """``{"b<s>": encode(bicubic_up(decode(z_lr), s))}`` in raw latent units, float32 on the CPU."""
    dev = vae.device if hasattr(vae, "device") and not isinstance(vae, torch.nn.Module) else next(vae.parameters()).device
    out: dict[str, list[torch.Tensor]] = {f"b{s}": [] for s in scales}
    for i in range(0, len(z_lr), batch):
        img = vae.decode_raw(z_lr[i: i + batch].to(dev)).float().clamp(0, 1)
        for s in scales:
            up = F.interpolate(img, scale_factor=s, mode="bicubic", align_corners=False).clamp(0, 1)
            out[f"b{s}"].append(vae.encode_raw(up).float().cpu())
    return {k: torch.cat(v) for k, v in out.items()}


def cached_teacher_latents(vae, cache_dir: Path, z_lr: torch.Tensor, scales: Sequence[int]) -> dict[str, torch.Tensor]:
    """Teacher latents of a latent cache, computed once and kept beside its shards (``teacher.safetensors``)."""
    from safetensors.torch import load_file, save_file

    path = Path(cache_dir) / "teacher.safetensors"
    want = {f"b{s}" for s in scales}
    if path.is_file():
        data = load_file(str(path))
        if want <= set(data) and all(len(data[k]) == len(z_lr) for k in want):
            return {k: data[k] for k in want}
    data = teacher_latents(vae, z_lr, scales)
    tmp = path.with_suffix(".part")
    save_file({k: v.contiguous() for k, v in data.items()}, str(tmp))
    tmp.replace(path)
    return data
