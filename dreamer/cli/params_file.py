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

import difflib
import json
import tomllib
from pathlib import Path

from dreamer.config import Setting, settings
from dreamer.errors import DreamerError


def load(path: str) -> dict:
    """The file's settings ({field: value}), each checked as its flag would be."""
    data = _read(Path(path))
    names = keys()
    out = {}
    for key, value in data.items():
        name = names.get(key.replace("-", "_").lstrip("_"))
        if name is None:
            close = difflib.get_close_matches(key, list(names), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise DreamerError(f"{path}: unknown setting '{key}'{hint} (keys are the long "
                               "flags without dashes, e.g. octaves, zoom, flow-blend)")
        out[name] = _value(path, key, value, settings()[name])
    return out


def keys() -> dict[str, str]:
    """Every setting with a flag by each of its long names (underscored) and its field
    name: {key: field}."""
    out = {}
    for name, s in settings().items():
        if not s.flags:
            continue
        for flag in s.flags:
            if flag.startswith("--"):
                out[flag[2:].replace("-", "_")] = name
        out[name] = name
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


def _value(path, key: str, value, setting: Setting):
    if setting.kind is bool:
        if not isinstance(value, bool):
            raise DreamerError(f"{path}: {key} is on or off; write {key} = true or false")
        return value
    if isinstance(value, dict):
        value = _schedule_text(path, key, value)
    if setting.nargs in ("+", "*"):
        items = value if isinstance(value, list) else [value]
        return [_convert(path, key, v, setting) for v in items]
    if value is None:
        raise DreamerError(f"{path}: {key} has no value; give one, or leave {key} out")
    if isinstance(value, bool):
        raise DreamerError(f"{path}: {key} = {_shown(value)}: {key} takes a value, not on "
                           "or off")
    if isinstance(value, list):
        raise DreamerError(f"{path}: {key} takes one value, not {_shown(value)}")
    return _convert(path, key, value, setting)


def _shown(value) -> str:
    """A value as the file wrote it (TOML and JSON spell true and false in lower case)."""
    return str(value).lower() if isinstance(value, bool) else repr(value)


def _convert(path, key: str, value, setting: Setting):
    text = str(value)
    if setting.choices is not None and text not in setting.choices:
        raise DreamerError(f"{path}: {key} = {value!r}; choose one of "
                           + ", ".join(setting.choices))
    try:
        return setting.parse(text)
    except ValueError as e:
        if setting.schedule:  # (it names the text that is neither number nor schedule)
            raise DreamerError(f"{path}: {key} = {value!r}: {e}") from None
        kind = "a whole number" if setting.kind is int else "a number"
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
