"""Stage 2 on many workers, with Ray (`--workers N`): the frames still to dream are cut
into N pieces dreamed at once, each by a Ray actor that loads the net once. A piece that
cannot carry in the dream of the frame before it warms up first (run/warmup.py). The
workers write nothing: they stream each kept frame back to this process, the driver,
whose one FrameWriter stages, journals and renames it into place, exactly as an
uninterrupted run does, so a crash of a worker or of the driver loses no finished frame
and a re-run dreams only the missing ones.

Ray is optional (`pip install 'dreamer[ray]'`); without `--workers` nothing here runs.
"""
from __future__ import annotations

import logging
import os
import signal
import socket
import threading
from collections import deque
from dataclasses import replace
from pathlib import Path

from dreamer.config import DreamConfig
from dreamer.errors import DreamerError
from dreamer.values.expr import shorten
from dreamer.run import reaper, resume
from dreamer.run.prepare import Prepared, prepare
from dreamer.run.progress import Progress
from dreamer.run.warmup import Piece, auto_start, fixed_start, kept_share, plan_pieces
from dreamer.run.worker import DreamWorker, WorkerSpec
from dreamer.run.writer import FrameWriter

INSTALL = "pip install 'dreamer[ray]' (or make venv-ray)"
CONNECT_TIMEOUT = 5  # seconds to wait for a Ray cluster's address to answer
RETRIES = 1  # a piece whose worker died goes to another worker this many times


def import_ray(workers: int):
    try:
        import ray
    except ImportError:
        raise DreamerError(f"--workers {workers} runs on Ray, which is not installed here: "
                           f"{INSTALL}; or use --workers 1") from None
    return ray


class RayEngine:
    """Dreams a range's missing frames in pieces at once on Ray workers; the driver
    (run/sequence.py) plans, writes and reports exactly as for one process."""

    def __init__(self, config: DreamConfig):
        self.config = config
        self.address = config.address or os.environ.get("RAY_ADDRESS") or None
        ray_environment(self.address)
        self.ray = import_ray(config.workers)
        self.connected = False
        self.pool: Pool | None = None
        self.states: dict[int, bool] = {}

    @property
    def lost(self) -> str:
        return self.pool.lost if self.pool is not None else ""

    def prepare(self) -> Prepared:
        """The driver dreams nothing: it checks and plans on the CPU (a cluster's head
        node may have no GPU); each GPU worker plans its tiles on its own GPU."""
        if self.address is not None:
            _check_reachable(self.address)  # before the seconds prepare takes
        run = prepare(replace(self.config, gpu=None))
        run.setup = replace(run.setup, config=self.config)
        return run

    def todo(self, run: Prepared, plan: resume.Plan) -> list[int]:
        return [k for k in run.frames.numbers if k not in plan.done]

    def written_before(self, plan: resume.Plan) -> set[int]:
        """Frames done before: the lossless state of one goes once the next is written,
        whichever piece wrote it."""
        return set(plan.done)

    def open(self, run: Prepared, manifest, seed: int, progress: Progress) -> None:
        """Joins (or starts) Ray; a cluster that cannot place the workers is refused
        before anything is printed."""
        self.run, self.manifest, self.seed = run, manifest, seed
        self.reaper = connect(self.ray, self.address)
        self.connected = True
        self.resources = worker_resources(self.ray, self.config.workers, self.config.gpu)

    def record(self, todo: list[int], progress: Progress) -> dict:
        """The pieces, announced, and the workers for the run's record."""
        self.done = set(self.run.frames.numbers) - set(todo)
        self.pieces = self._pieces(todo, progress)
        return {"workers": {"count": self.config.workers, **self.resources,
                            "pieces": [vars(p) for p in self.pieces]}}

    def frames(self, todo: list[int], writer, progress: Progress):
        self.pool = Pool(self.ray, self._actors(len(self.pieces)), self.pieces, writer)
        yield from self.pool.frames()

    def close(self) -> None:
        if self.connected:
            _shutdown(self.ray)
            self.reaper.close()

    def device_name(self, run: Prepared) -> str:
        return "cpu" if self.config.gpu is None else "cuda"

    # --- planning ------------------------------------------------------------------------

    def _pieces(self, todo: list[int], progress: Progress) -> list[Piece]:
        config, first = self.config, self.run.frames.first
        if config.warmup is not None:
            rule = lambda keep: fixed_start(keep, first, config.warmup)  # noqa: E731
        else:
            rule = lambda keep: auto_start(keep, first, self._share)  # noqa: E731
        pieces = plan_pieces(todo, config.workers, first, rule,
                             lambda j: self._has_state(j, progress))
        warm = [f"{p.keep} (warm-up {p.warmup})" for p in pieces]
        workers = min(config.workers, len(pieces))
        progress.info(f"{len(todo)} frames on {workers} Ray worker{'s' * (workers > 1)}, in "
                      f"pieces starting at frames {', '.join(warm)}")
        return pieces

    def _share(self, k: int) -> float:
        values = self.run.schedules.at(k, self.seed)
        return kept_share(values, self.config.flow, self.config.flow_smooth)

    def _has_state(self, j: int, progress: Progress) -> bool:
        """Whether the dream of frame j is on disk for the next frame to carry in: a frame
        of the range only when it is done with these parameters; the frame before the
        range whatever made it (chained ranges, as a single run does)."""
        frames = self.run.frames
        if j < 1 or (j >= frames.first and j not in self.done):
            return False
        if j not in self.states:
            frame, why_not = resume.load_state(self.run.output, j, frames.image_type,
                                               self.run.size, self.manifest.frames.get(j))
            if why_not and j == frames.first - 1:
                progress.info(f"frame {j + 1} starts from the raw frame: {why_not}")
            self.states[j] = frame is not None
        return self.states[j]

    # --- dreaming ------------------------------------------------------------------------

    def _actors(self, pieces: int) -> list:
        run, config = self.run, self.config
        # absolute paths: a cluster's workers run in the folder `ray start` ran in
        frames = replace(run.frames, folder=Path(run.frames.folder).absolute())
        guides = [Path(p).absolute() for p in run.guide_images or []] or None
        spec = WorkerSpec(replace(run.setup, frames=frames, mean=run.setup.mean.cpu()),
                          Path(run.output).absolute(), self.seed, guides,
                          self._kernel_choices(), self.resources["num_cpus"])
        net = self.ray.put(run.net.cpu())  # sent once to each worker, not once a piece
        actor = self.ray.remote(DreamWorker).options(**self.resources)
        # no more workers than pieces: one with nothing to do would load the net for nothing
        return [actor.remote(spec, net) for _ in range(min(config.workers, pieces))]

    def _kernel_choices(self) -> dict[str, str]:
        """The run's frames' choices over those this machine made for a run in one
        process. A worker has fewer threads, and would time its own: other choices, other
        float rounding, which the dream's chaos grows into grey levels
        (docs/scale-out.md). With these a piece dreams the frames one process dreams here,
        bit for bit."""
        from dreamer.caffe import autotune

        return {**autotune.cached(), **self.manifest.kernel_choices()}


