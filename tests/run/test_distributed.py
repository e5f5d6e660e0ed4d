"""--workers N: pieces of the range dreamed at once on Ray (run/distributed.py), the
warm-up that joins them (run/warmup.py) and the one writer that keeps resume working."""
from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import ROOT, run_dream, write_frames
from dreamer.config import DreamConfig, validate
from dreamer.dream.schedule import Schedules
from dreamer.errors import DreamerError
from dreamer.run import distributed
from dreamer.run.manifest import Manifest
from dreamer.run.sequence import engine_for
from dreamer.run.serial import SerialEngine
from dreamer.run.writer import FrameWriter
from dreamer.run.warmup import FADE, Piece, auto_start, kept_share, plan_pieces, split

try:
    import ray  # noqa: F401
    HAVE_RAY = True
except ImportError:
    HAVE_RAY = False
need_ray = pytest.mark.skipif(not HAVE_RAY, reason="Ray is not installed (make venv-ray)")

# A seam the tiny net's dream leaves after the default warm-up, in grey levels (measured:
# 1.7 at the piece's first frame, falling after it); without a warm-up it was 6.8
SEAM_BOUND = 2.5


def share_of(blend, k=5, seed=1, flow=False, flow_smooth=0.4, **extra):
    config = DreamConfig(input="i", output="o", blend=blend, flow=flow, **extra)
    return kept_share(Schedules(config).at(k, seed), flow, flow_smooth)


# --- the warm-up rule -------------------------------------------------------------------

def test_a_half_blend_warms_up_until_the_missing_dream_weighs_under_one_grey_level():
    start = auto_start(20, 1, lambda k: share_of("0.5", k))
    assert 20 - start == 7  # 0.5 ** 8 = 1/256: frames 13..20 each halve what 13 lacks
    assert 0.5 ** (20 - start + 1) <= FADE < 0.5 ** (20 - start)


def test_no_warm_up_where_the_blend_keeps_nothing_and_all_of_it_where_it_keeps_all():
    assert auto_start(20, 1, lambda k: share_of("1", k)) == 20
    assert auto_start(20, 4, lambda k: share_of("0", k)) == 4  # never fades: the range start


def test_the_loop_blend_warms_up_from_its_last_frame_that_keeps_nothing():
    shares = {k: share_of("loop", k) for k in range(1, 31)}
    assert shares[17] == 0.0  # -b loop reaches b = 1 at frames 7, 17, 27
    # the missing dream fades below a grey level from frame 18 on; one frame more starts
    # where the uninterrupted run keeps nothing either: the piece is exact
    assert np.prod([shares[k] for k in range(18, 23)]) <= FADE
    assert auto_start(22, 1, shares.get) == 17
    assert auto_start(22, 1, shares.get, reach=0) == 18


def test_with_flow_the_moved_dream_is_what_carries_and_fades_slowly():
    assert share_of("0.5", flow=True) == pytest.approx(0.9 + 0.4 * 0.1)
    assert share_of("0.3", flow=True, flow_smooth=0.0, flow_blend=0.3) == 0.7  # 1 - b wins
    start = auto_start(500, 1, lambda k: share_of("0.5", k, flow=True))
    assert 500 - start == 89  # 0.94 ** 90 < 1/255 < 0.94 ** 89


def test_pieces_split_the_missing_frames_evenly_and_at_the_done_ones():
    assert split(list(range(1, 11)), 3) == [(1, 4), (5, 7), (8, 10)]
    assert split([1, 2, 3, 7, 8, 9], 2) == [(1, 3), (7, 9)]
    assert split([1, 2, 5, 6], 1) == [(1, 2), (5, 6)]
    assert split([4], 3) == [(4, 4)]


