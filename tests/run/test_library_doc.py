"""docs/library.md's worked example, run as the page writes it, on a clip made for it:
the library calls dream, resume and put the sound back with no command line inside."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import imageio_ffmpeg
import pytest

from conftest import GOOGLENET, ROOT, write_frames

PAGE = ROOT / "docs" / "library.md"


def example() -> str:
    blocks = re.findall(r"```python\n(.*?)```", PAGE.read_text(encoding="utf-8"), re.S)
    assert len(blocks) == 1, "docs/library.md should hold one worked example"
    return blocks[0]


def make_clip(path: Path) -> None:
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i",
                    "testsrc2=size=192x144:rate=6:duration=0.5", "-f", "lavfi", "-i",
                    "sine=frequency=440:duration=0.5", "-shortest", "-pix_fmt", "yuv420p",
                    str(path)], check=True)


def run_example(folder: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "DREAMER_MODELS": str(GOOGLENET.parent), "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", example()], cwd=folder, env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_the_library_example_runs_as_written(tmp_path):
    if not (GOOGLENET / "bvlc_googlenet.caffemodel").is_file():
        pytest.skip(f"real GoogLeNet not found at {GOOGLENET}")
    write_frames(tmp_path / "frames", 3, size=(192, 144))
    make_clip(tmp_path / "clip.mp4")
    r = run_example(tmp_path)
    assert r.returncode == 0 and "error" not in r.stdout, (r.stdout, r.stderr)
    assert "frames 1..3 dreamed with seed 1" in r.stdout
    assert r.stdout.strip().endswith("wrote clip_dream.mp4")
    assert sorted(p.name for p in (tmp_path / "dreamed").glob("*.png")) == [
        "00000001.png", "00000002.png", "00000003.png"]
    assert (tmp_path / "clip_dream.mp4").stat().st_size > 0
    assert len(list((tmp_path / "clip_work" / "dreamed").glob("*.png"))) == 3
    # again: every frame is done, so nothing is dreamed and nothing changes
    before = (tmp_path / "dreamed" / "00000002.png").stat().st_mtime_ns
    again = run_example(tmp_path)
    assert "error: " in again.stdout and "exists" in again.stdout  # the video is kept
    assert (tmp_path / "dreamed" / "00000002.png").stat().st_mtime_ns == before


def test_the_example_uses_only_the_library():
    code = example()
    assert "dreamer.cli" not in code and "argparse" not in code
    assert "from dreamer import DreamConfig, dream_frames, run_all" in code
