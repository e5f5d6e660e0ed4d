"""`python -m dreamer.cli.bench` (`dreamvideo bench`): how fast frames dream, against a plain port.

For each size and end layer it dreams frames with the default parameters and prints the
median seconds per frame (after a warm-up frame), the GFLOP a frame costs (counted with
torch's FlopCounterMode, not estimated), the GFLOP/s achieved (and its share of the float32
peak a large matrix product reaches on the same device), peak memory and the device;
then, on the CPU, the same frames without the compiled kernels (DREAMER_NATIVE=0: the
kernels must never be slower than PyTorch's own operations), and with `reference_dream`,
a straightforward port of the original (numpy/scipy pyramid and np.roll, weights that get
gradients, PyTorch's own LRN), and each one's time over the fast one's.

Any deploy net can be timed: `--model NAME` (a registry model, `dreamvideo models list`)
or `--model FOLDER`, `--prototxt FILE` for the deploy file outright, and `--random-weights`
for a model whose weights are not downloaded (deterministic random weights from the deploy
file alone: the arithmetic, and so the time and memory, are the real net's). The default
end layers: GoogLeNet's two above; for another registry model its usual layer; for any
other net a layer about 60 % deep among its Convolution, Concat and Eltwise layers.
"""
from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dreamer.caffe import models
from dreamer.caffe.random_weights import random_net
from dreamer.caffe.registry import MODELS, ModelInfo
from dreamer.dream import schedule, transforms
from dreamer.run import threads
from dreamer.caffe import autotune, native
from dreamer.caffe.layers import LRN, Convolution, InnerProduct, Pooling
from dreamer.caffe.net import CaffeNet, load_net
from dreamer.run.device import CompiledNet, pick_device
from dreamer.errors import DreamerError
from dreamer.cli import signals
from dreamer.cli.oneline import OneLineParser
from dreamer.dream.render import deepdream

MEAN = (104.0, 116.0, 122.0)
SIZES = ("540x360", "1024x768")
ENDS = ("inception_4c/output", "inception_5b/output")
SEED = 1
WEIGHTS_SEED = 0  # --random-weights: the fast net's and the reference port's
DEEP = 0.6  # an unregistered net's default end: this deep among its conv/concat/sum layers


@dataclass
class Params:
    """The dream's defaults (those of the original script)."""
    iter_n: int = 10
    octave_n: int = 4
    octave_scale: float = 1.4
    step_size: float = 1.5
    jitter: int = 32


# ---------------------------------------------------------------- the reference port

def reference_net(prototxt: Path, caffemodel: Path | None, device: torch.device) -> CaffeNet:
    """The same layers, run the plain way: NCHW, weights as parameters that get gradients
    (as Caffe's backward computed them), PyTorch's own convolutions, max pooling and
    built-in LRN. No caffemodel: the random weights the fast net has (WEIGHTS_SEED).
    BatchNorm, Scale and Eltwise (ResNet's) run as they do in the fast net: they have no
    compiled kernels to leave out."""
    if caffemodel is None:
        net = random_net(prototxt, WEIGHTS_SEED, channels_last=False, fuse=False)
    else:
        net = load_net(prototxt, caffemodel, channels_last=False, fuse=False)
    for layer in net.layers:
        if isinstance(layer, Convolution):
            layer.space_to_depth = layer.winograd = layer.winograd_gradient = False
        if isinstance(layer, (Pooling, LRN)):
            layer.native = False
        if isinstance(layer, (Convolution, InnerProduct)):
            for name in ("weight", "bias"):
                t = getattr(layer, name)
                delattr(layer, name)  # (a buffer: it becomes a parameter)
                setattr(layer, name, None if t is None else nn.Parameter(t))
        elif isinstance(layer, LRN) and layer.across:
            layer.forward = _builtin_lrn(layer)
    return net.to(device)


