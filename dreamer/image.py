"""Images read as what they show: every kind of file Pillow opens (16-bit grey and colour,
palettes, alpha, CMYK, float) to its true 8-bit RGB, and a decompression bomb refused in
one line. Frames (dreamer.video), guide images and the flicker measure (dreamer.dream)
all read images through here."""
from __future__ import annotations

import threading
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from dreamer.errors import DreamerError


def reason(e: Exception) -> str:
    """An exception's first line (its type's name when it has none), for a message."""
    return str(e).splitlines()[0] if str(e) else type(e).__name__


# open_image's lock: catch_warnings changes the process's warning filters, so the threads
# that read frames (the next frame, the flow's) take turns at it.
_OPENING = threading.Lock()


def open_image(path: Path) -> Image.Image:
    """Image.open (the header only), Pillow's decompression-bomb check made one line: an
    image Pillow refuses (a header claiming more than 2 x Image.MAX_IMAGE_PIXELS pixels,
    e.g. 100000x100000) is a DreamerError; one it would only warn about (up to that, where
    a real 16K frame is) opens without the warning."""
    with _OPENING, warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            return Image.open(path)
        except Image.DecompressionBombError as e:
            raise DreamerError(f"image {path} claims to be too large to read ({reason(e)}); "
                               "it is damaged or not a real image: replace it") from None


def read_image(path: Path, size: tuple[int, int] | None = None,
               fix: str = "replace the file") -> np.ndarray:
    """An RGB uint8 HxWx3 array, resized (Lanczos) to `size` when given; see rgb8 for
    what each kind of image becomes. `fix`: what a refusal tells the user to do."""
    try:
        with open_image(path) as img:
            rgb = rgb8(img)
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as e:
        raise DreamerError(f"cannot read image {path}: {reason(e)}; {fix}") from None
    if size is not None and (rgb.shape[1], rgb.shape[0]) != tuple(size):
        rgb = np.array(Image.fromarray(rgb).resize(tuple(size), Image.LANCZOS))
    return np.ascontiguousarray(rgb, dtype=np.uint8)


def rgb8(img: Image.Image) -> np.ndarray:
    """An opened image's pixels as RGB uint8 (H, W, 3), every kind to its true 8-bit value:
    16-bit samples (grey I;16/I;16B/I, 16-bit RGB and RGBA PNGs) scaled by 1/257 and
    rounded, grey repeated into R, G and B, palettes looked up, CMYK converted as Pillow
    does; alpha is dropped (as ffmpeg drops it when it encodes such frames), and float
    images (F) are taken as 0..255 (as Pillow takes them), rounded. Pillow's own
    convert("RGB") makes 16-bit grey white and keeps only the high bytes of 16-bit colour,
    so those are decoded here."""
    mode = img.mode
    if img.format == "PNG" and ";16" in _rawmode(img) and not mode.startswith("I"):
        return _png16_colour(img)
    if mode.startswith("I;16") or mode == "I":
        sixteen = np.asarray(img)
        if sixteen.dtype.itemsize > 2:   # I: 32-bit, held to the 16 bits it stands for
            sixteen = np.clip(sixteen, 0, 65535)
        return np.repeat(_to8(sixteen)[..., None], 3, axis=2)
    if mode == "F":
        values = np.nan_to_num(np.asarray(img, dtype=np.float32), nan=0.0)
        grey = np.clip(np.floor(values + 0.5), 0, 255).astype(np.uint8)   # halves up
        return np.repeat(grey[..., None], 3, axis=2)
    return np.array(img.convert("RGB"), dtype=np.uint8)   # (a copy: Pillow's is read-only)


def _to8(sixteen: np.ndarray) -> np.ndarray:
    """16-bit samples (0..65535) to 8-bit, v / 257 rounded (257 is odd: no ties)."""
    return ((sixteen.astype(np.uint32) + 128) // 257).astype(np.uint8)


def _rawmode(img: Image.Image) -> str:
    """How the file stores its pixels, as Pillow's decoder names it (`RGB;16B`)."""
    tile = img.tile[0] if img.tile else None
    args = getattr(tile, "args", None)
    return args if isinstance(args, str) else ""


def _png16_colour(img: Image.Image) -> np.ndarray:
    """A 16-bit colour (or grey and alpha) PNG, in full: OpenCV decodes all 16 bits."""
    import cv2

    img.fp.seek(0)
    data = np.frombuffer(img.fp.read(), dtype=np.uint8)
    pixels = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if pixels is None or pixels.dtype != np.uint16 or pixels.shape[:2] != img.size[::-1]:
        raise ValueError("its 16-bit pixels do not decode")
    if pixels.ndim == 2:
        pixels = np.repeat(pixels[..., None], 3, axis=2)
    return _to8(pixels[..., 2::-1])   # BGR(A) to RGB
