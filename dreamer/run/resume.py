"""Picking up where earlier work stopped: which frames are done, which seed they used,
and which dreamed frame a run carries in as its state.

A frame is done when it is on disk and the manifest says it was dreamed with the same
parameters and seed. Frames are pure functions of (parameters, seed, frame number,
state of the frame before), so a resumed or chained run reproduces an uninterrupted one.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

from dreamer.config import applies, default, keyed, settings
from dreamer.run import fingerprint
from dreamer.dream import schedule
from dreamer.values.keyframes import Keyframes, LayerKeys
from dreamer.errors import DreamerError
from dreamer.values.expr import shorten
from dreamer.video.frames import (FrameSet, commit, discard, frame_name, read_frame,
                                  stage_bytes)

STATE_DIR = ".dreamer"
_TEMP_RE = re.compile(r"^\.(\d{8}\.(png|jpg)|dream_manifest\.json|state_\d{8}\.png)\..*\.tmp$")


def dream_params(config, model: dict, guide: str | None, image_type: str,
                 schedules: schedule.Schedules | None = None) -> dict:
    """What keys a run's frames: every keyed setting (config.keyed) that applies. A fixed
    number stays a number and a schedule is its canonical text; the model and the guide
    are their files' sha1, the layers and the blend as the run reads them. A setting
    that needs another (the flow's) is keyed only when that one is on, and --flow only
    when on, so runs without them keep the keys they always had."""
    schedules = schedules or schedule.Schedules(config)
    params = {}
    for name, setting in keyed().items():
        value = getattr(config, name)
        if name in _DERIVED or not applies(config, name) or value is False:
            continue  # (an on/off setting is keyed only when on)
        if not setting.keyed_at_default and value == default(name):
            continue
        if name in schedules.numbers:
            value = _number(schedules.numbers[name])
        params[name] = list(value) if isinstance(value, tuple) else value
    blend = schedules.blend
    layers = schedules.layers
    params.update(blend=_number(blend) if isinstance(blend, Keyframes) else blend,
                  layers=layers.text() if isinstance(layers, LayerKeys) else list(layers),
                  model={role: m["sha1"] for role, m in model.items()}, guide=guide,
                  image_type=image_type)
    return params


# Keyed settings whose key is what the run made of them, not the value as given.
_DERIVED = ("blend", "layers", "guide_image", "image_type")


def _number(keys: Keyframes):
    return keys.at(1) if keys.constant else keys.text()


def params_key(params: dict) -> str:
    return hashlib.sha1(json.dumps(params, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class Plan:
    seed: int
    start: int | None          # first frame to dream; None when the range is all done
    seed_source: str           # "given", "resumed" or "drawn"
    done: frozenset[int] = frozenset()  # every frame of the range already done


def _differences(old: dict, new: dict) -> str:
    """What differs, as the flags that set it with the values the frames were made with
    (what to add to resume them): "--flow-smooth was 0.4 (now 0.7), seed was 5 (now 6)"."""
    flags = {name: f"--{s.long}" for name, s in settings().items() if s.long}
    names = [k for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)] or ["seed"]
    shown = [f"{flags.get(k, k)} was {shorten(repr(old.get(k)), 40)} "
             f"(now {shorten(repr(new.get(k)), 40)})" for k in names[:4]]
    return ", ".join(shown) + (f" and {len(names) - 4} more" if len(names) > 4 else "")


def plan_run(manifest, frames: FrameSet, output: Path, params: dict, seed: int | None,
             draw_seed, overwrite: bool) -> Plan:
    """Decides seed and first frame; refuses to replace frames it was not asked to."""
    key = params_key(params)
    records = manifest.frames
    on_disk = {k for k in frames.numbers if (output / frame_name(k, frames.image_type)).exists()}
    foreign = sorted(k for k in on_disk if k not in records)
    if foreign and not overwrite:
        raise DreamerError(f"{output} already holds {frame_name(foreign[0], frames.image_type)}"
                           f" ({len(foreign)} frame(s) in the range) not made by this tool; "
                           "add --overwrite to replace them, or choose another -o")
    done = {k: records[k] for k in on_disk if k in records}
    _check_made_of(frames, output, done, records, overwrite)
    source = "given"
    if seed is None:
        seeds = {r.get("seed") for r in done.values() if r.get("key") == key}
        seed, source = (seeds.pop(), "resumed") if len(seeds) == 1 else (draw_seed(), "drawn")
    same = {k for k, r in done.items() if r.get("key") == key and r.get("seed") == seed}
    other = sorted(set(done) - same)
    if other and not overwrite:
        old = manifest.run(done[other[0]]["run"]).get("dream", {})
        was = {**old.get("params", {}), "seed": old.get("seed")}
        raise DreamerError(
            f"frames {other[0]}..{other[-1]} in {output} were dreamed with other parameters "
            f"({_differences(was, {**params, 'seed': seed})}); add --overwrite to "
            "replace them, or choose another -o")
    if overwrite:
        same = set()
    start = next((k for k in frames.numbers if k not in same), None)
    return Plan(seed, start, source, frozenset(same))


def _check_made_of(frames: FrameSet, output: Path, done: dict, records: dict,
                   overwrite: bool) -> None:
    """Frames on disk are taken as done only when they are what was written, and were
    dreamed from the input frames there now: stage 1 re-run on another video into the
    same folder changes them. So does the frame before the range, whose dream the range
    carries in."""
    changed = sorted(k for k, r in done.items()
                     if not fingerprint.matches(r.get("output"), output / frame_name(
                         k, frames.image_type)))
    if changed and not overwrite:
        raise DreamerError(f"{frame_name(changed[0], frames.image_type)} in {output} was "
                           f"changed since it was dreamed ({len(changed)} frame(s) in the "
                           "range); add --overwrite to dream them again, or choose another -o")
    other = sorted(k for k, r in done.items()
                   if not fingerprint.matches(r.get("input"), frames.path(k)))
    if other and not overwrite:
        raise DreamerError(
            f"frames {other[0]}..{other[-1]} in {output} were dreamed from other input frames "
            f"than {frames.folder} holds now ({frame_name(other[0], frames.image_type)} "
            "differs: was stage 1 run on another video?); choose another -o, or add "
            "--overwrite to dream them again")
    before = frames.first - 1
    source = Path(frames.folder) / frame_name(before, frames.image_type)
    if before in records and source.exists() and not fingerprint.matches(
            records[before].get("input"), source):
        raise DreamerError(
            f"frame {before} in {output}, whose dream frame {frames.first} carries in, was "
            f"dreamed from another input frame than {source} now; dream from frame "
            f"{before} on (-sf {before}) or from the start, or choose another -o")


def state_path(output: Path, k: int) -> Path:
    return output / STATE_DIR / f"state_{k:08d}.png"


def save_state(output: Path, k: int, png: bytes | None) -> dict | None:
    """jpg frames are lossy: keep the exact dreamed frame (`png`, its encoded file) for
    the next frame's blend; None for png frames, which are lossless themselves. Returns
    the state file's fingerprint."""
    if png is None:
        return None
    path = state_path(output, k)
    path.parent.mkdir(exist_ok=True)
    tmp = stage_bytes(png, path)
    try:
        made = fingerprint.written(tmp, png)
        commit(tmp, path)
    except BaseException:
        discard(tmp)
        raise
    return made


def drop_state(output: Path, k: int) -> None:
    state_path(output, k).unlink(missing_ok=True)


def load_state(output: Path, k: int, image_type: str, size: tuple[int, int],
               record: dict | None = None):
    """The dreamed frame k as carried state (uint8 HxWx3), or (None, why not). `record`:
    frame k's manifest entry, whose fingerprint the file must match."""
    png = image_type == "png"
    path = output / frame_name(k, image_type) if png else state_path(output, k)
    if not path.exists():
        if image_type == "jpg" and (output / frame_name(k, "jpg")).exists():
            return None, (f"{frame_name(k, 'jpg')} has no lossless copy in {STATE_DIR}/ and "
                          "a jpg is never re-read as state")
        return None, None
    if record is not None and not fingerprint.matches(record.get("output" if png else "state"),
                                                      path):
        return None, f"{path.name} was changed or damaged since frame {k} was dreamed"
    frame = read_frame(path)
    if frame.shape[1::-1] != tuple(size):
        return None, (f"dreamed frame {k} is {frame.shape[1]}x{frame.shape[0]}, this run "
                      f"dreams at {size[0]}x{size[1]}")
    return frame, None


def remove_stale_temps(output: Path) -> None:
    """Temporary files of a run killed mid-write (only ours, matched by name)."""
    for folder in (output, output / STATE_DIR):
        if folder.is_dir():
            for p in folder.iterdir():
                if _TEMP_RE.match(p.name):
                    p.unlink(missing_ok=True)
