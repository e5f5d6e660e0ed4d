"""ffmpeg for stages 1 and 3: finding it, running it safely, and probing a video.

There is no ffprobe here on purpose: the imageio-ffmpeg package ships ffmpeg alone, so every
fact comes from ffmpeg itself, from its `-i` report (streams, codecs, size) and from the
`framecrc` muxer, which prints every packet's timestamps exactly (rates, VFR, frame count).
"""
from __future__ import annotations

import ctypes
import logging
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass
from fractions import Fraction
from functools import cache, partial
from pathlib import Path
from statistics import median

from dreamer.errors import DreamerError

log = logging.getLogger(__name__)

# Rates cameras and editors use; a measured average this close to one is that rate.
STANDARD_RATES = tuple(Fraction(r) for r in (
    "24000/1001", "24", "25", "30000/1001", "30", "48", "50", "60000/1001", "60", "72",
    "90", "100", "120000/1001", "120", "10", "12", "15", "20"))
SNAP = Fraction(1, 200)          # 0.5 %
_DISCARD = 0x4                   # AV_PKT_FLAG_DISCARD, as framecrc prints it (F=0x..)

# Lines ffmpeg prints after the real error; the line worth showing comes before them.
_GENERIC = re.compile(r"Conversion failed|Terminating thread|Task finished|Error closing "
                      r"file|Error writing trailer|Nothing was written|exiting",
                      re.IGNORECASE)
_PREFIX = re.compile(r"^\[[^\]]*@ ?0x[0-9a-f]+\]\s*")
# ffmpeg's note that it skipped repeats of the line before: never the explanation.
_REPEATED = re.compile(r"^Last message repeated \d+ times?$", re.IGNORECASE)
_NO_SPACE = re.compile(r"No space left on device|\bENOSPC\b|Disk quota exceeded",
                       re.IGNORECASE)


ENV_VAR = "DREAMER_FFMPEG"      # names the ffmpeg to use, ahead of PATH and imageio-ffmpeg


class FFmpegError(DreamerError):
    """ffmpeg (or avconv, mencoder) exited non-zero, or wrote something other than what was
    planned. The message is one line; the last lines of its stderr are kept in
    `stderr_tail` for whoever wants the details."""

    def __init__(self, message: str, stderr_tail: str = "", returncode: int | None = None):
        super().__init__(message)
        self.stderr_tail = stderr_tail
        self.returncode = returncode


# --- which ffmpeg ------------------------------------------------------------------------

def locate() -> tuple[str, str]:
    """(the ffmpeg to run, where it came from): $DREAMER_FFMPEG, else `ffmpeg` on PATH (the
    user's choice wins), else the binary imageio-ffmpeg ships."""
    chosen = os.environ.get(ENV_VAR)
    if chosen:
        return _checked_choice(chosen), ENV_VAR
    on_path = shutil.which("ffmpeg")
    if on_path:
        return on_path, "from PATH"
    try:
        import imageio_ffmpeg
        exe = imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError, OSError):
        exe = None
    # imageio-ffmpeg hands back $IMAGEIO_FFMPEG_EXE unchecked: check it runs.
    if not exe or not os.access(exe, os.X_OK):
        raise DreamerError("ffmpeg not found; install it (e.g. apt install ffmpeg), "
                           f"pip install imageio-ffmpeg, or set {ENV_VAR}=/path/to/ffmpeg")
    return exe, "imageio-ffmpeg"


def find_ffmpeg() -> str:
    return locate()[0]


def _checked_choice(chosen: str) -> str:
    """$DREAMER_FFMPEG when it names a program that runs as ffmpeg; else one line saying
    what is wrong with it."""
    path = Path(chosen).expanduser()
    if not path.is_file():
        raise DreamerError(f"{ENV_VAR}={chosen} does not exist; point it at an ffmpeg "
                           "binary or unset it")
    if not os.access(path, os.X_OK):
        raise DreamerError(f"{ENV_VAR}={chosen} is not executable; chmod +x it or point "
                           f"{ENV_VAR} at another ffmpeg")
    if _version_text(str(path)) is None:
        raise DreamerError(f"{ENV_VAR}={chosen} does not run as ffmpeg ('-version' "
                           f"failed); point {ENV_VAR} at a working ffmpeg or unset it")
    return str(path)


