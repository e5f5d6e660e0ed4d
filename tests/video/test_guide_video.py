"""A guide video decoded into still frames (dreamer/video/guide_video.py): a damaged or
cut-short video is refused in one line, a damaged folder of decoded frames is decoded
again."""
from __future__ import annotations

import json
import subprocess
from fractions import Fraction
from pathlib import Path

import imageio_ffmpeg
import pytest

from dreamer.errors import DreamerError
from dreamer.video import ffmpeg, guide_video

FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()
CONTAINERS = {  # name: flags; the mp4 keeps its index in front, so half of it still opens
    "clip.mp4": ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-movflags", "+faststart"],
    "clip.mkv": ["-c:v", "libx264", "-pix_fmt", "yuv420p"],
    "clip.gif": [],
}


def make_video(path: Path, frames: int = 30, rate: int = 10, size: str = "96x72") -> Path:
    subprocess.run([FFMPEG, "-v", "error", "-f", "lavfi", "-i",
                    f"testsrc2=size={size}:rate={rate}", "-frames:v", str(frames),
                    *CONTAINERS.get(path.name, []), str(path)], check=True)
    return path


def cut_in_half(video: Path, to: Path) -> Path:
    """The first half of the file's bytes, as a download or copy that stopped would."""
    half = video.stat().st_size // 2
    with open(to, "wb") as out:
        subprocess.run(["head", "-c", str(half), str(video)], stdout=out, check=True)
    return to


def decoded(cache: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(cache.glob("*/*.png"))}


@pytest.mark.parametrize("name", list(CONTAINERS))
def test_a_whole_guide_video_gives_every_frame(tmp_path, name):
    video = make_video(tmp_path / name)
    images, record = guide_video.decode(video, tmp_path / "cache", None, 1000)
    assert len(images) == 30 and record["frames"] == 30 and record["fps"] == "10"
    images, _ = guide_video.decode(video, tmp_path / "cache", None, 7)
    assert len(images) == 7  # only what the run reaches


@pytest.mark.parametrize("name", list(CONTAINERS))
@pytest.mark.parametrize("most", [1000, 5], ids=["whole run", "a run of 5 frames"])
def test_a_guide_video_cut_in_half_is_refused_in_one_line(tmp_path, name, most):
    """Before: the readable part (as little as one frame) guided the film, looping."""
    video = cut_in_half(make_video(tmp_path / name), tmp_path / f"cut {name}")
    says = []
    with pytest.raises(DreamerError) as caught:
        guide_video.decode(video, tmp_path / "cache", None, most, says.append)
    message = str(caught.value)
    assert "\n" not in message
    assert f"the guide video {video} is " in message and "cut short" in message
    assert f"ffmpeg -i '{video}' guide_fixed.mp4" in message  # the fix, ready to paste
    assert list((tmp_path / "cache").iterdir()) == []  # no frames kept, no work folder
    # and the fix works: re-encoded, the part that decodes is a guide
    fixed = tmp_path / "guide_fixed.mp4"
    subprocess.run([FFMPEG, "-v", "quiet", "-i", str(video), str(fixed)], check=True)
    images, _ = guide_video.decode(fixed, tmp_path / "cache", None, most)
    assert 1 <= len(images) < 30 or most == 5


def test_a_video_that_does_not_open_is_one_line_naming_it(tmp_path):
    plain = tmp_path / "plain.mp4"  # the index at the end: half of it does not open
    subprocess.run([FFMPEG, "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=96x72:rate=10",
                    "-frames:v", "30", "-pix_fmt", "yuv420p", str(plain)], check=True)
    video = cut_in_half(plain, tmp_path / "cut.mp4")
    with pytest.raises(DreamerError, match=r"^cannot read the guide video .*cut\.mp4 "
                                           r"\(.*\); check that it plays: if it is cut short "
                                           "or damaged, get the whole video again$"):
        guide_video.decode(video, tmp_path / "cache", None, 10)


def info(duration=Fraction(3), fps=Fraction(10), audio_end=None) -> ffmpeg.VideoInfo:
    return ffmpeg.VideoInfo(
        path=Path("guide.mkv"), fps=fps, declared_fps=fps, vfr=False, frame_count=30,
        width=96, height=72, video_codec="h264", video_index=0, video_start=Fraction(0),
        video_duration=duration, has_audio=audio_end is not None, audio_end=audio_end)


REPORT = """[info] Input #0, matroska,webm, from 'guide.mkv':
[info]   Duration: 00:00:03.00, start: 0.000000, bitrate: 22 kb/s
[info]   Stream #0:0: Video: h264 (High), yuv420p, 96x72, 10 fps, 10 tbr, 1k tbn
[out#0/image2 @ 0x5555e9b310c0] [info] video:5KiB audio:0KiB subtitle:0KiB
"""


