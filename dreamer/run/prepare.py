"""Everything a run fixes before its first frame, all checked: the frames and their size,
the net on its device, tiling and the memory budget, the guide, and the parameters that
key the manifest. Every driver of stage 2 (one process, or Ray workers) starts here."""
from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from dreamer.caffe import autotune, models, proto
from dreamer.caffe.net import CaffeNet, check_model_files, load_net, unknown_layer
from dreamer.caffe.spec import net_spec
from dreamer.config import DreamConfig, validate
from dreamer.dream import schedule, tiles
from dreamer.dream.flow import FlowCache
from dreamer.dream.guides import check_readable
from dreamer.errors import DreamerError
from dreamer.run import resume, threads
from dreamer.run.device import pick_device
from dreamer.run.fit import check_memory, check_octaves, check_tiling
from dreamer.run.frame import FrameDreamer, OctaveReporter, Setup, guide_of
from dreamer.run.guide_source import guide_images, still_images
from dreamer.run.lock import OutputLock
from dreamer.run.manifest import model_record
from dreamer.run.progress import Progress
from dreamer.values.tile import parse_tile
from dreamer.video.frames import FrameSet, common_size, find_frames, prepare_output, preview_size


def check_config(config: DreamConfig) -> None:
    """What can be refused before any file is read: the settings, and the environment's
    own (a bad DREAMER_NATIVE)."""
    missing = [flag for flag, value in (("-i/--input", config.input),
                                        ("-o/--output", config.output)) if value is None]
    if missing:
        raise DreamerError("no " + " and no ".join(missing) + " given; name the folder of "
                           "frames to dream and the folder for the dreams")
    validate(config)
    autotune.mode()


def check_inputs(config: DreamConfig) -> None:
    """What the model files and the guide allow to be refused before any frame exists
    (`dreamvideo all` calls it before stage 1): the model's files are there, every end
    layer is in its deploy net, and a guide image or folder is there and readable."""
    files = model_files(config)
    check_model_files(files["prototxt"], files["caffemodel"])
    names = [layer.name for layer in net_spec(proto.read_prototxt(files["prototxt"])).layers]
    for layer in config.end_layers:
        if layer not in names:
            raise unknown_layer(layer, names)
    if config.guide_image:
        images = still_images(Path(config.guide_image))
        if images is not None:
            check_readable(images)


def model_files(config: DreamConfig) -> dict[str, Path]:
    prototxt, caffemodel = models.resolve(config.model_path, config.model_name, config.prototxt)
    return {"prototxt": prototxt, "caffemodel": caffemodel}


@dataclass
class Prepared:
    """What a run fixes before its first frame, all checked: what every frame is dreamed
    with (`setup`), the net, the guide and the parameters that key the manifest."""
    setup: Setup
    output: Path
    net: CaffeNet
    model: dict
    guide_images: list[Path] | None
    guide_record: dict | None
    params: dict
    lock: OutputLock  # held until the run ends: release() it

    config = property(lambda self: self.setup.config)
    frames = property(lambda self: self.setup.frames)
    size = property(lambda self: self.setup.size)
    device = property(lambda self: self.setup.device)
    schedules = property(lambda self: self.setup.schedules)

    @property
    def key(self) -> str:
        return resume.params_key(self.params)


def prepare(config: DreamConfig) -> Prepared:
    """Checks everything a run needs, before any frame is dreamed."""
    check_config(config)
    schedules = schedule.Schedules(config)
    frames = find_frames(config.input, config.image_type, config.start_frame, config.end_frame)
    validate(config, frames.first, frames.last)
    output = prepare_output(config.output, frames.folder)
    lock = OutputLock(output).acquire()  # before anything in it is touched
    try:
        return _prepare(config, schedules, frames, output, lock)
    except BaseException:
        lock.release()
        raise


def _prepare(config: DreamConfig, schedules: schedule.Schedules, frames: FrameSet,
             output: Path, lock: OutputLock) -> Prepared:
    resume.remove_stale_temps(output)
    width, height = common_size(frames)
    size = preview_size(width, height, config.preview)
    device = pick_device(config.gpu)
    threads.configure(device, config.precision, deterministic=config.deterministic)
    files = model_files(config)
    net = load_net(files["prototxt"], files["caffemodel"]).to(device)
    if config.precision == "bf16":
        net.autocast_dtype = torch.bfloat16
    for layer in config.end_layers:
        net.check_end(layer)
    for pyramid in _pyramids(config, schedules, frames):
        check_octaves(net, config.end_layers, size, pyramid, (width, height))
    tile = parse_tile(config.tile)
    check_tiling(net, config.end_layers, tile)
    budget = step_budget(net, config, schedules, frames, size, (width, height), tile, device)
    mean = torch.tensor(config.mean, dtype=torch.float32, device=device)
    images, record = None, None
    if config.guide_image:
        images, record = guide_images(config.guide_image, config.guide_fps, frames.folder,
                                      frames.last, output / resume.STATE_DIR / "guide",
                                      Progress(0, config.verbose).info)
    model = model_record(files)
    params = resume.dream_params(config, model, _guide_key(record), frames.image_type,
                                 schedules)
    setup = Setup(config, frames, size, schedules, mean, device, tile, budget)
    return Prepared(setup, output, net, model, images, record, params, lock)


def _pyramids(config: DreamConfig, schedules: schedule.Schedules,
              frames: FrameSet) -> list[DreamConfig]:
    """The config once for each (octaves, octave scale) the range's frames use."""
    pairs = dict.fromkeys((v.octave_n, v.octave_scale) for v in
                          (schedules.at(k, 0, carried=False) for k in frames.numbers))
    return [replace(config, octave_n=n, octave_scale=s) for n, s in pairs]


def step_budget(net: CaffeNet, config: DreamConfig, schedules: schedule.Schedules,
                frames: FrameSet, size, frame_size, tile, device) -> int | None:
    """What --tile auto may give a step (None: no auto tiling), measured now and fixed for
    the whole run, so that tiling never depends on what else uses memory meanwhile; frames
    too large to dream at all are refused. Only the layers the range's frames use count:
    2 frames of customloop never reach 5b."""
    used = list(dict.fromkeys(schedules.layer(k) for k in frames.numbers))
    free = tiles.memory_budget(device)
    budget = min(check_memory(net, used, size, frame_size, pyramid, tile, free, device)
                 for pyramid in _pyramids(config, schedules, frames))
    return budget if tile == "auto" else None


def _guide_key(record: dict | None) -> str | None:
    """What identifies the guide in the run's parameters: its sha1 (as runs guided by an
    image always had), and for a video the rate it is sampled at too."""
    if record is None:
        return None
    return record["sha1"] if record["kind"] != "video" else f"{record['sha1']}@{record['fps']}"


def open_dreamer(run: Prepared, seed: int, reporter: OctaveReporter | None = None,
                 net=None) -> FrameDreamer:
    """The frame dreamer of a prepared run (`net`: another view of run.net, such as its
    compiled form)."""
    guide = guide_of(run.setup, run.net, run.guide_images)
    return FrameDreamer(run.setup, net or run.net, seed, guide, reporter)


def flow_cache(frames: FrameSet, output: Path) -> FlowCache:
    """Beside the frames, or in the output's .dreamer/ where the frames' folder is
    read-only."""
    if os.access(frames.folder, os.W_OK):
        return FlowCache.next_to(frames.folder)
    return FlowCache(output / resume.STATE_DIR / "flow")


