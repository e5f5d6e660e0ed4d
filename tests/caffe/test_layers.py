"""Caffe layer semantics against values computed by hand or by naive loops."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from google.protobuf import text_format

from dreamer.caffe import native, proto
from dreamer.caffe.layers import LRN, build_layer, caffe_pool_size
from dreamer.caffe.spec import LayerSpec, blob_array
from dreamer.errors import DreamerError


def layer(text: str, *blobs, v1=False):
    """A built layer from a prototxt snippet and weight arrays."""
    msg = proto.V1LayerParameter() if v1 else proto.LayerParameter()
    text_format.Parse(text, msg)
    type_ = msg.type if not v1 else {4: "Convolution", 14: "InnerProduct"}[msg.type]
    spec = LayerSpec(msg.name, type_, list(msg.bottom), list(msg.top), msg,
                     [np.asarray(b, dtype=np.float32) for b in blobs])
    return build_layer(spec)


def t(a):
    return torch.tensor(np.asarray(a, dtype=np.float32))


def test_convolution_pad_stride_group_dilation_match_direct_sum():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 4, 7, 9)).astype(np.float32)
    w = rng.standard_normal((6, 2, 3, 2)).astype(np.float32)  # group 2: 2 in-ch per group
    b = rng.standard_normal(6).astype(np.float32)
    conv = layer('name: "c" type: "Convolution" bottom: "x" top: "c" convolution_param {'
                 ' num_output: 6 group: 2 kernel_h: 3 kernel_w: 2 pad_h: 1 pad_w: 0'
                 ' stride_h: 2 stride_w: 1 dilation: 2 }', w, b)
    (y,) = conv(t(x))
    # direct definition: out[o, i, j] = b + sum w * x_padded[i*sh + di*dil, j*sw + dj*dil]
    xp = np.pad(x[0], ((0, 0), (1, 1), (0, 0)))
    oh = (7 + 2 - 2 * (3 - 1) - 1) // 2 + 1
    ow = (9 - 2 * (2 - 1) - 1) // 1 + 1
    want = np.zeros((6, oh, ow), np.float32)
    for o in range(6):
        g = o // 3
        for i in range(oh):
            for j in range(ow):
                patch = xp[2 * g:2 * g + 2, i * 2:i * 2 + 5:2, j:j + 3:2]
                want[o, i, j] = b[o] + (w[o] * patch).sum()
    assert y.shape == (1, 6, oh, ow)
    np.testing.assert_allclose(y[0].numpy(), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("k, stride, pad, h, w", [
    (7, 2, 3, 37, 54),   # GoogLeNet's conv1 shape, odd and even sizes
    (7, 2, 3, 8, 7),     # barely larger than the kernel
    (11, 4, 0, 45, 50),  # AlexNet's conv1: the last rows fall outside every window
    (3, 2, 1, 9, 9),
    (4, 2, 0, 4, 4),     # a single output
])
@pytest.mark.parametrize("winograd", [False, True])
def test_strided_first_layer_space_to_depth_matches_plain_convolution(k, stride, pad, h, w,
                                                                      winograd):
    if winograd and native.kernels() is None:
        pytest.skip("the compiled CPU kernels could not be built here (see the log)")
    rng = np.random.default_rng(k)
    wt = rng.standard_normal((5, 3, k, k)).astype(np.float32)
    b = rng.standard_normal(5).astype(np.float32)
    conv = layer('name: "c" type: "Convolution" bottom: "x" top: "c" convolution_param {'
                 f' num_output: 5 kernel_size: {k} stride: {stride} pad: {pad} }}', wt, b)
    assert conv.space_to_depth and not conv.winograd
    # its input gradient by Winograd's algorithm where it has 3 to 5 taps after regrouping
    assert conv.winograd_gradient == (-(-k // stride) in (3, 4, 5))
    conv.winograd_gradient &= winograd
    x = (t(rng.standard_normal((1, 3, h, w))) * 50).requires_grad_(True)
    (y,) = conv(x)
    assert type(y.grad_fn).__name__ == "_StridedFewBackward"  # the gradient below is s2d's
    want = torch.nn.functional.conv2d(x, t(wt), t(b), stride, pad)
    assert y.shape == want.shape
    torch.testing.assert_close(y, want, rtol=1e-5, atol=1e-3)
    g = torch.randn_like(want)
    (got_grad,) = torch.autograd.grad(y, x, g)
    (want_grad,) = torch.autograd.grad(want, x, g)
    torch.testing.assert_close(got_grad, want_grad, rtol=1e-5, atol=1e-4)


def test_space_to_depth_only_for_strided_convs_on_few_channels():
    def conv(ci, stride, group=1):
        wt = np.zeros((4, ci // group, 3, 3), np.float32)
        return layer('name: "c" type: "Convolution" convolution_param { num_output: 4 '
                     f'kernel_size: 3 stride: {stride} group: {group} bias_term: false }}',
                     wt)

    assert conv(3, 2).space_to_depth
    assert not conv(3, 1).space_to_depth   # nothing to gain at stride 1
    assert not conv(64, 2).space_to_depth  # oneDNN is efficient with many channels
    assert not conv(4, 2, group=2).space_to_depth


def test_convolution_without_bias():
    w = np.ones((1, 1, 1, 1), np.float32) * 2
    conv = layer('name: "c" type: "Convolution" convolution_param { num_output: 1 '
                 'kernel_size: 1 bias_term: false }', w)
    assert conv.bias is None
    assert torch.equal(conv(t([[[[1.5]]]]))[0], t([[[[3.0]]]]))


def test_v1_blob_shapes_are_reshaped():
    """V1 biases are 1x1x1xN and inner-product weights 1x1xOUTxIN."""
    blob = proto.BlobProto(num=1, channels=1, height=2, width=3)
    blob.data.extend([1, 2, 3, 4, 5, 6])
    w = blob_array(blob)
    assert w.shape == (1, 1, 2, 3)
    ip = layer('name: "fc" type: INNER_PRODUCT inner_product_param { num_output: 2 }',
               w, np.array([[[[10, 20]]]]), v1=True)
    (y,) = ip(t([[1, 0, -1]]))
    assert torch.equal(y, t([[1 - 3 + 10, 4 - 6 + 20]]))


def test_relu_negative_slope():
    relu = layer('name: "r" type: "ReLU" relu_param { negative_slope: 0.1 }')
    assert torch.allclose(relu(t([-2.0, 3.0]))[0], t([-0.2, 3.0]))


@pytest.mark.parametrize("size,k,s,p,want", [
    (112, 3, 2, 0, 56),   # GoogLeNet pool1: ceil((112-3)/2)+1 = 56 (floor would give 55)
    (5, 2, 2, 0, 3),      # rounds up
    (5, 3, 2, 1, 3),      # ceil(4/2)+1 = 3, last window starts at 4 < 5+1: kept
    (6, 2, 2, 1, 4),      # ceil(6/2)+1 = 4, (4-1)*2 = 6 < 6+1: kept
    (4, 2, 2, 1, 3),      # ceil(4/2)+1 = 3, (3-1)*2 = 4 < 5: kept
    (4, 3, 4, 2, 2),      # ceil(5/4)+1 = 3, but (3-1)*4 = 8 >= 4+2: dropped
])
def test_caffe_pool_size(size, k, s, p, want):
    assert caffe_pool_size(size, k, s, p, ceil=True) == want


def test_max_pool_rounds_up_like_caffe():
    x = t(np.arange(25).reshape(1, 1, 5, 5))
    pool = layer('name: "p" type: "Pooling" pooling_param { pool: MAX kernel_size: 2 '
                 'stride: 2 }')
    (y,) = pool(x)
    # windows start at 0, 2, 4: the last ones hold only the image edge
    assert torch.equal(y[0, 0], t([[6, 8, 9], [16, 18, 19], [21, 23, 24]]))


@pytest.mark.parametrize("params", ["kernel_size: 3 stride: 2",          # pool1
                                    "kernel_size: 3 stride: 1 pad: 1",  # inception
                                    "kernel_size: 2 stride: 1 pad: 1"])  # explicit path
@pytest.mark.parametrize("fmt", [torch.contiguous_format, torch.channels_last])
def test_max_pool_gradient_goes_to_the_first_maximum_of_each_window(params, fmt):
    rng = np.random.default_rng(2)
    # whole numbers in a small range: many ties, as after a ReLU
    x = t(rng.integers(0, 3, (1, 3, 7, 8))).contiguous(memory_format=fmt)
    x.requires_grad_(True)
    pool = layer(f'name: "p" type: "Pooling" pooling_param {{ pool: MAX {params} }}')
    (y,) = pool(x)
    assert [s.dtype for s in y.grad_fn.saved_tensors if s is not None] == [torch.int32]
    g = t(rng.standard_normal(y.shape))
    (got,) = torch.autograd.grad(y, x, g)
    # Caffe's backward: each output's gradient to the first maximum of its window,
    # scanning rows then columns
    p = pool.pad[0]
    xp = np.pad(x.detach().numpy()[0], ((0, 0), (p, p + 2), (p, p + 2)),
                constant_values=-np.inf)
    want = np.zeros((3, 7 + 2 * p + 2, 8 + 2 * p + 2), np.float32)
    k, st = pool.kernel[0], pool.stride[0]
    for c in range(3):
        for i in range(y.shape[2]):
            for j in range(y.shape[3]):
                window = xp[c, i * st:i * st + k, j * st:j * st + k]
                r, q = np.unravel_index(np.argmax(window), window.shape)
                want[c, i * st + r, j * st + q] += g[0, c, i, j]
    np.testing.assert_allclose(got[0].numpy(), want[:, p:p + 7, p:p + 8], rtol=1e-6)


def test_ave_pool_divides_by_window_within_padded_image():
    x = torch.ones(1, 1, 4, 4)
    pool = layer('name: "p" type: "Pooling" pooling_param { pool: AVE kernel_size: 3 '
                 'stride: 2 pad: 1 }')
    (y,) = pool(x)
    # out = ceil((4+2-3)/2)+1 = 3. Window rows: [-1,2) -> 3 incl. pad (2 real),
    # [1,4) -> 3 real, [3,6) clipped to H+pad=5 -> 2 (1 real). Caffe divides by
    # the clipped size, padding included.
    rows_real, rows_div = [2, 3, 1], [3, 3, 2]
    want = np.outer(rows_real, rows_real) / np.outer(rows_div, rows_div)
    np.testing.assert_allclose(y[0, 0].numpy(), want, rtol=1e-6)


def test_pool_with_large_pad_uses_explicit_path_and_matches_formula():
    rng = np.random.default_rng(1)
    x = t(rng.standard_normal((1, 2, 5, 6)))
    pool = layer('name: "p" type: "Pooling" pooling_param { pool: AVE kernel_size: 2 '
                 'stride: 1 pad: 1 }')  # pad > kernel/2: PyTorch refuses, Caffe allows
    (y,) = pool(x)
    assert y.shape == (1, 2, 6, 7)
    xp = np.pad(x.numpy()[0], ((0, 0), (1, 1), (1, 1)))
    want = np.zeros((2, 6, 7), np.float32)
    for i in range(6):
        for j in range(7):
            want[:, i, j] = xp[:, i:i + 2, j:j + 2].sum((1, 2)) / 4
    np.testing.assert_allclose(y[0].numpy(), want, rtol=1e-5, atol=1e-6)
    mx = layer('name: "p" type: "Pooling" pooling_param { pool: MAX kernel_size: 2 '
               'stride: 1 pad: 1 }')
    (ym,) = mx(x)
    xm = np.pad(x.numpy()[0], ((0, 0), (1, 1), (1, 1)), constant_values=-np.inf)
    want_max = np.stack([[xm[:, i:i + 2, j:j + 2].max((1, 2)) for j in range(7)]
                         for i in range(6)]).transpose(2, 0, 1)
    np.testing.assert_allclose(ym[0].numpy(), want_max)


def test_global_pooling():
    x = t(np.arange(8).reshape(1, 2, 2, 2))
    mx = layer('name: "p" type: "Pooling" pooling_param { pool: MAX global_pooling: true }')
    av = layer('name: "p" type: "Pooling" pooling_param { pool: AVE global_pooling: true }')
    assert torch.equal(mx(x)[0].flatten(), t([3, 7]))
    assert torch.equal(av(x)[0].flatten(), t([1.5, 5.5]))


def naive_lrn_across(x, n, alpha, beta, k):
    c = x.shape[1]
    out = np.empty_like(x)
    half = (n - 1) // 2
    for ch in range(c):
        lo, hi = max(0, ch - half), min(c, ch + half + 1)
        scale = k + alpha / n * (x[:, lo:hi] ** 2).sum(1)
        out[:, ch] = x[:, ch] * scale ** -beta
    return out


def test_lrn_across_channels_matches_caffe_formula():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((1, 7, 3, 4)).astype(np.float32) * 30
    lrn = layer('name: "n" type: "LRN" lrn_param { local_size: 5 alpha: 0.0001 beta: 0.75 '
                'k: 2 }')
    np.testing.assert_allclose(lrn(t(x))[0].numpy(), naive_lrn_across(x, 5, 1e-4, 0.75, 2),
                               rtol=1e-5)


def test_lrn_within_channel_ignores_k_and_divides_by_n_squared():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1, 2, 5, 5)).astype(np.float32) * 10
    lrn = layer('name: "n" type: "LRN" lrn_param { local_size: 3 alpha: 0.5 beta: 0.75 '
                'norm_region: WITHIN_CHANNEL k: 7 }')
    sq = np.pad(x[0] ** 2, ((0, 0), (1, 1), (1, 1)))
    want = np.empty_like(x[0])
    for i in range(5):
        for j in range(5):
            avg = sq[:, i:i + 3, j:j + 3].sum((1, 2)) / 9
            want[:, i, j] = x[0, :, i, j] * (1 + 0.5 * avg) ** -0.75
    np.testing.assert_allclose(lrn(t(x))[0][0].numpy(), want, rtol=1e-5)


def test_lrn_even_size_refused():
    with pytest.raises(DreamerError, match="odd"):
        layer('name: "n" type: "LRN" lrn_param { local_size: 4 }')


def test_concat_axis_and_v1_concat_dim():
    a, b = torch.zeros(1, 2, 3, 3), torch.ones(1, 1, 3, 3)
    cat = layer('name: "c" type: "Concat" bottom: "a" bottom: "b" top: "c"')
    assert cat(a, b)[0].shape == (1, 3, 3, 3)
    cat2 = layer('name: "c" type: "Concat" concat_param { axis: 2 }')
    assert cat2(a, torch.ones(1, 2, 1, 3))[0].shape == (1, 2, 4, 3)


def test_inner_product_flattens_and_transposes():
    w = np.arange(6, dtype=np.float32).reshape(3, 2)  # transpose: IN x OUT
    ip = layer('name: "f" type: "InnerProduct" inner_product_param { num_output: 2 '
               'transpose: true bias_term: false }', w)
    x = t([[[[1]], [[2]], [[3]]]])  # 1x3x1x1
    assert torch.equal(ip(x)[0], t([[0 + 4 + 12, 1 + 6 + 15]]))


def test_dropout_is_identity_and_softmax_sums_to_one():
    x = t([[1.0, 2.0, 3.0]])
    assert torch.equal(layer('name: "d" type: "Dropout"')(x)[0], x)
    y = layer('name: "s" type: "Softmax"')(x)[0]
    np.testing.assert_allclose(y[0].numpy(), np.exp([1, 2, 3]) / np.exp([1, 2, 3]).sum(),
                               rtol=1e-6)


def test_split_eltwise():
    a, b = t([1.0, -2.0]), t([3.0, 4.0])
    split = layer('name: "s" type: "Split" bottom: "a" top: "a1" top: "a2"')
    assert len(split(a)) == 2
    s = layer('name: "e" type: "Eltwise" eltwise_param { operation: SUM coeff: 2 coeff: -1 }'
              ' bottom: "a" bottom: "b"')
    assert torch.equal(s(a, b)[0], t([-1.0, -8.0]))
    assert torch.equal(layer('name: "e" type: "Eltwise" eltwise_param { operation: PROD }')(
        a, b)[0], t([3.0, -8.0]))
    assert torch.equal(layer('name: "e" type: "Eltwise" eltwise_param { operation: MAX }')(
        a, b)[0], t([3.0, 4.0]))


def test_batchnorm_uses_scaled_global_stats_and_scale_adds_bias():
    mean, var, factor = np.array([2.0, 4.0]), np.array([8.0, 2.0]), np.array([2.0])
    bn = layer('name: "b" type: "BatchNorm" batch_norm_param { eps: 0 }', mean, var, factor)
    x = torch.full((1, 2, 1, 1), 5.0)
    # Caffe stores sums: mean = (2, 4) / 2, var = (8, 2) / 2 -> ((5-1)/2, (5-2)/1)
    assert torch.allclose(bn(x)[0].flatten(), t([2.0, 3.0]))
    scale = layer('name: "s" type: "Scale" bottom: "x" scale_param { bias_term: true }',
                  np.array([2.0, 3.0]), np.array([1.0, -1.0]))
    assert torch.equal(scale(torch.ones(1, 2, 1, 1))[0].flatten(), t([3.0, 2.0]))


def test_sigmoid_tanh_flatten():
    x = t([[[[0.0]], [[1.0]]]])
    assert torch.allclose(layer('name: "s" type: "Sigmoid"')(x)[0].flatten(),
                          t([0.5, 1 / (1 + np.exp(-1))]))
    assert torch.allclose(layer('name: "h" type: "TanH"')(x)[0].flatten(), t([0, np.tanh(1)]))
    assert layer('name: "f" type: "Flatten"')(x)[0].shape == (1, 2)


def test_unsupported_layer_type_names_layer_and_type():
    with pytest.raises(DreamerError, match=r"'odd' has type Deconvolution"):
        layer('name: "odd" type: "Deconvolution"')


def test_lrn_band_matches_torch_reference():
    rng = np.random.default_rng(4)
    x = t(rng.standard_normal((2, 9, 4, 3)) * 20)
    lrn = layer('name: "n" type: "LRN" lrn_param { local_size: 5 alpha: 0.001 beta: 0.75 }')
    assert isinstance(lrn, LRN)
    want = torch.nn.functional.local_response_norm(x, 5, 0.001, 0.75, 1.0)
    torch.testing.assert_close(lrn(x)[0], want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("params", ["kernel_size: 3 stride: 2",         # native
                                    "kernel_size: 2 stride: 1 pad: 1",  # native, padded
                                    "kernel_size: 3 stride: 2 pad: 2"])  # explicit path
def test_max_pool_with_relu_equals_relu_then_pool_with_ties(params):
    # whole numbers from -2 to 2: ties at zero, at positive values, all-negative windows
    rng = np.random.default_rng(5)
    x = t(rng.integers(-2, 3, (1, 4, 9, 10))).contiguous(memory_format=torch.channels_last)
    spec = f'name: "p" type: "Pooling" pooling_param {{ pool: MAX {params} }}'
    fused, plain = layer(spec), layer(spec)
    assert fused.commutes_with_relu()
    fused.fused_relu = True
    a, b = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    (ya,), (yb,) = fused(a), plain(torch.relu(b))
    assert torch.equal(ya, yb)
    g = t(rng.standard_normal(ya.shape))
    (ga,) = torch.autograd.grad(ya, a, g)
    (gb,) = torch.autograd.grad(yb, b, g)
    assert torch.equal(ga, gb)
    assert (ga != 0).any() and (x <= 0).any()


@pytest.mark.parametrize("params", ["kernel_size: 1 stride: 2",  # gaps: the last window
                                    "kernel_size: 2 stride: 1 pad: 2",  # padding only
                                    "global_pooling: true"])
def test_max_pools_with_windows_of_padding_only_do_not_take_a_relu(params):
    pool = layer(f'name: "p" type: "Pooling" pooling_param {{ pool: MAX {params} }}')
    assert not pool.commutes_with_relu()
    if "global" in params:
        return
    # why: such a window pools -inf, and a ReLU after the pool would make it 0
    x = torch.full((1, 1, 4, 4), 5.0)
    (y,) = pool(torch.relu(x))
    assert torch.isinf(y).any()
