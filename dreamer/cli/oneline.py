"""One-line errors: argparse whose usage errors are one line, as every error of this
tool is, and the one line for a failed read or write (dreamer.cli.signals: Ctrl-C)."""
from __future__ import annotations

import argparse
import errno
import sys


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
    name = str(e.filename) if e.filename else ""
    where = f" ({name if len(name) <= 200 else name[:100] + '...' + name[-40:]})" if name else ""
    fix = {errno.ENAMETOOLONG: "use a shorter file or folder name",
           errno.ENOSPC: "free disk space", errno.EDQUOT: "free disk space",
           errno.EACCES: "fix the permissions", errno.EPERM: "fix the permissions",
           errno.EROFS: "write somewhere writable"}.get(e.errno,
                                                        "free disk space or fix permissions")
    return f"{e.strerror or e}{where}; {fix}, then run again"
