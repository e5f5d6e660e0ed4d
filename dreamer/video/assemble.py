"""Stage 3 of DeepDreamVideo: a contiguous run of (dreamed) numbered frames back into an
H.264 mp4 with the original's sound under it, in sync with whichever frames are there
(e.g. 101..250 after dreaming only those). Also the output-file handling the GIF maker
and the all-in-one command share: refuse before the work, publish only when done."""
from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from dreamer.video import ffmpeg
from dreamer.errors import DreamerError
from dreamer.video.extract import find_record
from dreamer.video.ffmpeg import VideoInfo
from dreamer.video.frames import (
    FILE_MODE,
    STAGE3,
    FrameSet,
    common_size,
    find_frames,
    frame_name,
)
from dreamer.video.tools import check_image_type, image2_pattern, same_file, tool_exe

log = logging.getLogger(__name__)

# Audio an mp4 holds that plays everywhere; anything else is re-encoded once, to AAC.
COPY_CODECS = ("aac", "mp3")
TEMP_PREFIX = "dreamer-"
# Samples in one packet of the encoders' output: the most their sound may differ from the
# plan (the last packet is padded to whole).
PACKET_SAMPLES = {"aac": 1024, "mp3": 1152}
CRF = 18            # x264: visually lossless for most material, sizes stay sane
AUDIO_BITRATE = "192k"


# --- the frames -----------------------------------------------------------------------

# The bytes every complete file of a type ends with: PNG's IEND chunk, JPEG's EOI marker.
_ENDINGS = {"png": b"\x00\x00\x00\x00IEND\xaeB`\x82", "jpg": b"\xff\xd9"}
_TAIL = 64     # bytes read from each frame's end; writers may pad a JPEG after EOI


def check_frames_complete(frames: FrameSet) -> None:
    """Refuses a frame cut short (a full disk, a copy that stopped): ffmpeg would encode
    what it can of it without a word. Reading each file's last bytes keeps this fast for
    thousands of frames; only a file without the usual ending is decoded in full."""
    ending = _ENDINGS[frames.image_type]
    for k in frames.numbers:
        path = frames.path(k)
        try:
            with open(path, "rb") as f:
                f.seek(max(0, os.fstat(f.fileno()).st_size - _TAIL))
                tail = f.read()
        except OSError as e:
            raise DreamerError(f"cannot read frame {path} ({e.strerror}); fix its "
                               "permissions or dream it again") from None
        if ending not in tail and not _decodes(path):
            raise DreamerError(f"frame {path} is truncated or damaged; dream it again (run "
                               "stage 2 with the same flags) or re-extract it")


def _decodes(path: Path) -> bool:
    try:
        with Image.open(path) as img:
            img.load()
        return True
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError):
        return False


def bounded_frames(frames: FrameSet, folder: Path) -> FrameSet:
    """`frames` as a set ffmpeg's image2 input reads to its end and no further: it stops at
    the first missing number, so when frames follow `last` (a narrowed range), the range
    is linked into `folder`. This bounds the video without -frames:v, which made ffmpeg 4
    and 5 close the whole output, sound included, once the video had its frames."""
    if not frames.path(frames.last + 1).exists():
        return frames
    folder.mkdir()
    for k in frames.numbers:
        os.symlink(frames.path(k).absolute(), folder / frame_name(k, frames.image_type))
    return FrameSet(folder, frames.image_type, frames.first, frames.last)


def frames_input(exe: str, frames: FrameSet, fps: Fraction) -> list[str]:
    """Input options reading exactly `frames` as a constant-rate video. The pattern type is
    explicit because old ffmpeg defaulted to glob_sequence, where * ? [ in a path match."""
    kind = [] if ffmpeg.is_avconv(exe) else ["-pattern_type", "sequence"]
    return ["-framerate", str(fps), "-start_number", str(frames.first), *kind,
            "-i", image2_pattern(frames.folder, frames.image_type)]


def _rate_and_start(frames_dir: Path, original: Path, info: VideoInfo
                    ) -> tuple[Fraction, Fraction]:
    """The exact rate the frames were made at and where frame 1 sits in the original:
    stage 1's record when it describes this video, else the probe (same rule as stage 1)."""
    record = find_record(frames_dir, original)
    if record:
        return Fraction(record["fps"]), Fraction(record["video_start"])
    return info.fps, info.video_start


