"""What a run tells the user while it works (stderr), by verbosity level.

On a terminal a tqdm bar; anywhere else (a log file, a pipe) one plain line a frame, with no
carriage returns or bar characters, so a log stays readable and grep-able:

    frame 00000012 done: 12/120 frames, 2.31 s/frame, ETA 4m09s

Both give the seconds a frame and the ETA from the mean of the last 50 frames, leaving out the
run's first frames while they took over three times the window's median: those include the
warm-up (loading the net, the first kernels), so a mean with them would lie. The window is
long because frames differ in cost (a layer loop dreams each layer in turn; N workers deliver
their frames in bursts): the mean of a few swung the ETA by a factor of two.
"""
from __future__ import annotations

import sys
import time
from collections import deque

from tqdm import tqdm


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


class _Bar(tqdm):
    """tqdm's bar showing the run's own figures: s/frame and the time left from the last
    frames' mean (not tqdm's rate), the elapsed time since the run began (not since the
    first frame, when the bar appears) and the last frame's number."""

    FORMAT = ("{percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} frames "
              "[{elapsed}<{left}, {per_frame} s/frame] last {last}")
    monitor_interval = 0  # no monitor thread: the bar is redrawn at every frame anyway

    def __init__(self, progress: Progress, **kwargs):
        self.progress = progress  # before tqdm's __init__, which draws the bar once
        super().__init__(**kwargs)

    @property
    def format_dict(self):
        d = super().format_dict
        p = self.progress
        per, eta = p.seconds_per_frame(), p.eta_seconds()
        if not (d["ncols"] or 0) > 0:  # a terminal that says it is 0 wide: a 10-wide bar
            d["ncols"] = None
        d.update(elapsed=max(time.time() - p.started, 0.0),
                 per_frame="?" if per is None else f"{per:.2f}",
                 left="?" if eta is None else tqdm.format_interval(eta),
                 last="-" if p.last is None else f"{p.last:08d}")
        return d

    def __del__(self):
        # tqdm closes (redraws) a bar when it is collected, which can be after the message
        # of an interruption: the bar would come back under it. Progress closes its bar
        # when the run is complete, or when told to.
        pass


class Progress:
    """Frames done, seconds a frame and an ETA from the last frames' mean, and messages
    (`info`) at verbosity levels: nothing at verbose 0; at 1 the bar or the per-frame lines
    and the run's messages; -v 2 lines (one per octave) pass level=2."""

    WINDOW = 50
    WARM_UP = 3.0  # a first frame this many times the median is warm-up, not the pace

    def __init__(self, total: int, verbose: int = 1, stream=None):
        self.total, self.verbose = total, verbose
        self.stream = stream if stream is not None else sys.stderr
        self.done = 0
        self.last: int | None = None
        self.recent: deque[float] = deque(maxlen=self.WINDOW)
        self.warming = True
        self.tty = bool(getattr(self.stream, "isatty", None) and self.stream.isatty())
        self.started = time.time()
        self._bar: _Bar | None = None  # drawn at the first frame, as the old bar was
        self.closed = False

    def seconds_per_frame(self) -> float | None:
        return sum(self.recent) / len(self.recent) if self.recent else None

    def _drop_warm_up(self) -> None:
        """Leaves out the run's first frames while they are far above the median; decided
        for good once five frames are in (fewer cannot tell warm-up from the pace)."""
        laps = self.recent
        median = sorted(laps)[len(laps) // 2]
        while len(laps) > 1 and laps[0] > self.WARM_UP * median:
            laps.popleft()
        self.warming = len(laps) < 5

    def eta_seconds(self) -> float | None:
        per = self.seconds_per_frame()
        return None if per is None else per * max(self.total - self.done, 0)

    def frame_done(self, k: int, seconds: float) -> None:
        self.done += 1
        self.last = k
        self.recent.append(seconds)
        if self.warming:
            self._drop_warm_up()
        if self.verbose < 1:
            return
        if self.tty and not self.closed:
            self._draw()
        else:
            self._line(f"frame {k:08d} done: {self.done}/{self.total} frames, "
                       f"{self.seconds_per_frame():.2f} s/frame, "
                       f"ETA {_duration(self.eta_seconds() or 0)}")
        if self.done >= self.total:
            self.close()

    def info(self, text: str, level: int = 1) -> None:
        if self.verbose < level:
            return
        bar = self._bar if not self.closed else None
        if bar is not None:
            bar.clear()  # the message takes the bar's line, the bar is drawn again below it
        self._line(text)
        if bar is not None:
            bar.refresh()

    def close(self) -> None:
        """Ends the bar's line (left on screen); done by itself when the last frame is in,
        and harmless twice. Frames after it are reported as plain lines."""
        if self._bar is not None:
            self._bar.close()  # tqdm's close does nothing a second time
            self._bar = None
        self.closed = True

    def _draw(self) -> None:
        if self._bar is None:
            self._bar = _Bar(self, total=self.total, initial=self.done, file=self.stream,
                             bar_format=_Bar.FORMAT, leave=True, position=0,
                             mininterval=0, miniters=1, dynamic_ncols=True, disable=False)
        else:
            self._bar.update(self.done - self._bar.n)

    def _line(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()


class Timer:
    def __init__(self):
        self.start = time.perf_counter()

    def lap(self) -> float:
        now = time.perf_counter()
        elapsed, self.start = now - self.start, now
        return elapsed
