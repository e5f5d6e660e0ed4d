"""Stage 2's orchestrator: dreams a range of numbered frames, each blended with the
previous dream, and writes frames, manifest and the run's description."""
from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from dreamer.caffe import autotune, models
from dreamer.caffe.layers import InnerProduct
from dreamer.caffe.net import CaffeNet, ShapeError, load_net
from dreamer.config import DreamConfig, default
from dreamer.dream import schedule, tiles, transforms
from dreamer.dream.carry import CARRY_MODES
from dreamer.dream.flow import FlowCache
from dreamer.dream.guides import open_guide
from dreamer.errors import DreamerError, Interrupted
from dreamer.run import distributed, resume, threads
from dreamer.run.device import CompiledNet, pick_device
from dreamer.run.frame import FrameDreamer, OctaveReporter, to_tensor
from dreamer.run.guide_source import guide_images
from dreamer.run.manifest import Manifest, describe, model_record, run_record
from dreamer.run.progress import Progress
from dreamer.run.writer import FrameWriter
from dreamer.video.frames import FrameSet, check_sizes, find_frames, prepare_output, preview_size

MIN_TILE = 32  # GoogLeNet's deepest stride: tiles are cut on the end layer's stride grid


@dataclass
class RunResult:
    frames: FrameSet
    output: Path
    seed: int
    description: str


def check_params(config: DreamConfig) -> None:
    """Numbers the dream cannot work with, refused before any file is touched."""
    rules = [
        (config.preview >= 0, f"preview width must be 0 (off) or more (got {config.preview})"),
        (0 <= config.verbose <= 3, f"verbosity must be 0 to 3 (got {config.verbose})"),
        (bool(config.layers), "no layers given; name at least one with -l"),
    ]
    for ok, message in rules:
        if not ok:
            raise DreamerError(message)
    schedule.Schedules(config).check()  # fixed values now, schedules once the range is known
    parse_tile(config.tile)
    if not 0 <= config.flow_smooth <= 1:
        raise DreamerError(f"--flow-smooth must be 0 to 1 (got {config.flow_smooth:g})")
    if config.flow_carry not in CARRY_MODES:
        raise DreamerError(f"--flow-carry {config.flow_carry}: use dream or residual")
    _check_flow_options(config)
    if config.guide_fps is not None and not config.guide_image:
        raise DreamerError("--guide-fps only applies with a guide video (-gi VIDEO); add "
                           "-gi, or drop --guide-fps")
    autotune.mode()  # a bad DREAMER_NATIVE is refused before anything starts


def _check_flow_options(config: DreamConfig) -> None:
    """--flow-blend/-carry/-smooth without --flow would be ignored: a run of hours without
    what was asked for. Refused instead."""
    if config.flow:
        return
    for name in ("flow_blend", "flow_carry", "flow_smooth"):
        if getattr(config, name) != default(name):
            flag = "--" + name.replace("_", "-")
            raise DreamerError(f"{flag} only applies with --flow; add --flow, or drop {flag}")


def parse_tile(text: str) -> int | str | None:
    """--tile: a size in pixels, "auto" or "off"."""
    word = str(text).strip().lower()
    if word in ("auto", "off"):
        return None if word == "off" else "auto"
    try:
        size = int(word)
    except ValueError:
        raise DreamerError(f"--tile {text} is not a size in pixels, 'auto' or 'off'") from None
    if size < MIN_TILE:
        raise DreamerError(f"--tile {size} is too small; use at least {MIN_TILE} px (512 is a "
                           "good size), 'auto' or 'off'")
    return size


def check_tiling(net: CaffeNet, layers, tile) -> None:
    """Layers that see the whole image at once (global pooling, fully connected) cannot be
    dreamed in tiles: refuse an explicit --tile for them before the first frame."""
    if isinstance(tile, int):
        for layer in dict.fromkeys(layers):
            if tiles.geometry(net, layer)[0] is None:
                raise DreamerError(f"layer {layer} sees the whole image at once and cannot be "
                                   "dreamed in tiles; use --tile off or an earlier layer")


def model_files(config: DreamConfig) -> dict[str, Path]:
    prototxt, caffemodel = models.resolve(config.model_path, config.model_name, config.prototxt)
    return {"prototxt": prototxt, "caffemodel": caffemodel}


