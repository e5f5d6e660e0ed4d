"""The flicker measurement (dreamer/dream/flicker.py) on made-up clips with known answers."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from dreamer.dream import flicker
from dreamer.errors import DreamerError
from dreamer.video.frames import FRAME_RE, numbered_files

H, W = 48, 64


def texture(seed: int, h: int, w: int) -> np.ndarray:
    """Smooth RGB texture in grey levels [20, 220], so +-20 never clips."""
    noise = ndimage.gaussian_filter(np.random.default_rng(seed).random((h, w, 3)),
                                    sigma=(2, 2, 0))
    return (20 + (noise - noise.min()) / np.ptp(noise) * 200).round().astype(np.uint8)


def panning_clip(n: int) -> list[np.ndarray]:
    """n frames of a texture panning 2 px left and 1 px up per frame."""
    canvas = texture(0, H + n + 2, W + 2 * n + 2)
    return [np.ascontiguousarray(canvas[k:k + H, 2 * k:2 * k + W]) for k in range(n)]


def write_frames(folder: Path, frames: list[np.ndarray], first: int = 1) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(frames):
        Image.fromarray(frame).save(folder / f"{first + i:08d}.png")
    return folder


def test_alternating_dream_on_a_still_film(tmp_path):
    still = texture(1, H, W)
    n = 6
    dreams = [(still.astype(np.int16) + (10 if k % 2 else -10)).astype(np.uint8)
              for k in range(n)]
    report = measure(write_frames(tmp_path / "orig", [still] * n),
                             write_frames(tmp_path / "dream", dreams))
    assert report.frames == list(range(1, n + 1)) and report.pairs == list(range(2, n + 1))
    assert report.residual == 0
    assert report.dreamed == pytest.approx(20, abs=1e-4)
    assert report.added == pytest.approx(20, abs=1e-4)
    assert report.strength == pytest.approx(10)
    assert report.ratio == pytest.approx(2, abs=1e-5)
    assert report.reliable_per_pair == pytest.approx([1.0] * (n - 1))


def test_constant_offset_adds_no_flicker_to_a_moving_film(tmp_path):
    clip = panning_clip(5)
    dreams = [frame + np.uint8(15) for frame in clip]
    report = measure({k + 1: f for k, f in enumerate(clip)},
                             {k + 1: f for k, f in enumerate(dreams)})
    assert report.residual > 0.1  # the film's own: border strips, interpolation
    assert report.added == pytest.approx(0, abs=1e-3)
    assert report.strength == pytest.approx(15)
    assert min(report.reliable_per_pair) > 0.8


def test_dream_stuck_to_the_screen_flickers(tmp_path):
    clip = panning_clip(5)
    pattern = (texture(2, H, W).astype(np.int16) - 120) // 6  # a fixed overlay of +-17
    dreams = [np.clip(f + pattern, 0, 255).astype(np.uint8) for f in clip]
    report = measure(clip_paths(write_frames(tmp_path / "o", clip)),
                             clip_paths(write_frames(tmp_path / "d", dreams)))
    assert report.added > 1.0
    assert 0 < report.ratio < 2


def measure(original, dreamed) -> flicker.Report:
    """flicker.measure of folders, lists of frame files or {number: frame}."""
    return flicker.measure(as_frames(original), as_frames(dreamed))


def as_frames(frames):
    if isinstance(frames, Path):
        return numbered_files(frames)
    if isinstance(frames, list):  # numbered frame files
        return {int(FRAME_RE.match(p.name)[1]): p for p in frames}
    return frames


def clip_paths(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.png"))


def test_dreamed_sub_range_uses_the_common_frames(tmp_path):
    clip = panning_clip(7)
    original = write_frames(tmp_path / "orig", clip)
    dreamed = write_frames(tmp_path / "dream", clip[2:5], first=3)  # frames 3-5
    (dreamed / "00000003_octave1.jpg").write_bytes(b"a preview, not a frame")
    report = measure(original, dreamed)
    assert report.frames == [3, 4, 5] and report.pairs == [4, 5]
    assert report.added == pytest.approx(0, abs=1e-6) and report.strength == 0
    assert math.isnan(report.ratio)
    assert "3 (3-5)" in report.table()


def test_size_mismatch_is_one_line(tmp_path):
    clip = panning_clip(3)
    original = write_frames(tmp_path / "orig", clip)
    dreamed = write_frames(tmp_path / "dream", [f[:-2] for f in clip])
    with pytest.raises(DreamerError, match=r"dreamed frame 00000001 is 64x46, not 64x48") as e:
        measure(original, dreamed)
    assert "\n" not in str(e.value)


def test_no_common_frames_or_pairs(tmp_path):
    clip = panning_clip(4)
    frames = {k + 1: f for k, f in enumerate(clip)}
    with pytest.raises(DreamerError, match="no frame number in common"):
        measure(frames, {9: clip[0]})
    with pytest.raises(DreamerError, match="no two consecutive"):
        measure(frames, {1: clip[0], 3: clip[2]})
    with pytest.raises(DreamerError, match="is not a folder"):
        measure(tmp_path / "missing", frames)


def test_table_is_aligned():
    report = flicker.Report(frames=[1, 2, 3], strength_per_frame=[10, 10, 10], pairs=[2, 3],
                            residual_per_pair=[1.0, 2.0], dreamed_per_pair=[5.0, 7.0],
                            reliable_per_pair=[1, 1])
    lines = report.table().splitlines()
    assert lines[0].split() == ["frames", "residual", "dreamed", "added", "flicker",
                                "strength", "ratio"]
    assert lines[1].split() == ["3", "(1-3)", "1.50", "6.00", "4.50", "10.00", "0.45"]
    assert len(lines[0]) == len(lines[1])
    both = flicker.table({"blend": report, "--flow": report}).splitlines()
    assert both[1].startswith("blend ") and both[2].startswith("--flow")
    assert len({len(line) for line in both}) == 1


def test_plot_is_a_png_of_the_stated_size(tmp_path):
    report = flicker.Report(frames=list(range(1, 12)), strength_per_frame=[8.0] * 11,
                            pairs=list(range(2, 12)),
                            residual_per_pair=[1 + 0.1 * k for k in range(10)],
                            dreamed_per_pair=[4 + math.sin(k) for k in range(9)] + [math.nan],
                            reliable_per_pair=[1.0] * 10)
    path = tmp_path / "flicker.png"
    flicker.write_plot(report, path)
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size == (640, 240)
        pixels = np.asarray(image.convert("RGB")).astype(int)
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left
    red = (pixels[..., 0] > 180) & (pixels[..., 1] < 80) & (pixels[..., 2] < 80)
    grey = (np.abs(pixels - 120).max(axis=-1) < 8)
    assert red.sum() > 500 and grey.sum() > 500  # both lines drawn
    dark = pixels.max(axis=-1) < 60
    assert dark.sum() > 200  # axes labels and legend text


def test_plot_of_one_pair_and_negative_values(tmp_path):
    report = flicker.Report(frames=[4, 5], strength_per_frame=[3.0, 3.0], pairs=[5],
                            residual_per_pair=[2.0], dreamed_per_pair=[1.0],
                            reliable_per_pair=[1.0])
    flicker.write_plot(report, tmp_path / "one.png", size=(320, 160))
    with Image.open(tmp_path / "one.png") as image:
        assert image.size == (320, 160)
        assert len(np.unique(np.asarray(image.convert("L")))) > 2


def test_several_dreams_share_the_film_s_flow_and_each_gets_its_own_report(monkeypatch):
    """The film's flow is computed once per pair for all dreams (it was once per dream),
    and each dream's figures are those it gets alone."""
    from dreamer.dream import flicker, flow

    rng = np.random.default_rng(3)
    film = {k: rng.integers(0, 256, (24, 32, 3), dtype=np.uint8) for k in range(1, 6)}
    dreams = {name: {k: np.clip(f.astype(int) + rng.integers(-30, 30, f.shape), 0, 255)
                     .astype(np.uint8) for k, f in film.items() if k >= first}
              for name, first in (("a", 1), ("b", 2), ("c", 1))}
    alone = {name: flicker.measure(film, d) for name, d in dreams.items()}
    calls = []
    real = flow.compute_flow
    monkeypatch.setattr(flow, "compute_flow", lambda a, b: calls.append(1) or real(a, b))
    together = flicker.measure_all(film, dreams)
    assert len(calls) == 2 * 4  # both flows of each of the 4 pairs, once
    for name in dreams:
        assert together[name].pairs == alone[name].pairs
        assert together[name].added == pytest.approx(alone[name].added)
        assert together[name].strength == pytest.approx(alone[name].strength)
