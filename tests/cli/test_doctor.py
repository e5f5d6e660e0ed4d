"""`dreamvideo doctor`: the facts a bug report starts from, a line each."""
from __future__ import annotations

import os
import sys

import torch

from dreamer.cli import dreamvideo as cli
from dreamer.video import ffmpeg


def test_doctor_names_ffmpeg_the_cpu_and_the_kernels(capsys, monkeypatch, kernels,
                                                     kernel_choices_cache):
    """Where all is well (ffmpeg comes with imageio-ffmpeg, a dependency; the kernels were
    built), doctor exits 0 and prints a line for each fact, in this order."""
    import dreamer
    from dreamer.caffe import native

    monkeypatch.setenv("DREAMER_NATIVE", "auto")
    monkeypatch.delenv(ffmpeg.ENV_VAR, raising=False)
    code = cli.main(["doctor"])
    out = capsys.readouterr().out.splitlines()
    exe, origin = ffmpeg.locate()
    assert out[:2] == [
        f"dreamer {dreamer.__version__}, Python {sys.version.split()[0]}, PyTorch "
        f"{torch.__version__}",
        f"ffmpeg: {exe} ({ffmpeg.version_string(exe)}, {origin})"]
    assert out[2].startswith("CPU: ") and out[2].endswith(
        f", {torch.get_num_threads()} threads of {os.cpu_count()} CPUs")
    assert out[3] == (f"CPU kernels: {native.variant()}; used per layer, shape and direction, "
                      "whichever of them and PyTorch's op is faster, timed on first use "
                      "(DREAMER_NATIVE=auto)")
    assert out[4].startswith(f"kernel choices cached in {kernel_choices_cache}{os.sep}")
    assert len(out) == 5
    assert code == 0


def test_doctor_fails_when_the_kernels_cannot_be_built(capsys, monkeypatch):
    from dreamer.caffe import native

    monkeypatch.setenv("DREAMER_NATIVE", "auto")
    monkeypatch.delenv(ffmpeg.ENV_VAR, raising=False)
    monkeypatch.setattr(native, "kernels", lambda: None)
    assert cli.main(["doctor"]) == 1
    out = capsys.readouterr().out
    assert "CPU kernels: not available (see the note above); PyTorch's own operations " \
           "run" in out
    assert f"ffmpeg: {ffmpeg.locate()[0]} (" in out  # the rest is still said


def test_doctor_says_what_is_wrong_and_fails(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("DREAMER_FFMPEG", str(tmp_path / "no-ffmpeg"))
    monkeypatch.setenv("DREAMER_NATIVE", "maybe")
    assert cli.main(["doctor"]) == 1
    out = capsys.readouterr().out
    assert "DREAMER_FFMPEG=" in out and "does not exist" in out
    assert "DREAMER_NATIVE=maybe is not a mode" in out


def test_doctor_with_the_kernels_off(capsys, monkeypatch):
    monkeypatch.setenv("DREAMER_NATIVE", "0")
    monkeypatch.delenv(ffmpeg.ENV_VAR, raising=False)
    assert cli.main(["doctor"]) == 0  # a choice, not a problem
    assert "CPU kernels: off (DREAMER_NATIVE=0): PyTorch's own operations" in \
        capsys.readouterr().out


def test_a_reader_that_stops_early_gets_no_traceback():
    """`dreamvideo doctor | head -0`: the pipe is closed before anything is written."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "dreamer", "doctor"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141 and "Traceback" not in err, err
