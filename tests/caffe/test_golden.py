"""Against real Caffe 1.0 (../shared/golden): forward blobs, gradients, whole dreams."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import GOLDEN, GOOGLENET, need_shared, run_dream

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def googlenet():
    need_shared()
    from dreamer.caffe.net import load_net

    return load_net(GOOGLENET / "deploy.prototxt", GOOGLENET / "bvlc_googlenet.caffemodel")


# Each layer runs by the compiled kernels or by PyTorch's op, whichever autotune.py finds
# faster on this machine: Caffe's results must hold either way, and with the timed mix.
MODES = pytest.mark.parametrize("mode", ["auto", "1", "0"])


@MODES
def test_forward_blobs_match_caffe(googlenet, monkeypatch, mode):
    monkeypatch.setenv("DREAMER_NATIVE", mode)
    golden = np.load(GOLDEN / "caffe_blobs.npz")
    x = torch.from_numpy(golden["data"])
    with torch.no_grad():
        for end in ("inception_3b/output", "inception_4c/output", "inception_5b/output",
                    "prob"):
            got = googlenet(x, end=end).numpy()
            assert np.abs(got - golden[end]).max() < 2e-3, end
    assert int(got.argmax()) == 967


@MODES
def test_gradients_match_caffe(googlenet, monkeypatch, mode):
    monkeypatch.setenv("DREAMER_NATIVE", mode)
    golden = np.load(GOLDEN / "caffe_grad.npz")
    rgb = np.float32(Image.open(GOLDEN / "frames1" / "00000001.png"))
    x0 = torch.from_numpy(np.ascontiguousarray(rgb[..., ::-1].transpose(2, 0, 1)
                                               - np.float32([104, 116, 122])[:, None, None]))
    for key in golden.files:
        end = key.split("@", 1)[1]
        x = x0[None].clone().requires_grad_(True)
        acts = googlenet(x, end=end)
        acts.backward(acts.detach())  # top diff = top data: the L2 objective
        want = golden[key]
        rel = np.abs(x.grad[0].numpy() - want).mean() / np.abs(want).mean()
        assert rel < 2e-2, (end, rel)


def _compare(out, golden, frames, limits):
    for k, limit in zip(frames, limits):
        got = np.asarray(Image.open(out / f"{k:08d}.png")).astype(np.float64)
        diff = np.abs(got - golden[f"frame{k:08d}"]).mean()
        assert diff < limit, (k, diff)


def test_dream_single_matches_caffe(tmp_path):
    need_shared()
    r = run_dream("-i", GOLDEN / "frames1", "-o", tmp_path / "o", "-it", "png", "-t",
                  f"{GOOGLENET}/", "-l", "inception_4c/output", "-oct", "3", "-octs", "1.4",
                  "-itr", "1", "--seed", "7")
    assert r.returncode == 0, r.stderr
    _compare(tmp_path / "o", np.load(GOLDEN / "dream_single.npz"), [1], [1.0])


def test_dream_sequence_matches_caffe_frame_by_frame(tmp_path):
    need_shared()
    r = run_dream("-i", GOLDEN / "frames3", "-o", tmp_path / "o", "-it", "png", "-t",
                  f"{GOOGLENET}/", "-l", "inception_3b/output", "-oct", "2", "-octs", "1.4",
                  "-itr", "1", "-b", "0.7", "--seed", "11")
    assert r.returncode == 0, r.stderr
    _compare(tmp_path / "o", np.load(GOLDEN / "dream_sequence.npz"), [1, 2, 3],
             [1.0, 1.8, 1.8])
