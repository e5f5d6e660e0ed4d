"""Random weights from a deploy file alone (dreamer/caffe/random_weights.py)."""
from __future__ import annotations

import pytest
import torch

from dreamer.caffe import proto
from dreamer.caffe.net import load_net
from dreamer.caffe.random_weights import fill, random_net
from dreamer.caffe.spec import net_spec
from dreamer.errors import DreamerError

END = "inception_5b/output"

RESIDUAL = """
name: "Residual"
layer { name: "data" type: "Input" top: "data"
        input_param { shape { dim: 1 dim: 3 dim: 32 dim: 32 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
        convolution_param { num_output: 6 kernel_size: 3 pad: 1 stride: 2 bias_term: false } }
layer { name: "bn1" type: "BatchNorm" bottom: "conv1" top: "conv1" }
layer { name: "scale1" type: "Scale" bottom: "conv1" top: "conv1"
        scale_param { bias_term: true } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "branch" type: "Convolution" bottom: "conv1" top: "branch"
        convolution_param { num_output: 6 kernel_size: 3 pad: 1 group: 2 } }
layer { name: "scale2" type: "Scale" bottom: "branch" top: "branch" }
layer { name: "sum" type: "Eltwise" bottom: "conv1" bottom: "branch" top: "sum" }
layer { name: "pool" type: "Pooling" bottom: "sum" top: "pool"
        pooling_param { pool: AVE global_pooling: true } }
layer { name: "fc" type: "InnerProduct" bottom: "pool" top: "fc"
        inner_product_param { num_output: 5 } }
"""


def _shapes(net):
    return {name: tuple(t.shape) for name, t in net.named_buffers() if t is not None}


def test_same_parameter_shapes_as_the_real_tiny_model(tiny_model):
    real = load_net(tiny_model / "deploy.prototxt", tiny_model / "tiny.caffemodel")
    rand = random_net(tiny_model / "deploy.prototxt")
    assert _shapes(rand) == _shapes(real)
    assert rand.layer_names == real.layer_names
    assert rand.memory_format == torch.channels_last  # load_net's defaults, and its options
    plain = random_net(tiny_model / "deploy.prototxt", channels_last=False, fuse=False)
    assert plain.memory_format == torch.contiguous_format and not plain._fused_relus


def test_runs_forward_and_backward(tiny_model):
    net = random_net(tiny_model / "deploy.prototxt")
    x = (torch.randn(1, 3, 48, 64) * 50).requires_grad_(True)
    y = net(x, end=END)
    assert y.shape[:2] == (1, 8) and torch.isfinite(y).all() and y.abs().sum() > 0
    y.backward(y.detach())
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert torch.allclose(net(torch.randn(1, 3, 64, 64)).sum(), torch.tensor(1.0))  # prob


def test_deterministic_per_seed_and_different_between_seeds(tiny_model):
    prototxt = tiny_model / "deploy.prototxt"
    x = torch.randn(1, 3, 40, 40) * 50
    a, b, c = random_net(prototxt, seed=3), random_net(prototxt, seed=3), random_net(prototxt)
    for (name, ta), tb, tc in zip(a.named_buffers(), b.buffers(), c.buffers()):
        assert torch.equal(ta, tb), name
        if name.endswith("weight"):
            assert not torch.equal(ta, tc), name
    assert torch.equal(a(x, end=END), b(x, end=END))
    assert not torch.allclose(a(x, end=END), c(x, end=END))


def test_he_normal_weights_and_small_biases(tiny_model):
    net = random_net(tiny_model / "deploy.prototxt")
    conv = net.layers[net.index("inception_4c/3x3")]  # 8 inputs, 3x3: fan-in 72
    assert conv.weight.std().item() == pytest.approx((2 / 72) ** 0.5, rel=0.25)
    assert 0 < conv.bias.abs().max() <= 0.01


def test_batchnorm_scale_eltwise_groups(tmp_path):
    prototxt = tmp_path / "deploy.prototxt"
    prototxt.write_text(RESIDUAL)
    spec = fill(net_spec(proto.read_prototxt(prototxt)), seed=1)
    blobs = {layer.name: [b.shape for b in layer.blobs] for layer in spec.layers}
    assert blobs["conv1"] == [(6, 3, 3, 3)]  # bias_term: false
    assert blobs["bn1"] == [(6,), (6,), (1,)]
    assert blobs["scale1"] == [(6,), (6,)] and blobs["scale2"] == [(6,)]
    assert blobs["branch"] == [(6, 3, 3, 3), (6,)]  # 6 inputs in 2 groups
    assert blobs["fc"] == [(5, 6), (5,)]
    net = random_net(prototxt, seed=1)
    y = net(torch.randn(1, 3, 50, 40) * 50, end="sum")
    assert y.shape == (1, 6, 25, 20) and torch.isfinite(y).all()


def test_a_layer_type_it_cannot_fill_is_one_line(tmp_path):
    prototxt = tmp_path / "deploy.prototxt"
    prototxt.write_text(RESIDUAL.replace('type: "BatchNorm"', 'type: "PReLU"'))
    with pytest.raises(DreamerError) as e:
        random_net(prototxt)
    assert "'bn1'" in str(e.value) and "PReLU" in str(e.value)
    assert "\n" not in str(e.value)
    with pytest.raises(DreamerError, match="not found"):
        random_net(tmp_path / "missing.prototxt")
