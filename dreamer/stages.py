"""Stages 1 and 3 of DeepDreamVideo, the GIF maker and the all-in-one command.

Stage 1 turns a video into numbered frames (`%08d.png|jpg` from 1) and records what stage 3
needs in `FRAMES_DIR/frames.json`; stage 3 turns a contiguous run of (dreamed) frames back
into an H.264 mp4 with the original's sound under it, in sync.

    python -m dreamer.stages extract [ffmpeg|avconv|mplayer] VIDEO FRAMES_DIR [png|jpg]
    python -m dreamer.stages assemble [ffmpeg|avconv|mplayer] FRAMES_DIR ORIGINAL [png|jpg]
    python -m dreamer.stages gif FRAMES_DIR [png|jpg] [--original VIDEO]
    python -m dreamer.stages all VIDEO [-- STAGE-2 FLAGS]

1_movie2frames.sh, 3_frames2movie.sh and frames2gif.sh are thin wrappers around this.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime, timezone
from fractions import Fraction
from pathlib import Path

from dreamer import ffmpeg
from dreamer.errors import DreamerError
from dreamer.ffmpeg import FFmpegError, VideoInfo
from dreamer.frames import FRAME_RE, IMAGE_TYPES, FrameSet, check_sizes, frame_name

log = logging.getLogger("dreamer.stages")   # not __name__: "__main__" under -m

RECORD_NAME = "frames.json"
MANIFEST_NAME = "dream_manifest.json"   # stage 2's record in its output folder
TOOLS = ("ffmpeg", "avconv", "mplayer")
EXTRACT_PREFIX = ".dreamer-extract-"
# Audio an mp4 holds that plays everywhere; anything else is re-encoded once, to AAC.
COPY_CODECS = ("aac", "mp3")
CRF = 18            # x264: visually lossless for most material, sizes stay sane
AUDIO_BITRATE = "192k"
GIF_MAX_FPS = 50    # GIF delays are centiseconds and browsers slow anything under 2


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# mkstemp makes 0600 files; a finished video gets the mode any new file gets.
FILE_MODE = 0o666 & ~_umask()


# --- tools ----------------------------------------------------------------------------

def tool_exe(tool: str, stage: int) -> str:
    """The program behind a tool name, or a one-line error saying what to do instead."""
    if tool == "ffmpeg":
        return ffmpeg.find_ffmpeg()
    script = "./1_movie2frames.sh" if stage == 1 else "./3_frames2movie.sh"
    if tool == "avconv":
        exe = shutil.which("avconv")
        if not exe:
            raise DreamerError(f"avconv is not installed (libav is gone from current "
                               f"distributions); use ffmpeg instead: {script} ffmpeg ...")
        return exe
    if tool == "mplayer":
        name = "mplayer" if stage == 1 else "mencoder"
        exe = shutil.which(name)
        if not exe:
            raise DreamerError(f"{name} is not installed; install it (e.g. apt install "
                               f"{name}) or use ffmpeg instead: {script} ffmpeg ...")
        return exe
    raise DreamerError(f"unknown tool '{tool}'; use one of {', '.join(TOOLS)}")


def _check_image_type(image_type: str | None) -> None:
    if image_type is not None and image_type not in IMAGE_TYPES:
        raise DreamerError(f"unknown image type '{image_type}'; use png or jpg")


def _pattern(folder: Path, image_type: str) -> str:
    """An image2 pattern for `folder`; a literal % in the path is written %%."""
    return str(folder.absolute()).replace("%", "%%") + f"/%08d.{image_type}"


def _frames_input(exe: str, frames: FrameSet, fps: Fraction) -> list[str]:
    """Input options reading exactly `frames` as a constant-rate video. The pattern type is
    explicit because old ffmpeg defaulted to glob_sequence, where * ? [ in a path match."""
    kind = [] if ffmpeg.is_avconv(exe) else ["-pattern_type", "sequence"]
    return ["-framerate", str(fps), "-start_number", str(frames.first), *kind,
            "-i", _pattern(frames.folder, frames.image_type)]


def _seconds(t: Fraction) -> str:
    return f"{float(t):.6f}"    # ffmpeg counts time in microseconds


def _same_file(a: str | Path, b: str | Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


# --- stage 1's record -----------------------------------------------------------------

def _record(info: VideoInfo, image_type: str, count: int, size: tuple[int, int],
            tool: str) -> dict:
    def frac(x):
        return None if x is None else str(x)
    stat = info.path.stat()
    return {
        "tool": "DeepDreamVideo", "kind": "stage 1 frames", "version": 1,
        "source": str(info.path.absolute()), "source_size": stat.st_size,
        "fps": str(info.fps), "fps_float": float(info.fps), "vfr": info.vfr,
        "declared_fps": frac(info.declared_fps), "video_start": str(info.video_start),
        "frame_count": count, "first": 1, "last": count, "image_type": image_type,
        "width": size[0], "height": size[1], "has_audio": info.has_audio,
        "audio_codec": info.audio_codec, "sample_rate": info.sample_rate,
        "extracted_with": tool,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def read_record(folder: str | Path) -> dict | None:
    """Stage 1's record in `folder`, or None if there is none (or it is someone else's)."""
    path = Path(folder) / RECORD_NAME
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        Fraction(data["fps"]), Fraction(data["video_start"])  # noqa: B018 - shape check
    except (OSError, ValueError, KeyError, TypeError, ZeroDivisionError):
        return None
    return data if data.get("tool") == "DeepDreamVideo" else None


def _records_near(frames_dir: Path):
    """Stage 1 records that may describe these frames: in `frames_dir` itself (frames
    from stage 1) or in the input folder stage 2's manifest names (dreamed frames)."""
    candidates = [frames_dir]
    try:
        runs = json.loads((frames_dir / MANIFEST_NAME).read_text(encoding="utf-8"))["runs"]
        source = Path(runs[-1]["parameters"]["input"])
        candidates += [source, frames_dir.parent / source]
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        pass
    for folder in candidates:
        record = read_record(folder)
        if record:
            yield record


