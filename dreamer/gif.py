"""Numbered frames into a looping GIF with a palette made for them, at the source's rate."""
from __future__ import annotations

import tempfile
from fractions import Fraction
from pathlib import Path

from dreamer import ffmpeg
from dreamer.assemble import (
    check_output,
    default_output,
    frames_input,
    partial_output,
    publish,
    scan_frames,
)
from dreamer.errors import DreamerError
from dreamer.extract import find_record

GIF_MAX_FPS = 50    # GIF delays are centiseconds and browsers slow anything under 2


def _gif_rate(frames_dir: Path, fps, original) -> Fraction:
    """`fps` if given, else the rate stage 1 recorded (for `original`, if given), else
    `original`'s probed rate."""
    if fps:
        try:
            rate = Fraction(str(fps))
        except (ValueError, ZeroDivisionError):
            rate = Fraction(0)
        if rate <= 0:
            raise DreamerError(f"bad frame rate '{fps}'; give e.g. --fps 25 or 30000/1001")
        return rate
    if original:
        original = Path(original)
        record = find_record(frames_dir, original)
        return Fraction(record["fps"]) if record else ffmpeg.probe(original).fps
    record = find_record(frames_dir)
    if record:
        return Fraction(record["fps"])
    raise DreamerError(f"cannot tell the frame rate of {frames_dir}; pass the original video "
                       "with --original, or --fps")


def _filter_chain(rate: Fraction, width: int | None) -> str:
    filters = [f"fps={GIF_MAX_FPS}"] if rate > GIF_MAX_FPS else []
    if width:
        filters.append(f"scale={width}:-1:flags=lanczos")
    return ",".join(filters) or "null"


def _write_gif(exe: str, source: list[str], count: str, chain: str, out_path: Path,
               overwrite: bool) -> None:
    with tempfile.TemporaryDirectory(prefix="dreamer-") as tmp, \
            partial_output(out_path, ".gif") as partial:
        # Two passes: the 256 colours chosen for these frames, then the frames mapped to
        # them; far better than GIF's default palette.
        palette = Path(tmp) / "palette.png"
        ffmpeg.run(exe, [*source, "-frames:v", count, "-vf",
                         f"{chain},palettegen=stats_mode=diff", "-update", "1",
                         str(palette)], "making the GIF's palette")
        ffmpeg.run(exe, [*source, "-i", str(palette), "-frames:v", count, "-lavfi",
                         f"[0:v]{chain}[x];[x][1:v]paletteuse=dither=sierra2_4a",
                         "-loop", "0", "-f", "gif", "-y", str(partial)],
                   f"writing {out_path.name}")
        publish(partial, out_path, overwrite)


def make_gif(frames_dir: str | Path, output: str | Path | None = None,
             image_type: str | None = None, fps=None, original: str | Path | None = None,
             width: int | None = None, overwrite: bool = False) -> Path:
    """A looping GIF of the frames with a palette made for them (palettegen/paletteuse),
    at the source's rate (at most 50 fps, which GIF timing allows)."""
    frames_dir = Path(frames_dir)
    frames = scan_frames(frames_dir, image_type)
    out_path = Path(output) if output else default_output(frames_dir, ".gif")
    check_output(out_path, overwrite)
    if width is not None and width < 2:
        raise DreamerError(f"bad width {width}; give at least 2 pixels")
    rate = _gif_rate(frames_dir, fps, original)
    chain = _filter_chain(rate, width)
    exe = ffmpeg.find_ffmpeg()
    source = frames_input(exe, frames, rate)
    count = str(frames.last - frames.first + 1)
    _write_gif(exe, source, count, chain, out_path, overwrite)
    print(f"wrote {out_path}: frames {frames.first}..{frames.last} at {rate} fps")
    return out_path