def _builtin_lrn(layer: LRN):
    def forward(x):
        return (F.local_response_norm(x, layer.size, layer.alpha, layer.beta, layer.k),)
    return forward


def reference_dream(net: CaffeNet, base_img: np.ndarray, end: str, offsets, mean,
                    p: Params, device: torch.device) -> np.ndarray:
    """google/deepdream's notebook, line by line: HxWx3 RGB floats in and out."""
    import scipy.ndimage as nd

    mean = np.float32(mean)[:, None, None]

    def zoom(a, factors):
        # mode="nearest": the last row/column's source position can round just past the
        # border, where scipy's default mode="constant" would blend in zeros.
        return nd.zoom(a, factors, order=1, mode="nearest")

    def make_step(src):
        ox, oy = next(offsets)
        src = np.roll(np.roll(src, ox, -1), oy, -2)
        x = torch.from_numpy(src[None]).to(device).requires_grad_(True)
        net.zero_grad()
        acts = net(x, end=end)
        acts.backward(acts.detach())  # L2 objective: the end blob's diff is its data
        g = x.grad[0].cpu().numpy()
        src = src + p.step_size / np.abs(g).mean() * g
        src = np.roll(np.roll(src, -ox, -1), -oy, -2)
        return np.clip(src, -mean, 255 - mean)

    octaves = [np.float32(base_img)[:, :, ::-1].transpose(2, 0, 1) - mean]
    for _ in range(p.octave_n - 1):
        octaves.append(zoom(octaves[-1], (1, 1.0 / p.octave_scale, 1.0 / p.octave_scale)))
    detail = np.zeros_like(octaves[-1])
    for octave, octave_base in enumerate(octaves[::-1]):
        h, w = octave_base.shape[-2:]
        if octave > 0:
            h1, w1 = detail.shape[-2:]
            detail = zoom(detail, (1, 1.0 * h / h1, 1.0 * w / w1))
        src = octave_base + detail
        for _ in range(p.iter_n):
            src = make_step(src)
        detail = src - octave_base
    return (src + mean)[::-1].transpose(1, 2, 0)


# ---------------------------------------------------------------- measuring

def count_gflop(net: CaffeNet, height: int, width: int, end: str, p: Params,
                device: torch.device) -> float:
    """GFLOP of one frame, counted by torch's FlopCounterMode on one forward per octave
    size (on the meta device: shapes only, nothing computed), times 2 for the backward
    (the gradient of a convolution or linear layer with respect to its input costs
    exactly its forward's multiply-adds; weights get none), times the iterations.
    Convolutions and fully connected layers only (2 FLOP per multiply-add): ReLU, pooling
    and LRN are under 1 % and depend on how they are written."""
    from torch.utils.flop_counter import FlopCounterMode

    meta = _meta_net(net)
    total = 0
    for h, w in transforms.octave_sizes(height, width, p.octave_n, p.octave_scale):
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            meta(torch.zeros(1, 3, h, w, device="meta"), end=end)
        counts = counter.get_flop_counts()  # per module: "CaffeNet.layers.<i>"
        forward = sum(sum(counts.get(f"{type(meta).__name__}.layers.{i}", {}).values())
                      for i, layer in enumerate(meta.layers)
                      if isinstance(layer, (Convolution, InnerProduct)))
        total += 2 * forward * p.iter_n
    return total / 1e9


def _meta_net(net: CaffeNet) -> CaffeNet:
    import copy

    return copy.deepcopy(net).to("meta")


class PeakMemory:
    """Peak resident memory (CPU) or allocated memory (CUDA) since `reset()`, in MB."""

    def __init__(self, device: torch.device):
        self.device = device

    def reset(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            return
        try:  # Linux: writing 5 resets the process's peak RSS (VmHWM)
            Path("/proc/self/clear_refs").write_text("5")
        except OSError:
            pass

    def mb(self) -> float:
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device) / 2**20
        try:
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        except OSError:
            pass
        scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KB else
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


