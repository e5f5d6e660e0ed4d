"""Frames as they come: every kind of image decoded to its true 8-bit RGB (16-bit grey and
colour included, which once dreamed into white), images whose header claims an absurd size,
a video or a file given where a folder of frames belongs, an output that is a file, and a
full disk under stage 3's encoder: each a correct result or one line."""
from __future__ import annotations

import os
import shutil
import struct
import subprocess
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import write_frames
from dreamer.cli.dream import main as dream_main
from dreamer.errors import DreamerError
from dreamer.video import ffmpeg, frames as frames_module
from conftest import bomb
from dreamer.image import rgb8
from dreamer.video.ffmpeg import FFmpegError
from dreamer.video.frames import (STAGE2, STAGE3, common_size, find_frames, prepare_output,
                                  read_frame)

# 16-bit values around every rounding edge of v / 257, and the extremes
EDGES = np.array([0, 1, 128, 129, 255, 256, 257, 385, 386, 32767, 32768, 32896, 65407,
                  65408, 65534, 65535], dtype=np.uint16)


def expected8(sixteen: np.ndarray) -> np.ndarray:
    """The true 8-bit value of 16-bit samples: v / 257, rounded to nearest."""
    return np.floor(sixteen.astype(np.float64) / 257 + 0.5).astype(np.uint8)


def samples16(shape, seed=0) -> np.ndarray:
    """16-bit samples: the edges first, then random ones."""
    rng = np.random.default_rng(seed)
    values = rng.integers(0, 65536, size=shape, dtype=np.uint16)
    flat = values.reshape(-1)
    flat[:len(EDGES)] = EDGES
    return values


def png(path: Path, pixels: np.ndarray, bit_depth: int) -> Path:
    """A PNG written byte by byte (no filter), so its samples are exactly `pixels`:
    (H, W) grey, (H, W, 2) grey and alpha, (H, W, 3) RGB or (H, W, 4) RGBA."""
    h, w = pixels.shape[:2]
    channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    color_type = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    dtype = ">u2" if bit_depth == 16 else "u1"
    rows = pixels.astype(dtype).reshape(h, -1)
    raw = b"".join(b"\0" + row.tobytes() for row in rows)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body)))

    ihdr = struct.pack(">IIBBBBB", w, h, bit_depth, color_type, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    return path


def grey3(grey: np.ndarray) -> np.ndarray:
    return np.repeat(grey[..., None], 3, axis=2)


def ffmpeg_exe() -> str:
    try:
        import imageio_ffmpeg
        return imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError, OSError):
        exe = shutil.which("ffmpeg")
        if exe is None:
            pytest.skip("no ffmpeg here")
        return exe


# --- 16-bit frames -----------------------------------------------------------------------

def test_16_bit_grey_png_is_its_8_bit_grey_not_white(tmp_path):
    sixteen = samples16((24, 32))
    path = png(tmp_path / "00000001.png", sixteen, 16)
    with Image.open(path) as img:
        assert img.mode in ("I;16", "I;16B", "I")   # as Pillow opens it
    got = read_frame(path)
    assert got.dtype == np.uint8 and got.shape == (24, 32, 3)
    np.testing.assert_array_equal(got, grey3(expected8(sixteen)))


@pytest.mark.parametrize("channels", [3, 4, 2], ids=["RGB 16-bit", "RGBA 16-bit",
                                                     "grey and alpha 16-bit"])
def test_16_bit_colour_png_is_every_sample_rounded_not_its_high_byte(tmp_path, channels):
    sixteen = samples16((24, 32, channels), seed=channels)
    path = png(tmp_path / "00000001.png", sixteen, 16)
    got = read_frame(path)
    colour = sixteen[..., :3] if channels >= 3 else grey3(sixteen[..., 0])
    np.testing.assert_array_equal(got, expected8(colour))


@pytest.mark.parametrize("pix_fmt,raw_fmt,channels", [("gray16be", "gray16le", 1),
                                                      ("rgb48be", "rgb48le", 3)])
