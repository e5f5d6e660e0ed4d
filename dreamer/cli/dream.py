"""Stage 2's command line: the original DeepDreamVideo flags, mapped onto DreamConfig.

Parsing only; the work is dreamer.run.sequence.dream_sequence.
"""
from __future__ import annotations

import argparse
import importlib
import signal
import sys

from dreamer.config import DreamConfig, default
from dreamer.errors import DreamerError, Interrupted
from dreamer.cli.oneline import OneLineParser, interrupts_exit_at_once, os_error_line, report


SCHEDULE_HELP = ("Numbers marked * also take a keyframe schedule, FRAME:(VALUE), ...: e.g. "
                 "-z '1:(1.0), 60:(1.03)'. Values may be expressions of the frame number t "
                 "('1:(1+0.01*sin(t/8))'); between keys values are interpolated linearly, "
                 "or add @step or @cubic at the end. -l takes '1:(LAYER), 120:(LAYER)'.")


def _number(kind):
    """A flag's value: one number, or a schedule (checked when the run starts, so a bad
    one is named with its frame)."""
    name = "whole number" if kind is int else "number"

    def parse(text: str):
        try:
            return kind(text)
        except ValueError:
            pass
        try:
            float(text)
        except ValueError:
            return text  # a schedule or an expression of t
        raise argparse.ArgumentTypeError(f"'{text}' is not a {name}")
    parse.__name__ = name
    return parse


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    p = OneLineParser(prog=prog, description="Dream on numbered video frames "
                      "(%08d.png|jpg) with a Caffe model; frame k is blended with the dream "
                      "of frame k-1 so the hallucinations flow.", epilog=SCHEDULE_HELP)
    # -i and -o may come from --params: required is checked after the file is read
    p.add_argument("-i", "--input", help="folder of input frames (required)")
    p.add_argument("-o", "--output", help="folder for the dreamed frames (required)")
    p.add_argument("--params", metavar="FILE", help="a TOML or JSON file of settings and "
                   "schedules (keys: the long flags, e.g. zoom = \"1:(1), 60:(1.03)\"); "
                   "flags given here win")
    p.add_argument("-it", "--image_type", choices=("png", "jpg"), default=None,
                   help="frame file type (default: whichever the input folder holds)")
    p.add_argument("--gpu", type=int, nargs="?", const=0, default=default("gpu"),
                   metavar="N", help="dream on CUDA device N (default: the CPU; "
                   "--gpu alone means 0)")
    p.add_argument("-t", "--model_path", default=default("model_path"),
                   help="folder holding deploy.prototxt and the caffemodel (default: search "
                   "$DREAMER_MODELS/<model>, the cache ~/.cache/dreamer/models/<model>, then "
                   "the original's ../caffe/models/bvlc_googlenet/)")
    p.add_argument("-m", "--model_name", default=default("model_name"),
                   help="the caffemodel's file name (default: %(default)s)")
    p.add_argument("-p", "--preview", type=int, default=default("preview"),
                   help="resize frames to this width first, aspect kept (default: 0 = off)")
    p.add_argument("-oct", "--octaves", type=_number(int), default=default("octave_n"),
                   help="* number of octaves, the image pyramid's levels (default: "
                   "%(default)s)")
    p.add_argument("-octs", "--octavescale", type=_number(float),
                   default=default("octave_scale"),
                   help="* size ratio between octaves (default: %(default)s)")
    p.add_argument("-itr", "--iterations", type=_number(int), default=default("iter_n"),
                   help="* gradient steps per octave (default: %(default)s)")
    p.add_argument("-j", "--jitter", type=_number(int), default=default("jitter"),
                   help="* random shift in pixels before each step (default: %(default)s)")
    p.add_argument("-z", "--zoom", type=_number(float), default=default("zoom"),
                   help="* scale the carried dream by this each frame, about the centre "
                   "(default: 1 = off; 1.02 falls 2%% a frame into the dream)")
    p.add_argument("-s", "--stepsize", type=_number(float), default=default("step_size"),
                   help="* step size of each gradient step (default: %(default)s)")
    p.add_argument("-b", "--blend", default=default("blend"),
                   help="* weight of each new raw frame against the previous dream, 0 to 1, "
                   "or 'loop' (0.5 to 1 and back) or 'random' (default: %(default)s)")
    p.add_argument("-l", "--layers", nargs="+", default=list(default("layers")),
                   help="end layer(s); frame k uses layer[(k-1) %% n]; 'customloop' is "
                   "inception_4c to 5b and back (default: customloop); or a schedule, "
                   "'1:(inception_4c/output), 120:(inception_5b/output)'")
    p.add_argument("-v", "--verbose", type=int, default=default("verbose"),
                   help="0 silent, 1 progress bar, 2 per-octave lines, 3 also per-octave "
                   "preview images (default: %(default)s)")
    p.add_argument("-gi", "--guide_image", "--guide-image", dest="guide_image",
                   default=default("guide_image"), help="dream towards this image's "
                   "features; a folder of images or a video guides frame k by its frame "
                   "k, looping")
    p.add_argument("--guide-fps", type=float, default=default("guide_fps"), metavar="FPS",
                   help="sample a guide video at FPS frames a second (default: the film's "
                   "rate from stage 1, so it plays in step; else the guide's own)")
    p.add_argument("-sf", "--start_frame", "--start-frame", dest="start_frame", type=int,
                   default=default("start_frame"), help="first frame to dream (default: the "
                   "first there)")
    p.add_argument("-ef", "--end_frame", "--end-frame", dest="end_frame", type=int,
                   default=default("end_frame"), help="last frame to dream, inclusive "
                   "(default: the last there)")
    p.add_argument("--seed", type=int, default=default("seed"),
                   help="seed of the jitter (and random blend); default: drawn and reported")
    p.add_argument("--overwrite", action="store_true",
                   help="replace frames in the output folder that were dreamed with other "
                   "parameters (or not by this tool); without it such a run is refused")
    p.add_argument("--tile", default=default("tile"), metavar="SIZE|auto|off",
                   help="dream frames too large for memory in tiles of SIZE px (with overlap, "
                   "no seams); auto (default) tiles only when a step would not fit")
    p.add_argument("--precision", choices=("fp32", "tf32", "bf16"), default=default("precision"),
                   help="arithmetic: fp32 matches Caffe (default); tf32 (CUDA) and bf16 are "
                   "faster and drift slightly from Caffe's numbers")
    p.add_argument("--deterministic", action="store_true",
                   help="GPU: fixed kernels, so a resumed run repeats an uninterrupted one "
                   "exactly (slower); the CPU always is")
    p.add_argument("--flow", action="store_true",
                   help="carry the previous dream along the film's motion (optical flow), "
                   "so the hallucinations move with the scene; off: the original's blend")
    p.add_argument("--flow-blend", type=_number(float), default=default("flow_blend"),
                   metavar="F", help="* with --flow: weight of the carried dream where the flow is "
                   "reliable, 0 to 1 (default %(default)s; -b still applies where it is not)")
    p.add_argument("--flow-smooth", type=float, default=default("flow_smooth"), metavar="S",
                   help="with --flow: pull each dreamed frame this far towards the previous "
                   "one moved along the flow, 0 (off) to 1 (default %(default)s): less flicker")
    p.add_argument("--flow-carry", choices=("dream", "residual"), default=default("flow_carry"),
                   help="with --flow: carry the whole dream (default) or only what it added "
                   "to the previous frame")
    p.add_argument("--workers", type=int, default=default("workers"), metavar="N",
                   help="dream N pieces of the range at once on Ray workers (local, or the "
                   "cluster at --address/$RAY_ADDRESS; needs pip install 'dreamer[ray]'); "
                   "default: %(default)s, no Ray")
    p.add_argument("--warmup", type=int, default=default("warmup"), metavar="W",
                   help="with --workers: frames each piece dreams and discards first to "
                   "build the carried dream (default: until the blend has let go of what "
                   "is missing, below one grey level)")
    p.add_argument("--address", default=default("address"), metavar="HOST:PORT",
                   help="with --workers: the Ray cluster to run on (default: $RAY_ADDRESS, "
                   "else a Ray started on this machine)")
    p.add_argument("--compile", action="store_true",
                   help="GPU: compile the net for each octave size, with CUDA graphs; "
                   "the first frames take minutes longer, every later one less time")
    return p


