"""Dreaming frames too large for memory: the image gradient computed tile by tile.

Only the gradient is tiled. make_step still rolls the whole image by the jitter before
tiling (the tile grid lands somewhere new in the picture every step, so no border stays
put long enough to leave a seam) and normalises by mean |g| over the whole image (every
tile takes a step of the same scale). The objectives are sums over positions (l2) or
pick a target per position (guide), so per-tile objectives add up to the whole one.
"""
from __future__ import annotations

import functools

from pathlib import Path

import torch

from dreamer.caffe.layers import Convolution, InnerProduct, Pooling
from dreamer.dream.objectives import Objective

# Peak memory of one step / the summed size of the blobs up to the end layer (backward
# keeps the forward blobs, plus a few blobs' worth of gradients at a time). Measured as
# peak RSS growth on the CPU with GoogLeNet, inception_3b..5b: 1.6 at 0.5 Mpx, 1.2-1.3
# at 2-8 Mpx; the larger value leaves room for allocator slack (and CUDA workspaces).
STEP_MEMORY_FACTOR = 1.6
# Whole-frame float32 images alive at a dream's peak besides the pyramid (frames_bytes).
# Measured as peak RSS growth with a tiny net at 3000x1996 (one image: 72 MB): 11.2
# images' worth with one octave, tiled or not, 13.7 with four (the pyramid adds 0.9).
FRAME_COPIES = 13
# Memory kept free for everything else (frames, the octave pyramid, other processes).
CPU_MARGIN = 0.8
CUDA_MARGIN = 0.9
# The context rim. A rim of (receptive field - 1) px makes each core's gradient exact
# (no unit that sees a core pixel sees past the tile); GoogLeNet's deep layers have huge
# fields (inception_4c: 299 px, 5b: 715 px) but the gradient at a pixel comes mostly
# from units centred near it. Measured on GoogLeNet (tile 256, 640x480 photo), mean
# |tiled - untiled| / mean |g| with a rim of 64 / 128 / 192 px: inception_3b 0.04% / 0 /
# 0, 4c 7.7% / 0.7% / 0.06%, 5b 40% / 13% / 3%. 128 px keeps 4c (google/deepdream's
# default layer) under 1% while a 512 px tile computes 2.25x its pixels (192 px: 3x).
MAX_OVERLAP = 128


def geometry(net, end: str) -> tuple[int | None, int]:
    """(receptive field, stride) of layer `end` in input pixels; field None when a global
    pooling or fully connected layer sees the whole image (such a layer cannot be tiled)."""
    stop = net.index(end)
    field = {net.input_name: (1, 1)}
    for layer in net.layers[:stop + 1]:
        ins = [field[b] for b in layer.bottoms if b in field]
        rf = None if any(f is None for f, _ in ins) else max(f for f, _ in ins)
        jump = max(j for _, j in ins)
        if isinstance(layer, InnerProduct) or (isinstance(layer, Pooling)
                                               and layer.global_pooling):
            rf = None
        elif isinstance(layer, (Convolution, Pooling)):
            k = layer.weight.shape[-1] if isinstance(layer, Convolution) else layer.kernel[1]
            dilation = layer.dilation[1] if isinstance(layer, Convolution) else 1
            rf = None if rf is None else rf + (k - 1) * dilation * jump
            jump *= layer.stride[1]
        field.update((top, (rf, jump)) for top in layer.tops)
    return field[net.layers[stop].tops[0]]


