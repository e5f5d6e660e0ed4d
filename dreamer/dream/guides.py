"""What a guided dream dreams towards: one image, a folder of images, or a video.

Frame k of the film is guided by guide frame (k-1) mod n + 1, so a guide shorter than
the film loops. The guide's activations are computed in a background thread one frame
ahead of the dream, and kept per (guide frame, layer): a looping guide or a layer that
comes back costs nothing the second time.
"""
from __future__ import annotations

import hashlib
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from dreamer.dream import transforms
from dreamer.errors import DreamerError
from dreamer.image import open_image, read_image

GUIDE_MAX_SIDE = 224
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
KEEP_FEATURES = 64  # (guide frame, layer) pairs kept; a few MB each at most


def load_image(path: Path) -> np.ndarray:
    """A guide image as float RGB (H, W, 3), at most GUIDE_MAX_SIDE px on its long side."""
    rgb = read_image(path, fix="use a png or jpg")
    h, w = rgb.shape[:2]
    scale = GUIDE_MAX_SIDE / max(w, h)
    if scale < 1:
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        rgb = np.asarray(Image.fromarray(rgb).resize(size, Image.BILINEAR))
    return rgb.astype(np.float32)


def folder_images(folder: Path) -> list[Path]:
    """The png and jpg images of a guide folder, in name order."""
    images = sorted(p for p in folder.iterdir()
                    if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not images:
        raise DreamerError(f"guide folder {folder} holds no png or jpg images; give -gi a "
                           "folder of frames, a video or one image")
    return images


def check_readable(images: list[Path]) -> None:
    """Every image of a guide folder opens (its header and checksums, not its pixels), so
    a broken one is refused before the first frame, not in the middle of the run."""
    for path in images:
        try:
            with open_image(path) as img:
                img.verify()
        except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as e:
            raise DreamerError(f"cannot read guide image {path}: {e}; replace it or move it "
                               "out of the guide folder") from None


def identity(images: list[Path]) -> str:
    """sha1 of the guide's pixels as they will be read: one image's own sha1, so runs
    guided by one image keep their key; of several, the sha1 of their names and sha1s."""
    from dreamer.caffe.models import sha1_file

    if len(images) == 1:
        return sha1_file(images[0])
    h = hashlib.sha1()
    for p in images:
        h.update(f"{p.name}\0{sha1_file(p)}\n".encode())
    return h.hexdigest()


def features_of(net, rgb: np.ndarray, layer: str, mean: torch.Tensor, device: torch.device,
                name: str) -> torch.Tensor:
    """The activations of `layer` for one guide image."""
    x = transforms.preprocess(torch.from_numpy(rgb).permute(2, 0, 1).to(device), mean)
    try:
        net.validate(x.shape[1], x.shape[2], end=layer)
    except ValueError:
        raise DreamerError(f"guide image {name} ({rgb.shape[1]}x{rgb.shape[0]}) is too small "
                           f"for layer {layer}; use a larger guide") from None
    with torch.no_grad():
        return net(x[None], end=layer)[0].clone()


class Guide:
    """The guide's features for each frame of the film.

    `layer_of(k)` is frame k's end layer: with it the features of frame k+1 are computed
    while frame k dreams. One image (n = 1) has its features computed once per layer.
    """

    def __init__(self, net, images: list[Path], mean: torch.Tensor, device: torch.device,
                 layer_of: Callable[[int], str]):
        self.net, self.images, self.mean, self.device = net, images, mean, device
        self.layer_of = layer_of
        self._kept: OrderedDict[tuple[int, str], torch.Tensor] = OrderedDict()
        self._pending: dict[tuple[int, str], Future] = {}
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="guide")

    @property
    def count(self) -> int:
        return len(self.images)

    def index(self, k: int) -> int:
        """0-based guide frame of film frame k."""
        return (k - 1) % self.count

    def features(self, k: int, layer: str) -> torch.Tensor:
        key = (self.index(k), layer)
        if key not in self._kept:
            future = self._pending.pop(key, None) or self._submit(key)
            self._keep(key, future.result())
        self._kept.move_to_end(key)
        self._prefetch((self.index(k + 1), self.layer_of(k + 1)))
        return self._kept[key]

    def check(self, layers) -> None:
        """The first guide image against every layer, before the first frame."""
        for layer in dict.fromkeys(layers):
            self.features(1, layer)

    def _prefetch(self, key: tuple[int, str]) -> None:
        if key not in self._kept and key not in self._pending:
            self._pending[key] = self._submit(key)

    def _submit(self, key: tuple[int, str]) -> Future:
        return self._pool.submit(self._compute, *key)

    def _compute(self, i: int, layer: str) -> torch.Tensor:
        path = self.images[i]
        return features_of(self.net, load_image(path), layer, self.mean, self.device,
                           str(path))

    def _keep(self, key: tuple[int, str], value: torch.Tensor) -> None:
        self._kept[key] = value
        while len(self._kept) > KEEP_FEATURES:
            self._kept.popitem(last=False)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def open_guide(net, images: list[Path], mean: torch.Tensor, device: torch.device,
               schedules, frames: range, end_layers) -> Guide:
    """The run's guide, checked before its first frame: one image's features for every
    layer the run names (computed once, for the whole run), a folder's or video's first
    frame against every layer the range's frames use."""
    guide = Guide(net, images, mean, device, schedules.layer)
    layers = end_layers if guide.count == 1 else [schedules.layer(k) for k in frames]
    try:
        guide.check(layers)
    except BaseException:
        guide.close()
        raise
    return guide
