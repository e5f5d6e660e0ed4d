"""The command line of stages 1 and 3, the GIF maker and the all-in-one command: it parses
the arguments and calls dreamer.video.extract, dreamer.video.assemble, dreamer.video.gif or
dreamer.run.pipeline.

    python -m dreamer.cli.stages extract [ffmpeg|avconv|mplayer] VIDEO FRAMES_DIR [png|jpg]
    python -m dreamer.cli.stages assemble [ffmpeg|avconv|mplayer] FRAMES_DIR ORIGINAL [png|jpg]
    python -m dreamer.cli.stages gif FRAMES_DIR [png|jpg] [--original VIDEO]
    python -m dreamer.cli.stages all VIDEO [-- STAGE-2 FLAGS]

1_movie2frames.sh, 3_frames2movie.sh and frames2gif.sh are thin wrappers around this.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys

from dreamer.cli.oneline import OneLineParser
from dreamer.cli.signals import run
from dreamer.errors import DreamerError
from dreamer.video.assemble import CRF, assemble_video
from dreamer.video.extract import extract_frames
from dreamer.video.frames import IMAGE_TYPES, frame_name
from dreamer.video.gif import make_gif
from dreamer.video.tools import TOOLS

COMMANDS = {
    "extract": ("stage 1: a video into numbered frames",
                "[ffmpeg|avconv|mplayer] VIDEO FRAMES_DIR [png|jpg]"),
    "assemble": ("stage 3: numbered frames into an mp4 with the original's sound",
                 "[ffmpeg|avconv|mplayer] FRAMES_DIR ORIGINAL_VIDEO [png|jpg] "
                 "[-o OUT.mp4] [--overwrite]"),
    "gif": ("numbered frames into a looping GIF",
            "FRAMES_DIR [png|jpg] [--original VIDEO | --fps R] [--width W] [-o OUT.gif] "
            "[--overwrite]"),
    "all": ("stages 1, 2 and 3 in one go",
            "VIDEO [-w WORKDIR] [-o OUT.mp4] [--overwrite] [-it png|jpg] "
            "[-- STAGE-2 FLAGS]"),
}
# Flags the all-in-one command sets for stage 2 itself, from its own arguments.
OWN_STAGE2_FLAGS = ("-i", "--input", "-o", "--output", "-it", "--image_type")
DEFAULT_OUTPUTS = {"assemble": "<FRAMES_DIR name>_done.mp4", "gif": "<FRAMES_DIR name>.gif",
                   "all": "<VIDEO name>_dream.mp4"}


# --- parsing --------------------------------------------------------------------------

def _split_positionals(parser, values: list[str], names: tuple[str, ...],
                       tool_first: bool) -> tuple[str, list[str], str | None]:
    """(tool, required values, image type) from `[TOOL] A B [png|jpg]`."""
    values = list(values)
    tool = "ffmpeg"
    if tool_first and values and values[0] in TOOLS:
        tool = values.pop(0)
    image_type = None
    if len(values) == len(names) + 1:
        image_type = values.pop()
        if image_type not in IMAGE_TYPES:
            parser.error(f"unknown image type '{image_type}'; use png or jpg")
    if len(values) != len(names):
        parser.error(f"expected {' '.join(names)}, got {len(values)} argument(s)")
    return tool, values, image_type


def _command_parser(command: str, prog: str) -> argparse.ArgumentParser:
    """One parser per command (argparse's subparsers cannot mix options and positionals
    freely, and `./3_frames2movie.sh DIR VIDEO -o X png` should work)."""
    description, usage = COMMANDS[command]
    p = OneLineParser(prog=prog, usage=f"%(prog)s {usage}", description=description)
    p.add_argument("args", nargs="*", metavar="ARG", help=usage)
    p.add_argument("-v", "--verbose", action="store_true", help="also show the commands run")
    p.add_argument("-q", "--quiet", action="store_true", help="show only errors")
    if command in DEFAULT_OUTPUTS:
        kind = "GIF" if command == "gif" else "video"
        p.add_argument("-o", "--output", help=f"the {kind} to write (default: "
                       f"{DEFAULT_OUTPUTS[command]} in the current directory)")
        p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    _add_own_options(p, command)
    return p


def _add_own_options(p: argparse.ArgumentParser, command: str) -> None:
    """The options only one command has."""
    if command == "assemble":
        p.add_argument("--crf", type=int, default=CRF, help="x264 quality, lower is better "
                       "(default: %(default)s)")
    if command == "gif":
        p.add_argument("--original", help="the video the frames came from (for the rate)")
        p.add_argument("--fps", help="frame rate, e.g. 25 or 30000/1001 (default: the "
                       "source's, from frames.json or --original)")
        p.add_argument("--width", type=int, help="scale to this width (default: keep)")
    if command == "all":
        p.add_argument("-w", "--workdir", help="folder for the frames (default: "
                       "<VIDEO name>_dream in the current directory)")
        p.add_argument("-it", "--image-type", choices=IMAGE_TYPES, default="png")
        p.add_argument("--tool", choices=TOOLS, default="ffmpeg")


# --- running --------------------------------------------------------------------------

def _dispatch(command: str, parser: argparse.ArgumentParser, args, stage2: list[str]) -> None:
    if command == "extract":
        tool, (video, frames_dir), image_type = _split_positionals(
            parser, args.args, ("VIDEO", "FRAMES_DIR"), True)
        record = extract_frames(video, frames_dir, image_type or "png", tool)
        _print_extracted(record, frames_dir)
    elif command == "assemble":
        tool, (frames_dir, original), image_type = _split_positionals(
            parser, args.args, ("FRAMES_DIR", "ORIGINAL_VIDEO"), True)
        assemble_video(frames_dir, original, image_type, args.output, args.overwrite, tool,
                       crf=args.crf)
    elif command == "gif":
        _, (frames_dir,), image_type = _split_positionals(parser, args.args,
                                                          ("FRAMES_DIR",), False)
        make_gif(frames_dir, args.output, image_type, args.fps, args.original, args.width,
                 args.overwrite)
    else:
        if len(args.args) != 1:
            parser.error("expected one VIDEO; put stage-2 flags after --")
        config = _stage2_config(stage2)  # a typo fails before stage 1, not after it
        from dreamer.run.pipeline import run_all  # imports torch: only when dreaming

        run_all(args.args[0], args.output, config, workdir=args.workdir,
                image_type=args.image_type, overwrite=args.overwrite, tool=args.tool)


def _stage2_config(stage2: list[str]):
    """The all-in-one command's stage-2 flags as a DreamConfig (its input, output and
    image type are the command's own)."""
    from dreamer.cli import dream as dream_cli

    for flag in OWN_STAGE2_FLAGS:
        if flag in stage2:
            raise DreamerError(f"the all-in-one command sets {flag} for stage 2 itself; "
                               "leave it out of the stage-2 flags")
    # (-i and -o are placeholders: run_all sets both)
    args = dream_cli.parse_args(["-i", "frames", "-o", "dreamed", *stage2], prog="stage 2")
    return dream_cli.config_from_args(args)


