"""`dreamvideo demo` (`make demo`): a short clip built here, dreamed with the defaults on
GoogLeNet, put back together with its sound, plus a contact sheet to look at.

The clip is a slow pan and zoom over Grace Hopper's portrait (a US Navy photo in the
public domain) that matplotlib ships as sample data; matplotlib is never imported, only
that file is read.
"""
from __future__ import annotations

import argparse
import importlib.util
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image

from dreamer.caffe import models
from dreamer.video import ffmpeg
from dreamer.errors import DreamerError
from dreamer.video.frames import write_image
from dreamer.cli.oneline import OneLineParser
from dreamer.cli.signals import run

PHOTO = ("mpl-data", "sample_data", "grace_hopper.jpg")
PHOTO_INSTALL = ".venv/bin/pip install --no-deps matplotlib==3.11.2"


def find_photo() -> Path:
    spec = importlib.util.find_spec("matplotlib")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder).joinpath(*PHOTO)
        if path.is_file():
            return path
    raise DreamerError(f"the demo's photo ships with matplotlib, which is not installed; run "
                       f"`{PHOTO_INSTALL}` (make demo does) and try again")


def pan_zoom_frames(photo: Path, count: int, size: tuple[int, int]) -> Iterator[Image.Image]:
    """A camera move: from the whole photo's width down and in towards the face."""
    with Image.open(photo) as img:
        img = img.convert("RGB")
    w, h = size
    aspect = w / h
    for i in range(count):
        t = i / max(count - 1, 1)
        t = t * t * (3 - 2 * t)                    # ease in and out: no jolt at the ends
        crop_w = img.width * (1.0 - 0.35 * t)
        crop_h = crop_w / aspect
        cx = img.width / 2
        cy = crop_h / 2 + (img.height * 0.42 - crop_h / 2) * t
        box = (cx - crop_w / 2, cy - crop_h / 2, cx + crop_w / 2, cy + crop_h / 2)
        yield img.resize((w, h), Image.LANCZOS, box=box)


def build_clip(photo: Path, out: Path, seconds: float, fps: int, size) -> Path:
    """An H.264 clip with a 440 Hz tone, so stage 3's audio has something to carry."""
    exe = ffmpeg.find_ffmpeg()
    with tempfile.TemporaryDirectory(prefix="dreamer-demo-") as tmp:
        count = int(round(seconds * fps))
        for i, frame in enumerate(pan_zoom_frames(photo, count, size), start=1):
            write_image(np.asarray(frame), Path(tmp) / f"{i:04d}.png")
        ffmpeg.run(exe, ["-y", "-framerate", str(fps), "-i", str(Path(tmp) / "%04d.png"),
                         "-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}",
                         "-c:v", "libx264", "-pix_fmt", "yuv420p", "-crf", "16",
                         "-c:a", "aac", "-shortest", str(out)],
                   "building the demo clip")
    return out


def contact_sheet(raw_dir: Path, dreamed_dir: Path, out: Path, columns: int = 5) -> Path:
    """Raw frames above their dreams, evenly spread over the clip."""
    dreamed = sorted(dreamed_dir.glob("0*.png"))
    picks = [dreamed[round(i * (len(dreamed) - 1) / (columns - 1))] for i in range(columns)]
    with Image.open(picks[0]) as first:
        w, h = first.size
    scale = min(1.0, 1600 / (w * columns))
    tw, th = int(w * scale), int(h * scale)
    sheet = Image.new("RGB", (tw * columns, th * 2), "black")
    for i, path in enumerate(picks):
        for row, folder in enumerate((raw_dir, dreamed_dir)):
            with Image.open(folder / path.name) as img:
                sheet.paste(img.convert("RGB").resize((tw, th), Image.LANCZOS), (i * tw, row * th))
    write_image(np.asarray(sheet), out)
    return out


def ensure_googlenet() -> None:
    """Finds GoogLeNet, downloading it when it is nowhere; offline, one line says how."""
    try:
        models.resolve(None, "bvlc_googlenet.caffemodel", "deploy.prototxt")
        return
    except DreamerError:
        pass
    info = models.get_info("bvlc_googlenet")
    try:
        models.download(info)
    except models.DownloadError as e:
        raise DreamerError(
            f"the demo needs GoogLeNet, which is not here and could not be downloaded "
            f"({e.reason}); put {info.caffemodel} ({info.weights_url}) and deploy.prototxt "
            f"into {models.download_dir() / info.name}/, or set DREAMER_MODELS to a folder "
            "holding bvlc_googlenet/") from None


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    p = OneLineParser(prog=prog or "dreamvideo demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--folder", default="demo", help="where everything goes (default: demo/)")
    p.add_argument("--seconds", type=float, default=2.5, help="clip length (default: 2.5)")
    p.add_argument("--fps", type=int, default=12, help="clip frame rate (default: 12)")
    p.add_argument("--size", default="384x288", help="clip size WxH (default: 384x288)")
    args = p.parse_args(argv)
    return run(lambda: _run(args), again="run the same command again: it re-uses what is done")


def _run(args: argparse.Namespace) -> int:
    from dreamer.config import DreamConfig
    from dreamer.run.pipeline import run_all

    try:
        size = tuple(int(v) for v in args.size.lower().split("x"))
        assert len(size) == 2 and min(size) >= 64
    except (ValueError, AssertionError):
        raise DreamerError(f"--size {args.size} is not WxH with both at least 64, e.g. "
                           "384x288") from None
    ensure_googlenet()  # before building anything
    photo = find_photo()
    folder = Path(args.folder)
    folder.mkdir(parents=True, exist_ok=True)
    clip = build_clip(photo, folder / "grace_hopper.mp4", args.seconds, args.fps, size)
    work = folder / "grace_hopper"
    done = run_all(clip, folder / "grace_hopper_done.mp4", DreamConfig(verbose=1),
                   workdir=work, overwrite=True)
    sheet = contact_sheet(work / "frames", work / "dreamed", folder / "contact_sheet.png")
    print(f"\ndemo: {done}\ndemo: {sheet}")
    return 0
