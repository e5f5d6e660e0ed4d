"""A Caffe deploy net as a PyTorch module: `net.forward(x, end=layer_name)`."""
from __future__ import annotations

import copy
import math
from pathlib import Path

import torch
from torch import nn

from dreamer.caffe import proto
from dreamer.caffe.layers import (Convolution, InnerProduct, Pooling, ReLU, kernel_size,
                                  autocast_or_off, build_layer)
from dreamer.caffe.spec import LayerSpec, NetSpec, net_spec
from dreamer.errors import DreamerError
from dreamer.values.expr import shorten


class ShapeError(ValueError):
    """A layer cannot take the shape of its input; `layer` names it."""

    def __init__(self, layer: str, message: str):
        super().__init__(message)
        self.layer = layer


class CaffeNet(nn.Module):
    """Runs the layers in prototxt order, as Caffe does; in-place layers (ReLU on its own
    bottom) rebind the blob name, so stopping at a layer sees exactly Caffe's blob."""

    def __init__(self, spec: NetSpec, channels_last: bool = True, fuse: bool = True):
        super().__init__()
        self.name = spec.name
        self.input_name, self.input_shape = next(iter(spec.inputs.items()))
        self.layers = nn.ModuleList(build_layer(layer) for layer in spec.layers)
        self._index = {layer.name: i for i, layer in enumerate(self.layers)}
        self._check_graph(spec)
        for before, layer in zip(self.layers, self.layers[1:]):
            if isinstance(layer, ReLU) and isinstance(before, (Convolution, InnerProduct)) \
                    and layer.bottoms == layer.tops == before.tops[:1]:
                layer.inplace = True
        # ReLU layers whose work the max pool after them does (Pooling.fused_relu), by index
        self._fused_relus = self._fuse_relu_pool() if fuse else set()
        self.requires_grad_(False)
        self.eval()
        # NHWC: oneDNN/cuDNN convolutions, max pooling and the LRN's channel GEMM all run
        # without layout reorders (about 1.7x faster per step on CPU); inputs follow suit.
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.to(memory_format=self.memory_format)
        # Opt-in lower precision (e.g. torch.bfloat16 on a GPU): convolutions run under
        # autocast, the LRN and the returned activations stay float32.
        self.autocast_dtype: torch.dtype | None = None

    def _check_graph(self, spec: NetSpec) -> None:
        known = set(spec.inputs)
        for layer in self.layers:
            missing = [b for b in layer.bottoms if b not in known]
            if missing:
                raise DreamerError(f"layer '{layer.name}' reads blob '{missing[0]}' that no "
                                   "earlier layer makes; fix the prototxt")
            if not layer.tops:
                raise DreamerError(f"layer '{layer.name}' has no top; fix the prototxt")
            known.update(layer.tops)

    def _fuse_relu_pool(self) -> set[int]:
        """Finds ReLUs on their own bottom (Caffe's in-place form) read by nothing but the
        max pool right after them (GoogLeNet's conv1 -> relu -> pool1): that pool applies
        the ReLU to its output instead."""
        fused = set()
        for i, (relu, pool) in enumerate(zip(self.layers, self.layers[1:])):
            if not (isinstance(relu, ReLU) and relu.negative_slope == 0
                    and relu.bottoms == relu.tops and isinstance(pool, Pooling)
                    and pool.bottoms == relu.tops and pool.commutes_with_relu()):
                continue
            if any(relu.tops[0] in later.bottoms for later in self.layers[i + 2:]):
                continue
            pool.fused_relu = True
            fused.add(i)
        return fused

    def _layers_to(self, stop: int):
        """The layers that run for a forward ending at layer `stop`: all up to it, but a
        fused ReLU only when it is the end (otherwise the pool after it does its work)."""
        for i, layer in enumerate(self.layers[:stop + 1]):
            if i not in self._fused_relus or i == stop:
                yield layer

    @property
    def layer_names(self) -> list[str]:
        return [layer.name for layer in self.layers]

    def index(self, name: str) -> int:
        """The position of layer `name` in the net; an unknown name is refused."""
        return self._index[self.check_end(name)]

    def check_end(self, end: str) -> str:
        if end not in self._index:
            raise unknown_layer(end, self.layer_names)
        return end

    def forward(self, x: torch.Tensor, end: str | None = None) -> torch.Tensor:
        """The first top of layer `end` (default: the last layer); nothing past it runs."""
        stop = self._index[self.check_end(end)] if end is not None else len(self.layers) - 1
        if x.dim() == 4:
            x = x.contiguous(memory_format=self.memory_format)
        blobs = {self.input_name: x}
        with autocast_or_off(x.device.type, self.autocast_dtype):
            for layer in self._layers_to(stop):
                outputs = layer(*[blobs[b] for b in layer.bottoms])
                blobs.update(zip(layer.tops, outputs))
        return blobs[self.layers[stop].tops[0]].to(x.dtype)

    def validate(self, height: int = 224, width: int = 224, end: str | None = None) -> None:
        """Runs the net up to `end` on shapes only; raises ShapeError naming the first
        layer that cannot take its input, so callers can tell the user at load time, not
        in the middle of a dream."""
        for _ in self.blob_shapes(height, width, end):
            pass

    def blob_shapes(self, height: int, width: int, end: str | None = None):
        """Yields the tops of every layer up to `end`, as meta tensors: shapes only, no
        memory, no arithmetic. Raises ShapeError naming the first layer that cannot take
        its input."""
        channels = self.input_shape[1] if len(self.input_shape) > 1 else 3
        stop = self._index[self.check_end(end)] if end is not None else len(self.layers) - 1
        blobs = {self.input_name: torch.empty(1, channels, height, width, device="meta")}
        for layer in self.layers[:stop + 1]:
            try:
                outputs = _meta_copy(layer)(*[blobs[b] for b in layer.bottoms])
            except DreamerError:
                raise
            except (RuntimeError, ValueError, IndexError) as e:
                first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                raise ShapeError(layer.name, f"layer '{layer.name}' ({layer.type}): "
                                 f"{first}") from None
            blobs.update(zip(layer.tops, outputs))
            yield outputs


