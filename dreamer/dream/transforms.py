"""Small image transforms, all on (3, H, W) float tensors on the compute device."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def preprocess(rgb: torch.Tensor, bgr_mean: torch.Tensor) -> torch.Tensor:
    """RGB 0..255 to the net's input: BGR with the mean subtracted (Caffe's convention)."""
    return rgb.flip(0) - bgr_mean[:, None, None]


def deprocess(x: torch.Tensor, bgr_mean: torch.Tensor) -> torch.Tensor:
    return (x + bgr_mean[:, None, None]).flip(0)


def roll(x: torch.Tensor, ox: int, oy: int) -> torch.Tensor:
    """Jitter: ox rolls the width axis, oy the height axis (np.roll's direction)."""
    return torch.roll(x, shifts=(oy, ox), dims=(-2, -1))


def unroll(x: torch.Tensor, ox: int, oy: int) -> torch.Tensor:
    return roll(x, -ox, -oy)


def resize(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Bilinear with corners aligned: what scipy.ndimage.zoom(order=1) computes."""
    if tuple(x.shape[-2:]) == (height, width):
        return x
    return F.interpolate(x[None], size=(height, width), mode="bilinear",
                         align_corners=True)[0]


def octave_sizes(height: int, width: int, octave_n: int, octave_scale: float):
    """Sizes of the pyramid, finest first; each level is round(previous / scale)."""
    sizes = [(height, width)]
    for _ in range(octave_n - 1):
        h, w = sizes[-1]
        # scipy.ndimage.zoom's rounding of shape * (1 / scale), which the goldens used
        f = 1.0 / octave_scale
        sizes.append((int(round(h * f)), int(round(w * f))))
    return sizes


def blend(state: torch.Tensor, raw: torch.Tensor, b: float) -> torch.Tensor:
    """b is the weight of the new raw frame: 1 gives the raw frame, 0 the old dream."""
    return (1.0 - b) * state + b * raw


def zoom(x: torch.Tensor, factor: float) -> torch.Tensor:
    """Scales the image by `factor` about its centre, keeping its size (>1 zooms in)."""
    if factor == 1.0:
        return x
    theta = torch.tensor([[1.0 / factor, 0.0, 0.0], [0.0, 1.0 / factor, 0.0]],
                         dtype=x.dtype, device=x.device)[None]
    grid = F.affine_grid(theta, [1, *x.shape], align_corners=False)
    return F.grid_sample(x[None], grid, mode="bilinear", padding_mode="border",
                         align_corners=False)[0]
