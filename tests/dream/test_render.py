"""The dream steps on a tiny random net (lucid's test: the objective rises)."""
from __future__ import annotations

import torch

from dreamer.dream import objectives
from dreamer.caffe.net import load_net
from dreamer.dream.render import deepdream, make_step
from tiny_caffe import make_tiny_model

MEAN = torch.tensor([104.0, 116.0, 122.0])


def _net(tmp_path):
    return load_net(*make_tiny_model(tmp_path))


def _img(h=40, w=56):
    return torch.rand(3, h, w, generator=torch.Generator().manual_seed(1)) * 255


def test_l2_objective_rises_after_a_step(tmp_path):
    net = _net(tmp_path)
    x = _img() - 120
    end = "inception_4c/output"
    before = objectives.l2(net(x[None], end=end)).item()
    x2 = make_step(net, x, end, (0, 0), step_size=1.5)
    assert objectives.l2(net(x2[None], end=end)).item() > before


def test_step_is_normalised_and_clipped(tmp_path):
    net = _net(tmp_path)
    x = torch.zeros(3, 40, 56)
    lo, hi = (-MEAN)[:, None, None], (255 - MEAN)[:, None, None]
    x2 = make_step(net, x, "pool1/norm1", (3, -2), step_size=1.5, lo=lo, hi=hi)
    # mean |change| equals step_size when nothing is clipped (x=0 is far from the bounds)
    assert abs((x2 - x).abs().mean().item() - 1.5) < 1e-4
    x3 = make_step(net, torch.full((3, 40, 56), 500.0), "pool1/norm1", (0, 0), 1.5, lo=lo, hi=hi)
    assert torch.equal(x3, hi.expand_as(x3))


def test_guide_objective_gradient_is_the_best_matching_guide_feature():
    guide = torch.tensor([[1.0, 0.0], [0.0, 1.0]]).reshape(2, 1, 2)  # 2 channels, 2 positions
    obj = objectives.guide(guide)
    acts = torch.tensor([[3.0, -1.0], [1.0, 2.0]]).reshape(1, 2, 1, 2).requires_grad_(True)
    obj(acts).backward()
    # position 0 (3, 1): dots 3 and 1 -> guide 0 (1, 0); position 1 (-1, 2): -1, 2 -> (0, 1)
    assert acts.grad.reshape(2, 2).tolist() == [[1.0, 0.0], [0.0, 1.0]]


def test_deepdream_uses_one_offset_per_step_and_reports_octaves(tmp_path):
    net = _net(tmp_path)
    used, seen = [], []

    def offsets():
        while True:
            used.append(1)
            yield (1, -1)

    out = deepdream(net, _img(), "inception_3a/output", offsets(), MEAN, iter_n=3, octave_n=3,
                    octave_scale=1.3, on_octave=lambda i, rgb: seen.append(tuple(rgb.shape)))
    assert len(used) == 9
    assert seen == [(3, 24, 33), (3, 31, 43), (3, 40, 56)]
    assert out.shape == (3, 40, 56)
    assert out.min() >= 0 and out.max() <= 255


def test_zero_iterations_return_the_image(tmp_path):
    net = _net(tmp_path)
    img = _img()
    out = deepdream(net, img, "inception_3a/output", iter([]), MEAN, iter_n=0, octave_n=1)
    torch.testing.assert_close(out, img)


def test_compiled_net_dreams_what_the_net_dreams(tmp_path):
    """--compile's path, traced and differentiated by torch.compile on the CPU (the
    aot_eager backend: the graph capture and its backward, without generating code)."""
    from dreamer.run.device import CompiledNet

    net = _net(tmp_path)
    compiled = CompiledNet(net, backend="aot_eager")
    assert compiled.layer_names == net.layer_names and not compiled.cuda_graphs

    def dream(n):
        return deepdream(n, _img(), "inception_4c/output", iter([(1, -2), (0, 3)] * 2), MEAN,
                         iter_n=2, octave_n=2)

    from torch._dynamo.utils import counters

    counters.clear()
    torch.testing.assert_close(dream(compiled), dream(net), rtol=0, atol=1e-3)
    assert counters["stats"]["unique_graphs"] == 2  # one per octave size, nothing eager
