"""Choosing the compute device: the CPU, or the CUDA GPU the user named."""
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
                           "CUDA; install the CUDA build (see README) or leave --gpu out")
    if not torch.cuda.is_available():
        raise DreamerError(f"--gpu {gpu}: no CUDA GPU is available on this machine; leave "
                           "--gpu out to run on the CPU")
    count = torch.cuda.device_count()
    if gpu >= count:
        raise DreamerError(f"--gpu {gpu}: this machine has {count} CUDA device(s), numbered "
                           f"0 to {count - 1}; choose one of them")
    return torch.device(f"cuda:{gpu}")
