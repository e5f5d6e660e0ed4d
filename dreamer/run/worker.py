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
from dreamer.errors import DreamerError
from dreamer.run import resume, threads
from dreamer.run.device import CompiledNet, pick_device
from dreamer.run.frame import FrameDreamer, Setup, guide_of, to_tensor
from dreamer.run.prepare import flow_cache, step_budget
from dreamer.run.warmup import Piece
from dreamer.run.writer import EncodedFrame


@dataclass(frozen=True)
class WorkerSpec:
    """Everything a worker needs besides the net, fixed and checked by the driver."""
    setup: Setup  # its frames: the whole range of the run
    output: Path
    seed: int
    guide_images: list[Path] | None
    kernels: dict[str, str]  # the kernel choices the run's frames made so far
    cpus: int


class DreamWorker:
    def __init__(self, spec: WorkerSpec, net):
        config = spec.setup.config
        # Ray shows a worker only the GPU it gave it, as device 0
        device = pick_device(None if config.gpu is None else 0)
        threads.configure(device, config.precision, config.deterministic,
                          threads=spec.cpus if device.type == "cpu" else None)
        self.spec, self.net = spec, net.to(device)
        self.setup = replace(spec.setup, device=device, mean=spec.setup.mean.to(device))
        # --compile: compiled once per worker, kept for all its pieces
        self.runner = CompiledNet(self.net) if config.compile else self.net
        # the same kernel choices as the frames already made, so a resumed run repeats them
        autotune.adopt(spec.kernels)
        self.guide = guide_of(self.setup, self.net, spec.guide_images)

    def ready(self) -> int:
        """The worker's process id, once the net is loaded."""
        return os.getpid()

    def dream(self, piece: Piece):
        """Frames piece.keep..piece.end as (k, encoded frame, manifest entry), after
        dreaming the warm-up frames piece.start..keep-1 and keeping only their carried
        dream. Frames are encoded here, beside the dream, not by the one writer."""
        setup, frames = self.setup, self.setup.frames
        dreamer = self._dreamer(piece)
        try:
            state = self._state(piece)
            if setup.config.flow:
                dreamer.start_flows(piece.start, flow_cache(frames, self.spec.output))
            kernels: dict[str, str] = {}
            for k in range(piece.start, piece.end + 1):
                state, frame, info = dreamer.dream(k, state)
                # the choices a warm-up frame made first are recorded with the first kept one
                kernels.update(info.pop("kernels", {}))
                if k >= piece.keep:
                    if kernels:
                        info["kernels"], kernels = kernels, {}
                    yield k, EncodedFrame.of(frame, frames.image_type), info
        finally:
            dreamer.guides = None  # the worker's, kept for its next piece
            dreamer.close()

    def _dreamer(self, piece: Piece) -> FrameDreamer:
        setup = self.setup
        budget = setup.budget
        if setup.device.type == "cuda" and budget is not None:
            # the driver measured its own memory: a GPU worker plans tiles on the GPU's
            budget = step_budget(self.net, setup.config, setup.schedules, setup.frames,
                                 setup.size, setup.size, setup.tile, setup.device)
        frames = replace(setup.frames, first=piece.start, last=piece.end)
        return FrameDreamer(replace(setup, frames=frames, budget=budget), self.runner,
                            self.spec.seed, self.guide)

    def _state(self, piece: Piece) -> torch.Tensor | None:
        if piece.state_from is None:
            return None
        setup, output = self.setup, self.spec.output
        frame, why_not = resume.load_state(output, piece.state_from, setup.frames.image_type,
                                           setup.size)
        if frame is None:  # the driver saw it a moment ago: only a racing user removes it
            raise DreamerError(f"the dream of frame {piece.state_from} went missing from "
                               f"{output} during the run ({why_not or 'removed'}); run "
                               "the same command again")
        return to_tensor(frame, setup.device)
