"""Per-frame choices: which layer, how much of the new frame, which jitter offsets.

Everything here is a pure function of the frame number k (absolute, 1-based) and the
seed, so any frame of a run can be redone alone with the same result.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np

from dreamer.errors import DreamerError

BLEND_WORDS = ("loop", "random")
# Tags the blend stream so it never shares numbers with the jitter stream of a frame.
_RANDOM_BLEND_STREAM = 0xB1E4D


def layer_for_frame(layers: tuple[str, ...] | list[str], k: int) -> str:
    return layers[(k - 1) % len(layers)]


def parse_blend(text: str) -> str | float:
    """A blend value from the command line: a number in [0, 1], `loop` or `random`."""
    word = str(text).strip().lower()
    if word in BLEND_WORDS:
        return word
    try:
        value = float(word)
    except ValueError:
        raise DreamerError(f"unknown blend '{text}'; use a number from 0 to 1, "
                           "'loop' or 'random'") from None
    if not 0.0 <= value <= 1.0:
        raise DreamerError(f"blend {value:g} is outside [0, 1]; 1 keeps only the new frame, "
                           "0 only the previous dream")
    return value


def blend_for_frame(blend: str | float, k: int, seed: int) -> float:
    """Weight of raw frame k against the dream of frame k-1 (used for k >= 2)."""
    if blend == "loop":
        t = (k - 2) % 10
        return round(0.5 + 0.1 * (t if t <= 5 else 10 - t), 10)
    if blend == "random":
        rng = np.random.default_rng([seed, k, _RANDOM_BLEND_STREAM])
        return int(rng.integers(5, 11)) / 10.0
    return float(blend)


def jitter_offsets(seed: int, k: int, jitter: int) -> Iterator[tuple[int, int]]:
    """(ox, oy) for every step of frame k, in order across all octaves."""
    rng = np.random.default_rng([seed, k])
    while True:
        ox, oy = rng.integers(-jitter, jitter + 1, size=2)
        yield int(ox), int(oy)
