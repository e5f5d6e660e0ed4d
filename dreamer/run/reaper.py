"""Takes down the Ray cluster a `--workers` run started when the run itself is killed
outright (kill -9, the OOM killer): Ray's own processes noticed only after about a minute,
holding the CPUs and memory meanwhile.

The run starts a small watcher process and keeps a pipe to it open. The watcher learns the
processes the run's `ray.init` started (their pids and start times, so that a reused pid is
never hit) and waits for the pipe to close, which happens however the run ends. By then a
run that ended normally has shut Ray down and nothing is left; otherwise the watcher kills
what remains of those processes and everything they started (workers, agents).

Linux only (it reads /proc); elsewhere the run goes on without it.
"""
from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
from pathlib import Path

PROC = Path("/proc")
POLL = 1.0  # seconds between looks at the cluster's processes


def start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (field 22 of /proc/PID/stat)."""
    try:
        stat = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2:].split()[19]  # fields after the name, 3 onwards


def parents() -> dict[int, int]:
    """pid -> parent pid of every process now."""
    found = {}
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue  # gone meanwhile
            found[int(entry.name)] = int(stat[stat.rindex(")") + 2:].split()[1])
    return found


def descendants(roots: list[int], tree: dict[int, int]) -> list[int]:
    children: dict[int, list[int]] = {}
    for pid, ppid in tree.items():
        children.setdefault(ppid, []).append(pid)
    found, todo = [], list(roots)
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += children.get(pid, [])
    return found


def children() -> set[int]:
    return {pid for pid, ppid in parents().items() if ppid == os.getpid()} \
        if PROC.is_dir() else set()


def started_since(before: set[int]) -> list[str]:
    """pid:start of the run's children that were not there `before` (what ray.init
    started, nothing the run had already)."""
    return [f"{pid}:{t}" for pid in children() - before if (t := start_time(pid))]


class Reaper:
    """The run's side: note `children()` before `ray.init`, then `Reaper.start(before)`
    right after it; `close()` after `ray.shutdown`."""

    def __init__(self, process: subprocess.Popen | None):
        self.process = process

    @classmethod
    def start(cls, before: set[int]) -> Reaper:
        known = started_since(before)
        if not known:
            return cls(None)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            [str(Path(__file__).resolve().parents[2]), os.environ.get("PYTHONPATH", "")])}
        try:
            process = subprocess.Popen(
                [sys.executable, "-m", "dreamer.run.reaper", *known], stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                start_new_session=True)  # a Ctrl-C to the run's terminal is not for it
        except OSError:
            return cls(None)  # the run works as before, only without this safety net
        return cls(process)

    def close(self) -> None:
        if self.process is not None:
            self.process.stdin.close()  # the watcher finds nothing left and ends
            self.process = None


def family(known: set[str]) -> set[str]:
    """`known` (pid:start) still running as themselves, with all their descendants now."""
    alive = [int(pid) for pid, t in (k.split(":") for k in known) if start_time(int(pid)) == t]
    return {f"{pid}:{t}" for pid in descendants(alive, parents()) if (t := start_time(pid))}


def reap(known: list[str]) -> int:
    """Kills the processes in `known` (pid:start) still running as themselves, and all
    their descendants; returns how many were signalled."""
    victims = family(set(known))
    for pid in sorted(int(v.split(":")[0]) for v in victims):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    return len(victims)


def main(known: list[str]) -> int:
    """Watches until the run's pipe closes, noting every process of the cluster as it
    appears: killed, Ray's parents go first and leave their children to init, so the
    family has to be known before."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    seen = set(known)
    while not select.select([sys.stdin], [], [], POLL)[0]:
        seen |= family(seen)
    if sys.stdin.buffer.read(1):
        return 2  # nobody writes to the pipe: not the run's
    reap(list(seen))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