def _meta_copy(layer: nn.Module) -> nn.Module:
    """The layer with its buffers as shape-only meta tensors (no memory, no arithmetic);
    a shallow copy, so the net's own layer keeps its weights (`to` would move them)."""
    clone = copy.copy(layer)
    clone._buffers = {k: (v.to("meta") if v is not None else None)
                      for k, v in layer._buffers.items()}
    return clone


def unknown_layer(end: str, names: list[str]) -> DreamerError:
    return DreamerError(f"unknown layer '{shorten(end)}'; valid layers: {', '.join(names)}")


def check_model_files(prototxt: Path, caffemodel: Path) -> None:
    """Both files of a model are there, else one line saying which and how to point at it."""
    for path, what in ((prototxt, "model definition"), (caffemodel, "model weights")):
        if not Path(path).is_file():
            raise DreamerError(f"{what} {path} not found; point -t/--model_path at the model "
                               "folder and -m/--model_name at its .caffemodel")


def load_net(prototxt: Path, caffemodel: Path, channels_last: bool = True,
             fuse: bool = True) -> CaffeNet:
    """Reads a deploy prototxt and its caffemodel into a ready, frozen CaffeNet (with
    `fuse`, ReLUs that only feed a max pool run after it, on the smaller blob)."""
    check_model_files(prototxt, caffemodel)
    spec = net_spec(proto.read_prototxt(prototxt), proto.read_caffemodel(caffemodel))
    try:
        net = CaffeNet(spec, channels_last, fuse)
        net.validate(*_declared_size(spec))
    except (DreamerError, ValueError) as e:
        # a weight blob that does not fit shows up as a bad reshape or a conv's complaint;
        # name the shape the prototxt really asks for, from the blobs' channels
        mismatch = weight_mismatch(spec)
        if mismatch is not None:
            raise DreamerError(mismatch) from None
        if isinstance(e, DreamerError):
            raise
        raise DreamerError(f"{e}; the caffemodel does not belong to this prototxt, or the "
                           "prototxt is wrong") from None
    return net


def _declared_size(spec: NetSpec) -> tuple[int, int]:
    shape = next(iter(spec.inputs.values()))
    return tuple(shape[-2:]) if len(shape) == 4 else (224, 224)


def weight_mismatch(spec: NetSpec) -> str | None:
    """The first Convolution or InnerProduct whose caffemodel weights have another shape
    than its prototxt definition and its bottom blob (at the declared input size) ask
    for, as one line; None when every one fits."""
    shape = next(iter(spec.inputs.values()))
    channels = shape[1] if len(shape) > 1 else 3
    blobs = {next(iter(spec.inputs)): torch.empty(1, channels, *_declared_size(spec),
                                                  device="meta")}
    for layer_spec in spec.layers:
        bottoms = [blobs.get(b) for b in layer_spec.bottoms]
        if not bottoms or any(b is None for b in bottoms):
            return None
        needed, why = _needed_weights(layer_spec, bottoms[0])
        found = tuple(layer_spec.blobs[0].shape) if layer_spec.blobs else None
        if needed is not None and found is not None and _squeezed(found) != _squeezed(needed):
            return (f"weights of layer '{layer_spec.name}' in the caffemodel have shape "
                    f"{found}, but the prototxt needs {needed} ({why}); the caffemodel does "
                    "not belong to this prototxt")
        try:
            outputs = _meta_copy(build_layer(layer_spec))(*bottoms)
        except (DreamerError, RuntimeError, ValueError, IndexError):
            return None
        blobs.update(zip(layer_spec.tops, outputs))
    return None


def _needed_weights(spec: LayerSpec, bottom: torch.Tensor):
    """(shape, how it follows) of the weights `spec` needs on `bottom`, or (None, "")."""
    if spec.type == "Convolution":
        p = spec.param("convolution_param")
        kh, kw = kernel_size(p, (0, 0))
        groups = max(1, p.group)
        why = (f"num_output {p.num_output}, {bottom.shape[1]} input channels"
               + (f" in {groups} groups" if groups > 1 else "") + f", {kh}x{kw} kernel")
        return (p.num_output, bottom.shape[1] // groups, kh, kw), why
    if spec.type == "InnerProduct":
        p = spec.param("inner_product_param")
        inputs = math.prod(bottom.shape[p.axis:])
        shape = (inputs, p.num_output) if p.transpose else (p.num_output, inputs)
        return shape, f"num_output {p.num_output}, {inputs} inputs"
    return None, ""


def _squeezed(shape) -> tuple[int, ...]:
    """The shape without leading 1s (old caffemodels pad weight shapes to 4-D)."""
    shape = tuple(shape)
    while len(shape) > 1 and shape[0] == 1:
        shape = shape[1:]
    return shape
