"""Writing dreamed frames: staged, documented in the manifest, then renamed into place,
one write in flight beside the next frame's dream."""
from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dreamer.run import fingerprint, resume
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
    """The one writer of a run's output folder and manifest, whether frames arrive in
    order from one process or from several pieces at once. The lossless dream of a jpg
    frame (.dreamer/state_K.png) is what a resumed run carries into frame K+1: it is
    dropped once frames K and K+1 are both in `done`, and kept while K+1 is missing."""
    output: Path
    frames: FrameSet
    manifest: Manifest
    key: str
    seed: int
    progress: Progress
    done: set[int] = field(default_factory=set)  # frames written, or done before
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

    def finish(self) -> None:
        """Lets the write in flight finish, so the manifest is never closed while the
        writer still records a frame; `done` then holds every frame on disk."""
        try:
            self.flush()
        except OSError:
            pass  # that frame is not in `done`
        except KeyboardInterrupt:
            pass  # a second Ctrl-C: the write still finishes below
        self.pool.shutdown(wait=True)

    def _input(self, k: int) -> dict | None:
        """What frame k was dreamed from (read again here, beside the next frame's dream:
        cached by the system, a millisecond)."""
        try:
            return fingerprint.of_file(self.frames.path(k))
        except OSError:
            return None  # (gone meanwhile: a resume cannot check it, and will not refuse)

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
            made = {"input": self._input(k), "output": fingerprint.written(tmp, frame.data)}
            state = resume.save_state(self.output, k, frame.state)
            if state is not None:
                made["state"] = state
            self.manifest.record_frame(k, key=self.key, seed=self.seed, **info, **made)
            commit(tmp, path)
        except BaseException:
            discard(tmp)
            raise
        self.done.add(k)
        for j in (k - 1, k):
            if j >= self.frames.first and j in self.done and j + 1 in self.done:
                resume.drop_state(self.output, j)
        self.progress.frame_done(k, info["seconds"])
