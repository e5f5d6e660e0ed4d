"""`dreamvideo doctor`: the facts a bug report starts from, a line each."""
from __future__ import annotations

from dreamer.cli import dreamvideo as cli
from dreamer.video import ffmpeg


def test_doctor_names_ffmpeg_the_cpu_and_the_kernels(capsys, monkeypatch):
    monkeypatch.setenv("DREAMER_NATIVE", "auto")
    code = cli.main(["doctor"])
    out = capsys.readouterr().out
    assert "PyTorch" in out and "CPU: " in out and "CPU kernels: " in out
    try:
        exe, origin = ffmpeg.locate()
    except Exception:  # no ffmpeg here: the line says so and the exit code too
        assert code == 1 and "ffmpeg: " in out
        return
    assert f"ffmpeg: {exe} ({ffmpeg.version_string(exe)}, {origin})" in out
    assert code == 0 or "not available" in out


def test_doctor_says_what_is_wrong_and_fails(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("DREAMER_FFMPEG", str(tmp_path / "no-ffmpeg"))
    monkeypatch.setenv("DREAMER_NATIVE", "maybe")
    assert cli.main(["doctor"]) == 1
    out = capsys.readouterr().out
    assert "DREAMER_FFMPEG=" in out and "does not exist" in out
    assert "DREAMER_NATIVE=maybe is not a mode" in out


def test_doctor_with_the_kernels_off(capsys, monkeypatch):
    monkeypatch.setenv("DREAMER_NATIVE", "0")
    cli.main(["doctor"])
    assert "CPU kernels: off (DREAMER_NATIVE=0)" in capsys.readouterr().out


def test_a_reader_that_stops_early_gets_no_traceback():
    """`dreamvideo doctor | head -0`: the pipe is closed before anything is written."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "dreamer", "doctor"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141 and "Traceback" not in err, err
