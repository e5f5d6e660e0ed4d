"""`-b`: how much of each new raw frame against the previous dream, written as a number
from 0 to 1, `loop` (0.5 to 1 and back), `random`, or a keyframe schedule."""
from __future__ import annotations

from dreamer.errors import DreamerError
from dreamer.values.expr import shorten
from dreamer.values.keyframes import Keyframes, is_schedule

BLEND_WORDS = ("loop", "random")
BLEND_RULE = ("blend must be 0 to 1 ({got}); 1 keeps only the new frame, 0 only the "
              "previous dream")


def parse_blend(text: str) -> str | float | Keyframes:
    """A blend value as written: a number in [0, 1], `loop`, `random` or a schedule."""
    word = str(text).strip().lower()
    if word in BLEND_WORDS:
        return word
    if is_schedule(text):
        return Keyframes.parse(text, "-b")
    try:
        value = float(word)
    except ValueError:
        raise DreamerError(f"unknown blend '{shorten(text)}'; use a number from 0 to 1, "
                           "'loop' or 'random'") from None
    if not 0.0 <= value <= 1.0:
        raise DreamerError(f"blend {value:g} is outside [0, 1]; 1 keeps only the new frame, "
                           "0 only the previous dream")
    return value
