"""Every setting of a dream run, defined once.

Each field of `DreamConfig` carries its `Setting`: the flags that set it (the original
DeepDreamVideo's spellings first), its help, its type and bounds, whether it takes a
keyframe schedule, whether it changes a frame's pixels (and so keys a run for resume)
and its group in the help. The command line's parser, the `--params` file's keys, the
run key, the set of schedulable flags, `validate()` and the flag reference page
(docs/flags.md) are all made from these fields: adding a setting is adding a field.

The library takes a `DreamConfig`, never an argparse Namespace.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields

from dreamer.errors import DreamerError
from dreamer.values.blend import BLEND_RULE, parse_blend
from dreamer.values.expr import shorten, shown
from dreamer.values.keyframes import Keyframes, LayerKeys, is_schedule
from dreamer.values.tile import parse_tile

# The original's layer loop: down the inception outputs and back up again.
CUSTOM_LOOP = (
    "inception_4c/output", "inception_4d/output", "inception_4e/output",
    "inception_5a/output", "inception_5b/output", "inception_5a/output",
    "inception_4e/output", "inception_4d/output", "inception_4c/output",
)

# ImageNet BGR mean the original (and google/deepdream) subtract before the net.
BGR_MEAN = (104.0, 116.0, 122.0)

# The help's groups, in the order they are shown.
GROUPS = {
    "frames": "frames in and out",
    "dream": "the dream",
    "film": "from frame to frame",
    "model": "model",
    "device": "device and speed",
    "workers": "many workers (Ray)",
}

# A setting that only applies when another is on: (what is needed, what to add, the test).
NEEDS = {
    "flow": ("--flow", "--flow", bool),
    "workers": ("--workers 2 or more", "--workers N", lambda n: n > 1),
    "guide_image": ("a guide video (-gi VIDEO)", "-gi", bool),
}


@dataclass(frozen=True)
class Setting:
    """What one DreamConfig field is to the user (see the module's docstring)."""
    flags: tuple[str, ...]           # empty: the library's only (no flag)
    help: str
    group: str
    kind: type = str                 # int, float, str or bool (an on/off flag)
    schedule: bool = False           # takes a keyframe schedule: marked * in the help
    keyed: bool = False              # changes pixels: part of the run's key
    # False for a keyed setting added later: at its default it stays out of the key, so
    # runs made before it existed keep their keys (and resume)
    keyed_at_default: bool = True
    needs: str | None = None         # a field of NEEDS that must hold for it to apply
    low: float | None = None         # bounds of the value (of every frame's, if scheduled)
    high: float | None = None
    above: bool = False              # low itself is not allowed
    # high is a sanity cap (MAX_* below), not the value's own range: a message names it
    # only to a value above it ("iterations must be 0 or more", not "0 to 100000")
    cap: bool = False
    name: str | None = None          # in messages (default: the first flag)
    hint: str = ""                   # after a bounds message
    choices: tuple[str, ...] | None = None
    nargs: str | None = None
    const: object = None
    metavar: str | None = None

    @property
    def flag(self) -> str:
        return self.flags[0] if self.flags else ""

    @property
    def long(self) -> str | None:
        """The first --long flag, dashes dropped: the setting's key in a --params file."""
        return next((f[2:] for f in self.flags if f.startswith("--")), None)

    @property
    def numeric(self) -> bool:
        return self.kind in (int, float)

    def parse(self, text: str):
        """A value as typed: a number of the setting's kind or, for a schedulable one,
        the schedule's text (checked by `validate`, which can name the frame). Raises
        ValueError with the reason."""
        if self.kind is tuple:
            return _triple(text)
        if not self.numeric:
            return text
        word = "whole number" if self.kind is int else "number"
        try:
            return self.kind(text)
        except ValueError:
            pass
        if self.schedule:
            try:
                float(text)
            except ValueError:
                return text  # a schedule or an expression of t
        raise ValueError(f"'{shorten(text)}' is not a {word}")

    def bounds(self, low: bool = True, high: bool = True) -> str:
        """The range, as the help and messages say it (with `low` or `high` False: the
        other side alone)."""
        low, high = self.low if low else None, self.high if high else None
        lo, hi = _shown(low), _shown(high)
        if low is not None and high is not None:
            return f"above {lo} and at most {hi}" if self.above else f"{lo} to {hi}"
        if low is not None:
            return f"above {lo}" if self.above else f"{lo} or more"
        return f"at most {hi}"

    def within(self, value) -> bool:
        if not finite(value):
            return False
        lo, hi = self.low, self.high
        if lo is not None and (value <= lo if self.above else value < lo):
            return False
        return hi is None or value <= hi

    def out_of_bounds(self, value, where: str = "") -> DreamerError:
        hint = f"; {self.hint}" if self.hint else ""
        rule = self.bounds()
        if self.cap and not (isinstance(value, float) and math.isnan(value)):  # NaN: all
            above = self.high is not None and value > self.high
            rule = self.bounds(low=not above, high=above)
        return DreamerError(f"{self.name or self.flag} must be {rule} "
                            f"(got {_shown(value)}{where}){hint}")


def _triple(text: str) -> tuple[float, float, float]:
    """Three numbers written B,G,R (spaces allowed)."""
    parts = [p.strip() for p in text.split(",")]
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) != 3:
        raise ValueError(f"'{shorten(text)}' is not three numbers B,G,R (e.g. 104,116,122)")
    return values


