"""Compiled CPU kernels for max pooling and the cross-channel LRN (kernels.cpp), optional.

Eager PyTorch runs these two layers as many passes over memory, and its channels_last
max-pool backward uses one core for one image; kernels.cpp does each in one pass over a
pixel's channels, on all cores: measured 540x360 with GoogLeNet, about 15 % less time a
frame. They are built once per machine (about 30 s) by PyTorch's own extension builder,
which needs a C++ compiler and ninja. Where either is missing, or the build fails, or
DREAMER_NATIVE=0, the PyTorch path runs instead: the same results, a little slower.
"""
from __future__ import annotations

import hashlib
import logging
import os
import shutil
import threading
from pathlib import Path

import torch

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("kernels.cpp")
# -march=native: the loops vectorise for this CPU (the module's name carries a hash of the
# CPU's flags, so another CPU gets its own build); -fno-math-errno: sqrt vectorises;
# -fopenmp: at::parallel_for runs on PyTorch's OpenMP threads, not on one.
CFLAGS = ["-O3", "-march=native", "-fno-math-errno", "-fopenmp"]
_lock = threading.Lock()
_built: dict[str, object] = {}


def kernels():
    """The compiled module, built on first use; None when unavailable (logged once)."""
    if os.environ.get("DREAMER_NATIVE", "1") == "0":
        return None
    with _lock:
        if "module" not in _built:
            _built["module"] = _build()
        return _built["module"]


def usable(x: torch.Tensor) -> bool:
    """Whether the kernels can take `x`: float32 on the CPU, outside torch.compile (which
    cannot trace into them, and fuses these layers its own way), kernels available."""
    return (x.device.type == "cpu" and x.dtype == torch.float32
            and not torch.compiler.is_compiling() and kernels() is not None)


def _build():
    problem = _missing_tool()
    if problem is None:
        from torch.utils import cpp_extension
        log.info("note: compiling the CPU kernels for pooling and LRN (once per machine, "
                 "about 30 s)")
        try:
            return cpp_extension.load(
                _module_name(), [str(SOURCE)], verbose=False,
                extra_cflags=CFLAGS, extra_ldflags=["-fopenmp"])
        except Exception as e:  # compiler errors, unwritable cache: fall back, never stop
            lines = [line for line in str(e).splitlines() if line.strip()]
            problem = f"the build failed ({lines[-1] if lines else type(e).__name__})"
    log.warning(f"note: {problem}; pooling and LRN run on PyTorch's slower path. "
                "Set DREAMER_NATIVE=0 to skip the build and this note")
    return None


def _missing_tool() -> str | None:
    from torch.utils import cpp_extension

    compiler = os.environ.get("CXX", "c++")
    if shutil.which(compiler) is None:
        return f"no C++ compiler ({compiler}) to build the CPU kernels"
    if not cpp_extension.is_ninja_available():
        return "no ninja (pip install ninja) to build the CPU kernels"
    return None


def _module_name() -> str:
    """Names the build by source, flags, CPU and torch version: a cache directory shared
    by machines or torch versions never loads a build made for another."""
    key = hashlib.sha1(SOURCE.read_bytes())
    key.update(" ".join(CFLAGS).encode())
    key.update(_cpu_flags().encode())
    key.update(torch.__version__.encode())
    return f"dreamer_kernels_{key.hexdigest()[:12]}"


def _cpu_flags() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    import platform
    return platform.processor() or platform.machine()
