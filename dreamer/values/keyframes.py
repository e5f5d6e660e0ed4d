"""Keyframe schedules: `FRAME:(VALUE), FRAME:(VALUE), ...` as Deforum and ComfyUI read them.

Frames are the absolute frame numbers of the film, from 1 (a key at 0, as Deforum's
schedules start, is allowed and lies just before the first frame). A value is a number
or an expression of `t`, the frame being dreamed (values/expr.py); every key is evaluated
at t, and between two keys the two values are interpolated:
- linear (the default): straight between keys;
- step: each key holds until the next one (`@step` at the end of the schedule);
- cubic: smooth (C1), easing in and out at the first and last key, and never beyond the
  keys' values between them (`@cubic`).
Before the first key the first one holds, after the last key the last one.

A schedule is bounded: at most MAX_KEYS keys (a key a frame for 55 minutes at 30 fps)
in at most MAX_TEXT characters, refused before any key is read; a frame's value
evaluates only the keys beside it (at most four), so a frame costs the same whatever the
number of keys.
"""
from __future__ import annotations

import bisect
import functools
import math
import re
from dataclasses import dataclass

from dreamer.values.expr import Expression, shorten
from dreamer.errors import DreamerError

INTERPOLATIONS = ("linear", "step", "cubic")
MAX_KEYS = 100_000
MAX_TEXT = 4_000_000  # characters: 40 a key at MAX_KEYS
MAX_FRAME = 10**9     # a key's frame number (a year of film at 30 fps)
_MODE_RE = re.compile(r"@\s*(\w+)\s*$")
_KEY_RE = re.compile(r"\s*(-?\d+)\s*:\s*\(")
_AFTER_RE = re.compile(r"\s*(,?)\s*")  # what follows a key's ')'
_PAREN_RE = re.compile(r"[()]")
_LOOSE_KEY_RE = re.compile(r"\s*(-?[\d.]+)\s*:")  # what a key was meant to be


def is_schedule(text) -> bool:
    """Whether a flag's value is written as keyframes rather than as one value."""
    return isinstance(text, str) and _LOOSE_KEY_RE.match(text) is not None


def split_keys(text: str, flag: str) -> tuple[list[tuple[int, str]], str]:
    """[(frame, value text), ...] in frame order, and the interpolation. Linear in the
    text's length, which is bounded first, as is the number of keys."""
    shown = shorten(text)
    if len(text) > MAX_TEXT:
        raise DreamerError(f"{flag} '{shown}': a schedule of {len(text):,} characters; at "
                           f"most {MAX_TEXT:,}")
    if text.count(":") > MAX_KEYS:  # (a value never holds a ':')
        raise DreamerError(f"{flag} '{shown}': {text.count(':'):,} keyframes; a schedule "
                           f"may have at most {MAX_KEYS:,}")
    body, mode = text, "linear"
    m = _MODE_RE.search(text)
    if m:
        mode, body = m.group(1).lower(), text[:m.start()]
        if mode not in INTERPOLATIONS:
            raise DreamerError(f"{flag} '{shown}': unknown interpolation "
                               f"'@{shorten(m.group(1), 20)}'; use @linear, @step or @cubic")
    keys, pos = [], 0
    while pos < len(body):
        m = _KEY_RE.match(body, pos)
        if not m:
            raise DreamerError(f"{flag} '{shown}': {_bad_key(body[pos:pos + 100])}")
        frame = m.group(1)
        if len(frame.lstrip("-")) > 10 or abs(int(frame)) > MAX_FRAME:
            raise DreamerError(f"{flag} '{shown}': frame {shorten(frame, 12)} is beyond any "
                               f"film (at most {MAX_FRAME:,})")
        end = _closing(body, m.end())
        if end is None:
            raise DreamerError(f"{flag} '{shown}': the '(' after {frame}: is never closed")
        value = body[m.end():end].strip()
        if not value:
            raise DreamerError(f"{flag} '{shown}': frame {frame} has an empty value")
        keys.append((int(frame), value))
        after = _AFTER_RE.match(body, end + 1)
        pos = after.end()
        if not after.group(1) and pos < len(body):
            raise DreamerError(f"{flag} '{shown}': expected ',' before "
                               f"'{shorten(body[pos:pos + 30], 30)}'")
    if not keys:
        raise DreamerError(f"{flag} '{shown}' has no keyframes; write e.g. 1:(1.0), "
                           "30:(1.04)")
    frames = [k for k, _ in keys]
    for a, b in zip(frames, frames[1:]):
        if b <= a:
            raise DreamerError(f"{flag} '{shown}': frame {b} comes after frame {a}; list the "
                               "keyframes in increasing frame order, each once")
    if frames[0] < 0:  # 0 is welcome: Deforum numbers from 0, and it reads as before 1
        raise DreamerError(f"{flag} '{shown}': frame {frames[0]}: frames are numbered "
                           "from 1")
    return keys, mode


def _bad_key(rest: str) -> str:
    """What is wrong where a FRAME:(VALUE) key should start."""
    m = _LOOSE_KEY_RE.match(rest)
    if m and not m.group(1).lstrip("-").isdigit():
        return f"frame {m.group(1)} is not a whole frame number"
    if m:
        frame = m.group(1)
        return f"the value after {frame}: goes in parentheses, as in {frame}:(1.0)"
    return f"expected FRAME:(VALUE) at '{rest.strip()[:30]}'; write e.g. 1:(1.0), 30:(1.04)"


def _closing(text: str, start: int) -> int | None:
    """Where the '(' just before `start` is closed."""
    depth = 1
    for m in _PAREN_RE.finditer(text, start):
        depth += 1 if m.group() == "(" else -1
        if depth == 0:
            return m.start()
    return None


