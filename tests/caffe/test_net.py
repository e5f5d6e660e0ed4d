"""The model loader: both Caffe formats, all input declarations, weights by name, `end`."""
from __future__ import annotations

import pytest
import torch

from dreamer.caffe import proto
from dreamer.caffe.net import load_net
from dreamer.errors import DreamerError
from tiny_caffe import make_tiny_model

FORMATS = [("layer", "input_layer"), ("layer", "input_shape"), ("layer", "input_dim"),
           ("v1", "input_dim"), ("v1", "input_shape")]


@pytest.fixture(scope="module")
def x():
    return torch.randn(1, 3, 45, 61, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("fmt,decl", FORMATS)
def test_every_format_gives_the_same_net(tmp_path, x, fmt, decl):
    reference = load_net(*make_tiny_model(tmp_path / "ref"))
    net = load_net(*make_tiny_model(tmp_path / "m", fmt, decl))
    for end in ("pool1/norm1", "inception_4c/output", "prob"):
        torch.testing.assert_close(net(x, end=end), reference(x, end=end))
    assert net.input_name == "data"
    assert tuple(net.input_shape) == (1, 3, 64, 64)


def test_train_net_extras_in_caffemodel_are_ignored(tmp_path, x):
    with_extras = load_net(*make_tiny_model(tmp_path / "a", train_extras=True))
    without = load_net(*make_tiny_model(tmp_path / "b", train_extras=False))
    assert torch.equal(with_extras(x, end="prob"), without(x, end="prob"))
    assert "loss3/loss3" not in with_extras.layer_names


def test_end_names_a_layer_and_sees_the_blob_before_an_in_place_relu(tmp_path, x):
    net = load_net(*make_tiny_model(tmp_path))
    conv = net(x, end="conv1/7x7_s2")
    relu = net(x, end="conv1/relu_7x7_s2")
    assert (conv < 0).any(), "the convolution's own output still has negative values"
    assert torch.equal(relu, conv.clamp(min=0))


def test_forward_computes_nothing_past_end(tmp_path, x):
    net = load_net(*make_tiny_model(tmp_path))
    calls = []
    for layer in net.layers:
        layer.register_forward_hook(lambda m, i, o: calls.append(m.name))
    net(x, end="pool1/norm1")
    # conv1's ReLU is done by pool1, on its output (see the fusion tests below)
    assert calls == ["conv1/7x7_s2", "pool1/3x3_s2", "pool1/norm1"]


def test_a_relu_read_only_by_a_max_pool_runs_after_it_with_the_same_blobs_and_gradients(
        tmp_path, x):
    files = make_tiny_model(tmp_path)
    fused, plain = load_net(*files), load_net(*files, fuse=False)
    assert [fused.layers[i].name for i in fused._fused_relus] == ["conv1/relu_7x7_s2"]
    assert not plain._fused_relus
    for end in fused.layer_names:
        a = x.clone().requires_grad_(True)
        b = x.clone().requires_grad_(True)
        ya, yb = fused(a, end=end), plain(b, end=end)
        assert torch.equal(ya, yb), end
        (ga,) = torch.autograd.grad((ya * ya).sum(), a)
        (gb,) = torch.autograd.grad((yb * yb).sum(), b)
        assert torch.equal(ga, gb), end


def test_a_relu_whose_blob_another_layer_reads_is_not_fused(tmp_path):
    prototxt, caffemodel = make_tiny_model(tmp_path)
    text = prototxt.read_text()
    # a second reader of conv1's (ReLU'd) blob after the pool
    extra = ('layer { name: "peek" type: "Pooling" bottom: "conv1/7x7_s2" top: "peek" '
             'pooling_param { pool: AVE global_pooling: true } }\n')
    prototxt.write_text(text + extra)
    net = load_net(prototxt, caffemodel)
    assert not net._fused_relus
    assert not any(getattr(layer, "fused_relu", False) for layer in net.layers)


def test_weights_never_get_gradients(tmp_path, x):
    net = load_net(*make_tiny_model(tmp_path))
    assert list(net.parameters()) == []
    img = x.clone().requires_grad_(True)
    net(img, end="inception_4c/output").square().sum().backward()
    assert img.grad is not None and img.grad.abs().sum() > 0
    assert all(not b.requires_grad for b in net.buffers())


def test_unknown_end_layer_lists_valid_ones(tmp_path, x):
    net = load_net(*make_tiny_model(tmp_path))
    with pytest.raises(DreamerError, match=r"unknown layer 'nope'.*inception_4c/output"):
        net(x, end="nope")


def test_prototxt_with_fields_we_do_not_model_gives_the_same_net(tmp_path, x):
    """Training fields (force_backward, state, param, include) are skipped, and nothing
    else is: the net has the same layers and the same outputs as without them."""
    reference = load_net(*make_tiny_model(tmp_path / "ref"))
    prototxt, model = make_tiny_model(tmp_path / "extras")
    plain = prototxt.read_text()
    text = plain.replace(
        'name: "TinyNet"', 'name: "TinyNet"\nforce_backward: true\nstate { phase: TEST }', 1)
    text = text.replace('type: "Convolution"', 'type: "Convolution"\n  param { lr_mult: 1 '
                        'decay_mult: 1 }\n  include { phase: TEST }')
    assert text.count("include { phase: TEST }") == plain.count('type: "Convolution"') > 1
    assert "force_backward" in text
    prototxt.write_text(text)
    net = load_net(prototxt, model)
    assert net.layer_names == reference.layer_names
    assert net.input_name == reference.input_name
    assert tuple(net.input_shape) == tuple(reference.input_shape)
    for end in ("conv1/7x7_s2", "inception_4c/output", "prob"):
        torch.testing.assert_close(net(x, end=end), reference(x, end=end), rtol=0, atol=0)


@pytest.mark.parametrize("damage,match", [
    (lambda p, m: p.write_text("layer { name: 'x' type: "), "not a valid prototxt"),
    (lambda p, m: p.write_text('name: "empty"'), "has no layers"),
    (lambda p, m: m.write_bytes(m.read_bytes()[: len(m.read_bytes()) // 2]),
     "not a valid caffemodel"),
    (lambda p, m: m.write_bytes(b"\x00garbage" * 10), "caffemodel"),
    (lambda p, m: m.unlink(), "not found"),
    (lambda p, m: p.write_text(p.read_text().replace('"LRN"', '"Deconvolution"')),
     "pool1/norm1' has type Deconvolution, which is not supported"),
    (lambda p, m: p.write_text(p.read_text().replace('bottom: "pool1/norm1"',
                                                     'bottom: "nowhere"', 1)),
     "reads blob 'nowhere'"),
])
def test_damaged_model_files_give_one_clear_error(tmp_path, damage, match):
    prototxt, model = make_tiny_model(tmp_path)
    damage(prototxt, model)
    with pytest.raises(DreamerError, match=match) as err:
        load_net(prototxt, model)
    assert "\n" not in str(err.value)


def test_weights_of_the_wrong_shape_name_the_layer(tmp_path):
    prototxt, model = make_tiny_model(tmp_path)
    net = proto.read_caffemodel(model)
    for msg in net.layer:
        if msg.name == "inception_4c/3x3":
            del msg.blobs[0].data[-72:]  # one of 4 filters of 8x3x3
            msg.blobs[0].shape.dim[0] -= 1
    model.write_bytes(net.SerializeToString())
    with pytest.raises(DreamerError, match="inception_4c/3x3"):
        load_net(prototxt, model)


def test_missing_weights_for_a_layer(tmp_path):
    prototxt, model = make_tiny_model(tmp_path)
    net = proto.read_caffemodel(model)
    for msg in net.layer:
        if msg.name == "inception_5a/1x1":
            del msg.blobs[:]
    model.write_bytes(net.SerializeToString())
    with pytest.raises(DreamerError, match="'inception_5a/1x1'.*no weights"):
        load_net(prototxt, model)


def test_proto_schema_parses_into_real_descriptors():
    fields = proto.LayerParameter.DESCRIPTOR.fields_by_name
    assert fields["convolution_param"].number == 106
    assert proto.NetParameter.DESCRIPTOR.fields_by_name["layers"].number == 2
    v1 = proto.V1LayerParameter.DESCRIPTOR
    assert v1.enum_types_by_name["LayerType"].values_by_name["CONVOLUTION"].number == 4


def test_blob_whose_values_do_not_fill_its_shape_names_the_layer(tmp_path):
    prototxt, model = make_tiny_model(tmp_path)
    net = proto.read_caffemodel(model)
    for msg in net.layer:
        if msg.name == "inception_4d/1x1":
            del msg.blobs[0].data[-1:]
    model.write_bytes(net.SerializeToString())
    with pytest.raises(DreamerError, match="'inception_4d/1x1'.*damaged"):
        load_net(prototxt, model)


def test_forward_traces_as_one_graph(tmp_path, x):
    """`--compile` (CUDA graphs on a GPU) only pays if the whole forward is one graph."""
    from torch import _dynamo

    net = load_net(*make_tiny_model(tmp_path))
    img = x.contiguous(memory_format=torch.channels_last)
    explained = _dynamo.explain(lambda t: net(t, end="inception_4c/output"))(img)
    assert explained.graph_break_count == 0, explained.break_reasons
