"""Stage 2's driver, one protocol for every way of dreaming: prepare (check everything),
plan (which frames are done, which are still to dream), dream them (an engine: this
process, run/serial.py, or pieces on Ray workers, run/distributed.py), write each with
the one FrameWriter, and report: the same records, messages, close and error handling
whichever engine dreams."""
from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

from dreamer.config import DreamConfig
from dreamer.errors import DreamerError, Interrupted
from dreamer.run import resume
from dreamer.run.folders import created_by_run
from dreamer.run.manifest import JOURNAL_NAME, MANIFEST_NAME, Manifest, describe, run_record
from dreamer.run.prepare import Prepared
from dreamer.run.progress import Progress, Timer
from dreamer.run.writer import FrameWriter
from dreamer.video.frames import FRAME_RE, FrameSet, remove_empty


@dataclass
class RunResult:
    frames: FrameSet
    output: Path
    seed: int
    description: str


def engine_for(config: DreamConfig):
    """Where the frames are dreamed: in this process, or on Ray workers (--workers N)."""
    if config.workers > 1:
        from dreamer.run.distributed import RayEngine  # Ray is an optional extra

        return RayEngine(config)
    from dreamer.run.serial import SerialEngine

    return SerialEngine(config)


def dream_sequence(config: DreamConfig, argv: list[str] | None = None,
                   progress: Progress | None = None) -> RunResult:
    """Dreams config.input's frames into config.output, resuming what is done. Raises
    DreamerError (Interrupted on Ctrl-C) with one line that says what is complete."""
    created = created_by_run(config.output) if config.output is not None else []
    try:
        return _dream(config, argv, progress, made_output=bool(created))
    except BaseException:
        remove_empty(created)  # a refused or failed run leaves no folder it made
        raise


def forget_empty_run(output: Path) -> None:
    """The manifest of a run that wrote no frame, in a folder it made itself: nothing
    in it documents anything, and it would keep the folder."""
    if not output.is_dir() or any(FRAME_RE.match(p.name) for p in output.iterdir()):
        return
    for name in (MANIFEST_NAME, JOURNAL_NAME):
        (output / name).unlink(missing_ok=True)


def _dream(config: DreamConfig, argv: list[str] | None, progress: Progress | None,
           made_output: bool):
    engine = engine_for(config)
    run = engine.prepare()  # (it holds the output folder's lock)
    try:
        return _plan_and_dream(engine, run, config, argv, progress)
    except BaseException:
        if made_output:  # (while the lock is held: no other run is in it)
            forget_empty_run(run.output)
        raise
    finally:
        run.lock.release()


def _plan_and_dream(engine, run: Prepared, config: DreamConfig, argv: list[str] | None,
                    progress: Progress | None) -> RunResult:
    frames, output = run.frames, run.output
    manifest = Manifest(output)
    plan = resume.plan_run(manifest, frames, output, run.params, config.seed,
                           lambda: secrets.randbelow(2**31), config.overwrite)
    todo = engine.todo(run, plan)
    progress = progress or Progress(len(todo), config.verbose)
    description = describe(config, plan.seed, frames, run.size, config.model_name,
                           run.guide_record)
    result = RunResult(frames, output, plan.seed, description)
    if not todo:
        progress.info(f"frames {frames.first}..{frames.last} in {output} are already dreamed "
                      "with these parameters; nothing to do")
        return result
    try:
        engine.open(run, manifest, plan.seed, progress)  # (a refusal is the only line)
        line = _start_line(frames, todo, plan)
        if line:
            progress.info(line)
        record = run_record(config, plan.seed, frames, run.size, run.model,
                            _dream_record(run, plan), engine.device_name(run), argv)
        record.update(engine.record(todo, progress))
        manifest.start_run({**record, "resumed_at": todo[0]})
        _write(engine, run, manifest, plan, todo, progress)
    finally:
        engine.close()
        progress.close()  # (so that a message after it starts on a line of its own)
    manifest.finish_run(description)
    return result


