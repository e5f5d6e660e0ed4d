"""The studio's work: one queue per device (one dream at a time on each, the rest wait in
sight), and its jobs: a preview of one frame, a stretch of frames, a layer sheet, a render.

A preview is stage 2's frame k exactly: the same preparation as dreamer.run.prepare (frame
size at the width, the net's checks, the tiling budget, the guide), the same FrameDreamer
with the same seed, from the raw frame as stage 2 starts a range at `-sf k`. So the saved
TOML run with `-p WIDTH -sf k -ef k` writes the very bytes the page showed.
"""
from __future__ import annotations

import io
import itertools
import json
import os
import queue
import secrets
import threading
import time
import traceback
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image

from dreamer.caffe import autotune
from dreamer.caffe.net import load_net
from dreamer.caffe.registry import MODELS
from dreamer.config import DreamConfig
from dreamer.dream import flicker, schedule
from dreamer.dream.sheet import LABEL, dream_sheet, layer_rows, spread
from dreamer.dream.transforms import octave_sizes
from dreamer.errors import DreamerError, Interrupted
from dreamer.run import threads
from dreamer.run.device import CompiledNet, pick_device
from dreamer.run.fit import check_octaves, check_tiling
from dreamer.run.frame import FrameDreamer, Setup, guide_of, to_uint8
from dreamer.run.guide_source import guide_images
from dreamer.run.prepare import flow_cache, model_files, step_budget
from dreamer.run.progress import Progress
from dreamer.run.sequence import dream_sequence
from dreamer.studio.film import Film
from dreamer.values.tile import parse_tile
from dreamer.video.assemble import assemble_video
from dreamer.video.frames import common_size, encode_image, preview_size, read_frame

KEEP_JOBS = 40  # finished jobs the page still lists


class Cancelled(Exception):
    """The page cancelled a job."""


@dataclass
class Job:
    id: str
    kind: str                      # preview | stretch | sheet | render
    title: str
    device: str
    body: Callable[["Job"], dict] = field(repr=False)
    state: str = "queued"          # queued | running | done | failed | cancelled | stopped
    message: str = ""
    progress: dict = field(default_factory=dict)
    result: dict | None = None
    octaves: list[dict] = field(default_factory=list)   # JPEGs of a preview's octaves
    created: float = field(default_factory=time.monotonic)
    started: float | None = None
    finished: float | None = None
    cancel: threading.Event = field(default_factory=threading.Event, repr=False)

    def check(self) -> None:
        if self.cancel.is_set():
            raise Cancelled()

    def public(self, position: int | None = None) -> dict:
        return {"id": self.id, "kind": self.kind, "title": self.title, "device": self.device,
                "state": self.state, "message": self.message, "progress": self.progress,
                "result": self.result, "position": position,
                "octaves": [{k: v for k, v in o.items() if k != "jpeg"} for o in self.octaves],
                "waited": round((self.started or time.monotonic()) - self.created, 2),
                "seconds": round((self.finished or time.monotonic()) - self.started, 2)
                if self.started else None}


class Worker(threading.Thread):
    """Runs one device's jobs one after another."""

    def __init__(self, device: str):
        super().__init__(name=f"studio {device}", daemon=True)
        self.device = device
        self.queue: queue.Queue[Job | None] = queue.Queue()
        self.waiting: list[Job] = []
        self.current: Job | None = None
        self.lock = threading.Lock()

    def submit(self, job: Job) -> None:
        with self.lock:
            self.waiting.append(job)
        self.queue.put(job)

    def run(self) -> None:
        while True:
            job = self.queue.get()
            if job is None:
                return
            with self.lock:
                if job in self.waiting:
                    self.waiting.remove(job)
                if job.cancel.is_set():
                    job.state, job.message = "cancelled", "cancelled before it started"
                    continue
                self.current = job
            self._run(job)
            with self.lock:
                self.current = None

    @staticmethod
    def _run(job: Job) -> None:
        job.state, job.started = "running", time.monotonic()
        try:
            job.result = job.body(job)
            job.state = "done"
        except Cancelled:
            job.state, job.message = "cancelled", "cancelled"
        except (KeyboardInterrupt, Interrupted) as e:
            job.state = "stopped"
            job.message = str(e) or "stopped"
        except DreamerError as e:
            job.state, job.message = "failed", str(e)
        except Exception as e:  # noqa: BLE001 - a bug: the page says so, the studio goes on
            traceback.print_exc()
            if type(e).__name__ == "OutOfMemoryError":
                job.state, job.message = "failed", "out of memory: try a smaller width or fewer octaves"
            else:
                job.state, job.message = "failed", f"internal error: {type(e).__name__}: {e}"
        finally:
            job.finished = time.monotonic()