def describe() -> str:
    """One line naming the ffmpeg stages 1 and 3 use, e.g.
    "ffmpeg: /usr/bin/ffmpeg (5.1.9, from PATH)"."""
    exe, origin = locate()
    return f"ffmpeg: {exe} ({version_string(exe) or 'unknown version'}, {origin})"


def is_avconv(exe: str) -> bool:
    return Path(exe).name.startswith("avconv")


@cache
def _version_text(exe: str) -> str | None:
    """The first line of `exe -version`, or None when it does not run like ffmpeg."""
    try:
        res = subprocess.run([exe, "-version"], stdin=subprocess.DEVNULL, capture_output=True,
                             text=True, errors="replace", timeout=60, **child_options())
    except (OSError, subprocess.SubprocessError):
        return None
    first = res.stdout.strip().splitlines()[:1]
    if res.returncode != 0 or not first or " version " not in first[0]:
        return None
    return first[0]


def version_string(exe: str) -> str | None:
    """The release a binary says it is ("5.1.9" for Debian's 5.1.9-0+deb12u1, "9.0.2" for
    n9.0.2-17-g2a571b6068); a git build's whole tag (N-112345-g...); None if it does not
    run."""
    text = _version_text(exe)
    if text is None:
        return None
    tag = re.search(r" version (\S*)", text)[1]
    m = re.match(r"n?(\d+(?:\.\d+)+)", tag)
    return m[1] if m else tag or None


def version_of(exe: str) -> tuple[int, int] | None:
    """(major, minor) of a release build; None for git builds and the unknown, which are
    taken to be recent."""
    m = re.match(r"(\d+)\.(\d+)", version_string(exe) or "")
    return (int(m[1]), int(m[2])) if m else None


def tool_and_version(exe: str) -> str:
    """"ffmpeg 5.1.9": for messages about what a binary did."""
    return f"{tool_name(exe)} {version_string(exe) or '(unknown version)'}"


def passthrough_flags(exe: str) -> list[str]:
    """Flags for one output image per decoded frame, no duplicates or drops. `-fps_mode`
    came in ffmpeg 5.1 and recent releases dropped `-vsync`, so the version picks."""
    version = version_of(exe)
    if is_avconv(exe) or (version is not None and version < (5, 1)):
        return ["-vsync", "passthrough"]
    return ["-fps_mode", "passthrough"]


def _base_flags(exe: str) -> list[str]:
    if is_avconv(exe):
        return ["-loglevel", "error"]
    return ["-hide_banner", "-nostdin", "-loglevel", "error"]


def tool_name(exe: str) -> str:
    """The tool's plain name for messages (imageio-ffmpeg's ffmpeg-linux-x86_64-v9.0.2 is
    "ffmpeg")."""
    name = Path(exe).name
    for known in ("ffmpeg", "avconv", "mencoder", "mplayer"):
        if name.startswith(known):
            return known
    return name


def full_disk(stderr_text: str, folder: Path | None = None) -> str | None:
    """What to say when a tool's stderr shows a write that failed for want of space (No
    space left on device, ENOSPC, a quota): "no space left on the disk of <folder>; free
    space and run again", naming `folder` (where the output goes); None otherwise."""
    if not _NO_SPACE.search(stderr_text):
        return None
    where = f"the disk of {folder}" if folder is not None else "the output folder's disk"
    return f"no space left on {where}; free space and run again"


def stderr_reason(stderr_tail: str, folder: Path | None = None) -> str:
    """The line of ffmpeg's stderr that says what went wrong, without the [tag @ 0x..];
    a full disk is said plainly, naming `folder` (where the output goes)."""
    no_space = full_disk(stderr_tail, folder)
    if no_space:
        return no_space
    lines = [_PREFIX.sub("", ln).strip() for ln in stderr_tail.splitlines()]
    lines = [ln for ln in lines if ln and not _REPEATED.match(ln)]
    for line in reversed(lines):
        if not _GENERIC.search(line):
            return line[:300]
    return lines[-1][:300] if lines else "no message"