def test_ffmpeg_16_bit_frames_read_as_their_8_bit_values(tmp_path, pix_fmt, raw_fmt,
                                                         channels):
    """Frames as `ffmpeg ... -pix_fmt gray16be` (or rgb48be) writes them, against the same
    picture's 16-bit samples from ffmpeg itself (rawvideo)."""
    exe = ffmpeg_exe()
    source = ["-f", "lavfi", "-i", "testsrc2=size=64x48", "-frames:v", "1"]
    path = tmp_path / "00000001.png"
    subprocess.run([exe, "-v", "error", "-y", *source, "-pix_fmt", pix_fmt, str(path)],
                   check=True, timeout=60)
    raw = subprocess.run([exe, "-v", "error", *source, "-pix_fmt", raw_fmt, "-f", "rawvideo",
                          "-"], check=True, capture_output=True, timeout=60).stdout
    sixteen = np.frombuffer(raw, dtype="<u2").reshape(48, 64, channels)
    want = expected8(sixteen if channels == 3 else grey3(sixteen[..., 0]))
    got = read_frame(path)
    np.testing.assert_array_equal(got, want)
    assert got.mean() < 200, "not the almost white frame of old"


def test_16_bit_grey_frames_dream_as_grey_not_white(capsys, tmp_path, tiny_model):
    """The whole stage 2: zero iterations give back the frames, as 8-bit."""
    folder = tmp_path / "frames"
    folder.mkdir()
    sixteen = [samples16((40, 48), seed=k) for k in (1, 2)]
    for k, values in enumerate(sixteen, 1):
        png(folder / f"{k:08d}.png", values, 16)
    out = tmp_path / "out"
    code = dream_main(["-i", str(folder), "-o", str(out), "-t", str(tiny_model), "-m",
                       "tiny.caffemodel", "-itr", "0", "-oct", "1", "-b", "1", "--seed", "1",
                       "-v", "0"])
    assert code == 0, capsys.readouterr().err
    for k, values in enumerate(sixteen, 1):
        got = np.asarray(Image.open(out / f"{k:08d}.png").convert("RGB")).astype(int)
        assert np.abs(got - grey3(expected8(values)).astype(int)).max() <= 1


# --- every other kind of image ----------------------------------------------------------

def eight(shape, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)


def test_grey_L(tmp_path):
    grey = eight((20, 30))
    Image.fromarray(grey, "L").save(tmp_path / "00000001.png")
    np.testing.assert_array_equal(read_frame(tmp_path / "00000001.png"), grey3(grey))


def test_grey_and_alpha_LA_drops_the_alpha(tmp_path):
    la = eight((20, 30, 2))
    Image.fromarray(la, "LA").save(tmp_path / "00000001.png")
    np.testing.assert_array_equal(read_frame(tmp_path / "00000001.png"), grey3(la[..., 0]))


def test_RGBA_drops_the_alpha(tmp_path):
    rgba = eight((20, 30, 4))
    Image.fromarray(rgba, "RGBA").save(tmp_path / "00000001.png")
    np.testing.assert_array_equal(read_frame(tmp_path / "00000001.png"), rgba[..., :3])


def test_palette_P_is_looked_up(tmp_path):
    palette = eight((256, 3), seed=1)
    index = eight((20, 30), seed=2)
    img = Image.fromarray(index, "P")
    img.putpalette(palette.reshape(-1).tolist())
    img.save(tmp_path / "00000001.png")
    np.testing.assert_array_equal(read_frame(tmp_path / "00000001.png"), palette[index])


def test_palette_and_alpha_PA_is_looked_up():
    palette = eight((256, 3), seed=3)
    index = eight((20, 30), seed=4)
    img = Image.fromarray(index, "P")
    img.putpalette(palette.reshape(-1).tolist())
    pa = img.convert("PA")
    assert pa.mode == "PA"
    np.testing.assert_array_equal(rgb8(pa), palette[index])


