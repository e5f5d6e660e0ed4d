"""Stage 2's orchestrator: dreams a range of numbered frames, each blended with the
previous dream, and writes frames, manifest and the run's description."""
from __future__ import annotations

import os
import secrets
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from dreamer.caffe import models
from dreamer.dream import objectives, schedule, tiles, transforms
from dreamer.run import resume, threads
from dreamer.caffe import autotune
from dreamer.dream.carry import CARRY_MODES, Carried, carry, settle
from dreamer.dream.flow import FlowCache, FlowPrefetcher
from dreamer.caffe.layers import InnerProduct
from dreamer.caffe.net import CaffeNet, ShapeError, load_net
from dreamer.config import DreamConfig, default
from dreamer.run.device import CompiledNet, pick_device
from dreamer.errors import DreamerError, Interrupted
from dreamer.video.frames import (FrameSet, check_sizes, commit, discard, find_frames, frame_name,
                            prepare_output, preview_size, read_frame, stage_image, write_image)
from dreamer.run.manifest import Manifest, describe, model_record, run_record
from dreamer.caffe.models import sha1_file
from dreamer.run.progress import Progress, Timer
from dreamer.dream.render import deepdream

GUIDE_MAX_SIDE = 224
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
        (config.octave_n >= 1, f"octaves must be at least 1 (got {config.octave_n})"),
        (config.octave_scale >= 1.0, f"octave scale must be at least 1 (got "
                                     f"{config.octave_scale:g}); 1.4 is the classic value"),
        (config.iter_n >= 0, f"iterations must be 0 or more (got {config.iter_n})"),
        (config.jitter >= 0, f"jitter must be 0 or more (got {config.jitter})"),
        (config.step_size > 0, f"step size must be above 0 (got {config.step_size:g})"),
        (config.zoom > 0, f"zoom must be above 0 (got {config.zoom:g}); 1 is off"),
        (config.preview >= 0, f"preview width must be 0 (off) or more (got {config.preview})"),
        (0 <= config.verbose <= 3, f"verbosity must be 0 to 3 (got {config.verbose})"),
        (bool(config.layers), "no layers given; name at least one with -l"),
    ]
    for ok, message in rules:
        if not ok:
            raise DreamerError(message)
    schedule.parse_blend(config.blend)
    parse_tile(config.tile)
    for name, value in (("--flow-blend", config.flow_blend), ("--flow-smooth",
                                                                config.flow_smooth)):
        if not 0 <= value <= 1:
            raise DreamerError(f"{name} must be 0 to 1 (got {value:g})")
    if config.flow_carry not in CARRY_MODES:
        raise DreamerError(f"--flow-carry {config.flow_carry}: use dream or residual")
    _check_flow_options(config)
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


def guide_features(net: CaffeNet, path: str, layers, mean: torch.Tensor,
                   device: torch.device) -> dict[str, torch.Tensor]:
    """The guide's activations, once per end layer for the whole run."""
    from PIL import Image

    if Path(path).is_dir():
        raise DreamerError(f"guide image {path} is a folder; name an image file in it with "
                           "-gi/--guide-image")
    if not Path(path).is_file():
        raise DreamerError(f"guide image {path} not found; check -gi/--guide-image")
    try:
        with Image.open(path) as img:
            img = img.convert("RGB")
            scale = GUIDE_MAX_SIDE / max(img.size)
            if scale < 1:
                size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
                img = img.resize(size, Image.BILINEAR)
            rgb = np.asarray(img, dtype=np.float32)
    except OSError as e:
        raise DreamerError(f"cannot read guide image {path}: {e}; use a png or jpg") from None
    x = transforms.preprocess(torch.from_numpy(rgb).permute(2, 0, 1).to(device), mean)
    features = {}
    with torch.no_grad():
        for layer in dict.fromkeys(layers):
            try:
                net.validate(x.shape[1], x.shape[2], end=layer)
            except ValueError:
                raise DreamerError(f"guide image {path} ({rgb.shape[1]}x{rgb.shape[0]}) is "
                                   f"too small for layer {layer}; use a larger guide") from None
            features[layer] = net(x[None], end=layer)[0].clone()
    return features


