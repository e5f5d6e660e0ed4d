"""Stages 1 and 3 (video to frames, frames back to video with the sound in sync), the GIF
maker and the all-in-one command, on small clips that the tests make with ffmpeg's lavfi
sources (testsrc2 for pictures, sine/aevalsrc for sound).

Tests that need ffmpeg skip when there is none (neither on PATH nor from imageio-ffmpeg).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from contextlib import suppress
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dreamer.cli import stages
from dreamer.video import assemble, extract, ffmpeg
from dreamer.errors import DreamerError
from dreamer.video.ffmpeg import FFmpegError, VideoInfo
from dreamer.video.frames import STAGE3, FrameSet, find_frames

REPO = Path(__file__).resolve().parents[2]
NTSC = Fraction(30000, 1001)
RATE = 48000     # sample rate of every test tone


# --- helpers -------------------------------------------------------------------------

def distinct_ffmpegs() -> list[str]:
    """Every different ffmpeg here: $DREAMER_FFMPEG's, PATH's and imageio-ffmpeg's, one
    per binary and release (a link to the same file, or the same release, counts once)."""
    candidates = [os.environ.get(ffmpeg.ENV_VAR), shutil.which("ffmpeg")]
    try:
        import imageio_ffmpeg
        candidates.append(imageio_ffmpeg.get_ffmpeg_exe())
    except (ImportError, RuntimeError, OSError):
        pass
    found, seen = [], set()
    for exe in filter(None, candidates):
        version = ffmpeg.version_string(exe) if os.access(exe, os.X_OK) else None
        keys = {os.path.realpath(exe), version}
        if version and not keys & seen:
            seen |= keys
            found.append(exe)
    return found


FFMPEGS = distinct_ffmpegs()


@pytest.fixture(scope="module", params=FFMPEGS or [None],
                ids=[f"ffmpeg-{ffmpeg.version_string(f)}" for f in FFMPEGS] or ["none"])
def ff(request) -> str:
    """Each ffmpeg found in turn, named to the code under test by $DREAMER_FFMPEG (child
    processes inherit it)."""
    if request.param is None:
        pytest.skip("no ffmpeg (neither on PATH nor from imageio-ffmpeg)")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(ffmpeg.ENV_VAR, request.param)
        yield request.param


def make_clip(ff: str, path: Path, *, rate="30", size="96x64", seconds=2.0, audio="sine",
              vcodec=("libx264", "-pix_fmt", "yuv420p"), acodec="aac", vfr=False,
              crop: str | None = None, video_offset: float = 0) -> Path:
    """A test clip: testsrc2 pictures; `audio` is "sine" (440 Hz with a beep each second),
    "chirp" (a rising tone, so any shift of the sound shows in a cross-correlation) or None.
    `video_offset` starts the pictures that many seconds after the sound."""
    src = f"testsrc2=size={size}:rate={rate}:duration={seconds}"
    if crop:    # odd sizes: testsrc2 itself makes even ones only
        src += f",format=yuv444p,crop={crop}:0:0"
    args = [ff, "-v", "error", "-y"]
    if video_offset:
        args += ["-itsoffset", str(video_offset)]
    args += ["-f", "lavfi", "-i", src]
    seconds += video_offset
    if audio == "sine":
        args += ["-f", "lavfi", "-i",
                 f"sine=frequency=440:beep_factor=4:sample_rate={RATE}:duration={seconds}"]
    elif audio == "chirp":
        args += ["-f", "lavfi", "-i",
                 f"aevalsrc=0.5*sin(2*PI*(300*t+200*t*t)):s={RATE}:d={seconds}"]
    if video_offset:    # keep the gap: 5.1 would fill it with copies of the first frame
        args += ffmpeg.passthrough_flags(ff)
    if vfr:   # every frame for 1 s, then every third: 50 frames in 3 s
        version = ffmpeg.version_of(ff)
        mode = ["-vsync", "vfr"] if version and version < (5, 1) else ["-fps_mode", "vfr"]
        args += ["-vf", "select='lt(n\\,30)+not(mod(n\\,3))'", *mode]
    args += ["-map", "0:v"] + (["-map", "1:a"] if audio else []) + ["-c:v", *vcodec]
    if audio:
        args += ["-c:a", acodec]
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(args + [str(path)], check=True)
    return path


def script(name: str, *args, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    """Runs one of the repo's shell scripts the way a user does."""
    full_env = {**os.environ, "DREAMER_PYTHON": sys.executable, **(env or {})}
    return subprocess.run([str(REPO / name), *map(str, args)], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=300)


def tree_hashes(root: Path) -> dict[str, str]:
    """Every file under `root` with its sha256: to show a refused run touched nothing."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def assert_one_line_error(result: subprocess.CompletedProcess, *words: str) -> None:
    lines = result.stderr.strip().splitlines()
    assert result.returncode != 0, result.stdout
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for word in words:
        assert word.lower() in lines[0].lower(), lines[0]


def decoded_frames(ff: str, path: Path) -> int:
    out = subprocess.run([ff, "-v", "error", "-i", str(path), "-map", "0:v:0", "-f",
                          "framecrc", "-"], check=True, capture_output=True, text=True).stdout
    return sum(1 for line in out.splitlines() if line and not line.startswith("#"))


def pcm(ff: str, path: Path) -> np.ndarray:
    """Mono float samples as a player hears them: a late-starting track is padded in front
    with silence (aresample first_pts=0), so positions are positions on the video's clock."""
    out = subprocess.run([ff, "-v", "error", "-i", str(path), "-map", "0:a:0", "-af",
                          "aresample=async=1:first_pts=0", "-ac", "1", "-ar", str(RATE),
                          "-f", "f32le", "-"], check=True, capture_output=True).stdout
    return np.frombuffer(out, dtype=np.float32)


def end_slack(ff: str) -> int:
    """Samples an AAC track made by `ff` may run past its cut: 9.0's mp4 edit list hides
    the encoder's padding of the last packet, 5.1's does not (releases in between are
    unverified, so they get 5.1's allowance: one packet)."""
    version = ffmpeg.version_of(ff)
    return 2 if version is None or version >= (7, 0) else 1024


def ncc(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))


def best_lag(out: np.ndarray, ref: np.ndarray, start: int, search: int = 960
             ) -> tuple[int, float]:
    """The shift (in samples) at which `out` best matches `ref` from sample `start`; what
    `out` holds beyond the end of `ref` (an encoder's padding) is left out."""
    seg = out[search:min(len(out), len(ref) - start) - search]
    scores = {lag: ncc(seg, ref[start + search + lag:start + search + lag + len(seg)])
              for lag in range(-search, search + 1)}
    lag = max(scores, key=scores.get)
    return lag, scores[lag]


def stream_lines(ff: str, path: Path) -> str:
    return subprocess.run([ff, "-hide_banner", "-i", str(path)], capture_output=True,
                          text=True).stderr


def duration_of(ff: str, path: Path) -> float:
    m = re.search(r"Duration: (\d+):(\d+):([\d.]+)", stream_lines(ff, path))
    return int(m[1]) * 3600 + int(m[2]) * 60 + float(m[3])


