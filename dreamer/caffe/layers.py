"""Caffe layers as PyTorch modules, with Caffe's exact forward semantics.

Each builder takes a `LayerSpec` (format-independent, see spec.py) and returns a module
whose forward maps the layer's bottom tensors to a tuple of top tensors. Weights are
buffers, never parameters: dreaming differentiates with respect to the image only.
"""
from __future__ import annotations

import contextlib
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dreamer.caffe import autotune, native, space_to_depth, winograd
from dreamer.caffe.spec import LayerSpec
from dreamer.errors import DreamerError


def _pair(scalar_list, h, w, default):
    """Caffe's `kernel_size: 3` / `kernel_h: 3 kernel_w: 5` spellings as (h, w)."""
    if h is not None and w is not None:
        return int(h), int(w)
    if len(scalar_list) > 2:
        raise ValueError("only 2-D convolutions and poolings are supported")
    if len(scalar_list) == 2:
        return int(scalar_list[0]), int(scalar_list[1])
    if len(scalar_list) == 1:
        return int(scalar_list[0]), int(scalar_list[0])
    return default


def _opt(msg, field):
    return getattr(msg, field) if msg.HasField(field) else None


def kernel_size(p, default=None) -> tuple[int, int] | None:
    """A convolution_param's kernel as (h, w), however the prototxt spells it."""
    return _pair(p.kernel_size, _opt(p, "kernel_h"), _opt(p, "kernel_w"), default)


def _weights(spec: LayerSpec, index: int, shape: tuple[int, ...]) -> torch.Tensor:
    """Blob `index` of the layer, reshaped to `shape` (V1 files pad shapes to 4-D)."""
    if len(spec.blobs) <= index:
        raise DreamerError(f"layer '{spec.name}' ({spec.type}) has no weights in the "
                           "caffemodel; check that -m names the weights of this prototxt")
    blob = spec.blobs[index]
    if blob.size != math.prod(shape):
        # `shape` is partly worked out from the blob itself (a conv's input channels), so
        # it is not named: net.weight_mismatch names the shape the bottom blob asks for
        raise DreamerError(f"weights of layer '{spec.name}' have shape {blob.shape}, which "
                           "does not fit the layer in the prototxt; the caffemodel does not "
                           "belong to this prototxt")
    return torch.from_numpy(np.ascontiguousarray(blob, dtype=np.float32).reshape(shape))


class CaffeLayer(nn.Module):
    def __init__(self, spec: LayerSpec):
        super().__init__()
        self.name, self.type = spec.name, spec.type
        self.bottoms, self.tops = list(spec.bottoms), list(spec.tops)

    def extra_repr(self) -> str:
        return f"{self.name!r}"