def finite(value) -> bool:
    """Whether a number is neither infinite nor NaN (a whole number always is)."""
    return not isinstance(value, float) or math.isfinite(value)


def _shown(value) -> str:
    """A number as a message shows it: whole numbers in full up to 15 digits."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    if isinstance(value, bool):
        return str(int(value))
    return shown(value)  # (a whole number of 5000 digits too)


# Upper bounds: far beyond any useful value, so that no real run is refused, and low
# enough that a typo's value (10**30, 1e300) is refused in one line before it reaches
# numpy or PyTorch (a jitter beyond int64, an octave count whose pyramid never ends) or
# runs for ever (a billion gradient steps).
MAX_WIDTH = 100_000      # -p: pixels; 16K video is 15360 wide
MAX_OCTAVES = 30         # at the classic 1.4, 30 octaves shrink a frame 17,000 times
MAX_OCTAVE_SCALE = 100   # the classic 1.4; 100 makes a frame a thumbnail in one octave
MAX_ITERATIONS = 100_000  # steps per octave: 10 is the classic, 1000 already hours a frame
MAX_JITTER = 100_000     # pixels: larger than any frame, so any more shifts nothing more
MAX_ZOOM = 100           # per frame: 1.02 is a typical fall into the dream
MAX_STEP_SIZE = 1000     # 1.5 is the classic; the gradient is normalised, so 1000 saturates
MAX_WORKERS = 10_000     # Ray workers
MAX_WARMUP = 100_000     # frames a piece dreams first


def setting(default, *flags: str, help: str, group: str, **kw):
    """A DreamConfig field with its Setting."""
    return field(default=default, metadata={"setting": Setting(tuple(flags), help, group, **kw)})


@dataclass(frozen=True)
class DreamConfig:
    input: str = setting(None, "-i", "--input", group="frames",
                         help="folder of input frames (required)")
    output: str = setting(None, "-o", "--output", group="frames",
                          help="folder for the dreamed frames, made if missing (required)")
    image_type: str | None = setting(
        None, "-it", "--image_type", group="frames", choices=("png", "jpg"), keyed=True,
        help="frame file type (default: whichever the input folder holds)")
    gpu: int | None = setting(
        None, "--gpu", group="device", kind=int, nargs="?", const=0, metavar="N",
        help="dream on CUDA device N (default: the CPU; --gpu alone means 0)")
    model_path: str | None = setting(
        None, "-t", "--model_path", group="model",
        help="folder holding the deploy file and the caffemodel (default: search "
             "$DREAMER_MODELS/<model>, the cache ~/.cache/dreamer/models/<model>, then the "
             "original's ../caffe/models/bvlc_googlenet/)")
    model_name: str = setting(
        "bvlc_googlenet.caffemodel", "-m", "--model_name", group="model",
        help="the caffemodel's file name, or a model's name from `dreamvideo models list` "
             "(default: %(default)s; with -t, else the folder's one .caffemodel)")
    prototxt: str | None = setting(
        None, "--prototxt", group="model", metavar="FILE",
        help="the deploy file (default: deploy.prototxt in the model folder, else the "
             "folder's one *.prototxt or *.protxt)")
    preview: int = setting(
        0, "-p", "--preview", group="frames", kind=int, low=0, high=MAX_WIDTH, cap=True,
        keyed=True, name="preview width", hint="0 is off",
        help="resize frames to this width first, aspect kept (default: 0 = off)")
    octave_n: int | str = setting(
        4, "-oct", "--octaves", group="dream", kind=int, schedule=True, keyed=True, low=1,
        high=MAX_OCTAVES, cap=True, name="octaves",
        help="number of octaves, the image pyramid's levels (default: %(default)s)")
    octave_scale: float | str = setting(
        1.4, "-octs", "--octavescale", group="dream", kind=float, schedule=True, keyed=True,
        low=1, high=MAX_OCTAVE_SCALE, cap=True, name="octave scale",
        hint="1.4 is the classic value",
        help="size ratio between octaves (default: %(default)s)")
    iter_n: int | str = setting(
        10, "-itr", "--iterations", group="dream", kind=int, schedule=True, keyed=True, low=0,
        high=MAX_ITERATIONS, cap=True, name="iterations",
        help="gradient steps per octave (default: %(default)s)")
    jitter: int | str = setting(
        32, "-j", "--jitter", group="dream", kind=int, schedule=True, keyed=True, low=0,
        high=MAX_JITTER, cap=True, name="jitter",
        help="random shift in pixels before each step (default: %(default)s)")
    zoom: float | str = setting(
        1.0, "-z", "--zoom", group="film", kind=float, schedule=True, keyed=True, low=0,
        above=True, high=MAX_ZOOM, cap=True, name="zoom", hint="1 is off",
        help="scale the carried dream by this each frame, about the centre (default: 1 = "
             "off; 1.02 falls 2%% a frame into the dream)")
    step_size: float | str = setting(
        1.5, "-s", "--stepsize", group="dream", kind=float, schedule=True, keyed=True, low=0,
        above=True, high=MAX_STEP_SIZE, cap=True, name="step size",
        help="step size of each gradient step (default: %(default)s)")
    blend: str = setting(
        "0.5", "-b", "--blend", group="film", schedule=True, keyed=True,
        help="weight of each new raw frame against the previous dream, 0 to 1, or 'loop' "
             "(0.5 to 1 and back) or 'random' (default: %(default)s)")
    layers: tuple[str, ...] = setting(
        ("customloop",), "-l", "--layers", group="dream", nargs="+", schedule=True, keyed=True,
        help="end layer(s); frame k uses layer[(k-1) %% n]; 'customloop' is inception_4c "
             "to 5b and back (default: customloop); or a schedule, "
             "'1:(inception_4c/output), 120:(inception_5b/output)'")
    verbose: int = setting(
        1, "-v", "--verbose", group="frames", kind=int, low=0, high=3, name="verbosity",
        help="0 silent, 1 progress bar, 2 per-octave lines, 3 also per-octave preview "
             "images in OUTPUT/previews/ (default: %(default)s)")
    guide_image: str | None = setting(
        None, "-gi", "--guide_image", "--guide-image", group="dream", keyed=True,
        help="dream towards this image's features; a folder of images or a video guides "
             "frame k by its frame k, looping")
    guide_fps: float | None = setting(
        None, "--guide-fps", group="dream", kind=float, needs="guide_image", low=0, above=True,
        high=1000, metavar="FPS",
        help="sample a guide video at FPS frames a second (default: the film's rate from "
             "stage 1, so it plays in step; else the guide's own)")
    start_frame: int | None = setting(
        None, "-sf", "--start_frame", "--start-frame", group="frames", kind=int,
        help="first frame to dream (default: the first there)")
    end_frame: int | None = setting(
        None, "-ef", "--end_frame", "--end-frame", group="frames", kind=int,
        help="last frame to dream, inclusive (default: the last there)")
    seed: int | None = setting(
        None, "--seed", group="dream", kind=int, low=0, high=2**32 - 1,
        help="seed of the jitter (and random blend); default: drawn and reported")
    overwrite: bool = setting(
        False, "--overwrite", group="frames", kind=bool,
        help="replace frames in the output folder that were dreamed with other parameters "
             "(or not by this tool); without it such a run is refused")
    tile: str = setting(
        "auto", "--tile", group="device", keyed=True, metavar="SIZE|auto|off",
        help="dream frames too large for memory in tiles of SIZE px (with overlap, no "
             "seams); auto (default) tiles only when a step would not fit")
    precision: str = setting(
        "fp32", "--precision", group="device", choices=("fp32", "tf32", "bf16"), keyed=True,
        help="arithmetic: fp32 matches Caffe (default); tf32 (CUDA) and bf16 are faster and "
             "drift slightly from Caffe's numbers")
    deterministic: bool = setting(
        False, "--deterministic", group="device", kind=bool,
        help="GPU: fixed kernels, so a resumed run repeats an uninterrupted one exactly "
             "(slower); the CPU always is")
    compile: bool = setting(
        False, "--compile", group="device", kind=bool,
        help="GPU: compile the net for each octave size, with CUDA graphs; the first frames "
             "take minutes longer, every later one less time")
    mean: tuple[float, float, float] = setting(
        BGR_MEAN, "--mean", group="model", kind=tuple, keyed=True, low=0, high=255,
        metavar="B,G,R", name="--mean",
        help="the B,G,R mean subtracted before the net (default: the original's 104,116,122;"
             " the model's own, e.g. 103.939,116.779,123.68 for VGG)")
    flow: bool = setting(
        False, "--flow", group="film", kind=bool, keyed=True,
        help="carry the previous dream along the film's motion (optical flow), so the "
             "hallucinations move with the scene; off: the original's blend. "
             "--flow fast: the same look in under half the time (-itr 2 -s 3 "
             "--flow-smooth 0.7, each unless given)")
    flow_blend: float | str = setting(
        0.9, "--flow-blend", group="film", kind=float, schedule=True, keyed=True,
        needs="flow", low=0, high=1, metavar="F",
        help="with --flow: weight of the carried dream where the flow is reliable, 0 to 1 "
             "(default %(default)s; -b still applies where it is not)")
    flow_smooth: float = setting(
        0.6, "--flow-smooth", group="film", kind=float, keyed=True, needs="flow", low=0,
        high=1, metavar="S",
        help="with --flow: pull each dreamed frame this far towards the previous one moved "
             "along the flow, 0 (off) to 1 (default %(default)s): less flicker")
    flow_carry: str = setting(
        "dream", "--flow-carry", group="film", choices=("dream", "residual"), keyed=True,
        needs="flow",
        help="with --flow: carry the whole dream (default) or only what it added to the "
             "previous frame")
    scene_cut: float | str = setting(
        0.25, "--scene-cut", group="film", kind=float, schedule=True, keyed=True,
        keyed_at_default=False, needs="flow", low=0, high=1, metavar="F",
        help="with --flow: start a frame afresh from its raw frame when less than this share "
             "of it moves reliably from the frame before (a scene cut); 0 never, 1 always "
             "(default %(default)s)")
    workers: int = setting(
        1, "--workers", group="workers", kind=int, low=1, high=MAX_WORKERS, cap=True,
        metavar="N",
        help="dream N pieces of the range at once on Ray workers (local, or the cluster at "
             "--address/$RAY_ADDRESS; needs pip install 'dreamer[ray]'); default: "
             "%(default)s, no Ray")
    warmup: int | None = setting(
        None, "--warmup", group="workers", kind=int, needs="workers", low=0, high=MAX_WARMUP,
        cap=True, metavar="W",
        help="with --workers: frames each piece dreams and discards first to build the "
             "carried dream (default: until the blend has let go of what is missing, below "
             "one grey level)")
    address: str | None = setting(
        None, "--address", group="workers", needs="workers", metavar="HOST:PORT",
        help="with --workers: the Ray cluster to run on (default: $RAY_ADDRESS, else a Ray "
             "started on this machine)")

    def __post_init__(self):
        # a library caller's "inception_4c/output" or list of layers, as the flag gives them
        layers = self.layers
        if isinstance(layers, str) or not isinstance(layers, tuple):
            object.__setattr__(self, "layers", (layers,) if isinstance(layers, str)
                               else tuple(layers))

    @property
    def end_layers(self) -> tuple[str, ...]:
        """`layers` with `customloop` spelled out; of a schedule, every layer it names."""
        keys = self.layer_schedule
        return keys.all_layers if keys is not None else expand_layers(self.layers)

    @property
    def layer_schedule(self) -> LayerKeys | None:
        """`-l 1:(inception_4c/output), 120:(inception_5b/output)`, or None for a list."""
        text = " ".join(self.layers)
        return LayerKeys.parse(text, expand_layers) if is_schedule(text) else None

    def to_dict(self) -> dict:
        return asdict(self)


# --flow fast (docs/flow.md): with the previous dream carried along the flow a frame need
# not start over, so two larger steps an octave keep the look of five, in under half the
# time, with less flicker (measured on real film).
FLOW_PRESETS = {"fast": dict(flow=True, iter_n=2, step_size=3.0, flow_smooth=0.7)}


def expand_layers(names) -> tuple[str, ...]:
    out: list[str] = []
    for name in names:
        out.extend(CUSTOM_LOOP if name == "customloop" else (name,))
    return tuple(out)


def settings() -> dict[str, Setting]:
    """Every field's Setting by field name, in the fields' order."""
    return {f.name: f.metadata["setting"] for f in fields(DreamConfig)}


def default(name: str):
    """The default of one DreamConfig field."""
    for f in fields(DreamConfig):
        if f.name == name:
            return f.default
    raise KeyError(name)


def schedulable_numbers() -> dict[str, Setting]:
    """The numeric settings that take a keyframe schedule (-l and -b have their own)."""
    return {name: s for name, s in settings().items() if s.schedule and s.numeric}


def keyed() -> dict[str, Setting]:
    """The settings that change a frame's pixels."""
    return {name: s for name, s in settings().items() if s.keyed}