def test_pieces_carry_in_saved_dreams_and_warm_up_only_where_there_is_none():
    done = {1, 2, 3, 4, 5, 6}
    pieces = plan_pieces(list(range(7, 21)), 2, 1, lambda keep: keep - 3,
                         lambda j: j in done)
    # 7 follows a done frame: it carries frame 6 in, as a resumed run does
    assert pieces[0] == Piece(7, 7, 13, 6)
    assert pieces[1] == Piece(11, 14, 20, None)  # warm-up from the raw frame 11
    # a saved dream inside the warm-up is used: exact from there on
    near = plan_pieces([9, 10], 1, 1, lambda keep: keep - 5, lambda j: j in {5})
    assert near == [Piece(6, 9, 10, 5)]
    # the range's start carries in the dream before it, whatever made it
    assert plan_pieces([4, 5], 1, 4, lambda k: k, lambda j: j == 3) == [Piece(4, 4, 5, 3)]
    assert plan_pieces([4, 5], 1, 4, lambda k: k, lambda j: False) == [Piece(4, 4, 5, None)]


# --- the one writer ---------------------------------------------------------------------

def test_interleaved_pieces_keep_the_jpg_state_a_resume_needs_and_drop_the_rest(tmp_path):
    from dreamer.run.progress import Progress
    from dreamer.run.resume import state_path
    from dreamer.video.frames import FrameSet

    frames = FrameSet(tmp_path / "in", "jpg", 1, 8)
    manifest = Manifest(tmp_path)
    manifest.start_run({})
    writer = FrameWriter(tmp_path, frames, manifest, "key", 1, Progress(8, 0))
    frame = np.zeros((4, 4, 3), np.uint8)
    for k in (1, 5, 2, 6, 3):  # two pieces, 1..4 and 5..8, arriving interleaved
        writer.save(k, frame, {"seconds": 0.1})
    writer.flush()
    kept = sorted(k for k in range(1, 9) if state_path(tmp_path, k).exists())
    assert kept == [3, 6]  # each piece's last frame so far: what frames 4 and 7 carry in
    for k in (4, 7, 8):
        writer.save(k, frame, {"seconds": 0.1})
    writer.close()
    assert [k for k in range(1, 9) if state_path(tmp_path, k).exists()] == [8]
    assert sorted(Manifest(tmp_path).frames) == list(range(1, 9))


# --- settings -----------------------------------------------------------------------------

def test_worker_settings_without_workers_are_refused_not_ignored():
    config = DreamConfig(input="i", output="o")
    validate(config)
    for extra in (dict(address="10.0.0.5:6379"), dict(warmup=3)):
        with pytest.raises(DreamerError, match="only applies with --workers 2 or more"):
            validate(dataclasses.replace(config, **extra))
    with pytest.raises(DreamerError, match="--workers must be 1 or more"):
        validate(dataclasses.replace(config, workers=0))
    validate(dataclasses.replace(config, workers=2, warmup=0))
    assert isinstance(engine_for(dataclasses.replace(config, workers=1)), SerialEngine)


def test_without_ray_workers_say_how_to_install_it(tiny_model, tmp_path, monkeypatch):
    from dreamer.run.sequence import dream_sequence

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray fails, as where it is absent
    write_frames(tmp_path / "in", 2)
    config = DreamConfig(input=str(tmp_path / "in"), output=str(tmp_path / "out"),
                         model_path=str(tiny_model), model_name="tiny.caffemodel",
                         workers=2, verbose=0)
    with pytest.raises(DreamerError, match=r"pip install 'dreamer\[ray\]'.*--workers 1"):
        dream_sequence(config)
    assert not (tmp_path / "out").exists()


@need_ray
def test_an_unreachable_ray_address_is_one_line(tiny_model, tmp_path):
    write_frames(tmp_path / "in", 2)
    env = {**os.environ, "RAY_ADDRESS": "127.0.0.1:1"}
    r = subprocess.run([sys.executable, str(ROOT / "2_dreaming_time.py"), "-i",
                        tmp_path / "in", "-o", tmp_path / "out", "-t", tiny_model, "-m",
                        "tiny.caffemodel", "--workers", "2"], capture_output=True, text=True,
                       env=env, timeout=120)
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert "cannot reach a Ray cluster at 127.0.0.1:1" in r.stderr
    assert "ray start --head" in r.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("how", ["RAY_ADDRESS", "--address"])
