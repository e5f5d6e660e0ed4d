"""`dreamvideo demo` (cli/demo.py) and the README's pictures (cli/gallery.py), on real
GoogLeNet and matplotlib's photo (`make venv` installs it; without it these fail, they
do not skip). Both write only under tmp_path: they run there as their working folder."""
from __future__ import annotations

import dataclasses
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import GOOGLENET, ROOT, demo_photo
from dreamer.cli.demo import pan_zoom_frames
from dreamer.video import ffmpeg


def need_googlenet(monkeypatch):
    """Real GoogLeNet from ../shared, found as a user's is: through $DREAMER_MODELS."""
    if not (GOOGLENET / "bvlc_googlenet.caffemodel").is_file():
        pytest.skip(f"real GoogLeNet not found at {GOOGLENET} (only developers and CI have "
                    "../shared)")
    monkeypatch.setenv("DREAMER_MODELS", str(GOOGLENET.parent))


def pixels(path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"), dtype=np.float64)


@pytest.mark.slow  # GoogLeNet at the demo's defaults: 3 frames, tens of seconds on a CPU
def test_dreamvideo_demo_builds_a_clip_dreams_it_and_puts_it_back_together(tmp_path,
                                                                            monkeypatch):
    need_googlenet(monkeypatch)
    demo_photo()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(  # this checkout's dreamer
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    r = subprocess.run([sys.executable, "-m", "dreamer", "demo", "--seconds", "0.5", "--fps",
                        "6", "--size", "128x96"], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=1200)
    assert r.returncode == 0, r.stderr
    demo = tmp_path / "demo"  # the default --folder, under the working folder
    assert r.stdout.splitlines()[-2:] == ["demo: demo/grace_hopper_done.mp4",
                                          "demo: demo/contact_sheet.png"]
    for name in ("grace_hopper.mp4", "grace_hopper_done.mp4"):
        video = ffmpeg.probe(demo / name)
        assert (video.frame_count, video.width, video.height) == (3, 128, 96), name
        assert video.fps == 6 and video.has_audio, name
    raw = sorted(p.name for p in (demo / "grace_hopper" / "frames").glob("0*.png"))
    dreamed = sorted(p.name for p in (demo / "grace_hopper" / "dreamed").glob("0*.png"))
    assert raw == dreamed == ["00000001.png", "00000002.png", "00000003.png"]
    first_raw = pixels(demo / "grace_hopper" / "frames" / raw[0])
    first_dream = pixels(demo / "grace_hopper" / "dreamed" / raw[0])
    assert np.abs(first_dream - first_raw).mean() > 5  # it dreamed
    # the contact sheet: 5 columns, the raw frames above their dreams (frame 1 first)
    sheet = pixels(demo / "contact_sheet.png")
    assert sheet.shape == (2 * 96, 5 * 128, 3)
    assert np.abs(sheet[:96, :128] - first_raw).mean() < 1
    assert np.abs(sheet[96:, :128] - first_dream).mean() < 1


def test_the_gallery_without_the_demos_frames_says_to_run_make_demo(tmp_path, monkeypatch,
                                                                    capsys):
    from dreamer.cli import gallery

    monkeypatch.chdir(tmp_path)
    assert gallery.main([]) == 2
    assert "run `make demo` first" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow  # 108 frames of GoogLeNet, one step each: about a minute on 2 CPUs
def test_the_gallery_makes_the_readmes_pictures(tmp_path, monkeypatch, capsys):
    """`python -m dreamer.cli.gallery` after `make demo`, on 8 of the demo's frames. Each
    of its runs is dreamed with 1 octave of 1 iteration instead of its own settings: the
    pictures' content is not checked, the gallery's work (the variants, the schedules,
    the guide video, the strips and the labelled sheet) is, in a fraction of the time."""
    from dreamer.cli import gallery

    need_googlenet(monkeypatch)
    monkeypatch.chdir(tmp_path)
    frames = tmp_path / gallery.FRAMES
    frames.mkdir(parents=True)
    for k, img in enumerate(pan_zoom_frames(demo_photo(), 8, (128, 96)), 1):
        img.save(frames / f"{k:08d}.png")  # as `dreamvideo demo` extracts them
    configs = []
    real_dream_sequence = gallery.dream_sequence

    def quick(config, *args, **kwargs):
        configs.append(config)
        return real_dream_sequence(dataclasses.replace(config, octave_n=1, iter_n=1),
                                   *args, **kwargs)

    monkeypatch.setattr(gallery, "dream_sequence", quick)
    assert gallery.main([]) == 0
    images = tmp_path / "images"
    variants = list(gallery.VARIANTS)
    assert sorted(p.name for p in images.iterdir()) == sorted(
        [f"{name}.jpg" for name in variants] + ["original.jpg", "schedules.jpg"])
    assert capsys.readouterr().out.splitlines() == [
        *(f"wrote images/{name}.jpg" for name in variants), "wrote images/original.jpg",
        "wrote images/schedules.jpg"]
    # the strips: frames 2, 4, 6 and 8 side by side, at the preview size
    shown = len(gallery.SHOWN)
    for name in variants + ["original"]:
        with Image.open(images / f"{name}.jpg") as strip:
            assert strip.size == (192 * shown, 144), name
    original = pixels(images / "original.jpg")
    for name in variants:
        assert np.abs(pixels(images / f"{name}.jpg") - original).mean() > 2, name
    # the runs: each variant as written, then the README's scheduled run, guided by a video
    assert [c.blend for c in configs[:-1]] == [v["blend"] for v in gallery.VARIANTS.values()]
    assert [c.flow for c in configs[:-1]] == [v.get("flow", False)
                                              for v in gallery.VARIANTS.values()]
    assert configs[variants.index("guided")].guide_image == str(
        demo_photo().parent / gallery.VARIANTS["guided"]["guide"])
    scheduled = configs[-1]
    assert (scheduled.zoom, scheduled.blend, scheduled.layers) == (
        gallery.SCHEDULED["zoom"], gallery.SCHEDULED["blend"], gallery.SCHEDULED["layers"])
    assert scheduled.guide_image.endswith("mandelbrot.mp4")
    # the schedules sheet: 5 dreamed frames of 256x192 over their labels
    with Image.open(images / "schedules.jpg") as sheet:
        assert sheet.size == (256 * len(gallery.SCHEDULED_SHOWN), 192 + 34)
    labels = pixels(images / "schedules.jpg")[192:]
    assert (labels < 128).any() and (labels > 250).mean() > 0.5  # dark text on white
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo", "images"]