def _die_with_parent(parent: int) -> None:
    """Runs in the child between fork and exec: the kernel sends it SIGKILL when its
    parent dies, so a kill -9 of Python leaves no ffmpeg writing on. The flag survives
    exec; it fires when the forking *thread* ends, and our callers wait in that thread."""
    _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:     # the parent died before the flag was set
        os._exit(1)


def _load_prctl():
    """libc's prctl, looked up in the parent (loading a library after fork is unsafe)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_PR_SET_PDEATHSIG = 1
_prctl = _load_prctl()


def child_options() -> dict:
    """Popen keywords that tie a child's life to ours where the OS allows it (Linux)."""
    if _prctl is None:
        return {}
    return {"preexec_fn": partial(_die_with_parent, os.getpid())}


# Where stderr is not a terminal (a log, a pipe), ffmpeg's progress becomes a plain line
# this often (seconds): long stages are never silent, and logs stay short.
LOG_EVERY = 5.0
_FRAMES_DONE = re.compile(rb"frame=\s*(\d+)")


def _pump(stream, tail: deque, what: str) -> None:
    """Shows ffmpeg's `-stats` progress while keeping the tail: as it is on a terminal,
    as a line every LOG_EVERY seconds elsewhere."""
    tty = sys.stderr.isatty()
    shown = time.monotonic()
    while True:
        chunk = stream.read1(4096) if hasattr(stream, "read1") else stream.read(4096)
        if not chunk:
            return
        tail.append(chunk)
        if tty:
            sys.stderr.write(chunk.decode("utf-8", "replace"))
        else:
            counts = _FRAMES_DONE.findall(chunk)
            if not counts or time.monotonic() - shown < LOG_EVERY:
                continue
            shown = time.monotonic()
            sys.stderr.write(f"{what}: {int(counts[-1])} frames so far\n")
        sys.stderr.flush()


def run_tool(cmd: list[str], what: str, *, stdout: bool = False,
             progress: bool = False, folder: Path | None = None,
             cwd: Path | None = None) -> bytes:
    """Runs an argument list (never a shell), logs it, and turns failure into FFmpegError.

    `what` completes "... failed": e.g. "extracting frames from x.mp4".
    `progress` shows ffmpeg's `-stats` (see _pump); stdout is returned if asked.
    `folder` is where the output goes, named when the disk is full; `cwd`, where it runs.
    """
    log.debug("running: %s", shlex.join(cmd))
    try:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE if stdout else subprocess.DEVNULL,
                                stderr=subprocess.PIPE, cwd=cwd, **child_options())
    except OSError as e:
        raise DreamerError(f"cannot run {cmd[0]}: {e.strerror}; reinstall it or choose "
                           "another tool") from None
    try:
        if progress and not stdout:
            tail: deque = deque(maxlen=64)
            _pump(proc.stderr, tail, what)
            proc.wait()
            out, err = b"", b"".join(tail)
        else:
            out, err = proc.communicate()
    except BaseException:
        # Interrupted (Ctrl-C, SIGTERM): no orphan ffmpeg writing on after we are gone.
        proc.kill()
        proc.wait()
        raise
    text = err.decode("utf-8", "replace")
    tail_text = "\n".join(text.splitlines()[-20:])
    # A full disk, even where the tool exits 0 regardless (ffmpeg 5.1 does when the
    # trailer cannot be written): what it wrote is cut short, and reading it back would
    # only say "Invalid data found".
    no_space = full_disk(text, folder)
    if no_space:
        raise FFmpegError(f"{what} failed: {no_space}", tail_text, proc.returncode)
    if proc.returncode != 0:
        reason = stderr_reason(tail_text, folder)
        raise FFmpegError(f"{what} failed ({tool_name(cmd[0])}: {reason}); "
                          "run again with -v for the command and its output",
                          tail_text, proc.returncode)
    return out


