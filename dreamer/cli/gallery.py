"""The README's pictures (`python -m dreamer.cli.gallery`, after `make demo`): the demo clip
dreamed with constant, loop and random blend, guided, zooming and moving with the film
(--flow), as small strips."""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from PIL import Image

from dreamer.config import DreamConfig
from dreamer.cli.demo import find_photo
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


def main() -> int:
    if not FRAMES.is_dir():
        print("error: run `make demo` first: the pictures are made from its frames",
              file=sys.stderr)
        return 2
    out_dir = Path("images")
    out_dir.mkdir(exist_ok=True)
    samples = find_photo().parent
    with tempfile.TemporaryDirectory(prefix="dreamer-gallery-") as tmp:
        for name, v in VARIANTS.items():
            guide = str(samples / v["guide"]) if "guide" in v else None
            config = DreamConfig(input=str(FRAMES), output=f"{tmp}/{name}", preview=192,
                                 layers=("inception_4c/output",), blend=v["blend"],
                                 zoom=v.get("zoom", 1.0), guide_image=guide, seed=1,
                                 flow=v.get("flow", False),
                                 start_frame=1, end_frame=max(SHOWN), verbose=0)
            try:
                dream_sequence(config, progress=Progress(max(SHOWN), 0))
            except DreamerError as e:
                return report(e)
            strip(Path(tmp) / name, out_dir / f"{name}.jpg")
            print(f"wrote {out_dir / name}.jpg")
        raw = Path(tmp) / "original"
        raw.mkdir()
        for k in SHOWN:
            img = Image.open(FRAMES / f"{k:08d}.png").convert("RGB")
            img.resize((192, 144), Image.LANCZOS).save(raw / f"{k:08d}.png")
        strip(raw, out_dir / "original.jpg")
    print(f"wrote {out_dir / 'original.jpg'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
