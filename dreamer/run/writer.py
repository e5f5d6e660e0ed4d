"""Writing dreamed frames: staged, documented in the manifest, then renamed into place,
one write in flight beside the next frame's dream."""
from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dreamer.run import resume
from dreamer.run.manifest import Manifest
from dreamer.run.progress import Progress
from dreamer.video.frames import FrameSet, commit, discard, frame_name, stage_image


@dataclass
class FrameWriter:
    """The one writer of a run's output folder and manifest."""
    output: Path
    frames: FrameSet
    manifest: Manifest
    key: str
    seed: int
    start: int  # the run's first frame: the lossless state of frames before it is kept
    progress: Progress
    pool: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(1))
    pending: tuple[int, Future] | None = None

    def save(self, k: int, frame: np.ndarray, info: dict) -> None:
        """Encoding and syncing a frame overlaps the next frame's dream; one write is in
        flight at most, and its errors surface at the next frame."""
        self.flush()
        self.pending = (k, self.pool.submit(self._save, k, frame, info))

    def flush(self) -> None:
        """Waits for the write in flight; its OSError names the frame (`.frame`)."""
        if self.pending is None:
            return
        k, future = self.pending
        try:
            future.result()
        except OSError as e:
            self.pending = None
            e.frame = k
            raise
        # cleared only once the write is over: a Ctrl-C while waiting keeps it pending
        self.pending = None

    def finish(self, k: int) -> int:
        """Lets the write in flight finish, so the manifest is never closed while the
        writer still records a frame; returns the first frame not on disk (`k` when the
        one in flight was written)."""
        first_missing = k
        try:
            self.flush()
        except OSError as e:
            first_missing = e.frame
        except KeyboardInterrupt:
            pass  # a second Ctrl-C: the write still finishes below
        self.pool.shutdown(wait=True)
        if self.pending is not None:
            written, future = self.pending
            if future.exception() is not None:
                first_missing = written
        return first_missing

    def close(self) -> None:
        self.pool.shutdown(wait=True)

    def _save(self, k: int, frame: np.ndarray, info: dict) -> None:
        """Frame staged, lossless state kept, manifest synced, then the frame renamed in:
        whatever moment a crash hits, what is on disk under a frame's name is complete
        and documented, and the state the next frame needs is there."""
        path = self.output / frame_name(k, self.frames.image_type)
        tmp = stage_image(frame, path)
        try:
            resume.save_state(self.output, k, frame, self.frames.image_type)
            self.manifest.record_frame(k, key=self.key, seed=self.seed, **info)
            commit(tmp, path)
        except BaseException:
            discard(tmp)
            raise
        if k - 1 >= self.start:
            resume.drop_state(self.output, k - 1)
        self.progress.frame_done(k, info["seconds"])
