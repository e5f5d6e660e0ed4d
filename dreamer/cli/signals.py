"""Ctrl-C and SIGTERM, and how a command ends, in one place for every command line.

- While a command starts (PyTorch takes seconds to import) nothing is written yet:
  Ctrl-C ends the process at once with one line (`starting`).
- While it works, both signals raise KeyboardInterrupt (`Terminated` for SIGTERM), so the
  work unwinds through the blocks that finish a frame's write, stop ffmpeg and remove
  temporary files; the library turns that into `Interrupted` with where it stopped.
- `finish` turns what a command raised into its one line on stderr and its exit status.

The library (dreamer.run, dreamer.video, ...) installs no handler: only the commands do.
"""
from __future__ import annotations

import os
import signal
import sys
import threading
from contextlib import contextmanager

from dreamer.cli.oneline import os_error_line, report
from dreamer.errors import DreamerError, Interrupted


class Terminated(KeyboardInterrupt):
    """SIGTERM, unwinding as Ctrl-C does; its exit status is 143."""


def exit_at_once(signum, frame) -> None:
    """A KeyboardInterrupt raised inside an import can surface as a traceback or as
    another error, and nothing is written yet: the process simply ends with one line."""
    os.write(2, b"\nerror: interrupted\n")
    os._exit(130)


def _main_thread() -> bool:
    # only the main thread may install handlers: elsewhere (a library caller's thread)
    # nothing changes
    return threading.current_thread() is threading.main_thread()


@contextmanager
def starting():
    """Ctrl-C meanwhile ends the process with one line (exit_at_once)."""
    previous = signal.signal(signal.SIGINT, exit_at_once) if _main_thread() else None
    try:
        yield
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


class _Raise:
    """Raises KeyboardInterrupt (Terminated for SIGTERM) and notes that it did: a library
    that catches it and raises another error still reads as an interruption."""

    def __init__(self):
        self.seen: KeyboardInterrupt | None = None

    def __call__(self, signum, frame):
        self.seen = Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()
        raise self.seen


@contextmanager
def interrupts():
    """Ctrl-C and SIGTERM raise while the block runs; yields what notes them."""
    handler = _Raise()
    saved = {}
    if _main_thread():
        saved = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield handler
    finally:
        for signum, previous in saved.items():
            if previous is not None:
                signal.signal(signum, previous)


def run(body, again: str = "run the same command again", verbose: bool = False) -> int:
    """Runs a command's `body()` (its exit status) with the signals raising, and ends it
    as `finish` says. `again`: what an interrupted command's line tells the user to do."""
    with interrupts() as handler:
        try:
            return body()
        except (KeyboardInterrupt, Exception) as e:
            if handler.seen is not None and not isinstance(e, (KeyboardInterrupt,
                                                                 DreamerError)):
                e = handler.seen  # a library turned the interruption into another error
            return finish(e, again, verbose)


def finish(e: BaseException, again: str, verbose: bool = False) -> int:
    """One line on stderr for what ended a command, and its exit status; anything that
    is not a user's or the machine's problem is re-raised as the bug it is."""
    from dreamer.video.ffmpeg import FFmpegError

    if isinstance(e, Interrupted):
        print(f"\nerror: {e}", file=sys.stderr)
        return 130
    if isinstance(e, KeyboardInterrupt):
        print(f"\nerror: interrupted; {again}", file=sys.stderr)
        return 143 if isinstance(e, Terminated) else 130
    if isinstance(e, FFmpegError):
        if verbose and e.stderr_tail:
            print(e.stderr_tail, file=sys.stderr)
        return report(e, 1)
    if isinstance(e, DreamerError):
        return report(e)
    if isinstance(e, BrokenPipeError) and e.filename is None:
        raise e  # the reader of our output has had enough (`| head`): the caller ends quietly
    if isinstance(e, OSError):
        print(f"error: {os_error_line(e)}", file=sys.stderr)
        return 1
    if type(e).__name__ == "OutOfMemoryError":  # torch's, without importing torch here
        print("error: out of memory while dreaming; use -p to dream smaller frames, or "
              "fewer octaves", file=sys.stderr)
        return 1
    raise e