def test_an_unreachable_ray_address_is_refused_at_once(tiny_model, tmp_path, monkeypatch, how):
    """At once: Ray is never asked to join it (ray.init retries an address nobody answers
    at for minutes), the address is tried once with a bounded wait, and nothing is
    prepared. A stand-in for Ray counts the calls, so this runs without Ray too."""
    import socket
    import types

    from dreamer.run.sequence import dream_sequence

    calls = []
    fake_ray = types.ModuleType("ray")
    fake_ray.init = lambda *a, **kw: calls.append(("ray.init", a, kw))
    fake_ray.is_initialized = lambda: False
    fake_ray.shutdown = lambda: calls.append(("ray.shutdown",))
    monkeypatch.setitem(sys.modules, "ray", fake_ray)
    real_connect = socket.create_connection

    def create_connection(address, timeout=None, *args, **kwargs):
        calls.append(("connect", address, timeout))
        return real_connect(address, timeout, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", create_connection)
    write_frames(tmp_path / "in", 2)
    extra = dict(address="127.0.0.1:1")
    if how == "RAY_ADDRESS":
        monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:1")
        extra = {}
    config = DreamConfig(input=str(tmp_path / "in"), output=str(tmp_path / "out"),
                         model_path=str(tiny_model), model_name="tiny.caffemodel",
                         workers=2, verbose=0, **extra)
    with pytest.raises(DreamerError, match=r"cannot reach a Ray cluster at 127\.0\.0\.1:1 .*"
                                           r"'ray start --head'"):
        dream_sequence(config)
    assert [c[:2] for c in calls] == [("connect", ("127.0.0.1", 1))]
    assert 0 < calls[0][2] <= 10  # seconds: a bounded wait, never the default of none
    assert not (tmp_path / "out").exists()


def test_a_server_that_speaks_http2_but_never_answers_as_ray_is_given_up(monkeypatch):
    """The address check lets through anything that speaks HTTP/2; ray.init then waits for
    ever on a server that is not Ray's (QA's silent SETTINGS-only server): joining gives up
    after JOIN_SECONDS with one line."""
    import threading
    import types

    from dreamer.run import distributed

    release = threading.Event()
    fake_ray = types.ModuleType("ray")
    fake_ray.init = lambda *a, **kw: release.wait(30)  # a join that never comes back
    monkeypatch.setattr(distributed, "JOIN_SECONDS", 0.5)
    try:
        with pytest.raises(DreamerError, match=r"cannot reach a Ray cluster at 10\.0\.0\.5:6379 "
                                               r"\(no answer as a Ray cluster within 0\.5 s\)"):
            distributed.connect(fake_ray, "10.0.0.5:6379")
    finally:
        release.set()


# --- on a local Ray -----------------------------------------------------------------------

def dream_args(tiny_model, frames, out, *extra):
    return ["-i", frames, "-o", out, "-t", tiny_model, "-m", "tiny.caffemodel", "-oct", "2",
            "-itr", "3", "-l", "inception_4c/output", "--seed", "5", "-v", "0", *extra]


def pixels(folder: Path) -> dict[int, np.ndarray]:
    return {int(p.stem): np.asarray(Image.open(p), dtype=np.float64)
            for p in sorted(folder.glob("0*.png"))}


def seams(a: Path, b: Path) -> dict[int, float]:
    """Mean |difference| per frame, in grey levels."""
    pa, pb = pixels(a), pixels(b)
    assert sorted(pa) == sorted(pb)
    return {k: float(np.abs(pa[k] - pb[k]).mean()) for k in pa}


@pytest.fixture(scope="module")
def single_run(tiny_model, tmp_path_factory):
    """20 frames dreamed by one process: what the pieces are held against."""
    folder = tmp_path_factory.mktemp("single")
    write_frames(folder / "in", 20, size=(64, 48))
    r = run_dream(*dream_args(tiny_model, folder / "in", folder / "out"))
    assert r.returncode == 0, r.stderr
    return folder / "in", folder / "out"


@need_ray
@pytest.mark.slow  # 17 s of Ray and two workers starting: the default run is near its 5 min
def test_two_workers_write_every_frame_as_one_run_does_up_to_the_seam(tiny_model, tmp_path,
                                                                      single_run):
    frames, single = single_run
    out = tmp_path / "out"
    r = run_dream(*dream_args(tiny_model, frames, out, "--workers", "2", "-v", "1"))
    assert r.returncode == 0, r.stderr
    # Ray's own messages stay out of the way: ours and a progress line a frame (not a tty)
    assert "pieces starting at frames 1 (warm-up 0), 11 (warm-up 7)" in r.stderr
    noise = [line for line in r.stderr.splitlines() if line and not line.startswith(
        ("20 frames on", "seed ", "frame "))]
    assert not noise, noise
    diffs = seams(single, out)
    assert max(diffs[k] for k in range(1, 11)) < 0.05  # piece 1 starts where the run does
    assert 0 < diffs[11] < SEAM_BOUND and max(diffs.values()) == diffs[11]
    manifest = Manifest(out)
    assert sorted(manifest.frames) == list(range(1, 21))
    run = manifest.run(0)
    assert run["status"] == "complete" and run["workers"]["count"] == 2
    assert not (out / "dream_manifest.journal").exists()


@need_ray
@pytest.mark.slow
def test_with_the_loop_blend_pieces_join_exactly(tiny_model, tmp_path):
    write_frames(tmp_path / "in", 20, size=(64, 48))
    for name, extra in (("single", []), ("pieces", ["--workers", "2"])):
        r = run_dream(*dream_args(tiny_model, tmp_path / "in", tmp_path / name, "-b", "loop",
                                  *extra))
        assert r.returncode == 0, r.stderr
    assert max(seams(tmp_path / "single", tmp_path / "pieces").values()) < 0.05


@need_ray
@pytest.mark.slow
def test_without_a_warm_up_the_seam_is_many_times_larger(tiny_model, tmp_path, single_run):
    frames, single = single_run
    r = run_dream(*dream_args(tiny_model, frames, tmp_path / "cold", "--workers", "2",
                              "--warmup", "0"))
    assert r.returncode == 0, r.stderr
    cold = seams(single, tmp_path / "cold")[11]
    assert cold > 2 * SEAM_BOUND, cold


def ray_worker_pids() -> set[int]:
    """Processes of our Ray actors (Ray names them after the class)."""
    pids = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if cmdline.startswith(b"ray::DreamWorker"):
                pids.add(int(entry.name))
    return pids


def wait_for_frames(out: Path, n: int, proc: subprocess.Popen, timeout=240) -> None:
    deadline = time.time() + timeout
    while len(list(out.glob("0*.png"))) < n and time.time() < deadline:
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)