def find_record(frames_dir: Path, original: Path | None = None) -> dict | None:
    """The stage 1 record for these frames; with `original`, only one made from it."""
    for record in _records_near(Path(frames_dir)):
        if original is None or _same_file(record["source"], original):
            return record
    return None


# --- stage 1 ---------------------------------------------------------------------------

def _prepare_frames_dir(frames_dir: Path) -> tuple[bool, list[str]]:
    """(whether we created it, stage 1's own earlier entries in it). Refuses a folder
    holding anything else: the original script wiped it, we never delete the user's files."""
    if frames_dir.exists() and not frames_dir.is_dir():
        raise DreamerError(f"{frames_dir} is a file, not a folder; choose a folder for the "
                           "frames")
    if not frames_dir.exists():
        try:
            frames_dir.mkdir(parents=True)
        except OSError as e:
            raise DreamerError(f"cannot create {frames_dir} ({e.strerror}); choose another "
                               "folder") from None
        return True, []
    names = sorted(os.listdir(frames_dir))
    has_record = RECORD_NAME in names and read_record(frames_dir) is not None
    stray = [n for n in names if not (FRAME_RE.match(n) or n.startswith(EXTRACT_PREFIX)
                                      or (n == RECORD_NAME and has_record))]
    if stray:
        raise DreamerError(f"{frames_dir} already holds other files (e.g. '{stray[0]}'); "
                           "stage 1 only replaces its own frames: choose an empty or new "
                           "folder")
    if any(FRAME_RE.match(n) for n in names) and not has_record:
        raise DreamerError(f"{frames_dir} holds frames that stage 1 did not make (no "
                           f"{RECORD_NAME}); move them away or choose an empty or new folder")
    return False, names


def _extract_args(exe: str, info: VideoInfo, image_type: str, folder: Path) -> list[str]:
    args = ["-i", str(info.path.absolute()), "-map", f"0:{info.video_index}"]
    if info.vfr:
        args += ["-vf", f"fps={info.fps}"]
    args += ffmpeg.passthrough_flags(exe)
    if image_type == "png":
        args += ["-pix_fmt", "rgb24"]          # 8-bit RGB even from 10-bit sources
    else:
        args += ["-q:v", "2", "-pix_fmt", "yuvj444p"]   # high quality, no chroma halving
    return args + ["-start_number", "1", "-f", "image2", _pattern(folder, image_type)]


def _mplayer_string(value: str) -> str:
    """MPlayer's length-prefixed sub-option syntax, so ':' or ',' in a path is harmless."""
    return f"%{len(value.encode())}%{value}"


def mplayer_extract_cmd(exe: str, video: Path, image_type: str, folder: Path) -> list[str]:
    vo = "png:z=6" if image_type == "png" else "jpeg:quality=95"
    outdir = _mplayer_string(str(folder.absolute()))
    # mplayer's png/jpeg outputs name frames 00000001.png ..., exactly our numbering.
    return [exe, "-really-quiet", "-nosound", "-benchmark", "-vo", f"{vo}:outdir={outdir}",
            str(video.absolute())]


def _written_frames(folder: Path, image_type: str) -> int:
    numbers = sorted(int(m[1]) for n in os.listdir(folder)
                     if (m := FRAME_RE.match(n)) and m[2] == image_type)
    if not numbers:
        raise DreamerError("no frames came out of the video; check that it plays")
    if numbers != list(range(1, len(numbers) + 1)):
        raise DreamerError("the extracted frames are not numbered 1..N; try ffmpeg")
    return len(numbers)


