"""Choosing the compute device (the CPU, or the CUDA GPU the user named) and compiling the
net for it."""
from __future__ import annotations

import torch

from dreamer.errors import DreamerError


def pick_device(gpu: int | None) -> torch.device:
    if gpu is None:
        return torch.device("cpu")
    if gpu < 0:
        raise DreamerError(f"--gpu {gpu} is not a device number; use 0 for the first GPU, "
                           "or leave --gpu out to run on the CPU")
    if torch.version.cuda is None:
        raise DreamerError(f"--gpu {gpu}: this PyTorch ({torch.__version__}) is built without "
                           "CUDA; install the CUDA build (see docs/install.md) or leave --gpu out")
    if not torch.cuda.is_available():
        raise DreamerError(f"--gpu {gpu}: no CUDA GPU is available on this machine; leave "
                           "--gpu out to run on the CPU")
    count = torch.cuda.device_count()
    if gpu >= count:
        raise DreamerError(f"--gpu {gpu}: this machine has {count} CUDA device(s), numbered "
                           f"0 to {count - 1}; choose one of them")
    return torch.device(f"cuda:{gpu}")


class CompiledNet:
    """The net run through torch.compile, one graph per (octave size, end layer); on a GPU
    with CUDA graphs, so a step is a few launches instead of hundreds of small kernels.
    Everything but the call (layers, validate, ...) is the net's own."""

    def __init__(self, net, backend: str | None = None):
        from torch import _dynamo

        # a default-parameters run needs 4 octave sizes x 5 end layers = 20 graphs
        _dynamo.config.cache_size_limit = max(_dynamo.config.cache_size_limit, 64)
        self.net = net
        self.cuda_graphs = backend is None and next(net.buffers()).is_cuda
        options = {"backend": backend} if backend else {
            "mode": "reduce-overhead" if self.cuda_graphs else None}
        self.compiled = torch.compile(net, dynamic=False, **options)

    def __call__(self, x: torch.Tensor, end: str | None = None) -> torch.Tensor:
        if self.cuda_graphs:  # each call is a new step: the last one's outputs are done
            torch.compiler.cudagraph_mark_step_begin()
        return self.compiled(x, end=end)

    def __getattr__(self, name):
        if name == "net":  # not set yet (a copy being made): no endless recursion
            raise AttributeError(name)
        return getattr(self.net, name)