@need_ray
@pytest.mark.slow
def test_a_killed_worker_s_frames_are_dreamed_by_another(tiny_model, tmp_path, single_run):
    frames, single = single_run
    out = tmp_path / "out"
    before = ray_worker_pids()
    cmd = [sys.executable, str(ROOT / "2_dreaming_time.py"),
           *map(str, dream_args(tiny_model, frames, out, "--workers", "2", "-itr", "30"))]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    wait_for_frames(out, 3, proc)
    victims = sorted(ray_worker_pids() - before)
    assert len(victims) == 2
    os.kill(victims[0], signal.SIGKILL)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    assert sorted(Manifest(out).frames) == list(range(1, 21))


@need_ray
@pytest.mark.slow
def test_after_kill_9_of_the_driver_a_rerun_dreams_only_the_missing_frames(tiny_model,
                                                                           tmp_path,
                                                                           single_run):
    frames, single = single_run
    out = tmp_path / "out"
    args = list(map(str, dream_args(tiny_model, frames, out, "--workers", "2", "-itr", "30")))
    before = ray_worker_pids()
    proc = subprocess.Popen([sys.executable, str(ROOT / "2_dreaming_time.py"), *args],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_frames(out, 6, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    kept = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in out.glob("0*.png")}
    assert 6 <= len(kept) < 20
    deadline = time.time() + 60  # Ray's workers follow their driver
    while ray_worker_pids() - before and time.time() < deadline:
        time.sleep(0.5)
    assert not ray_worker_pids() - before
    r = run_dream(*args, timeout=600)
    assert r.returncode == 0, r.stderr
    for name, (data, mtime) in kept.items():
        assert (out / name).read_bytes() == data and (out / name).stat().st_mtime_ns == mtime
    manifest = Manifest(out)
    assert sorted(manifest.frames) == list(range(1, 21))
    second = {k for k, rec in manifest.frames.items() if rec["run"] == 1}
    assert second == set(range(1, 21)) - {int(name[:8]) for name in kept}


@need_ray
@pytest.mark.slow
def test_jpg_pieces_leave_only_the_last_frame_s_lossless_dream(tiny_model, tmp_path):
    write_frames(tmp_path / "in", 12, size=(64, 48), image_type="jpg")
    out = tmp_path / "out"
    r = run_dream(*dream_args(tiny_model, tmp_path / "in", out, "--workers", "2"))
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in (out / ".dreamer").glob("state_*")) == ["state_00000012.png"]


