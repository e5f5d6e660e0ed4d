"""Stage 1 of DeepDreamVideo: a video into numbered frames (`%08d.png|jpg` from 1), with
what stage 3 needs to put them back in sync recorded in `FRAMES_DIR/frames.json`."""
from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from contextlib import suppress
from datetime import datetime, timezone
from fractions import Fraction
from pathlib import Path

from dreamer.video import ffmpeg
from dreamer.errors import DreamerError
from dreamer.video.ffmpeg import VideoInfo
from dreamer.video.frames import FRAME_RE, FrameSet, common_size, frame_name
from dreamer.video.tools import check_image_type, image2_pattern, same_file, tool_exe

log = logging.getLogger(__name__)

RECORD_NAME = "frames.json"
MANIFEST_NAME = "dream_manifest.json"   # stage 2's record in its output folder
EXTRACT_PREFIX = ".dreamer-extract-"


# --- stage 1's record -----------------------------------------------------------------

def _record(info: VideoInfo, image_type: str, count: int, size: tuple[int, int],
            tool: str) -> dict:
    def frac(x):
        return None if x is None else str(x)
    stat = info.path.stat()
    return {
        "tool": "DeepDreamVideo", "kind": "stage 1 frames", "version": 1,
        "source": str(info.path.absolute()), "source_size": stat.st_size,
        "fps": str(info.fps), "fps_float": float(info.fps), "vfr": info.vfr,
        "declared_fps": frac(info.declared_fps), "video_start": str(info.video_start),
        "frame_count": count, "first": 1, "last": count, "image_type": image_type,
        "width": size[0], "height": size[1], "has_audio": info.has_audio,
        "audio_codec": info.audio_codec, "sample_rate": info.sample_rate,
        "extracted_with": tool,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def read_record(folder: str | Path) -> dict | None:
    """Stage 1's record in `folder`, or None if there is none (or it is someone else's)."""
    path = Path(folder) / RECORD_NAME
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        Fraction(data["fps"]), Fraction(data["video_start"])  # noqa: B018 - shape check
    except (OSError, ValueError, KeyError, TypeError, ZeroDivisionError):
        return None
    return data if data.get("tool") == "DeepDreamVideo" else None


def _records_near(frames_dir: Path):
    """Stage 1 records that may describe these frames: in `frames_dir` itself (frames
    from stage 1) or in the input folder stage 2's manifest names (dreamed frames)."""
    candidates = [frames_dir]
    try:
        runs = json.loads((frames_dir / MANIFEST_NAME).read_text(encoding="utf-8"))["runs"]
        source = Path(runs[-1]["parameters"]["input"])
        candidates += [source, frames_dir.parent / source]
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        pass
    for folder in candidates:
        record = read_record(folder)
        if record:
            yield record


def find_record(frames_dir: Path, original: Path | None = None) -> dict | None:
    """The stage 1 record for these frames; with `original`, only one made from it."""
    for record in _records_near(Path(frames_dir)):
        if original is None or same_file(record["source"], original):
            return record
    return None


# --- the frames folder ----------------------------------------------------------------

def _prepare_frames_dir(frames_dir: Path) -> tuple[bool, list[str]]:
    """(whether we created it, stage 1's own earlier entries in it). Refuses a folder
    holding anything else: the original script wiped it, we never delete the user's files."""
    if frames_dir.exists() and not frames_dir.is_dir():
        raise DreamerError(f"{frames_dir} is a file, not a folder; choose a folder for the "
                           "frames")
    if not frames_dir.exists():
        try:
            frames_dir.mkdir(parents=True)
        except OSError as e:
            raise DreamerError(f"cannot create {frames_dir} ({e.strerror}); choose another "
                               "folder") from None
        return True, []
    names = sorted(os.listdir(frames_dir))
    _check_only_ours(frames_dir, names)
    return False, names


def _check_only_ours(frames_dir: Path, names: list[str]) -> None:
    """Refuses a folder with anything but stage 1's frames, record and work folders."""
    has_record = RECORD_NAME in names and read_record(frames_dir) is not None
    stray = [n for n in names if not (FRAME_RE.match(n) or n.startswith(EXTRACT_PREFIX)
                                      or (n == RECORD_NAME and has_record))]
    if stray:
        raise DreamerError(f"{frames_dir} already holds other files (e.g. '{stray[0]}'); "
                           "stage 1 only replaces its own frames: choose an empty or new "
                           "folder")
    if any(FRAME_RE.match(n) for n in names) and not has_record:
        raise DreamerError(f"{frames_dir} holds frames that stage 1 did not make (no "
                           f"{RECORD_NAME}); move them away or choose an empty or new folder")


def _swap_in(work: Path, frames_dir: Path, old: list[str], image_type: str,
             count: int) -> None:
    """Replaces stage 1's earlier frames by the new ones. The old record stays until the
    end, so an interrupted swap still leaves a folder stage 1 recognises as its own."""
    for name in old:
        if FRAME_RE.match(name):
            (frames_dir / name).unlink(missing_ok=True)
        elif name.startswith(EXTRACT_PREFIX) and (frames_dir / name) != work:
            shutil.rmtree(frames_dir / name, ignore_errors=True)   # an earlier crash's
    for k in range(1, count + 1):
        name = frame_name(k, image_type)
        os.replace(work / name, frames_dir / name)
    os.replace(work / RECORD_NAME, frames_dir / RECORD_NAME)


def _remove_if_empty(folder: Path) -> None:
    with suppress(OSError):
        folder.rmdir()


# --- the tools' commands --------------------------------------------------------------

def _extract_args(exe: str, info: VideoInfo, image_type: str, folder: Path) -> list[str]:
    args = ["-i", str(info.path.absolute()), "-map", f"0:{info.video_index}"]
    if info.vfr:
        args += ["-vf", f"fps={info.fps}"]
    args += ffmpeg.passthrough_flags(exe)
    if image_type == "png":
        args += ["-pix_fmt", "rgb24"]          # 8-bit RGB even from 10-bit sources
    else:
        args += ["-q:v", "2", "-pix_fmt", "yuvj444p"]   # high quality, no chroma halving
    return args + ["-start_number", "1", "-f", "image2", image2_pattern(folder, image_type)]


def _mplayer_string(value: str) -> str:
    """MPlayer's length-prefixed sub-option syntax, so ':' or ',' in a path is harmless."""
    return f"%{len(value.encode())}%{value}"


def mplayer_extract_cmd(exe: str, video: Path, image_type: str) -> list[str]:
    """mplayer writing the frames into the folder it runs in: given a folder by its full
    path, Debian's mplayer writes nothing at all once that path passes about 90 bytes."""
    vo = "png:z=6" if image_type == "png" else "jpeg:quality=95"
    # mplayer's png/jpeg outputs name frames 00000001.png ..., exactly our numbering.
    return [exe, "-really-quiet", "-nosound", "-benchmark", "-vo",
            f"{vo}:outdir={_mplayer_string('.')}", str(video.absolute())]


# --- stage 1 ---------------------------------------------------------------------------

def _written_frames(folder: Path, image_type: str) -> int:
    numbers = sorted(int(m[1]) for n in os.listdir(folder)
                     if (m := FRAME_RE.match(n)) and m[2] == image_type)
    if not numbers:
        raise DreamerError("no frames came out of the video; check that it plays")
    if numbers != list(range(1, len(numbers) + 1)):
        raise DreamerError("the extracted frames are not numbered 1..N; try ffmpeg")
    return len(numbers)


def expected_frames(info: VideoInfo) -> tuple[int, int]:
    """(frames extraction should give, by how many that may be off): one per shown packet
    of a constant-rate video; for a variable rate, its duration at the average rate
    (the fps filter's rounding at either end may add or drop one)."""
    if not info.vfr:
        return info.frame_count, 0
    return round(info.video_duration * info.fps), 1


def _check_count(exe: str, video: Path, info: VideoInfo, count: int) -> None:
    """Refuses an extraction that did not give the frames the video holds: stage 3 would
    put the sound out of sync with them."""
    expected, slack = expected_frames(info)
    if abs(count - expected) > slack:
        raise ffmpeg.FFmpegError(
            f"{ffmpeg.tool_and_version(exe)} wrote {count} frames where {video} holds "
            f"{expected}; nothing was kept: re-encode the video (ffmpeg -i IN -c:v libx264 "
            f"OUT.mp4) or try another ffmpeg: {ffmpeg.ENV_VAR}=/path/to/ffmpeg")


def _extract_into(work: Path, exe: str, video: Path, info: VideoInfo, image_type: str,
                  tool: str) -> dict:
    """Every frame of `video`, checked, and its record into the private folder `work`;
    returns the record."""
    frames_dir = work.parent
    if tool == "mplayer":
        ffmpeg.run_tool(mplayer_extract_cmd(exe, video, image_type),
                        f"extracting frames from {video}", cwd=work)
    else:
        ffmpeg.run(exe, _extract_args(exe, info, image_type, work),
                   f"extracting frames from {video}", progress=True, folder=frames_dir)
    count = _written_frames(work, image_type)
    if tool != "mplayer":
        _check_count(exe, video, info, count)
    size = common_size(FrameSet(work, image_type, 1, count))
    record = _record(info, image_type, count, size, tool)
    (work / RECORD_NAME).write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    return record


def extract_frames(video: str | Path, frames_dir: str | Path, image_type: str = "png",
                   tool: str = "ffmpeg") -> dict:
    """Stage 1: every frame of `video` into `frames_dir`, plus frames.json. Returns it.
    The frames are made in a folder of their own inside `frames_dir` and only moved in
    once all are there, so a failure never leaves a half-extracted film behind."""
    check_image_type(image_type)
    video, frames_dir = Path(video), Path(frames_dir)
    exe = tool_exe(tool, 1)
    info = ffmpeg.probe(video)
    if info.vfr and tool == "mplayer":
        raise DreamerError(f"{video} has a variable frame rate, which mplayer cannot make "
                           "constant; use ffmpeg: ./1_movie2frames.sh ffmpeg ...")
    created, old = _prepare_frames_dir(frames_dir)
    if info.vfr:
        log.info(f"note: {video} has a variable frame rate; converting it to a constant "
                 f"{info.fps} fps ({float(info.fps):.3f}, its average)")
    work = Path(tempfile.mkdtemp(prefix=EXTRACT_PREFIX, dir=frames_dir))
    try:
        record = _extract_into(work, exe, video, info, image_type, tool)
        _swap_in(work, frames_dir, old, image_type, record["frame_count"])
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        if created:
            _remove_if_empty(frames_dir)
        raise
    shutil.rmtree(work, ignore_errors=True)
    return record
