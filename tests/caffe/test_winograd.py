"""Winograd's 3x3 convolution (dreamer/caffe/winograd.py, winograd.cpp) against the direct
convolution in float64, and where the net uses it."""
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from dreamer.caffe import native, winograd
from dreamer.caffe.layers import Convolution
from dreamer.caffe.net import load_net
from tests.tiny_caffe import make_tiny_model


class _Conv:
    """The attributes of a Convolution layer that winograd.py reads."""

    def __init__(self, cin, cout, k, pad, gen):
        self.weight = torch.randn(cout, cin, k, k, generator=gen)
        self.bias = torch.randn(cout, generator=gen)
        self.padding, self.stride, self.dilation, self.groups = pad, (1, 1), (1, 1), 1
        assert winograd.applies(self)
        self._u = winograd.transform_weights(self.weight)

    def winograd_weights(self):
        return self._u


def _relative_error(got, want):
    return ((got.double() - want).abs().max() / want.abs().max()).item()


@pytest.mark.parametrize("k, batch, cin, cout, height, width, pad", [
    (3, 1, 64, 192, 30, 41, 1),  # several chunks of tiles, 6 panels of 32 channels
    (3, 2, 17, 33, 13, 10, 1),   # a ragged vector of input channels, a ragged panel
    (3, 1, 16, 48, 12, 17, 2),   # a last panel of 16
    (3, 3, 20, 3, 5, 6, 0),      # fewer output channels than a vector
    (3, 2, 33, 100, 3, 2, 2),    # an image smaller than a tile
    (3, 1, 1, 1, 1, 1, 1),
    (3, 1, 5, 7, 9, 11, (0, 2)),
    (5, 1, 32, 96, 19, 23, 2),   # GoogLeNet's 5x5: tiles of 2x2 outputs
    (5, 2, 7, 9, 6, 5, (1, 4)),
    (4, 1, 20, 18, 11, 13, 0),   # tiles of 3x3 outputs
    (4, 2, 12, 64, 25, 31, 3),
])
def test_winograd_convolution_and_its_gradient_match_float64(kernels, k, batch, cin, cout,
                                                             height, width, pad):
    forward, backward = _errors(k, batch, cin, cout, height, width, pad)
    # float32 rounding through the transforms: about 1e-5 of the largest value
    assert forward < 5e-5
    assert backward < 5e-5


def _errors(k, batch, cin, cout, height, width, pad):
    """Relative errors of the convolution and of its input gradient, on this process's
    kernels, against float64."""
    gen = torch.Generator().manual_seed(cin * cout + height)
    pad = pad if isinstance(pad, tuple) else (pad, pad)
    conv = _Conv(cin, cout, k, pad, gen)
    x = torch.randn(batch, cin, height, width, generator=gen)
    x = x.contiguous(memory_format=torch.channels_last).requires_grad_(True)
    y = winograd.conv2d(x, conv)

    x64 = x.detach().double().requires_grad_(True)
    want = F.conv2d(x64, conv.weight.double(), conv.bias.double(), 1, pad)
    assert y.shape == want.shape and y.is_contiguous(memory_format=torch.channels_last)
    g = torch.randn(want.shape, generator=gen, dtype=torch.float64)
    (dx,) = torch.autograd.grad(y, x, g.float())
    (want_dx,) = torch.autograd.grad(want, x64, g)
    assert dx.shape == x.shape and dx.is_contiguous(memory_format=torch.channels_last)
    return _relative_error(y, want), _relative_error(dx, want_dx)


# ragged ends for vectors of 8 and 4 and panels of 16 and 8, besides those of 16 and 32
RAGGED = [(3, 2, 17, 33, 13, 10, 1), (3, 1, 13, 24, 12, 17, 2), (3, 3, 20, 3, 5, 6, 0),
          (3, 1, 64, 100, 30, 41, 1), (5, 1, 7, 9, 9, 11, 2), (5, 1, 36, 44, 19, 23, 2),
          (4, 2, 12, 20, 25, 31, 3)]


def _x86_with(*flags):
    try:
        cpu = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return platform.machine().lower() in ("x86_64", "amd64") and all(f in cpu for f in flags)