def extract_frames(video: str | Path, frames_dir: str | Path, image_type: str = "png",
                   tool: str = "ffmpeg") -> dict:
    """Stage 1: every frame of `video` into `frames_dir`, plus frames.json. Returns it."""
    _check_image_type(image_type)
    video, frames_dir = Path(video), Path(frames_dir)
    exe = tool_exe(tool, 1)
    info = ffmpeg.probe(video)
    if info.vfr and tool == "mplayer":
        raise DreamerError(f"{video} has a variable frame rate, which mplayer cannot make "
                           "constant; use ffmpeg: ./1_movie2frames.sh ffmpeg ...")
    created, old = _prepare_frames_dir(frames_dir)
    if info.vfr:
        log.info(f"note: {video} has a variable frame rate; converting it to a constant "
                 f"{info.fps} fps ({float(info.fps):.3f}, its average)")
    work = Path(tempfile.mkdtemp(prefix=EXTRACT_PREFIX, dir=frames_dir))
    try:
        if tool == "mplayer":
            ffmpeg.run_tool(mplayer_extract_cmd(exe, video, image_type, work),
                            f"extracting frames from {video}")
        else:
            ffmpeg.run(exe, _extract_args(exe, info, image_type, work),
                       f"extracting frames from {video}", progress=True)
        count = _written_frames(work, image_type)
        size = check_sizes(FrameSet(work, image_type, 1, count))
        record = _record(info, image_type, count, size, tool)
        (work / RECORD_NAME).write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
        _swap_in(work, frames_dir, old, image_type, count)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        if created:
            _remove_if_empty(frames_dir)
        raise
    shutil.rmtree(work, ignore_errors=True)
    return record


def _swap_in(work: Path, frames_dir: Path, old: list[str], image_type: str,
             count: int) -> None:
    """Replaces stage 1's earlier frames by the new ones. The old record stays until the
    end, so an interrupted swap still leaves a folder stage 1 recognises as its own."""
    for name in old:
        if FRAME_RE.match(name):
            (frames_dir / name).unlink(missing_ok=True)
        elif name.startswith(EXTRACT_PREFIX) and (frames_dir / name) != work:
            shutil.rmtree(frames_dir / name, ignore_errors=True)   # an earlier crash's
    for k in range(1, count + 1):
        name = frame_name(k, image_type)
        os.replace(work / name, frames_dir / name)
    os.replace(work / RECORD_NAME, frames_dir / RECORD_NAME)


def _remove_if_empty(folder: Path) -> None:
    with suppress(OSError):
        folder.rmdir()


# --- frames for stage 3 and the GIF ---------------------------------------------------

def scan_frames(folder: str | Path, image_type: str | None = None, first: int | None = None,
                last: int | None = None) -> FrameSet:
    """The contiguous run of frames in `folder` (e.g. 101..250 after `-sf 101 -ef 250`),
    checked to have no gap; `first`/`last` narrow it."""
    _check_image_type(image_type)
    folder = Path(folder)
    if not folder.is_dir():
        raise DreamerError(f"frames folder {folder} does not exist; run stages 1 and 2 "
                           "first, or check the path")
    found: dict[str, set[int]] = {t: set() for t in IMAGE_TYPES}
    for name in os.listdir(folder):
        m = FRAME_RE.match(name)
        if m:
            found[m[2]].add(int(m[1]))
    if image_type is None:
        present = [t for t in IMAGE_TYPES if found[t]]
        if len(present) > 1:
            raise DreamerError(f"{folder} holds both png and jpg frames; name the type to "
                               "use (png or jpg) or move one set away")
        image_type = present[0] if present else "png"
    numbers = found[image_type]
    if not numbers:
        raise DreamerError(f"no frames named like 00000001.{image_type} in {folder}; run "
                           "stages 1 and 2 first, or check the folder and the image type")
    lo = min(numbers) if first is None else first
    hi = max(numbers) if last is None else last
    if lo < 1 or lo > hi:
        raise DreamerError(f"bad frame range {lo}..{hi}; frames are numbered from 1")
    missing = [k for k in range(lo, hi + 1) if k not in numbers]
    if missing:
        raise DreamerError(f"frame {frame_name(missing[0], image_type)} is missing from "
                           f"{folder} ({len(missing)} missing in {lo}..{hi}); dream the "
                           "missing frames or move the stray ones away")
    return FrameSet(folder, image_type, lo, hi)


def _rate_and_start(frames_dir: Path, original: Path, info: VideoInfo
                    ) -> tuple[Fraction, Fraction]:
    """The exact rate the frames were made at and where frame 1 sits in the original:
    stage 1's record when it describes this video, else the probe (same rule as stage 1)."""
    record = find_record(frames_dir, original)
    if record:
        return Fraction(record["fps"]), Fraction(record["video_start"])
    return info.fps, info.video_start


