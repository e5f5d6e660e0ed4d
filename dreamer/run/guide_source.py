"""-gi: an image, a folder of images or a video, as the list of guide images a run uses
and what its parameters record of them."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

from dreamer.dream.guides import IMAGE_SUFFIXES, check_readable, folder_images, identity
from dreamer.errors import DreamerError
from dreamer.values.expr import shorten
from dreamer.video import guide_video
from dreamer.video.extract import find_record


MAX_FPS = 1000  # no video has more; a typo such as 1e9 would decode for hours


def guide_images(path: str, guide_fps: float | None, frames_folder: Path, last: int,
                 cache_root: Path, say=lambda text: None) -> tuple[list[Path], dict]:
    """(images, record); the record (kind, sha1, and for a video its sampling rate)
    enters the run's parameters, so another guide never passes for this one. A video
    is decoded up to the run's `last` frame: guide frame k guides film frame k."""
    p = Path(path)
    images = still_images(p)
    if images is not None:
        if guide_fps is not None:
            raise DreamerError("--guide-fps applies to a guide video; a folder's or an "
                               "image's frames are taken one per dreamed frame")
        check_readable(images)
        kind = "folder" if p.is_dir() else "image"
        return images, {"kind": kind, "sha1": identity(images), "frames": len(images)}
    if guide_fps is not None and not 0 < guide_fps <= MAX_FPS:
        raise DreamerError(f"--guide-fps must be above 0 and at most {MAX_FPS} frames a "
                           f"second (got {guide_fps:g})")
    fps = Fraction(guide_fps).limit_denominator(1001) if guide_fps else _film_rate(frames_folder)
    images, record = guide_video.decode(p, cache_root, fps, last, say)
    return images, {"kind": "video", **record}


def still_images(p: Path) -> list[Path] | None:
    """A guide image's or folder's images (None: a video); one line when it is not there."""
    if not p.exists():
        raise DreamerError(f"guide image, folder or video {shorten(str(p))} not found; check "
                           "-gi/--guide-image")
    if p.is_dir() or p.suffix.lower() in IMAGE_SUFFIXES:
        return folder_images(p) if p.is_dir() else [p]
    return None


def _film_rate(frames_folder: Path) -> Fraction | None:
    """The film's own rate (stage 1's record), so the guide plays in step with it; None
    (the guide's own rate) for frames that came from elsewhere."""
    record = find_record(frames_folder)
    return Fraction(record["fps"]) if record else None
