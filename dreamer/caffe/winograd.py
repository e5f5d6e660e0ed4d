"""3x3 stride-1 convolutions by Winograd's minimal filtering F(4x4, 3x3), on the CPU kernels.

A 4x4 block of outputs comes from a 6x6 input tile with 36 multiplications per pair of
input and output channels, where the direct convolution needs 144. With the tile
transforms d -> B^T d B (of the input) and g -> G g G^T (of the 3x3 kernel), the
convolution summed over input channels becomes 36 independent matrix products, one per
tile position k: M[k] = V[k] @ U[k], (tiles x C_in) @ (C_in x C_out); the outputs are
A^T M A per tile. winograd.cpp does the tile transforms and the products; the kernel
transform U is made here, once per layer (the weights are frozen).

The input gradient of such a convolution is the convolution of the output gradient with
the kernel turned by 180 degrees and its input and output channels swapped, padded by
2 - pad: the same kernels with that kernel's U.

The interpolation points are 0, 1, -1, 2, -2 and infinity (Lavin and Gray's choice for
F(4x4, 3x3), whose B^T and A^T winograd.cpp writes out). The results differ from the
direct convolution's by rounding: about 1e-5 of the largest output, against about 1e-6
for the direct one (tests compare both with float64).
"""
from __future__ import annotations

from fractions import Fraction

import torch

from dreamer.caffe import native

POINTS = (0, 1, -1, 2, -2)  # and infinity
TILE = 6  # input tile side: 4 outputs + 3 taps - 1
PANEL, LANES = 32, 16  # winograd.cpp's packing: panels of 32 output channels, of 16 last


def kernel_transform() -> torch.Tensor:
    """G (6 x 3): row j is (1, p_j, p_j^2) / prod over l != j of (p_j - p_l); the last
    row, for the point at infinity, picks the last tap. Exact fractions, then float64."""
    rows = []
    for j, p in enumerate(POINTS):
        scale = Fraction(1)
        for l, q in enumerate(POINTS):
            if l != j:
                scale /= p - q
        rows.append([float(scale * Fraction(p) ** k) for k in range(3)])
    rows.append([0.0, 0.0, 1.0])
    return torch.tensor(rows, dtype=torch.float64)


def pack_weights(weight: torch.Tensor) -> torch.Tensor:
    """U of an (out, in, 3, 3) kernel as winograd.cpp reads it: U[k] = (G g G^T)[i, j] for
    k = 6 i + j, as (36, in, out) matrices; output channels padded with zeros to a
    multiple of 16 and cut into panels of 32 (the last of 16 where needed), each panel
    stored whole, (36, in, width), one after the other."""
    g = kernel_transform()
    w = weight.detach().to("cpu", torch.float64)
    u = torch.einsum("ik,oakl,jl->ijao", g, w, g).reshape(TILE * TILE, w.shape[1], w.shape[0])
    out = w.shape[0]
    u = torch.nn.functional.pad(u, (0, -out % LANES))
    panels = [u[..., k:k + PANEL].contiguous().flatten() for k in range(0, u.shape[-1], PANEL)]
    return torch.cat(panels).float()


def transform_weights(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(packed U for the forward, packed U for the input gradient) of a 3x3 kernel."""
    turned = weight.flip(-2, -1).transpose(0, 1)  # the input gradient's kernel
    return pack_weights(weight), pack_weights(turned)


def applies(conv) -> bool:
    """Whether a Convolution layer's geometry suits these kernels."""
    return (tuple(conv.weight.shape[-2:]) == (3, 3) and conv.stride == (1, 1)
            and conv.dilation == (1, 1) and conv.groups == 1
            and all(p <= 2 for p in conv.padding))


def takes(x: torch.Tensor) -> bool:
    """Whether the kernels can run the convolution on x: a 4-D float32 CPU tensor, kernels
    built, outside torch.compile."""
    return x.dim() == 4 and native.usable(x)


def conv2d(x: torch.Tensor, conv) -> torch.Tensor:
    """conv's convolution of x (channels_last output), its input gradient the same way."""
    return _Winograd.apply(x, conv)


def _convolve(x: torch.Tensor, u: torch.Tensor, bias: torch.Tensor | None, channels: int,
              pad: tuple[int, int], out: tuple[int, int]) -> torch.Tensor:
    x = x.contiguous(memory_format=torch.channels_last)
    bias = x.new_empty(0) if bias is None else bias
    return native.kernels().winograd_conv(x, u, bias, channels, *pad, *out)


class _Winograd(torch.autograd.Function):
    """The convolution and its input gradient (the weights are frozen: none for them);
    keeps nothing of x but its size."""

    @staticmethod
    def forward(ctx, x, conv):
        u_forward, _ = conv.winograd_weights()
        (ph, pw), (h, w) = conv.padding, x.shape[-2:]
        ctx.conv, ctx.size = conv, (h, w)
        return _convolve(x, u_forward, conv.bias, conv.weight.shape[0], (ph, pw),
                         (h + 2 * ph - 2, w + 2 * pw - 2))

    @staticmethod
    def backward(ctx, g):
        conv = ctx.conv
        _, u_backward = conv.winograd_weights()
        ph, pw = conv.padding
        dx = _convolve(g, u_backward, None, conv.weight.shape[1], (2 - ph, 2 - pw), ctx.size)
        return dx, None
