"""A Caffe net as plain records, whatever format (V1 `layers` or current `layer`) it used."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from dreamer.errors import DreamerError

# V1LayerParameter.LayerType values and the type strings of the current format.
V1_TYPES = {
    35: "AbsVal", 1: "Accuracy", 30: "ArgMax", 2: "BNLL", 3: "Concat",
    37: "ContrastiveLoss", 4: "Convolution", 5: "Data", 39: "Deconvolution", 6: "Dropout",
    32: "DummyData", 7: "EuclideanLoss", 25: "Eltwise", 38: "Exp", 8: "Flatten",
    9: "HDF5Data", 10: "HDF5Output", 28: "HingeLoss", 11: "Im2col", 12: "ImageData",
    13: "InfogainLoss", 14: "InnerProduct", 15: "LRN", 29: "MemoryData",
    16: "MultinomialLogisticLoss", 34: "MVN", 17: "Pooling", 26: "Power", 18: "ReLU",
    19: "Sigmoid", 27: "SigmoidCrossEntropyLoss", 36: "Silence", 20: "Softmax",
    21: "SoftmaxWithLoss", 22: "Split", 33: "Slice", 23: "TanH", 24: "WindowData",
    31: "Threshold",
}


@dataclass
class LayerSpec:
    name: str
    type: str
    bottoms: list[str]
    tops: list[str]
    message: object  # the LayerParameter / V1LayerParameter, for its *_param fields
    blobs: list[np.ndarray] = field(default_factory=list)

    def param(self, name: str):
        return getattr(self.message, name)


@dataclass
class NetSpec:
    name: str
    inputs: dict[str, tuple[int, ...]]
    layers: list[LayerSpec]


def _layer_records(net) -> list[tuple[str, str, object]]:
    """(name, type string, message) for every layer, from whichever format is used."""
    if net.layer and net.layers:
        raise DreamerError("the model definition mixes `layer` and `layers` blocks; "
                           "use one format throughout")
    if net.layer:
        return [(m.name, m.type, m) for m in net.layer]
    return [(m.name, V1_TYPES.get(m.type, f"V1 type {m.type}"), m) for m in net.layers]


def blob_array(blob, layer: str = "?") -> np.ndarray:
    """A BlobProto as an array of its declared shape (new `shape`, or V1 num/ch/h/w)."""
    values = blob.data if len(blob.data) else blob.double_data
    array = np.asarray(values, dtype=np.float32)
    if blob.HasField("shape"):
        shape = tuple(int(d) for d in blob.shape.dim)
    else:
        shape = (blob.num, blob.channels, blob.height, blob.width)
    if int(np.prod(shape)) != array.size:
        raise DreamerError(f"a weight blob of layer '{layer}' declares shape {shape} but holds "
                           f"{array.size} values; the caffemodel is damaged: download it again")
    return array.reshape(shape)


def _inputs(net, records) -> dict[str, tuple[int, ...]]:
    inputs: dict[str, tuple[int, ...]] = {}
    for i, name in enumerate(net.input):
        if len(net.input_shape) > i:
            inputs[name] = tuple(int(d) for d in net.input_shape[i].dim)
        elif len(net.input_dim) >= 4 * (i + 1):
            inputs[name] = tuple(int(d) for d in net.input_dim[4 * i:4 * i + 4])
        else:
            inputs[name] = ()
    for name, type_, msg in records:
        if type_ == "Input":
            shapes = list(msg.input_param.shape)
            for j, top in enumerate(msg.top):
                shape = shapes[j] if j < len(shapes) else (shapes[0] if shapes else None)
                inputs[top] = tuple(int(d) for d in shape.dim) if shape is not None else ()
    return inputs


def net_spec(deploy, weights=None) -> NetSpec:
    """Combines a parsed deploy net with the blobs of a parsed caffemodel, by layer name.

    The caffemodel may hold a whole training net: layers the deploy net lacks are ignored.
    """
    records = _layer_records(deploy)
    inputs = _inputs(deploy, records)
    if not inputs:
        raise DreamerError("the model definition declares no input (no Input layer, no "
                           "`input:`); use the model's deploy.prototxt")
    blobs_by_name: dict[str, list] = {}
    if weights is not None:
        for name, _, msg in _layer_records(weights):
            if msg.blobs:
                blobs_by_name[name] = list(msg.blobs)
    layers = []
    for name, type_, msg in records:
        if type_ == "Input":
            continue
        blobs = [blob_array(b, name) for b in blobs_by_name.get(name, [])]
        layers.append(LayerSpec(name, type_, list(msg.bottom), list(msg.top), msg, blobs))
    return NetSpec(deploy.name, inputs, layers)
