"""A guide video (-gi film.mp4) as small still frames, decoded once per run folder.

A guide video is refused, in one line, where it is damaged or cut short: where ffmpeg
reports an error decoding it, where its container promises more than its packets hold (a
download or copy cut off), or where fewer frames decode than its readable part spans. A
truncated video would otherwise guide the whole film with its first second looping.
Formats made to be cut anywhere (MPEG-TS, MPEG-PS) and an AVI without its index declare no
length, so a cut one is a shorter video: it guides with what it holds.

The decoded frames are kept with a list of their sha256s; a later run checks every one and
decodes again where a frame is missing, truncated or changed.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import shlex
import shutil
import subprocess
from fractions import Fraction
from pathlib import Path

from dreamer.caffe.models import sha1_file
from dreamer.errors import DreamerError
from dreamer.video import ffmpeg
from dreamer.video.tools import image2_pattern

log = logging.getLogger(__name__)

MAX_SIDE = 224  # what a guide is read at (dream/guides.py: GUIDE_MAX_SIDE)
DONE = "done"   # the list of decoded frames and their sha256s, written last
# The container may promise this much more than the packets hold (rounding, a last frame's
# duration) before the video counts as cut short: a quarter second, or two frames.
SLACK_SECONDS = Fraction(1, 4)
SLACK_FRAMES = 2

_LEVEL = re.compile(r"\[(panic|fatal|error|warning|info)\]\s*(.*)$")
_DURATION = re.compile(r"^\s*Duration: (\d+):(\d\d):(\d\d(?:\.\d+)?)")
_ESTIMATED = re.compile(r"Estimating duration from bitrate", re.IGNORECASE)


def decode(video: Path, cache_root: Path, fps: Fraction | None, most: int,
           say=lambda text: None) -> tuple[list[Path], dict]:
    """The video's frames sampled at `fps` (None: its own rate), at most MAX_SIDE px and
    at most `most` of them (film frame k uses guide frame k, so a run ending at frame
    `most` never reaches further), in `cache_root/<sha1 of video, rate and most>/`; and
    what the run records of them. A later or resumed run reads the same pngs, so its
    features, and frames, are the same bits whichever ffmpeg it finds."""
    exe = ffmpeg.find_ffmpeg()
    try:
        info = ffmpeg.probe(video, exe)
    except ffmpeg.FFmpegError as e:
        reason = ffmpeg.stderr_reason(e.stderr_tail) if e.stderr_tail else str(e)
        reason = reason.replace(f"{video.absolute()}: ", "")  # it names the file: so do we
        raise DreamerError(f"cannot read the guide video {video} ({reason}); check that "
                           "it plays: if it is cut short or damaged, get the whole video "
                           "again") from None
    rate = Fraction(fps) if fps else info.fps
    video_sha1 = sha1_file(video)
    key = hashlib.sha1(f"{video_sha1} {rate} {MAX_SIDE} {most}".encode()).hexdigest()[:16]
    folder = cache_root / key
    images = verified(folder)
    if images is None:
        if folder.exists():
            say(f"the decoded frames of the guide video in {folder} are damaged or "
                "incomplete; decoding it again")
        say(f"decoding the guide video {video.name} at {rate} fps (up to {most} frames)")
        _decode_into(exe, info, rate, most, folder)
        images = verified(folder)
        if images is None:
            raise DreamerError(f"the decoded frames of the guide video in {folder} changed "
                               "as they were written; check that disk and run again")
    record = {"video": str(video), "sha1": video_sha1, "fps": str(rate),
              "frames": len(images), "cache": str(folder)}
    return images, record


def verified(folder: Path) -> list[Path] | None:
    """The decoded frames in `folder`, in order, when its list is there and every frame
    is there with its recorded sha256 and no other; else None (decode again)."""
    try:
        with open(folder / DONE, "rb") as f:
            text = f.read(64 << 20)  # 80 bytes a frame: a million frames
        listed = json.loads(text)["frames"]
        if not isinstance(listed, dict) or not listed:
            return None
        names = sorted(p.name for p in folder.glob("*.png"))
        if names != sorted(listed):
            return None
        for name in names:
            if _sha256(folder / name) != listed[name]:
                return None
    except (OSError, ValueError, KeyError, TypeError, RecursionError):
        return None  # missing (an older or unfinished decode), damaged or foreign
    return [folder / name for name in names]


def _sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _decode_into(exe: str, info: ffmpeg.VideoInfo, rate: Fraction, most: int,
                 folder: Path) -> None:
    """Decodes into a work folder renamed into place when complete and checked: a run
    killed while decoding leaves no half set of guide frames under the real name, and a
    damaged or cut video none at all."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    _remove_dead_work(folder)
    work = folder.parent / f".{folder.name}.{os.getpid()}.part"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    try:
        scale = (f"scale=w='min({MAX_SIDE},iw)':h='min({MAX_SIDE},ih)'"
                 ":force_original_aspect_ratio=decrease")
        report = _run(exe, ["-i", str(info.path.absolute()), "-map", f"0:{info.video_index}",
                            "-vf", f"fps={rate},{scale}", "-frames:v", str(most),
                            *ffmpeg.passthrough_flags(exe),
                            "-pix_fmt", "rgb24", "-start_number", "1", "-f", "image2",
                            image2_pattern(work, "png")],
                      f"decoding the guide video {info.path.name}", folder.parent, info.path)
        images = sorted(work.glob("*.png"))
        if not images:
            raise DreamerError(f"no frames came out of the guide video {info.path}; check "
                               "that it plays")
        check_decoded(info, rate, most, len(images), report)
        listed = {p.name: _sha256(p) for p in images}
        (work / DONE).write_text(json.dumps({"video": str(info.path), "fps": str(rate),
                                             "frames": listed}, indent=0) + "\n")
        shutil.rmtree(folder, ignore_errors=True)  # an earlier, unfinished or damaged one
        os.replace(work, folder)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _remove_dead_work(folder: Path) -> None:
    """Work folders of this decode that a killed run left (its process is gone)."""
    for work in folder.parent.glob(f".{folder.name}.*.part"):
        try:
            os.kill(int(work.name.split(".")[-2]), 0)
        except ProcessLookupError:
            shutil.rmtree(work, ignore_errors=True)
        except (ValueError, OSError):
            pass  # not ours to judge, or alive under another user


