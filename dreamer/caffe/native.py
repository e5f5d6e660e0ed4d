"""Compiled CPU kernels, optional: max pooling and the cross-channel LRN (kernels.cpp),
3x3 and 5x5 convolutions by Winograd's algorithm (winograd.cpp, see winograd.py).

Eager PyTorch runs the two layers as many passes over memory, and its channels_last
max-pool backward uses one core for one image; kernels.cpp does each in one pass over a
pixel's channels, on all cores. Measured with GoogLeNet at 540x360: a full-size step
114 -> 92 ms; with the Winograd convolutions a whole frame 2.4 -> 1.8 s. They are built
once per machine (about 30 s) by PyTorch's own extension builder, which needs a C++
compiler and ninja. Where either is missing, or the build fails, or DREAMER_NATIVE=0,
PyTorch's operations run instead: the same results to float rounding, slower.

The vector width and register blocking follow the instruction set the build targets
(variant() names it): AVX-512, AVX2 with FMA, or a portable path of 4-float vectors (SSE,
ARM NEON). DREAMER_NATIVE_MARCH=<cpu> (a GCC -march name such as haswell or znver3) builds
for that CPU instead of this one, under its own name: so the AVX2 path can be built and
tested on an AVX-512 machine. It must name a CPU whose instructions this one runs.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import os
import platform
import shlex
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import torch

log = logging.getLogger(__name__)

SOURCES = [Path(__file__).with_name(name) for name in ("kernels.cpp", "winograd.cpp")]
# -march=native: the loops vectorise for this CPU (the module's name carries a hash of the
# CPU's flags, so another CPU gets its own build); -fno-math-errno: sqrt vectorises;
# -fopenmp: at::parallel_for runs on PyTorch's OpenMP threads, not on one. On x86-64,
# AVX-512 vectors where the CPU has them (GCC picks 256-bit ones by default): the pool's
# backward 40 % faster.
# DREAMER_NATIVE_MARCH replaces "native" by another CPU's name (_cflags()).
MARCH_VARIABLE = "DREAMER_NATIVE_MARCH"
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


def variant() -> str | None:
    """The instruction set the kernels were built for, in words (as "avx2+fma (8 lanes,
    panels of 16)"); None when they are unavailable."""
    module = kernels()
    return None if module is None else module.variant()


def usable(x: torch.Tensor) -> bool:
    """Whether the kernels can take `x`: float32 on the CPU, outside torch.compile (which
    cannot trace into them, and fuses these layers its own way), kernels available."""
    return (x.device.type == "cpu" and x.dtype == torch.float32
            and not torch.compiler.is_compiling() and kernels() is not None)


def _build():
    """A finished build if there is one (no compiler needed then), else a new one."""
    from torch.utils import cpp_extension
    try:
        name = build_name()
        root = os.environ.get("TORCH_EXTENSIONS_DIR") or cpp_extension.get_default_build_root()
        folder = Path(root) / name
        module = _import_complete(name, folder / f"{name}.so")
        if module is not None:
            return module
        problem = _missing_tool()
        if problem is None:
            # (a warning, so that it shows whatever logging the caller set up: the first
            # frame would otherwise stall without a word)
            log.warning("note: compiling the CPU kernels for convolutions, pooling and "
                        "LRN (once per machine, about 30 s)")
            folder.mkdir(parents=True, exist_ok=True)
            with _build_lock(folder), _torch_lib_quoted(cpp_extension):
                module = cpp_extension.load(name, [str(s) for s in SOURCES],
                                            build_directory=str(folder), verbose=False,
                                            extra_cflags=_cflags(), extra_ldflags=["-fopenmp"])
                _mark_complete(folder / f"{name}.so")
                return module
    except Exception as e:  # compiler errors, unwritable cache: fall back, never stop
        lines = [line for line in str(e).splitlines() if line.strip()]
        problem = f"the build failed ({lines[-1] if lines else type(e).__name__})"
    log.warning(f"note: {problem}; convolutions, pooling and LRN run on PyTorch's slower "
                "path. Set DREAMER_NATIVE=0 to skip the build and this note")
    return None