# --- output files ---------------------------------------------------------------------

def default_output(frames_dir: Path, suffix: str) -> Path:
    """`<FRAMES_DIR name><suffix>` in the current directory, as the original scripts did."""
    name = frames_dir.absolute().name or "frames"
    return Path.cwd() / f"{name}{suffix}"


def check_output(output: Path, overwrite: bool, protect: tuple[Path, ...] = ()) -> Path:
    """Refuses, before any work, an output that exists (unless `overwrite`), is a folder,
    is one of the inputs, or cannot be written."""
    if output.is_dir():
        raise DreamerError(f"output {output} is a folder; name a file with -o")
    if not output.parent.is_dir():
        raise DreamerError(f"folder {output.parent} does not exist; create it or choose "
                           "another output with -o")
    for path in protect:
        if same_file(output, path):
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
def partial_output(output: Path, suffix: str):
    """A temporary name beside `output` for the tool to write to; removed if unused. It
    holds our pid, so that a later run can tell a killed run's leftover from a live one's."""
    fd, tmp = tempfile.mkstemp(prefix=f".{output.name}.{os.getpid()}.",
                               suffix=f".part{suffix}", dir=output.parent)
    os.close(fd)
    try:
        yield Path(tmp)
    finally:
        Path(tmp).unlink(missing_ok=True)


@contextmanager
def private_temp_dir():
    """A temporary folder named dreamer-<pid>-..., removed when done (or, after a kill -9,
    by the next run: see remove_stale)."""
    with tempfile.TemporaryDirectory(prefix=f"{TEMP_PREFIX}{os.getpid()}-") as tmp:
        yield Path(tmp)


def _dead(pid: int) -> bool:
    """Whether no process has this pid (one we may not signal is alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    return False


def remove_stale(output: Path, suffix: str) -> None:
    """Removes what killed runs left: our hidden `.<output name>.<pid>.*.part<suffix>`
    files beside `output` and `dreamer-<pid>-*` temp folders, where that pid is gone."""
    part = re.compile(rf"\.{re.escape(output.name)}\.(\d+)\.\w+\.part{re.escape(suffix)}")
    temp = re.compile(rf"{TEMP_PREFIX}(\d+)-\w+")
    for folder, pattern, remove in ((output.parent, part, os.unlink),
                                    (Path(tempfile.gettempdir()), temp, shutil.rmtree)):
        with suppress(OSError):
            for name in os.listdir(folder):
                m = pattern.fullmatch(name)
                if m and int(m[1]) != os.getpid() and _dead(int(m[1])):
                    log.debug("removing %s, left by a run that was killed", folder / name)
                    with suppress(OSError):
                        remove(folder / name)


def publish(tmp: Path, output: Path, overwrite: bool) -> None:
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


# --- the sound ------------------------------------------------------------------------

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
    packet: Fraction = Fraction(0)   # how far the written sound may be off: one packet


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
    rate = info.sample_rate or 48000
    packet = (info.audio_packet or Fraction(PACKET_SAMPLES["aac"], rate)) if mode == "copy" \
        else Fraction(PACKET_SAMPLES["aac"], rate)
    return AudioPlan(mode, start, duration, info.audio_index, info.sample_rate,
                     packet=packet, note=_padding_note(info, start, duration))


def _padding_note(info: VideoInfo, start: Fraction, duration: Fraction) -> str | None:
    """A sound that ends more than a second before the frames do is padded with silence:
    said, since it usually means the original is not the film the frames came from."""
    silent = start + duration - info.audio_end
    if silent <= 1:
        return None
    return (f"{info.path.name}'s sound ends {float(silent):.1f} s before the frames do: the "
            "rest of the video is silent; is it the film these frames came from?")


def _exact_audio_filter(plan: AudioPlan) -> str:
    """Decoded audio cut to the sample: silence in front if the original's sound starts
    late, silence after if it ends early, and exactly `duration` long."""
    rate = plan.sample_rate or 48000
    samples = round(plan.duration * rate)
    return f"aresample=async=1:first_pts=0,apad,atrim=end_sample={samples}"


def _seconds(t: Fraction) -> str:
    return f"{float(t):.6f}"    # ffmpeg counts time in microseconds


# --- the tools' commands --------------------------------------------------------------

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


def audio_input(plan: AudioPlan, original: Path) -> list[str]:
    """The original as the sound's input, read from `plan.start` for `plan.duration`.
    Both as input options: every release seeks and stops an input alike (-ss before -i
    is sample-accurate when decoding), and they leave the frames' input alone."""
    args = ["-ss", _seconds(plan.start)] if plan.start > 0 else []
    return args + ["-t", _seconds(plan.duration), "-i", str(original.absolute())]