# --- output files ---------------------------------------------------------------------

def check_output(output: Path, overwrite: bool, protect: tuple[Path, ...] = ()) -> Path:
    """Refuses, before any work, an output that exists (unless `overwrite`), is a folder,
    is one of the inputs, or cannot be written."""
    if output.is_dir():
        raise DreamerError(f"output {output} is a folder; name a file with -o")
    if not output.parent.is_dir():
        raise DreamerError(f"folder {output.parent} does not exist; create it or choose "
                           "another output with -o")
    for path in protect:
        if _same_file(output, path):
            raise DreamerError(f"output {output} is the input {path}; choose another name "
                               "with -o")
    if output.exists() and not overwrite:
        raise DreamerError(f"{output} already exists; pass --overwrite to replace it, or "
                           "choose another name with -o")
    if not os.access(output.parent, os.W_OK):
        raise DreamerError(f"cannot write to {output.parent}; fix its permissions or choose "
                           "another output with -o")
    return output


@contextmanager
def _partial(output: Path, suffix: str):
    """A temporary name beside `output` for the tool to write to; removed if unused."""
    fd, tmp = tempfile.mkstemp(prefix=f".{output.name}.", suffix=f".part{suffix}",
                               dir=output.parent)
    os.close(fd)
    try:
        yield Path(tmp)
    finally:
        Path(tmp).unlink(missing_ok=True)


def _publish(tmp: Path, output: Path, overwrite: bool) -> None:
    """Renames the finished file into place; without `overwrite`, never over a file that
    appeared meanwhile (a hard link fails if the name exists; rename would not)."""
    os.chmod(tmp, FILE_MODE)
    if overwrite:
        os.replace(tmp, output)
        return
    try:
        os.link(tmp, output)
    except FileExistsError:
        raise DreamerError(f"{output} appeared while we worked; it was left alone, run "
                           "again with --overwrite or another -o") from None
    except OSError:    # a file system without hard links
        if output.exists():
            raise DreamerError(f"{output} already exists; pass --overwrite to replace "
                               "it") from None
        os.replace(tmp, output)


# --- stage 3 ---------------------------------------------------------------------------

@dataclass(frozen=True)
class AudioPlan:
    """What goes under the frames: nothing, the original's packets copied, or AAC.
    `start` is seconds into the original, `duration` the frames' duration."""
    mode: str                  # "none" | "copy" | "aac"
    start: Fraction = Fraction(0)
    duration: Fraction = Fraction(0)
    index: int | None = None
    sample_rate: int | None = None
    note: str | None = None


def plan_audio(info: VideoInfo, start: Fraction, duration: Fraction,
               can_copy: bool = True) -> AudioPlan:
    if not info.has_audio:
        return AudioPlan("none", note=f"{info.path.name} has no audio: the video is silent")
    if start >= info.audio_end:
        return AudioPlan("none", note=f"{info.path.name}'s audio ends before these frames: "
                         "the video is silent")
    # Copy only when the packets cover the whole span: copying cannot pad with silence.
    covered = info.audio_start <= start and info.audio_end >= start + duration
    mode = "copy" if can_copy and covered and info.audio_codec in COPY_CODECS else "aac"
    return AudioPlan(mode, start, duration, info.audio_index, info.sample_rate)


def _exact_audio_filter(plan: AudioPlan) -> str:
    """Decoded audio cut to the sample: silence in front if the original's sound starts
    late, silence after if it ends early, and exactly `duration` long."""
    rate = plan.sample_rate or 48000
    samples = round(plan.duration * rate)
    return f"aresample=async=1:first_pts=0,apad,atrim=end_sample={samples}"


def _video_filter(exe: str) -> str:
    pad = "pad=ceil(iw/2)*2:ceil(ih/2)*2"      # yuv420p needs even sizes
    if ffmpeg.is_avconv(exe):
        return f"{pad},format=yuv420p"
    chain = f"{pad},scale=out_color_matrix=bt709:out_range=tv,format=yuv420p"
    version = ffmpeg.version_of(exe)
    if version is None or version >= (5, 0):
        # Recent ffmpeg takes colour tags from the frames, not from -color_* options.
        chain += ",setparams=colorspace=bt709:color_primaries=bt709:color_trc=bt709"
    return chain


