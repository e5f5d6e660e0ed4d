"""The README's pictures (`python -m dreamer.cli.gallery`, after `make demo`): the demo clip
dreamed with constant, loop and random blend, guided, zooming and moving with the film
(--flow), as small strips; and 60 frames of its camera move dreamed with schedules and a
guide video (`python -m dreamer.cli.gallery schedules` makes only that one)."""
from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image, ImageDraw

from dreamer.config import DreamConfig
from dreamer.cli.demo import find_photo, pan_zoom_frames
from dreamer.dream.schedule import Schedules
from dreamer.video import ffmpeg
from dreamer.errors import DreamerError
from dreamer.cli.oneline import report
from dreamer.run.progress import Progress
from dreamer.run.sequence import dream_sequence

FRAMES = Path("demo/grace_hopper/frames")
SHOWN = (2, 4, 6, 8)
VARIANTS = {
    "blend_constant": dict(blend="0.5"),
    "blend_loop": dict(blend="loop"),
    "blend_random": dict(blend="random"),
    "guided": dict(blend="0.5", guide="Minduka_Present_Blue_Pack.png"),
    "zoom": dict(blend="0.1", zoom=1.04),
    "flow": dict(blend="loop", flow=True),  # beside blend_loop: the same, moving with the film
}


def strip(folder: Path, out: Path) -> None:
    frames = [Image.open(folder / f"{k:08d}.png").convert("RGB") for k in SHOWN]
    w, h = frames[0].size
    sheet = Image.new("RGB", (w * len(frames), h))
    for i, frame in enumerate(frames):
        sheet.paste(frame, (i * w, 0))
    sheet.save(out, quality=85)


# The scheduled run of docs/schedules.md: the flags as a user types them (its picture,
# images/schedules.jpg).
SCHEDULED = dict(zoom="1:(1.0), 30:(1.03), 60:(1.0) @cubic", blend="1:(0.6), 30:(0.2), 60:(0.6)",
                 layers=("1:(inception_4c/output), 31:(inception_4e/output)",))
SCHEDULED_SHOWN = (1, 15, 30, 45, 60)


def scheduled(out_dir: Path, tmp: Path) -> None:
    """60 frames of the demo's camera move, guided by a 3 s Mandelbrot zoom."""
    frames = tmp / "camera"
    frames.mkdir()
    for k, img in enumerate(pan_zoom_frames(find_photo(), 60, (256, 192)), 1):
        img.save(frames / f"{k:08d}.png")
    guide = tmp / "mandelbrot.mp4"
    subprocess.run([ffmpeg.find_ffmpeg(), "-v", "error", "-f", "lavfi", "-i",
                    "mandelbrot=size=224x224:rate=10", "-t", "3", "-pix_fmt", "yuv420p",
                    str(guide)], check=True)
    config = DreamConfig(input=str(frames), output=str(tmp / "scheduled"), guide_image=str(guide),
                         octave_n=4, iter_n=5, seed=1, verbose=0, **SCHEDULED)
    dream_sequence(config, progress=Progress(60, 0))
    values = Schedules(config)
    tiles = []
    for k in SCHEDULED_SHOWN:
        v = values.at(k, 1)
        tile = Image.open(tmp / "scheduled" / f"{k:08d}.png").convert("RGB")
        label = Image.new("RGB", (tile.width, 34), "white")
        draw = ImageDraw.Draw(label)
        draw.text((4, 2), f"frame {k}  zoom {v.zoom:.3f}", fill="black")
        draw.text((4, 18), f"blend {v.blend:.2f}  {v.layer.split('/')[0]}", fill="black")
        tiles.append((tile, label))
    w, h = tiles[0][0].size
    sheet = Image.new("RGB", (w * len(tiles), h + 34), "white")
    for i, (tile, label) in enumerate(tiles):
        sheet.paste(tile, (i * w, 0))
        sheet.paste(label, (i * w, h))
    sheet.save(out_dir / "schedules.jpg", quality=85)


def strips(out_dir: Path, tmp: Path) -> None:
    """The demo's frames dreamed each way of VARIANTS, and the original beside them."""
    samples = find_photo().parent
    for name, v in VARIANTS.items():
        guide = str(samples / v["guide"]) if "guide" in v else None
        config = DreamConfig(input=str(FRAMES), output=f"{tmp}/{name}", preview=192,
                             layers=("inception_4c/output",), blend=v["blend"],
                             zoom=v.get("zoom", 1.0), guide_image=guide, seed=1,
                             flow=v.get("flow", False),
                             start_frame=1, end_frame=max(SHOWN), verbose=0)
        dream_sequence(config, progress=Progress(max(SHOWN), 0))
        strip(tmp / name, out_dir / f"{name}.jpg")
        print(f"wrote {out_dir / name}.jpg")
    raw = tmp / "original"
    raw.mkdir()
    for k in SHOWN:
        img = Image.open(FRAMES / f"{k:08d}.png").convert("RGB")
        img.resize((192, 144), Image.LANCZOS).save(raw / f"{k:08d}.png")
    strip(raw, out_dir / "original.jpg")
    print(f"wrote {out_dir / 'original.jpg'}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    only_schedules = argv == ["schedules"]
    if not only_schedules and not FRAMES.is_dir():
        print("error: run `make demo` first: the pictures are made from its frames",
              file=sys.stderr)
        return 2
    out_dir = Path("images")
    out_dir.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="dreamer-gallery-") as tmp:
        try:
            if not only_schedules:
                strips(out_dir, Path(tmp))
            scheduled(out_dir, Path(tmp))
        except DreamerError as e:
            return report(e)
    print(f"wrote {out_dir / 'schedules.jpg'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
