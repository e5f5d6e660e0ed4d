"""Which runs a layer: the compiled CPU kernel or PyTorch's own operation, whichever is
faster here, for this layer, input shape and direction (forward or input gradient).

A kernel that wins on one CPU can lose on another (the Winograd convolutions were twice
as slow as oneDNN's on an AVX2-only machine before they had AVX2 blocking), and which one
wins also changes with the shape: the same 3x3 layer at the smallest octave makes a few
tiles where the full frame makes thousands. So, like cuDNN's benchmark mode, both are
timed on the first call with a given key and the faster one is kept for the rest of the
run. The choices are cached on disk per CPU model, thread count and kernel build, so the
next run starts with them made, and a run records the ones it used in its manifest, so
that a resumed run makes the same ones and repeats the interrupted one bit for bit.

DREAMER_NATIVE picks the mode: `auto` (the default) times; `1` always runs the kernels
where they apply; `0` never builds or runs them.
"""
from __future__ import annotations

import contextlib
import functools
import json
import os
import platform
import threading
import time
from pathlib import Path
from typing import Callable, TypeVar

import torch

from dreamer.errors import DreamerError

NATIVE, TORCH = "native", "torch"
MODES = {"0": "off", "1": "on", "auto": "auto", "": "auto"}
ROUNDS = 3  # timed calls of each, after one warm-up call each; the minimum counts
CLEAR = 1.5  # a winner by this factor after one timed round is not timed further
T = TypeVar("T")


def mode() -> str:
    """`off`, `on` or `auto`, from DREAMER_NATIVE."""
    value = os.environ.get("DREAMER_NATIVE", "auto").strip().lower()
    if value not in MODES:
        raise DreamerError(f"DREAMER_NATIVE={value} is not a mode; use auto (time both and "
                           "keep the faster), 1 (always the compiled kernels) or 0 (never)")
    return MODES[value]


def key(layer: str | None, op: str, direction: str, shape) -> str | None:
    """`inception_3a/3x3|conv|forward|1x96x68x45`: one choice. None for an unnamed layer
    (a test's): the kernels run there, untimed."""
    if layer is None:
        return None
    return f"{layer}|{op}|{direction}|{'x'.join(str(int(n)) for n in shape)}"


