"""Stage 2's command line: the original DeepDreamVideo flags, mapped onto DreamConfig.

Parsing only; the work is dreamer.run.sequence.dream_sequence.
"""
from __future__ import annotations

import argparse
import sys

from dreamer.cli.oneline import OneLineParser
from dreamer.cli.signals import run, starting
from dreamer.config import FLOW_PRESETS, GROUPS, DreamConfig, Setting, default, settings
from dreamer.errors import DreamerError
from dreamer.values.expr import shorten


SCHEDULE_HELP = ("Numbers marked * also take a keyframe schedule, FRAME:(VALUE), ...: e.g. "
                 "-z '1:(1.0), 60:(1.03)'. Values may be expressions of the frame number t "
                 "('1:(1+0.01*sin(t/8))'); between keys values are interpolated linearly, "
                 "or add @step or @cubic at the end. -l takes '1:(LAYER), 120:(LAYER)'.")


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    """Stage 2's flags, every one made from its setting in dreamer.config, by group."""
    p = OneLineParser(prog=prog, description="Dream on numbered video frames "
                      "(%08d.png|jpg) with a Caffe model; frame k is blended with the dream "
                      "of frame k-1 so the hallucinations flow.", epilog=SCHEDULE_HELP)
    # -i and -o may come from --params: required is checked after the file is read
    p.add_argument("--params", metavar="FILE", help="a TOML or JSON file of settings and "
                   "schedules (keys: the long flags, e.g. zoom = \"1:(1), 60:(1.03)\"); "
                   "flags given here win")
    groups = {key: p.add_argument_group(title) for key, title in GROUPS.items()}
    for name, s in settings().items():
        if s.flags:
            groups[s.group].add_argument(*s.flags, dest=name, **argparse_options(name, s))
    return p


def argparse_options(name: str, s: Setting) -> dict:
    """add_argument's keywords for one setting."""
    value = default(name)
    if name == "flow":  # on/off, or on with a preset's values: --flow fast
        return {"nargs": "?", "const": True, "default": False, "type": _preset,
                "metavar": "fast", "help": s.help}
    if s.kind is bool:
        return {"action": "store_true", "help": s.help}
    options = {"default": list(value) if isinstance(value, tuple) and s.nargs else value,
               "help": ("* " if s.schedule else "") + s.help,
               "metavar": s.metavar or (s.long or name).upper().replace("-", "_")}
    if s.choices:
        options.update(choices=s.choices, metavar=None)
    if s.numeric or s.kind is tuple:
        options["type"] = _typed(s)
    for key in ("nargs", "const"):
        if getattr(s, key) is not None:
            options[key] = getattr(s, key)
    return options


def _preset(text: str) -> str:
    if text not in FLOW_PRESETS:
        raise argparse.ArgumentTypeError(f"'{shorten(text)}': write --flow alone, or "
                                         + " or ".join(f"--flow {p}" for p in FLOW_PRESETS))
    return text


def _typed(s: Setting):
    """argparse's type for a number: argparse names the flag in its one-line error."""
    def parse(text: str):
        try:
            return s.parse(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
    parse.__name__ = {int: "whole number", float: "number"}.get(s.kind, "value")
    return parse


def parse_args(argv: list[str] | None, prog: str | None = None) -> argparse.Namespace:
    """The command line over the --params file's settings over the defaults."""
    parser = build_parser(prog)
    first = argparse.ArgumentParser(add_help=False)
    first.add_argument("--params")
    first.add_argument("--flow", nargs="?", const=True)
    known, _ = first.parse_known_args(argv)
    if known.params:
        from dreamer.cli import params_file

        try:
            parser.set_defaults(**params_file.load(known.params))
        except DreamerError as e:
            parser.exit(2, f"{parser.prog}: error: {e}\n")
    if known.flow in FLOW_PRESETS:  # its values unless a flag gives them
        parser.set_defaults(**FLOW_PRESETS[known.flow])
    a = parser.parse_args(argv)
    a.flow = bool(a.flow)
    missing = [flag for flag, value in (("-i/--input", a.input), ("-o/--output", a.output))
               if value is None]
    if missing:
        parser.error("the following arguments are required: " + ", ".join(missing))
    return a


def config_from_args(a: argparse.Namespace) -> DreamConfig:
    values = {name: getattr(a, name) for name in settings() if hasattr(a, name)}
    return DreamConfig(**{name: tuple(v) if isinstance(v, list) else v
                          for name, v in values.items()})


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    with starting():  # PyTorch takes seconds to import: Ctrl-C meanwhile is one line
        config = config_from_args(parse_args(argv, prog))
        from dreamer.run.sequence import dream_sequence
    argv = sys.argv if argv is None else argv
    return run(lambda: _dream(dream_sequence, config, argv),
               again="run the same command again to finish what is missing")


def _dream(dream_sequence, config: DreamConfig, argv: list[str]) -> int:
    result = dream_sequence(config, argv=argv)
    if config.verbose >= 1:
        print(f"\nDone: frames {result.frames.first}..{result.frames.last} in {result.output}."
              f"\nParameters for your video description:\n{result.description}")
    return 0