def _run(exe: str, args: list[str], what: str, folder: Path, video: Path) -> str | None:
    """ffmpeg with its report at info level, each line tagged with its level; returns
    that report (None for a tool that cannot tag levels, which then runs as usual). A
    failure is ffmpeg.run_tool's one line."""
    version = ffmpeg.version_of(exe)
    if ffmpeg.is_avconv(exe) or (version is not None and version < (4, 4)):
        ffmpeg.run(exe, args, what, folder=folder)
        return None
    cmd = [exe, "-hide_banner", "-nostdin", "-nostats", "-loglevel", "level+info", *args]
    log.debug("running: %s", shlex.join(cmd))
    try:
        # On any exception (Ctrl-C included) subprocess.run kills ffmpeg before raising.
        res = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, **ffmpeg.child_options())
    except OSError as e:
        raise DreamerError(f"cannot run {exe}: {e.strerror}; reinstall it or choose "
                           "another tool") from None
    text = res.stderr.decode("utf-8", "replace")
    errors = [m[2] for m in map(_LEVEL.search, text.splitlines())
              if m and m[1] in ("panic", "fatal", "error")]
    tail = "\n".join(errors[-20:] or text.splitlines()[-20:])
    if ffmpeg.full_disk(tail):  # even where ffmpeg exits 0 (5.1 does): not the video
        raise ffmpeg.FFmpegError(f"{what} failed: {ffmpeg.stderr_reason(tail, folder)}", tail,
                                 res.returncode)
    if res.returncode != 0:
        reason = ffmpeg.stderr_reason(tail, folder)
        raise ffmpeg.FFmpegError(
            f"{what} failed ({ffmpeg.tool_name(exe)}: {reason}); if the video is damaged "
            f"or cut short, {_fix(video)}", tail, res.returncode)
    return text


def check_decoded(info: ffmpeg.VideoInfo, rate: Fraction, most: int, decoded: int,
                  report: str | None) -> None:
    """Refuses, in one line naming the video and the fix, a guide video that ffmpeg
    reported errors for, whose container promises more than its packets hold, or that
    decoded to fewer frames than its readable part spans (up to `most`)."""
    video = info.path
    readable_end = info.video_start + info.video_duration
    if info.has_audio and info.audio_end is not None:
        readable_end = max(readable_end, info.audio_end)
    lines = report.splitlines() if report is not None else []
    tagged = [m for m in map(_LEVEL.search, lines) if m]
    errors = [m[2].strip().rstrip(".") for m in tagged if m[1] in ("panic", "fatal", "error")]
    if errors:
        raise DreamerError(f"the guide video {video} is damaged or cut short (ffmpeg: "
                           f"{errors[0][:200]}); {_fix(video)}")
    if _gif_without_trailer(video):
        raise DreamerError(f"the guide video {video} is cut short: a GIF ends with a "
                           f"trailer byte and this one does not; {_fix(video)}")
    promised = _promised_duration(lines)
    slack = max(SLACK_SECONDS, SLACK_FRAMES / info.fps)
    if promised is not None and promised - readable_end > slack:
        raise DreamerError(f"the guide video {video} is cut short: its container says it "
                           f"lasts until {float(promised):.2f} s but it holds frames"
                           f"{' and sound' if info.has_audio else ''} only to "
                           f"{float(readable_end):.2f} s; {_fix(video)}")
    # The fps filter gives one frame per 1/rate of the video's span (give or take one at
    # either end): the decoders dropping frames shows as fewer.
    expected = min(most, math.floor(info.video_duration * rate))
    if decoded < expected - SLACK_FRAMES:
        raise DreamerError(f"the guide video {video} decoded to {decoded} frames where its "
                           f"{float(info.video_duration):.2f} s at {rate} fps make "
                           f"{expected}; {_fix(video)}")


def _promised_duration(lines: list[str]) -> Fraction | None:
    """How long the input's container says it lasts, from ffmpeg's report; None where it
    does not say or only guesses from the bitrate."""
    if any(_ESTIMATED.search(line) for line in lines):
        return None
    for line in lines:
        m = _LEVEL.search(line)
        d = _DURATION.match(m[2] if m else line)
        if d:  # the packets' times are measured from the container's start too
            return int(d[1]) * 3600 + int(d[2]) * 60 + Fraction(d[3])
    return None


def _gif_without_trailer(path: Path) -> bool:
    """A GIF (by its signature) whose last byte is not the trailer, 0x3B: cut short.
    Some ffmpeg releases decode such a file without a word."""
    try:
        with open(path, "rb") as f:
            if f.read(6) not in (b"GIF87a", b"GIF89a"):
                return False
            f.seek(-1, os.SEEK_END)
            return f.read(1) != b"\x3b"
    except OSError:
        return False


def _fix(video: Path) -> str:
    """What to do about a damaged or truncated guide video: get it whole, or re-encode it,
    which keeps the part that decodes (and then passes these checks)."""
    return (f"get the whole video again, or guide with the part that decodes, re-encoded: "
            f"ffmpeg -i {shlex.quote(str(video))} guide_fixed.mp4")
