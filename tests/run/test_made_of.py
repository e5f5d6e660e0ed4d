"""Nothing trusted blindly (issue 22): frames are done only when they are what was
written and were dreamed from the input frames there now; a damaged carry file is not
carried in; one run at a time per output folder."""
from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from conftest import ROOT, write_frames
from dreamer.errors import DreamerError
from dreamer.run.lock import LOCK_NAME, OutputLock
from dreamer.run.resume import state_path

from test_resume import dream_cmd, frame_bytes, here


@pytest.fixture
def films(tmp_path):
    """Two films' frames: A, and B in A's folder after stage 1 ran again on another video."""
    write_frames(tmp_path / "a", 4, size=(64, 48), seed=1)
    write_frames(tmp_path / "b", 4, size=(64, 48), seed=2)
    return tmp_path


def swap_in(films, k_from=1):
    """Stage 1 run again on film B into A's folder, from frame k_from on."""
    for p in sorted((films / "b").glob("*.png"))[k_from - 1:]:
        (films / "a" / p.name).write_bytes(p.read_bytes())


def test_a_resume_onto_another_film_is_refused(films, tiny_model):
    out = films / "out"
    assert here(dream_cmd(films / "a", out, tiny_model, "--seed", 1, "-ef", 2)).returncode == 0
    swap_in(films)
    r = here(dream_cmd(films / "a", out, tiny_model, "--seed", 1))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "frames 1..2" in r.stderr and "other input frames" in r.stderr
    assert "--overwrite" in r.stderr
    assert not (out / "00000003.png").exists()
    # --overwrite dreams them again, as a fresh run of film B does
    assert here(dream_cmd(films / "a", out, tiny_model, "--seed", 1, "--overwrite"),
                check=True)
    fresh = films / "fresh"
    here(dream_cmd(films / "b", fresh, tiny_model, "--seed", 1), check=True)
    assert frame_bytes(out) == frame_bytes(fresh)


def test_the_same_frames_touched_again_still_resume(films, tiny_model):
    out = films / "out"
    here(dream_cmd(films / "a", out, tiny_model, "--seed", 1, "-ef", 2), check=True)
    for p in (films / "a").glob("*.png"):  # rewritten with the same bytes: a new mtime
        p.write_bytes(p.read_bytes())
        os.utime(p, ns=(1, 1))
    r = here(dream_cmd(films / "a", out, tiny_model, "--seed", 1))
    assert r.returncode == 0, r.stderr


def test_a_range_does_not_carry_in_the_dream_of_another_films_frame(films, tiny_model):
    out = films / "out"
    here(dream_cmd(films / "a", out, tiny_model, "--seed", 1, "-ef", 2), check=True)
    swap_in(films, 2)
    r = here(dream_cmd(films / "a", out, tiny_model, "--seed", 1, "-sf", 3))
    assert r.returncode == 2 and "frame 2 in" in r.stderr and "carries in" in r.stderr
    assert "-sf 2" in r.stderr


def test_a_dreamed_frame_changed_afterwards_is_not_taken_as_done(films, tiny_model):
    out = films / "out"
    here(dream_cmd(films / "a", out, tiny_model, "--seed", 1), check=True)
    (out / "00000002.png").write_bytes((films / "b" / "00000002.png").read_bytes())
    r = here(dream_cmd(films / "a", out, tiny_model, "--seed", 1))
    assert r.returncode == 2 and "00000002.png" in r.stderr and "changed since" in r.stderr


def test_a_damaged_carry_file_is_not_carried_in(tmp_path, tiny_model):
    write_frames(tmp_path / "j", 4, size=(64, 48), image_type="jpg")
    out = tmp_path / "out"
    here(dream_cmd(tmp_path / "j", out, tiny_model, "--seed", 1, "-ef", 2), check=True)
    state = state_path(out, 2)
    data = bytearray(state.read_bytes())
    data[-40] ^= 0xFF  # one byte of the lossless copy flipped (size kept, mtime new)
    state.write_bytes(bytes(data))
    r = here(dream_cmd(tmp_path / "j", out, tiny_model, "--seed", 1, "-sf", 3, "-v", 1))
    assert r.returncode == 0, r.stderr
    assert "frame 3 starts from the raw frame" in r.stderr and "changed or damaged" in r.stderr


# --- one run at a time --------------------------------------------------------------------

def test_a_second_run_into_the_same_output_is_refused_while_the_first_lives(films,
                                                                             tiny_model):
    out = films / "out"
    out.mkdir()
    lock = OutputLock(out).acquire()  # the first run, holding its folder
    try:
        r = here(dream_cmd(films / "a", out, tiny_model, "--seed", 1))
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
        assert f"another run is writing into {out} (process {os.getpid()})" in r.stderr
        assert not list(out.glob("0*.png"))
    finally:
        lock.release()
    assert here(dream_cmd(films / "a", out, tiny_model, "--seed", 1)).returncode == 0
    assert not (out / LOCK_NAME).exists()


def test_the_lock_of_a_killed_run_is_not_stale(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from dreamer.run.lock import OutputLock; "
         "OutputLock(sys.argv[1]).acquire(); print('held', flush=True); time.sleep(60)",
         str(tmp_path)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(DreamerError, match=f"process {holder.pid}"):
            OutputLock(tmp_path).acquire()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    lock = OutputLock(tmp_path).acquire()  # kill -9 left the file, not the lock
    lock.release()
    assert not (tmp_path / LOCK_NAME).exists()


def test_a_refused_run_leaves_no_folder_and_no_lock(films, tiny_model):
    out = films / "new" / "out"
    r = here(dream_cmd(films / "a", out, tiny_model, "-l", "no_such_layer"))
    assert r.returncode == 2 and not (films / "new").exists()


def test_a_run_failing_at_its_first_frame_leaves_no_folder_behind(films, tiny_model,
                                                                  monkeypatch):
    from dreamer.run.frame import FrameDreamer

    def fails(self, k, state):
        raise DreamerError("the guide's frame cannot be read")
    monkeypatch.setattr(FrameDreamer, "dream", fails)
    out = films / "new" / "out"
    r = here(dream_cmd(films / "a", out, tiny_model, "--seed", 1))
    assert r.returncode == 2 and "frame 1: the guide's frame" in r.stderr, r.stderr
    assert not (films / "new").exists()
