"""Numbered frames into a looping GIF with a palette made for them, at the source's rate."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

from dreamer.video import ffmpeg
from dreamer.video.assemble import (
    check_output,
    default_output,
    frames_input,
    partial_output,
    private_temp_dir,
    publish,
    remove_stale,
)
from dreamer.errors import DreamerError
from dreamer.video.extract import find_record
from dreamer.video.frames import STAGE3, FrameSet, find_frames

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


def _write_gif(exe: str, source: list[str], count: tuple[int, int], chain: str,
               out_path: Path, overwrite: bool) -> ffmpeg.Written:
    """Writes, reads back and publishes the GIF; returns what it holds. The frames' input
    ends at the last frame, so no -frames:v is needed; `count` is the frames it should
    hold and by how many that may be off."""
    remove_stale(out_path, ".gif")
    with private_temp_dir() as tmp, partial_output(out_path, ".gif") as partial:
        # Two passes: the 256 colours chosen for these frames, then the frames mapped to
        # them; far better than GIF's default palette.
        palette = tmp / "palette.png"
        ffmpeg.run(exe, [*source, "-vf", f"{chain},palettegen=stats_mode=diff", "-update",
                         "1", str(palette)], "making the GIF's palette", folder=tmp)
        ffmpeg.run(exe, [*source, "-i", str(palette), "-lavfi",
                         f"[0:v]{chain}[x];[x][1:v]paletteuse=dither=sierra2_4a",
                         "-loop", "0", "-f", "gif", "-y", str(partial)],
                   f"writing {out_path.name}", folder=out_path.parent)
        written = ffmpeg.check_written(partial, out_path.name, exe, frames=count[0],
                                       frame_slack=count[1])
        publish(partial, out_path, overwrite)
    return written


def make_gif(frames_dir: str | Path, output: str | Path | None = None,
             image_type: str | None = None, fps=None, original: str | Path | None = None,
             width: int | None = None, overwrite: bool = False) -> Path:
    """A looping GIF of the frames with a palette made for them (palettegen/paletteuse),
    at the source's rate (at most 50 fps, which GIF timing allows)."""
    frames_dir = Path(frames_dir)
    frames = find_frames(frames_dir, image_type, None, None, STAGE3)
    out_path = Path(output) if output else default_output(frames_dir, ".gif")
    check_output(out_path, overwrite)
    if width is not None and width < 2:
        raise DreamerError(f"bad width {width}; give at least 2 pixels")
    rate = _gif_rate(frames_dir, fps, original)
    chain = _filter_chain(rate, width)
    exe = ffmpeg.find_ffmpeg()
    source = frames_input(exe, frames, rate)
    written = _write_gif(exe, source, _gif_frames(frames, rate), chain, out_path, overwrite)
    shown = min(rate, GIF_MAX_FPS)
    print(f"wrote {out_path}: frames {frames.first}..{frames.last} ({written.frames} "
          f"frames) at {shown} fps")
    return out_path


def _gif_frames(frames: FrameSet, rate: Fraction) -> tuple[int, int]:
    """(frames the GIF should hold, by how many that may be off): all of them, or about
    as many as `fps=50` keeps of a faster run (its rounding may add or drop one)."""
    count = frames.last - frames.first + 1
    if rate <= GIF_MAX_FPS:
        return count, 0
    return max(1, round(count * GIF_MAX_FPS / rate)), 1
