"""`--params FILE`: a whole stage-2 run in one TOML or JSON file, shared next to a video.

Keys are the long flags without their dashes (`octaves`, `zoom`, `flow-blend` or
`flow_blend`, ...), values what the flag takes. A schedule is a string,
`zoom = "1:(1.0), 30:(1.04)"`, or a table of frame = value with an optional
`interpolation`:

    [zoom]
    1 = 1.0
    30 = "1.04 + 0.01*sin(t/5)"
    interpolation = "cubic"

Flags on the command line win over the file.
"""
from __future__ import annotations

import argparse
import difflib
import json
import tomllib
from pathlib import Path

from dreamer.errors import DreamerError

NOT_IN_FILES = {"help", "params"}


def load(path: str, parser: argparse.ArgumentParser) -> dict:
    """The file's settings as argparse defaults ({dest: value}), each checked as its
    flag would be."""
    data = _read(Path(path))
    actions = _actions(parser)
    out = {}
    for key, value in data.items():
        action = actions.get(key.replace("-", "_").lstrip("_"))
        if action is None:
            close = difflib.get_close_matches(key, list(actions), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise DreamerError(f"{path}: unknown setting '{key}'{hint} (keys are the long "
                               "flags without dashes, e.g. octaves, zoom, flow-blend)")
        out[action.dest] = _value(path, key, value, action)
    return out


def _read(path: Path) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DreamerError(f"parameters file {path} not found; check --params") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DreamerError(f"cannot read parameters file {path}: {e}") from None
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else tomllib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as e:
        kind = "JSON" if path.suffix.lower() == ".json" else "TOML"
        raise DreamerError(f"{path} is not valid {kind}: {e}") from None
    if not isinstance(data, dict):
        raise DreamerError(f"{path} must hold settings as key = value pairs")
    return data


def _actions(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """Every flag by each of its long names (underscored) and its dest."""
    out = {}
    for action in parser._actions:
        if action.dest in NOT_IN_FILES:
            continue
        for option in action.option_strings:
            if option.startswith("--"):
                out[option[2:].replace("-", "_")] = action
        out[action.dest] = action
    return out


def _value(path, key: str, value, action: argparse.Action):
    if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
        if not isinstance(value, bool):
            raise DreamerError(f"{path}: {key} is on or off; write {key} = true or false")
        return value
    if isinstance(value, dict):
        value = _schedule_text(path, key, value)
    if action.nargs in ("+", "*"):
        items = value if isinstance(value, list) else [value]
        return [_convert(path, key, v, action) for v in items]
    if value is None:
        raise DreamerError(f"{path}: {key} has no value; give one, or leave {key} out")
    if isinstance(value, bool):
        raise DreamerError(f"{path}: {key} = {_shown(value)}: {key} takes a value, not on "
                           "or off")
    if isinstance(value, list):
        raise DreamerError(f"{path}: {key} takes one value, not {_shown(value)}")
    return _convert(path, key, value, action)


def _shown(value) -> str:
    """A value as the file wrote it (TOML and JSON spell true and false in lower case)."""
    return str(value).lower() if isinstance(value, bool) else repr(value)


def _convert(path, key: str, value, action: argparse.Action):
    text = str(value)
    if action.choices is not None and text not in action.choices:
        raise DreamerError(f"{path}: {key} = {value!r}; choose one of "
                           + ", ".join(map(str, action.choices)))
    if action.type is None:
        return text
    try:
        return action.type(text)
    except argparse.ArgumentTypeError as e:
        raise DreamerError(f"{path}: {key} = {value!r}: {e}") from None
    except ValueError:
        kind = {int: "a whole number", float: "a number"}.get(action.type, "valid")
        raise DreamerError(f"{path}: {key} = {value!r} is not {kind}") from None


def _schedule_text(path, key: str, table: dict) -> str:
    """A table of frame = value (and `interpolation`) as FRAME:(VALUE) text."""
    table = dict(table)
    mode = table.pop("interpolation", None)
    keys = []
    for frame, value in table.items():
        try:
            keys.append((int(frame), value))
        except ValueError:
            raise DreamerError(f"{path}: {key}: '{frame}' is not a frame number; a schedule "
                               "table holds frame = value pairs and 'interpolation'") from None
    if not keys:
        raise DreamerError(f"{path}: {key} is an empty table; give it frame = value pairs, "
                           "e.g. 1 = 1.0 and 30 = 1.04")
    text = ", ".join(f"{frame}:({value})" for frame, value in sorted(keys))
    return text + (f" @{mode}" if mode else "")