def _print_extracted(record: dict, frames_dir: str) -> None:
    image_type, count = record["image_type"], record["frame_count"]
    print(f"wrote {count} frames ({frame_name(1, image_type)}"
          f"..{frame_name(count, image_type)}, "
          f"{record['width']}x{record['height']} at {record['fps']} fps) to {frames_dir}")


def _run_command(command: str, parser, args, stage2: list[str]) -> int:
    """Runs one command; any DreamerError becomes one line on stderr and an exit status."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    root = logging.getLogger("dreamer")
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if args.verbose else
                  logging.WARNING if args.quiet else logging.INFO)
    try:
        return run(lambda: _dispatch(command, parser, args, stage2) or 0,
                   again="temporary files were removed, run the command again",
                   verbose=args.verbose)
    finally:
        root.removeHandler(handler)


def _print_help(name: str) -> None:
    print(f"usage: {name} {{{','.join(COMMANDS)}}} ...\n")
    for command, (description, usage) in COMMANDS.items():
        print(f"  {command} {usage}\n      {description}")


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        name = prog or "python -m dreamer.cli.stages"
        if argv[:1] in (["-h"], ["--help"]):
            _print_help(name)
            return 0
        print(f"{name}: error: choose a command: {', '.join(COMMANDS)} (see --help)",
              file=sys.stderr)
        return 2
    command, argv = argv[0], argv[1:]
    stage2: list[str] = []
    if command == "all" and "--" in argv:
        cut = argv.index("--")
        argv, stage2 = argv[:cut], argv[cut + 1:]
    parser = _command_parser(command, prog or os.environ.get("DREAMER_PROG")
                             or f"python -m dreamer.cli.stages {command}")
    args = parser.parse_intermixed_args(argv)
    return _run_command(command, parser, args, stage2)


if __name__ == "__main__":
    sys.exit(main())
