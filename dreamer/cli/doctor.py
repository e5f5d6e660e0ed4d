"""`dreamvideo doctor`: what this machine runs the stages with, one line each, so that a
bug report (or a user wondering why a frame is slow) starts from the facts: which ffmpeg
and its version, the CPU, PyTorch, and which compiled CPU kernels run and how they are
chosen (dreamer/caffe/autotune.py).
"""
from __future__ import annotations

import os
import sys

from dreamer.errors import DreamerError
from dreamer.cli.oneline import OneLineParser


def lines() -> list[tuple[str, bool]]:
    """(line, fine) pairs; a problem is a line that says what to do about it."""
    import torch

    import dreamer
    from dreamer.video import ffmpeg
    from dreamer.caffe import autotune, native

    out = [(f"dreamer {dreamer.__version__}, Python {sys.version.split()[0]}, PyTorch "
            f"{torch.__version__}", True)]
    try:
        out.append((ffmpeg.describe(), True))
    except DreamerError as e:
        out.append((f"ffmpeg: {e}", False))
    out.append((f"CPU: {autotune.cpu_model()}, {torch.get_num_threads()} threads of "
                f"{os.cpu_count()} CPUs", True))
    try:
        mode = autotune.mode()
    except DreamerError as e:
        return [*out, (f"CPU kernels: {e}", False)]
    if mode == "off":
        return [*out, ("CPU kernels: off (DREAMER_NATIVE=0): PyTorch's own operations", True)]
    if native.kernels() is None:
        return [*out, ("CPU kernels: not available (see the note above); PyTorch's own "
                       "operations run", False)]
    how = {"on": "always, where they apply (DREAMER_NATIVE=1)",
           "auto": "per layer, shape and direction, whichever of them and PyTorch's op is "
                   "faster, timed on first use (DREAMER_NATIVE=auto)"}[mode]
    out.append((f"CPU kernels: {native.variant()}; used {how}", True))
    if mode == "auto":
        path = autotune.cache_path()
        known = autotune.cached()
        share = sum(v == autotune.NATIVE for v in known.values())
        out.append((f"kernel choices cached in {path}: {len(known)} made, {share} for the "
                    "kernels", True))
    return out


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    parser = OneLineParser(prog=prog or "dreamvideo doctor", description=__doc__.splitlines()[0])
    parser.parse_args(argv)
    results = lines()
    for line, _ in results:
        print(line)
    return 0 if all(fine for _, fine in results) else 1
