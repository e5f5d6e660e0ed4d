"""Convolutions by Winograd's minimal filtering F(m x m, r x r), on the CPU kernels.

An m x m block of outputs comes from a 6x6 input tile with 36 multiplications per pair
of input and output channels, where the direct convolution needs m^2 r^2: 144 for a 3x3
kernel (m = 4), 144 for 4x4 (m = 3), 100 for 5x5 (m = 2). With the tile transforms
d -> B^T d B (of the input) and g -> G g G^T (of the kernel), the convolution summed over
input channels becomes 36 independent matrix products, one per tile position k:
M[k] = V[k] @ U[k], (tiles x C_in) @ (C_in x C_out); the outputs are A^T M A per tile.
winograd.cpp does the tile transforms and the products; the kernel transform U is made
here, once per layer (the weights are frozen).

Stride-1 convolutions with kernels of 3 to 5 run both ways here. The input gradient is
the convolution of the output gradient with the kernel turned by 180 degrees and its
input and output channels swapped, padded by r - 1 - pad: the same kernels with that
kernel's U. A strided convolution whose kernel regrouped by space_to_depth.py has 3 to 5
taps (GoogLeNet's conv1, 7x7 at stride 2: 4x4 on 12 channels) has only its input
gradient done here, as that of the stride-1 convolution on its space-to-depth input. Its
forward stays direct: Winograd's outputs round differently at each position of a tile,
where the direct convolution gives equal inputs equal outputs, and pool1 after conv1
meets many exact ties in flat parts of an image; the gradient then went to other pixels
than Caffe's, 2e-2 to 5e-2 off its goldens.

The interpolation points are 0, 1, -1, 2, -2 and infinity (Lavin and Gray's for
F(4x4, 3x3); winograd.cpp writes out their B^T and A^T). The results differ from the
direct convolution's by rounding: about 1e-5 of the largest output, against about 1e-6
for the direct one (tests compare both with float64).
"""
from __future__ import annotations

from fractions import Fraction

import torch

from dreamer.caffe import autotune, native, space_to_depth

POINTS = (0, 1, -1, 2, -2)  # and infinity
TILE = 6  # input tile side: m outputs + r taps - 1
OUTPUTS = {3: 4, 4: 3, 5: 2}  # kernel side r -> outputs a tile side m
# winograd.cpp's packing on AVX-512: panels of 32 output channels, the last of 16 where
# needed. Its AVX2 and portable builds use vectors of 8 and 4 floats, panels of two vectors:
# layout() asks the build in use.
PANEL, LANES = 32, 16
# Each call reads the whole transformed kernel, 36 / r^2 times the direct one's size (4x for
# 3x3, 1.44x for 5x5): over few tiles that read costs more than the multiplications saved.
# On GoogLeNet's 3x3 layers the direct convolution won at 6 tiles and fewer, Winograd
# from 9 on; its 5x5 ones won with Winograd even at 1 tile. 4x4: between, by that ratio.
MIN_TILES = {3: 9, 4: 5, 5: 1}


def kernel_transform(r: int) -> torch.Tensor:
    """G (6 x r): row j is (1, p_j, ..., p_j^(r-1)) / prod over l != j of (p_j - p_l);
    the last row, for the point at infinity, picks the last tap. Exact fractions, then
    float64."""
    rows = []
    for j, p in enumerate(POINTS):
        scale = Fraction(1)
        for l, q in enumerate(POINTS):
            if l != j:
                scale /= p - q
        rows.append([float(scale * Fraction(p) ** k) for k in range(r)])
    rows.append([0.0] * (r - 1) + [1.0])
    return torch.tensor(rows, dtype=torch.float64)


def layout() -> tuple[int, int]:
    """(floats per vector, output channels per panel) of the compiled kernels, which depend
    on the instruction set they were built for; (LANES, PANEL) where they are unavailable."""
    module = native.kernels()
    return (LANES, PANEL) if module is None else tuple(module.winograd_layout())


def pack_weights(weight: torch.Tensor) -> torch.Tensor:
    """U of an (out, in, r, r) kernel as winograd.cpp reads it: U[k] = (G g G^T)[i, j] for
    k = 6 i + j, as (36, in, out) matrices; output channels padded with zeros to a
    multiple of the vector width and cut into panels (the last of one vector where needed,
    see layout()), each panel stored whole, (36, in, width), one after the other."""
    lanes, panel = layout()
    g = kernel_transform(weight.shape[-1])
    w = weight.detach().to("cpu", torch.float64)
    u = torch.einsum("ik,oakl,jl->ijao", g, w, g).reshape(TILE * TILE, w.shape[1], w.shape[0])
    u = torch.nn.functional.pad(u, (0, -w.shape[0] % lanes))
    panels = [u[..., k:k + panel].contiguous().flatten() for k in range(0, u.shape[-1], panel)]
    return torch.cat(panels).float()


def transform_weights(weight: torch.Tensor, stride: int = 1) -> tuple[torch.Tensor,
                                                                      torch.Tensor]:
    """(packed U for the forward, packed U for the input gradient) of a conv's kernel, at
    a stride regrouped for the space-to-depth input."""
    if stride > 1:
        weight = space_to_depth.kernel(weight, stride)
    turned = weight.flip(-2, -1).transpose(0, 1)  # the input gradient's kernel
    return pack_weights(weight), pack_weights(turned)


