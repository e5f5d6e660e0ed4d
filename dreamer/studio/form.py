"""The settings schema as the page's widgets, and back: the page's values as a checked
DreamConfig, the `--params` TOML and the command lines that repeat them, and the curves of
the schedules over the film.

Every widget is made from a Setting of dreamer.config (its flags, help, group, kind,
bounds, choices, whether it takes a schedule): a setting added there appears here.
"""
from __future__ import annotations

import json
import math
import shlex
from dataclasses import dataclass, fields, replace
from pathlib import Path

from dreamer.caffe import models
from dreamer.caffe.registry import MODELS
from dreamer.cli import params_file
from dreamer.config import GROUPS, DreamConfig, Setting, default, number_keys, settings, validate
from dreamer.dream.schedule import blend_for_frame, layer_for_frame
from dreamer.errors import DreamerError
from dreamer.studio.film import Film, safe_path
from dreamer.values.blend import parse_blend
from dreamer.values.expr import shorten
from dreamer.values.keyframes import Keyframes, is_schedule

# Set by the studio itself, for each job: the page has no widget for them.
STUDIO_SETS = ("input", "output", "image_type", "start_frame", "end_frame", "overwrite",
               "verbose")
# Many workers are the command line's (the studio dreams one thing at a time per device).
NOT_HERE = ("workers", "warmup", "address")
# Chosen with the model picker, not typed.
MODEL_FIELDS = ("model_path", "model_name", "prototxt")
# Shown first, in this order, under "the dream".
FIRST = ("layers", "octave_n", "iter_n", "octave_scale", "step_size", "jitter", "seed")


def shown_fields() -> list[str]:
    return [name for name in settings()
            if name not in STUDIO_SETS + NOT_HERE + MODEL_FIELDS]


def label(name: str, s: Setting) -> str:
    """A setting's name in words: 'step size', 'flow blend' ('-p' is the render width)."""
    if name == "preview":
        return "render width"
    if s.name and not s.name.startswith("-"):
        return s.name
    return (s.long or name).replace("_", " ").replace("-", " ")


def _help(name: str, s: Setting) -> str:
    value = default(name)
    if isinstance(value, tuple):
        value = ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value)
    try:
        return s.help % {"default": value}
    except (TypeError, ValueError, KeyError):
        return s.help


def _kind(s: Setting) -> str:
    return {int: "int", float: "float", bool: "bool", tuple: "triple"}.get(s.kind, "text")


def as_text(name: str, value) -> str | bool:
    """A DreamConfig value as its widget holds it."""
    s = settings()[name]
    if s.kind is bool:
        return bool(value)
    if value is None:
        return ""
    if name == "layers":
        return " ".join(value)
    if isinstance(value, tuple):
        return ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}" if abs(value) < 1e15 and float(f"{value:g}") == value else repr(value)
    return str(value)


def schema() -> dict:
    """Every widget of the settings panel, by group, with the flags' own names and help."""
    groups = []
    every = settings()
    names = shown_fields()
    order = [n for n in FIRST if n in names] + [n for n in names if n not in FIRST]
    for key, title in GROUPS.items():
        widgets = []
        for name in order:
            s = every[name]
            if s.group != key and not (key == "dream" and name in FIRST):
                continue
            if name in FIRST and key != "dream":
                continue
            widgets.append({
                "name": name, "label": label(name, s), "flags": list(s.flags),
                "help": _help(name, s), "kind": _kind(s), "schedule": s.schedule,
                "choices": list(s.choices) if s.choices else None,
                "low": s.low, "high": None if s.cap else s.high, "above": s.above,
                "default": as_text(name, default(name)),
                "needs": s.needs, "upload": name == "guide_image",
            })
        if widgets:
            groups.append({"key": key, "title": title, "widgets": widgets})
    return {"groups": groups}


# --- the model picker --------------------------------------------------------------------

@dataclass(frozen=True)
class ModelChoice:
    key: str
    label: str
    model_path: str | None
    model_name: str
    prototxt: str | None = None