def ffmpeg_assemble_args(exe: str, frames: FrameSet, fps: Fraction, original: Path,
                         plan: AudioPlan, out: Path, crf: int = CRF) -> list[str]:
    avconv = ffmpeg.is_avconv(exe)
    count = frames.last - frames.first + 1
    args = _frames_input(exe, frames, fps)
    if plan.mode != "none":
        if plan.start > 0:
            args += ["-ss", _seconds(plan.start)]   # before -i: a sample-accurate seek
        args += ["-i", str(original.absolute())]
    args += ["-map", "0:v:0"] + (["-map", f"1:{plan.index}"] if plan.mode != "none" else [])
    args += ["-frames:v", str(count), "-vf", _video_filter(exe), "-c:v", "libx264",
             "-preset", "medium", "-crf", str(crf), "-pix_fmt", "yuv420p"]
    if not avconv:
        args += ["-colorspace", "bt709", "-color_primaries", "bt709", "-color_trc", "bt709"]
    if plan.mode == "copy":
        # Packets before the cut are kept and hidden by the mp4 edit list, so the sound
        # starts at the exact sample; copied packets end within one packet (~21 ms) of
        # the last frame (only re-encoding cuts the end to the sample).
        args += ["-c:a", "copy", "-copypriorss:a", "1", "-t", _seconds(plan.duration)]
    elif plan.mode == "aac":
        args += ["-af", _exact_audio_filter(plan), "-c:a", "aac", "-b:a", AUDIO_BITRATE]
    return args + ["-movflags", "+faststart", "-f", "mp4", "-y", str(out)]


def mencoder_cmd(exe: str, frames: FrameSet, fps: Fraction, size: tuple[int, int],
                 frame_list: Path, wav: Path | None, out: Path, crf: int = CRF) -> list[str]:
    """MPlayer's encoder: frames listed in a file (any path is safe), x264, the exact-cut
    audio from `wav` as mp3, in an mp4."""
    w, h = size
    cmd = [exe, f"mf://@{frame_list.absolute()}",
           "-mf", f"fps={float(fps):.9f}:type={frames.image_type}", "-ofps", str(fps)]
    if w % 2 or h % 2:
        cmd += ["-vf", f"expand={w + w % 2}:{h + h % 2}:0:0"]
    cmd += ["-ovc", "x264", "-x264encopts", f"crf={crf}:global_header"]
    if wav is not None:
        cmd += ["-audiofile", str(wav), "-oac", "mp3lame", "-lameopts", "cbr:br=192"]
    else:
        cmd += ["-nosound"]
    return cmd + ["-of", "lavf", "-lavfopts", "format=mp4", "-o", str(out)]


def _assemble_mencoder(exe: str, frames: FrameSet, fps: Fraction, size, original: Path,
                       plan: AudioPlan, out: Path, tmp: Path) -> None:
    frame_list = tmp / "frames.txt"
    frame_list.write_text("".join(f"{frames.path(k).absolute()}\n" for k in frames.numbers),
                          encoding="utf-8")
    wav = None
    if plan.mode != "none":
        # mencoder cannot cut to the sample; ffmpeg (always there via imageio-ffmpeg)
        # cuts the sound exactly into a WAV that mencoder then encodes.
        wav = tmp / "audio.wav"
        args = (["-ss", _seconds(plan.start)] if plan.start > 0 else [])
        ffmpeg.run(ffmpeg.find_ffmpeg(),
                   args + ["-i", str(original.absolute()), "-map", f"0:{plan.index}",
                           "-af", _exact_audio_filter(plan), "-c:a", "pcm_s16le", "-f",
                           "wav", str(wav)], f"cutting the audio of {original}")
    ffmpeg.run_tool(mencoder_cmd(exe, frames, fps, size, frame_list, wav, out),
                    f"encoding {frames.folder} with mencoder")


def default_output(frames_dir: Path, suffix: str) -> Path:
    """`<FRAMES_DIR name><suffix>` in the current directory, as the original scripts did."""
    name = frames_dir.absolute().name or "frames"
    return Path.cwd() / f"{name}{suffix}"


def assemble_video(frames_dir: str | Path, original: str | Path, image_type: str | None = None,
                   output: str | Path | None = None, overwrite: bool = False,
                   tool: str = "ffmpeg", first: int | None = None, last: int | None = None,
                   crf: int = CRF) -> Path:
    """Stage 3: the frames in `frames_dir` as an H.264 yuv420p mp4 at the original's exact
    rate, with the original's audio from frame `first`'s time for as long as the frames."""
    _check_image_type(image_type)
    if not 0 <= crf <= 51:
        raise DreamerError(f"bad --crf {crf}; x264 takes 0 (lossless) to 51, 18 is a good "
                           "default")
    frames_dir, original = Path(frames_dir), Path(original)
    frames = scan_frames(frames_dir, image_type, first, last)
    out_path = Path(output) if output else default_output(frames_dir, "_done.mp4")
    check_output(out_path, overwrite, protect=(original,))
    exe = tool_exe(tool, 3)
    info = ffmpeg.probe(original)
    size = check_sizes(frames)
    fps, video_start = _rate_and_start(frames_dir, original, info)
    count = frames.last - frames.first + 1
    plan = plan_audio(info, video_start + (frames.first - 1) / fps, count / fps,
                      can_copy=tool == "ffmpeg")
    if plan.note:
        log.info(f"note: {plan.note}")
    with tempfile.TemporaryDirectory(prefix="dreamer-") as tmp, \
            _partial(out_path, ".mp4") as partial:
        if tool == "mplayer":
            _assemble_mencoder(exe, frames, fps, size, original, plan, partial, Path(tmp))
        else:
            ffmpeg.run(exe, ffmpeg_assemble_args(exe, frames, fps, original, plan, partial,
                                                 crf), f"encoding {out_path.name}",
                       progress=True)
        _publish(partial, out_path, overwrite)
    audio = {"none": "no audio", "copy": "audio copied",
             "aac": "audio re-encoded to AAC"}[plan.mode]
    print(f"wrote {out_path}: frames {frames.first}..{frames.last} at {fps} fps "
          f"({float(count / fps):.3f} s), {audio}")
    return out_path