class CancelNet:
    """The net, checking before every pass whether its job was cancelled: a cancel takes
    effect within one gradient step. Everything but the call is the net's own."""

    def __init__(self, net, job: Job):
        self.net, self.job = net, job

    def __call__(self, *args, **kwargs):
        self.job.check()
        return self.net(*args, **kwargs)

    def __getattr__(self, name):
        if name in ("net", "job"):
            raise AttributeError(name)
        return getattr(self.net, name)


class OctaveShots:
    """Each octave's image as it completes (a JPEG the page shows), and the time since the
    job started."""

    def __init__(self, job: Job, keep: bool = True):
        self.job, self.keep, self.k, self.n = job, keep, 0, 0

    def start(self, k: int, octave_n: int) -> None:
        self.k, self.n = k, octave_n

    def __call__(self, i: int, rgb: torch.Tensor) -> None:
        job = self.job
        job.check()
        seconds = round(time.monotonic() - job.started, 3)
        entry = {"frame": self.k, "octave": i + 1, "of": self.n, "seconds": seconds,
                 "width": int(rgb.shape[-1]), "height": int(rgb.shape[-2])}
        if self.keep:
            data = io.BytesIO()
            Image.fromarray(to_uint8(rgb)).save(data, format="JPEG", quality=88)
            entry["jpeg"] = data.getvalue()
            job.octaves.append(entry)
        job.progress = {**job.progress, "octave": i + 1, "of": self.n, "frame": self.k}


class StudioProgress(Progress):
    """Stage 2's progress, told to the page: frames done, seconds a frame and the time left;
    a stop from the page ends the run at the next octave as Ctrl-C does (every frame
    written is kept, and a resume goes on from there)."""

    def __init__(self, job: Job, first: int, last: int):
        self.job, self.first, self.range_last = job, first, last
        super().__init__(last - first + 1, verbose=1, stream=_Lines(job))
        job.progress = {"done": 0, "total": self.total, "stage": 2}

    def frame_done(self, k: int, seconds: float) -> None:
        super().frame_done(k, seconds)
        per = self.seconds_per_frame()
        left = self.range_last - k
        self.job.progress = {**self.job.progress, "done": k - self.first + 1, "last": k,
                             "per_frame": round(per, 2) if per else None,
                             "eta": round(per * left) if per is not None else None}

    def info(self, text: str, level: int = 1) -> None:
        if self.job.cancel.is_set():
            raise KeyboardInterrupt
        super().info(text, level)


class _Lines:
    """A stream whose lines become the job's message."""

    def __init__(self, job: Job):
        self.job = job

    def write(self, text: str) -> None:
        text = text.strip()
        if text:
            self.job.message = text

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False