def model_choices(model_path: str | None = None, model_name: str | None = None,
                  prototxt: str | None = None) -> list[ModelChoice]:
    """The models on this machine (the registry's, found where stage 2 looks), the one the
    command named first."""
    out = []
    if model_path:
        folder = Path(model_path).absolute()
        out.append(ModelChoice("folder", f"{folder.name} (the folder {folder})", str(folder),
                               model_name or models.DEFAULT_WEIGHTS, prototxt))
    for info in MODELS.values():
        if any((d / info.name / info.caffemodel).is_file() for d in models.search_dirs()):
            name = models.DEFAULT_WEIGHTS if info.name == "bvlc_googlenet" else info.name
            out.append(ModelChoice(info.name, f"{info.name}: {info.about}", None, name))
    if model_name and not model_path and not any(
            c.model_name == model_name or c.key == model_name for c in out):
        out.insert(0, ModelChoice("named", model_name, None, model_name, prototxt))
    elif model_name and not model_path:  # the one named first
        out.sort(key=lambda c: c.model_name != model_name and c.key != model_name)
    return out


# --- the page's values -> DreamConfig ---------------------------------------------------

class FormError(DreamerError):
    """Values the page sent that stage 2 would refuse: {field: line}."""

    def __init__(self, errors: dict[str, str]):
        super().__init__("; ".join(errors.values()))
        self.errors = errors


def _value(name: str, s: Setting, raw, film: Film):
    if s.kind is bool:
        if isinstance(raw, str):
            return raw.strip().lower() in ("1", "true", "on", "yes")
        return bool(raw)
    text = str(raw if raw is not None else "").strip()
    if name == "layers":
        if not text:
            raise ValueError("name at least one layer")
        return (text,) if is_schedule(text) else tuple(text.split())
    if not text:
        if default(name) is None:
            return None
        raise ValueError("give a value")
    if name == "guide_image":  # only an upload, or an image in the film's folders
        return str(_guide_path(text, film))
    if s.choices is not None and text not in s.choices:
        raise ValueError(f"choose one of {', '.join(s.choices)}")
    return s.parse(text)


def _guide_path(text: str, film: Film) -> Path:
    root, _, rest = text.partition("/")
    roots = film.roots
    if root not in roots:
        raise ValueError("upload a guide image (the studio reads no other path)")
    path = safe_path(roots[root], rest)
    if not path.exists():
        raise ValueError(f"{text} is not there any more; upload it again")
    return path


def to_config(form: dict, film: Film, choices: list[ModelChoice]) -> DreamConfig:
    """The page's values as stage 2's settings, checked as stage 2 checks them (every
    scheduled value over the whole film too); FormError names each bad widget."""
    every = settings()
    values, errors = {}, {}
    for name in shown_fields():
        if name not in form:
            continue
        s = every[name]
        try:
            values[name] = _value(name, s, form[name], film)
        except (ValueError, DreamerError) as e:
            errors[name] = f"{label(name, s)}: {shorten(e, 200)}"
    model = next((c for c in choices if c.key == form.get("model")), None) or (
        choices[0] if choices else None)
    if model is None:
        errors["model"] = ("no model on this machine: download GoogLeNet with `dreamvideo "
                           "models download bvlc_googlenet`, or start the studio with -t FOLDER")
    else:
        values.update(model_path=model.model_path, model_name=model.model_name,
                      prototxt=model.prototxt)
    if errors:
        raise FormError(errors)
    config = DreamConfig(input=str(film.frames_dir), output=str(film.dreamed_dir),
                         image_type=film.image_type, verbose=0, **values)
    try:
        validate(config, 1, max(film.count, 1))
    except DreamerError as e:
        raise FormError({_field_of(str(e)): str(e)}) from None
    return config


def _field_of(message: str) -> str:
    """The widget a message of validate() is about: the one whose flag or name it starts
    with (else the whole form)."""
    for name in shown_fields():
        s = settings()[name]
        for word in (*s.flags, s.name or "", label(name, s)):
            if word and message.startswith(word + " "):
                return name
    return "form"


def form_of(config: DreamConfig, choices: list[ModelChoice]) -> dict:
    """A DreamConfig as the page's values."""
    out = {name: as_text(name, getattr(config, name)) for name in shown_fields()}
    out["model"] = next((c.key for c in choices if c.model_path == config.model_path
                         and c.model_name == config.model_name), choices[0].key if choices else "")
    return out