def check_octaves(net: CaffeNet, layers, size: tuple[int, int], config: DreamConfig,
                  frame_size: tuple[int, int] | None = None) -> None:
    """The frames, and the smallest octave, must pass through the net up to every end
    layer. `frame_size`: the frames' size before -p, for the -p a refusal suggests."""
    w, h = size
    sh, sw = transforms.octave_sizes(h, w, config.octave_n, config.octave_scale)[-1]
    layers = tuple(dict.fromkeys(layers))
    for layer in layers:
        misfit = _misfit(net, h, w, layer) or _misfit(net, sh, sw, layer)
        if misfit is None:
            continue
        fc = _fixed_size_layer(net, layer)
        if fc is not None:
            raise DreamerError(_fixed_size_line(net, layer, fc, size))
        sides = {name: _least_side(net, name) for name in layers}
        least = _least_preview(net, sides, frame_size or size, config)
        larger = f"a larger -p (-p {least} or more)" if least else "larger frames"
        if _misfit(net, h, w, layer) is None:
            raise DreamerError(
                f"frames of {w}x{h} are too small for {config.octave_n} octaves at scale "
                f"{config.octave_scale:g} up to layer {layer} (the smallest octave is "
                f"{sw}x{sh}); use fewer octaves (-oct), a smaller octave scale (-octs) or "
                f"{larger}")
        raise DreamerError(_too_small_line(sides, size, config, larger))


def _net_size(net: CaffeNet) -> tuple[int, int]:
    """(height, width) the net was declared with (GoogLeNet: its training size)."""
    return net.input_shape[-2:] if len(net.input_shape) == 4 else (224, 224)


def _fixed_size_layer(net: CaffeNet, end: str):
    """The fully connected layer that ties `end` to the net's own input size, or None: a
    net that takes its own size but not a larger one fails at such a layer."""
    nh, nw = _net_size(net)
    if _misfit(net, nh, nw, end) is not None:
        return None
    misfit = _misfit(net, 2 * nh, 2 * nw, end)
    return misfit if isinstance(misfit, InnerProduct) else None


def _misfit(net: CaffeNet, height: int, width: int, end: str):
    """The first layer up to `end` that cannot take a height x width image, or None."""
    if height < 1 or width < 1:
        return net.layers[0]
    try:
        net.validate(height, width, end=end)
    except ShapeError as e:
        return net.layers[net._index[e.layer]]
    return None


def _fixed_size_line(net: CaffeNet, end: str, fc, size) -> str:
    """A fully connected layer takes only the size the net was trained at, and so does
    every layer after it."""
    nh, nw = _net_size(net)
    w, h = size
    what = (f"layer {end} is fully connected" if end == fc.name else
            f"layer {end} comes after the fully connected layer {fc.name}")
    convs = [layer.tops[0] for layer in net.layers[:net._index[fc.name]]
             if layer.type in ("Concat", "Convolution")]
    fix = (f"dream an inception or convolution layer such as -l {convs[-1]}" if convs
           else "dream an earlier layer")
    if (w, h) == (nw, nh):
        return (f"{what}, so it works only at the net's input size {nw}x{nh}, and the "
                f"smaller octaves are not that size; use -oct 1, or {fix}")
    square = f", or use -p {nw} -oct 1" if w == h and nw == nh else ""
    return (f"{what}, so it works only at the net's input size {nw}x{nh}, not on {w}x{h} "
            f"frames; {fix}{square}")


def _least_side(net: CaffeNet, end: str) -> int | None:
    """The least square image that passes through the net up to `end` (shapes only)."""
    lo, hi = 1, 4096
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if _misfit(net, mid, mid, end) is None else (mid + 1, hi)
    return lo if _misfit(net, lo, lo, end) is None else None