class Studio:
    """The film, its queues, the nets they share, and the history of previews."""

    def __init__(self, film: Film, choices: list, preview_width: int = 400):
        self.film, self.choices, self.preview_width = film, choices, preview_width
        self.jobs: dict[str, Job] = {}
        self.workers: dict[str, Worker] = {}
        self.lock = threading.RLock()
        self.net_lock = threading.Lock()
        self.nets: dict[tuple, object] = {}
        self.counter = itertools.count(1)
        self.history: list[dict] = self._load_history()
        self.render_job: Job | None = None
        self.closing = False

    # --- the queue ------------------------------------------------------------------

    def submit(self, kind: str, title: str, config: DreamConfig,
               body: Callable[[Job], dict]) -> Job:
        if self.closing:
            raise DreamerError("the studio is stopping")
        device = "cpu" if config.gpu is None else f"cuda:{config.gpu}"
        job = Job(f"{time.strftime('%H%M%S')}-{next(self.counter)}", kind, title, device, body)
        with self.lock:
            self.jobs[job.id] = job
            worker = self.workers.get(device)
            if worker is None:
                worker = self.workers[device] = Worker(device)
                worker.start()
            self._forget_old()
        worker.submit(job)
        return job

    def _forget_old(self) -> None:
        done = [j for j in self.jobs.values() if j.finished is not None]
        for job in done[:-KEEP_JOBS]:
            if job is not self.render_job:
                del self.jobs[job.id]

    def cancel(self, job_id: str) -> Job:
        job = self.jobs.get(job_id)
        if job is None:
            raise DreamerError(f"no job {job_id}")
        job.cancel.set()
        return job

    def state(self) -> list[dict]:
        """Every job the page lists: running and waiting ones first, with their places."""
        out = []
        with self.lock:
            workers = list(self.workers.values())
            jobs = list(self.jobs.values())
        for worker in workers:
            with worker.lock:
                current, waiting = worker.current, list(worker.waiting)
            if current is not None:
                out.append(current.public(0))
            out.extend(job.public(i + 1) for i, job in enumerate(waiting))
        listed = {j["id"] for j in out}
        out.extend(j.public() for j in reversed(jobs) if j.id not in listed)
        return out

    def shutdown(self, timeout: float = 300) -> list[str]:
        """Cancels what waits, stops what runs (a render at its next octave, its frames
        kept) and waits for the workers; returns what each running job said."""
        self.closing = True
        with self.lock:
            workers = list(self.workers.values())
            jobs = list(self.jobs.values())
        for job in jobs:
            job.cancel.set()
        for worker in workers:
            worker.queue.put(None)
        deadline = time.monotonic() + timeout
        for worker in workers:
            worker.join(max(0.0, deadline - time.monotonic()))
        return [f"{j.title}: {j.message}" for j in jobs if j.kind == "render"
                and j.state == "stopped"]

    # --- the nets -----------------------------------------------------------------------

    def net(self, config: DreamConfig, device: torch.device):
        """The config's net on `device`, loaded once (the last two are kept)."""
        files = model_files(config)
        key = (str(files["prototxt"]), str(files["caffemodel"]), str(device))
        with self.net_lock:
            net = self.nets.get(key)
            if net is None:
                net = load_net(files["prototxt"], files["caffemodel"]).to(device)
                while len(self.nets) >= 2:
                    self.nets.pop(next(iter(self.nets)))
                self.nets[key] = net
        net.autocast_dtype = torch.bfloat16 if config.precision == "bf16" else None
        return net

    def layers(self, config: DreamConfig) -> dict:
        """The layers a dream can end at, with their blob at the preview size."""
        net = self.net(config, torch.device("cpu") if config.gpu is None
                       else pick_device(config.gpu))
        w, h = self.film.size_at(self.preview_width)
        rows = layer_rows(net, h, w)
        values = schedule.Schedules(config).at(1, 0, carried=False)
        sh, sw = octave_sizes(h, w, int(values.octave_n), float(values.octave_scale))[-1]
        usual = _usual_layers(config)
        picked = spread(layer_rows(net, sh, sw), 11, keep=usual[:1])
        return {"layers": [{"name": r.name, "type": r.type, "fits": r.fits,
                            "shape": list(r.shape) if r.shape else None,
                            "field": r.field, "spread": r.name in picked}
                           for r in rows if r.type not in DETAIL_TYPES or r.name in picked],
                "usual": list(usual), "spread": picked}

    # --- the jobs -------------------------------------------------------------------------

    def _prepared(self, job: Job, config: DreamConfig, first: int, last: int):
        """What stage 2 fixes before frame `first` of a run over first..last (prepare.py,
        without an output folder): (setup, net, guide images)."""
        autotune.mode()  # (a bad DREAMER_NATIVE is refused as stage 2 refuses it)
        frames = self.film.frameset(first, last)
        width, height = common_size(frames)
        size = preview_size(width, height, config.preview)
        device = pick_device(config.gpu)
        threads.configure(device, config.precision, deterministic=config.deterministic)
        net = self.net(config, device)
        for layer in config.end_layers:
            net.check_end(layer)
        schedules = schedule.Schedules(config)
        pairs = dict.fromkeys((v.octave_n, v.octave_scale) for v in
                              (schedules.at(k, 0, carried=False) for k in frames.numbers))
        for n, s in pairs:
            check_octaves(net, config.end_layers, size,
                          replace(config, octave_n=n, octave_scale=s), (width, height))
        tile = parse_tile(config.tile)
        check_tiling(net, config.end_layers, tile)
        budget = step_budget(net, config, schedules, frames, size, (width, height), tile,
                             device)
        mean = torch.tensor(config.mean, dtype=torch.float32, device=device)
        images = None
        if config.guide_image:
            images, _ = guide_images(config.guide_image, config.guide_fps, frames.folder,
                                     frames.last, self.film.studio_dir / "guide")
        job.check()
        return Setup(config, frames, size, schedules, mean, device, tile, budget), net, images

    def _dreamer(self, job: Job, config: DreamConfig, first: int, last: int,
                 reporter: OctaveShots) -> FrameDreamer:
        setup, net, images = self._prepared(job, config, first, last)
        runner = CompiledNet(net) if config.compile else net
        guide = guide_of(setup, net, images)
        return FrameDreamer(setup, CancelNet(runner, job), config.seed, guide, reporter)

    def preview(self, form: dict, config: DreamConfig, k: int, width: int) -> Job:
        """Frame k dreamed at `width` as stage 2 dreams it at -p width -sf k -ef k."""
        film = self.film
        film.check_frame(k)
        config = _seeded(replace(config, preview=width, start_frame=k, end_frame=k))

        def body(job: Job) -> dict:
            dreamer = self._dreamer(job, config, k, k, OctaveShots(job))
            try:
                _, frame, info = dreamer.dream(k, None)
            finally:
                dreamer.close()
            folder = film.studio_dir / "previews"
            folder.mkdir(parents=True, exist_ok=True)
            name = f"{job.id}.{film.image_type}"
            (folder / name).write_bytes(encode_image(frame, film.image_type))
            raw = read_frame(film.frame_path(k), dreamer.setup.size)
            (folder / f"{job.id}-raw.png").write_bytes(encode_image(raw, "png"))
            entry = {"id": job.id, "frame": k, "width": width, "seed": config.seed,
                     "form": {**form, "seed": str(config.seed)}, "layer": info["layer"],
                     "image": f"studio/previews/{name}",
                     "raw": f"studio/previews/{job.id}-raw.png",
                     "seconds": round(time.monotonic() - job.started, 2),
                     "first_octave": job.octaves[0]["seconds"] if job.octaves else None,
                     "size": list(dreamer.setup.size), "when": time.strftime("%H:%M:%S")}
            self._remember(entry)
            return entry

        return self.submit("preview", f"dream frame {k} at {width} px", config, body)

    def stretch(self, config: DreamConfig, k: int, n: int, width: int) -> Job:
        """Frames k..k+n-1 dreamed at `width` as stage 2 dreams that range, then measured
        for the flicker the dream adds to the film."""
        film = self.film
        film.check_frame(k)
        if not 2 <= n <= 200:
            raise DreamerError("a stretch is 2 to 200 frames")
        last = min(k + n - 1, film.count)
        if last <= k:
            k = max(1, last - n + 1)
        config = _seeded(replace(config, preview=width, start_frame=k, end_frame=last))

        def body(job: Job) -> dict:
            dreamer = self._dreamer(job, config, k, last, OctaveShots(job, keep=False))
            folder = film.studio_dir / "stretches" / job.id
            folder.mkdir(parents=True, exist_ok=True)
            raws, dreams, urls = {}, {}, []
            try:
                if config.flow:
                    dreamer.start_flows(k, flow_cache(dreamer.setup.frames, film.studio_dir))
                state = None
                for i in range(k, last + 1):
                    state, frame, _ = dreamer.dream(i, state)
                    name = f"{i:08d}.{film.image_type}"
                    (folder / name).write_bytes(encode_image(frame, film.image_type))
                    dreams[i] = frame
                    raws[i] = read_frame(film.frame_path(i), dreamer.setup.size)
                    urls.append(f"studio/stretches/{job.id}/{name}")
                    job.progress = {**job.progress, "done": i - k + 1, "total": last - k + 1,
                                    "frames": list(urls)}
            finally:
                dreamer.close()
            job.progress = {**job.progress, "measuring": True}
            report = flicker.measure(raws, dreams)
            return {"first": k, "last": last, "frames": urls, "fps": film.fps,
                    "seed": config.seed, "added": _num(report.added),
                    "strength": _num(report.strength), "ratio": _num(report.ratio),
                    "residual": _num(report.residual), "dreamed": _num(report.dreamed),
                    "pairs": report.pairs,
                    "added_per_pair": [_num(v) for v in report.added_per_pair],
                    "table": flicker.table({"": report})}

        return self.submit("stretch", f"stretch of frames {k}-{last} at {width} px", config,
                           body)

    def sheet(self, config: DreamConfig, k: int, width: int = 200) -> Job:
        """Frame k dreamed at a spread of the net's layers (the layer sheet), to choose one
        by looking."""
        film = self.film
        film.check_frame(k)
        config = _seeded(config)

        def body(job: Job) -> dict:
            device = pick_device(config.gpu)
            threads.configure(device, config.precision, deterministic=config.deterministic)
            net = self.net(config, device)
            w, h = film.size_at(width)
            values = schedule.Schedules(config).at(k, config.seed, carried=False)
            sh, sw = octave_sizes(h, w, int(values.octave_n), float(values.octave_scale))[-1]
            picked = spread(layer_rows(net, sh, sw), 11, keep=_usual_layers(config)[:1])
            if not picked:
                raise DreamerError("no layer of this model takes frames this small")
            check_octaves(net, picked, (w, h), replace(config, octave_n=values.octave_n,
                                                        octave_scale=values.octave_scale))
            image = read_frame(film.frame_path(k), (w, h))

            def on_layer(i: int, layer: str) -> None:
                job.check()
                job.progress = {"done": i, "total": len(picked), "layer": layer}

            sheet = dream_sheet(CancelNet(net, job), image, picked, config.mean,
                                iter_n=int(values.iter_n), octave_n=int(values.octave_n),
                                octave_scale=float(values.octave_scale),
                                step_size=float(values.step_size), jitter=int(values.jitter),
                                seed=config.seed, columns=4, on_layer=on_layer)
            folder = film.studio_dir / "sheets"
            folder.mkdir(parents=True, exist_ok=True)
            sheet.save(folder / f"{job.id}.png")
            return {"image": f"studio/sheets/{job.id}.png", "layers": ["original", *picked],
                    "tile": [w, h], "label": LABEL, "columns": 4, "frame": k}

        return self.submit("sheet", f"layer sheet of frame {k}", config, body)

    def render(self, config: DreamConfig, first: int, last: int, overwrite: bool) -> Job:
        """Stage 2 into the film's dreamed folder (its manifest, its resume), then stage 3
        with the film's sound."""
        film = self.film
        film.check_frame(first)
        film.check_frame(last)
        if first > last:
            raise DreamerError(f"the render's first frame {first} is after its last {last}")
        if self.render_job is not None and self.render_job.state in ("queued", "running"):
            raise DreamerError("a render is already under way; stop it first")
        config = _seeded(replace(config, start_frame=first, end_frame=last,
                                 overwrite=overwrite, verbose=1))

        def body(job: Job) -> dict:
            argv = ["dreamvideo", "studio", str(film.video or film.frames_dir)]
            progress = StudioProgress(job, first, last)
            result = dream_sequence(config, argv=argv, progress=progress)
            out = {"first": first, "last": last, "seed": result.seed,
                   "description": result.description, "video": None}
            if film.video is None:
                job.message = ("frames dreamed; no original video is known for the sound, so "
                               "stage 3 was left out")
                return out
            job.progress = {**job.progress, "stage": 3}
            job.message = "stage 3: the frames back into a video with the film's sound"
            assemble_video(film.dreamed_dir, film.video, film.image_type, film.result_path,
                           overwrite=True, first=first, last=last)
            job.message = f"wrote {film.result_path}"
            out["video"] = f"media/result.mp4?v={int(time.time())}"
            return out

        job = self.submit("render", f"render frames {first}-{last}", config, body)
        self.render_job = job
        return job

    # --- history --------------------------------------------------------------------------

    def _history_path(self) -> Path:
        return self.film.studio_dir / "history.json"

    def _load_history(self) -> list[dict]:
        try:
            data = json.loads(self._history_path().read_text(encoding="utf-8"))
            return [e for e in data if isinstance(e, dict)] if isinstance(data, list) else []
        except (OSError, ValueError):
            return []

    def _remember(self, entry: dict) -> None:
        with self.lock:
            self.history.append(entry)
            path = self._history_path()
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(self.history[-500:], indent=0), encoding="utf-8")
            os.replace(tmp, path)


DETAIL_TYPES = {"ReLU", "LRN", "BatchNorm", "Scale", "PReLU", "TanH", "Sigmoid", "Power"}


def _usual_layers(config: DreamConfig) -> tuple[str, ...]:
    from dreamer.caffe import models

    files = model_files(config)
    info = MODELS.get(config.model_name) or models.info_for_weights(files["caffemodel"].name)
    return info.layers if info else ("inception_4c/output",)


def _seeded(config: DreamConfig) -> DreamConfig:
    """A seed is always set: the same click twice gives the same dream, and the TOML
    repeats it."""
    return config if config.seed is not None else replace(config, seed=secrets.randbelow(2**31))


def _num(value: float) -> float | None:
    return None if value is None or not np.isfinite(value) else round(float(value), 3)
