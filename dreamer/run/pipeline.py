"""All three stages on one video in one go: frames, dreams, and the video back."""
from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

from dreamer.config import DreamConfig, number_keys, validate
from dreamer.errors import DreamerError
from dreamer.run.prepare import check_inputs
from dreamer.run.sequence import dream_sequence
from dreamer.video.assemble import assemble_video, check_output
from dreamer.video.frames import STAGE3, find_frames
from dreamer.video.extract import extract_frames, read_record
from dreamer.video.tools import same_file

log = logging.getLogger(__name__)

def _reusable_record(frames_dir: Path, video: Path, image_type: str) -> dict | None:
    """Stage 1's record when `frames_dir` already holds all frames of this very video
    (same file, same size) in this type, so a re-run (e.g. to resume stage 2) skips it."""
    record = read_record(frames_dir)
    if not (record and same_file(record["source"], video)
            and record.get("source_size") == video.stat().st_size
            and record.get("image_type") == image_type):
        return None
    try:
        find_frames(frames_dir, image_type, 1, record["frame_count"], STAGE3)
    except DreamerError:
        return None
    return record


def _stage1(video: Path, frames: Path, image_type: str, tool: str) -> dict:
    """Stage 1, or the frames an earlier run extracted from this very video."""
    record = _reusable_record(frames, video, image_type)
    if record:
        log.info(f"note: reusing the frames in {frames} (extracted from this video before)")
        return record
    return extract_frames(video, frames, image_type, tool)


def _check_early(config: DreamConfig) -> None:
    """A bad setting is refused before stage 1, not after it: before the film's frames
    are counted, scheduled values are checked up to their last key (or -ef)."""
    last_key = max(keys.frames[-1] for keys in number_keys(config).values())
    first = config.start_frame or 1
    validate(config, first, max(first, config.end_frame or last_key))
    check_inputs(config)  # the model, its layers, the guide: not after minutes of stage 1


def run_all(video: str | Path, output: str | Path | None = None,
            config: DreamConfig | None = None, *, workdir: str | Path | None = None,
            image_type: str = "png", overwrite: bool = False, tool: str = "ffmpeg") -> Path:
    """Stage 1 into WORKDIR/frames, stage 2 into WORKDIR/dreamed with `config` (its input,
    output and image type are set here), stage 3 into `output` (default
    `<video>_dream.mp4`) with the video's sound. Re-running it resumes. Returns the
    video's path; raises DreamerError (Interrupted on Ctrl-C)."""
    video = Path(video)
    workdir = Path(workdir) if workdir else Path.cwd() / f"{video.stem}_dream"
    out_path = Path(output) if output else Path.cwd() / f"{video.stem}_dream.mp4"
    check_output(out_path, overwrite, protect=(video,))   # before hours of dreaming
    frames, dreamed = workdir / "frames", workdir / "dreamed"
    config = replace(config or DreamConfig(), input=str(frames), output=str(dreamed),
                     image_type=image_type)
    _check_early(config)
    record = _stage1(video, frames, image_type, tool)
    result = dream_sequence(config)
    if config.verbose >= 1:
        log.info(f"\nDone: frames {result.frames.first}..{result.frames.last} in "
                 f"{result.output}.\nParameters for your video description:\n"
                 f"{result.description}")
    first = config.start_frame or 1
    last = min(config.end_frame or record["frame_count"], record["frame_count"])
    return assemble_video(dreamed, video, image_type, out_path, overwrite, tool, first, last)
