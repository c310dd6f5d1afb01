"""A deliberately straightforward LUA forward pass (explicit loops over windows,
masks and biases rebuilt on every call, plain softmax) used to check the
optimised network in ``lua_core.model`` gives the same numbers."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def _window_attention_plain(x, attn, window, shift):
    b, h, w, c = x.shape
    heads = attn.num_heads
    hd = c // heads
    if shift:
        x = torch.roll(x, (-shift, -shift), (1, 2))
        region = torch.zeros(h, w)
        cnt = 0
        for hs in (slice(0, h - window), slice(h - window, h - shift), slice(h - shift, h)):
            for ws in (slice(0, w - window), slice(w - window, w - shift), slice(w - shift, w)):
                region[hs, ws] = cnt
                cnt += 1
    out = torch.zeros_like(x)
    coords = [(i, j) for i in range(window) for j in range(window)]
    table = attn.relative_position_bias_table
    bias = torch.empty(heads, window * window, window * window)
    for a, (i1, j1) in enumerate(coords):
        for bb, (i2, j2) in enumerate(coords):
            bias[:, a, bb] = table[(i1 - i2 + window - 1) * (2 * window - 1) + (j1 - j2 + window - 1)]
    for y0 in range(0, h, window):
        for x0 in range(0, w, window):
            win = x[:, y0:y0 + window, x0:x0 + window, :].reshape(b, window * window, c)
            qkv = attn.qkv(win).reshape(b, window * window, 3, heads, hd).permute(2, 0, 3, 1, 4)
            q, k, v = qkv[0], qkv[1], qkv[2]
            scores = (q * hd ** -0.5) @ k.transpose(-2, -1) + bias
            if shift:
                lab = region[y0:y0 + window, x0:x0 + window].reshape(-1)
                scores = scores + (lab[None, :] != lab[:, None]).float() * -100.0
            o = torch.softmax(scores, -1) @ v
            o = attn.proj(o.transpose(1, 2).reshape(b, window * window, c))
            out[:, y0:y0 + window, x0:x0 + window, :] = o.reshape(b, window, window, c)
    if shift:
        out = torch.roll(out, (shift, shift), (1, 2))
    return out


def reference_forward(net, z: torch.Tensor, scale: int) -> torch.Tensor:
    cfg = net.config
    win = cfg.window_size
    h, w = z.shape[-2:]
    x = (z - cfg.in_shift) * cfg.in_scale
    ph, pw = (-h) % win, (-w) % win
    xp = F.pad(x, (0, pw, 0, ph), mode="reflect")
    feats = net.conv_first(xp)
    t = net.patch_embed.norm(feats.permute(0, 2, 3, 1))
    for layer in net.layers:
        res = t
        for i, blk in enumerate(layer.residual_group.blocks):
            shift = win // 2 if i % 2 else 0
            t = t + _window_attention_plain(blk.norm1(t), blk.attn, win, shift)
            t = t + blk.mlp.fc2(F.gelu(blk.mlp.fc1(blk.norm2(t))))
        t = layer.conv(t.permute(0, 3, 1, 2)).permute(0, 2, 3, 1) + res
    t = net.norm(t).permute(0, 3, 1, 2)
    feats = net.conv_after_body(t) + feats
    head = net.heads[f"x{scale}"]
    y = head.conv_before(feats)
    y = head.upsample(y)
    y = head.conv_last(y)[..., : h * scale, : w * scale]
    if cfg.skip == "bicubic":
        y = y + F.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False)
    return y / cfg.in_scale + cfg.in_shift