def _shutdown(ray) -> None:
    """Stops Ray (a second or two). A Ctrl-C meanwhile changes nothing: every frame the
    run wrote is journalled already, and the run is closed as it would have been."""
    try:
        ray.shutdown()
    except KeyboardInterrupt:
        pass


def connect(ray, address: str | None) -> reaper.Reaper:
    """Joins the Ray cluster at `address`, or starts one on this machine (None, with a
    reaper that takes it down should the run be killed); Ray's own logging stays in its
    log files."""
    quiet = dict(log_to_driver=False, logging_level=logging.ERROR)
    if address is None:
        quiet["include_dashboard"] = False  # (only a new cluster takes this)
    handlers = _signal_handlers()
    before = reaper.children()
    try:
        _init(ray, address, quiet)
    except KeyboardInterrupt:  # a Ctrl-C while Ray starts: what it started goes with it
        reaper.reap(reaper.started_since(before))
        raise
    except Exception as e:  # noqa: BLE001 - Ray raises several types for one cause
        if address is None:
            raise DreamerError(f"could not start Ray on this machine ({_first_line(e)}); "
                               "use --workers 1") from None
        raise DreamerError(f"cannot reach a Ray cluster at {address} ({_first_line(e)}); "
                           "start one with 'ray start --head' and give the address it prints"
                           " (RAY_ADDRESS or --address), or unset RAY_ADDRESS to run on this "
                           "machine") from None
    finally:
        _restore(handlers)
    return reaper.Reaper.start(before) if address is None else reaper.Reaper(None)


