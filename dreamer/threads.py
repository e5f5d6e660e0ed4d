"""How the compute backend runs: CPU threads, GPU precision and determinism.

Call `configure(device)` once before dreaming. Defaults keep results within the Caffe
goldens; faster, looser settings are opt-in.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

PRECISIONS = ("fp32", "tf32", "bf16")


def usable_cpus() -> int:
    """CPUs this process may really use: its affinity mask, capped by a cgroup CPU quota
    (a container given 2 CPUs of a 64-core host must not start 32 OpenMP threads: with
    more threads than CPUs, every parallel loop waits on a descheduled thread)."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:
        n = os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            n = min(n, max(1, int(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, n)


def set_threads(threads: int | None = None) -> int:
    """One intra-op thread per usable CPU, at most PyTorch's own choice (physical cores,
    not hyper-threads); OMP_NUM_THREADS, when the user set it, wins. Returns the count."""
    if threads is None:
        if os.environ.get("OMP_NUM_THREADS"):
            return torch.get_num_threads()
        threads = min(torch.get_num_threads(), usable_cpus())
    torch.set_num_threads(max(1, threads))
    return torch.get_num_threads()


def configure(device: torch.device, precision: str = "fp32", deterministic: bool = False,
              threads: int | None = None) -> None:
    """Backend settings for a run on `device`.

    precision: "fp32" (default; matches Caffe), "tf32" (CUDA: TF32 tensor cores for convs
    and matmuls), "bf16" (autocast is applied by the net, see CaffeNet.autocast_dtype; here
    it only also allows TF32 for what stays fp32). deterministic: same numbers on every run
    of the same GPU (cuDNN picks fixed algorithms, no autotuning), for exact resume.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}")
    set_threads(threads)
    if device.type == "cuda":
        fast = precision != "fp32"
        torch.backends.cuda.matmul.allow_tf32 = fast
        torch.backends.cudnn.allow_tf32 = fast  # PyTorch's default is True: not for fp32
        torch.backends.cudnn.benchmark = not deterministic
        torch.backends.cudnn.deterministic = deterministic
