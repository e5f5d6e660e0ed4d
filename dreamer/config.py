"""Every default of a dream run, in one place: argparse reads them from here and the
library takes a `DreamConfig`, never an argparse Namespace."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from dreamer.dream.keyframes import LayerKeys, is_schedule

# The original's layer loop: down the inception outputs and back up again.
CUSTOM_LOOP = (
    "inception_4c/output", "inception_4d/output", "inception_4e/output",
    "inception_5a/output", "inception_5b/output", "inception_5a/output",
    "inception_4e/output", "inception_4d/output", "inception_4c/output",
)

# ImageNet BGR mean the original (and google/deepdream) subtract before the net.
BGR_MEAN = (104.0, 116.0, 122.0)


@dataclass(frozen=True)
class DreamConfig:
    input: str
    output: str
    image_type: str | None = None          # png | jpg; None: whatever the input holds
    gpu: int | None = None                 # CUDA device index; None: CPU
    model_path: str | None = None          # None: $DREAMER_MODELS, cache, ../caffe/models
    model_name: str = "bvlc_googlenet.caffemodel"
    prototxt: str = "deploy.prototxt"      # inside model_path, as in the original
    preview: int = 0                       # resize frames to this width first; 0: off
    # The numbers marked * may also be keyframe schedules, "1:(1.0), 30:(1.04)"
    # (dream/keyframes.py); dream/schedule.py gives each frame its values.
    octave_n: int | str = 4                # *
    octave_scale: float | str = 1.4        # *
    iter_n: int | str = 10                 # *
    jitter: int | str = 32                 # *
    zoom: float | str = 1.0                # * scale the carried dream by this each frame
    step_size: float | str = 1.5           # *
    blend: str = "0.5"                     # * weight of the new raw frame, or loop | random
    layers: tuple[str, ...] = ("customloop",)  # cycled per frame, or one schedule
    verbose: int = 1
    guide_image: str | None = None         # an image, a folder of images or a video
    guide_fps: float | None = None         # a guide video's sampling rate; None: the film's
    start_frame: int | None = None         # None: the first frame there
    end_frame: int | None = None           # None: the last frame there
    seed: int | None = None                # None: drawn, reported and recorded
    overwrite: bool = False                # replace frames made otherwise / not by us
    tile: str = "auto"                     # tile size in px, "auto" (when needed) or "off"
    precision: str = "fp32"                # fp32 matches Caffe; tf32 / bf16 are faster
    deterministic: bool = False            # GPU: fixed kernels, same numbers every run
    compile: bool = False                  # torch.compile per octave size (GPU: CUDA graphs)
    mean: tuple[float, float, float] = field(default=BGR_MEAN)
    flow: bool = False                     # carry the dream along the film's optical flow
    flow_blend: float | str = 0.9          # * weight of the carried dream where reliable
    flow_smooth: float = 0.4               # pull of each dream towards the moved last one
    flow_carry: str = "dream"              # carry the whole dream, or its residual only
    workers: int = 1                       # >1: dream pieces at once on Ray (run/distributed.py)
    warmup: int | None = None              # frames a piece dreams first; None: from the blend
    address: str | None = None             # a Ray cluster; None: $RAY_ADDRESS, else local

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


def expand_layers(names) -> tuple[str, ...]:
    out: list[str] = []
    for name in names:
        out.extend(CUSTOM_LOOP if name == "customloop" else (name,))
    return tuple(out)


def default(name: str):
    """The default of one DreamConfig field, for argparse."""
    for f in fields(DreamConfig):
        if f.name == name:
            return f.default
    raise KeyError(name)
