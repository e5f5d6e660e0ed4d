"""Deterministic random weights for a deploy net, from the deploy file alone: a model whose
weights are not downloaded can still be timed (`dreamvideo bench --random-weights`) or
tried for shapes. The dreams mean nothing; the arithmetic is the real net's.

Each layer's blob shapes follow from its parameters and its bottom blob, walked with
shape-only meta tensors at the net's declared input size: Convolution and InnerProduct
get He-normal weights (std sqrt(2 / fan-in)) and a small uniform bias where bias_term
holds; BatchNorm a mean, a variance and a scale factor of 1; Scale a gamma near 1 (and a
beta where bias_term holds). The numbers come from one numpy generator seeded by `seed`,
drawn layer by layer in prototxt order: the same deploy file and seed give the same net.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from dreamer.caffe import proto
from dreamer.caffe.layers import BUILDERS, build_layer
from dreamer.caffe.net import CaffeNet, _declared_size, _meta_copy, _needed_weights
from dreamer.caffe.spec import LayerSpec, NetSpec, net_spec
from dreamer.errors import DreamerError

BIAS = 0.01  # biases are uniform in [-BIAS, BIAS]
WITH_BLOBS = ("Convolution", "InnerProduct", "BatchNorm", "Scale")
# the supported layer types that hold no blobs
WITHOUT_BLOBS = tuple(t for t in BUILDERS if t not in WITH_BLOBS)


def fill(spec: NetSpec, seed: int = 0) -> NetSpec:
    """Gives every layer of `spec` random blobs of the shapes the net needs (replacing any
    it had) and returns it."""
    rng = np.random.default_rng(seed)
    shape = next(iter(spec.inputs.values()))
    channels = shape[1] if len(shape) > 1 else 3
    blobs = {next(iter(spec.inputs)): torch.empty(1, channels, *_declared_size(spec),
                                                  device="meta")}
    for layer in spec.layers:
        if layer.type not in BUILDERS:
            raise DreamerError(f"layer '{layer.name}' has type {layer.type}, which random "
                               f"weights cannot fill (they know {', '.join(WITH_BLOBS)} and "
                               "the blob-free supported types); use a deploy net without it")
        missing = [b for b in layer.bottoms if b not in blobs]
        if missing:
            raise DreamerError(f"layer '{layer.name}' reads blob '{missing[0]}' that no "
                               "earlier layer makes; fix the prototxt")
        bottoms = [blobs[b] for b in layer.bottoms]
        layer.blobs = _random_blobs(layer, bottoms, rng) if layer.type in WITH_BLOBS else []
        try:
            outputs = _meta_copy(build_layer(layer))(*bottoms)
        except DreamerError:
            raise
        except (RuntimeError, ValueError, IndexError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise DreamerError(f"layer '{layer.name}' ({layer.type}) cannot take its input "
                               f"at the declared size: {first}; fix the prototxt") from None
        blobs.update(zip(layer.tops, outputs))
    return spec


def _random_blobs(layer: LayerSpec, bottoms: list[torch.Tensor],
                  rng: np.random.Generator) -> list[np.ndarray]:
    if not bottoms:
        raise DreamerError(f"layer '{layer.name}' ({layer.type}) has no bottom; fix the "
                           "prototxt")
    bottom = bottoms[0]
    if layer.type in ("Convolution", "InnerProduct"):
        shape, _ = _needed_weights(layer, bottom)
        p = layer.param("convolution_param" if layer.type == "Convolution"
                        else "inner_product_param")
        if layer.type == "InnerProduct" and p.transpose:
            fan_in = shape[0]
        else:
            fan_in = math.prod(shape[1:])
        if 0 in shape:
            raise DreamerError(f"layer '{layer.name}' ({layer.type}) would have weights of "
                               f"shape {tuple(shape)}; fix the prototxt")
        weight = rng.standard_normal(shape, dtype=np.float32)
        weight *= np.float32(math.sqrt(2.0 / fan_in))
        out = [weight]
        if p.bias_term:
            out.append(rng.uniform(-BIAS, BIAS, p.num_output).astype(np.float32))
        return out
    if layer.type == "BatchNorm":
        c = bottom.shape[1]
        mean = rng.uniform(-BIAS, BIAS, c).astype(np.float32)
        var = rng.uniform(0.5, 1.5, c).astype(np.float32)
        return [mean, var, np.ones(1, np.float32)]
    # Scale: a learned gamma (one bottom) over bottom axes [axis, axis + num_axes)
    p = layer.param("scale_param")
    out = []
    if len(bottoms) == 1:
        axis = p.axis % bottom.dim()
        end = bottom.dim() if p.num_axes == -1 else axis + p.num_axes
        shape = tuple(bottom.shape[axis:end])
        out.append(rng.uniform(0.5, 1.5, shape).astype(np.float32))
    else:
        shape = tuple(bottoms[1].shape)
    if p.bias_term:
        out.append(rng.uniform(-BIAS, BIAS, shape).astype(np.float32))
    return out


def random_net(prototxt: Path, seed: int = 0, channels_last: bool = True,
               fuse: bool = True) -> CaffeNet:
    """The net of a deploy prototxt with `fill`'s random weights: ready and frozen, as
    net.load_net returns it."""
    if not Path(prototxt).is_file():
        raise DreamerError(f"model definition {prototxt} not found; name the deploy file "
                           "with --prototxt FILE")
    spec = fill(net_spec(proto.read_prototxt(prototxt)), seed)
    net = CaffeNet(spec, channels_last, fuse)
    try:
        net.validate(*_declared_size(spec))
    except ValueError as e:
        raise DreamerError(f"{e}; fix the prototxt") from None
    return net