# --- GIF -----------------------------------------------------------------------------

def _gif_rate(frames_dir: Path, fps, original) -> Fraction:
    if fps:
        try:
            rate = Fraction(str(fps))
        except (ValueError, ZeroDivisionError):
            rate = Fraction(0)
        if rate <= 0:
            raise DreamerError(f"bad frame rate '{fps}'; give e.g. --fps 25 or 30000/1001")
        return rate
    if original:
        original = Path(original)
        record = find_record(frames_dir, original)
        return Fraction(record["fps"]) if record else ffmpeg.probe(original).fps
    record = find_record(frames_dir)
    if record:
        return Fraction(record["fps"])
    raise DreamerError(f"cannot tell the frame rate of {frames_dir}; pass the original video "
                       "with --original, or --fps")


def make_gif(frames_dir: str | Path, output: str | Path | None = None,
             image_type: str | None = None, fps=None, original: str | Path | None = None,
             width: int | None = None, overwrite: bool = False) -> Path:
    """A looping GIF of the frames with a palette made for them (palettegen/paletteuse),
    at the source's rate (at most 50 fps, which GIF timing allows)."""
    frames_dir = Path(frames_dir)
    frames = scan_frames(frames_dir, image_type)
    out_path = Path(output) if output else default_output(frames_dir, ".gif")
    check_output(out_path, overwrite)
    if width is not None and width < 2:
        raise DreamerError(f"bad width {width}; give at least 2 pixels")
    rate = _gif_rate(frames_dir, fps, original)
    filters = [f"fps={GIF_MAX_FPS}"] if rate > GIF_MAX_FPS else []
    if width:
        filters.append(f"scale={width}:-1:flags=lanczos")
    chain = ",".join(filters) or "null"
    exe = ffmpeg.find_ffmpeg()
    source = _frames_input(exe, frames, rate)
    count = str(frames.last - frames.first + 1)
    with tempfile.TemporaryDirectory(prefix="dreamer-") as tmp, \
            _partial(out_path, ".gif") as partial:
        # Two passes: the 256 colours chosen for these frames, then the frames mapped to
        # them; far better than GIF's default palette.
        palette = Path(tmp) / "palette.png"
        ffmpeg.run(exe, [*source, "-frames:v", count, "-vf",
                         f"{chain},palettegen=stats_mode=diff", "-update", "1",
                         str(palette)], "making the GIF's palette")
        ffmpeg.run(exe, [*source, "-i", str(palette), "-frames:v", count, "-lavfi",
                         f"[0:v]{chain}[x];[x][1:v]paletteuse=dither=sierra2_4a",
                         "-loop", "0", "-f", "gif", "-y", str(partial)],
                   f"writing {out_path.name}")
        _publish(partial, out_path, overwrite)
    print(f"wrote {out_path}: frames {frames.first}..{frames.last} at {rate} fps")
    return out_path


# --- all three stages -----------------------------------------------------------------

class StageFailed(DreamerError):
    """Stage 2 failed and has said why itself; carries its exit status."""

    def __init__(self, code: int):
        super().__init__(f"stage 2 failed (exit {code})")
        self.code = code


def _reusable_record(frames_dir: Path, video: Path, image_type: str) -> dict | None:
    """Stage 1's record when `frames_dir` already holds all frames of this very video
    (same file, same size) in this type, so a re-run (e.g. to resume stage 2) skips it."""
    record = read_record(frames_dir)
    if not (record and _same_file(record["source"], video)
            and record.get("source_size") == video.stat().st_size
            and record.get("image_type") == image_type):
        return None
    try:
        scan_frames(frames_dir, image_type, 1, record["frame_count"])
    except DreamerError:
        return None
    return record