def _to_tensor(frame: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(frame).to(device).permute(2, 0, 1).float()


def _to_uint8(x: torch.Tensor) -> np.ndarray:
    return x.clamp(0, 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()


class _OctaveReporter:
    def __init__(self, progress: Progress, config: DreamConfig, preview_dir: Path):
        self.progress, self.config, self.preview_dir = progress, config, preview_dir
        self.k, self.timer = 0, Timer()

    def start(self, k: int) -> None:
        self.k, self.timer = k, Timer()

    def __call__(self, i: int, rgb: torch.Tensor) -> None:
        h, w = rgb.shape[-2:]
        self.progress.info(f"  frame {self.k:08d} octave {i + 1}/{self.config.octave_n} "
                           f"{w}x{h} {self.timer.lap():.2f} s", level=2)
        if self.config.verbose >= 3:
            self.preview_dir.mkdir(exist_ok=True)
            write_image(_to_uint8(rgb), self.preview_dir / f"{self.k:08d}_octave{i + 1}.jpg")


@dataclass
class _Run:
    """Everything one run fixes before its first frame."""
    config: DreamConfig
    net: CaffeNet  # or a CompiledNet of it (--compile)
    frames: FrameSet
    output: Path
    size: tuple[int, int]
    layers: tuple[str, ...]
    blend: str | float
    plan: resume.Plan
    key: str
    mean: torch.Tensor
    guides: dict | None
    device: torch.device
    manifest: Manifest
    progress: Progress
    reporter: _OctaveReporter
    tile: int | str | None = None
    budget: int | None = None
    writer: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(1))
    pending: tuple[int, Future] | None = None
    reader: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(1))
    next_raw: tuple[int, Future] | None = None
    flows: FlowPrefetcher | None = None  # with --flow
    raw_prev: torch.Tensor | None = None  # raw frame k-1, for --flow-carry residual

    def dream_frame(self, k: int, state: torch.Tensor | None) -> torch.Tensor:
        """Dreams frame k on top of the previous dream `state`; returns the new state."""
        config, timer, seed = self.config, Timer(), self.plan.seed
        layer = schedule.layer_for_frame(self.layers, k)
        raw = _to_tensor(self._read(k), self.device)
        b = None if state is None else schedule.blend_for_frame(self.blend, k, seed)
        carried = None
        if state is None:
            img = raw
        elif self.flows is not None:
            carried = self._carry_by_flow(k, state, raw)
            img = carried.img
        else:
            img = transforms.blend(transforms.zoom(state, config.zoom), raw, b)
        self.raw_prev = raw
        objective = objectives.guide(self.guides[layer]) if self.guides else objectives.l2
        self.reporter.start(k)
        dreamed = deepdream(self.net, img, layer,
                            schedule.jitter_offsets(seed, k, config.jitter), self.mean,
                            iter_n=config.iter_n, octave_n=config.octave_n,
                            octave_scale=config.octave_scale, step_size=config.step_size,
                            objective=objective, on_octave=self.reporter, tile=self.tile,
                            budget=self.budget)
        if carried is not None:
            dreamed = settle(dreamed, carried, config.flow_smooth)
        state = dreamed.clamp(0, 255).round()  # what the saved uint8 frame holds
        frame = state.to(torch.uint8).permute(1, 2, 0).cpu().numpy()
        info = dict(layer=layer, blend=b, seconds=round(timer.lap(), 3))
        if carried is not None:
            info["flow"] = carried.info
        # The kernel choices this frame used first: a resumed run adopts them all
        kernels = autotune.take_used()
        if kernels:
            info["kernels"] = kernels
        self._save_in_background(k, frame, info)
        return state

    def _carry_by_flow(self, k: int, state: torch.Tensor, raw: torch.Tensor) -> Carried:
        """The previous dream moved along the film into frame k (carry.py)."""
        config = self.config
        if self.raw_prev is None and config.flow_carry == "residual":  # a range's first
            self.raw_prev = _to_tensor(read_frame(self.frames.path(k - 1), self.size),
                                       self.device)
        return carry(state, raw, self.raw_prev, self.flows.flows(k), config.flow_blend,
                     config.zoom, config.flow_carry)

    def _read(self, k: int) -> np.ndarray:
        """Frame k, decoded while frame k-1 dreamed; starts decoding frame k+1."""
        if self.next_raw is not None and self.next_raw[0] == k:
            frame = self.next_raw[1].result()  # a read error surfaces here, as it would
        else:
            frame = read_frame(self.frames.path(k), self.size)
        self.next_raw = None
        if k + 1 <= self.frames.last:
            self.next_raw = (k + 1, self.reader.submit(read_frame, self.frames.path(k + 1),
                                                       self.size))
        return frame

    def _save_in_background(self, k: int, frame: np.ndarray, info: dict) -> None:
        """Encoding and syncing a frame overlaps the next frame's dream; one write is in
        flight at most, and its errors surface at the next frame."""
        self.flush()
        self.pending = (k, self.writer.submit(self._save, k, frame, info))

    def flush(self) -> None:
        """Waits for the write in flight; its OSError names the frame (`.frame`)."""
        if self.pending is None:
            return
        k, future = self.pending
        try:
            future.result()
        except OSError as e:
            self.pending = None
            e.frame = k
            raise
        # cleared only once the write is over: a Ctrl-C while waiting keeps it pending
        self.pending = None

    def _save(self, k: int, frame: np.ndarray, info: dict) -> None:
        """Frame staged, lossless state kept, manifest synced, then the frame renamed in:
        whatever moment a crash hits, what is on disk under a frame's name is complete
        and documented, and the state the next frame needs is there."""
        path = self.output / frame_name(k, self.frames.image_type)
        tmp = stage_image(frame, path)
        try:
            resume.save_state(self.output, k, frame, self.frames.image_type)
            self.manifest.record_frame(k, key=self.key, seed=self.plan.seed, **info)
            commit(tmp, path)
        except BaseException:
            discard(tmp)
            raise
        if k - 1 >= self.plan.start:
            resume.drop_state(self.output, k - 1)
        self.progress.frame_done(k, info["seconds"])