@pytest.fixture(scope="module")
def clips(ff, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("clips")
    return {
        "cfr": make_clip(ff, root / "cfr.mp4"),
        "ntsc": make_clip(ff, root / "ntsc.mp4", rate="30000/1001", audio="chirp",
                          seconds=2.5),
        "vfr": make_clip(ff, root / "vfr.mp4", seconds=3, vfr=True, audio="chirp"),
        "late": make_clip(ff, root / "late.mp4", audio="chirp", video_offset=0.5),
        "silent_odd": make_clip(ff, root / "odd.mp4", rate="25", seconds=1, audio=None,
                                crop="95:63", vcodec=("libx264", "-pix_fmt", "yuv444p")),
        "flac": make_clip(ff, root / "flac.mkv", audio="chirp", acodec="flac"),
    }


def frames_of(ff, clips, tmp_path, name="cfr", image_type="png") -> Path:
    folder = tmp_path / f"{name}_frames"
    extract.extract_frames(clips[name], folder, image_type)
    return folder


# --- probing ---------------------------------------------------------------------------

def test_probe_reads_exact_rates_sizes_and_audio(clips):
    ntsc = ffmpeg.probe(clips["ntsc"])
    assert ntsc.fps == NTSC and not ntsc.vfr
    assert (ntsc.width, ntsc.height) == (96, 64)
    assert ntsc.has_audio and ntsc.audio_codec == "aac" and ntsc.sample_rate == RATE
    vfr = ffmpeg.probe(clips["vfr"])
    assert vfr.vfr and vfr.fps == Fraction(50, 3) and vfr.frame_count == 50
    odd = ffmpeg.probe(clips["silent_odd"])
    assert (odd.width, odd.height, odd.fps, odd.has_audio) == (95, 63, 25, False)
    flac = ffmpeg.probe(clips["flac"])    # mkv keeps times in ms: 33/34 ms is still 30 fps
    assert flac.fps == 30 and not flac.vfr and flac.audio_codec == "flac"


def test_probe_refuses_what_is_not_a_video(ff, tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not a video\n")
    with pytest.raises(FFmpegError, match="cannot read") as info:
        ffmpeg.probe(text)
    assert info.value.stderr_tail and "\n" not in str(info.value)
    still = tmp_path / "still.png"
    Image.new("RGB", (8, 8)).save(still)
    with pytest.raises(DreamerError, match="still image"):
        ffmpeg.probe(still)
    with pytest.raises(DreamerError, match="does not exist"):
        ffmpeg.probe(tmp_path / "nope.mp4")


# --- stage 1 -------------------------------------------------------------------------

def test_stage1_writes_numbered_frames_and_record(clips, tmp_path):
    result = script("1_movie2frames.sh", "ffmpeg", clips["ntsc"], "frames", "png",
                    cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    folder = tmp_path / "frames"
    record = json.loads((folder / "frames.json").read_text())
    n = record["frame_count"]
    assert n == 75       # 2.5 s at 29.97 fps
    assert sorted(os.listdir(folder)) == [f"{k:08d}.png" for k in range(1, n + 1)] + [
        "frames.json"]
    assert record["fps"] == "30000/1001" and record["vfr"] is False
    assert (record["width"], record["height"]) == (96, 64)
    assert record["has_audio"] and record["audio_codec"] == "aac"
    assert record["source"] == str(clips["ntsc"])
    with Image.open(folder / "00000001.png") as img:
        assert (img.mode, img.size) == ("RGB", (96, 64))


def test_stage1_jpg_is_high_quality(ff, clips, tmp_path):
    jpg = frames_of(ff, clips, tmp_path, "cfr", "jpg")
    assert len(list(jpg.glob("*.jpg"))) == 60
    with Image.open(jpg / "00000010.jpg") as img:
        table = img.quantization[0]
        sampling = {layer[1:3] for layer in img.layer}
    # -q:v 2: a luminance table averaging under 10 is IJG quality 90 or better; and the
    # colour is not subsampled (every component has the same sampling factors).
    assert sum(table) / len(table) < 10
    assert len(sampling) == 1


def test_stage1_converts_vfr_to_its_average_rate(clips, tmp_path):
    result = script("1_movie2frames.sh", clips["vfr"], "frames", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "variable frame rate" in result.stderr and "50/3" in result.stderr
    record = json.loads((tmp_path / "frames" / "frames.json").read_text())
    assert record["vfr"] is True and record["fps"] == "50/3"
    # Time is kept: 3 s of video at 50/3 fps is 50 constant-rate frames.
    assert abs(record["frame_count"] - 50) <= 1


def test_stage1_replaces_only_its_own_frames(ff, clips, tmp_path):
    folder = tmp_path / "frames"
    assert script("1_movie2frames.sh", clips["ntsc"], folder, cwd=tmp_path).returncode == 0
    result = script("1_movie2frames.sh", clips["silent_odd"], folder, "jpg", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    names = sorted(os.listdir(folder))   # the 75 png frames of the first run are gone
    assert names == [f"{k:08d}.jpg" for k in range(1, 26)] + ["frames.json"]

    (folder / "my notes.txt").write_text("keep me")
    before = tree_hashes(tmp_path)
    result = script("1_movie2frames.sh", clips["cfr"], folder, cwd=tmp_path)
    assert_one_line_error(result, "other files", "my notes.txt")
    assert tree_hashes(tmp_path) == before


def test_stage1_refuses_frames_it_did_not_make(clips, tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    Image.new("RGB", (8, 8), "red").save(folder / "00000001.png")
    before = tree_hashes(tmp_path)
    result = script("1_movie2frames.sh", clips["cfr"], folder, cwd=tmp_path)
    assert_one_line_error(result, "did not make")
    assert tree_hashes(tmp_path) == before


def test_stage1_failure_keeps_earlier_frames_and_leaves_no_temp(ff, clips, tmp_path,
                                                                 monkeypatch):
    folder = frames_of(ff, clips, tmp_path, "silent_odd")
    before = tree_hashes(folder)
    real_run = ffmpeg.run

    def dies_mid_extraction(exe, args, what, **kwargs):
        if "image2" not in args:             # probing works
            return real_run(exe, args, what, **kwargs)
        pattern = Path(args[-1])             # a few frames are written, then disk full
        for k in (1, 2):
            Image.new("RGB", (8, 8)).save(str(pattern).replace("%08d", f"{k:08d}"))
        raise FFmpegError("extracting frames failed (ffmpeg: No space left on device)")
    monkeypatch.setattr(ffmpeg, "run", dies_mid_extraction)
    with pytest.raises(FFmpegError, match="No space"):
        extract.extract_frames(clips["cfr"], folder, "png")
    assert tree_hashes(folder) == before     # earlier frames and record as they were
    with pytest.raises(FFmpegError, match="No space"):
        extract.extract_frames(clips["cfr"], tmp_path / "new" / "frames", "png")
    assert not (tmp_path / "new" / "frames").exists()


# --- stage 3 -------------------------------------------------------------------------

def _subset(src: Path, dst: Path, first: int, last: int, image_type="png") -> Path:
    dst.mkdir(parents=True)
    for k in range(first, last + 1):
        shutil.copy(src / f"{k:08d}.{image_type}", dst)
    return dst


def test_stage3_reencodes_other_audio_exactly_in_sync(ff, clips, tmp_path):
    """flac cannot go in an mp4 as-is: AAC, cut to the sample, from frame 31's time."""
    frames = frames_of(ff, clips, tmp_path, "flac")
    part = _subset(frames, tmp_path / "part", 31, 60)
    result = script("3_frames2movie.sh", "ffmpeg", part, clips["flac"], "png", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = tmp_path / "part_done.mp4"
    assert "re-encoded to AAC" in result.stdout
    assert decoded_frames(ff, out) == 30
    info = ffmpeg.probe(out)
    assert info.fps == 30 and info.audio_codec == "aac"
    sound, original = pcm(ff, out), pcm(ff, clips["flac"])
    assert abs(len(sound) - RATE) <= end_slack(ff)     # 30 frames at 30 fps: 1 s
    lag, score = best_lag(sound, original, start=RATE)     # frame 31 is at 1.000 s
    assert abs(lag) <= 2 and score > 0.99
    assert ncc(sound[:480], original[RATE:RATE + 480]) > 0.95   # no silence in front


@pytest.mark.parametrize("name, frame_11_at", [("vfr", 10 / Fraction(50, 3)),
                                                ("late", Fraction(1, 2) + Fraction(10, 30))])
def test_stage3_sync_on_vfr_and_late_starting_video(ff, clips, tmp_path, name, frame_11_at):
    """A VFR source (made constant at its average rate by stage 1) and a video that starts
    0.5 s after its sound: frames 11..40 get the sound from frame 11's time on."""
    frames = frames_of(ff, clips, tmp_path, name)
    part = _subset(frames, tmp_path / "part", 11, 40)
    result = script("3_frames2movie.sh", part, clips[name], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = tmp_path / "part_done.mp4"
    assert decoded_frames(ff, out) == 30
    sound, original = pcm(ff, out), pcm(ff, clips[name])
    lag, score = best_lag(sound, original, start=round(frame_11_at * RATE))
    assert abs(lag) <= 2 and score > 0.99, (lag, score)


def test_stage3_silent_source_and_odd_size(ff, clips, tmp_path):
    frames = frames_of(ff, clips, tmp_path, "silent_odd")
    result = script("3_frames2movie.sh", frames, clips["silent_odd"], "-o", "odd.mp4",
                    cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "no audio" in result.stderr
    text = stream_lines(ff, tmp_path / "odd.mp4")
    assert "Audio:" not in text
    assert re.search(r"Video: h264 .*yuv420p.*96x64", text), text     # padded to even
    assert decoded_frames(ff, tmp_path / "odd.mp4") == 25


def test_stage3_output_name_overwrite_and_faststart(ff, clips, tmp_path):
    frames = frames_of(ff, clips, tmp_path, "silent_odd")
    first = script("3_frames2movie.sh", frames, clips["silent_odd"], cwd=tmp_path)
    out = tmp_path / "silent_odd_frames_done.mp4"
    assert first.returncode == 0 and out.exists(), first.stderr
    data = out.read_bytes()
    assert data.index(b"moov") < data.index(b"mdat")       # +faststart
    before = tree_hashes(tmp_path)
    again = script("3_frames2movie.sh", frames, clips["silent_odd"], cwd=tmp_path)
    assert_one_line_error(again, "already exists", "--overwrite")
    assert tree_hashes(tmp_path) == before
    forced = script("3_frames2movie.sh", frames, clips["silent_odd"], "--overwrite",
                    "--crf", "30", cwd=tmp_path)
    assert forced.returncode == 0, forced.stderr
    assert out.read_bytes() != data
    assert not [p for p in tmp_path.iterdir() if ".part" in p.name]


def fake_encoder(ff: str, tmp_path: Path, then: str) -> tuple[Path, Path]:
    """An ffmpeg (bin/ffmpeg, for $DREAMER_FFMPEG) that, when asked to encode H.264,
    writes part of its output and then runs `then` (fail, hang ...); everything else goes
    to the real ffmpeg."""
    fake_bin, tmpdir = tmp_path / "bin", tmp_path / "tmp"
    fake_bin.mkdir()
    tmpdir.mkdir()
    fake = fake_bin / "ffmpeg"
    fake.write_text("#!/usr/bin/env bash\n"
                    'for a in "$@"; do [[ $a == libx264 ]] && encoding=1; done\n'
                    'if [[ -n ${encoding:-} ]]; then\n'
                    f'    printf partial > "${{@: -1}}"; {then}\n'
                    "fi\n"
                    f'exec "{ff}" "$@"\n')
    fake.chmod(0o755)
    return fake_bin, tmpdir


def test_stage3_failure_removes_its_temporary_files(ff, clips, tmp_path):
    """An ffmpeg that dies mid-encode (after writing part of its output): the run fails
    with one line, and neither the partial video nor the private temp dir is left."""
    frames = frames_of(ff, clips, tmp_path, "cfr")
    fake_bin, tmpdir = fake_encoder(ff, tmp_path, 'echo "Error: disk full" >&2; exit 1')
    result = script("3_frames2movie.sh", frames, clips["cfr"], cwd=tmp_path,
                    env={"TMPDIR": str(tmpdir), ffmpeg.ENV_VAR: str(fake_bin / "ffmpeg")})
    assert_one_line_error(result, "failed", "disk full")
    assert list(tmpdir.iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bin", "cfr_frames", "tmp"]


def encoder_started(folder: Path) -> bool:
    """Whether fake_encoder has written into a partial output in `folder`."""
    for p in folder.iterdir():
        try:
            if ".part" in p.name and p.stat().st_size:
                return True
        except FileNotFoundError:
            pass
    return False


def test_stage3_sigterm_stops_ffmpeg_and_cleans_up(ff, clips, tmp_path):
    """SIGTERM mid-encode: ffmpeg is stopped, the partial video and temp dir are gone."""
    frames = frames_of(ff, clips, tmp_path, "cfr")
    fake_bin, tmpdir = fake_encoder(ff, tmp_path, "exec sleep 60")
    env = {**os.environ, "DREAMER_PYTHON": sys.executable, "TMPDIR": str(tmpdir),
           ffmpeg.ENV_VAR: str(fake_bin / "ffmpeg")}
    proc = subprocess.Popen([str(REPO / "3_frames2movie.sh"), str(frames), str(clips["cfr"])],
                            cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True)
    for _ in range(1200):  # until the encoder has written: mid-encode, as the test says
        if encoder_started(tmp_path):
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 143
    assert len(err.strip().splitlines()) == 1 and "interrupted" in err
    assert list(tmpdir.iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bin", "cfr_frames", "tmp"]


def test_paths_with_spaces_quotes_and_percent(ff, clips, tmp_path):
    where = tmp_path / "it's a \"test\" 100% dir"
    video = where / "my clip's.mp4"
    where.mkdir()
    shutil.copy(clips["cfr"], video)
    r1 = script("1_movie2frames.sh", "ffmpeg", video, where / "frames 'one'", "jpg",
                cwd=where)
    assert r1.returncode == 0, r1.stderr
    out = where / "out \"final\".mp4"
    r3 = script("3_frames2movie.sh", "ffmpeg", where / "frames 'one'", video, "jpg", "-o",
                out, cwd=where)
    assert r3.returncode == 0, r3.stderr
    assert decoded_frames(ff, out) == 60
    rg = script("frames2gif.sh", where / "frames 'one'", "--width", "48", cwd=where)
    assert rg.returncode == 0, rg.stderr
    assert (where / "frames 'one'.gif").exists()


# --- bad input: one line, non-zero exit, nothing of the user's touched ----------------

@pytest.fixture(scope="module")
def user_files(ff, clips, tmp_path_factory) -> Path:
    """A folder of the user's: a video, its frames, and a finished video. Shared by the
    bad-input tests, each of which proves it left every file as it was."""
    tmp_path = tmp_path_factory.mktemp("user")
    shutil.copy(clips["cfr"], tmp_path / "video.mp4")
    extract.extract_frames(tmp_path / "video.mp4", tmp_path / "frames", "png")
    (tmp_path / "frames_done.mp4").write_bytes(b"the user's finished video")
    (tmp_path / "notes.txt").write_text("not a video")
    (tmp_path / "empty").mkdir()
    gap = _subset(tmp_path / "frames", tmp_path / "gap", 1, 10)
    (gap / "00000005.png").unlink()
    _subset(tmp_path / "frames", tmp_path / "copied", 1, 3)     # no frames.json
    mixed = _subset(tmp_path / "frames", tmp_path / "mixed", 1, 3)
    Image.new("RGB", (96, 64)).save(mixed / "00000004.jpg")
    return tmp_path


BAD = [
    ("avconv", ("1_movie2frames.sh", "avconv", "video.mp4", "new", "png"),
     ("avconv", "ffmpeg")),
    ("mplayer", ("1_movie2frames.sh", "mplayer", "video.mp4", "new", "png"),
     ("mplayer", "ffmpeg")),
    ("mencoder", ("3_frames2movie.sh", "mplayer", "frames", "video.mp4", "-o", "x.mp4"),
     ("mencoder", "ffmpeg")),
    ("no arguments", ("1_movie2frames.sh",), ("expected VIDEO FRAMES_DIR",)),
    ("too many", ("3_frames2movie.sh", "frames", "video.mp4", "png", "extra"),
     ("expected FRAMES_DIR ORIGINAL_VIDEO",)),
    ("missing video", ("1_movie2frames.sh", "no such.mp4", "new"), ("does not exist",)),
    ("not a video", ("1_movie2frames.sh", "notes.txt", "new"), ("cannot read",)),
    ("folder as video", ("1_movie2frames.sh", "empty", "new"), ("folder",)),
    ("bad type", ("1_movie2frames.sh", "video.mp4", "new", "gif"), ("image type",)),
    ("missing original", ("3_frames2movie.sh", "frames", "gone.mp4", "-o", "x.mp4"),
     ("does not exist",)),
    ("empty frames", ("3_frames2movie.sh", "empty", "video.mp4"), ("no frames",)),
    ("missing frames dir", ("3_frames2movie.sh", "nowhere", "video.mp4"),
     ("does not exist",)),
    ("gap", ("3_frames2movie.sh", "gap", "video.mp4"), ("00000005.png", "missing")),
    ("mixed", ("3_frames2movie.sh", "mixed", "video.mp4"), ("png and jpg",)),
    ("existing output", ("3_frames2movie.sh", "frames", "video.mp4"), ("already exists",)),
    ("output is the original", ("3_frames2movie.sh", "frames", "video.mp4", "-o",
                                "video.mp4", "--overwrite"), ("is the input",)),
    ("gif without rate", ("frames2gif.sh", "copied"), ("frame rate", "--fps")),
    ("gif existing", ("frames2gif.sh", "frames", "-o", "notes.txt"), ("already exists",)),
]


@pytest.mark.parametrize("argv, words", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_input_is_one_line_and_harmless(user_files, argv, words):
    before = tree_hashes(user_files)
    # PATH holds bash alone: no avconv, mplayer or mencoder, and ffmpeg comes from
    # imageio-ffmpeg.
    bash_only = user_files.parent / f"{user_files.name}-bin"
    if not bash_only.exists():
        bash_only.mkdir()
        (bash_only / "bash").symlink_to(shutil.which("bash"))
    result = script(*argv, cwd=user_files, env={"PATH": str(bash_only)})
    assert_one_line_error(result, *words)
    assert tree_hashes(user_files) == before
    assert not (user_files / "new").exists()


# --- GIF ------------------------------------------------------------------------------

def test_gif_uses_palette_and_source_rate(ff, clips, tmp_path):
    frames = frames_of(ff, clips, tmp_path, "ntsc")
    result = script("frames2gif.sh", frames, "-v", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "palettegen" in result.stderr and "paletteuse" in result.stderr
    assert "30000/1001" in result.stdout
    gif = tmp_path / "ntsc_frames.gif"
    assert gif.read_bytes()[:6] == b"GIF89a"
    assert decoded_frames(ff, gif) == 75


# --- the whole pipeline ----------------------------------------------------------------

@pytest.mark.slow
def test_end_to_end_frames_11_to_40_keep_sound_in_sync(ff, clips, tmp_path, tiny_model):
    """clip -> stage 1 -> stage 2 (tiny model, -sf 11 -ef 40) -> stage 3: 30 frames at the
    source's exact rate, the sound from frame 11's sample on, as long as the video."""
    video = clips["ntsc"]
    r1 = script("1_movie2frames.sh", "ffmpeg", video, "frames", "png", cwd=tmp_path)
    assert r1.returncode == 0, r1.stderr
    r2 = subprocess.run([sys.executable, str(REPO / "2_dreaming_time.py"), "-i", "frames",
                         "-o", "dreamed", "-t", str(tiny_model), "-m", "tiny.caffemodel", "-l",
                         "inception_4c/output", "-oct", "2", "-itr", "1", "--seed", "1",
                         "-sf", "11", "-ef", "40", "-v", "0"], cwd=tmp_path,
                        capture_output=True, text=True,
                        env={**os.environ, "PYTHONPATH": str(REPO)})
    assert r2.returncode == 0, r2.stderr
    r3 = script("3_frames2movie.sh", "ffmpeg", "dreamed", video, "png", cwd=tmp_path)
    assert r3.returncode == 0, r3.stderr
    out = tmp_path / "dreamed_done.mp4"

    assert decoded_frames(ff, out) == 30
    info = ffmpeg.probe(out)
    assert info.fps == NTSC and info.declared_fps == NTSC and not info.vfr
    frame = 1 / float(NTSC)
    video_seconds = 30 * frame
    assert abs(duration_of(ff, out) - video_seconds) < frame

    sound, original = pcm(ff, out), pcm(ff, video)
    start = round(10 / NTSC * RATE)         # frame 11 is at 10 frames' time: 16016
    lag, score = best_lag(sound, original, start)
    assert abs(lag) <= 2 and score > 0.99, (lag, score)
    assert ncc(sound[:480], original[start:start + 480]) > 0.95     # starts right away
    assert abs(len(sound) / RATE - video_seconds) < frame


@pytest.mark.slow
def test_all_in_one_command(ff, clips, tmp_path, tiny_model):
    stage2 = ["-t", str(tiny_model), "-m", "tiny.caffemodel", "-l", "inception_4c/output",
              "-oct", "1", "-itr", "1", "--seed", "1", "-sf", "5", "-ef", "12", "-v", "0"]
    result = subprocess.run(
        [sys.executable, "-m", "dreamer.cli.stages", "all", str(clips["cfr"]), "-w", "work",
         "-o", "dream.mp4", "--", *stage2], cwd=tmp_path, capture_output=True, text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 0, result.stderr
    assert decoded_frames(ff, tmp_path / "dream.mp4") == 8
    again = subprocess.run(   # a second run reuses stage 1's frames and resumes stage 2
        [sys.executable, "-m", "dreamer.cli.stages", "all", str(clips["cfr"]), "-w", "work",
         "-o", "dream.mp4", "--overwrite", "--", *stage2], cwd=tmp_path, capture_output=True,
        text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert again.returncode == 0, again.stderr
    assert "reusing the frames" in again.stderr
    assert sorted(os.listdir(tmp_path / "work")) == ["dreamed", "frames"]
    sound, original = pcm(ff, tmp_path / "dream.mp4"), pcm(ff, clips["cfr"])
    lag, score = best_lag(sound, original, start=4 * RATE // 30, search=240)
    assert abs(lag) <= 2 and score > 0.99


def test_stages_1_and_3_show_progress_in_a_log_too(ff, clips, tmp_path, monkeypatch, capsys):
    """Not a terminal (capsys): a plain line now and then, never ffmpeg's carriage returns."""
    monkeypatch.setattr(ffmpeg, "LOG_EVERY", 0.0)
    extract.extract_frames(clips["cfr"], tmp_path / "frames")
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if "frames so far" in ln]
    assert lines and "\r" not in err, err
    assert all(ln.startswith("extracting frames from") for ln in lines)
    assert int(lines[-1].split(": ")[-1].split()[0]) <= 60  # the clip's 60 frames at most


def test_all_in_one_refuses_a_bad_stage_2_setting_before_extracting(clips, tmp_path):
    from dreamer.cli.stages import main

    code = main(["all", str(clips["cfr"]), "-w", str(tmp_path / "work"), "-o",
                 str(tmp_path / "dream.mp4"), "--", "-itr", "1:(2), 9:(-3)"])
    assert code == 2 and not (tmp_path / "work").exists()


# --- the sound survives every ffmpeg; what is written is read back --------------------

FFPROBE = shutil.which("ffprobe") or ("/usr/bin/ffprobe" if os.access("/usr/bin/ffprobe",
                                                                      os.X_OK) else None)

# (name, seconds, size, frame rate, audio codec, container): the 20 s clip is tiny so that
# it takes seconds; PCM cannot be copied into an mp4, so it is re-encoded.
SOUND_CLIPS = [("aac-1s", 1, "96x64", "30", "aac", "mp4"),
               ("aac-8s", 8, "96x64", "30", "aac", "mp4"),
               ("aac-20s", 20, "64x48", "10", "aac", "mp4"),
               ("pcm-4s", 4, "64x48", "30", "pcm_s16le", "mov")]


def streams_written(ff: str, path: Path) -> tuple[int, float | None]:
    """(video frames, seconds of sound or None) by ffprobe where there is one, else by
    the project's own reader (ffmpeg alone)."""
    if FFPROBE is None:
        got = ffmpeg.measure(path, ff)
        return got.frames, None if got.audio_seconds is None else float(got.audio_seconds)
    out = subprocess.run([FFPROBE, "-v", "error", "-count_packets", "-show_entries",
                          "stream=codec_type,duration,nb_read_packets", "-of", "json",
                          str(path)], check=True, capture_output=True, text=True).stdout
    streams = {s["codec_type"]: s for s in json.loads(out)["streams"]}
    audio = float(streams["audio"]["duration"]) if "audio" in streams else None
    return int(streams["video"]["nb_read_packets"]), audio


@pytest.mark.parametrize("name, seconds, size, rate, acodec, container", SOUND_CLIPS,
                         ids=[c[0] for c in SOUND_CLIPS])
def test_stage3_keeps_all_of_the_sound(ff, tmp_path, capsys, name, seconds, size, rate,
                                       acodec, container):
    """The whole clip back: every frame, and the sound for as long as the frames (one
    AAC packet at most over), whichever ffmpeg. 5.1 used to stop the sound at 3.04 s of
    8 s, and at 0.023 s of a re-encoded 4 s PCM track, while saying it was copied."""
    clip = make_clip(ff, tmp_path / f"{name}.{container}", rate=rate, size=size,
                     seconds=seconds, acodec=acodec)
    frames = extract.extract_frames(clip, tmp_path / "frames", "png")
    count = round(seconds * int(rate))
    assert frames["frame_count"] == count
    assemble.assemble_video(tmp_path / "frames", clip, output=tmp_path / "out.mp4")
    summary = capsys.readouterr().out
    assert ("audio copied" if acodec == "aac" else "re-encoded to AAC") in summary
    video, audio = streams_written(ff, tmp_path / "out.mp4")
    assert video == count
    assert audio is not None and -0.001 <= audio - seconds <= 1024 / RATE + 0.001, audio
    said = re.search(r", audio [^(]*\((\d+\.\d+) s\)$", summary.strip())   # as read back
    assert said and 0 <= float(said[1]) - seconds <= 1024 / RATE, summary
    sound = pcm(ff, tmp_path / "out.mp4")     # decoded: really there, and not silence
    assert abs(len(sound) / RATE - seconds) <= 1024 / RATE
    assert np.abs(sound[-RATE // 10:]).max() > 0.1


def test_stage3_range_before_more_frames(ff, clips, tmp_path):
    """Frames 11..40 of a folder holding 1..60 (a narrowed run, as `dreamvideo all -ef`
    makes): 30 frames and 1 s of sound from frame 11's time, nothing of frames 41..60."""
    frames = frames_of(ff, clips, tmp_path, "ntsc")
    out = assemble.assemble_video(frames, clips["ntsc"], output=tmp_path / "out.mp4",
                                  first=11, last=40)
    got = ffmpeg.measure(out, ff)
    assert got.frames == 30 and got.fps == NTSC
    assert abs(got.audio_seconds - 30 / NTSC) <= Fraction(1024, RATE)
    sound, original = pcm(ff, out), pcm(ff, clips["ntsc"])
    lag, score = best_lag(sound, original, start=round(10 / NTSC * RATE))
    assert abs(lag) <= 2 and score > 0.99, (lag, score)


def test_wrong_sound_is_refused_not_published(ff, clips, tmp_path, monkeypatch):
    """An ffmpeg that writes less sound than planned (as 5.1 did): one line naming the
    release and what is wrong; neither the video nor its partial file is left."""
    frames = frames_of(ff, clips, tmp_path, "cfr")
    real = assemble.audio_input

    def cut_short(plan, original):
        args = real(plan, original)
        args[args.index("-t") + 1] = "0.5"
        return args
    monkeypatch.setattr(assemble, "audio_input", cut_short)
    with pytest.raises(FFmpegError) as info:
        assemble.assemble_video(frames, clips["cfr"], output=tmp_path / "out.mp4")
    message = str(info.value)
    assert f"ffmpeg {ffmpeg.version_string(ff)} wrote 0.5" in message, message
    assert "s of sound where 2.000 s were planned" in message and "\n" not in message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cfr_frames"]


def test_stage1_refuses_missing_frames(ff, clips, tmp_path, monkeypatch):
    real = extract._extract_args
    monkeypatch.setattr(extract, "_extract_args", lambda exe, info, image_type, folder: [
        *real(exe, info, image_type, folder)[:-1], "-frames:v", "10",
        real(exe, info, image_type, folder)[-1]])
    with pytest.raises(FFmpegError, match=r"wrote 10 frames where .* holds 60"):
        extract.extract_frames(clips["cfr"], tmp_path / "frames", "png")
    assert not (tmp_path / "frames").exists()


# --- choosing the ffmpeg ---------------------------------------------------------------

def test_dreamer_ffmpeg_picks_the_binary(ff, monkeypatch):
    monkeypatch.setenv(ffmpeg.ENV_VAR, ff)
    assert ffmpeg.find_ffmpeg() == ff
    assert ffmpeg.describe() == f"ffmpeg: {ff} ({ffmpeg.version_string(ff)}, DREAMER_FFMPEG)"
    monkeypatch.delenv(ffmpeg.ENV_VAR)
    monkeypatch.setattr(shutil, "which", lambda name: ff)
    assert ffmpeg.describe().endswith(", from PATH)")
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert ffmpeg.describe().endswith(", imageio-ffmpeg)")


def test_version_string_reads_releases_and_builds(monkeypatch):
    for first_line, version in (
            ("ffmpeg version 5.1.9-0+deb12u1 Copyright (c) 2000-2026", "5.1.9"),
            ("ffmpeg version n9.0.2-17-g2a571b6068-20260930 Copyright", "9.0.2"),
            ("ffmpeg version 4.4.2-0ubuntu0.22.04.1 Copyright", "4.4.2"),
            ("ffmpeg version N-112345-gabcdef Copyright", "N-112345-gabcdef")):
        monkeypatch.setattr(ffmpeg, "_version_text", lambda exe, t=first_line: t)
        assert ffmpeg.version_string("x") == version
    monkeypatch.setattr(ffmpeg, "_version_text", lambda exe: "ffmpeg version 4.4.2-0ubuntu")
    assert ffmpeg.version_of("x") == (4, 4)


@pytest.mark.parametrize("kind", ["missing", "not executable", "not ffmpeg"])
def test_bad_dreamer_ffmpeg_is_one_line(tmp_path, kind):
    exe = tmp_path / "my ffmpeg"
    if kind != "missing":
        exe.write_text("#!/bin/sh\nexit 3\n")
        exe.chmod(0o644 if kind == "not executable" else 0o755)
    Image.new("RGB", (8, 8)).save(tmp_path / "00000001.png")
    result = script("3_frames2movie.sh", tmp_path, tmp_path / "v.mp4", "-o",
                    tmp_path / "o.mp4", cwd=tmp_path, env={ffmpeg.ENV_VAR: str(exe)})
    assert_one_line_error(result, "DREAMER_FFMPEG", {
        "missing": "does not exist", "not executable": "not executable",
        "not ffmpeg": "does not run as ffmpeg"}[kind])


# --- defects: kill -9, truncated frames, a full disk -----------------------------------

def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with suppress(OSError):
                stat = (entry / "stat").read_text()
                if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for its new parent to reap it counts as dead)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _cmdline(pid: int) -> bytes:
    """A process's command line; empty when it ended between listing and reading (the
    wrapper's own short-lived children do)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_kill_9_takes_ffmpeg_along_and_the_next_run_cleans_up(ff, clips, tmp_path):
    """kill -9 of Python mid-encode: its ffmpeg dies with it; the hidden partial video and
    the temp folder it left are removed by the next run, which succeeds."""
    frames = frames_of(ff, clips, tmp_path, "cfr")
    fake_bin, tmpdir = fake_encoder(ff, tmp_path, "exec sleep 60")
    env = {**os.environ, "DREAMER_PYTHON": sys.executable, "TMPDIR": str(tmpdir),
           ffmpeg.ENV_VAR: str(fake_bin / "ffmpeg")}
    proc = subprocess.Popen([str(REPO / "3_frames2movie.sh"), str(frames), str(clips["cfr"])],
                            cwd=tmp_path, env=env, stderr=subprocess.DEVNULL)
    encoder = []
    for _ in range(400):
        encoder = [p for p in _children(proc.pid) if _cmdline(p).startswith(b"sleep")]
        if encoder:
            break
        time.sleep(0.05)
    assert encoder, "the encode never started"
    proc.kill()
    proc.wait()
    deadline = time.monotonic() + 2
    while _alive(encoder[0]) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(encoder[0]), "ffmpeg outlived the Python that ran it"
    assert [p for p in tmp_path.iterdir() if p.name.endswith(".part.mp4")]   # left behind
    assert list(tmpdir.iterdir())

    again = script("3_frames2movie.sh", frames, clips["cfr"], cwd=tmp_path,
                   env={"TMPDIR": str(tmpdir), ffmpeg.ENV_VAR: ff})
    assert again.returncode == 0, again.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "bin", "cfr_frames", "cfr_frames_done.mp4", "tmp"]
    assert list(tmpdir.iterdir()) == []


def test_stale_parts_of_live_runs_and_other_files_are_kept(tmp_path):
    out = tmp_path / "x.mp4"
    live = tmp_path / f".x.mp4.{os.getppid()}.abcd1234.part.mp4"
    dead_pid = subprocess.Popen(["true"])
    dead_pid.wait()
    dead = tmp_path / f".x.mp4.{dead_pid.pid}.abcd1234.part.mp4"
    other = tmp_path / f".y.mp4.{dead_pid.pid}.abcd1234.part.mp4"
    mine = tmp_path / f"x.mp4.{dead_pid.pid}.abcd1234.part.mp4"     # not hidden: not ours
    for p in (live, dead, other, mine):
        p.write_bytes(b"")
    assemble.remove_stale(out, ".mp4")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        p.name for p in (live, other, mine))


@pytest.mark.parametrize("image_type", ["png", "jpg"])
def test_stage3_refuses_a_truncated_frame(ff, clips, tmp_path, image_type):
    frames = frames_of(ff, clips, tmp_path, "cfr", image_type)
    cut = frames / f"00000031.{image_type}"
    cut.write_bytes(cut.read_bytes()[:len(cut.read_bytes()) // 2])
    before = tree_hashes(tmp_path)
    result = script("3_frames2movie.sh", frames, clips["cfr"], cwd=tmp_path)
    assert_one_line_error(result, f"00000031.{image_type}", "truncated", "dream it again")
    assert tree_hashes(tmp_path) == before


def _bytes_read() -> tuple[int, int]:
    """(bytes, read calls) this process has read so far, from any file (Linux)."""
    fields = dict(line.split(": ") for line in Path("/proc/self/io").read_text().splitlines())
    return int(fields["rchar"]), int(fields["syscr"])


@pytest.mark.parametrize("image_type", ["png", "jpg"])
def test_frame_check_reads_only_each_frames_last_bytes(tmp_path, image_type):
    """Fast on thousands of frames because a complete frame is neither read through nor
    decoded: only its last bytes are read (counted by the kernel, not timed)."""
    try:
        _bytes_read()
    except OSError:
        pytest.skip("/proc/self/io (Linux) counts the bytes a process reads")
    paths = write_frames_fast(tmp_path, 200, image_type)
    size = paths[0].stat().st_size
    assert size > 50_000
    before = _bytes_read()
    assemble.check_frames_complete(FrameSet(tmp_path, image_type, 1, len(paths)))
    read, calls = (b - a for a, b in zip(before, _bytes_read()))
    assert calls >= len(paths)        # every frame is looked at...
    assert read < len(paths) * 1024   # ...at its end: not 200 x 50 kB (or a decode)
    assert read < size                # all of them together: less than one whole frame


def write_frames_fast(folder: Path, n: int, image_type: str = "png") -> list[Path]:
    """n copies of one noisy frame (large files: reading one through would show)."""
    one = folder / f"one.{image_type}"
    noise = np.random.default_rng(0).integers(0, 256, (240, 320, 3), dtype=np.uint8)
    Image.fromarray(noise).save(one, quality=95) if image_type == "jpg" else \
        Image.fromarray(noise).save(one)
    data = one.read_bytes()
    one.unlink()
    paths = [folder / f"{k:08d}.{image_type}" for k in range(1, n + 1)]
    for p in paths:
        p.write_bytes(data)
    return paths


def test_reason_says_disk_full_and_skips_repeats():
    tail = ("[image2 @ 0x55d] Could not write frame 31\n"
            "[vost#0:0/png @ 0x55e] Error submitting a packet: No space left on device\n"
            "    Last message repeated 2 times\n"
            "Conversion failed!\n")
    assert ffmpeg.stderr_reason(tail, Path("/data/frames")) == (
        "no space left on the disk of /data/frames; free space and run again")
    tail = "[mp4 @ 0x1] Invalid argument in stream 1\n    Last message repeated 2 times\n"
    assert ffmpeg.stderr_reason(tail) == "Invalid argument in stream 1"


@pytest.fixture
def tiny_disk(tmp_path):
    """A 200 kB file system (a tmpfs: needs root), unmounted after the test."""
    disk = tmp_path / "disk"
    disk.mkdir()
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=200k", "tmpfs", str(disk)],
                       check=True, capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], capture_output=True, timeout=30)


def test_full_disk_is_said_plainly(ff, clips, tmp_path, tiny_disk):
    """Stage 1 and stage 3 on a full disk: "no space left on the disk of <folder>", not
    ffmpeg's last line ("Last message repeated 2 times")."""
    result = script("1_movie2frames.sh", clips["ntsc"], tiny_disk / "frames", cwd=tmp_path)
    assert_one_line_error(result, "no space left on the disk of", str(tiny_disk / "frames"),
                          "free space and run again")
    assert os.listdir(tiny_disk) == []
    frames = tmp_path / "frames"
    write_noise_frames(frames, 40)
    result = script("3_frames2movie.sh", frames, clips["cfr"], "--crf", "0", "-o",
                    tiny_disk / "out.mp4", cwd=tmp_path)
    assert_one_line_error(result, "no space left on the disk of", str(tiny_disk),
                          "free space and run again")
    assert os.listdir(tiny_disk) == []


def write_noise_frames(folder: Path, n: int) -> None:
    """Frames of random noise: lossless H.264 of them is large (fills a small disk)."""
    folder.mkdir()
    rng = np.random.default_rng(1)
    for k in range(1, n + 1):
        Image.fromarray(rng.integers(0, 256, (64, 96, 3), dtype=np.uint8)).save(
            folder / f"{k:08d}.png")


# --- units that need no ffmpeg ---------------------------------------------------------

def test_command_line_help_and_usage_errors(capsys):
    assert stages.main(["--help"]) == 0
    assert "extract" in capsys.readouterr().out
    assert stages.main(["frobnicate"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "choose a command" in err
    assert stages.main(["assemble", "frames", "video.mp4", "--crf", "80"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--crf" in err



def test_nice_rate_snaps_only_near_standard_rates():
    assert ffmpeg.nice_rate(Fraction(2997, 100)) == NTSC
    assert ffmpeg.nice_rate(Fraction(50, 3)) == Fraction(50, 3)
    assert ffmpeg.nice_rate(Fraction(296, 10)) == Fraction(148, 5)     # 1.3 % off 30


def test_timing_tells_rounding_jitter_from_vfr():
    tb = Fraction(1, 15360)     # 29.97 fps in this time base is 512.512 ticks a frame
    cfr = [(round(k * 15360 * 1001 / 30000), 512) for k in range(300)]
    vfr, measured, start, _ = ffmpeg._timing(tb, cfr)
    assert not vfr and start == 0 and ffmpeg.nice_rate(measured) == NTSC
    gaps = [(k * 512, 512) for k in range(30)] + [(15360 + k * 1536, 1536) for k in range(20)]
    vfr, measured, _, duration = ffmpeg._timing(tb, gaps)
    assert vfr and duration == 3 and measured == Fraction(50, 3)


def _info(**kw) -> VideoInfo:
    base = dict(path=Path("v.mp4"), fps=Fraction(30), declared_fps=Fraction(30), vfr=False,
                frame_count=90, width=8, height=8, video_codec="h264", video_index=0,
                video_start=Fraction(0), video_duration=Fraction(3), has_audio=True,
                audio_index=1, audio_codec="aac", sample_rate=RATE,
                audio_start=Fraction(-1024, RATE), audio_end=Fraction(3))
    return VideoInfo(**{**base, **kw})


def test_plan_audio_copies_only_what_it_can_cut_and_cover():
    assert assemble.plan_audio(_info(), Fraction(1), Fraction(1)).mode == "copy"
    assert assemble.plan_audio(_info(audio_codec="flac"), Fraction(1), Fraction(1)).mode == "aac"
    assert assemble.plan_audio(_info(), Fraction(1), Fraction(1), can_copy=False).mode == "aac"
    short = _info(audio_end=Fraction(3, 2))     # sound ends before the frames: pad it
    assert assemble.plan_audio(short, Fraction(1), Fraction(1)).mode == "aac"
    assert assemble.plan_audio(short, Fraction(2), Fraction(1)).mode == "none"
    silent = assemble.plan_audio(_info(has_audio=False), Fraction(0), Fraction(1))
    assert silent.mode == "none" and "no audio" in silent.note


def test_a_sound_that_ends_long_before_the_frames_is_said():
    """The wrong original (a shorter film): the video would be silent after its end."""
    assert assemble.plan_audio(_info(), Fraction(0), Fraction(3)).note is None
    assert assemble.plan_audio(_info(audio_end=Fraction(5, 2)), Fraction(0), Fraction(3)).note \
        is None  # half a second short: a film's own sound may end so
    plan = assemble.plan_audio(_info(audio_end=Fraction(1)), Fraction(0), Fraction(3))
    assert plan.mode == "aac" and plan.note == (
        "v.mp4's sound ends 2.0 s before the frames do: the rest of the video is silent; is "
        "it the film these frames came from?")


def test_ffmpeg_flags_follow_the_version(monkeypatch):
    for version, flag in (((4, 4), "-vsync"), ((5, 0), "-vsync"), ((5, 1), "-fps_mode"),
                          ((9, 0), "-fps_mode"), (None, "-fps_mode")):
        monkeypatch.setattr(ffmpeg, "version_of", lambda exe, v=version: v)
        assert ffmpeg.passthrough_flags("/usr/bin/ffmpeg")[0] == flag
    assert ffmpeg.passthrough_flags("/usr/bin/avconv")[0] == "-vsync"


def test_assemble_command_is_an_argument_list(monkeypatch):
    monkeypatch.setattr(ffmpeg, "version_of", lambda exe: (9, 0))
    frames = FrameSet(Path("/a b/100% 'x'"), "png", 101, 250)
    plan = assemble.plan_audio(_info(audio_end=Fraction(10)), Fraction(100, 30),
                             Fraction(150, 30))
    args = assemble.ffmpeg_assemble_args("ffmpeg", frames, NTSC, Path("/v/o.mp4"), plan,
                                       Path("/o/out.mp4"))
    assert args[args.index("-framerate") + 1] == "30000/1001"
    assert args[args.index("-start_number") + 1] == "101"
    assert "/a b/100%% 'x'/%08d.png" in args
    # No -frames:v (5.1 ends the sound with it): the frames' input ends at frame 250, and
    # the sound's input is cut by -ss/-t in front of it.
    assert "-frames:v" not in args and "-shortest" not in args
    original = args.index("/v/o.mp4")
    assert args[original - 5:original] == ["-ss", "3.333333", "-t", "5.000000", "-i"]
    assert args[args.index("-c:a") + 1] == "copy"
    assert "+faststart" in args and "yuv420p" in args


def test_mplayer_commands(tmp_path):
    cmd = extract.mplayer_extract_cmd("mplayer", Path("/v/a:b.mp4"), "jpg")
    assert cmd[-1] == "/v/a:b.mp4"
    assert "jpeg:quality=95:outdir=%1%." in cmd  # (run in the folder: any path length)
    frames = FrameSet(tmp_path, "png", 11, 40)
    cmd = assemble.mencoder_cmd("mencoder", frames, NTSC, (97, 61), tmp_path / "list.txt",
                                tmp_path / "o.mp4")
    assert cmd[1] == f"mf://@{tmp_path / 'list.txt'}"
    assert cmd[cmd.index("-ofps") + 1] == "30000/1001"
    # the video alone: with the sound, mencoder drops a frame and pads the mp3
    assert "expand=98:62:0:0" in cmd and "-nosound" in cmd and "-audiofile" not in cmd
    even = assemble.mencoder_cmd("mencoder", frames, NTSC, (96, 64), tmp_path / "l.txt",
                                 tmp_path / "o.mp4")
    assert "-vf" not in even


MENCODER = shutil.which("mencoder")


@pytest.mark.skipif(MENCODER is None, reason="mencoder is not installed (Debian: apt-get "
                    "install mencoder; .ci/run installs it)")
def test_stage3_with_mencoder_writes_every_frame_and_all_of_the_sound(ff, clips, tmp_path):
    """Debian's mencoder, as the original's users ran it: all 60 frames and the sound for
    as long as them (it wrote 59, and 2.04 s of mp3 for 2.00 s, when it muxed the sound)."""
    r1 = script("1_movie2frames.sh", "mplayer", clips["cfr"], "frames", "png", cwd=tmp_path)
    assert r1.returncode == 0, r1.stderr
    r3 = script("3_frames2movie.sh", "mplayer", "frames", clips["cfr"], "png", cwd=tmp_path)
    assert r3.returncode == 0, r3.stderr
    frames, sound = streams_written(ff, tmp_path / "frames_done.mp4")
    assert frames == 60
    assert sound is not None and abs(sound - 2.0) <= 0.03  # one AAC packet at most over


def test_find_ffmpeg_prefers_path_then_imageio(monkeypatch):
    monkeypatch.delenv(ffmpeg.ENV_VAR, raising=False)
    monkeypatch.setattr(shutil, "which", lambda name: "/opt/bin/ffmpeg")
    assert ffmpeg.find_ffmpeg() == "/opt/bin/ffmpeg"
    monkeypatch.setattr(shutil, "which", lambda name: None)
    fake = type(sys)("imageio_ffmpeg")
    fake.get_ffmpeg_exe = lambda: sys.executable     # any file that runs
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", fake)
    assert ffmpeg.find_ffmpeg() == sys.executable
    fake.get_ffmpeg_exe = lambda: "/nowhere/ffmpeg"   # a stale $IMAGEIO_FFMPEG_EXE
    with pytest.raises(DreamerError, match="ffmpeg not found"):
        ffmpeg.find_ffmpeg()
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)     # not installed
    with pytest.raises(DreamerError, match="ffmpeg not found"):
        ffmpeg.find_ffmpeg()


def test_reason_picks_the_line_that_explains():
    tail = ("[libx264 @ 0x55d] Value 99.000000 for parameter 'crf' out of range\n"
            "[vost#0:0/libx264 @ 0x55e] Error while opening encoder\n"
            "[out#0/mp4 @ 0x55f] Task finished with error code: -22\n"
            "Conversion failed!\n")
    assert ffmpeg.stderr_reason(tail) == "Error while opening encoder"


def test_stage_3_takes_the_contiguous_run_of_frames(tmp_path):
    for k in range(101, 251):
        (tmp_path / f"{k:08d}.png").write_bytes(b"")
    (tmp_path / "dream_manifest.json").write_text("{}")
    frames = find_frames(tmp_path, None, None, None, STAGE3)
    assert (frames.first, frames.last, frames.image_type) == (101, 250, "png")
    assert find_frames(tmp_path, "png", 120, 130, STAGE3).numbers == range(120, 131)
    (tmp_path / "00000200.png").unlink()
    with pytest.raises(DreamerError, match="00000200.png is missing"):
        find_frames(tmp_path, None, None, None, STAGE3)
