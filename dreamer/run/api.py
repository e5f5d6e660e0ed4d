"""The library's two calls, with no command line inside: each takes a DreamConfig and
raises typed errors (dreamer.errors), Interrupted on Ctrl-C."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from dreamer.config import DreamConfig
from dreamer.errors import Interrupted
from dreamer.run import pipeline
from dreamer.run.sequence import RunResult, dream_sequence


def dream_frames(frames_in: str | Path, frames_out: str | Path,
                 config: DreamConfig | None = None) -> RunResult:
    """Stage 2: dreams the numbered frames (00000001.png, ...) in `frames_in` into
    `frames_out`, resuming what an earlier run with the same settings finished. Returns
    the frames dreamed, the seed and the run's description."""
    config = replace(config or DreamConfig(), input=str(frames_in), output=str(frames_out))
    with _interrupts():
        return dream_sequence(config)


def run_all(video: str | Path, output: str | Path | None = None,
            config: DreamConfig | None = None, **options) -> Path:
    """Stages 1, 2 and 3: `video` into frames, dreamed, and back into `output` with its
    sound; see dreamer.run.pipeline.run_all for the options. Returns the video's path."""
    with _interrupts():
        return pipeline.run_all(video, output, config, **options)


class _interrupts:
    """Ctrl-C met outside the frame loop (which stops cleanly itself) as Interrupted:
    a library caller catches one type."""

    def __enter__(self):
        return self

    def __exit__(self, kind, error, tb):
        if kind is KeyboardInterrupt:
            raise Interrupted("interrupted; every frame written is kept: run the same call "
                              "again to finish what is missing") from None
        return False
