"""A Ray worker of a distributed stage 2 (run/distributed.py): a process that holds the
net, loaded once, and dreams the pieces of the film it is given, streaming each kept
frame back to the driver, which alone writes files. Plain Python: distributed.py makes
it a Ray actor, so this module imports without Ray."""
from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from dreamer.caffe import autotune
from dreamer.config import DreamConfig
from dreamer.dream import schedule
from dreamer.dream.guides import Guide, open_guide
from dreamer.errors import DreamerError
from dreamer.run import resume, threads
from dreamer.run.device import CompiledNet, pick_device
from dreamer.run.frame import FrameDreamer, to_tensor
from dreamer.run.warmup import Piece
from dreamer.run.writer import EncodedFrame
from dreamer.video.frames import FrameSet


@dataclass(frozen=True)
class WorkerSpec:
    """Everything a worker needs besides the net, fixed and checked by the driver."""
    config: DreamConfig
    frames: FrameSet  # the whole range of the run
    output: Path
    size: tuple[int, int]
    seed: int
    tile: int | str | None
    budget: int | None
    guide_images: list[Path] | None
    kernels: dict[str, str]  # the kernel choices the run's frames made so far
    cpus: int


class DreamWorker:
    def __init__(self, spec: WorkerSpec, net):
        self.spec, config = spec, spec.config
        # Ray shows a worker only the GPU it gave it, as device 0
        self.device = pick_device(None if config.gpu is None else 0)
        threads.configure(self.device, config.precision, config.deterministic,
                          threads=spec.cpus if self.device.type == "cpu" else None)
        self.net = net.to(self.device)
        # --compile: compiled once per worker, kept for all its pieces
        self.runner = CompiledNet(self.net) if config.compile else self.net
        self.mean = torch.tensor(config.mean, dtype=torch.float32, device=self.device)
        self.schedules = schedule.Schedules(config)
        # the same kernel choices as the frames already made, so a resumed run repeats them
        autotune.adopt(spec.kernels)
        self.guide = self._guide() if spec.guide_images else None

    def _guide(self) -> Guide:
        spec = self.spec
        return open_guide(self.net, spec.guide_images, self.mean, self.device, self.schedules,
                          spec.frames.numbers, spec.config.end_layers)

    def ready(self) -> int:
        """The worker's process id, once the net is loaded."""
        return os.getpid()

    def dream(self, piece: Piece):
        """Frames piece.keep..piece.end as (k, encoded frame, manifest entry), after
        dreaming the warm-up frames piece.start..keep-1 and keeping only their carried
        dream. Frames are encoded here, beside the dream, not by the one writer."""
        from dreamer.run.sequence import flow_cache

        spec = self.spec
        dreamer = self._dreamer(piece)
        try:
            state = self._state(piece)
            if spec.config.flow:
                dreamer.start_flows(piece.start, flow_cache(spec.frames, spec.output))
            kernels: dict[str, str] = {}
            for k in range(piece.start, piece.end + 1):
                state, frame, info = dreamer.dream(k, state)
                # the choices a warm-up frame made first are recorded with the first kept one
                kernels.update(info.pop("kernels", {}))
                if k >= piece.keep:
                    if kernels:
                        info["kernels"], kernels = kernels, {}
                    yield k, EncodedFrame.of(frame, spec.frames.image_type), info
        finally:
            dreamer.guides = None  # the worker's, kept for its next piece
            dreamer.close()

    def _dreamer(self, piece: Piece) -> FrameDreamer:
        spec = self.spec
        frames = replace(spec.frames, first=piece.start, last=piece.end)
        budget = spec.budget
        if self.device.type == "cuda" and budget is not None:
            budget = self._gpu_budget()
        return FrameDreamer(spec.config, self.runner, frames, spec.size, self.schedules,
                            spec.seed, self.mean, self.guide, self.device, None, spec.tile,
                            budget)

    def _gpu_budget(self) -> int:
        """The driver measured its own memory: a GPU worker plans tiles on the GPU's."""
        from dreamer.run.sequence import step_budget

        spec = self.spec
        return step_budget(self.net, spec.config, self.schedules, spec.frames, spec.size,
                           spec.size, spec.tile, self.device)

    def _state(self, piece: Piece) -> torch.Tensor | None:
        if piece.state_from is None:
            return None
        spec = self.spec
        frame, why_not = resume.load_state(spec.output, piece.state_from,
                                           spec.frames.image_type, spec.size)
        if frame is None:  # the driver saw it a moment ago: only a racing user removes it
            raise DreamerError(f"the dream of frame {piece.state_from} went missing from "
                               f"{spec.output} during the run ({why_not or 'removed'}); run "
                               "the same command again")
        return to_tensor(frame, self.device)