def parse_args(argv: list[str] | None, prog: str | None = None) -> argparse.Namespace:
    """The command line over the --params file's settings over the defaults."""
    parser = build_parser(prog)
    first = argparse.ArgumentParser(add_help=False)
    first.add_argument("--params")
    known, _ = first.parse_known_args(argv)
    if known.params:
        from dreamer.cli import params_file

        try:
            parser.set_defaults(**params_file.load(known.params, parser))
        except DreamerError as e:
            parser.exit(2, f"{parser.prog}: error: {e}\n")
    a = parser.parse_args(argv)
    missing = [flag for flag, value in (("-i/--input", a.input), ("-o/--output", a.output))
               if value is None]
    if missing:
        parser.error("the following arguments are required: " + ", ".join(missing))
    return a


def config_from_args(a: argparse.Namespace) -> DreamConfig:
    return DreamConfig(
        input=a.input, output=a.output, image_type=a.image_type, gpu=a.gpu,
        model_path=a.model_path, model_name=a.model_name, preview=a.preview,
        octave_n=a.octaves, octave_scale=a.octavescale, iter_n=a.iterations, jitter=a.jitter,
        zoom=a.zoom, step_size=a.stepsize, blend=a.blend, layers=tuple(a.layers),
        verbose=a.verbose, guide_image=a.guide_image, guide_fps=a.guide_fps,
        start_frame=a.start_frame,
        end_frame=a.end_frame, seed=a.seed,
        overwrite=a.overwrite, tile=a.tile, precision=a.precision, deterministic=a.deterministic,
        compile=a.compile, flow=a.flow, flow_blend=a.flow_blend, flow_carry=a.flow_carry,
        flow_smooth=a.flow_smooth, workers=a.workers, warmup=a.warmup, address=a.address)


