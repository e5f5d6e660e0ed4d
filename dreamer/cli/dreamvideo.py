"""`dreamvideo`: one command for every stage, the models, the benchmark and the demo.

Only dispatches: each sub-command's own module parses its arguments and runs the work.
"""
from __future__ import annotations

import importlib
import os
import sys

from dreamer.cli.signals import finish, run, starting

USAGE = """usage: dreamvideo COMMAND [ARGS...]

  dream     stage 2: dream on numbered frames (the flags of 2_dreaming_time.py)
  extract   stage 1: video -> numbered frames (as ./1_movie2frames.sh)
  assemble  stage 3: frames + original audio -> video (as ./3_frames2movie.sh)
  gif       frames -> palette GIF (as ./frames2gif.sh)
  all       all three stages on a video in one go
  models    list [-v] | download NAME | verify NAME: the Caffe models
  layers    [MODEL] [IMAGE]: the layers a dream can end at (--sheet OUT.png: dream each)
  bench     speed benchmark (s/frame, GFLOP/s, memory; --quick)
  demo      build a sample clip, dream it, write demo/*_done.mp4 and a contact sheet
  doctor    which ffmpeg, CPU and compiled kernels this machine runs with
  flicker   ORIGINAL_DIR DREAMED_DIR...: how much each dream flickers (table, --plot PNG)
  studio    FILM_OR_FRAMES: a web page to try settings on the film's frames, then render

`dreamvideo COMMAND -h` tells more."""

# command -> (module, function); imported only when used, so `models` starts fast
COMMANDS = {
    "dream": ("dreamer.cli.dream", "main"),
    "bench": ("dreamer.cli.bench", "main"),
    "demo": ("dreamer.cli.demo", "main"),
    "doctor": ("dreamer.cli.doctor", "main"),
    "flicker": ("dreamer.cli.flicker", "main"),
    "layers": ("dreamer.cli.layers", "main"),
    "studio": ("dreamer.studio.cli", "main"),  # the layer above cli, imported only here
}
STAGE_COMMANDS = ("extract", "assemble", "gif", "all")


def models_main(argv: list[str]) -> int:
    return run(lambda: _models(argv), again="run the same command again to resume the download")


def _models(argv: list[str]) -> int:
    from dreamer.caffe import models

    action = argv[0] if argv else "list"
    if action == "list":
        _list(models, verbose="-v" in argv or "--verbose" in argv)
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
    print("usage: dreamvideo models list | download NAME | verify NAME "
          f"(models: {', '.join(models.MODELS)})", file=sys.stderr)
    return 2


def _list(models, verbose: bool) -> None:
    """Two lines a model (with -v: where it comes from, how it is checked, its licence);
    `*` marks the ones found on this machine."""
    for info in models.MODELS.values():
        here = any((d / info.name / info.caffemodel).is_file() for d in models.search_dirs())
        print(f"{'*' if here else ' '} {info.name:24s} {info.size_mb:>5g} MB  {info.about}")
        print(f"  {'':24s} layers: {', '.join(info.layers)}")
        if verbose:
            checked = (f"sha1 {info.weights_sha1} ({info.sha1_source})" if info.weights_sha1
                       else f"sha1: {info.sha1_source}")
            print(f"  {'':24s} weights: {info.weights_url or 'by hand from ' + info.page}")
            print(f"  {'':24s} {checked}; licence: {info.licence}")
    print(f"* = on this machine. Models go to {models.download_dir()} ($DREAMER_MODELS "
          "overrides); `dreamvideo models list -v` says where each comes from; dream with "
          "one: -m NAME")


def _load(module: str):
    """Imports a command's module; Ctrl-C meanwhile (PyTorch takes seconds) ends with one
    line, after which the command's own handling applies."""
    with starting():
        return importlib.import_module(module)


def main(argv: list[str] | None = None) -> int:
    try:
        return _dispatch(list(sys.argv[1:] if argv is None else argv))
    except KeyboardInterrupt as e:  # one a command left to its caller
        return finish(e, "run the same command again")
    except BrokenPipeError:  # `dreamvideo models list | head`: the reader has had enough
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at exit
        return 141


def _dispatch(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command == "models":
        return models_main(rest)
    if command in STAGE_COMMANDS:
        return _load("dreamer.cli.stages").main([command, *rest], prog=f"dreamvideo {command}")
    if command in COMMANDS:
        module, function = COMMANDS[command]
        entry = getattr(_load(module), function)
        return entry(rest, prog=f"dreamvideo {command}")
    shown = command if len(command) <= 60 else command[:57] + "..."
    print(f"dreamvideo: error: unknown command '{shown}' (see dreamvideo --help)",
          file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
