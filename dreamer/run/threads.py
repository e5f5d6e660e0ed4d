"""How the compute backend runs: CPU threads and memory, GPU precision and determinism.

Call `configure(device)` once before dreaming. Defaults keep results within the Caffe
goldens; faster, looser settings are opt-in.
"""
from __future__ import annotations

import ctypes
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


# glibc's malloc keeps freed memory for reuse and raises its mmap threshold as big blocks
# are freed, up to 32 MB. A 1920x1080 dream frees and allocates hundreds of 16-130 MB
# tensors per step; kept on the heap they fragment it, and a frame that has 1.8 GB live
# peaked at 3.1 GB of RAM. Blocks of 16 MB and up now come from the OS and go back when
# freed: measured at 1920x1080, inception_5b, 2 frames: peak 3.08 -> 2.41 GB, 10 % more
# time. At 540x360 no tensor reaches 16 MB: nothing changes.
MMAP_THRESHOLD = 16 << 20
TRIM_THRESHOLD = 64 << 20
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameter numbers


def limit_heap_retention() -> bool:
    """Sets glibc's malloc thresholds (see MMAP_THRESHOLD); False where there is no glibc
    mallopt (macOS, Windows) or the user set MALLOC_*_ variables, which then win."""
    if any(v in os.environ for v in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError, TypeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
                and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))


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
    if device.type == "cpu":
        limit_heap_retention()
    if device.type == "cuda":
        fast = precision != "fp32"
        torch.backends.cuda.matmul.allow_tf32 = fast
        torch.backends.cudnn.allow_tf32 = fast  # PyTorch's default is True: not for fp32
        torch.backends.cudnn.benchmark = not deterministic
        torch.backends.cudnn.deterministic = deterministic