def run_all(video: str | Path, workdir: str | Path | None = None, dream_args=(),
            output: str | Path | None = None, image_type: str = "png",
            overwrite: bool = False, tool: str = "ffmpeg") -> Path:
    """Stage 1 into WORKDIR/frames, stage 2 into WORKDIR/dreamed (with `dream_args`, the
    flags of 2_dreaming_time.py), stage 3 into `output` (default `<video>_dream.mp4`)."""
    from dreamer import dream_cli   # imports torch: only when dreaming

    video = Path(video)
    dream_args = [str(a) for a in dream_args]
    for flag in ("-i", "--input", "-o", "--output", "-it", "--image_type"):
        if flag in dream_args:
            raise DreamerError(f"the all-in-one command sets {flag} for stage 2 itself; "
                               "leave it out of the stage-2 flags")
    workdir = Path(workdir) if workdir else Path.cwd() / f"{video.stem}_dream"
    out_path = Path(output) if output else Path.cwd() / f"{video.stem}_dream.mp4"
    check_output(out_path, overwrite, protect=(video,))   # before hours of dreaming
    frames, dreamed = workdir / "frames", workdir / "dreamed"
    stage2 = ["-i", str(frames), "-o", str(dreamed), "-it", image_type, *dream_args]
    try:
        parsed = dream_cli.build_parser("stage 2").parse_args(stage2)
    except SystemExit as e:     # argparse has printed its one-line error
        raise StageFailed(e.code if isinstance(e.code, int) else 2) from None
    record = _reusable_record(frames, video, image_type)
    if record:
        log.info(f"note: reusing the frames in {frames} (extracted from this video before)")
    else:
        record = extract_frames(video, frames, image_type, tool)
    code = dream_cli.main(stage2, prog="stage 2")
    if code != 0:
        raise StageFailed(code)
    first = parsed.start_frame or 1
    last = parsed.end_frame or record["frame_count"]
    return assemble_video(dreamed, video, image_type, out_path, overwrite, tool, first,
                          min(last, record["frame_count"]))


# --- command line ---------------------------------------------------------------------

COMMANDS = {
    "extract": ("stage 1: a video into numbered frames",
                "[ffmpeg|avconv|mplayer] VIDEO FRAMES_DIR [png|jpg]"),
    "assemble": ("stage 3: numbered frames into an mp4 with the original's sound",
                 "[ffmpeg|avconv|mplayer] FRAMES_DIR ORIGINAL_VIDEO [png|jpg] "
                 "[-o OUT.mp4] [--overwrite]"),
    "gif": ("numbered frames into a looping GIF",
            "FRAMES_DIR [png|jpg] [--original VIDEO | --fps R] [--width W] [-o OUT.gif] "
            "[--overwrite]"),
    "all": ("stages 1, 2 and 3 in one go",
            "VIDEO [-w WORKDIR] [-o OUT.mp4] [--overwrite] [-it png|jpg] "
            "[-- STAGE-2 FLAGS]"),
}