def ray_environment(address: str | None) -> None:
    """Ray's settings from the environment, before Ray is imported (it reads them once).
    (RAY_BACKEND_LOG_LEVEL would quiet the warnings a failing join prints, but Ray then
    prints a line of its own saying it was set, on every run.)"""
    if address is not None and _has_auth_token():
        # `ray start --head` enables token auth and saves the token, but a driver joining
        # by address sends it only in token mode (Ray 2.60 refused it as "Authentication
        # token is missing" until RAY_AUTH_MODE=token)
        os.environ.setdefault("RAY_AUTH_MODE", "token")


def _has_auth_token() -> bool:
    if os.environ.get("RAY_AUTH_TOKEN"):
        return True
    path = os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token"
    return Path(path).is_file()


JOIN_SECONDS = 60  # a cluster answers within seconds; something else that speaks HTTP/2 never


def _init(ray, address: str | None, options: dict) -> None:
    """ray.init; joining a cluster gives up after JOIN_SECONDS (ray.init itself waits
    for ever on a server that answers HTTP/2 but not as Ray's GCS does)."""
    if address is None:
        ray.init(address=address, **options)
        return
    failed: list[BaseException] = []

    def join() -> None:
        try:
            ray.init(address=address, **options)
        except Exception as e:  # noqa: BLE001 - raised again in the caller's thread
            failed.append(e)
    thread = threading.Thread(target=join, name="ray-join", daemon=True)
    thread.start()
    thread.join(JOIN_SECONDS)
    if thread.is_alive():
        raise TimeoutError(f"no answer as a Ray cluster within {JOIN_SECONDS} s")
    if failed:
        raise failed[0]


def _signal_handlers() -> dict:
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}


def _restore(handlers: dict) -> None:
    """ray.init installs its own SIGTERM handler, which dumps a C++ stack trace: the
    command line's handlers (a clean stop with a line on how to resume) are put back."""
    for signum, handler in handlers.items():
        if handler is not None:
            signal.signal(signum, handler)


def _check_reachable(address: str) -> None:
    """Ray retries an address nobody answers at for minutes on end, printing warnings
    all the while: one that takes no connection is refused at once instead."""
    where = address.split("://", 1)[-1].rstrip("/")
    if where in ("auto", "local"):
        return  # Ray's own words for a cluster on this machine
    host, _, port = where.rpartition(":")
    if not host or not port.isdigit():
        raise DreamerError(f"Ray address {shorten(address)} is not HOST:PORT (e.g. 10.0.0.5:6379, as "
                           "'ray start --head' prints it); fix RAY_ADDRESS or --address")
    fix = ("start one with 'ray start --head' and give the address it prints (RAY_ADDRESS "
           "or --address), or unset RAY_ADDRESS to run on this machine")
    try:
        with socket.create_connection((host.strip("[]"), int(port)),
                                      timeout=CONNECT_TIMEOUT) as conn:
            speaks_grpc = _answers_http2(conn)
    except OSError as e:
        raise DreamerError(f"cannot reach a Ray cluster at {address} "
                           f"({getattr(e, 'strerror', None) or e or 'no answer'}); {fix}") from None
    if not speaks_grpc:
        raise DreamerError(f"{address} answers, but not as a Ray cluster does (something else "
                           f"listens there); {fix}")


# HTTP/2's opening (RFC 9113, 3.4) and an empty SETTINGS frame: a Ray cluster's address is
# a gRPC server, which answers with a SETTINGS frame of its own (frame type 4); an HTTP/1
# server, a database or a silent port does not, and Ray would wait on it for minutes.
_HTTP2_HELLO = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])


def _answers_http2(conn: socket.socket) -> bool:
    conn.settimeout(CONNECT_TIMEOUT)
    conn.sendall(_HTTP2_HELLO)
    head = b""
    while len(head) < 9:
        chunk = conn.recv(9 - len(head))
        if not chunk:
            return False
        head += chunk
    return head[3] == 4


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return (text[0] if text else type(e).__name__)[:200]