def ffmpeg_assemble_args(exe: str, frames: FrameSet, fps: Fraction, original: Path,
                         plan: AudioPlan, out: Path, crf: int = CRF) -> list[str]:
    """The encode. `frames` must end where the video should (see bounded_frames): there is
    no -frames:v, whose interplay with the sound differs between releases."""
    args = frames_input(exe, frames, fps)
    if plan.mode != "none":
        args += audio_input(plan, original)
    args += ["-map", "0:v:0"] + (["-map", f"1:{plan.index}"] if plan.mode != "none" else [])
    args += ["-vf", _video_filter(exe), "-c:v", "libx264", "-preset", "medium", "-crf",
             str(crf), "-pix_fmt", "yuv420p"]
    if not ffmpeg.is_avconv(exe):
        args += ["-colorspace", "bt709", "-color_primaries", "bt709", "-color_trc", "bt709"]
    if plan.mode == "copy":
        # Packets before the cut are kept and hidden by the mp4 edit list, so the sound
        # starts at the exact sample; copied packets end within one packet (~21 ms) of
        # the last frame (only re-encoding cuts the end to the sample).
        args += ["-c:a", "copy", "-copypriorss:a", "1"]
    elif plan.mode == "aac":
        args += ["-af", _exact_audio_filter(plan), "-c:a", "aac", "-b:a", AUDIO_BITRATE]
    return args + ["-movflags", "+faststart", "-f", "mp4", "-y", str(out)]


def mencoder_cmd(exe: str, frames: FrameSet, fps: Fraction, size: tuple[int, int],
                 frame_list: Path, out: Path, crf: int = CRF) -> list[str]:
    """MPlayer's encoder, for the video alone: frames listed in a file (any path is safe),
    x264, in an mp4. (Given the sound too, Debian's mencoder drops a frame to keep its
    sync and pads the mp3, so the sound is put in by ffmpeg: _mux_sound.)"""
    w, h = size
    cmd = [exe, f"mf://@{frame_list.absolute()}",
           "-mf", f"fps={float(fps):.9f}:type={frames.image_type}", "-ofps", str(fps)]
    if w % 2 or h % 2:
        cmd += ["-vf", f"expand={w + w % 2}:{h + h % 2}:0:0"]
    cmd += ["-ovc", "x264", "-x264encopts", f"crf={crf}:global_header", "-nosound"]
    return cmd + ["-of", "lavf", "-lavfopts", "format=mp4", "-o", str(out)]


def _assemble_mencoder(exe: str, frames: FrameSet, fps: Fraction, size, original: Path,
                       plan: AudioPlan, out: Path, tmp: Path) -> None:
    frame_list = tmp / "frames.txt"
    frame_list.write_text("".join(f"{frames.path(k).absolute()}\n" for k in frames.numbers),
                          encoding="utf-8")
    video = out if plan.mode == "none" else tmp / "video.mp4"
    ffmpeg.run_tool(mencoder_cmd(exe, frames, fps, size, frame_list, video),
                    f"encoding {frames.folder} with mencoder", folder=video.parent)
    if plan.mode != "none":
        _mux_sound(video, original, plan, out)


def _mux_sound(video: Path, original: Path, plan: AudioPlan, out: Path) -> None:
    """mencoder's video, as it is, with the original's sound cut to the sample by ffmpeg
    (always there via imageio-ffmpeg), as the ffmpeg path cuts it."""
    args = ["-i", str(video.absolute()), *audio_input(plan, original),
            "-map", "0:v:0", "-map", f"1:{plan.index}", "-c:v", "copy"]
    if plan.mode == "copy":
        args += ["-c:a", "copy", "-copypriorss:a", "1"]
    else:
        args += ["-af", _exact_audio_filter(plan), "-c:a", "aac", "-b:a", AUDIO_BITRATE]
    ffmpeg.run(ffmpeg.find_ffmpeg(), args + ["-movflags", "+faststart", "-f", "mp4", "-y",
                                             str(out)],
               f"putting the sound of {original} to the video mencoder made", folder=out.parent)


