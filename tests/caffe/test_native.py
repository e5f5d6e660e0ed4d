"""The compiled CPU kernels (dreamer/caffe/native.py, kernels.cpp) against the PyTorch
path they replace, and the fallback when they cannot be built."""
import hashlib
import logging
import math
import platform
from pathlib import Path

import pytest
import torch

from dreamer.caffe import layers, native
from dreamer.caffe.layers import _MaxPool, _NativeLRN
from dreamer.caffe.net import load_net
from tests.tiny_caffe import make_tiny_model


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_model(tmp_path_factory.mktemp("tiny"))


def _pool_both_ways(x, kernel, stride, pad, relu):
    """Blob, int32 positions and gradient from the kernels and from PyTorch's pool."""
    out = []
    for use_native in (True, False):
        xx = x.clone().requires_grad_(True)
        size = [layers._torch_pool_size(n, k, s, p)
                for n, k, s, p in zip(x.shape[-2:], kernel, stride, pad)]
        y = _MaxPool.apply(xx, kernel, stride, pad, size, relu, use_native)
        # not whole numbers: sums in another order than PyTorch's would differ in the bits
        weights = torch.randn(y.shape, generator=torch.Generator().manual_seed(5))
        (g,) = torch.autograd.grad(y, xx, weights)
        out.append((y, g))
    return out