def _start_line(frames: FrameSet, todo: list[int], plan: resume.Plan) -> str:
    done = len(frames.numbers) - len(todo)
    if done == 0:
        return (f"seed {plan.seed} (repeat this run exactly with --seed {plan.seed})"
                if plan.seed_source == "drawn" else "")
    if todo == list(range(todo[0], frames.last + 1)):
        return (f"resuming at frame {todo[0]}: frames {frames.first}..{todo[0] - 1} are "
                f"already done (seed {plan.seed})")
    return (f"resuming: {done} of the {len(frames.numbers)} frames are already done "
            f"(seed {plan.seed})")


def _dream_record(run: Prepared, plan: resume.Plan) -> dict:
    return {"params": run.params, "key": run.key, "seed": plan.seed,
            "schedules": run.schedules.scheduled(), "guide": run.guide_record}


def _write(engine, run: Prepared, manifest: Manifest, plan: resume.Plan, todo: list[int],
           progress: Progress) -> None:
    """Every frame the engine dreams, written as it comes; whatever stops the run, the
    frames on disk are complete and the message says which."""
    writer = FrameWriter(run.output, run.frames, manifest, run.key, plan.seed,
                         Throughput(progress), done=engine.written_before(plan))
    before = set(run.frames.numbers) - set(todo)
    try:
        for k, frame, info in engine.frames(todo, writer, progress):
            writer.save(k, frame, info)
        writer.flush()
    except KeyboardInterrupt:
        stop = _Stop(run, before, writer)
        stop.close(manifest, f"interrupted at frame {stop.first}")
        raise Interrupted(f"interrupted{stop.during}; {stop.state}; run the same command "
                          "again to continue from there") from None
    except OSError as e:
        stop = _Stop(run, before, writer)
        k = getattr(e, "frame", stop.first)
        stop.close(manifest, f"failed at frame {k}: {e.strerror or e}")
        raise DreamerError(f"cannot write frame {k} ({e.strerror or e}); {stop.state}; free "
                           "disk space or fix permissions, then run the same command "
                           "again") from None
    except DreamerError as e:
        stop = _Stop(run, before, writer)
        where = f"frame {e.frame}: " if hasattr(e, "frame") else ""
        stop.close(manifest, f"failed at frame {getattr(e, 'frame', stop.first)}: {e}")
        raise DreamerError(f"{where}{e}; {stop.state}; fix that, then run the same command "
                           "again") from None
    except BaseException:
        _Stop(run, before, writer).close(manifest, "failed")
        raise
    finally:
        writer.close()
    if engine.lost:
        stop = _Stop(run, before, writer)
        stop.close(manifest, f"incomplete: {engine.lost}")
        raise DreamerError(f"{engine.lost}; {stop.state}; run the same command again to "
                           "dream them")


class _Stop:
    """Where a run stopped: the write in flight finished, then which frames are complete
    and the words for it."""

    def __init__(self, run: Prepared, before: set[int], writer: FrameWriter):
        writer.finish()
        frames = run.frames
        complete = before | writer.done
        missing = [k for k in frames.numbers if k not in complete]
        self.first = missing[0] if missing else frames.last + 1
        # missing from `first` to the end: the frames were dreamed in order
        in_order = missing == list(range(self.first, frames.last + 1))
        self.during = f" during frame {self.first}" if in_order and missing else ""
        if not missing:
            self.state = "every frame is done"
        elif not in_order:
            self.state = (f"{len(missing)} of frames {frames.first}..{frames.last} are missing"
                          f" (the first: {self.first})")
        elif self.first - 1 > frames.first:
            self.state = f"frames {frames.first}..{self.first - 1} are complete in {run.output}"
        elif self.first - 1 == frames.first:
            self.state = f"frame {frames.first} is complete in {run.output}"
        else:
            self.state = "no frame was finished"

    @staticmethod
    def close(manifest: Manifest, status: str) -> None:
        try:
            manifest.finish_run("", status=status)
        except OSError:
            pass  # the disk may be what failed; the synced journal still has every frame


class Throughput:
    """The progress bar, timed by the frames' arrival: N workers dream N frames at once,
    so one worker's seconds for a frame would overstate the time left N times."""

    def __init__(self, progress: Progress):
        self.progress, self.timer = progress, Timer()

    def frame_done(self, k: int, seconds: float) -> None:
        self.progress.frame_done(k, self.timer.lap())

    def info(self, text: str, level: int = 1) -> None:
        self.progress.info(text, level)
