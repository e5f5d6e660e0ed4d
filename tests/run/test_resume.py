"""Nothing lost: interrupted, killed, resumed and chained runs give the same frames as
one uninterrupted run, byte for byte."""
from __future__ import annotations

import contextlib
import io
import json
import random
import re
import signal
import subprocess
import sys
import time
import types

import pytest

from conftest import ROOT, run_dream, tree_hashes, write_frames
from dreamer.run.manifest import JOURNAL_NAME, MANIFEST_NAME


def dream_cmd(frames, out, model, *extra):
    return [sys.executable, str(ROOT / "2_dreaming_time.py"), "-i", str(frames), "-o",
            str(out), "-t", str(model), "-m", "tiny.caffemodel", "-oct", "2", "-itr", "3",
            "-l", "inception_4c/output", "inception_3a/output", "-v", "0", *map(str, extra)]


def here(cmd, check=False, **_):
    """A dream_cmd run in this process, as subprocess.run would report it: stage 2's
    command line without a Python start-up (seconds each) for the tests that do not kill
    it."""
    from dreamer.cli.dream import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in cmd[2:]])
        except SystemExit as e:
            code = e.code
    if check:
        assert code == 0, err.getvalue()
    return types.SimpleNamespace(returncode=code, stdout=out.getvalue(), stderr=err.getvalue())


def frame_bytes(folder, pattern="0*.*"):
    return {p.name: p.read_bytes() for p in sorted(folder.glob(pattern))}


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    d = tmp_path_factory.mktemp("resume clip")
    write_frames(d / "frames", 24, size=(96, 80))
    write_frames(d / "jframes", 6, size=(96, 80), image_type="jpg")
    return d


