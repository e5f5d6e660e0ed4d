"""Whether a run fits before its first frame: the frames through the net up to every end
layer, at every octave (with the -p that would fit when they do not), in tiles where
asked, and in memory. Each refusal is one line naming the fix."""
from __future__ import annotations

import math

import torch

from dreamer.caffe.layers import InnerProduct
from dreamer.caffe.net import CaffeNet, ShapeError
from dreamer.config import MAX_OCTAVE_SCALE, DreamConfig
from dreamer.dream import tiles, transforms
from dreamer.errors import DreamerError
from dreamer.video.frames import preview_size

# The widest -p a refusal advises: beyond it no frame could be dreamed anyway, and the
# advice is fewer octaves or a smaller octave scale instead (-octs 1e300 once advised a
# 300-digit -p).
MAX_ADVISED_PREVIEW = 100_000


def check_tiling(net: CaffeNet, layers, tile) -> None:
    """Layers that see the whole image at once (global pooling, fully connected) cannot be
    dreamed in tiles: refuse an explicit --tile for them before the first frame."""
    if isinstance(tile, int):
        for layer in dict.fromkeys(layers):
            if tiles.geometry(net, layer)[0] is None:
                raise DreamerError(f"layer {layer} sees the whole image at once and cannot be "
                                   "dreamed in tiles; use --tile off or an earlier layer")


def check_octaves(net: CaffeNet, layers, size: tuple[int, int], config: DreamConfig,
                  frame_size: tuple[int, int] | None = None) -> None:
    """The frames, and the smallest octave, must pass through the net up to every end
    layer. `frame_size`: the frames' size before -p, for the -p a refusal suggests."""
    w, h = size
    sh, sw = transforms.octave_sizes(h, w, config.octave_n, config.octave_scale)[-1]
    layers = tuple(dict.fromkeys(layers))
    for layer in layers:
        misfit = _misfit(net, h, w, layer) or _misfit(net, sh, sw, layer)
        if misfit is None:
            continue
        fc = _fixed_size_layer(net, layer)
        if fc is not None:
            raise DreamerError(_fixed_size_line(net, layer, fc, size))
        sides = {name: _least_side(net, name) for name in layers}
        least = _least_preview(net, sides, frame_size or size, config)
        larger = (f"a larger -p (-p {least} or more)" if least else
                  "larger frames" if least is None else None)
        if _misfit(net, h, w, layer) is None:
            raise DreamerError(_octave_line(net, layer, (w, h), (sw, sh), config, larger))
        raise DreamerError(_too_small_line(sides, size, config, larger))


def _octave_line(net: CaffeNet, end: str, size, smallest, config: DreamConfig,
                 larger: str | None) -> str:
    """The frames pass but the smallest octave does not: the layer that refuses it, and
    the -oct, -octs and -p that fit."""
    (w, h), (sw, sh) = size, smallest
    bad = _misfit(net, sh, sw, end)
    octaves = _most_octaves(net, end, h, w, config)
    scale = _largest_scale(net, end, h, w, config)
    fixes = [f"fewer octaves (-oct {octaves} fits)" if octaves else "fewer octaves (-oct)"]
    if config.octave_n > 1:
        fixes.append(f"a smaller octave scale (-octs {scale:.3g} fits)" if scale else
                     "a smaller octave scale (-octs)")
    if larger is None:
        fixes[-1] += (f"; no frame is wide enough for these (it would take -p over "
                      f"{MAX_ADVISED_PREVIEW})")
    else:
        fixes.append(larger)
    where = ("that is less than a pixel" if min(sw, sh) < 1 else
             f"layer {bad.name} ({bad.type}) cannot take it")
    return (f"frames of {w}x{h} are too small for {config.octave_n} octaves at scale "
            f"{config.octave_scale:g} up to layer {end}: the smallest octave is {sw}x{sh} "
            f"and {where}; use " + ", ".join(fixes[:-1]) + f" or {fixes[-1]}")


def _most_octaves(net: CaffeNet, end: str, h: int, w: int, config: DreamConfig) -> int:
    """The most octaves (below the asked number) whose smallest passes; 0 for none."""
    for n in range(config.octave_n - 1, 0, -1):
        sh, sw = transforms.octave_sizes(h, w, n, config.octave_scale)[-1]
        if _misfit(net, sh, sw, end) is None:
            return n
    return 0


def _largest_scale(net: CaffeNet, end: str, h: int, w: int, config: DreamConfig) -> float:
    """The largest octave scale (to 3 digits) at which the asked octaves all pass; 0 for
    none above 1."""
    def fits(scale: float) -> bool:
        sh, sw = transforms.octave_sizes(h, w, config.octave_n, scale)[-1]
        return _misfit(net, sh, sw, end) is None

    lo, hi = 1.0, min(float(config.octave_scale), MAX_OCTAVE_SCALE)
    if not fits(lo + 0.01):
        return 0.0
    for _ in range(30):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    return math.floor(lo * 1000) / 1000


def _net_size(net: CaffeNet) -> tuple[int, int]:
    """(height, width) the net was declared with (GoogLeNet: its training size)."""
    return net.input_shape[-2:] if len(net.input_shape) == 4 else (224, 224)


def _fixed_size_layer(net: CaffeNet, end: str):
    """The fully connected layer that ties `end` to the net's own input size, or None: a
    net that takes its own size but not a larger one fails at such a layer."""
    nh, nw = _net_size(net)
    if _misfit(net, nh, nw, end) is not None:
        return None
    misfit = _misfit(net, 2 * nh, 2 * nw, end)
    return misfit if isinstance(misfit, InnerProduct) else None


