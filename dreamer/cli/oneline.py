"""One-line errors: argparse whose usage errors are one line, as every error of this
tool is, the one line for a failed read or write, and the one line for Ctrl-C while
starting up."""
from __future__ import annotations

import argparse
import os
import signal
import sys
import threading


class OneLineParser(argparse.ArgumentParser):
    """A usage error is one line (and exit 2), not the usage text plus the error."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def one_line(e: BaseException) -> str:
    """The error's message with any line breaks folded, so it stays one line."""
    return " ".join(str(e).split())


def report(e: BaseException, code: int = 2) -> int:
    """Prints `error: <message>` on stderr as one line; returns the exit status."""
    print(f"error: {one_line(e)}", file=sys.stderr)
    return code


def os_error_line(e: OSError) -> str:
    """A failed read or write (disk full, no permission, ...) as one line: what and where,
    and what to do; the caller puts "error: " in front."""
    where = f" ({e.filename})" if e.filename else ""
    return f"{e.strerror or e}{where}; free disk space or fix permissions, then run again"


def exit_at_once(signum, frame) -> None:
    """SIGINT handler for start-up (imports, model loading): a KeyboardInterrupt raised
    inside an import can surface as a traceback or as another error, and nothing is
    written yet, so Ctrl-C simply ends the process with one line."""
    os.write(2, b"\nerror: interrupted\n")
    os._exit(130)


def interrupts_exit_at_once():
    """Installs exit_at_once for SIGINT; returns the handler it replaced. Only the main
    thread may install handlers: elsewhere (a library caller's thread) nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGINT, exit_at_once)
