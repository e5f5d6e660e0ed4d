"""All three stages on one video in one go: frames, dreams, and the video back."""
from __future__ import annotations

import logging
from pathlib import Path

from dreamer.video.assemble import assemble_video, check_output, scan_frames
from dreamer.errors import DreamerError
from dreamer.video.extract import extract_frames, read_record
from dreamer.video.tools import same_file

log = logging.getLogger(__name__)

# Flags run_all sets for stage 2 itself, from its own arguments.
OWN_STAGE2_FLAGS = ("-i", "--input", "-o", "--output", "-it", "--image_type")


class StageFailed(DreamerError):
    """Stage 2 failed and has said why itself; carries its exit status."""

    def __init__(self, code: int):
        super().__init__(f"stage 2 failed (exit {code})")
        self.code = code


def _reusable_record(frames_dir: Path, video: Path, image_type: str) -> dict | None:
    """Stage 1's record when `frames_dir` already holds all frames of this very video
    (same file, same size) in this type, so a re-run (e.g. to resume stage 2) skips it."""
    record = read_record(frames_dir)
    if not (record and same_file(record["source"], video)
            and record.get("source_size") == video.stat().st_size
            and record.get("image_type") == image_type):
        return None
    try:
        scan_frames(frames_dir, image_type, 1, record["frame_count"])
    except DreamerError:
        return None
    return record


def _check_stage2_flags(dream_args: list[str]) -> None:
    for flag in OWN_STAGE2_FLAGS:
        if flag in dream_args:
            raise DreamerError(f"the all-in-one command sets {flag} for stage 2 itself; "
                               "leave it out of the stage-2 flags")


def _parse_stage2(dream_cli, stage2: list[str]):
    """Stage 2's flags parsed now, so a typo fails before stage 1 rather than after."""
    try:
        return dream_cli.build_parser("stage 2").parse_args(stage2)
    except SystemExit as e:     # argparse has printed its one-line error
        raise StageFailed(e.code if isinstance(e.code, int) else 2) from None


def _stage1(video: Path, frames: Path, image_type: str, tool: str) -> dict:
    """Stage 1, or the frames an earlier run extracted from this very video."""
    record = _reusable_record(frames, video, image_type)
    if record:
        log.info(f"note: reusing the frames in {frames} (extracted from this video before)")
        return record
    return extract_frames(video, frames, image_type, tool)


def run_all(video: str | Path, workdir: str | Path | None = None, dream_args=(),
            output: str | Path | None = None, image_type: str = "png",
            overwrite: bool = False, tool: str = "ffmpeg") -> Path:
    """Stage 1 into WORKDIR/frames, stage 2 into WORKDIR/dreamed (with `dream_args`, the
    flags of 2_dreaming_time.py), stage 3 into `output` (default `<video>_dream.mp4`)."""
    from dreamer.cli import dream as dream_cli  # imports torch: only when dreaming

    video = Path(video)
    dream_args = [str(a) for a in dream_args]
    _check_stage2_flags(dream_args)
    workdir = Path(workdir) if workdir else Path.cwd() / f"{video.stem}_dream"
    out_path = Path(output) if output else Path.cwd() / f"{video.stem}_dream.mp4"
    check_output(out_path, overwrite, protect=(video,))   # before hours of dreaming
    frames, dreamed = workdir / "frames", workdir / "dreamed"
    stage2 = ["-i", str(frames), "-o", str(dreamed), "-it", image_type, *dream_args]
    parsed = _parse_stage2(dream_cli, stage2)
    record = _stage1(video, frames, image_type, tool)
    code = dream_cli.main(stage2, prog="stage 2")
    if code != 0:
        raise StageFailed(code)
    first = parsed.start_frame or 1
    last = parsed.end_frame or record["frame_count"]
    return assemble_video(dreamed, video, image_type, out_path, overwrite, tool, first,
                          min(last, record["frame_count"]))
