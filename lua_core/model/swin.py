"""Shifted-window transformer pieces of the LUA trunk (SwinIR layout).

Activations stay in ``(B, H, W, C)`` layout inside the trunk; windows are formed
with strided views and copies, never a Python loop over windows.

Inference (no autograd) takes a fast path.  Attention runs through
``scaled_dot_product_attention`` on 4-D tensors with a 4-D additive mask, which on
CPU selects PyTorch's fused flash kernel (5-D inputs fall back to the slow math
path).  Shifted blocks never roll the feature map and never build a per-window
mask: after a cyclic shift only four kinds of window exist (interior, last column,
last row, corner), each with one fixed shift pattern.  The windows of a block are
gathered kind by kind straight from their shifted positions into one buffer,
attention runs once per kind with a broadcast ``(1, heads, N, N)`` mask
(relative-position bias + that kind's pattern), and the result is scattered back to
the unshifted positions with the residual add fused in.  This is exactly SwinIR's
roll / partition / masked attention / merge / roll back, with the same numbers up to
float rounding.

Memory-bounded inference (``forward_chunked``, used by the engine when one pass does
not fit the memory budget) works *in place* on the feature map, a chunk of windows (a
band of window rows, or part of one) at a time: gather the chunk's windows, norm,
attention, residual, norm, MLP, residual, all in window layout, then scatter back into
the same positions.  Windows are disjoint and a
block's output at a pixel depends only on its own window, so this is the same
arithmetic as the full pass with no overlap and no recompute; only the per-window
temporaries (qkv, attention output, MLP hidden features) are bounded by the band.

With autograd recording (training) the classic roll/partition form runs, with the
mask broadcast over the batch.  The relative-position bias is cached per parameter
version and the shift masks per resolution/device/dtype.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Optional

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from .streaming import conv_rows, row_bands

MASK_FILL = -100.0
_SHIFT_MASK_CACHE: "OrderedDict[tuple, torch.Tensor]" = OrderedDict()
_SHIFT_MASK_CACHE_SIZE = 16


def relative_position_index(window: int) -> torch.Tensor:
    """Index into the ``(2w-1)^2`` bias table for every pair of window positions."""
    coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij"))
    coords = coords.flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (window - 1)
    return rel[..., 0] * (2 * window - 1) + rel[..., 1]


def window_partition(x: torch.Tensor, window: int) -> torch.Tensor:
    """``(B, H, W, C)`` -> ``(B, nW, window*window, C)``; H and W must be multiples of window."""
    return rearrange(x, "b (nh wh) (nw ww) c -> b (nh nw) (wh ww) c", wh=window, ww=window)


def window_merge(windows: torch.Tensor, window: int, h: int, w: int) -> torch.Tensor:
    """Inverse of :func:`window_partition`."""
    return rearrange(windows, "b (nh nw) (wh ww) c -> b (nh wh) (nw ww) c", nh=h // window, wh=window)


def build_shift_mask(h: int, w: int, window: int, shift: int, device: torch.device | str | None = None) -> torch.Tensor:
    """Additive mask ``(nW, N, N)`` that stops attention across the wrap-around of a cyclic shift
    (on ``device``, or the default device: the meta device when a build is only being priced)."""
    labels = torch.zeros(1, h, w, 1, device=device)
    region = 0
    bounds = ((0, h - window), (h - window, h - shift), (h - shift, h))
    wbounds = ((0, w - window), (w - window, w - shift), (w - shift, w))
    for h0, h1 in bounds:
        for w0, w1 in wbounds:
            labels[:, h0:h1, w0:w1, :] = region
            region += 1
    windows = window_partition(labels, window).squeeze(0).squeeze(-1)  # (nW, N)
    diff = windows[:, None, :] - windows[:, :, None]
    return torch.zeros_like(diff).masked_fill(diff != 0, MASK_FILL)


def cached_shift_mask(h: int, w: int, window: int, shift: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """:func:`build_shift_mask`, memoised per resolution/device/dtype (small LRU)."""
    key = (h, w, window, shift, str(device), dtype)
    mask = _SHIFT_MASK_CACHE.get(key)
    if mask is None:
        mask = build_shift_mask(h, w, window, shift, device).to(dtype)
        _SHIFT_MASK_CACHE[key] = mask
        while len(_SHIFT_MASK_CACHE) > _SHIFT_MASK_CACHE_SIZE:
            _SHIFT_MASK_CACHE.popitem(last=False)
    else:
        _SHIFT_MASK_CACHE.move_to_end(key)
    return mask


Band = tuple[int, tuple[tuple[int, int, int], ...], int]


def shift_bands(length: int, window: int, shift: int) -> list[Band]:
    """Split one axis of a (virtually) rolled map into bands of windows.

    Each band is ``(windows, segments, kind)``: ``segments`` are ``(start, stop,
    offset)`` ranges of the *unrolled* axis whose samples land at ``offset`` inside
    each window of the band; ``kind`` is 0 for windows that do not straddle the
    wrap-around of the cyclic shift and 1 for the last one, which does.
    """
    n = length // window
    if not shift:
        return [(n, ((0, length, 0),), 0)]
    bands: list[Band] = []
    if n > 1:
        bands.append((n - 1, ((shift, length - window + shift, 0),), 0))
    tail = window - shift
    bands.append((1, ((length - tail, length, 0), (0, shift, tail)), 1))
    return bands


def split_bands(bands: list[Band], max_windows: int, window: int) -> list[list[Band]]:
    """Group the bands of :func:`shift_bands` (one axis) into chunks of at most ``max_windows`` windows.

    A band of several non-wrapping windows is cut into sub-bands; the wrap-around band
    (one window) joins the last chunk when there is room.  Every window along the axis
    lands in exactly one chunk, in order.
    """
    max_windows = max(1, int(max_windows))
    chunks: list[list[Band]] = []
    room = 0
    for n, segs, kind in bands:
        if kind == 0 and len(segs) == 1:
            s0, _, off = segs[0]
            i = 0
            while i < n:
                if room == 0:
                    chunks.append([])
                    room = max_windows
                k = min(room, n - i)
                chunks[-1].append((k, ((s0 + i * window, s0 + (i + k) * window, off),), kind))
                i += k
                room -= k
        else:
            if room < n:
                chunks.append([])
                room = max(max_windows, n)
            chunks[-1].append((n, segs, kind))
            room -= n
    return chunks


def _window_views(t: torch.Tensor, rows: Band, cols: Band):
    """Yield ``(region, (row_offset, rows), (col_offset, cols))`` per segment pair.

    ``region`` is a strided ``(B, gh, gw, lr, lc, C)`` view of ``t`` (``(B, H, W, C)``):
    the part of every window of the band pair that lies in one segment pair.
    """
    b, _, _, c = t.shape
    gh, rsegs, _ = rows
    gw, csegs, _ = cols
    for r0, r1, ro in rsegs:
        lr = (r1 - r0) // gh
        for c0, c1, co in csegs:
            lc = (c1 - c0) // gw
            region = t[:, r0:r1, c0:c1].view(b, gh, lr, gw, lc, c).permute(0, 1, 3, 2, 4, 5)
            yield region, (ro, lr), (co, lc)


class WindowAttention(nn.Module):
    """Multi-head self-attention inside windows with a learned relative-position bias."""

    def __init__(self, dim: int, window: int, num_heads: int, qkv_bias: bool = True) -> None:
        super().__init__()
        self.dim = dim
        self.window = window
        self.num_heads = num_heads
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, num_heads))
        self.register_buffer("relative_position_index", relative_position_index(window), persistent=True)
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        self._bias_cache: Optional[tuple[tuple, torch.Tensor]] = None

    def position_bias(self, dtype: torch.dtype) -> torch.Tensor:
        """``(heads, N, N)`` bias; cached while the table is unchanged and no gradient is needed."""
        table = self.relative_position_bias_table
        n = self.window * self.window
        cacheable = not (torch.is_grad_enabled() and table.requires_grad)
        # inference tensors (weights loaded under inference_mode, as in ComfyUI) have no version
        # counter; they cannot be updated by an optimiser, so their storage identifies them
        version = -1 if table.is_inference() else table._version
        key = (version, table.data_ptr(), table.device, dtype)
        if cacheable and self._bias_cache is not None and self._bias_cache[0] == key:
            return self._bias_cache[1]
        index = self.relative_position_index.to(table.device).view(-1)
        bias = table[index].view(n, n, self.num_heads).permute(2, 0, 1).contiguous().to(dtype)
        if cacheable:
            self._bias_cache = (key, bias)
        return bias

    def _apply(self, fn, recurse=True):  # device/dtype moves invalidate the cached bias
        self._bias_cache = None
        return super()._apply(fn, recurse)

    def attend(self, windows: torch.Tensor, counts: list[int], patterns: list[Optional[torch.Tensor]]) -> torch.Tensor:
        """Attention over ``windows`` ``(W, N, C)`` split into consecutive groups.

        Group ``i`` holds ``counts[i]`` windows that share the additive shift pattern
        ``patterns[i]`` (``(N, N)``, or None for none).  Returns ``(W, N, C)``.
        """
        nwin, n, c = windows.shape
        heads = self.num_heads
        qkv = rearrange(self.qkv(windows), "w n (k h d) -> k w h n d", k=3, h=heads)
        q, k, v = qkv.unbind(0)  # each (W, heads, N, hd), strided views: no copy
        bias = self.position_bias(windows.dtype).unsqueeze(0)  # (1, heads, N, N)
        outs = []
        start = 0
        for count, pattern in zip(counts, patterns):
            mask = bias if pattern is None else bias + pattern
            stop = start + count
            # 4-D q/k/v and a 4-D mask: the fused CPU kernel (5-D inputs fall back to the slow math path)
            outs.append(F.scaled_dot_product_attention(q[start:stop], k[start:stop], v[start:stop],
                                                       attn_mask=mask).transpose(1, 2))
            start = stop
        out = outs[0].reshape(nwin, n, c) if len(outs) == 1 else torch.cat(outs, 0).view(nwin, n, c)
        return self.proj(out)

    def forward(self, x: torch.Tensor, shift_mask: Optional[torch.Tensor]) -> torch.Tensor:
        """x: ``(B, nW, N, C)``; shift_mask: ``(nW, N, N)`` or None.

        The per-window form used when autograd records (training): one 5-D attention
        call with the mask broadcast over the batch, which keeps memory flat for big
        training batches and lets the bias table receive its gradient.
        """
        qkv = rearrange(self.qkv(x), "b w n (k h d) -> k b w h n d", k=3, h=self.num_heads)
        q, k, v = qkv.unbind(0)  # each (B, nW, heads, N, hd)
        mask = self.position_bias(x.dtype)
        if shift_mask is not None:
            mask = mask.unsqueeze(0) + shift_mask.unsqueeze(1)  # (nW, heads, N, N)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        out = rearrange(out, "b w h n d -> b w n (h d)")
        return self.proj(out)


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class SwinBlock(nn.Module):
    """Pre-norm Swin block; odd blocks use a cyclic shift of half a window.

    ``attn_mask`` is kept as a buffer (computed for a 32x32 input) only so the
    state-dict layout matches the published checkpoint; the forward pass uses
    masks built for the actual resolution.
    """

    def __init__(self, dim: int, num_heads: int, window: int, shifted: bool, mlp_ratio: float, qkv_bias: bool,
                 layout_size: int = 32) -> None:
        super().__init__()
        self.window = window
        self.shift = window // 2 if shifted else 0
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, window, num_heads, qkv_bias)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        if self.shift:
            size = max(layout_size, window)
            self.register_buffer("attn_mask", build_shift_mask(size, size, window, self.shift), persistent=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: ``(B, H, W, C)`` with H, W multiples of the window."""
        if torch.is_grad_enabled() and (x.requires_grad or self.attn.qkv.weight.requires_grad):
            x = self._attention_autograd(x)
        else:
            x = self._attention_inference(x)
        return x + self.mlp(self.norm2(x))

    def _attention_autograd(self, x: torch.Tensor) -> torch.Tensor:
        """``x + attention``: roll, partition, per-window masks, merge, roll back (differentiable)."""
        b, h, w, c = x.shape
        y = self.norm1(x)
        mask = None
        if self.shift:
            y = torch.roll(y, shifts=(-self.shift, -self.shift), dims=(1, 2))
            mask = cached_shift_mask(h, w, self.window, self.shift, x.device, x.dtype)
        y = self.attn(window_partition(y, self.window), mask)
        y = window_merge(y, self.window, h, w)
        if self.shift:
            y = torch.roll(y, shifts=(self.shift, self.shift), dims=(1, 2))
        return x + y

    def _groups(self, x: torch.Tensor, row_bands_: list[Band], col_bands: Optional[list[Band]] = None):
        """Window groups ``(rows, cols)`` of the given bands, their window counts and shift patterns."""
        b, _, w, _ = x.shape
        ws, shift = self.window, self.shift
        cols = shift_bands(w, ws, shift) if col_bands is None else col_bands
        groups = [(r, k) for r in row_bands_ for k in cols]
        counts = [b * r[0] * k[0] for r, k in groups]
        patterns: list[Optional[torch.Tensor]] = [None] * len(groups)
        if shift:
            kinds = cached_shift_mask(2 * ws, 2 * ws, ws, shift, x.device, x.dtype)  # (4, N, N)
            patterns = [kinds[2 * r[2] + k[2]] if (r[2] or k[2]) else None for r, k in groups]
        return groups, counts, patterns

    def _gather(self, src: torch.Tensor, groups, counts) -> torch.Tensor:
        """Every window of ``groups`` from ``src`` ``(B, H, W, C)`` into one ``(windows, ws, ws, C)`` buffer."""
        b, _, _, c = src.shape
        ws = self.window
        buf = src.new_empty(sum(counts), ws, ws, c)
        start = 0
        for (rows, cols), count in zip(groups, counts):
            dest = buf[start:start + count].view(b, rows[0], cols[0], ws, ws, c)
            for region, (ro, lr), (co, lc) in _window_views(src, rows, cols):
                dest[:, :, :, ro:ro + lr, co:co + lc].copy_(region)
            start += count
        return buf

    def _scatter(self, win: torch.Tensor, groups, counts, out: torch.Tensor,
                 residual: Optional[torch.Tensor]) -> None:
        """Write windows ``win`` back to their positions in ``out``, plus ``residual`` there when given."""
        b, _, _, c = out.shape
        ws = self.window
        start = 0
        for (rows, cols), count in zip(groups, counts):
            src = win[start:start + count].view(b, rows[0], cols[0], ws, ws, c)
            if residual is None:
                for dest, (ro, lr), (co, lc) in _window_views(out, rows, cols):
                    dest.copy_(src[:, :, :, ro:ro + lr, co:co + lc])
            else:
                for (dest, (ro, lr), (co, lc)), (res, _, _) in zip(_window_views(out, rows, cols),
                                                                   _window_views(residual, rows, cols)):
                    torch.add(res, src[:, :, :, ro:ro + lr, co:co + lc], out=dest)
            start += count

    def _attention_inference(self, x: torch.Tensor) -> torch.Tensor:
        """``x + attention`` without autograd: no roll, four window kinds, fused residual add."""
        b, h, w, c = x.shape
        ws = self.window
        groups, counts, patterns = self._groups(x, shift_bands(h, ws, self.shift))
        # gather: every window lands in one contiguous buffer, kind by kind (one pass over y)
        buf = self._gather(self.norm1(x), groups, counts)
        att = self.attn.attend(buf.view(-1, ws * ws, c), counts, patterns)
        del buf
        # scatter back to the unshifted positions, adding the residual on the way (one pass)
        out = torch.empty_like(x)
        self._scatter(att, groups, counts, out, x)
        return out

    def forward_chunked(self, x: torch.Tensor, max_windows: int) -> torch.Tensor:
        """The whole block on ``x`` ``(B, H, W, C)`` **in place**, at most ``max_windows`` windows per image at a time.

        No autograd.  Chunks are bands of whole window rows, or pieces of one window row
        when a row holds more than ``max_windows`` windows.  Per chunk: gather its
        windows, then ``x + attn(norm1(x))`` and ``x + mlp(norm2(x))`` in window layout
        (both per pixel of the chunk's own windows), then scatter back.  Returns ``x``.
        """
        b, h, w, c = x.shape
        ws = self.window
        n = ws * ws
        rows = shift_bands(h, ws, self.shift)
        cols = shift_bands(w, ws, self.shift)
        per_row = w // ws
        max_windows = max(1, int(max_windows))
        if max_windows >= per_row:
            chunks = [(r, cols) for r in split_bands(rows, max_windows // per_row, ws)]
        else:
            chunks = [(r, k) for r in split_bands(rows, 1, ws) for k in split_bands(cols, max_windows, ws)]
        for row_chunk, col_chunk in chunks:
            groups, counts, patterns = self._groups(x, row_chunk, col_chunk)
            win = self._gather(x, groups, counts).view(-1, n, c)
            win.add_(self.attn.attend(self.norm1(win), counts, patterns))
            win.add_(self.mlp(self.norm2(win)))
            self._scatter(win, groups, counts, x, None)
        return x


class BlockGroup(nn.Module):
    """A sequence of Swin blocks (``residual_group`` in the checkpoint)."""

    def __init__(self, dim: int, depth: int, num_heads: int, window: int, mlp_ratio: float, qkv_bias: bool) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            SwinBlock(dim, num_heads, window, shifted=bool(i % 2), mlp_ratio=mlp_ratio, qkv_bias=qkv_bias)
            for i in range(depth)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x

    def forward_chunked(self, x: torch.Tensor, pixels: int) -> torch.Tensor:
        """Every block in place on ``x`` (no autograd), chunks of at most ``pixels`` pixels per image.

        At least one window per chunk.
        """
        for block in self.blocks:
            block.forward_chunked(x, pixels // (block.window * block.window))
        return x


class RSTB(nn.Module):
    """Residual Swin transformer block: blocks, a 3x3 conv, and a skip."""

    def __init__(self, dim: int, depth: int, num_heads: int, window: int, mlp_ratio: float, qkv_bias: bool) -> None:
        super().__init__()
        self.residual_group = BlockGroup(dim, depth, num_heads, window, mlp_ratio, qkv_bias)
        self.conv = nn.Conv2d(dim, dim, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: ``(B, H, W, C)``."""
        y = self.residual_group(x).permute(0, 3, 1, 2)
        y = self.conv(y).permute(0, 2, 3, 1)
        return y + x

    def forward_chunked(self, x: torch.Tensor, pixels: int) -> torch.Tensor:
        """``x + conv(blocks(x))`` **in place** in ``x`` ``(B, H, W, C)`` (no autograd).

        One working copy of the map (the skip needs ``x``); the blocks run in chunks of
        at most ``pixels`` pixels of windows, the 3x3 conv in bands of as many whole rows
        (at least one; one row of halo read from the map, no recompute) added straight
        into ``x``.
        """
        y = self.residual_group.forward_chunked(x.clone(), pixels)
        yc = y.permute(0, 3, 1, 2)
        for a, b in row_bands(x.shape[1], pixels // x.shape[2]):
            x[:, a:b].add_(conv_rows(self.conv, yc, a, b).permute(0, 2, 3, 1))
        return x