def run(exe: str, args: list[str], what: str, *, stdout: bool = False,
        progress: bool = False, folder: Path | None = None) -> bytes:
    """ffmpeg (or avconv) with quiet, non-interactive flags in front of `args`."""
    extra = ["-stats"] if progress and not is_avconv(exe) else []
    return run_tool([exe, *_base_flags(exe), *extra, *args], what, stdout=stdout,
                    progress=bool(extra), folder=folder)


# --- probing -------------------------------------------------------------------------

@dataclass(frozen=True)
class VideoInfo:
    """What stages 1 and 3 need to know about a video. Times are exact fractions of a
    second, measured from the start of the file (where `-ss 0` is)."""
    path: Path
    fps: Fraction                 # the constant rate frames are (to be) extracted at
    declared_fps: Fraction | None  # what the stream header claims
    vfr: bool
    frame_count: int              # packets in the video stream
    width: int
    height: int
    video_codec: str
    video_index: int              # ffmpeg's stream number, for -map 0:N
    video_start: Fraction
    video_duration: Fraction
    has_audio: bool = False
    audio_index: int | None = None
    audio_codec: str | None = None
    sample_rate: int | None = None
    audio_start: Fraction | None = None
    audio_end: Fraction | None = None
    audio_packet: Fraction | None = None   # the longest audio packet: what copying cuts by


@dataclass(frozen=True)
class _Stream:
    index: int
    kind: str
    codec: str
    details: str


def _header(exe: str, path: str) -> tuple[str, list[_Stream]]:
    """ffmpeg's `-i` report (it exits 1: no output named), parsed into format and streams."""
    cmd = [exe] + ([] if is_avconv(exe) else ["-hide_banner", "-nostdin"]) + ["-i", path]
    log.debug("running: %s", shlex.join(cmd))
    try:
        res = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                             errors="replace", timeout=120, **child_options())
    except (OSError, subprocess.SubprocessError) as e:
        raise DreamerError(f"cannot run {exe}: {e}; reinstall ffmpeg") from None
    text = res.stderr
    m = re.search(r"^Input #0, ([^ ]+), from", text, re.MULTILINE)
    if not m:
        raise FFmpegError(f"cannot read {path} as a video ({stderr_reason(text)}); check the "
                          "file name and that it is a video", text[-2000:], res.returncode)
    streams = [_Stream(int(s[1]), s[2], s[3], s[4]) for s in re.finditer(
        r"^\s*Stream #0:(\d+)\S*: (Video|Audio): (\w+)(.*)$", text, re.MULTILINE)]
    return m[1].rstrip(","), streams


def _packets(exe: str, path: str, maps: list[int]) -> dict[int, tuple[Fraction, list]]:
    """Per mapped stream: its time base and (pts, duration) of every packet, copied (not
    decoded) through the framecrc muxer, so this runs at disk speed."""
    args = ["-i", path]
    for index in maps:
        args += ["-map", f"0:{index}"]
    text = run(exe, args + ["-c", "copy", "-f", "framecrc", "-"],
               f"reading the timestamps of {path}", stdout=True).decode("ascii", "replace")
    return _parse_framecrc(text)


def _parse_framecrc(text: str) -> dict[int, tuple[Fraction, list]]:
    """framecrc's lines as {output stream: (time base, [(pts, duration), ...])}. Packets an
    edit list hides (flag 0x4, discard) are left out: no player shows them."""
    result: dict[int, tuple[Fraction, list]] = {}
    for line in text.splitlines():
        if line.startswith("#tb "):
            m = re.match(r"#tb (\d+): (\d+)/(\d+)", line)
            if m:
                result[int(m[1])] = (Fraction(int(m[2]), int(m[3])), [])
        elif line and not line.startswith("#"):
            fields = [f.strip() for f in line.split(",")]
            try:
                index, _dts, pts, duration = (int(f) for f in fields[:4])
            except ValueError:
                continue
            flags = next((int(f[2:], 16) for f in fields[6:] if f.startswith("F=")), 0)
            if index in result and pts > -(1 << 62) and not flags & _DISCARD:  # NOPTS
                result[index][1].append((pts, duration))
    return result


