"""How the previous dream is carried into frame k when it moves with the film (--flow).

Without flow, frame k starts from (1 - b) zoom(dream(k-1)) + b raw(k): the dream stays at
its screen positions while the film moves under it. With flow, the previous dream is
first warped along the film's motion (the backward flow from raw frame k to raw frame
k-1, see flow.py), and only where that warp is reliable:

    init = raw(k) + f m (warp(dream(k-1)) - raw(k))

with m the reliability mask (0 at occlusions and motion boundaries) and f the weight of
the carried dream (--flow-blend; by default 1 - b, so that this is the blend
b raw + (1 - b) [m warp + (1 - m) raw]). With --flow-carry residual, only what the dream
added to frame k-1 is carried: init = raw(k) + f m warp(dream(k-1) - raw(k-1)), which
keeps the film's own picture exact where the dream had added nothing. A zoom (-z) folds
into the same warp: one resampling, not two. A scene cut (most pixels unreliable) starts
frame k from its raw frame.
"""
from __future__ import annotations

import numpy as np
import torch

from dreamer.dream import flow as flowlib

CARRY_MODES = ("dream", "residual")


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


def carry(state: torch.Tensor, raw: torch.Tensor, raw_prev: torch.Tensor | None,
          flows: tuple[np.ndarray, np.ndarray], weight: float, zoom: float = 1.0,
          mode: str = "dream") -> tuple[torch.Tensor, dict]:
    """Frame k's starting image from the previous dream `state`, raw frames k and k-1
    ((3, H, W) float tensors, 0-255) and the flows (backward k -> k-1, forward k-1 -> k);
    and what the manifest records of it (share of reliable pixels, scene cut)."""
    backward, forward = flows
    mask = flowlib.reliability(backward, forward)
    reliable = round(float(mask.mean()), 4)
    if flowlib.scene_cut(mask):
        return raw, {"reliable": reliable, "cut": True}
    carried = state if mode == "dream" else state - raw_prev
    warped = flowlib.warp_tensor(carried, zoomed_flow(backward, zoom))
    m = torch.from_numpy(mask).to(raw.device, raw.dtype)[None] * weight
    img = raw + m * (warped - raw) if mode == "dream" else raw + m * warped
    return img, {"reliable": reliable, "cut": False}
