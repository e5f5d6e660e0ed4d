"""The dream itself: google/deepdream's `make_step` and `deepdream`, on the device."""
from __future__ import annotations

from typing import Callable, Iterator

import torch

from dreamer.dream import tiles, transforms
from dreamer.dream.objectives import Objective, l2


def make_step(net, x: torch.Tensor, end: str, offset: tuple[int, int],
              step_size: float = 1.5, objective: Objective = l2,
              lo: torch.Tensor | None = None, hi: torch.Tensor | None = None,
              tile: int | None = None) -> torch.Tensor:
    """One normalised gradient-ascent step on the jittered image; returns the new image.

    x is the preprocessed (3, H, W) image; lo/hi are per-channel clip bounds (the valid
    pixel range after mean subtraction). With `tile`, an image larger than tile x tile
    takes its gradient tile by tile (see tiles.py); the step itself stays whole-image.
    """
    ox, oy = offset
    shifted = transforms.roll(x, ox, oy).requires_grad_(True)
    if tile is not None and max(shifted.shape[-2:]) > tile:
        g = tiles.tiled_gradient(net, shifted, end, objective, tile)
    else:
        acts = net(shifted[None], end=end)
        # Gradient with respect to the image only: the net's weights are frozen buffers,
        # so backward never computes weight gradients (a third less work than Caffe's).
        (g,) = torch.autograd.grad(objective(acts), shifted)
    # Step in jittered coordinates, then unroll once (roll commutes with the step and
    # with the per-channel clip).
    # (no .item(): a host sync would stall the GPU's queue every step)
    shifted = shifted.detach().addcmul_(g, step_size / g.abs().mean())
    if lo is not None:
        shifted = shifted.clamp_(lo, hi)
    return transforms.unroll(shifted, ox, oy)


def deepdream(net, base_img: torch.Tensor, end: str, offsets: Iterator[tuple[int, int]],
              bgr_mean: torch.Tensor, iter_n: int = 10, octave_n: int = 4,
              octave_scale: float = 1.4, step_size: float = 1.5, objective: Objective = l2,
              on_octave: Callable[[int, torch.Tensor], None] | None = None,
              tile: int | str | None = None, budget: int | None = None) -> torch.Tensor:
    """Dreams on an RGB (3, H, W) float image, coarse octave to fine; returns RGB floats.

    `offsets` yields one jitter (ox, oy) per step, across all octaves in order.
    tile: None (whole frames), a tile size in pixels (octaves larger than it are dreamed
    in tiles), or "auto": each octave is tiled only when its untiled step would not fit
    `budget` bytes (default: what is free on the image's device now; pass a fixed budget
    for frames that come out the same whatever else runs on the machine).
    """
    lo = (-bgr_mean)[:, None, None]
    hi = (255.0 - bgr_mean)[:, None, None]
    sizes = transforms.octave_sizes(*base_img.shape[-2:], octave_n, octave_scale)
    octaves = [transforms.preprocess(base_img, bgr_mean)]
    for h, w in sizes[1:]:
        octaves.append(transforms.resize(octaves[-1], h, w))
    detail = torch.zeros_like(octaves[-1])
    for i, octave_base in enumerate(reversed(octaves)):
        h, w = octave_base.shape[-2:]
        detail = transforms.resize(detail, h, w)
        x = octave_base + detail
        octave_tile = tile
        if tile == "auto":
            if budget is None:
                budget = tiles.memory_budget(x.device)
            octave_tile = tiles.choose_tile(net, h, w, end, budget)
        for _ in range(iter_n):
            x = make_step(net, x, end, next(offsets), step_size, objective, lo, hi,
                          octave_tile)
        detail = x - octave_base
        if on_octave is not None:
            on_octave(i, transforms.deprocess(x, bgr_mean))
    return transforms.deprocess(x, bgr_mean)