# --- stage 3 ---------------------------------------------------------------------------

def _encode(exe: str, tool: str, frames: FrameSet, fps: Fraction, size: tuple[int, int],
            original: Path, plan: AudioPlan, out_path: Path, overwrite: bool,
            crf: int) -> ffmpeg.Written:
    """Encodes into a temporary file beside `out_path`, reads it back and publishes it only
    when it holds what was planned, so an interrupted or wrong run never leaves a video
    under the real name. Returns what the file holds."""
    remove_stale(out_path, ".mp4")
    with private_temp_dir() as tmp, partial_output(out_path, ".mp4") as partial:
        if tool == "mplayer":
            _assemble_mencoder(exe, frames, fps, size, original, plan, partial, tmp)
        else:
            source = bounded_frames(frames, tmp / "frames")
            ffmpeg.run(exe, ffmpeg_assemble_args(exe, source, fps, original, plan, partial,
                                                 crf), f"encoding {out_path.name}",
                       progress=True, folder=out_path.parent)
        written = _check_encoded(exe, tool, partial, out_path, frames, fps, plan)
        publish(partial, out_path, overwrite)
    return written


def _check_encoded(exe: str, tool: str, partial: Path, out_path: Path, frames: FrameSet,
                   fps: Fraction, plan: AudioPlan) -> ffmpeg.Written:
    """What the encoder wrote, refused unless it is every frame at `fps` with the sound
    planned (to within one packet of the encoder, or of the original when copied)."""
    reader = exe if tool == "ffmpeg" else ffmpeg.find_ffmpeg()
    slack = plan.packet
    if tool == "mplayer":
        slack = Fraction(PACKET_SAMPLES["mp3"], plan.sample_rate or 48000)
    return ffmpeg.check_written(
        partial, out_path.name, reader, frames=frames.last - frames.first + 1, fps=fps,
        audio=plan.duration if plan.mode != "none" else None, audio_slack=slack,
        writer=exe)


def assemble_video(frames_dir: str | Path, original: str | Path, image_type: str | None = None,
                   output: str | Path | None = None, overwrite: bool = False,
                   tool: str = "ffmpeg", first: int | None = None, last: int | None = None,
                   crf: int = CRF) -> Path:
    """Stage 3: the frames in `frames_dir` as an H.264 yuv420p mp4 at the original's exact
    rate, with the original's audio from frame `first`'s time for as long as the frames."""
    check_image_type(image_type)
    if not 0 <= crf <= 51:
        raise DreamerError(f"bad --crf {crf}; x264 takes 0 (lossless) to 51, 18 is a good "
                           "default")
    frames_dir, original = Path(frames_dir), Path(original)
    frames = find_frames(frames_dir, image_type, first, last, STAGE3)
    out_path = Path(output) if output else default_output(frames_dir, "_done.mp4")
    check_output(out_path, overwrite, protect=(original,))
    exe = tool_exe(tool, 3)
    info = ffmpeg.probe(original)
    size = common_size(frames)
    check_frames_complete(frames)
    fps, video_start = _rate_and_start(frames_dir, original, info)
    count = frames.last - frames.first + 1
    plan = plan_audio(info, video_start + (frames.first - 1) / fps, count / fps,
                      can_copy=tool == "ffmpeg")
    if plan.note:
        log.info(f"note: {plan.note}")
    written = _encode(exe, tool, frames, fps, size, original, plan, out_path, overwrite, crf)
    print(f"wrote {out_path}: {_summary(frames, fps, plan, written)}")
    return out_path


def _summary(frames: FrameSet, fps: Fraction, plan: AudioPlan,
             written: ffmpeg.Written) -> str:
    """What the file holds, as read back (it matched the plan, or it was refused)."""
    video = (f"frames {frames.first}..{frames.last} ({written.frames} frames) at {fps} fps "
             f"({float(written.frames / fps):.3f} s)")
    if written.audio_seconds is None:
        return f"{video}, no audio"
    how = {"copy": "audio copied", "aac": "audio re-encoded to AAC"}.get(plan.mode, "audio")
    return f"{video}, {how} ({float(written.audio_seconds):.3f} s)"