def test_CMYK_jpeg_is_converted(tmp_path):
    cmyk = eight((16, 24, 4), seed=5)
    path = tmp_path / "00000001.jpg"
    Image.fromarray(cmyk, "CMYK").save(path, quality=100)
    with Image.open(path) as img:
        assert img.mode == "CMYK"
        stored = np.asarray(img).astype(np.float64)   # what the JPEG holds
    c, k = stored[..., :3], stored[..., 3:]
    want = np.floor((255 - c) * (255 - k) / 255 + 0.5)
    got = read_frame(path).astype(np.float64)
    assert np.abs(got - want).max() <= 1


def test_16_bit_big_endian_I16B(tmp_path):
    """Pillow's I;16B (a TIFF; Pillow reads a frame file by its content, not its name)."""
    sixteen = samples16((20, 30), seed=6)
    img = Image.frombuffer("I;16B", (30, 20), sixteen.astype(">u2").tobytes(), "raw",
                           "I;16B", 0, 1)
    path = tmp_path / "00000001.png"
    img.save(path, format="TIFF")
    with Image.open(path) as check:
        assert check.mode == "I;16B"
    np.testing.assert_array_equal(read_frame(path), grey3(expected8(sixteen)))


def test_32_bit_I_is_taken_as_16_bit(tmp_path):
    """Mode I (how older Pillow opened 16-bit grey PNGs): the 16-bit scale, held to it."""
    sixteen = samples16((20, 30), seed=7).astype(np.int32)
    sixteen[0, :3] = [-5, 70000, 2**31 - 1]
    path = tmp_path / "00000001.png"
    Image.fromarray(sixteen).save(path, format="TIFF")
    with Image.open(path) as check:
        assert check.mode == "I"
    want = expected8(np.clip(sixteen, 0, 65535))
    np.testing.assert_array_equal(read_frame(path), grey3(want))


def test_float_F_is_0_to_255_rounded(tmp_path):
    values = np.random.default_rng(8).uniform(-20, 280, (20, 30)).astype(np.float32)
    values[0, :5] = [0.4, 0.6, 127.5, np.nan, 254.5]
    path = tmp_path / "00000001.png"
    Image.fromarray(values).save(path, format="TIFF")
    with Image.open(path) as check:
        assert check.mode == "F"
    want = np.clip(np.floor(np.nan_to_num(values, nan=0) + 0.5), 0, 255).astype(np.uint8)
    got = read_frame(path)
    np.testing.assert_array_equal(got, grey3(want))
    assert list(got[0, :5, 0]) == [0, 1, 128, 0, 255]


def test_resized_16_bit_frame_is_the_resized_8_bit_one(tmp_path):
    sixteen = samples16((24, 32), seed=9)
    path = png(tmp_path / "00000001.png", sixteen, 16)
    want = np.asarray(Image.fromarray(grey3(expected8(sixteen))).resize((16, 12),
                                                                         Image.LANCZOS))
    np.testing.assert_array_equal(read_frame(path, (16, 12)), want)


def test_frames_read_are_writable_arrays(tmp_path):
    """(torch warns on every frame made from a read-only array)"""
    write_frames(tmp_path, 1)
    assert read_frame(tmp_path / "00000001.png").flags.writeable


# --- images whose header claims an absurd size ------------------------------------------

def one_line_error(excinfo, *words):
    text = str(excinfo.value)
    assert "\n" not in text and all(w in text for w in words), text
    return text


def test_decompression_bomb_frame_is_one_line_where_frames_are_read(tmp_path):
    write_frames(tmp_path, 3)
    bomb(tmp_path / "00000002.png")
    with pytest.raises(DreamerError) as e:
        read_frame(tmp_path / "00000002.png")
    one_line_error(e, "00000002.png", "too large")
    with pytest.raises(DreamerError) as e:
        common_size(find_frames(tmp_path, None, None, None))
    one_line_error(e, "00000002.png", "too large")


