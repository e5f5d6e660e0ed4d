"""One run at a time per output folder: two runs writing the same frames would replace
each other's, and the manifest would show a run that never finished. The lock is the
kernel's (flock), so it goes with its owner: a run killed by kill -9 or a crash leaves
no stale lock behind. Its file is removed when the run ends, so a refused run leaves
its folder as it found it."""
from __future__ import annotations

import fcntl
import os
from pathlib import Path

from dreamer.errors import DreamerError

LOCK_NAME = ".dreamer.lock"


class OutputLock:
    """Taken before a run touches anything in `folder`; a second run is refused in one
    line while the first lives."""

    def __init__(self, folder: Path):
        self.path = Path(folder) / LOCK_NAME
        self.fd: int | None = None

    def acquire(self) -> "OutputLock":
        while self.fd is None:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                owner = os.pread(fd, 32, 0).decode(errors="replace").strip()
                os.close(fd)
                raise DreamerError(f"another run is writing into {self.path.parent}"
                                   f"{f' (process {owner})' if owner else ''}; wait for it "
                                   "to finish, or choose another -o") from None
            if _same_file(fd, self.path):
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
                self.fd = fd
            else:  # the owner removed it as we opened it: take the new one
                os.close(fd)
        return self

    def release(self) -> None:
        if self.fd is not None:
            self.path.unlink(missing_ok=True)  # (while held: a waiter then retries)
            os.close(self.fd)
            self.fd = None


def _same_file(fd: int, path: Path) -> bool:
    try:
        st = path.stat()
    except FileNotFoundError:
        return False
    here = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (here.st_dev, here.st_ino)