class _OneLineParser(argparse.ArgumentParser):
    """A usage error is one line (and exit 2), not the usage text plus the error."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _split_positionals(parser, values: list[str], names: tuple[str, ...],
                       tool_first: bool) -> tuple[str, list[str], str | None]:
    """(tool, required values, image type) from `[TOOL] A B [png|jpg]`."""
    values = list(values)
    tool = "ffmpeg"
    if tool_first and values and values[0] in TOOLS:
        tool = values.pop(0)
    image_type = None
    if len(values) == len(names) + 1:
        image_type = values.pop()
        if image_type not in IMAGE_TYPES:
            parser.error(f"unknown image type '{image_type}'; use png or jpg")
    if len(values) != len(names):
        parser.error(f"expected {' '.join(names)}, got {len(values)} argument(s)")
    return tool, values, image_type


def _command_parser(command: str, prog: str) -> argparse.ArgumentParser:
    """One parser per command (argparse's subparsers cannot mix options and positionals
    freely, and `./3_frames2movie.sh DIR VIDEO -o X png` should work)."""
    description, usage = COMMANDS[command]
    p = _OneLineParser(prog=prog, usage=f"%(prog)s {usage}", description=description)
    p.add_argument("args", nargs="*", metavar="ARG", help=usage)
    p.add_argument("-v", "--verbose", action="store_true", help="also show the commands run")
    p.add_argument("-q", "--quiet", action="store_true", help="show only errors")
    if command in ("assemble", "gif", "all"):
        kind = "GIF" if command == "gif" else "video"
        default = {"assemble": "<FRAMES_DIR name>_done.mp4", "gif": "<FRAMES_DIR name>.gif",
                   "all": "<VIDEO name>_dream.mp4"}[command]
        p.add_argument("-o", "--output", help=f"the {kind} to write (default: {default} "
                       "in the current directory)")
        p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    if command == "assemble":
        p.add_argument("--crf", type=int, default=CRF, help="x264 quality, lower is better "
                       "(default: %(default)s)")
    if command == "gif":
        p.add_argument("--original", help="the video the frames came from (for the rate)")
        p.add_argument("--fps", help="frame rate, e.g. 25 or 30000/1001 (default: the "
                       "source's, from frames.json or --original)")
        p.add_argument("--width", type=int, help="scale to this width (default: keep)")
    if command == "all":
        p.add_argument("-w", "--workdir", help="folder for the frames (default: "
                       "<VIDEO name>_dream in the current directory)")
        p.add_argument("-it", "--image-type", choices=IMAGE_TYPES, default="png")
        p.add_argument("--tool", choices=TOOLS, default="ffmpeg")
    return p


def _dispatch(command: str, parser: argparse.ArgumentParser, args, stage2: list[str]) -> None:
    if command == "extract":
        tool, (video, frames_dir), image_type = _split_positionals(
            parser, args.args, ("VIDEO", "FRAMES_DIR"), True)
        record = extract_frames(video, frames_dir, image_type or "png", tool)
        print(f"wrote {record['frame_count']} frames ({frame_name(1, record['image_type'])}"
              f"..{frame_name(record['frame_count'], record['image_type'])}, "
              f"{record['width']}x{record['height']} at {record['fps']} fps) to {frames_dir}")
    elif command == "assemble":
        tool, (frames_dir, original), image_type = _split_positionals(
            parser, args.args, ("FRAMES_DIR", "ORIGINAL_VIDEO"), True)
        assemble_video(frames_dir, original, image_type, args.output, args.overwrite, tool,
                       crf=args.crf)
    elif command == "gif":
        _, (frames_dir,), image_type = _split_positionals(parser, args.args,
                                                          ("FRAMES_DIR",), False)
        make_gif(frames_dir, args.output, image_type, args.fps, args.original, args.width,
                 args.overwrite)
    else:
        if len(args.args) != 1:
            parser.error("expected one VIDEO; put stage-2 flags after --")
        run_all(args.args[0], args.workdir, stage2, args.output, args.image_type,
                args.overwrite, args.tool)


class _Terminated(KeyboardInterrupt):
    """SIGTERM, unwinding like Ctrl-C through the blocks that stop ffmpeg and remove
    temporary files."""


def _on_signal(signum, _frame):
    raise _Terminated


def _install_signal_handler():
    """SIGTERM cleans up like Ctrl-C; returns the handler to restore. signal.signal works
    only in the main thread (a library caller may run main() elsewhere)."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, _on_signal)


def _one_line(e: Exception) -> str:
    return " ".join(str(e).split())


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        name = prog or "python -m dreamer.stages"
        if argv[:1] in (["-h"], ["--help"]):
            print(f"usage: {name} {{{','.join(COMMANDS)}}} ...\n")
            for command, (description, usage) in COMMANDS.items():
                print(f"  {command} {usage}\n      {description}")
            return 0
        print(f"{name}: error: choose a command: {', '.join(COMMANDS)} (see --help)",
              file=sys.stderr)
        return 2
    command, argv = argv[0], argv[1:]
    stage2: list[str] = []
    if command == "all" and "--" in argv:
        cut = argv.index("--")
        argv, stage2 = argv[:cut], argv[cut + 1:]
    parser = _command_parser(command, prog or os.environ.get("DREAMER_PROG")
                             or f"python -m dreamer.stages {command}")
    args = parser.parse_intermixed_args(argv)
    return _run_command(command, parser, args, stage2)


def _run_command(command: str, parser, args, stage2: list[str]) -> int:
    """Runs one command; any DreamerError becomes one line on stderr and an exit status."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    root = logging.getLogger("dreamer")
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if args.verbose else
                  logging.WARNING if args.quiet else logging.INFO)
    previous = _install_signal_handler()
    try:
        _dispatch(command, parser, args, stage2)
    except StageFailed as e:
        return e.code
    except FFmpegError as e:
        if args.verbose and e.stderr_tail:
            print(e.stderr_tail, file=sys.stderr)
        print(f"error: {_one_line(e)}", file=sys.stderr)
        return 1
    except DreamerError as e:
        print(f"error: {_one_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        print("error: interrupted; temporary files were removed, run the command again",
              file=sys.stderr)
        return 143 if isinstance(e, _Terminated) else 130
    except OSError as e:
        where = f" ({e.filename})" if e.filename else ""
        print(f"error: {e.strerror or e}{where}; free disk space or fix permissions, then "
              "run again", file=sys.stderr)
        return 1
    finally:
        root.removeHandler(handler)
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return 0


if __name__ == "__main__":
    sys.exit(main())
