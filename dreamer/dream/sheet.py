"""Choosing a layer by looking: the layers a dream can end at (the blob's shape and the
receptive field at a frame size), and a contact sheet of one image dreamed at each.

The original's README said "try out different layers"; each guess cost a whole run.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from PIL import Image, ImageDraw

from dreamer.caffe.net import CaffeNet, ShapeError
from dreamer.dream import schedule, tiles
from dreamer.dream.render import deepdream

# Layers a dream does not end at: they change nothing a dream sees (Dropout is off in a
# deploy net, a Split copies) or end the net (Softmax: probabilities, no image).
NOT_AN_END = {"Dropout", "Split", "Softmax", "Flatten", "Reshape", "Silence", "Accuracy"}
# What the sheet's spread picks from: the blocks' outputs, not their inner steps.
SPREAD_TYPES = {"Convolution", "Concat", "Eltwise", "Pooling"}


@dataclass(frozen=True)
class LayerRow:
    name: str
    type: str
    shape: tuple[int, ...] | None   # the top blob (C, H, W) at the size asked; None: no fit
    field: int | None               # receptive field in input pixels; None: the whole image
    stride: int                     # input pixels between neighbouring blob positions

    @property
    def fits(self) -> bool:
        return self.shape is not None


def layer_rows(net: CaffeNet, height: int, width: int) -> list[LayerRow]:
    """Every layer a dream can end at, in net order, with its blob at height x width."""
    shapes: dict[str, tuple[int, ...]] = {}
    try:
        for layer, outputs in zip(net.layers, net.blob_shapes(height, width)):
            shapes[layer.name] = tuple(outputs[0].shape[1:])
    except ShapeError:
        pass  # the layers from there on do not take this size
    rows = []
    for layer in net.layers:
        if layer.type in NOT_AN_END:
            continue
        field, stride = tiles.geometry(net, layer.name)
        rows.append(LayerRow(layer.name, layer.type, shapes.get(layer.name), field, stride))
    return rows


def spread(rows: list[LayerRow], n: int = 11, keep: tuple[str, ...] = ()) -> list[str]:
    """About n layers evenly over the net's depth, from the blocks' outputs that fit and
    see part of the image (a dream at a layer that sees all of it is one global push);
    each layer of `keep` that fits (the model's usual ones) takes the place of the
    nearest pick."""
    pool = [r for r in rows if r.fits and r.field is not None and r.type in SPREAD_TYPES
            and not r.name.startswith(("data", "input"))]
    if any(r.type == "Eltwise" for r in pool):
        # a residual net: its blocks end in their sums (res4f), not in the convolutions of
        # their branches (res4f_branch2a); the stem's first convolution stays
        stem = next((r for r in pool if r.type == "Convolution"), None)
        pool = [r for r in pool if r.type in ("Eltwise", "Pooling") or r is stem]
    # a block's output is the last layer writing into its name's prefix: inception_4c/...
    # gives inception_4c/output; a plain net's convolutions are their own blocks
    blocks: dict[str, LayerRow] = {}
    for r in pool:
        blocks[r.name.rsplit("/", 1)[0] if "/" in r.name else r.name] = r
    chosen = list(blocks.values())
    if len(chosen) > n:
        step = (len(chosen) - 1) / (n - 1)
        chosen = [chosen[round(i * step)] for i in range(n)]
    names = [r.name for r in chosen]
    depth = {r.name: i for i, r in enumerate(rows)}
    for name in keep:
        if name in depth and rows[depth[name]].fits and name not in names and names:
            nearest = min(range(len(names)), key=lambda i: abs(depth[names[i]] - depth[name]))
            names[nearest] = name
    return sorted(dict.fromkeys(names), key=depth.get)


def dream_sheet(net: CaffeNet, image: np.ndarray, layers: list[str], mean: tuple, *,
                iter_n: int = 10, octave_n: int = 4, octave_scale: float = 1.4,
                step_size: float = 1.5, jitter: int = 32, seed: int = 1, columns: int = 4,
                on_layer: Callable[[int, str], None] | None = None) -> Image.Image:
    """`image` (H, W, 3 uint8 RGB) dreamed at each layer, in a labelled grid: the image
    itself first, then one tile a layer. Each dream is the one stage 2 makes of a single
    frame with these settings (the same seed's jitter)."""
    bgr_mean = torch.tensor(mean, dtype=torch.float32)
    base = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).permute(2, 0, 1)
    tiles_ = [("original", image)]
    for i, layer in enumerate(layers):
        if on_layer is not None:
            on_layer(i, layer)
        dreamed = deepdream(net, base, layer, schedule.jitter_offsets(seed, 1, jitter),
                            bgr_mean, iter_n=iter_n, octave_n=octave_n,
                            octave_scale=octave_scale, step_size=step_size)
        pixels = np.rint(dreamed.clamp(0, 255).permute(1, 2, 0).numpy()).astype(np.uint8)
        tiles_.append((layer, pixels))
    return grid(tiles_, columns)


LABEL = 16  # px under each tile for its name


def grid(tiles_: list[tuple[str, np.ndarray]], columns: int) -> Image.Image:
    h, w = tiles_[0][1].shape[:2]
    columns = min(columns, len(tiles_))
    rows = -(-len(tiles_) // columns)
    sheet = Image.new("RGB", (columns * w, rows * (h + LABEL)), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (label, pixels) in enumerate(tiles_):
        x, y = (i % columns) * w, (i // columns) * (h + LABEL)
        sheet.paste(Image.fromarray(pixels), (x, y))
        draw.text((x + 3, y + h + 2), label, fill="black")
    return sheet