def _declared_rate(exe: str, path: str, index: int) -> Fraction | None:
    """The stream's nominal rate, exactly: ffmpeg gives a raw-video encoder the time base
    1/rate, and framecrc prints that time base. Decoding one frame also proves the video
    decodes at all."""
    text = run(exe, ["-i", path, "-map", f"0:{index}", "-frames:v", "1", "-f", "framecrc",
                     "-"], f"decoding {path}", stdout=True).decode("ascii", "replace")
    m = re.search(r"^#tb 0: (\d+)/(\d+)", text, re.MULTILINE)
    if not m or int(m[1]) == 0:
        return None
    rate = Fraction(int(m[2]), int(m[1]))
    return rate if 0 < rate <= 1000 else None   # 1/90000-style time bases are not rates


def nice_rate(measured: Fraction) -> Fraction:
    """The standard rate nearest a measured average when within 0.5 %, else the average
    itself with a small denominator (ffmpeg takes any rational)."""
    best = min(STANDARD_RATES, key=lambda r: abs(measured - r) / r)
    if abs(measured - best) / best <= SNAP:
        return best
    return measured.limit_denominator(1001)


def _timing(tb: Fraction, packets: list) -> tuple[bool, Fraction | None, Fraction, Fraction]:
    """(vfr, measured average rate, start, duration) from a video stream's packets."""
    pts = sorted(p for p, _ in packets)
    deltas = [b - a for a, b in zip(pts, pts[1:], strict=False)]
    typical = median(deltas) if deltas else 0
    # Copied packets' durations differ between releases (5.1 gives each the nominal frame
    # time, later ones the file's): the last frame lasts as long as the gap before it.
    last_duration = deltas[-1] if deltas else max(packets[0][1], 0)
    # Rounding to the time base makes a constant rate jitter by a tick (512/513 for
    # 29.97 fps in 1/15360); anything beyond that and 2 % is a variable rate.
    tolerance = max(1, typical * 0.02)
    vfr = any(abs(d - typical) > tolerance for d in deltas)
    span = pts[-1] - pts[0] + last_duration
    measured = Fraction(len(pts)) / (span * tb) if span > 0 else None
    nonneg = [p for p in pts if p >= 0]
    start = (min(nonneg) if nonneg else pts[0]) * tb
    return vfr, measured, start, span * tb


def _choose_rate(vfr: bool, declared: Fraction | None, measured: Fraction | None) -> Fraction:
    if measured is None:
        return declared or Fraction(25)
    if not vfr and declared and abs(declared - measured) / measured <= SNAP:
        return declared
    return nice_rate(measured)


def probe(path: str | Path, exe: str | None = None) -> VideoInfo:
    """Everything stages 1 and 3 need to know about a video, or a one-line DreamerError."""
    path = Path(path)
    if not path.exists():
        raise DreamerError(f"{path} does not exist; check the video's path")
    if path.is_dir():
        raise DreamerError(f"{path} is a folder, not a video; name the video file")
    try:
        with open(path, "rb"):
            pass
    except OSError as e:
        raise DreamerError(f"cannot read {path} ({e.strerror}); fix its permissions") from None
    exe = exe or find_ffmpeg()
    name = str(path.absolute())
    fmt, streams = _header(exe, name)
    video = next((s for s in streams if s.kind == "Video"
                  and "attached pic" not in s.details), None)
    if video is None:
        raise DreamerError(f"{path} has no video stream; name a video file")
    if fmt == "image2" or fmt.endswith("_pipe"):
        raise DreamerError(f"{path} is a still image, not a video; name a video file")
    audio = next((s for s in streams if s.kind == "Audio"), None)
    size = re.search(r", (\d+)x(\d+)", video.details)
    if not size:
        raise DreamerError(f"cannot tell the frame size of {path}; re-encode it with ffmpeg")
    declared = _declared_rate(exe, name, video.index)
    maps = [video.index] + ([audio.index] if audio else [])
    packets = _packets(exe, name, maps)
    if 0 not in packets or not packets[0][1]:
        raise DreamerError(f"{path} holds no video frames; name a video file")
    vtb, vpackets = packets[0]
    vfr, measured, start, duration = _timing(vtb, vpackets)
    info = dict(path=path, fps=_choose_rate(vfr, declared, measured), declared_fps=declared,
                vfr=vfr, frame_count=len(vpackets), width=int(size[1]), height=int(size[2]),
                video_codec=video.codec, video_index=video.index, video_start=start,
                video_duration=duration)
    if audio and 1 in packets and packets[1][1]:
        atb, apackets = packets[1]
        rate = re.search(r"(\d+) Hz", audio.details)
        info.update(has_audio=True, audio_index=audio.index, audio_codec=audio.codec,
                    sample_rate=int(rate[1]) if rate else None,
                    audio_start=min(p for p, _ in apackets) * atb,
                    audio_end=max(p + max(d, 0) for p, d in apackets) * atb,
                    audio_packet=max(max(d, 0) for _, d in apackets) * atb)
    return VideoInfo(**info)