def test_stage_2_over_a_decompression_bomb_frame_is_refused_in_one_line(capsys, tmp_path,
                                                                         tiny_model):
    folder = tmp_path / "frames"
    write_frames(folder, 3)
    bomb(folder / "00000003.png")
    out = tmp_path / "out"
    code = dream_main(["-i", str(folder), "-o", str(out), "-t", str(tiny_model), "-m",
                       "tiny.caffemodel", "-itr", "1", "-v", "0"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and len(lines) == 1 and "00000003.png" in lines[0], lines
    assert not out.exists()


def test_images_over_pillows_warning_size_are_read_without_the_warning(tmp_path,
                                                                       monkeypatch):
    """Between Pillow's limit and twice it (a real 16K frame is there) an image is read,
    silently; beyond twice it, refused in one line."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    rgb = eight((30, 40, 3), seed=10)       # 1200 pixels: Pillow would warn
    Image.fromarray(rgb).save(tmp_path / "00000001.png")
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        np.testing.assert_array_equal(read_frame(tmp_path / "00000001.png"), rgb)
    assert not [w for w in seen if issubclass(w.category, Image.DecompressionBombWarning)]
    Image.fromarray(eight((50, 50, 3))).save(tmp_path / "00000002.png")   # 2500 > 2000
    with pytest.raises(DreamerError) as e:
        read_frame(tmp_path / "00000002.png")
    one_line_error(e, "00000002.png")


# --- a video, or a file, where a folder of frames belongs --------------------------------

def test_a_video_given_as_the_frames_folder_says_run_stage_1(tmp_path):
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"\0" * 100)
    with pytest.raises(DreamerError) as e:
        find_frames(clip, None, None, None, STAGE2)
    text = one_line_error(e, "clip.mp4 is a video", "./1_movie2frames.sh ffmpeg",
                          "dreamvideo all")
    assert "does not exist" not in text
    with pytest.raises(DreamerError) as e:
        find_frames(clip, None, None, None, STAGE3)
    assert "does not exist" not in one_line_error(e, "clip.mp4 is a video")


def test_stage_2_with_a_video_as_input_says_it_is_a_video(capsys, tmp_path, tiny_model):
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"\0" * 100)
    code = dream_main(["-i", str(clip), "-o", str(tmp_path / "out"), "-t", str(tiny_model),
                       "-m", "tiny.caffemodel", "-v", "0"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and len(lines) == 1, lines
    assert "is a video" in lines[0] and "./1_movie2frames.sh ffmpeg" in lines[0]
    assert f"dreamvideo all {clip}" in lines[0]


def test_another_file_given_as_the_frames_folder_says_it_is_a_file(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    with pytest.raises(DreamerError) as e:
        find_frames(notes, None, None, None, STAGE2)
    assert "does not exist" not in one_line_error(e, "notes.txt is a file, not a folder")


# --- an output that is a file, and what a refusal leaves -------------------------------

def test_output_that_is_a_file_says_so_not_file_exists(tmp_path):
    write_frames(tmp_path / "frames", 1)
    target = tmp_path / "taken"
    target.write_text("mine")
    with pytest.raises(DreamerError) as e:
        prepare_output(target, tmp_path / "frames")
    text = one_line_error(e, "is a file, not a folder", "choose another -o")
    assert "File exists" not in text
    assert target.read_text() == "mine"
    with pytest.raises(DreamerError) as e:
        prepare_output(target / "sub" / "out", tmp_path / "frames")
    one_line_error(e, str(target), "is a file, not a folder", "choose another -o")


def test_stage_2_with_a_file_as_output_is_one_line(capsys, tmp_path, tiny_model):
    write_frames(tmp_path / "frames", 1)
    target = tmp_path / "taken"
    target.write_text("mine")
    code = dream_main(["-i", str(tmp_path / "frames"), "-o", str(target), "-t",
                       str(tiny_model), "-m", "tiny.caffemodel", "-v", "0"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and len(lines) == 1 and "is a file, not a folder" in lines[0], lines
    assert "File exists" not in lines[0]


def test_a_refusal_in_prepare_output_removes_the_folders_it_made(tmp_path, monkeypatch):
    write_frames(tmp_path / "frames", 1)

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(frames_module.tempfile, "mkstemp", refuse)
    with pytest.raises(DreamerError) as e:
        prepare_output(tmp_path / "new" / "out", tmp_path / "frames")
    one_line_error(e, "not writable")
    assert not (tmp_path / "new").exists()


def test_an_unreadable_first_frame_is_refused_before_a_manifest_is_written(capsys, tmp_path,
                                                                           tiny_model):
    """The run never starts: no folder holding only a manifest of a run with no frame."""
    folder = tmp_path / "frames"
    write_frames(folder, 3)
    first = folder / "00000001.png"
    data = first.read_bytes()
    first.write_bytes(data[:len(data) // 2])    # its header is whole, its pixels are not
    out = tmp_path / "out"
    code = dream_main(["-i", str(folder), "-o", str(out), "-t", str(tiny_model), "-m",
                       "tiny.caffemodel", "-itr", "1", "-v", "0"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and len(lines) == 1 and "00000001.png" in lines[0], lines
    assert not out.exists(), sorted(os.listdir(out))


# --- stage 3 on a full disk -------------------------------------------------------------

@pytest.mark.parametrize("stderr", [
    # ffmpeg 5.1 (Debian 12), which then exits 0
    ("Error writing trailer of /d/.out.mp4.1.x.part.mp4: No space left on device\n"
     "Error closing file /d/.out.mp4.1.x.part.mp4: No space left on device\n"),
    # ffmpeg 7 and later
    ("[out#0/mp4 @ 0x556c3264e480] Error writing trailer: No space left on device\n"
     "[out#0/mp4 @ 0x556c3264e480] Error closing file: No space left on device\n"),
    ("[vf#0:0 @ 0x55] Task finished with error code: -28 (No space left on device)\n"
     "Conversion failed!\n"),
    "av_interleaved_write_frame(): ENOSPC\n",
], ids=["ffmpeg 5.1", "ffmpeg 7", "error code -28", "ENOSPC"])
def test_a_full_disk_is_said_plainly_naming_the_folder(stderr):
    line = ffmpeg.full_disk(stderr, Path("/data/films"))
    assert line == "no space left on the disk of /data/films; free space and run again"
    assert ffmpeg.stderr_reason(stderr, Path("/data/films")) == line


def test_other_errors_are_not_a_full_disk():
    for stderr in ("/d/x.mp4: Invalid data found when processing input\n",
                   "[mov,mp4 @ 0x5] moov atom not found\n", "/d/ENOSPCfilm.mp4: No such file"):
        assert ffmpeg.full_disk(stderr, Path("/d")) is None


@pytest.mark.parametrize("exit_status", [0, 228])
def test_a_tool_that_ran_out_of_space_fails_in_one_line_even_when_it_exits_0(
        tmp_path, exit_status):
    """ffmpeg 5.1 exits 0 when the trailer of the mp4 cannot be written: the file is cut
    short, and reading it back said only "Invalid data found when processing input"."""
    fake = tmp_path / "ffmpeg"
    fake.write_text("#!/bin/sh\n"
                    "echo 'Error writing trailer of out.mp4: No space left on device' >&2\n"
                    "echo 'Error closing file out.mp4: No space left on device' >&2\n"
                    f"exit {exit_status}\n")
    fake.chmod(0o755)
    with pytest.raises(FFmpegError) as e:
        ffmpeg.run_tool([str(fake)], "encoding out.mp4", folder=tmp_path / "films")
    assert str(e.value) == (f"encoding out.mp4 failed: no space left on the disk of "
                            f"{tmp_path / 'films'}; free space and run again")