@pytest.mark.parametrize("kernel, stride, pad", [
    ((3, 3), (2, 2), (0, 0)),  # GoogLeNet's pool1-4
    ((3, 3), (1, 1), (1, 1)),  # its inception pools
    ((2, 2), (2, 2), (0, 0)),
    ((3, 2), (2, 1), (1, 0)),  # not square, ceil mode leaves a part window
    ((1, 1), (1, 1), (0, 0)),
])
@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("channels", [7, 83])  # 83: the kernels' blocks of 64, 16 and 1
def test_max_pool_kernel_equals_pytorch_bit_for_bit(kernels, kernel, stride, pad, relu,
                                                    channels):
    # whole numbers: ties everywhere (the first maximum must win), with -inf and NaN
    gen = torch.Generator().manual_seed(3)
    x = torch.randint(-2, 3, (2, channels, 9, 11), generator=gen).float()
    x[0, 1, 2, 3], x[1, 2, 4, 4], x[0, 3, 0, 0] = math.nan, -math.inf, math.nan
    x[1, channels - 1, 5, 5], x[0, channels // 2, 1, 1] = math.nan, math.nan
    x[x == 0] *= torch.where(torch.rand(x.shape, generator=gen) < 0.5, -1.0, 1.0)[x == 0]
    x = x.contiguous(memory_format=torch.channels_last)
    (ya, ga), (yb, gb) = _pool_both_ways(x, kernel, stride, pad, relu)
    assert ya.shape == yb.shape and ya.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(_bits(ya), _bits(yb))  # -0.0, NaN and all
    assert torch.equal(_bits(ga), _bits(gb))
    assert (ga != 0).any()


def _bits(t):
    return t.contiguous().view(torch.int32)


def test_max_pool_kernel_refuses_windows_outside_the_image(kernels):
    x = torch.zeros(1, 2, 5, 5).contiguous(memory_format=torch.channels_last)
    with pytest.raises(RuntimeError, match="pad at most half"):
        kernels.max_pool_forward(x, 4, 4, 2, 2, 2, 2, 2, 2, False)
    with pytest.raises(RuntimeError, match="larger than the image"):
        kernels.max_pool_forward(x, 9, 3, 3, 3, 2, 2, 0, 0, False)


def test_max_pool_kernel_takes_only_channels_last_float32_cpu(kernels):
    x = torch.randn(1, 3, 6, 6)
    assert not _MaxPool.native_takes(x)  # NCHW: PyTorch's pool
    assert _MaxPool.native_takes(x.contiguous(memory_format=torch.channels_last))
    assert not _MaxPool.native_takes(x.double().contiguous(memory_format=torch.channels_last))


def _plain_lrn(x, size, alpha, k, beta):
    """Caffe's formula, written out in float64."""
    sq = torch.nn.functional.pad((x * x).movedim(1, -1), ((size - 1) // 2,) * 2)
    window = sum(sq[..., j:j + x.shape[1]] for j in range(size)).movedim(-1, 1)
    return x * (k + alpha / size * window) ** -beta


@pytest.mark.parametrize("channels, size", [(1, 5), (3, 5), (192, 5), (8, 1), (9, 3)])
@pytest.mark.parametrize("beta, k", [(0.75, 1.0), (0.6, 2.0)])
def test_lrn_kernel_matches_caffe_formula_and_its_gradient(kernels, channels, size, beta, k):
    gen = torch.Generator().manual_seed(channels)
    x = (torch.randn(1, channels, 5, 6, generator=gen, dtype=torch.float64) * 30)
    x = x.contiguous(memory_format=torch.channels_last)
    alpha = 1e-3
    xd = x.clone().requires_grad_(True)
    want = _plain_lrn(xd, size, alpha, k, beta)
    gy = torch.randn(want.shape, generator=gen, dtype=torch.float64)
    (want_g,) = torch.autograd.grad(want, xd, gy)

    xf = x.float().requires_grad_(True)
    got = _NativeLRN.apply(xf, size, alpha, k, beta)
    (got_g,) = torch.autograd.grad(got, xf, gy.float())
    assert got.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(got.double(), want, rtol=2e-6, atol=1e-5)
    torch.testing.assert_close(got_g.double(), want_g, rtol=2e-5, atol=1e-5)


def _blobs_and_gradient(net, x, end):
    blobs = {}
    hooks = [layer.register_forward_hook(
        lambda m, i, o, name=layer.name: blobs.__setitem__(name, o[0].detach().clone()))
        for layer in net.layers]
    xx = x.clone().requires_grad_(True)
    acts = net(xx, end=end)
    (g,) = torch.autograd.grad(acts, xx, acts.detach())
    for h in hooks:
        h.remove()
    return blobs, g


def test_whole_net_with_the_kernels_matches_it_in_float64(kernels, tiny):
    # float64 runs PyTorch's operations: the kernels take float32 only
    net = load_net(*tiny)
    x = torch.randn(1, 3, 45, 61, generator=torch.Generator().manual_seed(2)) * 50
    blobs, grad = _blobs_and_gradient(net, x, "inception_4c/output")
    want_blobs, want_grad = _blobs_and_gradient(net.double(), x.double(), "inception_4c/output")
    for name, blob in blobs.items():
        torch.testing.assert_close(blob.double(), want_blobs[name], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(grad.double(), want_grad, rtol=1e-4, atol=1e-4)


def test_dreamer_native_0_turns_them_off(monkeypatch):
    monkeypatch.setenv("DREAMER_NATIVE", "0")
    assert native.kernels() is None
    assert native.variant() is None
    assert not native.usable(torch.zeros(2))


def test_the_build_names_its_instruction_set(kernels):
    assert native.variant() == kernels.variant()
    assert native.variant().split(" (")[0] in ("avx512", "avx2+fma", "portable")


def test_dreamer_native_march_builds_for_that_cpu_under_its_own_name(monkeypatch):
    if native._missing_tool() is not None or platform.machine().lower() != "x86_64":
        pytest.skip("needs an x86-64 C++ compiler to tell the CPUs' instruction sets apart")
    here = native.build_name()
    monkeypatch.setenv(native.MARCH_VARIABLE, "haswell")
    assert "-march=haswell" in native._cflags()
    assert "-mprefer-vector-width=512" not in native._cflags()  # no AVX-512 on a Haswell
    assert native.build_name() != here
    monkeypatch.setenv(native.MARCH_VARIABLE, "skylake-avx512")
    assert "-mprefer-vector-width=512" in native._cflags()
    monkeypatch.setenv(native.MARCH_VARIABLE, " ")  # unset, in effect
    assert native.build_name() == here


def test_a_failed_build_falls_back_with_one_note(monkeypatch, caplog, tmp_path):
    from torch.utils import cpp_extension

    def broken(*args, **kwargs):
        raise RuntimeError("Error building extension:\nkernels.cpp:1: error: boom\n")

    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))  # nothing built there
    monkeypatch.setattr(native, "_built", {})
    monkeypatch.setattr(native, "_missing_tool", lambda: None)
    monkeypatch.setattr(cpp_extension, "load", broken)
    with caplog.at_level(logging.INFO, logger="dreamer"):
        assert native.kernels() is None
        assert native.kernels() is None  # tried once, not at every layer
    # warnings, so that they show without any logging set up (as in 2_dreaming_time.py)
    notes = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(notes) == 2 and "compiling" in notes[0]
    assert "error: boom" in notes[1] and "DREAMER_NATIVE=0" in notes[1]
    # the layers then take PyTorch's path
    x = torch.randn(1, 4, 7, 7).contiguous(memory_format=torch.channels_last)
    assert not _MaxPool.native_takes(x)


def test_a_lock_left_by_a_killed_build_does_not_hang_the_next(monkeypatch, tmp_path):
    from torch.utils import cpp_extension

    seen = {}

    def fake_load(name, sources, build_directory, **kwargs):
        seen["stale lock"] = (Path(build_directory) / "lock").exists()
        return "module"

    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    folder = tmp_path / native.build_name()
    folder.mkdir()
    (folder / "lock").write_text("")  # what PyTorch's builder leaves when killed with -9
    monkeypatch.setattr(native, "_built", {})
    monkeypatch.setattr(native, "_missing_tool", lambda: None)
    monkeypatch.setattr(cpp_extension, "load", fake_load)
    assert native.kernels() == "module"
    assert seen == {"stale lock": False}


def test_a_build_made_before_is_imported_as_is_and_a_cut_off_one_is_rebuilt(
        kernels, monkeypatch, tmp_path):
    from torch.utils import cpp_extension

    monkeypatch.setattr(cpp_extension, "load", lambda *a, **k: "rebuilt")
    name, whole = native.build_name(), Path(kernels.__file__).read_bytes()
    fingerprint = hashlib.sha1(whole).hexdigest()
    # a whole build, and one cut off by a kill while linking: loading that one could kill
    # the process (SIGBUS), so it must never be loaded
    for cache, library in (("whole", whole), ("cut off", whole[:5000])):
        monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path / cache))
        (tmp_path / cache / name).mkdir(parents=True)
        (tmp_path / cache / name / f"{name}.so").write_bytes(library)
        (tmp_path / cache / name / f"{name}.so.sha1").write_text(fingerprint)
        monkeypatch.setattr(native, "_built", {})
        # a finished build needs no compiler; a rebuild does
        monkeypatch.setattr(native, "_missing_tool",
                            lambda cache=cache: "no compiler" if cache == "whole" else None)
        if cache == "whole":
            assert native.kernels().lrn_forward is not None  # the copy, not a build
        else:
            assert native.kernels() == "rebuilt"


