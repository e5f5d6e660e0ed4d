"""A strided convolution as a stride-1 one on the space-to-depth input.

conv2d(x, w, stride s) = conv2d(unshuffle_s(pad(x)), w'), with w' the kernel zero-padded
to a multiple of s and each s x s block of taps regrouped into channels: the same sums.
The input gradient of a first layer on an image (3 channels) is taken in the stride-1
form, which suits kernels that a stride does not (oneDNN's fast input gradient,
Winograd's algorithm), then shuffled back.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def kernel(w: torch.Tensor, s: int) -> torch.Tensor:
    """The kernel for a space-to-depth input: zero-padded to a multiple of s, each s x s
    block of taps regrouped into channels in pixel_unshuffle's order (c, row, column)."""
    co, ci, kh, kw = w.shape
    th, tw = -(-kh // s), -(-kw // s)
    padded = F.pad(w, (0, tw * s - kw, 0, th * s - kh))
    regrouped = padded.reshape(co, ci, th, s, tw, s).permute(0, 1, 3, 5, 2, 4)
    return regrouped.reshape(co, ci * s * s, th, tw).contiguous()


def geometry(size, conv) -> tuple[int, int] | None:
    """(rows, cols) of the padded input whose space-to-depth blocks the stride-1 conv
    reads: a multiple of the stride, cut or zero-padded at the far edges. None when the
    input is smaller than the kernel (conv2d then reports it)."""
    s = conv.stride[0]
    (kh, kw), (ph, pw) = conv.weight.shape[-2:], conv.padding
    out_h, out_w = (size[0] + 2 * ph - kh) // s + 1, (size[1] + 2 * pw - kw) // s + 1
    if out_h < 1 or out_w < 1:
        return None
    th, tw = -(-kh // s), -(-kw // s)  # the regrouped kernel's size
    return s * (out_h + th - 1), s * (out_w + tw - 1)


def shuffle_back(gs: torch.Tensor, conv, size) -> torch.Tensor:
    """The gradient of the stride-1 conv's input, back to x of `size`: depth-to-space,
    the padding cut off, the cut edges zero."""
    rows, cols = geometry(size, conv)
    (h, w), (ph, pw) = size, conv.padding
    g = F.pad(F.pixel_shuffle(gs, conv.stride[0]), (-pw, w + pw - cols, -ph, h + ph - rows))
    return g.contiguous(memory_format=torch.channels_last)
