"""Stage 2 in this process: the frames from the first one missing to the end of the
range, one after another, each carrying in the dream of the frame before. The driver
(run/sequence.py) plans, writes and reports; this only dreams."""
from __future__ import annotations

from dreamer.caffe import autotune
from dreamer.config import DreamConfig
from dreamer.errors import DreamerError
from dreamer.run import resume
from dreamer.run.device import CompiledNet
from dreamer.run.frame import OctaveReporter, to_tensor
from dreamer.run.prepare import Prepared, flow_cache, open_dreamer, prepare
from dreamer.run.progress import Progress


class SerialEngine:
    """Dreams a range's missing frames in order in this process."""

    lost = ""  # (frames it could not dream: only many workers lose some)

    def __init__(self, config: DreamConfig):
        self.config = config
        self.dreamer = None

    def prepare(self) -> Prepared:
        return prepare(self.config)

    def todo(self, run: Prepared, plan: resume.Plan) -> list[int]:
        """From the first frame not done on: a frame carries in the one before, so every
        frame after a missing one is dreamed again."""
        return [] if plan.start is None else list(range(plan.start, run.frames.last + 1))

    def written_before(self, plan: resume.Plan) -> set[int]:
        """Frames done before whose lossless state the writer may drop: none, as the
        state of the frame before the first joins this range to an earlier one."""
        return set()

    def open(self, run: Prepared, manifest, seed: int, progress: Progress) -> None:
        """Loads what the frames need; a refused guide is the only line printed."""
        autotune.adopt(manifest.kernel_choices())
        self.run, self.manifest = run, manifest
        runner = CompiledNet(run.net) if self.config.compile else run.net
        reporter = OctaveReporter(progress, self.config.verbose, run.output / "previews")
        self.dreamer = open_dreamer(run, seed, reporter, runner)

    def record(self, todo: list[int], progress: Progress) -> dict:
        return {}

    def frames(self, todo: list[int], writer, progress: Progress):
        """(k, frame, manifest entry) for every frame of `todo`, in order."""
        run = self.run
        state = self._carried_state(todo[0], progress)
        if self.config.flow:
            self.dreamer.start_flows(todo[0], flow_cache(run.frames, run.output))
        for k in todo:
            try:
                state, frame, info = self.dreamer.dream(k, state)
            except DreamerError as e:  # found only at frame k (an expression, a guide frame)
                e.frame = k
                raise
            yield k, frame, info

    def _carried_state(self, start: int, progress: Progress):
        """The dream of the frame before the first one, so runs over ranges join
        seamlessly."""
        run = self.run
        if start <= 1:
            return None
        frame, why_not = resume.load_state(run.output, start - 1, run.frames.image_type,
                                           run.size, self.manifest.frames.get(start - 1))
        if why_not:
            progress.info(f"frame {start} starts from the raw frame: {why_not}")
        return None if frame is None else to_tensor(frame, run.device)

    def close(self) -> None:
        if self.dreamer is not None:
            self.dreamer.close()

    def device_name(self, run: Prepared) -> str:
        return str(run.device)