class Convolution(CaffeLayer):
    def __init__(self, spec: LayerSpec):
        super().__init__(spec)
        p = spec.param("convolution_param")
        kh, kw = kernel_size(p)
        self.stride = _pair(p.stride, _opt(p, "stride_h"), _opt(p, "stride_w"), (1, 1))
        self.padding = _pair(p.pad, _opt(p, "pad_h"), _opt(p, "pad_w"), (0, 0))
        self.dilation = _pair(p.dilation, None, None, (1, 1))
        self.groups = p.group
        blob = spec.blobs[0] if spec.blobs else None
        in_per_group = blob.size // (p.num_output * kh * kw) if blob is not None else 0
        self.register_buffer("weight", _weights(spec, 0, (p.num_output, in_per_group, kh, kw)))
        bias = _weights(spec, 1, (p.num_output,)) if p.bias_term else None
        self.register_buffer("bias", bias)
        # A strided first layer on an image (GoogLeNet's conv1: 7x7, stride 2, 3 channels):
        # oneDNN's forward is fast, but its input gradient for 3 channels at stride 2 runs
        # at a fifth of its usual speed. That gradient is taken as the one of a stride-1
        # conv on the space-to-depth input instead (see _StridedFew). Measured at 540x360
        # on CPU, conv1 forward + backward: 20 ms plain, 9.8 ms with the whole conv on the
        # space-to-depth input, 8.5 ms with its gradient only.
        sh, sw = self.stride
        self.space_to_depth = (sh == sw > 1 and self.dilation == (1, 1) and self.groups == 1
                               and 0 < in_per_group <= 4)
        self.register_buffer("weight_s2d", space_to_depth.kernel(self.weight, sh)
                             if self.space_to_depth else None, persistent=False)
        # Stride-1 convolutions with 3x3 to 5x5 kernels (most of GoogLeNet's arithmetic)
        # by Winograd's algorithm on the CPU kernels: 2.8 to 4 times fewer
        # multiplications (winograd.py)
        self.winograd = winograd.applies(self)
        self.winograd_gradient = winograd.applies_to_gradient(self)  # conv1's, see _StridedFew
        self._winograd_weights = None

    def winograd_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The transformed kernels winograd.py multiplies by, made on first use and again
        whenever the weights change."""
        key = (self.weight.data_ptr(), self.weight._version)
        if self._winograd_weights is None or self._winograd_weights[0] != key:
            self._winograd_weights = key, winograd.transform_weights(self.weight,
                                                                     self.stride[0])
        return self._winograd_weights[1]

    def forward(self, x):
        if self.winograd and winograd.takes(x) and winograd.worth_it(self, x):
            return (winograd.conv2d(x, self),)
        if self.space_to_depth and x.device.type == "cpu" and x.dim() == 4 \
                and x.requires_grad and not torch.compiler.is_compiling() \
                and space_to_depth.geometry(x.shape[-2:], self) is not None:
            return (_StridedFew.apply(x, self),)
        return (F.conv2d(x, self.weight, self.bias, self.stride, self.padding,
                         self.dilation, self.groups),)


class _StridedFew(torch.autograd.Function):
    """conv2d(x, w, stride s) for a conv with few input channels, its input gradient as
    the one of the stride-1 conv on the space-to-depth input (space_to_depth.py): by
    Winograd's algorithm on the CPU kernels where they take it (GoogLeNet's conv1 at
    540x360: 9.3 -> 6.7 ms), else by oneDNN."""

    @staticmethod
    def forward(ctx, x, conv):
        ctx.conv, ctx.size = conv, x.shape
        return F.conv2d(x, conv.weight, conv.bias, conv.stride, conv.padding)

    @staticmethod
    def backward(ctx, g):
        conv, (_, _, h, w) = ctx.conv, ctx.size
        if conv.winograd_gradient and winograd.takes(g):
            _, dx = autotune.decide(autotune.key(conv.name, "conv", "backward", g.shape),
                                    lambda: winograd.strided_input_gradient(g, conv, (h, w)),
                                    lambda: _StridedFew.direct_gradient(g, conv, ctx.size))
            return dx, None
        return _StridedFew.direct_gradient(g, conv, ctx.size), None

    @staticmethod
    def direct_gradient(g, conv, size):
        """The input gradient by oneDNN, on the space-to-depth input."""
        n, c, h, w = size
        s = conv.stride[0]
        rows, cols = space_to_depth.geometry((h, w), conv)
        gs = winograd.input_gradient(g.contiguous(memory_format=torch.channels_last),
                                     conv.weight_s2d,
                                     _like(g, (n, c * s * s, rows // s, cols // s)), (0, 0))
        return space_to_depth.shuffle_back(gs, conv, (h, w))


def _like(g: torch.Tensor, shape) -> torch.Tensor:
    """An uninitialised channels_last tensor: convolution_backward reads only its shape."""
    return torch.empty(shape, dtype=g.dtype, device=g.device,
                       memory_format=torch.channels_last)


class ReLU(CaffeLayer):
    def __init__(self, spec: LayerSpec):
        super().__init__(spec)
        self.negative_slope = spec.param("relu_param").negative_slope
        # Set by CaffeNet where overwriting the bottom is safe (Caffe's in-place ReLU right
        # after a convolution, whose backward does not need its output): saves a tensor
        # and a memory pass per layer.
        self.inplace = False

    def forward(self, x):
        if self.negative_slope == 0:
            return (F.relu_(x) if self.inplace else F.relu(x),)
        return (F.leaky_relu(x, self.negative_slope, inplace=self.inplace),)


def caffe_pool_size(size: int, kernel: int, stride: int, pad: int, ceil: bool) -> int:
    """Caffe's pooled output size: rounds up, but no window may start in the far padding."""
    span = size + 2 * pad - kernel
    out = (-(-span // stride) if ceil else span // stride) + 1
    if pad > 0 and (out - 1) * stride >= size + pad:
        out -= 1
    return out


def _torch_pool_size(size, kernel, stride, pad):
    out = -(-(size + 2 * pad - kernel) // stride) + 1
    if (out - 1) * stride >= size + pad:
        out -= 1
    return out


class Pooling(CaffeLayer):
    def __init__(self, spec: LayerSpec):
        super().__init__(spec)
        p = spec.param("pooling_param")
        if p.pool not in (0, 1):
            raise DreamerError(f"layer '{spec.name}': stochastic pooling is not supported "
                               "(only MAX and AVE); use a deploy net without it")
        self.max = p.pool == 0
        self.global_pooling = p.global_pooling
        self.kernel = _pair([p.kernel_size] if p.HasField("kernel_size") else [],
                            _opt(p, "kernel_h"), _opt(p, "kernel_w"), None)
        self.stride = _pair([p.stride], _opt(p, "stride_h"), _opt(p, "stride_w"), (1, 1))
        self.pad = _pair([p.pad], _opt(p, "pad_h"), _opt(p, "pad_w"), (0, 0))
        self.ceil = p.round_mode == 0
        if not self.global_pooling and self.kernel is None:
            raise DreamerError(f"layer '{spec.name}': pooling without kernel_size; "
                               "fix the prototxt")
        # Set by CaffeNet when this pool is the only reader of a ReLU's output (see
        # commutes_with_relu): the ReLU runs on the pooled blob (at stride 2 a quarter of
        # the size), and the larger one needs no ReLU pass, forward or backward.
        self.fused_relu = False
        # Max pooling by the compiled CPU kernels where they can take the blob (native.py);
        # the benchmark's reference net turns this off.
        self.native = True

    def commutes_with_relu(self) -> bool:
        """Whether pooling the ReLU of a blob equals the ReLU of its pooling, blob and
        gradient: max(relu(x)) == relu(max(x)) for any window with at least one real
        value, and the first maximum is the same wherever it is positive. A window of
        padding only (kernel < stride, or pad >= kernel) would give -inf, not 0."""
        return (self.max and not self.global_pooling
                and all(k >= s and p < k
                        for k, s, p in zip(self.kernel, self.stride, self.pad)))

    def forward(self, x):
        if self.global_pooling:
            return (x.amax((2, 3), keepdim=True) if self.max else x.mean((2, 3), keepdim=True),)
        sizes = x.shape[-2:]
        out = [caffe_pool_size(n, k, s, p, self.ceil)
               for n, k, s, p in zip(sizes, self.kernel, self.stride, self.pad)]
        torch_geometry = all(
            o == _torch_pool_size(n, k, s, p) and 2 * p <= k
            for o, n, k, s, p in zip(out, sizes, self.kernel, self.stride, self.pad))
        if torch_geometry:  # PyTorch's pool gives Caffe's output size
            if self.max:
                return (_MaxPool.apply(x, self.kernel, self.stride, self.pad, out,
                                      self.fused_relu, self.native, self.name),)
            return (F.avg_pool2d(x, self.kernel, self.stride, self.pad, ceil_mode=True,
                                 count_include_pad=True),)
        return (self._explicit(x, out),)

    def _explicit(self, x, out):
        """Any pad/kernel/stride combination, padded by hand to Caffe's output size."""
        (kh, kw), (sh, sw), (ph, pw) = self.kernel, self.stride, self.pad
        H, W = x.shape[-2:]
        extra_h = (out[0] - 1) * sh + kh - H - ph
        extra_w = (out[1] - 1) * sw + kw - W - pw
        fill = -math.inf if self.max else 0.0
        padded = F.pad(x, (pw, extra_w, ph, extra_h), value=fill)
        if self.max:
            return _MaxPool.apply(padded, self.kernel, self.stride, (0, 0), out,
                                  self.fused_relu, self.native, self.name)
        sums = F.avg_pool2d(padded, self.kernel, self.stride) * (kh * kw)
        # Caffe divides by the window clipped to the padded image, not the overhang.
        rows = [min(i * sh - ph + kh, H + ph) - (i * sh - ph) for i in range(out[0])]
        cols = [min(j * sw - pw + kw, W + pw) - (j * sw - pw) for j in range(out[1])]
        count = torch.tensor(np.outer(rows, cols), dtype=x.dtype, device=x.device)
        return sums / count


class _MaxPool(torch.autograd.Function):
    """Max pooling (ceil mode), with an optional ReLU on its output (see Pooling.fused_relu).

    Keeps only what the backward reads: the positions of the maxima, as int32 where
    PyTorch keeps int64 (they were a quarter of everything a 1080p dream keeps for the
    backward pass), and the output for the ReLU; of the input, its shape and layout.
    With `use_native`, the compiled kernels (native.py) run it where they can take x:
    the same blob, positions and gradient, bit for bit."""

    @staticmethod
    def forward(ctx, x, kernel, stride, pad, out, relu=False, use_native=False, name=None):
        # out: the pooled size, which PyTorch's ceil mode gives for these arguments.
        # name: the layer's, under which autotune.py keeps which of the two is faster;
        # without one the kernels run wherever use_native allows.
        ctx.native = use_native and _MaxPool.native_takes(x)
        ctx.name = name
        ctx.args = kernel, stride, pad
        ctx.input_layout = x.shape, x.stride()

        def by_kernels():
            return native.kernels().max_pool_forward(x, *out, *kernel, *stride, *pad, relu)

        def by_torch():
            y, where = F.max_pool2d(x, kernel, stride, pad, ceil_mode=True,
                                    return_indices=True)
            if x.shape[-2] * x.shape[-1] < 2 ** 31:
                where = where.to(torch.int32)
            return y.relu_() if relu else y, where

        y, where = _MaxPool._tuned(ctx, "forward", x.shape, by_kernels, by_torch)
        ctx.save_for_backward(where, y if relu else None)
        return y

    @staticmethod
    def _tuned(ctx, direction, shape, by_kernels, by_torch):
        """by_kernels() or by_torch(): the kernels' positions and gradients are PyTorch's
        bit for bit, so each direction may take either."""
        if not ctx.native:
            return by_torch()
        k = autotune.key(ctx.name, "maxpool", direction, shape)
        return autotune.decide(k, by_kernels, by_torch)[1]

    @staticmethod
    def native_takes(x: torch.Tensor) -> bool:
        return (x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last)
                and x.shape[-2] * x.shape[-1] < 2 ** 31 and native.usable(x))

    @staticmethod
    def backward(ctx, g):
        where, y = ctx.saved_tensors
        kernel, stride, pad = ctx.args
        shape, strides = ctx.input_layout

        def by_kernels():
            relu_out = y if y is not None else g.new_empty(0)
            return native.kernels().max_pool_backward(
                g.contiguous(memory_format=torch.channels_last), where, relu_out,
                *shape[-2:], *kernel, *stride, *pad)

        def by_torch():
            grad = g if y is None else torch.ops.aten.threshold_backward(g, y, 0)
            like = torch.empty_strided(shape, strides, dtype=g.dtype, device=g.device)
            return torch.ops.aten.max_pool2d_with_indices_backward(
                grad, like, kernel, stride, pad, (1, 1), True, where.long())

        dx = _MaxPool._tuned(ctx, "backward", g.shape, by_kernels, by_torch)
        return dx, None, None, None, None, None, None, None


class LRN(CaffeLayer):
    def __init__(self, spec: LayerSpec):
        super().__init__(spec)
        p = spec.param("lrn_param")
        if p.local_size % 2 == 0:
            raise DreamerError(f"layer '{spec.name}': LRN local_size must be odd "
                               f"(is {p.local_size}), as in Caffe; fix the prototxt")
        self.size, self.alpha, self.beta, self.k = p.local_size, p.alpha, p.beta, p.k
        self.across = p.norm_region == 0
        self.native = True  # the compiled CPU kernels where they can take the blob

    def band(self, channels: int, like: torch.Tensor) -> torch.Tensor:
        """C x C band matrix summing each channel's window, times alpha / size: the channel
        sum becomes one GEMM instead of a loop (the matrix is symmetric). Made at every
        call (microseconds): a cached one would make torch.compile trace the net twice."""
        idx = torch.arange(channels, device=like.device)
        near = (idx[:, None] - idx[None, :]).abs() <= (self.size - 1) // 2
        return near.to(like.dtype) * (self.alpha / self.size)

    def forward(self, x):
        if self.across:
            # x^-beta and the window sums lose too much in bf16/fp16: always float32 or
            # better, whatever autocast does around the layer.
            wide = x if x.dtype in (torch.float32, torch.float64) else x.float()
            with autocast_or_off(x.device.type, None):
                if self.native and native.usable(wide):
                    y = self._tuned(wide)
                else:
                    y = self._by_torch(wide)
            return (y.to(x.dtype),)
        pad = (self.size - 1) // 2
        avg = F.avg_pool2d(x * x, self.size, 1, pad, count_include_pad=True)
        scale = avg * self.alpha + 1.0  # Caffe's WITHIN_CHANNEL ignores k
        return (x * scale.pow(-self.beta),)


    def _by_torch(self, x):
        return _LRNAcross.apply(x, self.band(x.shape[1], x), self.k, self.beta)

    def _by_kernels(self, x):
        return _NativeLRN.apply(x, self.size, self.alpha, self.k, self.beta)

    def _tuned(self, x):
        """The kernels' LRN or PyTorch's, whichever autotune.py found faster. Each
        backward needs what its own forward kept, so the two directions are one choice,
        timed together with a made-up gradient."""
        def trial(forward):
            with torch.enable_grad():
                xd = x.detach().requires_grad_()
                y = forward(xd)
                y.backward(torch.ones_like(y))
        k = autotune.key(getattr(self, "name", None), "lrn", "forward+backward", x.shape)
        return autotune.decide(k, lambda: self._by_kernels(x), lambda: self._by_torch(x),
                               trials=(lambda: trial(self._by_kernels),
                                       lambda: trial(self._by_torch)))[1]


def autocast_or_off(device_type: str, dtype: torch.dtype | None):
    """Autocast to `dtype`, or off for None; nothing on devices autocast does not know
    (net.validate runs on "meta")."""
    if device_type not in ("cpu", "cuda"):
        return contextlib.nullcontext()
    return torch.autocast(device_type, dtype=dtype, enabled=dtype is not None)


def _rows(x: torch.Tensor) -> torch.Tensor:
    """(N, C, ...) as (pixels, C) rows: a free view of a channels_last tensor."""
    return x.movedim(1, -1).contiguous().reshape(-1, x.shape[1])


def _unrows(rows: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """Back to (N, C, ...) of `shape` (channels_last for 4-D), as a view."""
    return rows.view(shape[:1] + shape[2:] + shape[1:2]).movedim(-1, 1)


def _window_sum(rows: torch.Tensor, band: torch.Tensor) -> torch.Tensor:
    """rows @ band: each channel's sum over its window (see LRN.band) as one GEMM."""
    return torch.mm(rows, band)


def _negative_power(s: torch.Tensor, beta: float) -> torch.Tensor:
    """s^-beta; beta 0.75 (AlexNet's, GoogLeNet's) as rsqrt(s)^1.5, which costs a
    fraction of pow."""
    if beta == 0.75:
        r = s.rsqrt()
        return r.mul_(r.sqrt())
    return s.pow(-beta)


class _LRNAcross(torch.autograd.Function):
    """Caffe's ACROSS_CHANNELS LRN, y = x * s^-beta with s = k + alpha/n * window sum of
    x^2, with Caffe's closed-form backward: autograd of the plain formula would recompute
    the power and keep more intermediates alive. The window sum over channels is one GEMM
    with a band matrix (symmetric: the same matrix serves the backward) over (pixels,
    channels) rows; every operand, incoming gradient included, is made channels_last, as
    mixing layouts in one elementwise op costs several times a plain pass."""

    @staticmethod
    def forward(ctx, x, band, k, beta):
        v = _rows(x)
        s = _window_sum(v * v, band).add_(k)
        y = _negative_power(s, beta).mul_(v)
        # p = s^-beta is not kept: recomputing it costs less than the memory (a 1080p
        # dream keeps 130 MB less)
        ctx.save_for_backward(v, band, s, y)
        ctx.beta, ctx.shape = beta, x.shape
        return _unrows(y, x.shape)

    @staticmethod
    def backward(ctx, g):
        v, band, s, y = ctx.saved_tensors
        g = _rows(g)
        # dx_i = g_i p_i - 2 beta x_i * sum over j in i's window of alpha/n g_j y_j / s_j,
        # in place where possible: at 1080p each temporary here is 100 MB
        t = _window_sum((g * y).div_(s), band)
        dx = _negative_power(s, ctx.beta).mul_(g).addcmul_(v, t, value=-2.0 * ctx.beta)
        return _unrows(dx, ctx.shape), None, None, None


class _NativeLRN(torch.autograd.Function):
    """_LRNAcross by the compiled CPU kernels (native.py): the same formulas, each pass
    over a pixel's channels done once. It keeps p = s^-beta and q = y / s where
    _LRNAcross keeps s and y, so its backward has no roots or divisions (y is kept alive
    by the next layer in any case)."""

    @staticmethod
    def forward(ctx, x, size, alpha, k, beta):
        v = _rows(x)
        y, p, q = native.kernels().lrn_forward(v, size, alpha, k, beta)
        ctx.save_for_backward(v, p, q)
        ctx.args, ctx.shape = (size, alpha, beta), x.shape
        return _unrows(y, x.shape)

    @staticmethod
    def backward(ctx, g):
        v, p, q = ctx.saved_tensors
        dx = native.kernels().lrn_backward(_rows(g), v, p, q, *ctx.args)
        return _unrows(dx, ctx.shape), None, None, None, None


class Concat(CaffeLayer):
    def __init__(self, spec: LayerSpec):
        super().__init__(spec)
        p = spec.param("concat_param")
        self.axis = p.axis if p.HasField("axis") else int(p.concat_dim)

    def forward(self, *xs):
        return (torch.cat(xs, self.axis),)


class InnerProduct(CaffeLayer):
    def __init__(self, spec: LayerSpec):
        super().__init__(spec)
        p = spec.param("inner_product_param")
        self.axis, self.transpose = p.axis, p.transpose
        blob = spec.blobs[0] if spec.blobs else None
        inputs = blob.size // p.num_output if blob is not None else 0
        shape = (inputs, p.num_output) if p.transpose else (p.num_output, inputs)
        self.register_buffer("weight", _weights(spec, 0, shape))
        bias = _weights(spec, 1, (p.num_output,)) if p.bias_term else None
        self.register_buffer("bias", bias)

    def forward(self, x):
        x = x.flatten(self.axis)
        weight = self.weight.t() if self.transpose else self.weight
        return (F.linear(x, weight, self.bias),)


class Dropout(CaffeLayer):
    """Identity at test time: Caffe scales during training, not inference."""

    def forward(self, x):
        return (x,)


class Softmax(CaffeLayer):
    def __init__(self, spec: LayerSpec):
        super().__init__(spec)
        self.axis = spec.param("softmax_param").axis

    def forward(self, x):
        return (torch.softmax(x, self.axis),)


class Split(CaffeLayer):
    def forward(self, x):
        return tuple(x for _ in self.tops)


class Eltwise(CaffeLayer):
    def __init__(self, spec: LayerSpec):
        super().__init__(spec)
        p = spec.param("eltwise_param")
        self.operation = p.operation
        self.coeff = list(p.coeff)
        if self.coeff and (self.operation != 1 or len(self.coeff) != len(spec.bottoms)):
            raise DreamerError(f"layer '{spec.name}': Eltwise coeff needs SUM and one value "
                               "per bottom; fix the prototxt")

    def forward(self, *xs):
        if self.operation == 0:
            out = xs[0]
            for x in xs[1:]:
                out = out * x
        elif self.operation == 2:
            out = xs[0]
            for x in xs[1:]:
                out = torch.maximum(out, x)
        else:
            coeff = self.coeff or [1.0] * len(xs)
            out = xs[0] * coeff[0]
            for c, x in zip(coeff[1:], xs[1:]):
                out = out + x * c
        return (out,)


def _channel_view(t: torch.Tensor, ndim: int, axis: int = 1) -> torch.Tensor:
    shape = [1] * ndim
    shape[axis:axis + t.dim()] = t.shape
    return t.reshape(shape)


class BatchNorm(CaffeLayer):
    """Inference with the stored statistics (Caffe keeps them scaled by blob 2)."""

    def __init__(self, spec: LayerSpec):
        super().__init__(spec)
        eps = spec.param("batch_norm_param").eps
        mean_blob = spec.blobs[0] if spec.blobs else None
        channels = mean_blob.size if mean_blob is not None else 0
        mean = _weights(spec, 0, (channels,))
        var = _weights(spec, 1, (channels,))
        factor = float(_weights(spec, 2, (1,))[0])
        factor = 0.0 if factor == 0 else 1.0 / factor
        self.register_buffer("mean", mean * factor)
        self.register_buffer("inv_std", (var * factor + eps).rsqrt())

    def forward(self, x):
        n = x.dim()
        return ((x - _channel_view(self.mean, n)) * _channel_view(self.inv_std, n),)


class Scale(CaffeLayer):
    """Per-channel (or per-axes) scale and optional bias; with two bottoms, the second
    bottom is the scale."""

    def __init__(self, spec: LayerSpec):
        super().__init__(spec)
        p = spec.param("scale_param")
        self.axis = p.axis
        learned = len(spec.bottoms) == 1
        self.register_buffer("scale", self._blob(spec, 0) if learned else None)
        bias = self._blob(spec, 1 if learned else 0) if p.bias_term else None
        self.register_buffer("bias", bias)

    @staticmethod
    def _blob(spec, index):
        shape = spec.blobs[index].shape if len(spec.blobs) > index else (0,)
        return _weights(spec, index, tuple(shape))

    def _view(self, t, x):
        if t.numel() == 1:
            return t.reshape([1] * x.dim())
        return _channel_view(t, x.dim(), self.axis % x.dim())

    def forward(self, x, *other):
        scale = other[0] if other else self.scale
        out = x * self._view(scale, x)
        if self.bias is not None:
            out = out + self._view(self.bias, x)
        return (out,)


class Sigmoid(CaffeLayer):
    def forward(self, x):
        return (torch.sigmoid(x),)


class TanH(CaffeLayer):
    def forward(self, x):
        return (torch.tanh(x),)


class Flatten(CaffeLayer):
    def __init__(self, spec: LayerSpec):
        super().__init__(spec)
        p = spec.param("flatten_param")
        self.axis, self.end_axis = p.axis, p.end_axis

    def forward(self, x):
        return (torch.flatten(x, self.axis, self.end_axis),)


BUILDERS = {
    "Convolution": Convolution, "ReLU": ReLU, "Pooling": Pooling, "LRN": LRN,
    "Concat": Concat, "InnerProduct": InnerProduct, "Dropout": Dropout, "Softmax": Softmax,
    "Split": Split, "Eltwise": Eltwise, "BatchNorm": BatchNorm, "Scale": Scale,
    "Sigmoid": Sigmoid, "TanH": TanH, "Flatten": Flatten,
}


def build_layer(spec: LayerSpec) -> CaffeLayer:
    builder = BUILDERS.get(spec.type)
    if builder is None:
        raise DreamerError(f"layer '{spec.name}' has type {spec.type}, which is not supported "
                           f"(supported: {', '.join(BUILDERS)}); use a deploy net without it")
    try:
        return builder(spec)
    except ValueError as e:
        raise DreamerError(f"layer '{spec.name}' ({spec.type}): {e}; fix the prototxt") from None
