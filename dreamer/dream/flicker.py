"""How much a dream flickers: the warping error it adds to the film's own, per frame.

For consecutive frames t-1, t of the ORIGINAL film: w = flow t -> t-1 (backward), the
forward flow t-1 -> t, and M = `flow.reliability(w, forward)` (0 on occlusions, motion
boundaries and new content at the border). The warping error of a sequence X (Lai et al.
2018, "Learning blind video temporal consistency") is

    E_t(X) = sum_x M(x) * mean_c |X_t(x) - warp(X_{t-1}, w)(x)| / sum_x M(x)

on the 0-255 scale. The same flow and mask measure both sequences, so what a perfect dream
that moves with the film would score is the film's own residual E_t(original) (flow is never
exact; lighting changes). Hence:

- residual = mean_t E_t(original), dreamed = mean_t E_t(dreamed),
- added flicker = dreamed - residual (grey levels),
- strength = mean over frames, pixels and channels of |dreamed - original| (how much the
  dream changes the film: no dream has no flicker),
- ratio = added / strength.

Frames are matched by number (00000001.png ...); the dreamed frames may be a sub-range of
the original's, and only pairs (t-1, t) present in both are measured.
"""
from __future__ import annotations

import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Union

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from dreamer.dream import flow
from dreamer.errors import DreamerError
from dreamer.image import read_image

# Less reliable area than this (in pixels) and a pair says nothing: it is left out.
MIN_RELIABLE_PIXELS = 1.0

Loader = Callable[[], np.ndarray]
# {frame number: an RGB uint8 array, a file, or a function returning the array}; a folder's
# frames are dreamer.video.frames.numbered_files(folder).
Frames = Mapping[int, Union[np.ndarray, str, Path, Loader]]


@dataclass
class Report:
    """Per-pair and per-frame figures of one measurement, and their summaries (grey levels,
    0-255). Pair t is frames (t-1, t); a pair with no reliable pixel holds NaN and does not
    count in the means."""
    frames: list[int] = field(default_factory=list)  # frame numbers measured (common to both)
    strength_per_frame: list[float] = field(default_factory=list)
    pairs: list[int] = field(default_factory=list)  # t of each pair (t-1, t)
    residual_per_pair: list[float] = field(default_factory=list)  # E_t(original)
    dreamed_per_pair: list[float] = field(default_factory=list)  # E_t(dreamed)
    reliable_per_pair: list[float] = field(default_factory=list)  # mean of the mask M

    @property
    def added_per_pair(self) -> list[float]:
        return [d - r for d, r in zip(self.dreamed_per_pair, self.residual_per_pair)]

    @property
    def residual(self) -> float:
        return _mean(self.residual_per_pair)

    @property
    def dreamed(self) -> float:
        return _mean(self.dreamed_per_pair)

    @property
    def added(self) -> float:
        return self.dreamed - self.residual

    @property
    def strength(self) -> float:
        return _mean(self.strength_per_frame)

    @property
    def ratio(self) -> float:
        return self.added / self.strength if self.strength > 0 else math.nan

    def table(self, label: str | None = None) -> str:
        """A small aligned text table of the summaries."""
        return table({label or "": self})


def _mean(values: list[float]) -> float:
    kept = [v for v in values if not math.isnan(v)]
    return sum(kept) / len(kept) if kept else math.nan


def _frames_text(frames: list[int]) -> str:
    if not frames:
        return "0"
    span = f"{frames[0]}-{frames[-1]}"
    return f"{len(frames)} ({span})"


def table(reports: Mapping[str, Report]) -> str:
    """Several reports (e.g. one per setting, keyed by a label) as one aligned table."""
    header = ["", "frames", "residual", "dreamed", "added flicker", "strength", "ratio"]
    # "-" for no value; round before formatting so that -0.001 shows as 0.00, not -0.00
    number = lambda v: "-" if math.isnan(v) else f"{round(v, 2) + 0.0:.2f}"  # noqa: E731
    rows = [[label, _frames_text(r.frames), number(r.residual), number(r.dreamed),
             number(r.added), number(r.strength), number(r.ratio)]
            for label, r in reports.items()]
    if not any(label for label in reports):
        header, rows = header[1:], [row[1:] for row in rows]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    line = lambda row: "  ".join(  # noqa: E731 (text left, numbers right)
        cell.ljust(w) if i == 0 else cell.rjust(w)
        for i, (cell, w) in enumerate(zip(row, widths))).rstrip()
    return "\n".join(line(row) for row in [header, *rows])