@pytest.fixture(scope="module")
def reference(clip, tiny_model):
    """One uninterrupted run over all frames, png and jpg."""
    for frames, out in (("frames", "ref"), ("jframes", "jref")):
        r = subprocess.run(dream_cmd(clip / frames, clip / out, tiny_model, "--seed", 5),
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
    return clip


def wait_for(path, timeout=60):
    deadline = time.time() + timeout
    while not path.exists() and time.time() < deadline:
        time.sleep(0.01)


@pytest.mark.slow
@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_interrupt_says_where_to_resume_and_the_same_command_finishes(reference, tiny_model,
                                                                      tmp_path, sig):
    out = tmp_path / "out"
    cmd = dream_cmd(reference / "frames", out, tiny_model, "--seed", 5)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(out / "00000003.png")
    proc.send_signal(getattr(signal, sig))
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in err
    line = err.strip()
    assert "\n" not in line and "run the same command again" in line
    k = int(re.search(r"interrupted during frame (\d+)", line).group(1))
    assert sorted(int(p.stem) for p in out.glob("0*.png")) in (list(range(1, k)),
                                                               list(range(1, k + 1)))
    assert not list(out.glob(".*.tmp"))
    assert json.loads((out / MANIFEST_NAME).read_text())["runs"][0]["status"] == \
        f"interrupted at frame {k}"
    again = here(cmd, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert frame_bytes(out) == frame_bytes(reference / "ref")


@pytest.mark.slow
@pytest.mark.parametrize("frames,ref,kind", [("frames", "ref", "png"), ("jframes", "jref", "jpg")])
def test_kill_9_at_random_moments_then_resume_is_byte_identical(reference, tiny_model,
                                                                 tmp_path, frames, ref, kind):
    out = tmp_path / "out"
    rng = random.Random(kind)
    cmd = dream_cmd(reference / frames, out, tiny_model, "--seed", 5)
    kills = 0
    for _ in range(6):
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(1.0, 3.0))  # import and load take ~1 s: lands anywhere
        if proc.poll() is None:
            proc.kill()
            kills += 1
        proc.wait()
    final = here(cmd, capture_output=True, text=True)
    assert final.returncode == 0, final.stderr
    assert kills >= 1
    assert frame_bytes(out) == frame_bytes(reference / ref)
    assert not [p for p in out.rglob(".*.tmp")]


def test_resume_without_seed_reuses_the_drawn_seed(reference, tiny_model, tmp_path):
    out = tmp_path / "out"
    cmd = dream_cmd(reference / "frames", out, tiny_model)
    here(cmd + ["-ef", "2"], check=True, capture_output=True)
    r = here(cmd + ["-ef", "4", "-v", "1"], capture_output=True, text=True)
    assert r.returncode == 0 and "resuming at frame 3" in r.stderr
    frames = json.loads((out / MANIFEST_NAME).read_text())["frames"]
    seeds = {frames[f"{k:08d}"]["seed"] for k in range(1, 5)}
    assert len(seeds) == 1
    again = here(dream_cmd(reference / "frames", tmp_path / "b", tiny_model,
                                     "--seed", seeds.pop(), "-ef", 4), capture_output=True)
    assert again.returncode == 0
    assert frame_bytes(out) == frame_bytes(tmp_path / "b")


def test_chained_ranges_equal_one_run(reference, tiny_model, tmp_path):
    out = tmp_path / "out"
    for sf, ef in ((1, 8), (9, 17), (18, 24)):
        r = here(dream_cmd(reference / "frames", out, tiny_model, "--seed", 5, "-sf",
                                     sf, "-ef", ef), capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
    assert frame_bytes(out) == frame_bytes(reference / "ref")
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    assert [manifest["frames"][f"{k:08d}"]["run"] for k in (1, 9, 24)] == [0, 1, 2]


def test_chained_jpg_ranges_carry_the_lossless_state(reference, tiny_model, tmp_path):
    out = tmp_path / "out"
    for sf, ef in ((1, 3), (4, 6)):
        r = here(dream_cmd(reference / "jframes", out, tiny_model, "--seed", 5, "-sf",
                                     sf, "-ef", ef), capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
    assert frame_bytes(out) == frame_bytes(reference / "jref")
    # only the last state of each run is kept
    assert sorted(p.name for p in (out / ".dreamer").iterdir()) == [
        "state_00000003.png", "state_00000006.png"]


def test_chaining_with_other_parameters_starts_from_the_previous_dream(reference, tiny_model,
                                                                       tmp_path):
    out = tmp_path / "out"
    here(dream_cmd(reference / "frames", out, tiny_model, "--seed", 5, "-ef", 3),
                   check=True, capture_output=True)
    second = here(dream_cmd(reference / "frames", out, tiny_model, "--seed", 8,
                                      "-sf", 4, "-ef", 4, "-b", "0"), capture_output=True,
                            text=True)
    assert second.returncode == 0, second.stderr
    fresh = here(dream_cmd(reference / "frames", tmp_path / "fresh", tiny_model,
                                     "--seed", 8, "-sf", 4, "-ef", 4, "-b", "0"),
                           capture_output=True, text=True)
    assert fresh.returncode == 0
    # blend 0 dreams only on the carried state: chained differs from a fresh start
    assert frame_bytes(out, "00000004.png") != frame_bytes(tmp_path / "fresh")


def test_rerun_with_other_parameters_refuses_unless_overwrite(reference, tiny_model, tmp_path):
    out = tmp_path / "out"
    here(dream_cmd(reference / "frames", out, tiny_model, "--seed", 5, "-ef", 2),
                   check=True, capture_output=True)
    before = tree_hashes(out)
    r = here(dream_cmd(reference / "frames", out, tiny_model, "--seed", 5, "-ef", 2,
                                 "-s", "3"), capture_output=True, text=True)
    assert r.returncode == 2 and "--stepsize was 1.5 (now 3.0)" in r.stderr and "--overwrite" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert tree_hashes(out) == before
    ok = here(dream_cmd(reference / "frames", out, tiny_model, "--seed", 5, "-ef", 2,
                                  "-s", "3", "--overwrite"), capture_output=True, text=True)
    assert ok.returncode == 0
    assert tree_hashes(out) != before


def test_frames_of_another_seed_are_not_done_for_a_given_seed(clip, tiny_model, tmp_path):
    """A frame is done only when its record has this run's key AND seed: frames dreamed
    with the same parameters but seed 5 are refused for --seed 6 (neither kept as done nor
    resumed after), and --overwrite dreams them again, as a fresh run with seed 6 does."""
    out, fresh = tmp_path / "out", tmp_path / "fresh"
    here(dream_cmd(clip / "frames", out, tiny_model, "--seed", 5, "-ef", 2), check=True)
    here(dream_cmd(clip / "frames", fresh, tiny_model, "--seed", 6, "-ef", 2), check=True)
    assert frame_bytes(out) != frame_bytes(fresh)  # the seed matters to these frames
    before = tree_hashes(out)
    for ef in (2, 3):  # the same range (all "done"), and one frame more (a "resume")
        r = here(dream_cmd(clip / "frames", out, tiny_model, "--seed", 6, "-ef", ef, "-v", 1))
        assert r.returncode == 2, r.stderr
        assert re.search(r"--seed was \d+ \(now \d+\)", r.stderr) and "--overwrite" in r.stderr
        assert "nothing to do" not in r.stderr and "resuming" not in r.stderr
        assert tree_hashes(out) == before
    r = here(dream_cmd(clip / "frames", out, tiny_model, "--seed", 6, "-ef", 2, "-v", 1,
                       "--overwrite"))
    assert r.returncode == 0 and "nothing to do" not in r.stderr, r.stderr
    assert frame_bytes(out) == frame_bytes(fresh)
    records = json.loads((out / MANIFEST_NAME).read_text())["frames"]
    assert {records[f"{k:08d}"]["seed"] for k in (1, 2)} == {6}


def test_same_command_when_done_does_nothing(reference, tiny_model, tmp_path):
    out = tmp_path / "out"
    cmd = dream_cmd(reference / "frames", out, tiny_model, "--seed", 5, "-ef", 2)
    here(cmd, check=True, capture_output=True)
    before = tree_hashes(out)
    r = here(cmd + ["-v", "1"], capture_output=True, text=True)
    assert r.returncode == 0 and "nothing to do" in r.stderr
    assert tree_hashes(out) == before


def test_frames_not_made_by_the_tool_are_never_replaced_unasked(reference, tiny_model,
                                                                tmp_path):
    out = tmp_path / "out"
    write_frames(out, 2, size=(96, 80))
    before = tree_hashes(out)
    r = run_dream(*dream_cmd(reference / "frames", out, tiny_model, "-ef", 3)[2:])
    assert r.returncode == 2 and "not made by this tool" in r.stderr
    assert tree_hashes(out) == before


def test_stale_temporary_files_and_torn_journal_lines_are_handled(reference, tiny_model,
                                                                  tmp_path):
    out = tmp_path / "out"
    cmd = dream_cmd(reference / "frames", out, tiny_model, "--seed", 5, "-ef", 4)
    here(cmd[:-1] + ["2"], check=True, capture_output=True)
    (out / ".00000003.png.abc123.tmp").write_bytes(b"half a frame")
    (out / "notes.tmp").write_text("the user's")
    (out / JOURNAL_NAME).write_text('{"frame": 3, "run": 0, "key": "x"')  # torn by a crash
    r = here(cmd, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert not (out / ".00000003.png.abc123.tmp").exists()
    assert (out / "notes.tmp").read_text() == "the user's"
    assert frame_bytes(out) == {k: v for k, v in frame_bytes(reference / "ref").items()
                                if k <= "00000004.png"}


def test_disk_full_ends_with_one_line_and_keeps_finished_frames(reference, tiny_model, tmp_path,
                                                                monkeypatch, capsys):
    import errno

    import dreamer.video.frames
    from dreamer.cli.dream import main

    saved = []
    real_save = dreamer.video.frames.Image.Image.save

    def save(self, fp, *args, **kwargs):
        if len(saved) >= 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        saved.append(1)
        return real_save(self, fp, *args, **kwargs)

    monkeypatch.setattr(dreamer.video.frames.Image.Image, "save", save)
    out = tmp_path / "out"
    code = main(dream_cmd(reference / "frames", out, tiny_model, "--seed", 5)[2:])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err
    assert "No space left on device" in err and "frames 1..3 are complete" in err
    assert sorted(p.name for p in out.glob("0*")) == [f"{k:08d}.png" for k in (1, 2, 3)]
    assert not list(out.glob(".*.tmp"))
    monkeypatch.setattr(dreamer.video.frames.Image.Image, "save", real_save)
    assert main(dream_cmd(reference / "frames", out, tiny_model, "--seed", 5)[2:]) == 0
    assert frame_bytes(out) == frame_bytes(reference / "ref")