# --- the TOML and the command lines -------------------------------------------------------

SAVED = tuple(n for n in settings() if n not in STUDIO_SETS + NOT_HERE)


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise DreamerError(f"{value} cannot be saved")
        return repr(value)
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    # a TOML basic string: JSON's escapes are TOML's, but for DEL and surrogates
    return json.dumps(str(value), ensure_ascii=False).replace("\x7f", "\\u007f")


def toml_text(config: DreamConfig, film: Film, frame: int, width: int) -> str:
    """The settings that differ from stage 2's defaults, and the seed, as a --params file."""
    lines = [f"# {film.name}: settings chosen in dreamvideo studio (preview of frame {frame} at "
             f"{width} px)",
             "# stage 2 with them: dreamvideo dream --params THIS_FILE -i FRAMES -o DREAMED",
             ""]
    every = settings()
    for name in SAVED:
        value = getattr(config, name)
        if name != "seed" and value == default(name):
            continue
        if value is None:
            continue
        if name == "layers" and len(value) == 1:
            value = value[0]
        lines.append(f"{every[name].long or name} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"


def check_saved(path: Path, config: DreamConfig) -> None:
    """Reads the file back as stage 2 does: it must give this very config (a bug if not)."""
    loaded = params_file.load(str(path))
    again = replace(DreamConfig(), **{k: tuple(v) if isinstance(v, list) else v
                                      for k, v in loaded.items()})
    for f in fields(DreamConfig):
        if f.name in SAVED and getattr(again, f.name) != getattr(config, f.name):
            raise DreamerError(f"the saved {path.name} reads back {f.name} = "
                               f"{getattr(again, f.name)!r}, not {getattr(config, f.name)!r}")


def commands(film: Film, toml: Path, frame: int, width: int) -> dict[str, str]:
    """The command lines that do what the studio does, with the saved file."""
    stage2 = ["dreamvideo", "dream", "--params", str(toml), "-i", str(film.frames_dir)]
    out = {"render": shlex.join(stage2 + ["-o", str(film.dreamed_dir)]),
           "preview": shlex.join(stage2 + ["-o", str(film.studio_dir / f"check-frame-{frame}"),
                                           "-p", str(width), "-sf", str(frame),
                                           "-ef", str(frame)])}
    if film.video is not None:
        out["assemble"] = shlex.join(["dreamvideo", "assemble", str(film.dreamed_dir),
                                      str(film.video), "-o", str(film.result_path),
                                      "--overwrite"])
    return out


# --- curves -------------------------------------------------------------------------------

MAX_POINTS = 400


def curves(config: DreamConfig, count: int) -> list[dict]:
    """Each scheduled value over the film's frames (at most MAX_POINTS of them): numbers,
    the blend (a schedule, loop or random) and the layers (several, or a schedule)."""
    count = max(count, 1)
    step = max(1, math.ceil(count / MAX_POINTS))
    frames = list(range(1, count + 1, step))
    if frames[-1] != count:
        frames.append(count)
    every = settings()
    out = []
    for name, keys in number_keys(config).items():
        if not keys.constant:
            out.append({"name": name, "label": label(name, every[name]), "frames": frames,
                        "values": [keys.at(k) for k in frames]})
    blend = parse_blend(config.blend)
    if not isinstance(blend, float) and not (isinstance(blend, Keyframes) and blend.constant):
        out.append({"name": "blend", "label": "blend", "frames": frames[1:] or frames,
                    "values": [blend_for_frame(blend, k, config.seed or 0)
                               for k in (frames[1:] or frames)]})
    keys = config.layer_schedule
    layers = config.end_layers
    if keys is not None or len(layers) > 1:
        names = [keys.at(k) if keys is not None else layer_for_frame(layers, k)
                 for k in frames]
        labels = list(dict.fromkeys(names))
        out.append({"name": "layers", "label": "layer", "frames": frames,
                    "values": [labels.index(n) for n in names], "labels": labels})
    return out