def _read(path: Path) -> np.ndarray:
    if not Path(path).exists():
        raise DreamerError(f"frame {path} is missing")
    return read_image(path, fix="extract it again")


def _loaders(frames: Frames) -> dict[int, Loader]:
    """{frame number: a function that reads it}."""
    def loader(v):
        if isinstance(v, np.ndarray):
            return lambda: v
        if isinstance(v, (str, Path)):
            return lambda: _read(Path(v))
        return v
    return {int(k): loader(v) for k, v in frames.items()}


def _checked(frame: np.ndarray, k: int, which: str, size: tuple[int, int] | None):
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise DreamerError(f"{which} frame {k:08d} is not an 8-bit RGB image")
    if size is not None and frame.shape[:2] != size:
        raise DreamerError(f"{which} frame {k:08d} is {frame.shape[1]}x{frame.shape[0]}, "
                           f"not {size[1]}x{size[0]} like the first original frame: measure "
                           "frames of one size (the dream at the original's size)")
    return frame


def warping_error(previous: np.ndarray, current: np.ndarray, backward: np.ndarray,
                  mask: np.ndarray) -> float:
    """E_t: the mask-weighted mean over pixels of the channel-mean |current - warped
    previous|, in the frames' units; NaN when the mask is (almost) empty."""
    weight = float(mask.sum())
    if weight < MIN_RELIABLE_PIXELS:
        return math.nan
    warped = flow.warp(previous.astype(np.float32), backward)
    diff = np.abs(current.astype(np.float32) - warped).mean(axis=-1)
    return float((mask.astype(np.float64) * diff).sum() / weight)


def measure(original: Frames, dreamed: Frames,
            on_frame: Callable[[int, int], None] | None = None) -> Report:
    """Measure the flicker the dream adds to the film (module docstring). Raises
    DreamerError, one line, for no frames in common, sizes that differ, unreadable frames.
    `on_frame(k, count)` is called as each frame is measured (a progress bar)."""
    return measure_all(original, {"": dreamed}, on_frame)[""]


def measure_all(original: Frames, dreamed: Mapping[str, Frames],
                on_frame: Callable[[int, int], None] | None = None) -> dict[str, Report]:
    """`measure` for several dreams of one film at once: the film's flow and mask, the
    costly part, are computed once per pair of frames for all of them. A DreamerError
    names the dream it is about (its key) when there are several."""
    originals = _loaders(original)
    dreams = {name: _loaders(frames) for name, frames in dreamed.items()}
    reports = {}
    for name, loaders in dreams.items():
        common = sorted(set(originals) & set(loaders))
        if not common:
            raise _about(name, dreams, DreamerError(
                "the original and dreamed frames have no frame number in common "
                f"({_frames_text(sorted(originals))} and {_frames_text(sorted(loaders))} "
                "frames)"))
        reports[name] = Report(frames=common)
    wanted = sorted(set().union(*(r.frames for r in reports.values())))
    size = None
    last: dict[str, tuple] = {}  # name -> (number, original frame, dreamed frame) before
    film_prev = None  # (number, original frame)
    for k in wanted:
        orig = _checked(originals[k](), k, "original", size)
        size = orig.shape[:2]
        pair = None  # the film's (backward flow, mask) for (k-1, k), once for all dreams
        for name, report in reports.items():
            if k not in dreams[name]:
                continue
            try:
                dream = _checked(dreams[name][k](), k, "dreamed", size)
            except DreamerError as e:
                raise _about(name, dreams, e) from None
            report.strength_per_frame.append(
                float(np.abs(dream.astype(np.float32) - orig.astype(np.float32)).mean()))
            before = last.get(name)
            if before is not None and before[0] == k - 1:
                if pair is None:
                    backward = flow.compute_flow(orig, film_prev[1])
                    pair = backward, flow.reliability(backward,
                                                      flow.compute_flow(film_prev[1], orig))
                backward, mask = pair
                report.pairs.append(k)
                report.residual_per_pair.append(warping_error(before[1], orig, backward, mask))
                report.dreamed_per_pair.append(warping_error(before[2], dream, backward, mask))
                report.reliable_per_pair.append(float(mask.mean()))
            last[name] = (k, orig, dream)
        film_prev = (k, orig)
        if on_frame is not None:
            on_frame(k, len(wanted))
    for name, report in reports.items():
        if not report.pairs:
            raise _about(name, dreams, DreamerError(
                "no two consecutive frames are in both the original and the dreamed frames: "
                "flicker needs at least two in a row"))
    return reports