class _Interrupts:
    """Ctrl-C and SIGTERM raise KeyboardInterrupt, which dream_sequence turns into a clean
    stop with a line on where to resume. Each is noted: a library that catches the
    KeyboardInterrupt and raises another error still reads as an interruption."""

    def __init__(self):
        self.seen = False

    def __call__(self, signum, frame):
        self.seen = True
        raise KeyboardInterrupt


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    interrupts = _Interrupts()
    try:
        interrupts_exit_at_once()  # PyTorch takes seconds to import: see exit_at_once
        config = config_from_args(parse_args(argv, prog))
        sequence = importlib.import_module("dreamer.run.sequence")
        signal.signal(signal.SIGINT, interrupts)
        signal.signal(signal.SIGTERM, interrupts)
        return _dream(sequence, config, sys.argv if argv is None else argv)
    except (KeyboardInterrupt, Exception):
        if not interrupts.seen:
            raise
        # (a run interrupted while dreaming says where it stopped; this is any other
        # moment, starting up or closing: every frame written is kept either way)
        print("\nerror: interrupted; run the same command again to finish what is missing",
              file=sys.stderr)
        return 130
    finally:
        for signum, handler in saved.items():
            if handler is not None:
                signal.signal(signum, handler)


def _dream(sequence, config: DreamConfig, argv: list[str]) -> int:
    import torch

    try:
        result = sequence.dream_sequence(config, argv=argv)
    except Interrupted as e:
        print(f"\n{e}", file=sys.stderr)
        return 130
    except DreamerError as e:
        return report(e)
    except torch.OutOfMemoryError:
        print("error: out of memory while dreaming; use -p to dream smaller frames, or fewer "
              "octaves", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"error: {os_error_line(e)}", file=sys.stderr)
        return 1
    if config.verbose >= 1:
        print(f"\nDone: frames {result.frames.first}..{result.frames.last} in {result.output}."
              f"\nParameters for your video description:\n{result.description}")
    return 0