def test_the_decode_report_is_read_for_errors_and_the_promised_length():
    guide_video.check_decoded(info(), Fraction(10), 1000, 30, REPORT)  # whole: accepted
    guide_video.check_decoded(info(), Fraction(10), 1000, 29, REPORT)  # a frame at an end
    guide_video.check_decoded(info(), Fraction(10), 1000, 30,
                              REPORT + "[h264 @ 0x55] [warning] mmco: unref short failure\n")
    guide_video.check_decoded(info(), Fraction(10), 1000, 30, None)  # a tool without levels
    with pytest.raises(DreamerError, match=r"guide.mkv is damaged or cut short \(ffmpeg: "
                                           r"Invalid NAL unit size \(627 > 38\)\); get the"):
        guide_video.check_decoded(info(), Fraction(10), 1000, 30, REPORT +
                                  "[h264 @ 0x55] [error] Invalid NAL unit size (627 > 38).\n")
    # the container says 3 s; the packets hold 1.1 s (video) or 1.2 s (sound)
    with pytest.raises(DreamerError, match=r"guide.mkv is cut short: its container says it "
                                           r"lasts until 3.00 s but it holds frames and sound "
                                           r"only to 1.20 s; get the whole video"):
        guide_video.check_decoded(info(Fraction(11, 10), audio_end=Fraction(6, 5)),
                                  Fraction(10), 1000, 11, REPORT)
    # the sound outlasting the video is not a cut, and a guessed length proves nothing
    guide_video.check_decoded(info(Fraction(2), audio_end=Fraction(3)), Fraction(10), 1000,
                              20, REPORT)
    guide_video.check_decoded(info(Fraction(1)), Fraction(10), 1000, 10, REPORT.replace(
        "[info]   Duration", "[mpeg @ 0x5] [warning] Estimating duration from bitrate, this "
        "may be inaccurate\n[info]   Duration"))
    # packets there, frames not decoded (at 5 fps, 3 s are 15 frames)
    with pytest.raises(DreamerError, match="decoded to 4 frames where its 3.00 s at 5 fps "
                                           "make 15"):
        guide_video.check_decoded(info(), Fraction(5), 1000, 4, REPORT)
    guide_video.check_decoded(info(), Fraction(5), 4, 4, REPORT)  # a run needing only 4


@pytest.mark.parametrize("damage", ["truncate a frame", "remove a frame", "add a frame",
                                    "change a frame", "empty list", "no list"])
def test_damaged_decoded_frames_are_decoded_again(tmp_path, damage):
    video = make_video(tmp_path / "clip.mkv", frames=6)
    cache = tmp_path / "cache"
    images, _ = guide_video.decode(video, cache, None, 100)
    good = decoded(cache)
    assert len(good) == 6
    folder = images[0].parent
    says = []
    guide_video.decode(video, cache, None, 100, says.append)
    assert says == []  # whole: reused as it is
    if damage == "truncate a frame":
        data = images[2].read_bytes()
        images[2].write_bytes(data[:len(data) // 2])
    elif damage == "remove a frame":
        images[5].unlink()
    elif damage == "add a frame":
        (folder / "00000007.png").write_bytes(images[0].read_bytes())
    elif damage == "change a frame":
        data = bytearray(images[1].read_bytes())
        data[-20] ^= 1
        images[1].write_bytes(bytes(data))
    elif damage == "empty list":
        (folder / guide_video.DONE).write_bytes(b"")
    else:
        (folder / guide_video.DONE).unlink()
    images, record = guide_video.decode(video, cache, None, 100, says.append)
    assert any("are damaged or incomplete; decoding it again" in s for s in says)
    assert decoded(cache) == good and record["frames"] == 6 and len(images) == 6
    assert sorted(p.name for p in cache.iterdir()) == [folder.name]


def test_the_list_of_decoded_frames_holds_their_sha256s(tmp_path):
    import hashlib

    images, _ = guide_video.decode(make_video(tmp_path / "clip.mp4", frames=3),
                                   tmp_path / "cache", None, 100)
    listed = json.loads((images[0].parent / guide_video.DONE).read_text())["frames"]
    assert listed == {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in images}


def test_a_full_disk_while_decoding_is_said_as_such_not_blamed_on_the_video(tmp_path,
                                                                            monkeypatch):
    ffmpeg.version_of(FFMPEG)  # (cached before subprocess.run is replaced)
    for code in (0, 1):  # ffmpeg 5.1 exits 0 when the disk fills
        report = (b"[info] Input #0, matroska,webm, from 'x.mkv':\n[image2 @ 0x55] [error] "
                  b"Could not write to file 00000009.png: No space left on device\n")
        monkeypatch.setattr(guide_video.subprocess, "run",
                            lambda *a, **k: subprocess.CompletedProcess(a, code, b"", report))
        with pytest.raises(ffmpeg.FFmpegError, match="no space left") as caught:
            guide_video._run(FFMPEG, ["-i", "x.mkv"], "decoding the guide video x.mkv",
                             tmp_path, Path("x.mkv"))
        assert "damaged" not in str(caught.value) and str(tmp_path) in str(caught.value)


def test_a_work_folder_left_by_a_killed_decode_is_removed(tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()
    video = make_video(tmp_path / "clip.mkv", frames=3)
    cache = tmp_path / "cache"
    images, _ = guide_video.decode(video, cache, None, 100)
    key = images[0].parent.name
    left = cache / f".{key}.{dead.pid}.part"
    left.mkdir()
    (left / "00000001.png").write_bytes(b"half")
    (images[0].parent / guide_video.DONE).unlink()  # so that it decodes again
    guide_video.decode(video, cache, None, 100)
    assert sorted(p.name for p in cache.iterdir()) == [key]
