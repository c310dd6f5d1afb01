"""Streaming pieces of the memory-bounded pass: band sizes, row bands, and convolutions fed band by band.

The chunked pass (``LUANet.forward(..., chunks=...)``) computes the same numbers as the plain
pass while holding only bands of rows: :class:`Chunks` says how large the bands are,
:func:`row_bands` cuts an axis, :func:`conv_rows` computes rows of a 3x3 conv from the rows
it needs, :class:`ConvStream` feeds a conv with consecutive bands (keeping a two-row line
buffer), and :func:`add_bicubic_rows` adds a bicubic upsample band by band.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class Chunks:
    """Band sizes of the memory-bounded pass, in latent pixels per image.

    ``trunk``: at most this many pixels per chunk of the transformer trunk (whole
    windows for attention + MLP, at least one; whole rows for the norms and convs, at
    least one); ``head``: input pixels per row band of the upsampling head (whole rows,
    at least one).
    """

    trunk: int
    head: int

    def head_rows(self, width: int) -> int:
        """Rows per head band for a (padded) latent ``width`` wide."""
        return max(1, self.head // max(width, 1))


class ConvStream:
    """A 3x3, stride-1, padding-1 conv applied to a map that arrives in bands of rows, top to bottom.

    Keeps the last two input rows between bands (a zero row stands in above the top and
    below the bottom, as the conv's padding), so each output row is computed exactly once
    from exactly the rows the full conv would use.
    """

    def __init__(self, conv: nn.Conv2d, post: Callable[[torch.Tensor], torch.Tensor]) -> None:
        self.conv, self.post = conv, post
        self.carry: Optional[torch.Tensor] = None

    def push(self, rows: Optional[torch.Tensor], last: bool) -> Optional[torch.Tensor]:
        if rows is None and not last:
            return None
        ref = rows if rows is not None else self.carry
        assert ref is not None
        # channels-last like the bands: torch.cat of mixed layouts falls back to NCHW (another conv kernel)
        zero = ref.new_zeros(ref.shape[0], ref.shape[1], 1, ref.shape[3]).contiguous(memory_format=torch.channels_last)
        parts = [zero if self.carry is None else self.carry]
        if rows is not None:
            parts.append(rows)
        if last:
            parts.append(zero)
        buf = torch.cat(parts, 2)
        del parts, rows
        self.carry = None if last else buf[:, :, -2:].clone()
        if buf.shape[2] < 3:
            return None
        out = F.conv2d(buf, self.conv.weight, self.conv.bias, stride=1, padding=(0, 1))
        del buf
        return self.post(out)


def row_bands(length: int, rows: int) -> list[tuple[int, int]]:
    """``(start, stop)`` of consecutive bands of at most ``rows`` rows covering ``[0, length)``."""
    rows = max(1, int(rows))
    return [(a, min(a + rows, length)) for a in range(0, length, rows)]


def conv_rows(conv: nn.Conv2d, x: torch.Tensor, a: int, b: int) -> torch.Tensor:
    """Rows ``[a, b)`` of ``conv(x)`` for a 3x3, stride-1, padding-1 ``conv`` on ``x`` ``(B, C, H, W)``.

    Reads rows ``a-1 .. b`` of ``x`` (zero rows beyond the edges, as the conv's own
    padding) and pads only the width, so the band is exactly those rows of the full conv.
    """
    h = x.shape[2]
    piece = x[:, :, max(a - 1, 0):min(b + 1, h)]
    top, bottom = int(a == 0), int(b == h)
    if top or bottom:
        piece = F.pad(piece, (0, 0, top, bottom))
    return F.conv2d(piece, conv.weight, conv.bias, stride=1, padding=(0, 1))


def add_bicubic_rows(out: torch.Tensor, x: torch.Tensor, head: int, rows: int) -> None:
    """``out += bicubic(x, head)`` (align_corners=False), computed in bands of ``rows`` input rows.

    Each band reads two rows of halo on either side, clamped at the edges exactly as
    the full interpolation clamps, so the sum is the full interpolation's.
    """
    h = x.shape[2]
    for a, b in row_bands(h, rows):
        lo, hi = max(a - 2, 0), min(b + 2, h)
        up = F.interpolate(x[:, :, lo:hi], scale_factor=head, mode="bicubic", align_corners=False)
        out[:, :, a * head:b * head] += up[:, :, (a - lo) * head:(b - lo) * head]
