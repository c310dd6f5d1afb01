"""The straightforward LUA forward pass the benchmark compares against.

This is the textbook SwinIR computation on the same weights as a :class:`LUANet`:
every shifted block rolls the feature map, partitions it into windows, rebuilds the
shift mask for the current resolution and gathers the relative-position bias from its
table on every call, runs attention as ``softmax(q k^T * scale + bias + mask) v``
with explicit matrix products, merges the windows and rolls back.  Windows are formed
with reshapes (as in the official SwinIR code), so the comparison is against a
reasonable implementation, not a Python loop over windows.

Used by ``python -m lua_core.bench`` (speed-up of the optimised network) and by the
regression tests (both must give the same numbers).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..model.network import LUANet

MASK_FILL = -100.0


def _partition(x: torch.Tensor, ws: int) -> torch.Tensor:
    b, h, w, c = x.shape
    x = x.view(b, h // ws, ws, w // ws, ws, c).permute(0, 1, 3, 2, 4, 5).contiguous()
    return x.view(-1, ws * ws, c)


def _merge(windows: torch.Tensor, ws: int, b: int, h: int, w: int) -> torch.Tensor:
    c = windows.shape[-1]
    x = windows.view(b, h // ws, w // ws, ws, ws, c).permute(0, 1, 3, 2, 4, 5).contiguous()
    return x.view(b, h, w, c)


def plain_shift_mask(h: int, w: int, ws: int, shift: int, device: torch.device) -> torch.Tensor:
    """``(nW, N, N)`` mask for a cyclically shifted ``h x w`` map, built from region labels."""
    img = torch.zeros(1, h, w, 1, device=device)
    count = 0
    for hs in (slice(0, -ws), slice(-ws, -shift), slice(-shift, None)):
        for wsl in (slice(0, -ws), slice(-ws, -shift), slice(-shift, None)):
            img[:, hs, wsl, :] = count
            count += 1
    labels = _partition(img, ws).squeeze(-1)
    diff = labels.unsqueeze(1) - labels.unsqueeze(2)
    return diff.masked_fill(diff != 0, MASK_FILL).masked_fill(diff == 0, 0.0)


def plain_bias(attn, ws: int) -> torch.Tensor:
    """``(heads, N, N)`` relative-position bias gathered from the table."""
    coords = torch.stack(torch.meshgrid(torch.arange(ws), torch.arange(ws), indexing="ij")).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0).contiguous()
    rel[:, :, 0] += ws - 1
    rel[:, :, 1] += ws - 1
    rel[:, :, 0] *= 2 * ws - 1
    index = rel.sum(-1).view(-1).to(attn.relative_position_bias_table.device)
    table = attn.relative_position_bias_table
    return table[index].view(ws * ws, ws * ws, -1).permute(2, 0, 1).contiguous()


def plain_block(blk, x: torch.Tensor, ws: int, shift: int) -> torch.Tensor:
    """One Swin block, SwinIR style: roll, partition, masked softmax attention, merge, roll back."""
    b, h, w, c = x.shape
    attn = blk.attn
    heads = attn.num_heads
    hd = c // heads
    y = blk.norm1(x)
    if shift:
        y = torch.roll(y, shifts=(-shift, -shift), dims=(1, 2))
    win = _partition(y, ws)  # (B*nW, N, C)
    nwin, n, _ = win.shape
    qkv = attn.qkv(win).reshape(nwin, n, 3, heads, hd).permute(2, 0, 3, 1, 4)
    q, k, v = qkv[0], qkv[1], qkv[2]
    scores = (q * hd ** -0.5) @ k.transpose(-2, -1)
    scores = scores + plain_bias(attn, ws).unsqueeze(0).to(scores.dtype)
    if shift:
        mask = plain_shift_mask(h, w, ws, shift, x.device).to(scores.dtype)
        nw = mask.shape[0]
        scores = scores.view(nwin // nw, nw, heads, n, n) + mask.unsqueeze(1).unsqueeze(0)
        scores = scores.view(nwin, heads, n, n)
    out = torch.softmax(scores, dim=-1) @ v
    out = attn.proj(out.transpose(1, 2).reshape(nwin, n, c))
    y = _merge(out, ws, b, h, w)
    if shift:
        y = torch.roll(y, shifts=(shift, shift), dims=(1, 2))
    x = x + y
    return x + blk.mlp.fc2(F.gelu(blk.mlp.fc1(blk.norm2(x))))


def plain_forward(net: LUANet, z: torch.Tensor, scale: int) -> torch.Tensor:
    """Same contract as ``net(z, scale)``, computed the straightforward way."""
    cfg = net.config
    ws = cfg.window_size
    h, w = z.shape[-2:]
    x = (z - cfg.in_shift) * cfg.in_scale
    ph, pw = (-h) % ws, (-w) % ws
    xp = x
    while ph or pw:  # reflect as far as the size allows, then again (same rule as the network)
        rh, rw = min(ph, xp.shape[-2] - 1), min(pw, xp.shape[-1] - 1)
        if rh == 0 and rw == 0:
            xp = F.pad(xp, (0, pw, 0, ph), mode="replicate")
            break
        xp = F.pad(xp, (0, rw, 0, rh), mode="reflect")
        ph, pw = ph - rh, pw - rw
    feats = net.conv_first(xp)
    t = net.patch_embed.norm(feats.permute(0, 2, 3, 1).contiguous())
    for layer in net.layers:
        res = t
        for i, blk in enumerate(layer.residual_group.blocks):
            t = plain_block(blk, t, ws, ws // 2 if i % 2 else 0)
        t = layer.conv(t.permute(0, 3, 1, 2).contiguous()).permute(0, 2, 3, 1).contiguous() + res
    t = net.norm(t).permute(0, 3, 1, 2).contiguous()
    feats = net.conv_after_body(t) + feats
    head = net.heads[f"x{scale}"]
    y = head.conv_last(head.upsample(head.conv_before(feats)))[..., : h * scale, : w * scale]
    if cfg.skip == "bicubic":
        y = y + F.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False)
    return y / cfg.in_scale + cfg.in_shift