def worker_resources(ray, workers: int, gpu: int | None) -> dict:
    """What each worker asks of Ray: one GPU with --gpu; else an equal share of the
    cluster's CPUs. Refuses more workers than the cluster can place at once."""
    total = ray.cluster_resources()
    if gpu is not None:
        gpus = int(total.get("GPU", 0))
        if gpus == 0:
            raise DreamerError("--gpu: the Ray cluster has no GPU; leave --gpu out to dream "
                               "on its CPUs")
        if gpus < workers:
            raise DreamerError(f"--workers {workers} with --gpu needs {workers} GPUs and the "
                               f"Ray cluster has {gpus}; use --workers {gpus}")
        return {"num_cpus": 1, "num_gpus": 1}
    cpus = int(total.get("CPU", 0))
    if cpus < workers:
        raise DreamerError(f"--workers {workers} needs {workers} CPUs and the Ray cluster has "
                           f"{cpus}; use --workers {max(cpus, 1)}")
    return {"num_cpus": cpus // workers}


class Pool:
    """The workers and the pieces still to give them: yields each kept frame as it
    arrives from any worker. A worker that dies hands the rest of its piece, from the
    frame after the last one it sent, to the next free worker (RETRIES times); what is
    still undone then is named in `lost`."""

    def __init__(self, ray, actors: list, pieces: list[Piece], writer: FrameWriter):
        self.ray, self.writer = ray, writer
        self.queue = deque((p, 0) for p in pieces)
        self.starting = {actor.ready.remote(): actor for actor in actors}
        self.streams: dict = {}  # generator: [actor, piece, tries, next frame]
        self.idle: list = []
        self.lost = ""

    def frames(self):
        while self.starting or self.streams:
            ready, _ = self.ray.wait([*self.starting, *self.streams], num_returns=1)
            ref = ready[0]
            if ref in self.starting:
                self._started(ref)
                continue
            item = self._next(ref)
            if item is not None:
                yield item
        if self.queue and not self.lost:
            self.lost = "every worker stopped before the end"

    def _started(self, ref) -> None:
        actor = self.starting.pop(ref)
        try:
            self.ray.get(ref)
        except self.ray.exceptions.RayActorError as e:
            if _raised_in_worker(self.ray, e):
                raise _worker_error(self.ray, e) from None
            return  # its process died while loading: the others take its pieces
        self._give(actor)

    def _give(self, actor) -> None:
        if not self.queue:
            self.idle.append(actor)
            return
        piece, tries = self.queue.popleft()
        self.streams[actor.dream.remote(piece)] = [actor, piece, tries, piece.keep]

    def _next(self, gen):
        actor, piece, tries, k = self.streams[gen]
        try:
            item = self.ray.get(next(gen))
        except StopIteration:
            del self.streams[gen]
            self._give(actor)
            return None
        except self.ray.exceptions.RayTaskError as e:
            raise _worker_error(self.ray, e) from None
        except self.ray.exceptions.RayActorError as e:
            del self.streams[gen]
            self._died(piece, tries, k, e)
            return None
        self.streams[gen][3] = item[0] + 1
        return item

    def _died(self, piece: Piece, tries: int, k: int, e: BaseException) -> None:
        """The rest of the piece, from frame k, carrying in the dream of frame k-1 (the
        last one the worker sent: written before the rest starts) when there is one."""
        if tries >= RETRIES:
            self.lost = (f"a worker stopped in frames {piece.keep}..{piece.end} and so did "
                         f"the next one given them ({_first_line(e)})")
            return
        if k > piece.keep:
            self.writer.flush()
            piece = Piece(k, k, piece.end, k - 1)
        self.queue.append((piece, tries + 1))
        if self.idle:
            self._give(self.idle.pop())
        elif not self.streams and not self.starting:
            self.lost = f"every worker stopped ({_first_line(e)})"


def _raised_in_worker(ray, e: BaseException) -> bool:
    """Whether the worker's own code raised (an error to report) rather than its process
    dying (a worker lost, whose work another can take)."""
    return isinstance(e, ray.exceptions.RayTaskError) or isinstance(
        getattr(e, "cause", None), ray.exceptions.RayTaskError)


def _worker_error(ray, e: BaseException) -> BaseException:
    """What a worker raised, as this process would have raised it: a DreamerError, an
    OSError or running out of memory keep their type (the command line reports each in
    its one line); anything else becomes a one-line DreamerError."""
    import torch

    cause = e
    while isinstance(cause, (ray.exceptions.RayTaskError, ray.exceptions.RayActorError)):
        inner = getattr(cause, "cause", None)
        if inner is None or inner is cause:
            break
        cause = inner
    if isinstance(cause, KeyboardInterrupt):
        return KeyboardInterrupt()  # Ctrl-C reached the workers first: the run stops cleanly
    if isinstance(cause, (DreamerError, OSError, torch.OutOfMemoryError)) and not isinstance(
            cause, ray.exceptions.RayError):
        return cause
    return DreamerError(f"a Ray worker failed: {_first_line(cause)}")
