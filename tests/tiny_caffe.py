"""Tiny random-weight Caffe models that tests write themselves, in either file format.

The net mimics GoogLeNet's layer names (conv1 ... inception_5b/output) so the original's
default layer loop ("customloop") runs on it, but has a few channels and dreams in
milliseconds.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from google.protobuf import text_format

from dreamer.caffe import proto

# V1 enum values of the layer types used below (facts of Caffe's format).
V1 = {"Convolution": 4, "ReLU": 18, "Pooling": 17, "LRN": 15, "Concat": 3, "Data": 5,
      "SoftmaxWithLoss": 21, "InnerProduct": 14, "Softmax": 20, "Dropout": 6}


def _conv(name, bottom, top, cin, cout, k=3, pad=1, stride=1):
    return dict(name=name, type="Convolution", bottom=[bottom], top=[top],
                conv=dict(num_output=cout, kernel_size=k, pad=pad, stride=stride),
                shapes=[(cout, cin, k, k), (cout,)])


def tiny_layers(channels: int = 4) -> list[dict]:
    c = channels
    layers = [
        _conv("conv1/7x7_s2", "data", "conv1/7x7_s2", 3, c, k=3, pad=1, stride=2),
        dict(name="conv1/relu_7x7_s2", type="ReLU", bottom=["conv1/7x7_s2"],
             top=["conv1/7x7_s2"]),
        dict(name="pool1/3x3_s2", type="Pooling", bottom=["conv1/7x7_s2"],
             top=["pool1/3x3_s2"], pool=dict(pool="MAX", kernel_size=3, stride=2)),
        dict(name="pool1/norm1", type="LRN", bottom=["pool1/3x3_s2"], top=["pool1/norm1"],
             lrn=dict(local_size=3, alpha=0.0001, beta=0.75)),
        _conv("inception_3a/1x1", "pool1/norm1", "inception_3a/1x1", c, c, k=1, pad=0),
        _conv("inception_3a/3x3", "pool1/norm1", "inception_3a/3x3", c, c),
        dict(name="inception_3a/output", type="Concat",
             bottom=["inception_3a/1x1", "inception_3a/3x3"], top=["inception_3a/output"]),
    ]
    prev, cin = "inception_3a/output", 2 * c
    for name in ("inception_4c", "inception_4d", "inception_4e", "inception_5a",
                 "inception_5b"):
        layers.append(_conv(f"{name}/3x3", prev, f"{name}/3x3", cin, c))
        layers.append(dict(name=f"{name}/relu", type="ReLU", bottom=[f"{name}/3x3"],
                           top=[f"{name}/3x3"]))
        layers.append(_conv(f"{name}/1x1", prev, f"{name}/1x1", cin, c, k=1, pad=0))
        layers.append(dict(name=f"{name}/output", type="Concat",
                           bottom=[f"{name}/3x3", f"{name}/1x1"], top=[f"{name}/output"]))
        prev, cin = f"{name}/output", 2 * c
    layers += [
        dict(name="pool5", type="Pooling", bottom=[prev], top=["pool5"],
             pool=dict(pool="AVE", global_pooling=True)),
        dict(name="loss3/classifier", type="InnerProduct", bottom=["pool5"],
             top=["loss3/classifier"], ip=dict(num_output=5), shapes=[(5, cin), (5,)]),
        dict(name="prob", type="Softmax", bottom=["loss3/classifier"], top=["prob"]),
    ]
    return layers


def _fill(msg, layer, v1: bool):
    msg.name = layer["name"]
    msg.type = V1[layer["type"]] if v1 else layer["type"]
    msg.bottom.extend(layer["bottom"])
    msg.top.extend(layer["top"])
    if "conv" in layer:
        msg.convolution_param.num_output = layer["conv"]["num_output"]
        msg.convolution_param.kernel_size.append(layer["conv"]["kernel_size"])
        msg.convolution_param.pad.append(layer["conv"]["pad"])
        msg.convolution_param.stride.append(layer["conv"]["stride"])
    if "pool" in layer:
        p = layer["pool"]
        msg.pooling_param.pool = 0 if p["pool"] == "MAX" else 1
        if p.get("global_pooling"):
            msg.pooling_param.global_pooling = True
        else:
            msg.pooling_param.kernel_size = p["kernel_size"]
            msg.pooling_param.stride = p["stride"]
    if "lrn" in layer:
        for key, value in layer["lrn"].items():
            setattr(msg.lrn_param, key, value)
    if "ip" in layer:
        msg.inner_product_param.num_output = layer["ip"]["num_output"]


def _add_blob(msg, array: np.ndarray, v1: bool):
    blob = msg.blobs.add()
    if v1:  # old files pad every blob to 4-D num/channels/height/width
        shape = (1,) * (4 - array.ndim) + array.shape
        if array.ndim == 2:  # inner product: 1 x 1 x OUT x IN
            shape = (1, 1) + array.shape
        blob.num, blob.channels, blob.height, blob.width = shape
    else:
        blob.shape.dim.extend(array.shape)
    blob.data.extend(array.ravel().tolist())


def make_tiny_model(folder: Path, fmt: str = "layer", input_decl: str = "input_layer",
                    channels: int = 4, seed: int = 0, train_extras: bool = True,
                    name: str = "tiny.caffemodel") -> tuple[Path, Path]:
    """Writes deploy.prototxt and a caffemodel with random weights into `folder`.

    fmt: "layer" (current format) or "v1" (old `layers {}` with enum types).
    input_decl: "input_layer", "input_shape" or "input_dim".
    train_extras: the caffemodel also holds a Data layer and a loss layer, as a caffemodel
    saved from a training net does.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    v1 = fmt == "v1"
    rng = np.random.default_rng(seed)
    layers = tiny_layers(channels)
    deploy = proto.NetParameter(name="TinyNet")
    if input_decl == "input_layer":
        assert not v1, "V1 nets declare inputs with input:/input_dim"
        inp = deploy.layer.add(name="data", type="Input", top=["data"])
        inp.input_param.shape.add().dim.extend([1, 3, 64, 64])
    elif input_decl == "input_shape":
        deploy.input.append("data")
        deploy.input_shape.add().dim.extend([1, 3, 64, 64])
    else:
        deploy.input.append("data")
        deploy.input_dim.extend([1, 3, 64, 64])
    weights = proto.NetParameter(name="TinyNet")
    container = weights.layers if v1 else weights.layer
    if train_extras:
        data = container.add()
        data.name, data.type = "data", (V1["Data"] if v1 else "Data")
        data.top.extend(["data", "label"])
    for layer in layers:
        _fill((deploy.layers if v1 else deploy.layer).add(), layer, v1)
        msg = container.add()
        _fill(msg, layer, v1)
        for shape in layer.get("shapes", []):
            scale = 1.0 / np.sqrt(np.prod(shape[1:])) if len(shape) > 1 else 0.1
            _add_blob(msg, (rng.standard_normal(shape) * scale).astype(np.float32), v1)
    if train_extras:
        loss = container.add()
        loss.name = "loss3/loss3"
        loss.type = V1["SoftmaxWithLoss"] if v1 else "SoftmaxWithLoss"
        loss.bottom.extend(["loss3/classifier", "label"])
        loss.top.append("loss3/loss3")
    prototxt = folder / "deploy.prototxt"
    prototxt.write_text(text_format.MessageToString(deploy))
    caffemodel = folder / name
    caffemodel.write_bytes(weights.SerializeToString())
    return prototxt, caffemodel