@dataclass(frozen=True)
class Keyframes:
    """A numeric schedule; `at(k)` is its value at frame k."""
    flag: str
    frames: tuple[int, ...]
    values: tuple[Expression, ...]
    interpolation: str = "linear"
    integer: bool = False

    @classmethod
    def parse(cls, text, flag: str, integer: bool = False) -> "Keyframes":
        """A schedule, or one plain number (a schedule of one key). A text is read once:
        a run's checks, its frames and its description each ask for it, and 10,000 keys
        take a fraction of a second to read."""
        if isinstance(text, str):
            return _parse_text(text, flag, integer)
        return cls._read(text, flag, integer)

    @classmethod
    def _read(cls, text, flag: str, integer: bool) -> "Keyframes":
        if not is_schedule(text):
            try:
                value = Expression(str(text))
            except DreamerError as e:
                raise DreamerError(f"{flag} {shorten(text)}: not a number, an expression of "
                                   f"t or a schedule such as 1:(1.0), 30:(1.04) ({e})") from None
            return cls(flag, (1,), (value,), "linear", integer)
        keys, mode = split_keys(str(text), flag)
        values = []
        for frame, value in keys:
            try:
                values.append(Expression(value))
            except DreamerError as e:
                raise DreamerError(f"{flag} at frame {frame}: {e}") from None
        return cls(flag, tuple(k for k, _ in keys), tuple(values), mode, integer)

    @property
    def constant(self) -> bool:
        return len(self.frames) == 1 and not self.values[0].uses_t

    def text(self) -> str:
        """The canonical spelling (what the manifest and the run's key hold)."""
        keys = ", ".join(f"{k}:({v.text})" for k, v in zip(self.frames, self.values))
        return keys + ("" if self.interpolation == "linear" else f" @{self.interpolation}")

    def at(self, k: int) -> float | int:
        try:
            value = self._interpolate(k)
        except DreamerError as e:
            raise DreamerError(f"{self.flag} '{shorten(self.text())}': {e}") from None
        if not math.isfinite(value):  # (values are bounded: a last guard, as floor(nan) fails)
            raise DreamerError(f"{self.flag} '{shorten(self.text())}' is {value} at "
                               f"frame {k}")
        return math.floor(value + 0.5) if self.integer else value

    def _interpolate(self, k: int) -> float:
        frames = self.frames
        i = bisect.bisect_right(frames, k) - 1  # the key at or before k
        if i < 0:
            return self.values[0](k)
        if i == len(frames) - 1 or self.interpolation == "step":
            return self.values[i](k)
        a, b = self.values[i](k), self.values[i + 1](k)
        u = (k - frames[i]) / (frames[i + 1] - frames[i])
        if self.interpolation == "linear":
            return a + (b - a) * u
        return self._cubic(k, i, u, a, b)

    def _cubic(self, k: int, i: int, u: float, a: float, b: float) -> float:
        """Monotone cubic Hermite (Fritsch-Carlson) through the keys as they are at t=k:
        the tangent at a key is the harmonic mean of the slopes beside it, zero at a peak
        or a valley and at the first and last key. Between keys i and i+1 it needs only
        keys i-1 to i+2 (a, b: keys i and i+1 at t=k), so only those are evaluated."""
        xs, values = self.frames, self.values
        ys = {i: a, i + 1: b}
        for j in (i - 1, i + 2):
            if 0 <= j < len(xs):
                ys[j] = values[j](k)

        def slope(j: int) -> float:
            return (ys[j + 1] - ys[j]) / (xs[j + 1] - xs[j])

        def tangent(j: int) -> float:
            if j == 0 or j == len(xs) - 1:
                return 0.0
            s0, s1 = slope(j - 1), slope(j)
            if s0 * s1 <= 0:
                return 0.0
            h0, h1 = xs[j] - xs[j - 1], xs[j + 1] - xs[j]
            w0, w1 = 2 * h1 + h0, h1 + 2 * h0
            return (w0 + w1) / (w0 / s0 + w1 / s1)

        h = xs[i + 1] - xs[i]
        h00, h10 = 2 * u**3 - 3 * u**2 + 1, u**3 - 2 * u**2 + u
        h01, h11 = -2 * u**3 + 3 * u**2, u**3 - u**2
        return h00 * ys[i] + h10 * h * tangent(i) + h01 * ys[i + 1] + h11 * h * tangent(i + 1)


@functools.lru_cache(maxsize=32)
def _parse_text(text: str, flag: str, integer: bool) -> Keyframes:
    return Keyframes._read(text, flag, integer)


@dataclass(frozen=True)
class LayerKeys:
    """A layer schedule: each key's layers hold until the next key. A key naming several
    layers (or `customloop`) cycles them by frame number as `-l a b c` does."""
    frames: tuple[int, ...]
    names: tuple[str, ...]                  # each key's value as written
    cycles: tuple[tuple[str, ...], ...]     # each key's layers, customloop spelled out

    @classmethod
    def parse(cls, text: str, expand) -> "LayerKeys":
        keys, mode = split_keys(text, "-l")
        if mode != "linear":
            raise DreamerError(f"-l '{shorten(text)}': layers change at their keyframes; drop "
                               f"'@{mode}'")
        names = tuple(" ".join(v.split()) for _, v in keys)
        return cls(tuple(k for k, _ in keys), names, tuple(expand(n.split()) for n in names))

    def at(self, k: int) -> str:
        i = max(bisect.bisect_right(self.frames, k) - 1, 0)
        cycle = self.cycles[i]
        return cycle[(k - 1) % len(cycle)]

    def text(self) -> str:
        return ", ".join(f"{k}:({n})" for k, n in zip(self.frames, self.names))

    @property
    def all_layers(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(name for cycle in self.cycles for name in cycle))