def matmul_peak(device: torch.device, n: int = 2048) -> float:
    """GFLOP/s of a large float32 matrix product on `device`: what this machine's BLAS
    reaches on the friendliest workload, the yardstick for the dream's GFLOP/s."""
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    torch.mm(a, b)
    _sync(device)
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        torch.mm(a, b)
        _sync(device)
        best = min(best, time.perf_counter() - t)
    return 2 * n ** 3 / best / 1e9


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_frames(impls, frames: int, device: torch.device, memory: PeakMemory) -> dict:
    """{name: (median seconds, peak MB)}: one warm-up frame each (its peak memory is the
    peak of every frame), then the timed frames taking turns, so that load from other
    processes hits every implementation alike."""
    peaks, seconds = {}, {name: [] for name in impls}
    for name, dream_one in impls.items():
        memory.reset()
        dream_one(0)
        _sync(device)
        peaks[name] = memory.mb()
    for k in range(1, frames + 1):
        for name, dream_one in impls.items():
            t = time.perf_counter()
            dream_one(k)
            _sync(device)
            seconds[name].append(time.perf_counter() - t)
    return {name: (statistics.median(seconds[name]), peaks[name]) for name in impls}


def sample_image(height: int, width: int) -> np.ndarray:
    """A smooth random RGB image (speed does not depend on content; this is repeatable)."""
    rng = np.random.default_rng(0)
    small = rng.uniform(0, 255, (max(2, height // 16), max(2, width // 16), 3))
    import scipy.ndimage as nd

    big = nd.zoom(small, (height / small.shape[0], width / small.shape[1], 1), order=1)
    return np.float32(big[:height, :width])


# ---------------------------------------------------------------- the command

def parse_args(argv=None, prog: str | None = None) -> argparse.Namespace:
    ap = OneLineParser(prog=prog or "dreamvideo bench", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true",
                    help="540x360, one end layer only (GoogLeNet's inception_4c/output), 3 "
                         "frames (under 2 minutes with GoogLeNet)")
    ap.add_argument("--gpu", type=int, default=None, metavar="N", help="CUDA device N")
    ap.add_argument("--sizes", nargs="+", default=None, metavar="WxH")
    ap.add_argument("--ends", nargs="+", default=None, metavar="LAYER",
                    help="end layers (default: GoogLeNet's inception_4c/output and "
                         "inception_5b/output; another registry model's usual layer; for "
                         "any other net one about 60%% deep)")
    ap.add_argument("--frames", type=int, default=3, help="timed frames after the warm-up")
    ap.add_argument("--no-reference", action="store_true", help="skip the reference port")
    ap.add_argument("--memory-size", default="1920x1080", metavar="WxH",
                    help="also dream one frame this size, in a fresh process, for its peak "
                         "memory (with --quick: 1 iteration per octave); 'none' skips it")
    ap.add_argument("--precision", choices=threads.PRECISIONS, default="fp32",
                    help="fp32 (matches Caffe; default), tf32 (CUDA) or bf16 (autocast: "
                         "faster on GPUs and AMX CPUs, outside the Caffe goldens)")
    ap.add_argument("--compile", action="store_true",
                    help="torch.compile the net per octave shape (on CUDA with CUDA graphs)")
    ap.add_argument("--threads", type=int, default=None, help="CPU threads (default: cores)")
    ap.add_argument("--model", default=None, metavar="NAME|FOLDER",
                    help="a registry model (`dreamvideo models list`) or a model folder "
                         "(default: GoogLeNet)")
    ap.add_argument("--model-path", type=Path, default=None,
                    help="folder of the model (default: the search of `dreamvideo dream`: "
                    "$DREAMER_MODELS, the cache, ../caffe/models)")
    ap.add_argument("--model-name", default=None,
                    help="the caffemodel's file name, or a registry model's name (default: "
                         f"{models.DEFAULT_WEIGHTS})")
    ap.add_argument("--prototxt", default=None, metavar="FILE",
                    help="the deploy file (a path, or a name in the model folder; default: "
                         "the folder's deploy.prototxt or its one *.prototxt)")
    ap.add_argument("--random-weights", action="store_true",
                    help="time the net on deterministic random weights made from its "
                         "deploy file alone: for a model whose weights are not downloaded")
    ap.add_argument("--mean", default=None, metavar="B,G,R",
                    help="the mean subtracted before the net (default: {:g},{:g},{:g})"
                         .format(*MEAN))
    ap.add_argument("--iterations", type=int, default=Params.iter_n)
    ap.add_argument("--memory-child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--octaves", type=int, default=Params.octave_n)
    args = ap.parse_args(argv)
    if args.quick:
        args.sizes = args.sizes or ["540x360"]
    args.sizes = [_size(s) for s in (args.sizes or SIZES)]
    # args.ends stays None until the net is loaded: default_ends picks them for it
    args.memory_size = None if args.memory_size == "none" else _size(args.memory_size)
    try:
        args.mean = MEAN if args.mean is None else _mean(args.mean)
    except DreamerError as e:
        ap.error(str(e))
    if args.model is not None and (args.model_path is not None or args.model_name):
        ap.error("--model replaces --model-path and --model-name: give one or the other")
    return args


def _mean(text: str) -> tuple[float, float, float]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3:
        raise DreamerError(f"--mean {text}: give three numbers B,G,R (e.g. 104,116,122)")
    return values


def default_ends(net: CaffeNet, info: ModelInfo | None, quick: bool = False) -> list[str]:
    """GoogLeNet's ENDS (the first only with --quick) where the net has them, else the
    registry model's usual layer, else deep_layer's."""
    names = set(net.layer_names)
    if all(end in names for end in ENDS):
        return list(ENDS[:1] if quick else ENDS)
    if info is not None and info.layers and info.layers[0] in names:
        return [info.layers[0]]
    return [deep_layer(net)]


def deep_layer(net: CaffeNet, depth: float = DEEP) -> str:
    """The layer `depth` of the way through the net's Convolution, Concat and Eltwise
    layers (the layers people dream at: a conv, an inception's or a residual block's
    output)."""
    candidates = [layer.name for layer in net.layers
                  if layer.type in ("Convolution", "Concat", "Eltwise")]
    if not candidates:
        raise DreamerError(f"{net.name or 'the net'} has no Convolution, Concat or Eltwise "
                           "layer to end at; name the end layers with --ends")
    return candidates[round(depth * (len(candidates) - 1))]


def _size(text: str) -> tuple[int, int]:
    w, h = text.lower().split("x")
    return int(w), int(h)


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} ({device})"
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    # (builds the kernels now, if this is their first use, not inside a timed frame)
    if native.kernels() is None:
        kernels = "PyTorch's (none compiled)"
    else:
        kernels = f"{native.variant()}, DREAMER_NATIVE={autotune.mode()}"
    return (f"CPU {cpu}, {torch.get_num_threads()} threads of {os.cpu_count()} CPUs; "
            f"convolution (Winograd), pooling and LRN kernels: {kernels}")


def without_kernels(dream_one):
    """dream_one as DREAMER_NATIVE=0 runs it: PyTorch's own operations only."""
    def run(k):
        old = os.environ.get("DREAMER_NATIVE")
        os.environ["DREAMER_NATIVE"] = "0"
        try:
            return dream_one(k)
        finally:
            if old is None:
                del os.environ["DREAMER_NATIVE"]
            else:
                os.environ["DREAMER_NATIVE"] = old
    return run


def make_runner(net: CaffeNet, args):
    """What deepdream calls as the net: the net itself, or its compiled version."""
    if args.precision == "bf16":
        net.autocast_dtype = torch.bfloat16
    return CompiledNet(net) if args.compile else net


def main(argv=None, prog: str | None = None) -> int:
    args = parse_args(argv, prog)
    return signals.run(lambda: run_memory_child(args) if args.memory_child else run(args))


def _setup(args: argparse.Namespace):
    """(device, prototxt, caffemodel, net, registry info) as the arguments ask, the backend
    configured; caffemodel is None with --random-weights."""
    device = pick_device(args.gpu)
    threads.configure(device, args.precision, threads=args.threads)
    prototxt, caffemodel, info = model_files(args)
    if caffemodel is None:
        net = random_net(prototxt, WEIGHTS_SEED)
    else:
        net = load_net(prototxt, caffemodel)
    return device, prototxt, caffemodel, net.to(device), info


RANDOM_HINT = "or time it on random weights with --random-weights"


def model_files(args: argparse.Namespace) -> tuple[Path, Path | None, ModelInfo | None]:
    """(deploy file, caffemodel or None for --random-weights, the registry's entry if it
    is a registry model)."""
    model_path, model_name = args.model_path, args.model_name
    if args.model is not None:
        if args.model in MODELS:
            model_name = args.model
        elif Path(args.model).is_dir():
            model_path = Path(args.model)
        else:
            raise DreamerError(f"--model {args.model} is neither a registry model ("
                               f"{', '.join(MODELS)}) nor a folder")
    explicit = model_name is not None
    model_name = model_name or models.DEFAULT_WEIGHTS
    info = (MODELS.get(model_name) or models.info_for_weights(model_name)) if explicit else None
    if args.random_weights:
        prototxt = _deploy_only(model_path, model_name, args.prototxt)
    else:
        try:
            prototxt, caffemodel = models.resolve(model_path, model_name, args.prototxt)
        except DreamerError as e:
            raise DreamerError(f"{e}; {RANDOM_HINT}") from None
        if not caffemodel.is_file():
            raise DreamerError(f"model weights {caffemodel} not found; name them with "
                               f"--model-name FILE, {RANDOM_HINT}")
    if info is None:  # a registry model's folder, or its deploy file named outright
        folder = model_path.name if model_path is not None else prototxt.parent.name
        info = MODELS.get(folder) if model_path is not None or not explicit else None
    return prototxt, (None if args.random_weights else caffemodel), info


def _deploy_only(model_path: Path | None, model_name: str, prototxt: str | None) -> Path:
    """The deploy file for --random-weights: --prototxt FILE outright, else the model
    folder's, else the one of the registry model (or of the caffemodel's folder) in the
    search folders."""
    if model_path is not None:
        if not Path(model_path).is_dir():
            raise DreamerError(f"model folder {model_path} does not exist")
        return models.deploy_file(Path(model_path), prototxt)
    if prototxt and Path(prototxt).is_file():
        return Path(prototxt)
    info = MODELS.get(model_name) or models.info_for_weights(model_name)
    folder_name = info.name if info else Path(model_name).stem
    for base in models.search_dirs():
        folder = base / folder_name
        if not folder.is_dir():
            continue
        if prototxt:
            if (folder / prototxt).is_file():
                return folder / prototxt
        elif info and (folder / info.prototxt).is_file():
            return folder / info.prototxt
        elif (folder / "deploy.prototxt").is_file() or not info:
            try:
                return models.deploy_file(folder)
            except DreamerError:
                pass
    looked = ", ".join(str(d / folder_name) for d in models.search_dirs())
    name = prototxt or (info.prototxt if info else "deploy file")
    get = (f"get it with `dreamvideo models download {info.name}`" if info
           else "put it there")
    raise DreamerError(f"{name} of {folder_name} is not on disk (looked in {looked}); {get}, "
                       "or name the deploy file with --prototxt FILE")


def _as_tensor(img: np.ndarray, device: torch.device) -> torch.Tensor:
    """An HxWx3 image as the (3, H, W) tensor deepdream takes."""
    return torch.from_numpy(img).permute(2, 0, 1).contiguous().to(device)


def run(args: argparse.Namespace) -> int:
    device, prototxt, caffemodel, net, info = _setup(args)
    p = Params(iter_n=args.iterations, octave_n=args.octaves)
    args.ends = args.ends or default_ends(net, info, args.quick)
    check_octaves_fit(net, args.sizes + ([args.memory_size] if args.memory_size else []),
                args.ends, p)
    runner = make_runner(net, args)
    ref, skipped = None, "(--no-reference)"
    if not args.no_reference:
        try:
            ref = reference_net(prototxt, caffemodel, device)
        except (DreamerError, RuntimeError, ValueError, TypeError, AttributeError) as e:
            skipped = f"(it cannot run this net: {str(e).strip().splitlines()[0]})"
    mean = torch.tensor(args.mean, device=device)
    weights = (f"random weights (seed {WEIGHTS_SEED}; no caffemodel)" if caffemodel is None
               else str(caffemodel))
    print(f"model: {prototxt} with {weights}; mean {','.join(f'{m:g}' for m in args.mean)}"
          f"; ends {' '.join(args.ends)}")
    if ref is None:
        print(f"reference port: skipped {skipped}")
    memory = PeakMemory(device)
    if device.type == "cpu":  # other processes' work slows CPU timings a lot: say so
        print(f"load average before the run: {os.getloadavg()[0]:.2f} on "
              f"{threads.usable_cpus()} CPUs (near 0 for clean timings)")
    print(f"device: {describe_device(device)}; torch {torch.__version__}; "
          f"precision {args.precision}{', compiled' if args.compile else ''}")
    print(f"params: {p.octave_n} octaves x {p.iter_n} iterations, scale {p.octave_scale}, "
          f"step {p.step_size}, jitter {p.jitter}; median of {args.frames} frames after 1 "
          "warm-up")
    peak = matmul_peak(device)
    print(f"float32 peak, measured by a 2048x2048 matrix product: {peak:.0f} GFLOP/s")
    header = (f"{'size':>9}  {'end':<20} {'impl':<10} {'s/frame':>8} {'GFLOP/frame':>11} "
              f"{'GFLOP/s':>8} {'of peak':>7} {'peak MB':>8} {'vs fast':>8}")
    print(header)
    print("-" * len(header))
    for w, h in args.sizes:
        img = sample_image(h, w)
        img_t = _as_tensor(img, device)
        for end in args.ends:
            gflop = count_gflop(net, h, w, end, p, device)

            def fast(k):
                dream = deepdream(runner, img_t, end,
                                  schedule.jitter_offsets(SEED, k + 1, p.jitter), mean,
                                  p.iter_n, p.octave_n, p.octave_scale, p.step_size)
                return dream.cpu()

            def plain(k):
                return reference_dream(ref, img, end,
                                       schedule.jitter_offsets(SEED, k + 1, p.jitter),
                                       args.mean, p, device)

            impls = {"fast": fast}
            if device.type == "cpu" and autotune.mode() != "off" and not args.compile:
                impls["no-kernels"] = without_kernels(fast)  # the kernels must never lose
            if ref is not None:
                impls["reference"] = plain
            autotune.reset()  # (forgets what was used so far; the choices stay on disk)
            results = time_frames(impls, args.frames, device, memory)
            choices = autotune.used()
            for name, (s, mb) in results.items():
                ratio = f"{s / results['fast'][0]:7.2f}x" if name != "fast" else ""
                print(f"{w:>4}x{h:<4}  {end:<20} {name:<10} {s:8.2f} {gflop:11.1f} "
                      f"{gflop / s:8.1f} {gflop / s / peak:7.0%} {mb:8.0f} {ratio:>8}",
                      flush=True)
            summary = choices_summary(choices)
            if summary:
                print(f"{'':11}kernels' choices (fast): {summary}")
    if args.memory_size:
        w, h = args.memory_size
        iterations = 1 if args.quick else p.iter_n
        mb, seconds = memory_check(args, device, prototxt, caffemodel, (w, h), iterations)
        print(f"{w}x{h} {args.ends[0]}, {p.octave_n} octaves x {iterations} iterations, in a "
              f"fresh process: peak memory {mb:.0f} MB ({seconds:.1f} s)")
    return 0


def choices_summary(choices: dict[str, str]) -> str:
    """What autotune chose, per operation and direction: "conv forward 12/14 kernel, ..."
    (the compiled kernel's share of the layer-and-shape keys; the rest ran PyTorch's op).
    Empty where nothing was chosen (no kernels, or DREAMER_NATIVE=0/1)."""
    counts: dict[str, list[int]] = {}
    for k, choice in choices.items():
        _, op, direction, _ = k.rsplit("|", 3)
        n = counts.setdefault(f"{op} {direction}", [0, 0])
        n[0] += choice == autotune.NATIVE
        n[1] += 1
    return ", ".join(f"{what} {native}/{total} kernel"
                     for what, (native, total) in sorted(counts.items()))


def check_octaves_fit(net: CaffeNet, sizes, ends, p: Params) -> None:
    """Every size's smallest octave must pass through the net up to every end layer."""
    for w, h in sizes:
        sh, sw = transforms.octave_sizes(h, w, p.octave_n, p.octave_scale)[-1]
        for end in ends:
            net.check_end(end)
            try:
                net.validate(max(sh, 1), max(sw, 1), end)
            except ValueError:
                raise DreamerError(f"{w}x{h} is too small for {p.octave_n} octaves up to {end} "
                                   f"(the smallest octave is {sw}x{sh}); use larger --sizes "
                                   "or fewer --octaves") from None


def memory_check(args, device: torch.device, prototxt: Path, caffemodel: Path | None,
                 size: tuple[int, int], iterations: int) -> tuple[float, float]:
    """(peak MB, seconds) of dreaming one frame of `size`, in a child process: in this one,
    the memory the timed runs left to the allocator would count too."""
    command = [sys.executable, "-m", "dreamer.cli.bench", "--memory-child",
               "--memory-size", "{}x{}".format(*size), "--iterations", str(iterations),
               "--octaves", str(args.octaves), "--ends", args.ends[0],
               "--precision", args.precision, "--prototxt", str(Path(prototxt).resolve()),
               "--mean", ",".join(repr(float(m)) for m in args.mean)]
    if caffemodel is None:
        command += ["--random-weights"]
    else:
        command += ["--model-path", str(caffemodel.parent), "--model-name", caffemodel.name]
    if args.gpu is not None:
        command += ["--gpu", str(args.gpu)]
    if args.threads is not None:
        command += ["--threads", str(args.threads)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise DreamerError("the memory check failed: " + (done.stderr.strip().splitlines()
                                                          or ["no output"])[-1])
    mb, seconds = done.stdout.split()[-2:]
    return float(mb), float(seconds)


def run_memory_child(args: argparse.Namespace) -> int:
    """The child of memory_check: one dream, then "peak-MB seconds" on stdout."""
    device, _, _, net, _ = _setup(args)
    net = make_runner(net, args)
    w, h = args.memory_size
    img = _as_tensor(sample_image(h, w), device)
    p = Params(iter_n=args.iterations, octave_n=args.octaves)
    memory = PeakMemory(device)
    memory.reset()
    t = time.perf_counter()
    deepdream(net, img, args.ends[0], schedule.jitter_offsets(SEED, 1, p.jitter),
              torch.tensor(args.mean, device=device), p.iter_n, p.octave_n, p.octave_scale,
              p.step_size)
    _sync(device)
    print(f"{memory.mb():.1f} {time.perf_counter() - t:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
