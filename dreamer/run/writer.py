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
from dreamer.video.frames import FrameSet, commit, discard, encode_image, frame_name, stage_bytes


@dataclass(frozen=True)
class EncodedFrame:
    """A dreamed frame as the bytes of its file and, for a jpg frame, of the lossless png
    a resumed run carries in. Workers of a distributed run encode their frames
    themselves: at 1080p encoding takes most of a second, which one writer for many
    workers could not keep up with."""
    data: bytes
    state: bytes | None

    @classmethod
    def of(cls, frame: np.ndarray, image_type: str) -> "EncodedFrame":
        state = encode_image(frame, "png") if image_type == "jpg" else None
        return cls(encode_image(frame, image_type), state)


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

    def save(self, k: int, frame: np.ndarray | EncodedFrame, info: dict) -> None:
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
        if not isinstance(frame, EncodedFrame):
            frame = EncodedFrame.of(frame, self.frames.image_type)
        tmp = stage_bytes(frame.data, path)
        try:
            resume.save_state(self.output, k, frame.state)
            self.manifest.record_frame(k, key=self.key, seed=self.seed, **info)
            commit(tmp, path)
        except BaseException:
            discard(tmp)
            raise
        if k - 1 >= self.start:
            resume.drop_state(self.output, k - 1)
        self.progress.frame_done(k, info["seconds"])