def test_a_torch_under_a_path_with_a_space_is_linked_from_that_path(monkeypatch, tmp_path):
    from torch.utils import cpp_extension

    seen = {}

    def fake_load(*args, **kwargs):  # the link flags PyTorch's builder would write
        seen["ldflags"] = cpp_extension._prepare_ldflags([], False, False, False, False)
        return "module"

    monkeypatch.setattr(cpp_extension, "TORCH_LIB_PATH", "/my projects/venv/torch/lib")
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    monkeypatch.setattr(native, "_built", {})
    monkeypatch.setattr(native, "_missing_tool", lambda: None)
    monkeypatch.setattr(cpp_extension, "load", fake_load)
    assert native.kernels() == "module"
    assert "-L'/my projects/venv/torch/lib'" in seen["ldflags"]  # one word for the shell
    assert cpp_extension.TORCH_LIB_PATH == "/my projects/venv/torch/lib"  # put back


def test_a_missing_compiler_is_named(monkeypatch):
    monkeypatch.setenv("CXX", "no-such-compiler-here")
    assert "no-such-compiler-here" in native._missing_tool()


def test_reference_net_of_the_benchmark_uses_pytorch_convolutions_pools_and_lrn(tiny):
    from dreamer.cli import bench

    net = bench.reference_net(*tiny, torch.device("cpu"))
    kinds = [layer for layer in net.layers if isinstance(layer, (layers.Pooling, layers.LRN))]
    assert kinds and not any(layer.native for layer in kinds)
    convs = [layer for layer in net.layers if isinstance(layer, layers.Convolution)]
    assert convs and not any(layer.winograd or layer.winograd_gradient or layer.space_to_depth
                             for layer in convs)