def _about(name: str, dreams: Mapping, e: DreamerError) -> DreamerError:
    return DreamerError(f"{name}: {e}") if len(dreams) > 1 else e


# --- the plot ---------------------------------------------------------------------------

PLOT_SIZE = (640, 240)
SERIES = (("added flicker", "added_per_pair", (214, 39, 40)),
          ("film residual", "residual_per_pair", (120, 120, 120)))
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 48, 12, 24, 30


def _nice_top(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 times a power of ten at or above `value`."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    return next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= value)


def write_plot(report: Report, path: str | Path, size: tuple[int, int] = PLOT_SIZE) -> None:
    """A PNG of the added flicker and the film's residual per frame (grey levels): axes with
    their ranges, one line per series and a legend. Written atomically."""
    width, height = size
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default()
    values = [v for _, attr, _ in SERIES for v in getattr(report, attr) if not math.isnan(v)]
    low = min([0.0, *values])
    top = _nice_top(max([0.0, *values]))
    low = -_nice_top(-low) if low < 0 else 0.0
    x0, x1 = MARGIN_LEFT, width - MARGIN_RIGHT
    y0, y1 = height - MARGIN_BOTTOM, MARGIN_TOP  # y0 is the bottom, in image rows
    first, last = (report.pairs[0], report.pairs[-1]) if report.pairs else (0, 1)
    span = max(last - first, 1)

    def at(t: int, v: float) -> tuple[float, float]:
        return (x0 + (t - first) / span * (x1 - x0), y0 - (v - low) / (top - low) * (y0 - y1))

    grey = (90, 90, 90)
    draw.line([(x0, y1), (x0, y0), (x1, y0)], fill=grey)
    for v in sorted({low, 0.0, top}):
        y = at(first, v)[1]
        draw.line([(x0 - 4, y), (x0, y)], fill=grey)
        if v == 0.0 and low < 0:
            draw.line([(x0, y), (x1, y)], fill=(210, 210, 210))
        draw.text((x0 - 6, y), f"{v:g}", fill="black", font=font, anchor="rm")
    for t in {first, last}:
        draw.text((at(t, low)[0], y0 + 4), str(t), fill="black", font=font, anchor="mt")
    draw.text(((x0 + x1) / 2, y0 + 16), "frame", fill="black", font=font, anchor="mt")
    draw.text((x0, 6), "grey levels (0-255) per frame", fill="black", font=font)
    for _, attr, colour in SERIES:
        _polyline(draw, [at(t, v) for t, v in zip(report.pairs, getattr(report, attr))],
                  colour)
    _legend(draw, font, x1)
    tmp = None
    try:
        out = Path(path)
        fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".png")
        with os.fdopen(fd, "wb") as f:
            image.save(f, format="PNG")
        os.replace(tmp, out)
    except OSError as e:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
        raise DreamerError(f"cannot write the plot {path}: {e.strerror or e}") from None


def _polyline(draw: ImageDraw.ImageDraw, points: list[tuple[float, float]], colour) -> None:
    """The line through the points, broken where a value is NaN; a lone point as a dot."""
    run: list[tuple[float, float]] = []
    for p in [*points, (math.nan, math.nan)]:
        if not math.isnan(p[1]):
            run.append(p)
            continue
        if len(run) == 1:
            (x, y), = run
            draw.ellipse([x - 2, y - 2, x + 2, y + 2], fill=colour)
        elif run:
            draw.line(run, fill=colour, width=2)
        run = []


def _legend(draw: ImageDraw.ImageDraw, font, right: float) -> None:
    y = MARGIN_TOP + 4
    widest = max(draw.textlength(label, font=font) for label, _, _ in SERIES)
    # on white, so that lines passing under it do not run through the labels
    draw.rectangle([right - 38 - widest, y - 3, right - 2, y + 16 * len(SERIES) - 1],
                   fill="white", outline=(200, 200, 200))
    for label, _, colour in SERIES:
        text_width = draw.textlength(label, font=font)
        x = right - 8 - text_width
        draw.line([(x - 26, y + 6), (x - 6, y + 6)], fill=colour, width=2)
        draw.text((x, y), label, fill="black", font=font)
        y += 16