def _misfit(net: CaffeNet, height: int, width: int, end: str):
    """The first layer up to `end` that cannot take a height x width image, or None."""
    if height < 1 or width < 1:
        return net.layers[0]
    try:
        net.validate(height, width, end=end)
    except ShapeError as e:
        return net.layers[net.index(e.layer)]
    return None


def _fixed_size_line(net: CaffeNet, end: str, fc, size) -> str:
    """A fully connected layer takes only the size the net was trained at, and so does
    every layer after it."""
    nh, nw = _net_size(net)
    w, h = size
    what = (f"layer {end} is fully connected" if end == fc.name else
            f"layer {end} comes after the fully connected layer {fc.name}")
    convs = [layer.tops[0] for layer in net.layers[:net.index(fc.name)]
             if layer.type in ("Concat", "Convolution")]
    fix = (f"dream an inception or convolution layer such as -l {convs[-1]}" if convs
           else "dream an earlier layer")
    if (w, h) == (nw, nh):
        return (f"{what}, so it works only at the net's input size {nw}x{nh}, and the "
                f"smaller octaves are not that size; use -oct 1, or {fix}")
    square = f", or use -p {nw} -oct 1" if w == h and nw == nh else ""
    return (f"{what}, so it works only at the net's input size {nw}x{nh}, not on {w}x{h} "
            f"frames; {fix}{square}")


def _least_side(net: CaffeNet, end: str) -> int | None:
    """The least square image that passes through the net up to `end` (shapes only)."""
    lo, hi = 1, 4096
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if _misfit(net, mid, mid, end) is None else (mid + 1, hi)
    return lo if _misfit(net, lo, lo, end) is None else None


def _least_preview(net: CaffeNet, sides: dict, frame_size, config: DreamConfig) -> int | None:
    """The least -p whose every octave passes up to every layer (`sides`: each layer's
    least side); None when no size passes; 0 when only a -p over MAX_ADVISED_PREVIEW
    would (fewer octaves or a smaller scale are the advice then)."""
    if None in sides.values():
        return None
    fw, fh = frame_size
    # the smallest octave is the frame / scale^(n-1): start a little below that guess,
    # worked out in logarithms, as the power itself overflows for a huge scale (a scale
    # under 1 makes no octave smaller than the frame)
    log_guess = (math.log(max(sides.values())) + (config.octave_n - 1)
                 * math.log(max(config.octave_scale, 1.0)) + math.log(max(1, fw / fh)))
    if not log_guess <= math.log(MAX_ADVISED_PREVIEW):   # (NaN too)
        return 0

    def fits(p: int) -> bool:
        pw, ph = preview_size(fw, fh, p)
        sh, sw = transforms.octave_sizes(ph, pw, config.octave_n, config.octave_scale)[-1]
        return all(_misfit(net, sh, sw, layer) is None for layer in sides)

    p = max(1, int(math.exp(log_guess) * 0.9))
    for _ in range(200):  # about 2 % a try: up to 50x the guess
        if p > MAX_ADVISED_PREVIEW:
            return 0
        if fits(p):
            return p
        p += max(1, p // 50)
    return None


def _too_small_line(sides: dict, size, config: DreamConfig, larger: str | None) -> str:
    """Frames smaller than the net takes, naming the layer that needs the largest
    (`larger`: the -p that would do, None when only one beyond MAX_ADVISED_PREVIEW)."""
    w, h = size
    if None in sides.values():
        layer = next(layer for layer, side in sides.items() if side is None)
        return (f"frames of {w}x{h} do not pass through the net up to layer {layer} at any "
                "size; choose another layer with -l")
    layer = max(sides, key=sides.get)
    now = f" (-p {config.preview})" if config.preview else ""
    larger = larger or "a larger -p with fewer octaves (-oct) or a smaller octave scale (-octs)"
    return (f"frames of {w}x{h}{now} are too small for the net up to layer {layer}, which "
            f"needs at least {sides[layer]}x{sides[layer]} px; use {larger}")


def check_memory(net: CaffeNet, layers, size, frame_size, config: DreamConfig, tile,
                 budget: int, device: torch.device) -> int:
    """Refuses frames whose dream would not fit in `budget` bytes even at the smallest
    step `tile` allows: tiling shrinks only the step, never the whole frames and their
    pyramid. Returns what the budget leaves for the steps (choose_tile's budget)."""
    w, h = size
    need = tiles.dream_bytes(net, h, w, layers, tile, config.octave_n, config.octave_scale)
    if need <= budget:
        return tiles.step_budget(budget, h, w, config.octave_n, config.octave_scale)

    def fits(p: int) -> bool:
        pw, ph = preview_size(*frame_size, p)
        return tiles.dream_bytes(net, ph, pw, layers, tile, config.octave_n,
                                 config.octave_scale) <= budget

    lo, hi = 0, w  # the widest -p that fits (0: none)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid - 1)
    tiled = tile is not None and all(tiles.geometry(net, layer)[0] for layer in layers)
    how = "even in tiles" if tiled else ("untiled (--tile off)" if tile is None else "")
    memory = "GPU memory" if device.type == "cuda" else "memory"
    now = f" (-p {config.preview})" if config.preview else ""
    if lo == 0:
        fix = "free memory, or use another machine"
    else:
        fix = f"use a smaller -p (-p {lo} or less)"
        fix = f"use --tile auto or a smaller -p (-p {lo} or less)" if tile is None else fix
    raise DreamerError(f"frames of {w}x{h}{now} need about {_size_text(need)} of {memory} "
                       f"to dream{' ' + how if how else ''}, and about {_size_text(budget)} "
                       f"is free; {fix}")


def _size_text(n: int) -> str:
    for unit, size in (("TB", 1e12), ("GB", 1e9)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n / 1e6:.0f} MB"


