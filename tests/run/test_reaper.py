"""dreamer.run.reaper: a killed --workers run takes the processes its Ray started with it.

Plain processes stand in for Ray's: a 'driver' starts a process tree (a parent that starts a
child, as the raylet starts its agents), then the reaper, and is killed with SIGKILL."""
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from dreamer.run import reaper

pytestmark = pytest.mark.skipif(not Path("/proc").is_dir(), reason="the reaper reads /proc")

DRIVER = textwrap.dedent("""
    import subprocess, sys, time
    from dreamer.run import reaper
    kept = subprocess.Popen(["sleep", "300"])          # the run's own, before Ray
    before = reaper.children()
    tree = subprocess.Popen(["bash", "-c", "sleep 300 & sleep 300 & wait"])  # 'Ray'
    time.sleep(0.5)
    r = reaper.Reaper.start(before)
    time.sleep(1.5)                                     # the reaper notes the family
    print(kept.pid, tree.pid, flush=True)
    if sys.argv[1] == "clean":
        sys.stdin.readline()
        subprocess.run(["pkill", "-KILL", "-P", str(tree.pid)]); tree.kill(); tree.wait()
        r.close(); print("closed", flush=True); time.sleep(300)
    time.sleep(300)
""")


def alive(pid: int) -> bool:
    return reaper.start_time(pid) is not None and \
        "Z" not in Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[:1]


def start(how: str):
    root = Path(__file__).resolve().parents[2]
    driver = subprocess.Popen([sys.executable, "-c", DRIVER, how], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(root)})
    kept, tree = map(int, driver.stdout.readline().split())
    family = reaper.descendants([tree], reaper.parents())
    assert len(family) == 3  # bash and its two sleeps
    return driver, kept, family


def wait_dead(pids, seconds=10.0) -> list[int]:
    end = time.monotonic() + seconds
    while time.monotonic() < end and any(map(alive, pids)):
        time.sleep(0.1)
    return [p for p in pids if alive(p)]


def test_a_killed_driver_takes_what_it_started_with_it_within_seconds():
    driver, kept, family = start("kill")
    try:
        driver.send_signal(signal.SIGKILL)
        driver.wait()
        assert wait_dead(family) == []
        assert alive(kept)  # what the run had before Ray is not Ray's: left alone
    finally:
        os.kill(kept, signal.SIGKILL)


def test_the_child_of_a_parent_killed_first_is_still_found():
    """Ray's parents (the raylet) die first and leave their children to init: the reaper
    noted them while the family was whole."""
    driver, kept, family = start("kill")
    try:
        bash, *sleeps = family
        os.kill(bash, signal.SIGKILL)  # the sleeps are orphans now, their parent is init
        time.sleep(0.3)
        driver.send_signal(signal.SIGKILL)
        driver.wait()
        assert wait_dead(sleeps) == []
    finally:
        os.kill(kept, signal.SIGKILL)


def test_a_run_that_closes_normally_leaves_everything_else_alone():
    driver, kept, family = start("clean")
    try:
        driver.stdin.write("go\n")
        driver.stdin.flush()
        assert driver.stdout.readline().strip() == "closed"
        time.sleep(1.5)
        assert alive(kept) and alive(driver.pid)
    finally:
        driver.kill()
        driver.wait()
        os.kill(kept, signal.SIGKILL)
