"""docs/flags.md, made from the settings schema (dreamer.config): every flag of stage 2,
by group, with its spellings, default, bounds and what it takes.

    python -m dreamer.cli.flagdoc            # writes docs/flags.md
    python -m dreamer.cli.flagdoc --check    # exit 1 when docs/flags.md is stale
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dreamer.config import GROUPS, NEEDS, Setting, default, settings

PAGE = Path(__file__).resolve().parents[2] / "docs" / "flags.md"

INTRO = """# Flags

Every flag of stage 2 (`python 2_dreaming_time.py`, `dreamvideo dream`, and the flags after
`--` of `dreamvideo all`). This page is generated from the settings schema in
`dreamer/config.py` by `python -m dreamer.cli.flagdoc`; a test fails when it is stale.

- **schedule**: the value may also be a keyframe schedule, `FRAME:(VALUE), ...`, with
  values that are expressions of the frame number `t` (see [Schedules](schedules.md)).
- **keys the run**: it changes the frames' pixels, so frames dreamed with another value
  are not taken as done when a run resumes (see [Resume](resume.md)).
- **`--params` key**: the name in a `--params FILE` (TOML or JSON); flags on the command
  line win over the file. `--params FILE` itself reads such a file.
"""


def page() -> str:
    parts = [INTRO]
    for group, title in GROUPS.items():
        rows = [(name, s) for name, s in settings().items() if s.flags and s.group == group]
        parts.append(f"\n## {title[0].upper()}{title[1:]}\n")
        parts.append("| flag | default | takes | |\n| --- | --- | --- | --- |")
        parts.extend(_row(name, s) for name, s in rows)
    library = [name for name, s in settings().items() if not s.flags]
    parts.append("\n## Settings of the library only\n\nNo flag sets these; a `DreamConfig` "
                 "does (see [Library](library.md)): "
                 + ", ".join(f"`{n}` ({settings()[n].help})" for n in library) + ".")
    return "\n".join(parts) + "\n"


def _row(name: str, s: Setting) -> str:
    flags = " ".join(f"`{f}`" for f in s.flags)
    value = default(name)
    if isinstance(value, tuple):  # layers (several values), the mean (B,G,R)
        value = ",".join(f"{v:g}" for v in value) if s.kind is tuple else " ".join(value)
    shown = "-" if value is None else f"`{value}`"
    if s.kind is bool:
        shown = "off"
    notes = [_takes(s)]
    if s.schedule:
        notes.append("schedule")
    if s.keyed:
        notes.append("keys the run")
    if s.needs:
        notes.append(f"only with {NEEDS[s.needs][0]}")
    notes.append(f"`--params` key `{s.long or name}`")
    help_text = s.help.replace("%(default)s", str(value)).replace("%%", "%").replace("|", "\\|")
    return f"| {flags} | {shown} | {'; '.join(notes)} | {help_text} |"


def _takes(s: Setting) -> str:
    if s.kind is bool:
        return "on/off"
    if s.choices:
        return " or ".join(f"`{c}`" for c in s.choices)
    kind = {int: "whole number", float: "number", tuple: "three numbers B,G,R"}.get(s.kind, "text")
    if s.nargs == "+":
        kind = "one or more names"
    if s.low is not None or s.high is not None:
        kind += f", {s.bounds()}"
    return kind


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dreamer.cli.flagdoc",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="exit 1 when docs/flags.md is not what the schema makes")
    args = parser.parse_args(argv)
    text = page()
    if args.check:
        if not PAGE.exists() or PAGE.read_text(encoding="utf-8") != text:
            print(f"error: {PAGE} is stale; run python -m dreamer.cli.flagdoc", file=sys.stderr)
            return 1
        return 0
    PAGE.write_text(text, encoding="utf-8")
    print(f"wrote {PAGE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
