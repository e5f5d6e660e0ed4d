"""What a run tells the user while it works (stderr), by verbosity level."""
from __future__ import annotations

import sys
import time
from collections import deque


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


class Progress:
    """A one-line bar: frames done, seconds a frame and an ETA from the last frames' mean
    (the first frame includes warm-up, so a plain mean since the start would lie)."""

    WINDOW = 10

    def __init__(self, total: int, verbose: int = 1, stream=None):
        self.total, self.verbose = total, verbose
        self.stream = stream if stream is not None else sys.stderr
        self.done = 0
        self.recent: deque[float] = deque(maxlen=self.WINDOW)
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()

    def eta_seconds(self) -> float | None:
        if not self.recent:
            return None
        return sum(self.recent) / len(self.recent) * (self.total - self.done)

    def frame_done(self, k: int, seconds: float) -> None:
        self.done += 1
        self.recent.append(seconds)
        if self.verbose < 1:
            return
        width = 24
        filled = int(width * self.done / max(self.total, 1))
        bar = "#" * filled + "-" * (width - filled)
        per = sum(self.recent) / len(self.recent)
        line = (f"[{bar}] {self.done}/{self.total} frames (last {k:08d}) "
                f"{per:.2f} s/frame, ETA {_duration(self.eta_seconds() or 0)}")
        end = "" if self.tty and self.done < self.total else "\n"
        self.stream.write(("\r" if self.tty else "") + line + end)
        self.stream.flush()

    def info(self, text: str, level: int = 1) -> None:
        if self.verbose >= level:
            if self.tty and 0 < self.done < self.total:
                self.stream.write("\n")
            self.stream.write(text + "\n")
            self.stream.flush()


class Timer:
    def __init__(self):
        self.start = time.perf_counter()

    def lap(self) -> float:
        now = time.perf_counter()
        elapsed, self.start = now - self.start, now
        return elapsed