def applies(conv) -> bool:
    """Whether a Convolution layer's geometry suits these kernels."""
    kh, kw = conv.weight.shape[-2:]
    return (kh == kw and kh in OUTPUTS and conv.stride == (1, 1) and conv.dilation == (1, 1)
            and conv.groups == 1 and all(p < kh for p in conv.padding))


def worth_it(conv, x: torch.Tensor) -> bool:
    """Whether conv (that applies) on x makes tiles enough to gain (MIN_TILES)."""
    r, (ph, pw), m = conv.weight.shape[-1], conv.padding, OUTPUTS[conv.weight.shape[-1]]
    out_h, out_w = x.shape[-2] + 2 * ph - r + 1, x.shape[-1] + 2 * pw - r + 1
    tiles = x.shape[0] * -(-out_h // m) * -(-out_w // m)
    return out_h > 0 and out_w > 0 and tiles >= MIN_TILES[r]


def applies_to_gradient(conv) -> bool:
    """Whether a strided Convolution layer's input gradient on its space-to-depth input
    (Convolution.space_to_depth) suits these kernels."""
    kh, kw = conv.weight.shape[-2:]
    s = conv.stride[0]
    return conv.space_to_depth and kh == kw and -(-kh // s) in OUTPUTS


def takes(x: torch.Tensor) -> bool:
    """Whether the kernels can run the convolution on x: a 4-D float32 CPU tensor, kernels
    built, outside torch.compile and outside autocast (--precision bf16 asks for bfloat16
    convolutions, which these are not)."""
    return (x.dim() == 4 and native.usable(x)
            and not torch.is_autocast_enabled(x.device.type))


def conv2d(x: torch.Tensor, conv) -> torch.Tensor:
    """conv's convolution of x (channels_last output), its input gradient the same way."""
    return _Winograd.apply(x, conv)


def strided_input_gradient(g: torch.Tensor, conv, size) -> torch.Tensor:
    """The input gradient, for an input of `size`, of a strided conv that
    applies_to_gradient: that of the stride-1 conv on the space-to-depth input, shuffled
    back."""
    _, u_backward = conv.winograd_weights()
    s, channels = conv.stride[0], conv.weight.shape[1] * conv.stride[0] ** 2
    r = -(-conv.weight.shape[-1] // s)
    rows, cols = space_to_depth.geometry(size, conv)
    gs = _convolve(g, u_backward, None, channels, r, (r - 1, r - 1), (rows // s, cols // s))
    return space_to_depth.shuffle_back(gs, conv, size)


def _convolve(x: torch.Tensor, u: torch.Tensor, bias: torch.Tensor | None, channels: int,
              r: int, pad: tuple[int, int], out: tuple[int, int]) -> torch.Tensor:
    x = x.contiguous(memory_format=torch.channels_last)
    bias = x.new_empty(0) if bias is None else bias
    return native.kernels().winograd_conv(x, u, bias, channels, OUTPUTS[r], *pad, *out)


class _Winograd(torch.autograd.Function):
    """The convolution and its input gradient (the weights are frozen: none for them);
    keeps nothing of x but its shape. Each direction runs by Winograd or by PyTorch's
    own convolution, whichever autotune.py found faster for this layer and shape."""

    @staticmethod
    def forward(ctx, x, conv):
        u_forward, _ = conv.winograd_weights()
        r, (ph, pw), (h, w) = conv.weight.shape[-1], conv.padding, x.shape[-2:]
        ctx.conv, ctx.layout = conv, (x.shape, x.stride())
        _, y = autotune.decide(
            autotune.key(getattr(conv, "name", None), "conv", "forward", x.shape),
            lambda: _convolve(x, u_forward, conv.bias, conv.weight.shape[0], r, (ph, pw),
                              (h + 2 * ph - r + 1, w + 2 * pw - r + 1)),
            lambda: torch.nn.functional.conv2d(x, conv.weight, conv.bias, 1, conv.padding))
        return y

    @staticmethod
    def backward(ctx, g):
        conv, (shape, strides) = ctx.conv, ctx.layout
        _, u_backward = conv.winograd_weights()
        r, (ph, pw) = conv.weight.shape[-1], conv.padding
        _, dx = autotune.decide(
            autotune.key(getattr(conv, "name", None), "conv", "backward", g.shape),
            lambda: _convolve(g, u_backward, None, conv.weight.shape[1], r,
                              (r - 1 - ph, r - 1 - pw), shape[-2:]),
            lambda: input_gradient(g, conv.weight, torch.empty_strided(
                shape, strides, dtype=g.dtype, device=g.device), conv.padding))
        return dx, None


def input_gradient(g: torch.Tensor, weight: torch.Tensor, like: torch.Tensor,
                   padding: tuple[int, int]) -> torch.Tensor:
    """PyTorch's own input gradient of the stride-1 conv2d(x, weight, padding) for an x
    shaped and laid out as `like` (whose values it never reads): what autograd of
    F.conv2d computes, bit for bit."""
    return torch.ops.aten.convolution_backward(
        g, like, weight, None, [1, 1], list(padding), [1, 1], False, [0, 0], 1,
        [True, False, False])[0]
