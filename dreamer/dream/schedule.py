"""Per-frame choices: which layer, how much of the new frame, which jitter offsets, and
every number a keyframe schedule sets.

Everything here is a pure function of the frame number k (absolute, 1-based) and the
seed, so any frame of a run can be redone alone with the same result.
"""
from __future__ import annotations

from dataclasses import asdict, make_dataclass
from typing import Iterator

import numpy as np

from dreamer.config import number_keys, schedulable_numbers
from dreamer.values.blend import parse_blend
from dreamer.values.keyframes import Keyframes, LayerKeys

# Tags the blend stream so it never shares numbers with the jitter stream of a frame.
_RANDOM_BLEND_STREAM = 0xB1E4D


def layer_for_frame(layers: tuple[str, ...] | list[str], k: int) -> str:
    return layers[(k - 1) % len(layers)]


def blend_for_frame(blend: str | float, k: int, seed: int) -> float:
    """Weight of raw frame k against the dream of frame k-1 (used for k >= 2)."""
    if isinstance(blend, Keyframes):
        return blend.at(k)
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


# What frame k is dreamed with: its layer, its blend (None for a range's first frame with
# nothing carried in) and every schedulable number of the config, by field name.
FrameValues = make_dataclass(
    "FrameValues", [("layer", str), ("blend", "float | None")]
    + [(name, "float") for name in schedulable_numbers()], frozen=True)
FrameValues.__module__ = __name__  # (so that it pickles: make_dataclass cannot say so in 3.11)


class Schedules:
    """A run's per-frame values: numbers, blend and layers, each fixed or scheduled."""

    def __init__(self, config):
        self.numbers = number_keys(config)
        self.blend = parse_blend(config.blend)
        self.layers: LayerKeys | tuple[str, ...] = (config.layer_schedule
                                                    or config.end_layers)

    def at(self, k: int, seed: int, carried: bool = True) -> FrameValues:
        numbers = {name: keys.at(k) for name, keys in self.numbers.items()}
        blend = blend_for_frame(self.blend, k, seed) if carried else None
        return FrameValues(layer=self.layer(k), blend=blend, **numbers)

    def layer(self, k: int) -> str:
        if isinstance(self.layers, LayerKeys):
            return self.layers.at(k)
        return layer_for_frame(self.layers, k)

    def scheduled(self) -> dict[str, str]:
        """The schedules of this run (field: canonical text); fixed values are left out."""
        out = {name: keys.text() for name, keys in self.numbers.items() if not keys.constant}
        if isinstance(self.blend, Keyframes) and not self.blend.constant:
            out["blend"] = self.blend.text()
        if isinstance(self.layers, LayerKeys):
            out["layers"] = self.layers.text()
        return out

    def values_record(self, values: FrameValues) -> dict:
        """The scheduled numbers of one frame, for its manifest entry."""
        fields = asdict(values)
        return {name: fields[name] for name in self.scheduled() if name in fields
                and name not in ("layers", "blend")}
