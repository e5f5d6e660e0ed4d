"""Exact small-tensor checks of jitter, blend, resize, zoom and the pyramid."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage as nd
import torch

from dreamer.dream import transforms

MEAN = torch.tensor([104.0, 116.0, 122.0])


def test_roll_moves_width_by_ox_and_height_by_oy_like_np_roll():
    x = torch.arange(2 * 3 * 4, dtype=torch.float32).reshape(2, 3, 4)
    rolled = transforms.roll(x, 1, 2)
    want = np.roll(np.roll(x.numpy(), 1, -1), 2, -2)
    assert np.array_equal(rolled.numpy(), want)
    assert torch.equal(transforms.unroll(rolled, 1, 2), x)


def test_preprocess_is_bgr_minus_mean_and_deprocess_inverts_it():
    rgb = torch.tensor([10.0, 20.0, 30.0]).reshape(3, 1, 1)
    x = transforms.preprocess(rgb, MEAN)
    assert x.flatten().tolist() == [30 - 104, 20 - 116, 10 - 122]
    assert torch.equal(transforms.deprocess(x, MEAN), rgb)


def test_blend_weight_is_the_new_frame():
    state, raw = torch.zeros(3, 1, 1), torch.full((3, 1, 1), 100.0)
    assert transforms.blend(state, raw, 1.0).flatten().tolist() == [100.0] * 3
    assert transforms.blend(state, raw, 0.0).flatten().tolist() == [0.0] * 3
    assert transforms.blend(state, raw, 0.7).flatten().tolist() == pytest.approx([70.0] * 3)


@pytest.mark.parametrize("shape,size", [((3, 9, 13), (6, 9)), ((3, 6, 9), (9, 13)),
                                        ((3, 5, 7), (5, 7))])
def test_resize_equals_scipy_zoom_order_1(shape, size):
    rng = np.random.default_rng(0)
    x = rng.uniform(-100, 100, shape).astype(np.float32)
    h, w = shape[1:]
    want = nd.zoom(x, (1, size[0] / h, size[1] / w), order=1)
    got = transforms.resize(torch.from_numpy(x), *size).numpy()
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-3)


def test_octave_sizes_round_like_scipy_zoom():
    sizes = transforms.octave_sizes(360, 540, 4, 1.4)
    assert sizes[0] == (360, 540)
    for (h, w), (h2, w2) in zip(sizes, sizes[1:]):
        assert nd.zoom(np.zeros((1, h, w)), (1, 1 / 1.4, 1 / 1.4), order=1).shape[1:] == (h2, w2)
    assert sizes[-1] == (131, 197)


def test_zoom_one_is_identity_and_two_magnifies_the_centre():
    x = torch.arange(64, dtype=torch.float32).reshape(1, 8, 8).repeat(3, 1, 1)
    assert transforms.zoom(x, 1.0) is x
    z = transforms.zoom(x, 2.0)
    assert z.shape == x.shape
    # output pixel 0 (centre -3.5 from the middle at 3.5) samples input -1.75 from it:
    # position 1.75, where the ramp x = 8*row + col is 8*1.75 + 1.75
    assert z[0, 0, 0].item() == pytest.approx(8 * 1.75 + 1.75, abs=1e-4)
    # centre stays put: the mean of the middle 2x2 is unchanged
    assert z[0, 3:5, 3:5].mean().item() == pytest.approx(x[0, 3:5, 3:5].mean().item())
