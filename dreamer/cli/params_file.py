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

The file is outside input (shared with a video): it is read up to MAX_BYTES and refused
beyond, and its brackets may nest MAX_NESTING deep, checked before it is parsed (the
parsers recurse: a file of 100,000 nested arrays would end in a RecursionError).
"""
from __future__ import annotations

import difflib
import json
import re
import tomllib
from pathlib import Path

from dreamer.config import Setting, settings
from dreamer.errors import DreamerError
from dreamer.values.expr import shorten
from dreamer.values.keyframes import MAX_KEYS

# Large enough for a key a frame of a long film in two schedules (a 100,000-key table is
# about 2 MB), small enough to be read and parsed in a second or two
MAX_BYTES = 4 * 2**20
MAX_NESTING = 32  # a schedule table in a file is 2 deep; nothing needs more than a few


def load(path: str) -> dict:
    """The file's settings ({field: value}), each checked as its flag would be."""
    data = _read(Path(path))
    names = keys()
    out = {}
    for key, value in data.items():
        name = names.get(key.replace("-", "_").lstrip("_"))
        if name is None:
            raise DreamerError(f"{path}: unknown setting '{shorten(key, 40)}'{_suggest(key)} "
                               "(keys are the long flags without dashes, e.g. octaves, zoom, "
                               "flow-blend)")
        out[name] = _value(path, key, value, settings()[name])
    return out


def _suggest(key: str) -> str:
    """'; did you mean ...?' for an unknown key: a short flag's long name (`itr` is
    -itr's, iterations, not the jitter it looks like), else the closest long name."""
    every = settings()
    shorts = {f.lstrip("-"): s.long for s in every.values() if s.long
              for f in s.flags if not f.startswith("--")}
    word = key.strip().lstrip("-")
    if word in shorts:
        return f"; did you mean '{shorts[word]}' (the long name of -{word})?"
    # every name a key may be (long names, field names) and the short flags, each as the
    # long name it stands for
    names = {k: every[name].long or k for k, name in keys().items()} | shorts
    close = difflib.get_close_matches(word.replace("-", "_"), list(names), n=1)
    return f"; did you mean '{names[close[0]]}'?" if close else ""


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
        with open(path, "rb") as f:
            raw = f.read(MAX_BYTES + 1)  # (/dev/zero never ends)
        if len(raw) > MAX_BYTES:
            raise DreamerError(f"parameters file {path} is larger than {MAX_BYTES // 2**20} "
                               "MB; it holds settings as key = value pairs: is it the right "
                               "file?")
        text = raw.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")  # as read_text
    except FileNotFoundError:
        raise DreamerError(f"parameters file {path} not found; check --params") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DreamerError(f"cannot read parameters file {path}: {shorten(e, 200)}") from None
    kind = "JSON" if path.suffix.lower() == ".json" else "TOML"
    if _nesting(text) > MAX_NESTING:
        raise DreamerError(f"{path}: its brackets nest more than {MAX_NESTING} deep; it holds "
                           f"settings as key = value pairs and schedule tables")
    if kind == "TOML" and _dotted(text) > MAX_NESTING:  # Python's TOML reader takes time
        # and memory that grow with the square of a dotted key's parts (a.a.a... = 1 of
        # 200 KB filled 24 GB)
        raise DreamerError(f"{path}: a key has more than {MAX_NESTING} dotted parts; it holds "
                           f"settings as key = value pairs and schedule tables")
    try:
        data = json.loads(text) if kind == "JSON" else tomllib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as e:
        raise DreamerError(f"{path} is not valid {kind}: {shorten(e, 200)}") from None
    except (RecursionError, MemoryError):  # (nesting is bounded above: never, but not a traceback)
        raise DreamerError(f"{path} is nested too deeply to read") from None
    if not isinstance(data, dict):
        raise DreamerError(f"{path} must hold settings as key = value pairs")
    return data


def _dotted(text: str) -> int:
    """The most dots in a key or a [table] header of the text, counted line by line up to
    the first = (dots in strings counted too: no real settings file comes near)."""
    most = 0
    for line in text.split("\n"):
        line = line.lstrip()
        key = line.split("]", 1)[0] if line.startswith("[") else line.split("=", 1)[0]
        if "=" in line or line.startswith("["):
            most = max(most, key.count("."))
    return most


def _nesting(text: str) -> int:
    """How deep the text's [ and { nest (brackets inside strings counted too: a file never
    holds so many that a legitimate one is refused). Linear, without a parser."""
    depth = most = 0
    for m in _BRACKET_RE.finditer(text):
        depth = depth + 1 if m.group() in "[{" else max(depth - 1, 0)
        most = max(most, depth)
    return most


_BRACKET_RE = re.compile(r"[\[\]{}]")


def _value(path, key: str, value, setting: Setting):
    if setting.kind is bool:
        if not isinstance(value, bool):
            raise DreamerError(f"{path}: {key} is on or off; write {key} = true or false")
        return value
    if isinstance(value, dict):
        value = _schedule_text(path, key, value)
    if setting.kind is tuple and isinstance(value, list):  # mean = [104, 116, 122]
        value = ",".join(map(str, value))
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
    """A value as the file wrote it (TOML and JSON spell true and false in lower case),
    cut short."""
    return str(value).lower() if isinstance(value, bool) else shorten(repr(value))


def _convert(path, key: str, value, setting: Setting):
    text = str(value)
    if setting.choices is not None and text not in setting.choices:
        raise DreamerError(f"{path}: {key} = {_shown(value)}; choose one of "
                           + ", ".join(setting.choices))
    try:
        return setting.parse(text)
    except ValueError as e:
        if setting.schedule:  # (it names the text that is neither number nor schedule)
            raise DreamerError(f"{path}: {key} = {_shown(value)}: {shorten(e, 100)}") from None
        if setting.kind is tuple:
            raise DreamerError(f"{path}: {key} = {_shown(value)}: {e}") from None
        kind = "a whole number" if setting.kind is int else "a number"
        raise DreamerError(f"{path}: {key} = {_shown(value)} is not {kind}") from None


def _schedule_text(path, key: str, table: dict) -> str:
    """A table of frame = value (and `interpolation`) as FRAME:(VALUE) text."""
    table = dict(table)
    mode = table.pop("interpolation", None)
    if len(table) > MAX_KEYS:
        raise DreamerError(f"{path}: {key} has {len(table):,} keyframes; a schedule may have "
                           f"at most {MAX_KEYS:,}")
    keys = []
    for frame, value in table.items():
        try:
            keys.append((int(frame), value))
        except ValueError:  # (also a frame of 5000 digits)
            raise DreamerError(f"{path}: {key}: '{shorten(frame, 20)}' is not a frame number; "
                               "a schedule table holds frame = value pairs and "
                               "'interpolation'") from None
    if not keys:
        raise DreamerError(f"{path}: {key} is an empty table; give it frame = value pairs, "
                           "e.g. 1 = 1.0 and 30 = 1.04")
    text = ", ".join(f"{frame}:({value})" for frame, value in sorted(keys))
    return text + (f" @{mode}" if mode else "")
