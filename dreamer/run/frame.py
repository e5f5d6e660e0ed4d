"""Dreaming one frame after another, on top of the previous dream: everything of stage 2
but the files it writes. The driver (run/sequence.py) writes what this returns; a
worker of a distributed run can use it alone, in its own process."""
from __future__ import annotations

import threading
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from dreamer.caffe import autotune
from dreamer.config import DreamConfig
from dreamer.dream import objectives, schedule, transforms
from dreamer.dream.carry import Carried, carry, settle
from dreamer.dream.flow import FlowCache, FlowPrefetcher
from dreamer.dream.guides import Guide, open_guide
from dreamer.dream.render import deepdream
from dreamer.run.progress import Progress, Timer
from dreamer.video.frames import FrameSet, read_frame, write_image


def to_tensor(frame: np.ndarray, device: torch.device) -> torch.Tensor:
    # (a float copy first: the shared raw frames are read-only, and PyTorch warns about
    # wrapping those; the values and the (3, H, W) view over HWC memory are as before)
    return torch.from_numpy(frame.astype(np.float32)).to(device).permute(2, 0, 1)


def to_uint8(x: torch.Tensor) -> np.ndarray:
    return x.clamp(0, 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()


class RawFrames:
    """Raw frames decoded once for all who need them: the dream (frame k, read ahead while
    k-1 dreams) and, with --flow, the flow thread (frames k-1 and k, some frames ahead).
    Each frame is decoded by whichever asks first; the others wait for that decode. The
    last `keep` frames are held, read-only (no reader may change another's frame)."""

    def __init__(self, frames: FrameSet, size: tuple[int, int] | None, keep: int = 8):
        self.frames, self.size, self.keep = frames, size, keep
        self._lock = threading.Lock()
        self._held: OrderedDict[int, Future] = OrderedDict()
        self.decoded = 0  # how many decodes there were (a test counts them)

    def __call__(self, k: int) -> np.ndarray:
        with self._lock:
            future = self._held.get(k)
            mine = future is None
            if mine:
                future = self._held[k] = Future()
                while len(self._held) > self.keep:
                    self._held.popitem(last=False)  # (a waiter keeps its own reference)
            else:
                self._held.move_to_end(k)
        if mine:
            try:
                frame = read_frame(self.frames.path(k), self.size)
            except BaseException as e:
                with self._lock:
                    self._held.pop(k, None)  # the next asker tries again
                future.set_exception(e)
                raise
            frame.flags.writeable = False
            self.decoded += 1
            future.set_result(frame)
        return future.result()


class OctaveReporter:
    """-v 2 lines per octave, -v 3 also a preview image of each."""

    def __init__(self, progress: Progress, verbose: int, preview_dir: Path):
        self.progress, self.verbose, self.preview_dir = progress, verbose, preview_dir
        self.k, self.octave_n, self.timer = 0, 0, Timer()

    def start(self, k: int, octave_n: int) -> None:
        self.k, self.octave_n, self.timer = k, octave_n, Timer()

    def __call__(self, i: int, rgb: torch.Tensor) -> None:
        h, w = rgb.shape[-2:]
        self.progress.info(f"  frame {self.k:08d} octave {i + 1}/{self.octave_n} "
                           f"{w}x{h} {self.timer.lap():.2f} s", level=2)
        if self.verbose >= 3:
            self.preview_dir.mkdir(exist_ok=True)
            write_image(to_uint8(rgb), self.preview_dir / f"{self.k:08d}_octave{i + 1}.jpg")


@dataclass(frozen=True)
class Setup:
    """What every frame of a run is dreamed with, fixed and checked before the first
    (run/prepare.py): the same in one process and in each Ray worker."""
    config: DreamConfig
    frames: FrameSet
    size: tuple[int, int]
    schedules: schedule.Schedules
    mean: torch.Tensor
    device: torch.device
    tile: int | str | None = None
    budget: int | None = None


def guide_of(setup: Setup, net, images: list[Path] | None) -> Guide | None:
    """The guide's features for the run's frames (None: no guide)."""
    if not images:
        return None
    return open_guide(net, images, setup.mean, setup.device, setup.schedules,
                      setup.frames.numbers, setup.config.end_layers)


@dataclass
class FrameDreamer:
    """Dreams frame k from raw frame k and the previous dream. Frames are pure functions
    of (parameters, seed, k, previous dream), so any process can dream any range."""
    setup: "Setup"
    net: object  # a CaffeNet, or a CompiledNet of it (--compile)
    seed: int
    guides: Guide | None
    reporter: OctaveReporter | None = None
    flows: FlowPrefetcher | None = None  # with --flow: see start_flows
    reader: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(1))
    next_raw: tuple[int, Future] | None = None
    raw_frames: RawFrames | None = None  # made at the first read
    raw_prev: torch.Tensor | None = None  # raw frame k-1, for --flow-carry residual

    def dream(self, k: int, state: torch.Tensor | None
              ) -> tuple[torch.Tensor, np.ndarray, dict]:
        """Dreams frame k on top of the previous dream `state` (None: start from the raw
        frame); returns the new state, the frame (uint8 HxWx3) and its manifest entry."""
        timer = Timer()
        run = self.setup
        values = run.schedules.at(k, self.seed, carried=state is not None)
        raw = to_tensor(self._read(k), run.device)
        carried = None
        if state is None:
            img = raw
        elif self.flows is not None:
            carried = self._carry_by_flow(k, state, raw, values)
            img = carried.img
        else:
            img = transforms.blend(transforms.zoom(state, values.zoom), raw, values.blend)
        self.raw_prev = raw
        objective = (objectives.guide(self.guides.features(k, values.layer)) if self.guides
                     else objectives.l2)
        if self.reporter is not None:
            self.reporter.start(k, values.octave_n)
        dreamed = deepdream(self.net, img, values.layer,
                            schedule.jitter_offsets(self.seed, k, values.jitter), run.mean,
                            iter_n=values.iter_n, octave_n=values.octave_n,
                            octave_scale=values.octave_scale, step_size=values.step_size,
                            objective=objective, on_octave=self.reporter, tile=run.tile,
                            budget=run.budget)
        if carried is not None:
            dreamed = settle(dreamed, carried, run.config.flow_smooth)
        state = dreamed.clamp(0, 255).round()  # what the saved uint8 frame holds
        frame = state.to(torch.uint8).permute(1, 2, 0).cpu().numpy()
        return state, frame, self._info(k, values, carried, timer)

    def _info(self, k: int, values: schedule.FrameValues, carried: Carried | None,
              timer: Timer) -> dict:
        info = dict(layer=values.layer, blend=values.blend, seconds=round(timer.lap(), 3))
        scheduled = self.setup.schedules.values_record(values)
        if scheduled:
            info["values"] = scheduled
        if self.guides is not None and self.guides.count > 1:
            info["guide_frame"] = self.guides.index(k) + 1
        if carried is not None:
            info["flow"] = carried.info
        # The kernel choices this frame used first: a resumed run adopts them all
        kernels = autotune.take_used()
        if kernels:
            info["kernels"] = kernels
        return info

    def start_flows(self, first: int, cache: FlowCache) -> None:
        """--flow: flows of the coming frame pairs from `first` on, computed ahead in a
        thread and cached, so that re-runs and resumed runs reuse them bit for bit."""
        self.flows = FlowPrefetcher(self._raw_frames(), max(first - 1, 1),
                                    self.setup.frames.last, cache)

    def _carry_by_flow(self, k: int, state: torch.Tensor, raw: torch.Tensor,
                       values: schedule.FrameValues) -> Carried:
        """The previous dream moved along the film into frame k (carry.py)."""
        run = self.setup
        config = run.config
        if self.raw_prev is None and config.flow_carry == "residual":  # a range's first
            self.raw_prev = to_tensor(self._raw_frames()(k - 1), run.device)
        return carry(state, raw, self.raw_prev, self.flows.flows(k), values.flow_blend,
                     values.zoom, config.flow_carry, values.scene_cut)

    def _raw_frames(self) -> RawFrames:
        if self.raw_frames is None:
            self.raw_frames = RawFrames(self.setup.frames, self.setup.size)
        return self.raw_frames

    def _read(self, k: int) -> np.ndarray:
        """Frame k, decoded while frame k-1 dreamed; starts decoding frame k+1."""
        raw = self._raw_frames()
        if self.next_raw is not None and self.next_raw[0] == k:
            frame = self.next_raw[1].result()  # a read error surfaces here, as it would
        else:
            frame = raw(k)
        self.next_raw = None
        if k + 1 <= self.setup.frames.last:
            self.next_raw = (k + 1, self.reader.submit(raw, k + 1))
        return frame

    def close(self) -> None:
        self.reader.shutdown(wait=True, cancel_futures=True)
        if self.flows is not None:
            self.flows.close()
        if self.guides is not None:
            self.guides.close()
