"""A guide video (-gi film.mp4) as small still frames, decoded once per run folder."""
from __future__ import annotations

import hashlib
import os
import shutil
from fractions import Fraction
from pathlib import Path

from dreamer.caffe.models import sha1_file
from dreamer.errors import DreamerError
from dreamer.video import ffmpeg
from dreamer.video.tools import image2_pattern

MAX_SIDE = 224  # what a guide is read at (dream/guides.py: GUIDE_MAX_SIDE)


def decode(video: Path, cache_root: Path, fps: Fraction | None, most: int,
           say=lambda text: None) -> tuple[list[Path], dict]:
    """The video's frames sampled at `fps` (None: its own rate), at most MAX_SIDE px and
    at most `most` of them (film frame k uses guide frame k, so a run ending at frame
    `most` never reaches further), in `cache_root/<sha1 of video, rate and most>/`; and
    what the run records of them. A later or resumed run reads the same pngs, so its
    features, and frames, are the same bits whichever ffmpeg it finds."""
    exe = ffmpeg.find_ffmpeg()
    info = ffmpeg.probe(video, exe)
    rate = Fraction(fps) if fps else info.fps
    video_sha1 = sha1_file(video)
    key = hashlib.sha1(f"{video_sha1} {rate} {MAX_SIDE} {most}".encode()).hexdigest()[:16]
    folder = cache_root / key
    if not (folder / "done").exists():
        say(f"decoding the guide video {video.name} at {rate} fps (up to {most} frames)")
        _decode_into(exe, info, rate, most, folder)
    images = sorted(folder.glob("*.png"))
    record = {"video": str(video), "sha1": video_sha1, "fps": str(rate),
              "frames": len(images), "cache": str(folder)}
    return images, record


def _decode_into(exe: str, info: ffmpeg.VideoInfo, rate: Fraction, most: int,
                 folder: Path) -> None:
    """Decodes into a work folder renamed into place when complete: a run killed while
    decoding leaves no half set of guide frames under the real name."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    work = folder.parent / f".{folder.name}.{os.getpid()}.part"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    try:
        scale = (f"scale=w='min({MAX_SIDE},iw)':h='min({MAX_SIDE},ih)'"
                 ":force_original_aspect_ratio=decrease")
        ffmpeg.run(exe, ["-i", str(info.path.absolute()), "-map", f"0:{info.video_index}",
                         "-vf", f"fps={rate},{scale}", "-frames:v", str(most),
                         *ffmpeg.passthrough_flags(exe),
                         "-pix_fmt", "rgb24", "-start_number", "1", "-f", "image2",
                         image2_pattern(work, "png")],
                   f"decoding the guide video {info.path.name}", folder=folder.parent)
        if not any(work.glob("*.png")):
            raise DreamerError(f"no frames came out of the guide video {info.path}; check "
                               "that it plays")
        (work / "done").write_text(f"{info.path}\n{rate}\n")
        shutil.rmtree(folder, ignore_errors=True)  # an earlier, unfinished decode
        os.replace(work, folder)
    finally:
        shutil.rmtree(work, ignore_errors=True)