def _flow_prefetcher(frames: FrameSet, output: Path, size, start: int) -> FlowPrefetcher:
    """Flows of the coming frame pairs, computed ahead in a thread, cached beside the
    frames (or in the output's .dreamer/ where the frames' folder is read-only), so that
    re-runs and resumed runs reuse them bit for bit."""
    cache = FlowCache.next_to(frames.folder)
    if not os.access(frames.folder, os.W_OK):
        cache = FlowCache(output / resume.STATE_DIR / "flow")
    return FlowPrefetcher(lambda k: read_frame(frames.path(k), size), max(start - 1, 1),
                          frames.last, cache)


def _carried_state(plan: resume.Plan, frames: FrameSet, output: Path, size, device,
                   progress: Progress) -> torch.Tensor | None:
    """The dream of the frame before the first one, so runs over ranges join seamlessly."""
    if plan.start <= 1:
        return None
    frame, why_not = resume.load_state(output, plan.start - 1, frames.image_type, size)
    if why_not:
        progress.info(f"frame {plan.start} starts from the raw frame: {why_not}")
    return None if frame is None else _to_tensor(frame, device)


def _finish_writes(run: _Run, k: int) -> int:
    """Lets the write in flight finish, so the manifest is never closed while the writer
    still records a frame; returns the first frame not on disk."""
    first_missing = k
    try:
        run.flush()
    except OSError as e:
        first_missing = e.frame
    except KeyboardInterrupt:
        pass  # a second Ctrl-C: the write still finishes below
    run.writer.shutdown(wait=True)
    if run.pending is not None:
        written, future = run.pending
        if future.exception() is not None:
            first_missing = written
    return first_missing


def _done_text(frames: FrameSet, k: int, output: Path) -> str:
    if k > frames.first:
        return f"frames {frames.first}..{k - 1} are complete in {output}"
    return "no frame was finished"


def _close_run(manifest: Manifest, status: str) -> None:
    try:
        manifest.finish_run("", status=status)
    except OSError:
        pass  # the disk may be what failed; the synced journal still has every frame