@pytest.mark.slow  # a build of its own: about a minute, the first time
@pytest.mark.parametrize("march, isa, cpu_flags", [
    ("haswell", "avx2+fma (8 lanes, panels of 16)", ("avx2", "fma")),
    ("x86-64", "portable (4 lanes, panels of 8)", ()),
])
def test_a_build_for_another_instruction_set_matches_float64(kernels, march, isa, cpu_flags):
    # the AVX2 and portable paths, built on this CPU with DREAMER_NATIVE_MARCH, in a process
    # of their own (a process holds one build)
    if not _x86_with(*cpu_flags):
        pytest.skip(f"-march={march} needs an x86-64 CPU with {cpu_flags}")
    script = ("import json; from dreamer.caffe import native; "
              "from tests.caffe.test_winograd import RAGGED, _errors; "
              "print(json.dumps([native.variant(), [_errors(*case) for case in RAGGED]]))")
    env = {**os.environ, native.MARCH_VARIABLE: march, "DREAMER_NATIVE": "1"}
    done = subprocess.run([sys.executable, "-c", script], cwd=Path(__file__).parents[2],
                          env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    variant, errors = json.loads(done.stdout.strip().splitlines()[-1])
    assert variant == isa
    for case, (forward, backward) in zip(RAGGED, errors):
        assert forward < 5e-5 and backward < 5e-5, case


def test_the_packing_follows_the_build(kernels):
    lanes, panel = winograd.layout()
    assert (lanes, panel) == tuple(kernels.winograd_layout()) and panel == 2 * lanes
    assert f"{lanes} lanes, panels of {panel}" in native.variant()
    u = winograd.pack_weights(torch.randn(lanes + 1, 5, 3, 3))  # one vector and a ragged one
    assert u.shape == (36 * 5 * 2 * lanes,)


@pytest.mark.parametrize("r", [3, 4, 5])
def test_the_transforms_make_an_exact_convolution_in_float64(r):
    # the algebra alone, without rounding: one tile, by the matrices themselves
    m = winograd.OUTPUTS[r]
    g = winograd.kernel_transform(r)
    bt = torch.tensor([[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
                       [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]],
                      dtype=torch.float64)  # as winograd.cpp writes them
    at = torch.tensor([[p ** i for p in winograd.POINTS] + [float(i == m - 1)]
                       for i in range(m)], dtype=torch.float64)
    gen = torch.Generator().manual_seed(r)
    d = torch.randn(6, 6, generator=gen, dtype=torch.float64)
    k = torch.randn(r, r, generator=gen, dtype=torch.float64)
    y = at @ ((g @ k @ g.T) * (bt @ d @ bt.T)) @ at.T
    want = F.conv2d(d[None, None], k[None, None])[0, 0]
    assert y.shape == (m, m)
    torch.testing.assert_close(y, want, rtol=1e-12, atol=1e-12)


def test_the_kernels_refuse_a_kernel_packed_for_other_channels(kernels):
    conv = _Conv(8, 16, 3, (1, 1), torch.Generator().manual_seed(1))
    x = torch.zeros(1, 9, 5, 5).contiguous(memory_format=torch.channels_last)
    with pytest.raises(RuntimeError, match="packed kernel"):
        kernels.winograd_conv(x, conv._u[0], conv.bias, 16, 4, 1, 1, 5, 5)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_model(tmp_path_factory.mktemp("tiny"))


def _grad_fns(net, x, end):
    """Names of the autograd nodes of each convolution's output, by layer name."""
    names = {}
    hooks = [layer.register_forward_hook(
        lambda m, i, o: names.__setitem__(m.name, type(o[0].grad_fn).__name__))
        for layer in net.layers if isinstance(layer, Convolution)]
    net(x.requires_grad_(True), end=end)
    for h in hooks:
        h.remove()
    return names


def test_the_net_runs_its_3x3_stride_1_convolutions_by_winograd(kernels, tiny):
    net = load_net(*tiny)
    names = _grad_fns(net, torch.randn(1, 3, 40, 50), "inception_4c/output")
    assert names["inception_3a/3x3"] == "_WinogradBackward"
    assert names["conv1/7x7_s2"] != "_WinogradBackward"  # stride 2
    assert names["inception_3a/1x1"] != "_WinogradBackward"
    # --precision bf16 asks for bfloat16 convolutions: autocast's, not these
    net.autocast_dtype = torch.bfloat16
    names = _grad_fns(net, torch.randn(1, 3, 40, 50), "inception_4c/output")
    assert "_WinogradBackward" not in names.values()
    # float64 (and anything else the kernels do not take) runs the direct convolution
    net.autocast_dtype = None
    names = _grad_fns(net.double(), torch.randn(1, 3, 40, 50).double(), "inception_4c/output")
    assert "_WinogradBackward" not in names.values()


def test_few_tiles_run_the_direct_convolution(kernels, tiny):
    # 3x3 on 8x8: 2x2 tiles, fewer than winograd.MIN_TILES[3]; 12x12: 3x3 tiles, enough
    net = load_net(*tiny)
    layer = net.layers[net._index["inception_3a/3x3"]]
    for size, name in ((8, "ConvolutionBackward0"), (12, "_WinogradBackward")):
        x = torch.randn(1, layer.weight.shape[1], size, size).requires_grad_(True)
        assert type(layer(x.contiguous(memory_format=torch.channels_last))[0].grad_fn
                    ).__name__ == name


def test_changed_weights_are_transformed_again(kernels, tiny):
    net = load_net(*tiny)
    layer = next(layer for layer in net.layers if getattr(layer, "winograd", False))
    x = torch.randn(1, layer.weight.shape[1], 9, 9).contiguous(memory_format=torch.channels_last)
    before = layer(x)[0]
    layer.weight.mul_(2)
    after = layer(x)[0]
    want = F.conv2d(x.double(), layer.weight.double(), layer.bias.double(), 1,
                    layer.padding)
    assert _relative_error(after, want) < 5e-5
    assert not torch.allclose(before, after)


def test_the_result_does_not_depend_on_the_thread_count(kernels):
    # each tile's sums run in one order whatever chunk or thread it falls to: the same
    # bits with any number of threads
    conv = _Conv(24, 40, 3, (1, 1), torch.Generator().manual_seed(4))
    x = torch.randn(1, 24, 37, 45, generator=torch.Generator().manual_seed(5))
    x = x.contiguous(memory_format=torch.channels_last)
    before = torch.get_num_threads()
    try:
        results = []
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            results.append(winograd.conv2d(x, conv))
    finally:
        torch.set_num_threads(before)
    assert all(torch.equal(results[0], r) for r in results[1:])
