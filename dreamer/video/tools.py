"""What stages 1 and 3 share about the programs they run: finding ffmpeg, avconv or
mplayer/mencoder, and naming numbered frames so that any path is safe to hand them."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from dreamer.video import ffmpeg
from dreamer.errors import DreamerError
from dreamer.video.frames import IMAGE_TYPES

TOOLS = ("ffmpeg", "avconv", "mplayer")


def tool_exe(tool: str, stage: int) -> str:
    """The program behind a tool name, or a one-line error saying what to do instead."""
    if tool == "ffmpeg":
        return ffmpeg.find_ffmpeg()
    script = "./1_movie2frames.sh" if stage == 1 else "./3_frames2movie.sh"
    if tool == "avconv":
        exe = shutil.which("avconv")
        if not exe:
            raise DreamerError(f"avconv is not installed (libav is gone from current "
                               f"distributions); use ffmpeg instead: {script} ffmpeg ...")
        return exe
    if tool == "mplayer":
        name = "mplayer" if stage == 1 else "mencoder"
        exe = shutil.which(name)
        if not exe:
            raise DreamerError(f"{name} is not installed; install it (e.g. apt install "
                               f"{name}) or use ffmpeg instead: {script} ffmpeg ...")
        return exe
    raise DreamerError(f"unknown tool '{tool}'; use one of {', '.join(TOOLS)}")


def check_image_type(image_type: str | None) -> None:
    """None (meaning: whichever the folder holds) or one of png, jpg."""
    if image_type is not None and image_type not in IMAGE_TYPES:
        raise DreamerError(f"unknown image type '{image_type}'; use png or jpg")


def image2_pattern(folder: Path, image_type: str) -> str:
    """An image2 pattern for `folder`; a literal % in the path is written %%."""
    return str(folder.absolute()).replace("%", "%%") + f"/%08d.{image_type}"


def same_file(a: str | Path, b: str | Path) -> bool:
    """Whether both name one existing file (False if either is missing)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False
