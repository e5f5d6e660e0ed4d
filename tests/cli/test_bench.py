"""The benchmark's parts on a tiny generated net: counting, the reference port, the fast
path's custom pieces. Nothing here asserts a timing."""
from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from dreamer.cli import bench
from dreamer.dream import schedule
from dreamer.run import threads
from dreamer.caffe.layers import _LRNAcross
from dreamer.caffe.net import load_net
from dreamer.caffe.random_weights import random_net
from dreamer.caffe.registry import MODELS
from dreamer.dream.render import deepdream
from tiny_caffe import make_tiny_model

MEAN = torch.tensor(bench.MEAN)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_model(tmp_path_factory.mktemp("tiny"))


def test_flop_counter_counts_a_known_conv_exactly(tiny):
    net = load_net(*tiny)
    p = bench.Params(iter_n=3, octave_n=1)
    # conv1: 3 -> 4 channels, 3x3, stride 2, pad 1: a 64x48 image gives 32x24 outputs;
    # forward and the image gradient each cost 2 FLOP per multiply-add.
    per_pass = 2 * 4 * 32 * 24 * 3 * 3 * 3
    got = bench.count_gflop(net, 48, 64, "conv1/7x7_s2", p, torch.device("cpu")) * 1e9
    assert got == pytest.approx(3 * 2 * per_pass, abs=0.5)


def test_flop_counter_sums_every_conv_and_octave(tiny):
    net = load_net(*tiny)
    p = bench.Params(iter_n=2, octave_n=2)
    want = 0
    for h, w in ((48, 64), (34, 46)):
        shapes = []
        hooks = [m.register_forward_hook(lambda m, i, o: shapes.append((m, i[0], o[0])))
                 for m in net.layers if m.type == "Convolution"]
        with torch.no_grad():
            net(torch.zeros(1, 3, h, w), end="inception_5b/output")
        for h_ in hooks:
            h_.remove()
        want += sum(2 * o.numel() * m.weight[0].numel() for m, _, o in shapes) * 2 * p.iter_n
    got = bench.count_gflop(net, 48, 64, "inception_5b/output", p, torch.device("cpu"))
    assert got * 1e9 == pytest.approx(want, rel=1e-9)


def test_reference_port_and_fast_path_dream_the_same(tiny):
    fast_net = load_net(*tiny)
    ref_net = bench.reference_net(*tiny, torch.device("cpu"))
    assert any(p.requires_grad for p in ref_net.parameters())
    img = bench.sample_image(40, 56)
    p = bench.Params(iter_n=2, octave_n=2)
    fast = deepdream(fast_net, torch.from_numpy(img).permute(2, 0, 1), "inception_4c/output",
                     schedule.jitter_offsets(3, 1, p.jitter), MEAN, p.iter_n, p.octave_n,
                     p.octave_scale, p.step_size)
    ref = bench.reference_dream(ref_net, img, "inception_4c/output",
                                schedule.jitter_offsets(3, 1, p.jitter), bench.MEAN, p,
                                torch.device("cpu"))
    assert np.abs(fast.permute(1, 2, 0).numpy() - ref).mean() < 1e-3
    assert np.abs(ref - img).mean() > 1.0  # it did dream