def _import_complete(name: str, path: Path):
    """The module built before, imported as is (no lock, no ninja: a read-only cache works
    too), if its fingerprint says the build finished. A build killed while linking leaves
    a cut-off file, and loading one can kill the process (SIGBUS), not raise: such a file,
    or one without a fingerprint, goes to PyTorch's builder, which relinks it."""
    try:
        if _fingerprint(path) != _marker(path).read_text().strip():
            return None
    except OSError:
        return None
    import importlib.util

    try:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    except ImportError:
        return None


def _mark_complete(path: Path) -> None:
    """Writes the fingerprint of a finished build beside it (skipped where the cache is
    read-only: the next run then asks the builder again, which is only slower)."""
    with contextlib.suppress(OSError):
        part = path.with_name(path.name + ".part")
        part.write_text(_fingerprint(path))
        os.replace(part, _marker(path))


def _marker(path: Path) -> Path:
    return path.with_name(path.name + ".sha1")


def _fingerprint(path: Path) -> str:
    return hashlib.sha1(path.read_bytes()).hexdigest()


@contextlib.contextmanager
def _build_lock(folder: Path):
    """Serialises builds by a lock the OS drops when its process dies. PyTorch's own lock
    is a file that a build killed with -9 (or a power cut) leaves behind, and every later
    build would wait on it forever; holding this lock, any such file is stale: removed."""
    try:
        import fcntl
    except ImportError:  # not POSIX: PyTorch's lock alone
        yield
        return
    with open(folder / "dreamer.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        (folder / "lock").unlink(missing_ok=True)
        yield


@contextlib.contextmanager
def _torch_lib_quoted(cpp_extension):
    """PyTorch writes -L<its lib folder> into the build file unquoted (its include folders
    it quotes), so a torch installed under a path with a space (a venv inside "my
    projects/") fails to link. Quoted for the shell ninja runs the linker in, while
    building only."""
    path = cpp_extension.TORCH_LIB_PATH
    if not any(c.isspace() for c in path):
        yield
        return
    cpp_extension.TORCH_LIB_PATH = shlex.quote(path)
    try:
        yield
    finally:
        cpp_extension.TORCH_LIB_PATH = path


def _missing_tool() -> str | None:
    from torch.utils import cpp_extension

    compiler = os.environ.get("CXX", "c++")
    if shutil.which(compiler) is None:
        return f"no C++ compiler ({compiler}) to build the CPU kernels"
    if not cpp_extension.is_ninja_available():
        return "no ninja (pip install ninja) to build the CPU kernels"
    return None


def build_name() -> str:
    """Names the build by source, flags, CPU, Python and torch version: a cache folder
    shared by machines or versions never loads a build made for another."""
    key = hashlib.sha1()
    for source in SOURCES:
        key.update(source.read_bytes())
    for part in (" ".join(_cflags()), _cpu_flags(), sys.version, torch.__version__):
        key.update(part.encode())
    return f"dreamer_kernels_{key.hexdigest()[:12]}"


def _cflags() -> list[str]:
    """The compiler's flags: for this CPU, or for the one DREAMER_NATIVE_MARCH names."""
    march = os.environ.get(MARCH_VARIABLE, "").strip() or "native"
    wide = platform.machine().lower() in ("x86_64", "amd64") and (
        march == "native" or _has_avx512(march))
    flags = ["-O3", f"-march={march}", "-fno-math-errno", "-fopenmp"]
    return flags + (["-mprefer-vector-width=512"] if wide else [])


@functools.lru_cache(maxsize=None)
def _has_avx512(march: str) -> bool:
    """Whether the compiler's -march=<march> has AVX-512 (asked of the compiler itself:
    no list of CPU names to keep up to date). False where it cannot tell."""
    command = [os.environ.get("CXX", "c++"), f"-march={march}", "-dM", "-E", "-x", "c++",
               os.devnull]
    try:
        macros = subprocess.run(command, capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    return "__AVX512F__" in macros


def _cpu_flags() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return platform.processor() or platform.machine()
