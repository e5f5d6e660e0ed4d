"""--flow: the previous dream carried along the film's motion (dreamer/dream/carry.py) and
its place in a run (resume, ranges, the manifest)."""
from __future__ import annotations

import dataclasses
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from PIL import Image

from dreamer.config import DreamConfig
from dreamer.dream import transforms
from dreamer.dream.carry import carry, settle, zoomed_flow
from dreamer.run.manifest import Manifest
from dreamer.run.sequence import dream_sequence
from dreamer.video.frames import numbered_files


def smooth(h=48, w=64, seed=0):
    rng = np.random.default_rng(seed)
    small = rng.uniform(0, 255, (h // 8 + 2, w // 8 + 2, 3))
    from scipy import ndimage
    return ndimage.zoom(small, (h / small.shape[0], w / small.shape[1], 1), order=3)[:h, :w]


def as_tensor(a):
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).permute(2, 0, 1)


def still(h=48, w=64):
    zero = np.zeros((h, w, 2), np.float32)
    return zero, zero


def test_with_no_motion_flow_blending_is_the_plain_blend():
    state, raw = as_tensor(smooth(seed=1)), as_tensor(smooth(seed=2))
    c = carry(state, raw, None, still(), weight=0.3)
    assert not c.info["cut"] and c.info["reliable"] == 1.0
    torch.testing.assert_close(c.img, transforms.blend(state, raw, 0.7), atol=1e-3, rtol=0)


def test_settling_averages_with_the_moved_dream_where_reliable():
    state, raw, dreamed = (as_tensor(smooth(seed=s)) for s in (1, 2, 3))
    c = carry(state, raw, None, still(), weight=0.8)
    torch.testing.assert_close(settle(dreamed, c, 0.25), 0.75 * dreamed + 0.25 * state,
                               atol=1e-3, rtol=0)
    assert torch.equal(settle(dreamed, c, 0.0), dreamed)


def test_the_residual_carries_only_what_the_dream_added():
    raw_prev, raw = as_tensor(smooth(seed=1)), as_tensor(smooth(seed=2))
    state = raw_prev + 10.0
    c = carry(state, raw, raw_prev, still(), weight=0.5, mode="residual")
    torch.testing.assert_close(c.img, raw + 5.0)


def test_a_zoom_folds_into_the_warp_as_transforms_zoom_does():
    """With no motion, the folded warp samples where transforms.zoom does (inside, where
    neither clamps at the border)."""
    state = as_tensor(smooth(seed=3))
    flow = zoomed_flow(np.zeros((48, 64, 2), np.float32), 1.25)
    from dreamer.dream.flow import warp_tensor
    got, want = warp_tensor(state, flow), transforms.zoom(state, 1.25)
    torch.testing.assert_close(got[:, 4:-4, 4:-4], want[:, 4:-4, 4:-4], atol=1e-3, rtol=0)
    assert np.allclose(zoomed_flow(flow, 1.0), flow)


def test_the_dream_moves_with_the_film():
    """Frame k is frame k-1 moved 3 px right: the carried dream moves 3 px right too."""
    base = smooth(48, 72, seed=4)
    prev, cur = base[:, 3:67], base[:, 0:64]  # cur(x) = prev(x - 3)
    dream_prev = prev + np.where(np.arange(64) % 16 < 8, 20.0, -20.0)[None, :, None]
    from dreamer.dream.flow import compute_flow
    u8 = (lambda a: np.clip(a, 0, 255).round().astype(np.uint8))
    flows = compute_flow(u8(cur), u8(prev)), compute_flow(u8(prev), u8(cur))
    c = carry(as_tensor(dream_prev), as_tensor(cur), as_tensor(prev), flows, weight=1.0)
    moved = (dream_prev - prev)[:, 8:50]  # the added pattern, 3 px later in frame k
    got = (c.img.permute(1, 2, 0).numpy() - cur)[8:-8, 11:53]
    assert np.abs(got - moved[8:-8]).mean() < 2.0 and not c.info["cut"]


def test_a_scene_cut_starts_from_the_raw_frame():
    a, b = smooth(seed=5).astype(np.uint8), smooth(seed=6)[::-1].astype(np.uint8)
    from dreamer.dream.flow import compute_flow
    flows = compute_flow(b, a), compute_flow(a, b)
    raw = as_tensor(b)
    c = carry(as_tensor(a) + 50, raw, None, flows, weight=1.0)
    assert c.info["cut"] and torch.equal(c.img, raw) and c.anchor is None
    dreamed = raw + 7
    assert torch.equal(settle(dreamed, c, 0.5), dreamed)


# --- in a run ---------------------------------------------------------------------------

def moving_frames(folder, n=6, size=(64, 48), step=2):
    folder.mkdir(parents=True)
    big = np.clip(smooth(size[1], size[0] + step * n, seed=7), 0, 255).astype(np.uint8)
    for k in range(1, n + 1):
        x = step * (n - k)
        Image.fromarray(big[:, x:x + size[0]]).save(folder / f"{k:08d}.png")
    return folder


def config_for(tiny_model, frames, out, **extra):
    return DreamConfig(input=str(frames), output=str(out), model_path=str(tiny_model),
                       model_name="tiny.caffemodel", layers=("inception_4c/output",),
                       octave_n=2, iter_n=2, seed=3, verbose=0, flow=True, **extra)


def frame_bytes(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.glob("0*.png"))}