# --- reading back what was written ------------------------------------------------------

@dataclass(frozen=True)
class Written:
    """What an encoded file really holds, as ffmpeg reads it back."""
    frames: int
    fps: Fraction | None             # from the frames' timestamps; None for one frame
    audio_seconds: Fraction | None   # the sound a player plays; None: no audio stream
    sample_rate: int | None = None


def measure(path: Path, exe: str) -> Written:
    """One framecrc pass: the video's packets copied (count, timestamps) and the sound
    decoded, so that edit lists and encoder padding count as a player counts them."""
    text = run(exe, ["-i", str(path), "-map", "0:v:0", "-c:v", "copy", "-map", "0:a:0?",
                     "-c:a", "pcm_s16le", "-f", "framecrc", "-"],
               f"reading back {path.name}", stdout=True).decode("ascii", "replace")
    streams = _parse_framecrc(text)
    vtb, video = streams.get(0, (Fraction(1), []))
    pts = sorted(p for p, _ in video)
    fps = (len(pts) - 1) / ((pts[-1] - pts[0]) * vtb) if len(pts) > 1 and pts[-1] > pts[0] \
        else None
    if 1 not in streams:
        return Written(len(pts), fps, None)
    atb, sound = streams[1]
    rate = atb.denominator if atb.numerator == 1 else None
    return Written(len(pts), fps, sum(max(d, 0) for _, d in sound) * atb, rate)


def check_written(path: Path, label: str, exe: str, *, frames: int, frame_slack: int = 0,
                  fps: Fraction | None = None, audio: Fraction | None = None,
                  audio_slack: Fraction = Fraction(0), writer: str | None = None) -> Written:
    """Reads back `path` (to be published as `label`) and refuses it unless it holds
    `frames` frames (give or take `frame_slack`), at `fps`, with `audio` seconds of sound
    (give or take `audio_slack`; None: no sound). `writer` is the program that wrote it."""
    got = measure(path, exe)
    wrong = _differences(got, frames, frame_slack, fps, audio, audio_slack)
    if wrong:
        raise FFmpegError(f"{tool_and_version(writer or exe)} wrote {'; '.join(wrong)} "
                          f"(in {label}, which was not kept); try another ffmpeg: "
                          f"{ENV_VAR}=/path/to/ffmpeg")
    return got


def _differences(got: Written, frames: int, frame_slack: int, fps: Fraction | None,
                 audio: Fraction | None, audio_slack: Fraction) -> list[str]:
    wrong = []
    if abs(got.frames - frames) > frame_slack:
        wrong.append(f"{got.frames} frames where {frames} were planned")
    if fps and got.fps and abs(got.fps - fps) / fps > SNAP:
        wrong.append(f"{float(got.fps):.3f} fps where {float(fps):.3f} were planned")
    if audio is None and got.audio_seconds is not None:
        wrong.append("sound where none was planned")
    elif audio is not None and got.audio_seconds is None:
        wrong.append(f"no sound where {float(audio):.3f} s were planned")
    elif audio is not None and abs(got.audio_seconds - audio) > audio_slack:
        wrong.append(f"{float(got.audio_seconds):.3f} s of sound where {float(audio):.3f} s "
                     "were planned")
    return wrong