@pytest.mark.parametrize("fmt", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("beta", [0.75, 0.6])
@pytest.mark.parametrize("channels", [7, 70])
def test_lrn_closed_form_backward_matches_autograd(fmt, beta, channels):
    x = (torch.randn(1, channels, 5, 4, dtype=torch.float64) * 3).contiguous(memory_format=fmt)
    idx = torch.arange(channels)
    band = ((idx[:, None] - idx[None, :]).abs() <= 2).double() * (0.01 / 5)
    x.requires_grad_(True)
    lrn = lambda t: _LRNAcross.apply(t, band, 1.0, beta)  # noqa: E731
    assert torch.autograd.gradcheck(lrn, (x,))
    plain = x * (1.0 + ((x * x).movedim(1, -1) @ band).movedim(-1, 1)) ** -beta
    torch.testing.assert_close(lrn(x), plain)
    assert lrn(x).is_contiguous(memory_format=torch.channels_last)
    from torch import _dynamo  # one graph, for --compile

    assert _dynamo.explain(lrn)(x.detach()).graph_break_count == 0


@pytest.mark.parametrize("use_native", [False, True])
def test_lrn_matches_pytorch_builtin(use_native):
    from dreamer.caffe import native
    from dreamer.caffe.layers import LRN

    if use_native and native.kernels() is None:
        pytest.skip("the compiled CPU kernels could not be built here (see the log)")
    x = torch.randn(2, 16, 6, 5) * 20
    lrn = LRN.__new__(LRN)
    torch.nn.Module.__init__(lrn)
    lrn.size, lrn.alpha, lrn.beta, lrn.k, lrn.across = 5, 1e-4, 0.75, 1.0, True
    lrn.native = use_native
    want = torch.nn.functional.local_response_norm(x, 5, 1e-4, 0.75, 1.0)
    torch.testing.assert_close(lrn(x)[0], want)


def test_bf16_autocast_runs_and_stays_close(tiny):
    net = load_net(*tiny)
    x = torch.randn(1, 3, 48, 64) * 40
    want = net(x, end="inception_5b/output")
    net.autocast_dtype = torch.bfloat16
    got = net(x, end="inception_5b/output")
    assert got.dtype == torch.float32
    assert (got - want).abs().mean() < 0.05 * want.abs().mean()


def test_quick_arguments(tiny):
    args = bench.parse_args(["--quick"])
    assert args.sizes == [(540, 360)] and args.ends is None  # the net's: default_ends
    assert args.frames >= 3 and args.memory_size == (1920, 1080)
    assert args.mean == bench.MEAN
    full = bench.parse_args(["--sizes", "64x48", "--memory-size", "none", "--mean", "1,2,3.5"])
    assert full.sizes == [(64, 48)] and full.ends is None and full.mean == (1, 2, 3.5)
    assert full.memory_size is None
    net = load_net(*tiny)  # GoogLeNet's layer names
    assert bench.default_ends(net, None) == list(bench.ENDS)
    assert bench.default_ends(net, None, quick=True) == ["inception_4c/output"]


def test_default_end_of_another_net(tmp_path, tiny):
    prototxt = tmp_path / "deploy.prototxt"
    prototxt.write_text(tiny[0].read_text().replace("inception_", "block_"))
    net = random_net(prototxt)
    convs = [layer.name for layer in net.layers
             if layer.type in ("Convolution", "Concat", "Eltwise")]
    assert len(convs) == 19 and bench.deep_layer(net) == convs[11] == "block_4e/1x1"  # 60 %
    assert bench.default_ends(net, None) == ["block_4e/1x1"]
    usual = dataclasses.replace(MODELS["nin_imagenet"], layers=("block_4c/3x3", "block_5a/1x1"))
    assert bench.default_ends(net, usual) == ["block_4c/3x3"]  # a registry model's usual one
    assert bench.default_ends(net, MODELS["nin_imagenet"]) == ["block_4e/1x1"]  # not its


def test_registry_model_by_name_and_deploy_file(tmp_path, tiny, monkeypatch):
    for var in ("DREAMER_MODELS", "XDG_CACHE_HOME"):
        monkeypatch.setenv(var, str(tmp_path / var))
    monkeypatch.chdir(tmp_path)  # (no ../caffe/models)
    folder = tmp_path / "DREAMER_MODELS" / "nin_imagenet"
    folder.mkdir(parents=True)
    (folder / "deploy.prototxt").write_text(tiny[0].read_text())
    args = bench.parse_args(["--model", "nin_imagenet", "--random-weights"])
    assert bench.model_files(args) == (folder / "deploy.prototxt", None, MODELS["nin_imagenet"])
    args = bench.parse_args(["--prototxt", str(tiny[0]), "--random-weights"])
    assert bench.model_files(args) == (tiny[0], None, None)
    args = bench.parse_args(["--model", str(folder), "--random-weights"])
    assert bench.model_files(args) == (folder / "deploy.prototxt", None, MODELS["nin_imagenet"])


def _one_line_error(capsys, *argv) -> str:
    assert bench.main([*argv, "--sizes", "64x48", "--memory-size", "none"]) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_missing_weights_or_deploy_file_is_one_line(tmp_path, tiny, monkeypatch, capsys):
    for var in ("DREAMER_MODELS", "XDG_CACHE_HOME"):
        monkeypatch.setenv(var, str(tmp_path / var))
    monkeypatch.chdir(tmp_path)
    err = _one_line_error(capsys, "--model", "resnet50")
    assert "dreamvideo models download resnet50" in err and "--random-weights" in err
    err = _one_line_error(capsys, "--model", "resnet50", "--random-weights")
    assert "dreamvideo models download resnet50" in err and "--prototxt FILE" in err
    only_deploy = tmp_path / "only deploy"
    only_deploy.mkdir()
    (only_deploy / "deploy.prototxt").write_text(tiny[0].read_text())
    err = _one_line_error(capsys, "--model", str(only_deploy))
    assert "not found" in err and "--random-weights" in err
    err = _one_line_error(capsys, "--model", "no_such_model")
    assert "neither a registry model" in err


def test_random_weights_bench_prints_real_figures(tiny, capsys):
    out = _main_out(capsys, "--prototxt", str(tiny[0]), "--random-weights", "--sizes",
                    "64x48", "--frames", "1", "--iterations", "1", "--octaves", "2",
                    "--memory-size", "80x64", "--ends", "inception_4c/output")
    assert "random weights (seed 0" in out and "reference port: skipped" not in out
    rows = [line.split() for line in out.splitlines() if line.strip().startswith("64x48")]
    with_kernels = bench.native.kernels() is not None
    assert [r[2] for r in rows] == ["fast"] + ["no-kernels"] * with_kernels + ["reference"]
    p = bench.Params(iter_n=1, octave_n=2)
    gflop = bench.count_gflop(random_net(tiny[0]), 48, 64, "inception_4c/output", p,
                              torch.device("cpu"))
    assert gflop > 0
    for row in rows:
        # s/frame is printed to 0.01 s, and the tiny net on an idle fast machine can take
        # under 5 ms a frame ("0.00"): GFLOP/s is then checked within that rounding
        seconds, mb = float(row[3]), float(row[7])
        assert 0 <= seconds < 60 and 10 < mb < 10_000
        assert row[4] == f"{gflop:.1f}"
        if seconds >= 0.01:
            assert float(row[5]) == pytest.approx(gflop / seconds,
                                                  rel=0.005 / seconds + 0.01, abs=0.051)
    memory = [line for line in out.splitlines() if "in a fresh process" in line]
    assert len(memory) == 1 and "80x64 inception_4c/output" in memory[0]
    mb = float(memory[0].split("peak memory ")[1].split()[0])
    assert mb > 10
    if with_kernels and bench.autotune.mode() == "auto":
        assert "kernels' choices (fast): " in out and "conv forward" in out


def _main_out(capsys, *argv) -> str:
    assert bench.main(list(argv)) == 0
    return capsys.readouterr().out


def _status_mb(field: str) -> float:
    """A line of /proc/self/status (VmRSS: resident now, VmHWM: its peak), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no {field} in /proc/self/status")


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(),
                    reason="resetting the peak needs Linux's /proc/self/clear_refs")
def test_peak_memory_is_what_was_allocated_since_reset():
    memory = bench.PeakMemory(torch.device("cpu"))
    block = np.ones(256 * 2**20 // 8)  # 256 MB, every page touched, then freed
    del block
    memory.reset()
    base = _status_mb("VmRSS")
    assert memory.mb() < base + 32  # the 256 MB before the reset are forgotten
    block = np.ones(128 * 2**20 // 8)
    peak = memory.mb()
    assert peak == pytest.approx(_status_mb("VmHWM"), abs=1)
    assert 128 * 0.95 < peak - base < 128 + 32  # what this test allocated, in MB
    del block
    assert memory.mb() == pytest.approx(peak, abs=1)  # a peak: it stays once freed


def test_peak_memory_on_cuda_is_torchs_peak_allocation_in_mb(monkeypatch):
    calls = []
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda d: calls.append(d))
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda d: 3 * 2**20 + 2**19)
    memory = bench.PeakMemory(torch.device("cuda", 0))
    memory.reset()
    assert calls == [torch.device("cuda", 0)]
    assert memory.mb() == 3.5


def test_usable_cpus_is_the_affinity_capped_by_the_cgroup_quota(monkeypatch):
    try:
        here = len(os.sched_getaffinity(0))
    except AttributeError:
        here = os.cpu_count()
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            here = min(here, max(1, int(quota) // int(period)))
    except OSError:
        pass
    assert threads.usable_cpus() == here

    cpu_max = {}
    real_read_text = Path.read_text

    def read_text(self, *args, **kwargs):
        if str(self) == "/sys/fs/cgroup/cpu.max":
            if "text" not in cpu_max:
                raise FileNotFoundError(str(self))
            return cpu_max["text"]
        return real_read_text(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", read_text)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    assert threads.usable_cpus() == 8  # no cgroup file: the affinity mask
    for text, want in (("max 100000\n", 8), ("200000 100000\n", 2), ("250000 100000\n", 2),
                       ("50000 100000\n", 1), ("1600000 100000\n", 8)):
        cpu_max["text"] = text
        assert threads.usable_cpus() == want, text
    monkeypatch.delattr(os, "sched_getaffinity")  # macOS and Windows have no mask
    monkeypatch.setattr(os, "cpu_count", lambda: 6)
    cpu_max["text"] = "max 100000\n"
    assert threads.usable_cpus() == 6


def test_threads_settings():
    with pytest.raises(ValueError):
        threads.configure(torch.device("cpu"), "fp8")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_heap_thresholds_are_set_unless_the_user_chose_them(monkeypatch):
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    assert threads.limit_heap_retention()
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "1000000")
    assert not threads.limit_heap_retention()


def _run_main(tiny, capsys, *extra):
    folder, weights = tiny[1].parent, tiny[1].name
    assert bench.main(["--model-path", str(folder), "--model-name", weights, "--sizes",
                       "64x48", "--frames", "1", "--iterations", "1", "--octaves", "2",
                       "--memory-size", "80x64", *extra]) == 0
    return capsys.readouterr().out


def test_main_prints_a_row_per_size_end_and_implementation(tiny, capsys):
    out = _run_main(tiny, capsys)
    rows = [line for line in out.splitlines() if line.strip().startswith("64x48")]
    impls = [r.split()[2] for r in rows]
    with_kernels = bench.native.kernels() is not None
    assert impls == (["fast"] + ["no-kernels"] * with_kernels + ["reference"]) * 2  # 2 ends
    assert "peak memory" in out and "GFLOP" in out
    if with_kernels:
        assert "DREAMER_NATIVE=auto" in out


def test_too_small_a_size_is_one_line(tiny, capsys):
    folder, weights = tiny[1].parent, tiny[1].name
    code = bench.main(["--model-path", str(folder), "--model-name", weights, "--sizes",
                       "4x4", "--memory-size", "none", "--no-reference"])
    err = capsys.readouterr().err
    assert code != 0 and "4x4 is too small" in err and len(err.strip().splitlines()) == 1


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_main_on_gpu(tiny, capsys):
    out = _run_main(tiny, capsys, "--gpu", "0", "--precision", "bf16")
    assert "cuda" in out