def dream_sequence(config: DreamConfig, argv: list[str] | None = None,
                   progress: Progress | None = None) -> RunResult:
    created = _missing_folders(Path(config.output))
    try:
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
        except OSError:
            return


def _dream_sequence(config: DreamConfig, argv: list[str] | None,
                    progress: Progress | None) -> RunResult:
    check_params(config)
    blend = schedule.parse_blend(config.blend)
    frames = find_frames(config.input, config.image_type, config.start_frame, config.end_frame)
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
    layers = config.end_layers
    for layer in layers:
        net.check_end(layer)
    check_octaves(net, layers, size, config, (width, height))
    tile = parse_tile(config.tile)
    check_tiling(net, layers, tile)
    # Fixed for the whole run, so tiling never depends on what else uses memory meanwhile.
    # only the layers this range's frames use: 2 frames of customloop never reach 5b
    used = [schedule.layer_for_frame(layers, k)
            for k in range(frames.first, min(frames.last, frames.first + len(layers) - 1) + 1)]
    budget = check_memory(net, used, size, (width, height), config, tile,
                          tiles.memory_budget(device), device)
    budget = budget if tile == "auto" else None
    mean = torch.tensor(config.mean, dtype=torch.float32, device=device)
    guides = (guide_features(net, config.guide_image, layers, mean, device)
              if config.guide_image else None)

    model = model_record(files)
    guide_sha1 = sha1_file(Path(config.guide_image)) if config.guide_image else None
    params = resume.dream_params(config, model, guide_sha1, frames.image_type)
    manifest = Manifest(output)
    plan = resume.plan_run(manifest, frames, output, params, config.seed,
                           lambda: secrets.randbelow(2**31), config.overwrite)
    progress = progress or Progress(frames.last + 1 - (plan.start or frames.last + 1),
                                    config.verbose)
    if plan.start is None:
        progress.info(f"frames {frames.first}..{frames.last} in {output} are already dreamed "
                      "with these parameters; nothing to do")
        return RunResult(frames, output, plan.seed,
                         describe(config, plan.seed, frames, size, config.model_name))
    if plan.done_before:
        progress.info(f"resuming at frame {plan.start}: frames {frames.first}..{plan.start - 1}"
                      f" are already done (seed {plan.seed})")
    elif plan.seed_source == "drawn":
        progress.info(f"seed {plan.seed} (repeat this run exactly with --seed {plan.seed})")

    autotune.adopt(manifest.kernel_choices())
    key = resume.params_key(params)
    record = run_record(config, plan.seed, frames, size, model,
                        {"params": params, "key": key, "seed": plan.seed}, str(device), argv)
    manifest.start_run({**record, "resumed_at": plan.start})
    runner = CompiledNet(net) if config.compile else net
    run = _Run(config, runner, frames, output, size, layers, blend, plan, key, mean, guides,
               device, manifest, progress, _OctaveReporter(progress, config, output / "previews"),
               tile, budget)
    state = _carried_state(plan, frames, output, size, device, progress)
    if config.flow:
        run.flows = _flow_prefetcher(frames, output, size, plan.start)
    k = plan.start
    try:
        for k in range(plan.start, frames.last + 1):
            state = run.dream_frame(k, state)
        k += 1
        run.flush()
    except KeyboardInterrupt:
        k = _finish_writes(run, k)
        _close_run(manifest, f"interrupted at frame {k}")
        raise Interrupted(f"interrupted during frame {k}; {_done_text(frames, k, output)}; run "
                          "the same command again to continue from there") from None
    except OSError as e:
        k = min(getattr(e, "frame", k), _finish_writes(run, k))
        _close_run(manifest, f"failed at frame {k}: {e.strerror or e}")
        raise DreamerError(f"cannot write frame {k} ({e.strerror or e}); "
                           f"{_done_text(frames, k, output)}; free disk space or fix "
                           "permissions, then run the same command again") from None
    finally:
        run.writer.shutdown(wait=True)
        run.reader.shutdown(wait=True, cancel_futures=True)
        if run.flows is not None:
            run.flows.close()

    description = describe(config, plan.seed, frames, size, config.model_name)
    manifest.finish_run(description)
    return RunResult(frames, output, plan.seed, description)