@need_ray
@pytest.mark.slow
def test_more_workers_than_the_cluster_has_cpus_is_the_only_line(tiny_model, tmp_path):
    write_frames(tmp_path / "in", 4, size=(64, 48))
    cpus = os.cpu_count() or 1
    r = run_dream(*dream_args(tiny_model, tmp_path / "in", tmp_path / "out", "-v", "1",
                              "--workers", cpus + 6))
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert f"needs {cpus + 6} CPUs" in r.stderr and "pieces" not in r.stderr
    assert not (tmp_path / "out").exists()


def _serve(reply: bytes | None):
    """A one-connection TCP server on localhost answering `reply` (None: silence)."""
    import socket
    import threading

    server = socket.create_server(("127.0.0.1", 0))

    def answer():
        conn, _ = server.accept()
        with conn:
            conn.recv(64)
            if reply is not None:
                conn.sendall(reply)
            else:
                time.sleep(2)
        server.close()
    threading.Thread(target=answer, daemon=True).start()
    return f"127.0.0.1:{server.getsockname()[1]}"


@pytest.mark.parametrize("reply,message", [
    (b"HTTP/1.1 400 Bad Request\r\n\r\n", "answers, but not as a Ray cluster does"),
    (None, "cannot reach a Ray cluster at .* \\(timed out\\)"),
])
def test_an_address_that_is_not_ray_is_refused_at_once(monkeypatch, reply, message):
    monkeypatch.setattr(distributed, "CONNECT_TIMEOUT", 0.5)
    address = _serve(reply)
    started = time.monotonic()
    with pytest.raises(DreamerError, match=message):
        distributed._check_reachable(address)
    assert time.monotonic() - started < 5  # (not Ray's minutes of retries)


def test_a_grpc_server_passes_the_check():
    # a Ray cluster's first answer (read off a real 'ray start --head'): a SETTINGS frame
    distributed._check_reachable(_serve(bytes([0, 0, 0x18, 4, 0, 0, 0, 0, 0]) + bytes(24)))