def default_overlap(net, end: str) -> int:
    """The receptive field less one pixel, capped at MAX_OVERLAP, in whole strides of
    `end`: tiles must start on the end layer's sampling grid, or every pooling would
    sample other pixels than the untiled pass and even tile centres would differ."""
    rf, stride = geometry(net, end)
    rim = MAX_OVERLAP if rf is None else min(rf - 1, MAX_OVERLAP)
    return -(-rim // stride) * stride


def _cuts(size: int, tile: int, stride: int) -> list[int]:
    """Core boundaries along one axis: near-equal parts of at most `tile`, on the grid."""
    units = -(-size // stride)
    n = -(-units // (tile // stride))
    return [min(size, i * units // n * stride) for i in range(n)] + [size]


def tiled_gradient(net, shifted: torch.Tensor, end: str, objective: Objective, tile: int,
                   overlap: int | None = None) -> torch.Tensor:
    """d objective / d image for a (3, H, W) image, one tile (core <= tile px, plus
    `overlap` px of context each side, clipped at the border) at a time; each tile
    contributes only its core, so peak memory is that of one tile's step."""
    rf, stride = geometry(net, end)
    if rf is None:
        raise ValueError(f"layer '{end}' sees the whole image; it cannot be dreamed in tiles")
    overlap = default_overlap(net, end) if overlap is None else overlap
    if overlap % stride or tile < stride:
        raise ValueError(f"overlap ({overlap}) must be a multiple and tile ({tile}) at "
                         f"least the stride ({stride}) of layer '{end}'")
    tile -= tile % stride
    shifted = shifted.detach()
    grad = torch.empty_like(shifted)
    H, W = shifted.shape[-2:]
    rows, cols = _cuts(H, tile, stride), _cuts(W, tile, stride)
    for y0, y1 in zip(rows, rows[1:]):
        for x0, x1 in zip(cols, cols[1:]):
            top, left = max(0, y0 - overlap), max(0, x0 - overlap)
            crop = shifted[:, top:min(H, y1 + overlap), left:min(W, x1 + overlap)]
            crop = crop.clone().requires_grad_(True)
            (g,) = torch.autograd.grad(objective(net(crop[None], end=end)), crop)
            grad[:, y0:y1, x0:x1] = g[:, y0 - top:y1 - top, x0 - left:x1 - left]
    return grad


def blob_bytes(net, height: int, width: int, end: str) -> int:
    """Summed size of every blob a forward pass to `end` makes, from shapes alone."""
    return sum(t.numel() for tops in net.blob_shapes(height, width, end)
               for t in tops) * 4  # float32


def step_memory_bytes(net, height: int, width: int, end: str) -> int:
    """Estimated peak memory of one untiled step on a height x width image."""
    return int(blob_bytes(net, height, width, end) * STEP_MEMORY_FACTOR)


@functools.lru_cache(maxsize=256)  # every frame of a run asks the same (~0.07 s each)
def choose_tile(net, height: int, width: int, end: str, budget_bytes: int,
                overlap: int | None = None) -> int | None:
    """None when the untiled step fits `budget_bytes`, else the largest tile size (a
    multiple of the end layer's stride) whose step, context rim included, fits."""
    whole = 2 * 3 * height * width * 4  # full-size image and gradient, tiled or not
    if whole + step_memory_bytes(net, height, width, end) <= budget_bytes:
        return None
    rf, stride = geometry(net, end)
    if rf is None:
        return None  # cannot tile: let it try untiled
    overlap = default_overlap(net, end) if overlap is None else overlap

    def fits(t: int) -> bool:
        return whole + step_memory_bytes(net, min(height, t + 2 * overlap),
                                         min(width, t + 2 * overlap), end) <= budget_bytes

    lo, hi = 1, -(-max(height, width) // stride)  # in strides; lo is the fallback
    while lo < hi:  # largest multiple that fits (memory grows with the tile)
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if fits(mid * stride) else (lo, mid - 1)
    return lo * stride


def memory_budget(device: torch.device | str) -> int:
    """Bytes a step may use now: free GPU memory (plus what PyTorch's cache holds free),
    or the CPU's MemAvailable, less a safety margin."""
    device = torch.device(device)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
        return int((free + cached) * CUDA_MARGIN)
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(int(line.split()[1]) * 1024 * CPU_MARGIN)
    except OSError:
        pass
    return 1 << 62  # unknown (not Linux): never tile automatically


def frames_bytes(height: int, width: int, octave_n: int, octave_scale: float) -> int:
    """Memory of the whole-frame images a dream holds at its peak, tiled or not: float32
    copies of the raw frame, the carried dream, their blend, the octave, its detail, the
    jittered and channels-last copies, the gradient and the step's temporaries, plus the
    image pyramid's smaller octaves."""
    pyramid = sum(octave_scale ** (-2 * i) for i in range(1, octave_n))
    return int(3 * 4 * height * width * (FRAME_COPIES + pyramid))


def least_step_bytes(net, height: int, width: int, end: str, tile: int | str | None) -> int:
    """Peak memory of the smallest step `tile` allows on a height x width frame: one
    stride-sized core and its context rim under "auto", a `tile` px core under a size,
    the whole frame when off or when `end` cannot be tiled."""
    rf, stride = geometry(net, end)
    if tile is None or rf is None:
        return step_memory_bytes(net, height, width, end)
    core = stride if tile == "auto" else max(stride, tile - tile % stride)
    side = core + 2 * default_overlap(net, end)
    return step_memory_bytes(net, min(height, side), min(width, side), end)


def dream_bytes(net, height: int, width: int, ends, tile: int | str | None,
                octave_n: int, octave_scale: float) -> int:
    """Least memory a dream of height x width frames to the layers `ends` needs."""
    step = max(least_step_bytes(net, height, width, end, tile) for end in dict.fromkeys(ends))
    return frames_bytes(height, width, octave_n, octave_scale) + step


def step_budget(budget: int, height: int, width: int, octave_n: int,
                octave_scale: float) -> int:
    """What `budget` leaves for choose_tile once the whole frames are held, counting back
    the image and gradient that choose_tile adds itself."""
    held = frames_bytes(height, width, octave_n, octave_scale) - 2 * 3 * 4 * height * width
    return budget - held