class _Choices:
    """The choices of this process: those made or loaded, and those used since the last
    call to `take_used` (what the manifest has not recorded yet)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.known: dict[str, str] = {}
        self.used: dict[str, str] = {}
        self.new_used: dict[str, str] = {}
        self.timed: dict[str, str] = {}  # made here, not yet on disk
        self.loaded_from: Path | None = None
        self.loaded_for: int | None = None  # the thread count it was read for

    def reset(self) -> None:
        self.__init__()


_choices = _Choices()


def decide(k: str | None, native_fn: Callable[[], T], torch_fn: Callable[[], T],
           trials: tuple[Callable, Callable] | None = None) -> tuple[str, T]:
    """(which ran, its result): the kernel in mode `on`, PyTorch's op in mode `off`, else
    the choice for `k`, timed now if there is none yet. Both must compute the same thing
    without side effects: they may both run, several times. `trials`, when given, are
    what is timed instead (e.g. forward and backward together), for the kernel and for
    PyTorch; the winner then runs once more for the result."""
    m = "on" if k is None else mode()
    if m != "auto":
        choice = NATIVE if m == "on" else TORCH
        return choice, (native_fn if choice == NATIVE else torch_fn)()
    _load_cache()
    choice = _choices.known.get(k)  # (a dict read is atomic; writes take the lock)
    if choice is None:
        # Another run on this machine may have timed it since this one started: the
        # first choice made here is everyone's, so two runs of a command give one result
        choice = _read(_choices.loaded_from).get(k) if _choices.loaded_from else None
    if choice is None:
        choice = _time(*(trials or (native_fn, torch_fn)))
        with _choices.lock:
            _choices.known[k] = _choices.timed[k] = choice
        save()
    elif k not in _choices.known:
        with _choices.lock:
            _choices.known[k] = choice
    result = (native_fn if choice == NATIVE else torch_fn)()
    _note_used(k, choice)
    return choice, result


def _time(native_fn, torch_fn) -> str:
    """Which of the two is faster. Calls alternate, so that a slow spell of a shared
    machine hits both; the minimum of each is what the op costs when undisturbed. Each
    timed result is dropped at once, so timing never holds more memory than a call does
    (the tile planner's budget assumes one); the caller runs the winner once more for the
    result: the same bits (both ops are deterministic for a given thread count)."""
    fns = {NATIVE: native_fn, TORCH: torch_fn}
    best = {name: float("inf") for name in fns}
    for round_ in range(ROUNDS + 1):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            seconds = time.perf_counter() - start
            if round_ > 0:  # the first call pays for first touches and allocations
                best[name] = min(best[name], seconds)
        if round_ > 0 and max(best.values()) > CLEAR * min(best.values()):
            break  # no disturbance makes up a gap this wide: the first frame waits less
    return NATIVE if best[NATIVE] <= best[TORCH] else TORCH


def _note_used(k: str, choice: str) -> None:
    if _choices.used.get(k) == choice:
        return
    with _choices.lock:
        if _choices.used.get(k) != choice:
            _choices.used[k] = choice
            _choices.new_used[k] = choice


def take_used() -> dict[str, str]:
    """The choices used since the last call (for the manifest's frame records)."""
    with _choices.lock:
        new, _choices.new_used = _choices.new_used, {}
    return new


def used() -> dict[str, str]:
    with _choices.lock:
        return dict(_choices.used)


def adopt(choices: dict[str, str]) -> None:
    """Makes these choices (an interrupted run's, from its manifest) this run's, whatever
    the disk cache or a timing would say: a resumed run repeats the interrupted one."""
    _load_cache()
    with _choices.lock:
        for k, choice in choices.items():
            if choice in (NATIVE, TORCH):
                _choices.known[k] = choice


def reset() -> None:
    """Forgets every choice of this process (the disk cache stays)."""
    _choices.reset()


def setup() -> dict:
    """What a run's record says of its kernels: the mode, which build runs (None when
    off or unavailable), on which CPU with how many threads."""
    from dreamer.caffe import native

    m = mode()
    variant = None if m == "off" else native.variant()
    return {"mode": m, "variant": variant, "cpu": cpu_model(),
            "threads": torch.get_num_threads()}


# --- the disk cache ---------------------------------------------------------------------

def cache_path() -> Path:
    """One file per CPU model, thread count and kernel build (the build's name hashes the
    sources, flags and CPU flags): choices are never carried to where they were not
    measured. $DREAMER_TUNE_CACHE moves the folder (tests use a temporary one)."""
    folder = os.environ.get("DREAMER_TUNE_CACHE")
    if not folder:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"),
                                                                ".cache")
        folder = os.path.join(base, "dreamer", "kernel-choices")
    return Path(folder) / f"{_machine()}-{torch.get_num_threads()}threads.json"


@functools.cache
def _machine() -> str:
    """The kernel build's name and the CPU model, read once: every tuned call asks."""
    from dreamer.caffe import native

    cpu = "".join(c if c.isalnum() else "-" for c in cpu_model()).strip("-")[:60]
    return f"{native.build_name()}-{cpu}"


@functools.cache
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("model name", "Model", "Hardware")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _load_cache() -> None:
    """Reads the disk cache once per process and thread count (which can change between
    runs in one process, as in the tests)."""
    # Kept cheap, as every tuned call asks: the folder is read once (until reset())
    where = torch.get_num_threads()
    if _choices.loaded_for == where:
        return
    path = cache_path()
    with _choices.lock:
        _choices.loaded_for, _choices.loaded_from = where, path
        _choices.known = {**_read(path), **_choices.known}


def cached() -> dict[str, str]:
    """The choices in this machine's disk cache (for `dreamvideo doctor`)."""
    return _read(cache_path())


MAX_CACHE_BYTES = 2**20  # a few hundred choices take a few KB; more is not this cache


def _read(path: Path) -> dict[str, str]:
    """The choices in a cache file; none when it is missing, too large, damaged or not
    what this module writes (they are timed again, and the file is rewritten whole when
    the next choice is saved): a cache only saves time, never fails a run."""
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_CACHE_BYTES + 1)
        if len(raw) > MAX_CACHE_BYTES:
            return {}
        data = json.loads(raw.decode("utf-8"))
        return {k: v for k, v in data.get("choices", {}).items()
                if isinstance(k, str) and v in (NATIVE, TORCH)}
    except (OSError, ValueError, AttributeError, TypeError, RecursionError, MemoryError):
        return {}  # (ValueError: not JSON or UTF-8; RecursionError: nested too deep)


def save() -> None:
    """Writes this process's new choices to the disk cache (at once, as each is made),
    merged with what other runs wrote meanwhile; quietly skipped where the cache cannot be
    written (it only saves time)."""
    with _choices.lock:
        if not _choices.timed or _choices.loaded_from is None:
            return
        path, ours, _choices.timed = _choices.loaded_from, _choices.timed, {}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        merged = {**ours, **_read(path)}  # what another run wrote first stays
        tmp.write_text(json.dumps({"cpu": cpu_model(), "threads": torch.get_num_threads(),
                                   "choices": dict(sorted(merged.items()))}, indent=0),
                       encoding="utf-8")
        os.replace(tmp, path)
    except OSError:  # (a full disk, a read-only folder, a folder where the file goes)
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)  # no half-written file is left behind
