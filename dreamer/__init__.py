"""DeepDreamVideo: deepdream on every frame of a video, Caffe models run by PyTorch.

The library, in three names (see docs/library.md):

    from dreamer import DreamConfig, dream_frames, run_all

    config = DreamConfig(iter_n=5, octave_n=3, layers=("inception_4c/output",), seed=1)
    dream_frames("frames", "dreamed", config)      # stage 2 on numbered frames
    run_all("clip.mp4", "clip_dream.mp4", config)  # stages 1, 2 and 3

Errors are dreamer.errors.DreamerError, one line each; Ctrl-C is Interrupted. Nothing
here installs signal handlers or prints but the progress (DreamConfig.verbose).
"""
from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["DreamConfig", "DreamerError", "Interrupted", "dream_frames", "run_all"]


def __getattr__(name: str):
    # PyTorch takes seconds to import: only what is used is loaded
    if name == "DreamConfig":
        from dreamer.config import DreamConfig
        return DreamConfig
    if name in ("DreamerError", "Interrupted"):
        from dreamer import errors
        return getattr(errors, name)
    if name in ("dream_frames", "run_all"):
        from dreamer.run import api
        return getattr(api, name)
    raise AttributeError(f"module 'dreamer' has no attribute {name!r}")
