"""How the previous dream is carried into frame k when it moves with the film (--flow).

Without flow, frame k starts from (1 - b) zoom(dream(k-1)) + b raw(k): the dream stays at
its screen positions while the film moves under it. With flow, the previous dream is
first warped along the film's motion (the backward flow from raw frame k to raw frame
k-1, see flow.py), and only where that warp is reliable:

    init = raw(k) + f m (warp(dream(k-1)) - raw(k))

with m the reliability mask (0 at occlusions and motion boundaries) and f the weight of
the carried dream (--flow-blend, 0.9 by default; with f = 1 - b this is the plain blend
b raw + (1 - b) [m warp + (1 - m) raw], which keeps too little of the dream to hold it
still: see settle). With --flow-carry residual, only what the dream
added to frame k-1 is carried: init = raw(k) + f m warp(dream(k-1) - raw(k-1)), which
keeps the film's own picture exact where the dream had added nothing. A zoom (-z) folds
into the same warp: one resampling, not two. A scene cut (three quarters of the pixels
unreliable) starts frame k from its raw frame. After the dream, `settle` averages the
dreamed frame with the moved previous dream (--flow-smooth).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from dreamer.dream import flow as flowlib

def zoomed_flow(backward: np.ndarray, zoom: float) -> np.ndarray:
    """The flow that samples zoom(image)(x + w(x)) from the unzoomed image: zoom by z
    about the centre c samples the image at c + (p - c) / z (transforms.zoom's geometry)."""
    if zoom == 1.0:
        return backward
    h, w = backward.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    cx, cy = (w - 1) / 2, (h - 1) / 2
    px, py = xs + backward[..., 0], ys + backward[..., 1]
    return np.stack((cx + (px - cx) / zoom - xs, cy + (py - cy) / zoom - ys), axis=-1)


@dataclass
class Carried:
    """Frame k's starting image, what the manifest records of the carry, and the anchor
    `settle` pulls the dreamed frame towards: the previous dream moved into frame k and
    the reliability mask (None after a scene cut)."""
    img: torch.Tensor
    info: dict
    anchor: tuple[torch.Tensor, torch.Tensor] | None = None


def carry(state: torch.Tensor, raw: torch.Tensor, raw_prev: torch.Tensor | None,
          flows: tuple[np.ndarray, ...], weight: float, zoom: float = 1.0,
          mode: str = "dream", cut: float = flowlib.SCENE_CUT_RELIABLE) -> Carried:
    """Frame k's start from the previous dream `state`, raw frames k and k-1 ((3, H, W)
    float tensors, 0-255) and the flows (backward k -> k-1, forward k-1 -> k, and their
    reliability mask when it was made already); a scene cut (less than `cut` of the frame
    reliable) starts from the raw frame."""
    backward, forward, *made = flows
    mask = made[0] if made else flowlib.reliability(backward, forward)
    reliable = round(float(mask.mean()), 4)
    if flowlib.scene_cut(mask, cut):
        return Carried(raw, {"reliable": reliable, "cut": True})
    flow = zoomed_flow(backward, zoom)
    moved = flowlib.warp_tensor(state, flow)
    m = torch.from_numpy(mask).to(raw.device, raw.dtype)[None]
    if mode == "dream":
        img = raw + weight * m * (moved - raw)
    else:
        img = raw + weight * m * flowlib.warp_tensor(state - raw_prev, flow)
    return Carried(img, {"reliable": reliable, "cut": False}, (m, moved))


def settle(dreamed: torch.Tensor, carried: Carried, smooth: float) -> torch.Tensor:
    """The dreamed frame pulled `smooth` of the way towards the previous dream moved
    along the flow, where the flow is reliable: an average along the motion, which keeps
    what the dream re-invents each frame (another layer, another jitter) from flickering,
    while what persists keeps its strength. Measured with the original's published
    parameters (docs/flow.md): added flicker 7.45 -> 1.95 grey levels on the demo clip, 8.51 ->
    2.33 on a pan over another photo, at 135 % and 96 % of the strength (--flow-blend 0.9,
    smooth 0.4)."""
    if carried.anchor is None or smooth == 0:
        return dreamed
    m, moved = carried.anchor
    return dreamed + smooth * m * (moved - dreamed)
