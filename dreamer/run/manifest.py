"""The record a run leaves next to its frames, and the paragraph users publish with
their video ("the parameters used")."""
from __future__ import annotations

import json
import os
import platform
import sys
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import PIL
import torch

import dreamer
from dreamer.caffe import autotune
from dreamer.values.keyframes import Keyframes
from dreamer.dream.schedule import Schedules
from dreamer.errors import DreamerError
from dreamer.video.frames import write_text
from dreamer.caffe.models import sha1_file

MANIFEST_NAME = "dream_manifest.json"
JOURNAL_NAME = "dream_manifest.journal"


def versions() -> dict:
    return {"dreamer": dreamer.__version__, "python": platform.python_version(),
            "torch": torch.__version__, "numpy": np.__version__, "pillow": PIL.__version__}


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class Manifest:
    """`dream_manifest.json`: a list of runs and, per frame, which run made it and how.

    Runs over other ranges of the same folder add to it, so chained batches stay
    documented frame by frame. Frames are recorded in an append-only journal beside it
    (one JSON line each, synced), folded into the manifest when a run starts and ends:
    rewriting the whole manifest after every frame of a long film would cost more than
    the frames. A line cut short by a crash is ignored.
    """

    def __init__(self, folder: Path):
        self.path = Path(folder) / MANIFEST_NAME
        self.journal = Path(folder) / JOURNAL_NAME
        self.data = {"tool": "DeepDreamVideo", "runs": [], "frames": {}}
        if self.path.exists():
            try:
                self.data = json.loads(self.path.read_text(encoding="utf-8"))
                self.data["runs"], self.data["frames"]  # noqa: B018 - shape check
            except (ValueError, KeyError, TypeError):
                raise DreamerError(f"{self.path} is not a DeepDreamVideo manifest; move it "
                                   "away or choose another -o") from None
        self._read_journal()
        self.run_index = -1

    def _read_journal(self) -> None:
        if not self.journal.exists():
            return
        for line in self.journal.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                entry = json.loads(line)
                self.data["frames"][f"{int(entry.pop('frame')):08d}"] = entry
            except (ValueError, KeyError, TypeError, AttributeError):
                continue

    @property
    def frames(self) -> dict[int, dict]:
        return {int(k): v for k, v in self.data["frames"].items()}

    def kernel_choices(self) -> dict[str, str]:
        """Which of the compiled CPU kernels and PyTorch's ops the recorded frames used,
        per layer, shape and direction (dreamer/caffe/autotune.py); later frames win."""
        choices: dict[str, str] = {}
        for _, record in sorted(self.frames.items()):
            kernels = record.get("kernels")
            if isinstance(kernels, dict):
                choices.update(kernels)
        return choices

    def run(self, index: int) -> dict:
        return self.data["runs"][index]

    def start_run(self, run: dict) -> None:
        self.data["runs"].append({**run, "started": now(), "finished": None})
        self.run_index = len(self.data["runs"]) - 1
        self.save()

    def record_frame(self, k: int, **info) -> None:
        """Appends frame k to the journal and syncs it before the frame is renamed into
        place, so every frame on disk is documented."""
        entry = {"run": self.run_index, **info}
        self.data["frames"][f"{k:08d}"] = entry
        with open(self.journal, "a", encoding="utf-8") as f:
            f.write(json.dumps({"frame": k, **entry}) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def finish_run(self, description: str, status: str = "complete") -> None:
        run = self.data["runs"][self.run_index]
        run.update(finished=now(), status=status, description=description)
        self.save()

    def save(self) -> None:
        self.data["frames"] = dict(sorted(self.data["frames"].items()))
        write_text(json.dumps(self.data, indent=1) + "\n", self.path)
        self.journal.unlink(missing_ok=True)  # all of it is in the manifest now


def model_record(model_files: dict) -> dict:
    return {role: {"path": str(p), "sha1": sha1_file(p)} for role, p in model_files.items()}


def run_record(config, seed: int, frames, size, model: dict, dream: dict, device: str,
               argv: list[str] | None = None) -> dict:
    params = config.to_dict()
    params.update(seed=seed, end_layers=list(config.end_layers))
    return {
        "command": argv if argv is not None else sys.argv,
        "parameters": params,
        "dream": dream,
        "model": model,
        "versions": versions(),
        "device": device,
        "kernels": autotune.setup() if device == "cpu" else None,
        "frames": {"first": frames.first, "last": frames.last, "image_type": frames.image_type,
                   "width": size[0], "height": size[1]},
    }


def _layers_text(config) -> str:
    keys = config.layer_schedule
    if keys is not None:
        return f"layers by keyframes {keys.text()}"
    layers = config.end_layers
    if len(layers) == 1:
        return f"layer {layers[0]}"
    return "layers " + " → ".join(layers) + " (one per frame, repeating)"


ARROWS_MOST = 12  # keys of a schedule shown as 'A→B→C' besides their text


def _keys_text(keys: Keyframes) -> str:
    """A fixed value as itself, a schedule of a few numbers as 'A→B→C (keyframes ...)', a
    longer one or one with expressions of t as 'by keyframes ...'. Each key is evaluated
    once at most, at its own frame."""
    if keys.constant:
        return f"{keys.at(1):g}"
    if not 1 < len(keys.frames) <= ARROWS_MOST or any(v.uses_t for v in keys.values):
        return f"by keyframes {keys.text()}"
    return "→".join(f"{keys.at(k):g}" for k in keys.frames) + f" (keyframes {keys.text()})"


def _number(schedules, name: str) -> str:
    return _keys_text(schedules.numbers[name])


def _count(schedules, name: str, noun: str) -> str:
    """'4 octaves', '1 iteration'; a schedule as 'octaves 4→6 (keyframes ...)'."""
    keys = schedules.numbers[name]
    if keys.constant:
        n = keys.at(1)
        return f"{n} {noun}{'' if n == 1 else 's'}"
    return f"{noun}s {_keys_text(keys)}"


def _blend_text(schedules) -> str:
    words = {"loop": "blend looping 0.5→1.0→0.5 over 10 frames",
             "random": "blend drawn per frame from 0.5–1.0"}
    blend = schedules.blend
    if isinstance(blend, str):
        return words[blend]
    value = _keys_text(blend) if isinstance(blend, Keyframes) else f"{blend:g}"
    return f"blend {value} (weight of each new frame)"


def _guide_text(config, guide: dict | None, frames) -> str:
    name = Path(config.guide_image).name
    if not guide or guide.get("kind") == "image":
        return f"guided by {name}"
    what = f"the frames of {name}" if guide["kind"] == "folder" else (
        f"the video {name} at {guide['fps']} fps")
    loops = guide["frames"] < frames.last
    return (f"guided by {what}, one per frame" +
            (f", looping every {guide['frames']} frames" if loops else ""))


def describe(config, seed: int, frames, size, model_name: str,
             guide: dict | None = None) -> str:
    """One paragraph, ready to paste under a video."""
    sched = Schedules(config)
    parts = [
        f"Dreamed with DeepDreamVideo (dreamer {dreamer.__version__}, PyTorch "
        f"{torch.__version__}) on frames {frames.first}–{frames.last} at {size[0]}x{size[1]}",
        f"model {model_name}, {_layers_text(config)}",
        f"{_count(sched, 'octave_n', 'octave')} at scale {_number(sched, 'octave_scale')}",
        f"{_count(sched, 'iter_n', 'iteration')}, step size {_number(sched, 'step_size')}, "
        f"jitter {_number(sched, 'jitter')}",
        _blend_text(sched),
    ]
    zoom = sched.numbers["zoom"]
    if not (zoom.constant and zoom.at(1) == 1.0):
        parts.append(f"zoom {_number(sched, 'zoom')} per frame")
    if config.flow:
        what = "dream" if config.flow_carry == "dream" else "dream's residual"
        parts.append(f"the {what} carried along the optical flow (weight "
                     f"{_number(sched, 'flow_blend')}, smoothing {config.flow_smooth:g})")
    if config.guide_image:
        parts.append(_guide_text(config, guide, frames))
    parts.append(f"seed {seed}")
    return "; ".join(parts) + "."
