"""`--tile`: a tile size in pixels, `auto` (tile only when a step would not fit) or `off`."""
from __future__ import annotations

from dreamer.errors import DreamerError
from dreamer.values.expr import shorten

MIN_TILE = 32  # GoogLeNet's deepest stride: tiles are cut on the end layer's stride grid


def parse_tile(text: str) -> int | str | None:
    """The size in pixels, "auto", or None for off."""
    word = str(text).strip().lower()
    if word in ("auto", "off"):
        return None if word == "off" else "auto"
    try:
        size = int(word)
    except ValueError:
        raise DreamerError(f"--tile {shorten(text)} is not a size in pixels, 'auto' or 'off'"
                           ) from None
    if size < MIN_TILE:
        raise DreamerError(f"--tile {size} is too small; use at least {MIN_TILE} px (512 is a "
                           "good size), 'auto' or 'off'")
    return size
