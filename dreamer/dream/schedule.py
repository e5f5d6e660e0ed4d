"""Per-frame choices: which layer, how much of the new frame, which jitter offsets, and
every number a keyframe schedule sets.

Everything here is a pure function of the frame number k (absolute, 1-based) and the
seed, so any frame of a run can be redone alone with the same result.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Iterator

import numpy as np

from dreamer.dream.keyframes import Keyframes, LayerKeys, is_schedule
from dreamer.errors import DreamerError

# config field: (flag, integer, rule the value must keep, what the rule says)
NUMBERS = {
    "octave_n": ("-oct", True, lambda v: v >= 1, "octaves must be at least 1 ({got})"),
    "octave_scale": ("-octs", False, lambda v: v >= 1.0,
                     "octave scale must be at least 1 ({got}); 1.4 is the classic value"),
    "iter_n": ("-itr", True, lambda v: v >= 0, "iterations must be 0 or more ({got})"),
    "jitter": ("-j", True, lambda v: v >= 0, "jitter must be 0 or more ({got})"),
    "zoom": ("-z", False, lambda v: v > 0, "zoom must be above 0 ({got}); 1 is off"),
    "step_size": ("-s", False, lambda v: v > 0, "step size must be above 0 ({got})"),
    "flow_blend": ("--flow-blend", False, lambda v: 0 <= v <= 1,
                   "--flow-blend must be 0 to 1 ({got})"),
}
_BLEND_RULE = "blend must be 0 to 1 ({got}); 1 keeps only the new frame, 0 only the previous dream"

BLEND_WORDS = ("loop", "random")
# Tags the blend stream so it never shares numbers with the jitter stream of a frame.
_RANDOM_BLEND_STREAM = 0xB1E4D


def layer_for_frame(layers: tuple[str, ...] | list[str], k: int) -> str:
    return layers[(k - 1) % len(layers)]


def parse_blend(text: str) -> str | float | Keyframes:
    """A blend value from the command line: a number in [0, 1], `loop`, `random` or a
    keyframe schedule."""
    word = str(text).strip().lower()
    if word in BLEND_WORDS:
        return word
    if is_schedule(text):
        return Keyframes.parse(text, "-b")
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


@dataclass(frozen=True)
class FrameValues:
    """What frame k is dreamed with."""
    layer: str
    blend: float | None  # None for a range's first frame with nothing carried in
    octave_n: int
    octave_scale: float
    iter_n: int
    jitter: int
    zoom: float
    step_size: float
    flow_blend: float


class Schedules:
    """A run's per-frame values: numbers, blend and layers, each fixed or scheduled."""

    def __init__(self, config):
        self.numbers = {name: Keyframes.parse(getattr(config, name), flag, integer)
                        for name, (flag, integer, _, _) in NUMBERS.items()}
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

    def check(self, first: int | None = None, last: int | None = None) -> None:
        """Every value the frames first..last will use keeps its rule; the first that
        does not is named with its frame and schedule. Without a range, only the fixed
        values are checked (before the frames are known)."""
        for name, (_, _, ok, rule) in NUMBERS.items():
            self._check_keys(self.numbers[name], ok, rule, first, last)
        if isinstance(self.blend, Keyframes):
            self._check_keys(self.blend, lambda v: 0 <= v <= 1, _BLEND_RULE, first, last)

    @staticmethod
    def _check_keys(keys: Keyframes, ok, rule: str, first: int | None,
                    last: int | None) -> None:
        if keys.constant:
            frames = (1,)
        elif first is None:
            return
        else:
            frames = range(first, last + 1)
        for k in frames:
            value = keys.at(k)
            if not ok(value):
                where = "" if keys.constant else f" at frame {k} of {keys.flag} '{keys.text()}'"
                raise DreamerError(rule.format(got=f"got {value:g}{where}"))

    def values_record(self, values: FrameValues) -> dict:
        """The scheduled numbers of one frame, for its manifest entry."""
        fields = asdict(values)
        return {name: fields[name] for name in self.scheduled() if name in fields
                and name not in ("layers", "blend")}
