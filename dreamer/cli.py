"""`dreamvideo`: one command for every stage, the models, the benchmark and the demo.

Only dispatches: each sub-command's own module parses its arguments and runs the work.
"""
from __future__ import annotations

import importlib
import sys

from dreamer import models
from dreamer.errors import DreamerError
from dreamer.oneline import report

USAGE = """usage: dreamvideo COMMAND [ARGS...]

  dream     stage 2: dream on numbered frames (the flags of 2_dreaming_time.py)
  extract   stage 1: video -> numbered frames (as ./1_movie2frames.sh)
  assemble  stage 3: frames + original audio -> video (as ./3_frames2movie.sh)
  gif       frames -> palette GIF (as ./frames2gif.sh)
  all       all three stages on a video in one go
  models    list | download NAME | verify NAME: the Caffe models
  bench     speed benchmark (s/frame, GFLOP/s, memory; --quick)
  demo      build a sample clip, dream it, write demo/*_done.mp4 and a contact sheet
  doctor    which ffmpeg, CPU and compiled kernels this machine runs with

`dreamvideo COMMAND -h` tells more."""

# command -> (module, function); imported only when used, so `models` starts fast
COMMANDS = {
    "dream": ("dreamer.dream_cli", "main"),
    "bench": ("dreamer.bench", "main"),
    "demo": ("dreamer.demo", "main"),
    "doctor": ("dreamer.doctor", "main"),
}
STAGE_COMMANDS = ("extract", "assemble", "gif", "all")


def models_main(argv: list[str]) -> int:
    action = argv[0] if argv else "list"
    try:
        if action == "list":
            for info in models.MODELS.values():
                print(f"{info.name:22s} {info.about}")
                print(f"{'':22s} weights {info.weights_url} (sha1 {info.weights_sha1})")
            print(f"models go to {models.download_dir()} ($DREAMER_MODELS overrides)")
            return 0
        if action in ("download", "verify") and len(argv) == 2:
            info = models.get_info(argv[1])
            if action == "download":
                folder = models.download(info)
                print(f"{info.name}: ready in {folder}")
                return 0
            ok, text = models.verify(info)
            print(text, file=sys.stdout if ok else sys.stderr)
            return 0 if ok else 1
    except DreamerError as e:
        return report(e)
    except KeyboardInterrupt:
        print("error: interrupted; run the same command again to resume the download",
              file=sys.stderr)
        return 130
    print("usage: dreamvideo models list | download NAME | verify NAME "
          f"(models: {', '.join(models.MODELS)})", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command == "models":
        return models_main(rest)
    if command in STAGE_COMMANDS:
        from dreamer import stages

        return stages.main([command, *rest], prog=f"dreamvideo {command}")
    if command in COMMANDS:
        module, function = COMMANDS[command]
        entry = getattr(importlib.import_module(module), function)
        return entry(rest, prog=f"dreamvideo {command}")
    print(f"dreamvideo: error: unknown command '{command}' (see dreamvideo --help)",
          file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
