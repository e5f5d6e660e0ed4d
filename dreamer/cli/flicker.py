"""`dreamvideo flicker`: how much a dream flickers, measured against the film it dreams on.

    dreamvideo flicker ORIGINAL_DIR DREAMED_DIR [DREAMED_DIR ...] [--plot PNG] [--overwrite]
                       [--first N] [--last N]

One table row per dreamed folder (labelled by its name), so that runs with different
settings compare side by side; the figures and their definitions are those of
dreamer/dream/flicker.py. With --plot, a PNG of the added flicker and the film's own residual
per frame: of the one dreamed folder at PNG itself, or of each at PNG's name with the
folder's label appended (flicker.png -> flicker-<label>.png).
"""
from __future__ import annotations

import re
import time
from pathlib import Path

from dreamer.cli import signals
from dreamer.cli.oneline import OneLineParser
from dreamer.errors import DreamerError
from dreamer.video.frames import numbered_files

LEGEND = ("grey levels 0-255: residual = the film's own warping error, dreamed = the "
          "dream's, added flicker = dreamed - residual, strength = mean |dream - film|, "
          "ratio = added / strength")


def _parser(prog: str) -> OneLineParser:
    p = OneLineParser(prog=prog, description=__doc__.splitlines()[0].split(": ", 1)[1])
    p.add_argument("original", metavar="ORIGINAL_DIR",
                   help="the film's numbered frames (00000001.png ...), as stage 1 wrote them")
    p.add_argument("dreamed", metavar="DREAMED_DIR", nargs="+",
                   help="dreamed frames of the same film, same size; several compare settings")
    p.add_argument("--plot", metavar="PNG",
                   help="write the per-frame plot (several folders: one PNG each, suffixed "
                        "with the folder's label)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing plot file")
    p.add_argument("--first", metavar="N", type=_frame_number,
                   help="measure from frame number N on (inclusive)")
    p.add_argument("--last", metavar="N", type=_frame_number,
                   help="measure up to frame number N (inclusive)")
    return p


def _frame_number(text: str) -> int:
    import argparse

    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"'{text}' is not a frame number (1, 2, ...)")
    return value


def labels(folders: list[str]) -> list[str]:
    """Each folder's name; the path as given where two names are the same."""
    names = [Path(f).resolve().name or str(f) for f in folders]
    names = [name if names.count(name) == 1 else str(folder).rstrip("/\\") or str(folder)
             for name, folder in zip(names, folders)]
    return [name if names.count(name) == 1 else f"{name} ({i + 1})"  # one folder twice
            for i, name in enumerate(names)]


def plot_paths(plot: str, labels_: list[str]) -> list[Path]:
    """The plot file of each dreamed folder: PNG itself for one, else PNG-<label>.png."""
    path = Path(plot)
    if len(labels_) == 1:
        return [path]
    safe = [re.sub(r"[^A-Za-z0-9._-]+", "_", label).strip("._") or "dream" for label in labels_]
    safe = [s if safe.count(s) == 1 else f"{s}-{i + 1}" for i, s in enumerate(safe)]
    suffix = path.suffix or ".png"
    return [path.with_name(f"{path.stem}-{s}{suffix}") for s in safe]


def _check_plot(path: Path, overwrite: bool) -> None:
    if path.is_dir():
        raise DreamerError(f"--plot {path} is a folder; give a file name such as flicker.png")
    if path.exists() and not overwrite:
        raise DreamerError(f"{path} already exists; pass --overwrite to replace it or "
                           "choose another --plot name")
    if not path.parent.is_dir():
        raise DreamerError(f"cannot write the plot {path}: folder {path.parent} does not "
                           "exist")


def _frames(folder: str, first: int | None, last: int | None, which: str) -> dict:
    """{frame number: file} of a folder's numbered frames within --first/--last."""
    found = numbered_files(folder)
    if not found:
        raise DreamerError(f"{which} folder {folder} holds no numbered frames "
                           "(00000001.png ... or .jpg)")
    kept = {k: p for k, p in found.items()
            if (first is None or k >= first) and (last is None or k <= last)}
    if not kept:
        raise DreamerError(f"{which} folder {folder} has no frame numbered "
                           f"{first or 1}-{last if last is not None else 'end'} "
                           f"(it holds {min(found)}-{max(found)})")
    return kept


def _progress(after: float = 1.0):
    """on_frame for flicker.measure: the frames measured, on stderr (a bar on a terminal,
    a line a frame in a log), once measuring has taken more than `after` seconds."""
    from dreamer.run.progress import Progress, Timer

    bar, started, timer, done = None, time.monotonic(), Timer(), 0

    def on_frame(k: int, count: int) -> None:
        nonlocal bar, done
        done += 1
        seconds = timer.lap()
        if bar is None and time.monotonic() - started > after:
            bar = Progress(count)
            bar.done = done - 1
        if bar is not None:
            bar.frame_done(k, seconds)
    return on_frame


def notes(original: dict, reports: dict) -> list[str]:
    """What a reader of the table should know: frames measured on only part of the
    film, and an added flicker below zero (the dream steadier than the film: a dream of
    other frames, or a measure over too few)."""
    out = []
    for name, r in reports.items():
        label = f"{name}: " if name else ""
        if len(r.frames) < len(original):
            out.append(f"note: {label}only {len(r.frames)} of the {len(original)} original "
                       "frames have a dreamed frame of the same number; the rest are not "
                       "measured")
        if r.added < -0.5:
            out.append(f"note: {label}the added flicker is below zero: the dreamed frames "
                       "change less from frame to frame than the film does; are they a "
                       "dream of these frames?")
    return out


def measure(args) -> int:
    from dreamer.dream import flicker

    if args.first is not None and args.last is not None and args.first > args.last:
        raise DreamerError(f"--first {args.first} is after --last {args.last}")
    names = labels(args.dreamed)
    plots = plot_paths(args.plot, names) if args.plot else []
    for path in plots:  # before measuring: refuse early, not after minutes of flow
        _check_plot(path, args.overwrite)
    original = _frames(args.original, args.first, args.last, "original")
    dreamed = {name: _frames(folder, args.first, args.last, "dreamed")
               for name, folder in zip(names, args.dreamed)}
    try:  # the film's flow once, for every dream
        reports = flicker.measure_all(original, dreamed, _progress())
    except DreamerError as e:
        if len(dreamed) == 1:  # (with several, the message names the dream already)
            raise DreamerError(f"{names[0]}: {e}") from None
        raise
    print(flicker.table(reports))
    print(LEGEND)
    for line in notes(original, reports):
        print(line)
    for path, r in zip(plots, reports.values()):
        flicker.write_plot(r, path)
        print(f"plot written to {path}")
    return 0


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    args = _parser(prog or "dreamvideo flicker").parse_args(argv)
    return signals.run(lambda: measure(args), again="run the same command again")