def _least_preview(net: CaffeNet, sides: dict, frame_size, config: DreamConfig) -> int | None:
    """The least -p whose every octave passes up to every layer (`sides`: each layer's
    least side), or None."""
    if None in sides.values():
        return None
    fw, fh = frame_size

    def fits(p: int) -> bool:
        pw, ph = preview_size(fw, fh, p)
        sh, sw = transforms.octave_sizes(ph, pw, config.octave_n, config.octave_scale)[-1]
        return all(_misfit(net, sh, sw, layer) is None for layer in sides)

    # the smallest octave is the frame / scale^(n-1): start a little below that guess
    guess = max(sides.values()) * config.octave_scale ** (config.octave_n - 1) * max(1, fw / fh)
    p = max(1, int(guess * 0.9))
    for _ in range(200):  # about 2 % a try: up to 50x the guess
        if fits(p):
            return p
        p += max(1, p // 50)
    return None


def _too_small_line(sides: dict, size, config: DreamConfig, larger: str) -> str:
    """Frames smaller than the net takes, naming the layer that needs the largest."""
    w, h = size
    if None in sides.values():
        layer = next(layer for layer, side in sides.items() if side is None)
        return (f"frames of {w}x{h} do not pass through the net up to layer {layer} at any "
                "size; choose another layer with -l")
    layer = max(sides, key=sides.get)
    now = f" (-p {config.preview})" if config.preview else ""
    return (f"frames of {w}x{h}{now} are too small for the net up to layer {layer}, which "
            f"needs at least {sides[layer]}x{sides[layer]} px; use {larger}")


def check_memory(net: CaffeNet, layers, size, frame_size, config: DreamConfig, tile,
                 budget: int, device: torch.device) -> int:
    """Refuses frames whose dream would not fit in `budget` bytes even at the smallest
    step `tile` allows: tiling shrinks only the step, never the whole frames and their
    pyramid. Returns what the budget leaves for the steps (choose_tile's budget)."""
    w, h = size
    need = tiles.dream_bytes(net, h, w, layers, tile, config.octave_n, config.octave_scale)
    if need <= budget:
        return tiles.step_budget(budget, h, w, config.octave_n, config.octave_scale)

    def fits(p: int) -> bool:
        pw, ph = preview_size(*frame_size, p)
        return tiles.dream_bytes(net, ph, pw, layers, tile, config.octave_n,
                                 config.octave_scale) <= budget

    lo, hi = 0, w  # the widest -p that fits (0: none)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid - 1)
    tiled = tile is not None and all(tiles.geometry(net, layer)[0] for layer in layers)
    how = "even in tiles" if tiled else ("untiled (--tile off)" if tile is None else "")
    memory = "GPU memory" if device.type == "cuda" else "memory"
    now = f" (-p {config.preview})" if config.preview else ""
    if lo == 0:
        fix = "free memory, or use another machine"
    else:
        fix = f"use a smaller -p (-p {lo} or less)"
        fix = f"use --tile auto or a smaller -p (-p {lo} or less)" if tile is None else fix
    raise DreamerError(f"frames of {w}x{h}{now} need about {_size_text(need)} of {memory} "
                       f"to dream{' ' + how if how else ''}, and about {_size_text(budget)} "
                       f"is free; {fix}")


def _size_text(n: int) -> str:
    for unit, size in (("TB", 1e12), ("GB", 1e9)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n / 1e6:.0f} MB"


def _carried_state(plan: resume.Plan, frames: FrameSet, output: Path, size, device,
                   progress: Progress) -> torch.Tensor | None:
    """The dream of the frame before the first one, so runs over ranges join seamlessly."""
    if plan.start <= 1:
        return None
    frame, why_not = resume.load_state(output, plan.start - 1, frames.image_type, size)
    if why_not:
        progress.info(f"frame {plan.start} starts from the raw frame: {why_not}")
    return None if frame is None else to_tensor(frame, device)


def _done_text(frames: FrameSet, k: int, output: Path) -> str:
    if k - 1 > frames.first:
        return f"frames {frames.first}..{k - 1} are complete in {output}"
    if k - 1 == frames.first:
        return f"frame {frames.first} is complete in {output}"
    return "no frame was finished"


def _close_run(manifest: Manifest, status: str) -> None:
    try:
        manifest.finish_run("", status=status)
    except OSError:
        pass  # the disk may be what failed; the synced journal still has every frame


def dream_sequence(config: DreamConfig, argv: list[str] | None = None,
                   progress: Progress | None = None) -> RunResult:
    created = _missing_folders(Path(config.output))
    if created:  # and the work folders a refused or interrupted start makes in it
        state = created[0] / resume.STATE_DIR
        created = [state / "guide", state, *created]
    try:
        if distributed.wanted(config):  # --workers N: the pieces on Ray
            return distributed.dream_sequence(config, argv, progress)
        return _dream_sequence(config, argv, progress)
    except BaseException:
        _remove_empty(created)
        raise


def _missing_folders(folder: Path) -> list[Path]:
    """`folder` and those of its parents that do not exist yet, deepest first."""
    missing = []
    folder = folder.absolute()
    for path in (folder, *folder.parents):
        if path.exists() or path.is_symlink():
            break
        missing.append(path)
    return missing


def _remove_empty(folders: list[Path]) -> None:
    """Removes the folders a failed run created, as long as they are still empty: a
    refused run leaves nothing behind, and whatever holds a file stays."""
    for folder in folders:
        try:
            folder.rmdir()
        except FileNotFoundError:
            continue
        except OSError:
            return


@dataclass
class Prepared:
    """What a run fixes before its first frame, all checked: the frames, their size, the
    net, tiling, guide and the parameters that key the manifest."""
    config: DreamConfig
    schedules: schedule.Schedules
    frames: FrameSet
    output: Path
    size: tuple[int, int]
    device: torch.device
    net: CaffeNet
    model: dict
    mean: torch.Tensor
    tile: int | str | None
    budget: int | None
    guide_images: list[Path] | None
    guide_record: dict | None
    params: dict

    @property
    def key(self) -> str:
        return resume.params_key(self.params)


def prepare(config: DreamConfig) -> Prepared:
    """Checks everything a run needs, before any frame is dreamed."""
    check_params(config)
    schedules = schedule.Schedules(config)
    frames = find_frames(config.input, config.image_type, config.start_frame, config.end_frame)
    schedules.check(frames.first, frames.last)
    output = prepare_output(config.output, frames.folder)
    resume.remove_stale_temps(output)
    width, height = check_sizes(frames)
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
    return Prepared(config, schedules, frames, output, size, device, net, model, mean, tile,
                    budget, images, record, params)


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
    guide = None
    if run.guide_images:
        guide = open_guide(run.net, run.guide_images, run.mean, run.device, run.schedules,
                           run.frames.numbers, run.config.end_layers)
    return FrameDreamer(run.config, net or run.net, run.frames, run.size, run.schedules,
                        seed, run.mean, guide, run.device, reporter, run.tile, run.budget)


def flow_cache(frames: FrameSet, output: Path) -> FlowCache:
    """Beside the frames, or in the output's .dreamer/ where the frames' folder is
    read-only."""
    if os.access(frames.folder, os.W_OK):
        return FlowCache.next_to(frames.folder)
    return FlowCache(output / resume.STATE_DIR / "flow")


def _dream_sequence(config: DreamConfig, argv: list[str] | None,
                    progress: Progress | None) -> RunResult:
    run = prepare(config)
    frames, output, size = run.frames, run.output, run.size
    manifest = Manifest(output)
    plan = resume.plan_run(manifest, frames, output, run.params, config.seed,
                           lambda: secrets.randbelow(2**31), config.overwrite)
    progress = progress or Progress(frames.last + 1 - (plan.start or frames.last + 1),
                                    config.verbose)
    description = describe(config, plan.seed, frames, size, config.model_name,
                           run.guide_record)
    if plan.start is None:
        progress.info(f"frames {frames.first}..{frames.last} in {output} are already dreamed "
                      "with these parameters; nothing to do")
        return RunResult(frames, output, plan.seed, description)
    autotune.adopt(manifest.kernel_choices())
    runner = CompiledNet(run.net) if config.compile else run.net
    # (the guide is checked here: a refused one is the only line printed)
    dreamer = open_dreamer(run, plan.seed, OctaveReporter(progress, config.verbose,
                                                          output / "previews"), runner)
    if plan.done_before:
        progress.info(f"resuming at frame {plan.start}: frames {frames.first}..{plan.start - 1}"
                      f" are already done (seed {plan.seed})")
    elif plan.seed_source == "drawn":
        progress.info(f"seed {plan.seed} (repeat this run exactly with --seed {plan.seed})")
    key = run.key
    dream = {"params": run.params, "key": key, "seed": plan.seed,
             "schedules": run.schedules.scheduled(), "guide": run.guide_record}
    record = run_record(config, plan.seed, frames, size, run.model, dream, str(run.device),
                        argv)
    try:
        manifest.start_run({**record, "resumed_at": plan.start})
    except BaseException:
        dreamer.close()
        raise
    writer = FrameWriter(output, frames, manifest, key, plan.seed, plan.start, progress)
    state = _carried_state(plan, frames, output, size, run.device, progress)
    k = plan.start
    try:
        if config.flow:
            dreamer.start_flows(plan.start, flow_cache(frames, output))
        for k in range(plan.start, frames.last + 1):
            state, frame, info = dreamer.dream(k, state)
            writer.save(k, frame, info)
        k += 1
        writer.flush()
    except KeyboardInterrupt:
        k = writer.finish(k)
        _close_run(manifest, f"interrupted at frame {k}")
        raise Interrupted(f"interrupted during frame {k}; {_done_text(frames, k, output)}; run "
                          "the same command again to continue from there") from None
    except OSError as e:
        k = min(getattr(e, "frame", k), writer.finish(k))
        _close_run(manifest, f"failed at frame {k}: {e.strerror or e}")
        raise DreamerError(f"cannot write frame {k} ({e.strerror or e}); "
                           f"{_done_text(frames, k, output)}; free disk space or fix "
                           "permissions, then run the same command again") from None
    except DreamerError as e:  # found only at frame k (an expression, a guide frame)
        k = writer.finish(k)
        _close_run(manifest, f"failed at frame {k}: {e}")
        raise DreamerError(f"frame {k}: {e}; {_done_text(frames, k, output)}; fix that, "
                           "then run the same command again") from None
    finally:
        writer.close()
        dreamer.close()

    manifest.finish_run(description)
    return RunResult(frames, output, plan.seed, description)