def applies(config: DreamConfig, name: str) -> bool:
    """Whether a setting takes effect: what it needs (NEEDS) holds."""
    need = settings()[name].needs
    return need is None or NEEDS[need][2](getattr(config, need))


def number_keys(config: DreamConfig) -> dict[str, Keyframes]:
    """Each schedulable number of `config` as keyframes (a fixed value: one key)."""
    return {name: Keyframes.parse(getattr(config, name), s.flag, s.kind is int)
            for name, s in schedulable_numbers().items()}


def validate(config: DreamConfig, first: int | None = None, last: int | None = None) -> None:
    """Refuses, in one line naming the flag, a value the dream cannot work with: fixed
    values and the syntax of schedules now; with a range of frames first..last, every
    value a schedule gives those frames too (the first bad one named with its frame)."""
    for name, s in settings().items():
        value = getattr(config, name)
        if s.needs and value != default(name) and not applies(config, name):
            when, add, _ = NEEDS[s.needs]
            raise DreamerError(f"{s.flag} only applies with {when}; add {add}, or drop "
                               f"{s.flag}")
        if s.choices and value is not None and value not in s.choices:
            raise DreamerError(f"{s.flag} {shorten(value)}: use " + " or ".join(s.choices))
        if s.numeric and value is not None and not (s.schedule and isinstance(value, str)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or (
                    s.kind is int and not isinstance(value, int)):
                raise DreamerError(f"{s.flag or name} {shorten(repr(value))} is not a "
                                   f"{'whole ' if s.kind is int else ''}number")
            if not s.within(value):  # (a schedulable one's plain number too, huge or NaN)
                raise s.out_of_bounds(value)
        if s.kind is tuple and not (isinstance(value, tuple) and len(value) == 3 and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and s.within(v)
                for v in value)):
            raise DreamerError(f"{s.flag} must be three numbers B,G,R, each {s.bounds()} "
                               f"(got {shorten(repr(value))})")
    if not config.layers:
        raise DreamerError("no layers given; name at least one with -l")
    config.layer_schedule  # parsed: a bad layer schedule is refused here
    parse_tile(config.tile)
    sets = schedulable_numbers()
    for name, keys in number_keys(config).items():
        _check_keys(keys, sets[name].within, sets[name].out_of_bounds, first, last)
    blend = parse_blend(config.blend)
    if isinstance(blend, Keyframes):
        _check_keys(blend, lambda v: 0 <= v <= 1,
                    lambda v, where: DreamerError(BLEND_RULE.format(got=f"got {v:g}{where}")),
                    first, last)


def _check_keys(keys: Keyframes, ok, error, first: int | None, last: int | None) -> None:
    if keys.constant:
        frames = (1,)
    elif first is None:
        return
    else:
        frames = range(first, last + 1)
    for k in frames:
        value = keys.at(k)
        if not ok(value):
            raise error(value, "" if keys.constant else
                        f" at frame {k} of {keys.flag} '{shorten(keys.text())}'")