def test_a_flow_run_records_its_flow_and_ranges_join_exactly(tiny_model, tmp_path):
    frames = moving_frames(tmp_path / "frames")
    dream_sequence(config_for(tiny_model, frames, tmp_path / "whole"))
    manifest = Manifest(tmp_path / "whole")
    assert "flow" not in manifest.frames[1]
    assert all(manifest.frames[k]["flow"]["reliable"] > 0.5 for k in range(2, 7))
    assert len(list((frames / ".dreamer" / "flow").glob("*.npz"))) == 5
    # the same run in two ranges (a chained or resumed run) gives the same bytes
    split = config_for(tiny_model, frames, tmp_path / "split", end_frame=3)
    dream_sequence(split)
    dream_sequence(dataclasses.replace(split, start_frame=4, end_frame=4))  # a lone frame
    dream_sequence(dataclasses.replace(split, end_frame=None, start_frame=5))
    assert frame_bytes(tmp_path / "split") == frame_bytes(tmp_path / "whole")
    # and without --flow the frames differ: the flow is used
    dream_sequence(dataclasses.replace(split, flow=False, end_frame=None,
                                       output=str(tmp_path / "plain")))
    assert frame_bytes(tmp_path / "plain") != frame_bytes(tmp_path / "whole")


def test_flow_settings_are_part_of_a_runs_parameters(tiny_model, tmp_path):
    from dreamer.errors import DreamerError

    frames = moving_frames(tmp_path / "frames", n=3)
    dream_sequence(config_for(tiny_model, frames, tmp_path / "o"))
    with pytest.raises(DreamerError, match="other parameters"):
        dream_sequence(config_for(tiny_model, frames, tmp_path / "o", flow_blend=0.5))
    with pytest.raises(DreamerError, match="--flow-blend must be 0 to 1"):
        dream_sequence(config_for(tiny_model, frames, tmp_path / "x", flow_blend=1.5))
    with pytest.raises(DreamerError, match="--flow-smooth must be 0 to 1"):
        dream_sequence(config_for(tiny_model, frames, tmp_path / "x", flow_smooth=-0.1))


@pytest.mark.slow
def test_resume_after_kill_9_with_flow_is_byte_identical(tiny_model, tmp_path):
    frames = moving_frames(tmp_path / "frames", n=12, size=(96, 72))
    cmd = [sys.executable, "2_dreaming_time.py", "-i", str(frames), "-t", str(tiny_model),
           "-m", "tiny.caffemodel", "-oct", "2", "-itr", "6", "-l", "inception_4c/output",
           "-v", "0", "--seed", "9", "--flow"]
    from conftest import ROOT
    whole = subprocess.run(cmd + ["-o", str(tmp_path / "whole")], cwd=ROOT,
                           capture_output=True, text=True)
    assert whole.returncode == 0, whole.stderr
    out = tmp_path / "killed"
    proc = subprocess.Popen(cmd + ["-o", str(out)], cwd=ROOT, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while len(list(out.glob("0*.png"))) < 4 and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 4 <= len(list(out.glob("0*.png"))) < 12
    again = subprocess.run(cmd + ["-o", str(out)], cwd=ROOT, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert frame_bytes(out) == frame_bytes(tmp_path / "whole")


@pytest.mark.slow
def test_real_googlenet_with_flow_flickers_less_on_a_moving_clip(tmp_path):
    """testsrc2 panned 4 px a frame, dreamed as the original's video was (layer loop,
    -b loop; fewer octaves and iterations to stay quick), with and without --flow."""
    from conftest import GOOGLENET, ROOT, need_shared
    from dreamer.dream import flicker
    from dreamer.video import ffmpeg

    need_shared()
    frames = tmp_path / "frames"
    frames.mkdir()
    subprocess.run([ffmpeg.find_ffmpeg(), "-v", "error", "-f", "lavfi", "-i",
                    "testsrc2=size=320x240:rate=10:duration=1.2", "-vf",
                    "crop=256:192:4*n:24", str(frames / "%08d.png")], check=True)
    base = [sys.executable, "2_dreaming_time.py", "-i", str(frames), "-t", f"{GOOGLENET}/",
            "-oct", "3", "-itr", "3", "-b", "loop", "--seed", "4", "-v", "0"]
    reports = {}
    for name, extra in (("plain", []), ("flow", ["--flow"])):
        r = subprocess.run(base + ["-o", str(tmp_path / name), *extra], cwd=ROOT,
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        reports[name] = flicker.measure(numbered_files(frames), numbered_files(tmp_path / name))
    plain, flow = reports["plain"], reports["flow"]
    assert flow.added < 0.75 * plain.added, (flow.added, plain.added)
    assert flow.strength > 0.5 * plain.strength


def test_flow_options_without_flow_are_refused_not_ignored(tiny_model, tmp_path):
    from dreamer.errors import DreamerError

    frames = moving_frames(tmp_path / "frames", n=2)
    for extra in (dict(flow_blend=0.5), dict(flow_carry="residual"), dict(flow_smooth=0.1)):
        config = config_for(tiny_model, frames, tmp_path / "o", **extra)
        with pytest.raises(DreamerError, match="only applies with --flow"):
            dream_sequence(dataclasses.replace(config, flow=False))
    assert not (tmp_path / "o").exists()


def test_a_bad_kernel_mode_is_refused_before_the_run_starts(tiny_model, tmp_path, monkeypatch,
                                                            capsys):
    from dreamer.errors import DreamerError

    monkeypatch.setenv("DREAMER_NATIVE", "yes")
    frames = moving_frames(tmp_path / "frames", n=2)
    with pytest.raises(DreamerError, match="DREAMER_NATIVE=yes is not a mode"):
        dream_sequence(dataclasses.replace(config_for(tiny_model, frames, tmp_path / "o"),
                                           seed=None, verbose=1))
    assert "seed" not in capsys.readouterr().err
