"""The film a studio works on: its folders, stage 1 with its progress, its frames and
thumbnails, and the guard on every path the studio serves.

A video FILM.mp4 is cut into FILM_dream/frames next to it (where `dreamvideo all FILM.mp4`
run in the film's folder puts them, so either resumes the other); the render goes into
FILM_dream/dreamed and FILM_dream.mp4, the saved settings into FILM.toml, and the studio's
own files (previews, history, uploads) into FILM_dream/studio. A folder of frames FRAMES
keeps them beside it: FRAMES_dreamed, FRAMES_studio, FRAMES.toml, FRAMES_dream.mp4 (stage 3
needs the original video: the one stage 1's frames.json names).
"""
from __future__ import annotations

import io
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from dreamer.errors import DreamerError
from dreamer.video.extract import EXTRACT_PREFIX, expected_frames, extract_frames, read_record
from dreamer.video.frames import (VIDEO_SUFFIXES, FrameSet, find_frames, numbered_frames,
                                  preview_size, read_frame)
from dreamer.video.tools import same_file

THUMB_WIDTHS = (96, 160, 200, 240, 320, 400, 480, 640, 800)


class Refused(DreamerError):
    """A path the studio will not serve: outside its folders, `..`, absolute or a link."""


def safe_path(root: Path, relative: str) -> Path:
    """`relative` inside `root`, or Refused: no absolute path, no `..`, no symbolic link
    on the way (a link could point anywhere), nothing that resolves outside `root`."""
    text = str(relative).replace("\\", "/")
    if not text or text.startswith("/") or (len(text) > 1 and text[1] == ":") or "\0" in text:
        raise Refused("an absolute or empty path is refused")
    parts = [p for p in text.split("/") if p not in ("", ".")]
    if not parts or any(p == ".." for p in parts):
        raise Refused("a path with .. is refused")
    path = Path(root)
    for part in parts:
        path = path / part
        if path.is_symlink():
            raise Refused("a path through a symbolic link is refused")
    try:
        path.resolve().relative_to(Path(root).resolve())
    except ValueError:
        raise Refused("a path outside the studio's folders is refused") from None
    return path


@dataclass
class Extraction:
    """Stage 1's progress, as the page shows it."""
    state: str = "ready"          # extracting | ready | failed
    done: int = 0
    total: int = 0
    message: str = ""


@dataclass
class Film:
    """The film's folders and what stage 1 says of it."""
    name: str
    frames_dir: Path
    dreamed_dir: Path
    studio_dir: Path
    toml_path: Path
    result_path: Path
    video: Path | None               # the original, for stage 3's sound (None: none known)
    extraction: Extraction = field(default_factory=Extraction)
    image_type: str = "png"
    count: int = 0
    size: tuple[int, int] = (0, 0)    # width, height of the frames
    fps: float = 12.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def open(cls, target: str | Path) -> "Film":
        """A video or a folder of numbered frames; a one-line DreamerError otherwise."""
        path = Path(target).expanduser()
        if not path.exists():
            raise DreamerError(f"{path} does not exist; give a video or a folder of frames "
                               "(00000001.png ...)")
        path = path.absolute()
        if path.is_dir():
            found = numbered_frames(path)
            if not any(found.values()):
                raise DreamerError(f"{path} holds no frames named like 00000001.png; give a "
                                   "video, or the folder stage 1 cut one into")
            record = read_record(path)
            video = Path(record["source"]) if record and Path(record["source"]).is_file() \
                else None
            film = cls(path.name, path, path.with_name(f"{path.name}_dreamed"),
                       path.with_name(f"{path.name}_studio"),
                       path.with_name(f"{path.name}.toml"),
                       path.with_name(f"{path.name}_dream.mp4"), video)
        elif path.suffix.lower() in VIDEO_SUFFIXES:
            work = path.with_name(f"{path.stem}_dream")
            film = cls(path.stem, work / "frames", work / "dreamed", work / "studio",
                       path.with_name(f"{path.stem}.toml"),
                       path.with_name(f"{path.stem}_dream.mp4"), path)
            if not film._extracted():
                film.extraction = Extraction("extracting", message="cutting the film into "
                                             "frames (stage 1)")
        else:
            raise DreamerError(f"{path} is neither a video ({', '.join(sorted(VIDEO_SUFFIXES)[:6])}"
                               " ...) nor a folder of frames")
        if film.extraction.state == "ready":
            film.load()
        return film

    @property
    def roots(self) -> dict[str, Path]:
        """The folders whose files the page may ask for, by the name it uses."""
        return {"frames": self.frames_dir, "dreamed": self.dreamed_dir,
                "studio": self.studio_dir}

    def _extracted(self) -> bool:
        """Whether the frames folder already holds every frame of this very video."""
        record = read_record(self.frames_dir)
        if not (record and same_file(record["source"], self.video)
                and record.get("source_size") == self.video.stat().st_size):
            return False
        try:
            find_frames(self.frames_dir, record["image_type"], 1, record["frame_count"])
        except DreamerError:
            return False
        return True

    def extract(self) -> None:
        """Stage 1 (when the film is a video not cut yet), its progress in `extraction`;
        a failure is its one line there."""
        if self.extraction.state != "extracting":
            return
        from dreamer.video import ffmpeg

        stop = threading.Event()
        try:
            info = ffmpeg.probe(self.video)
            self.extraction.total = expected_frames(info)[0]
            watcher = threading.Thread(target=self._watch, args=(stop,), daemon=True)
            watcher.start()
            extract_frames(self.video, self.frames_dir, "png")
            self.load()
            self.extraction.state, self.extraction.message = "ready", ""
        except DreamerError as e:
            self.extraction.state, self.extraction.message = "failed", str(e)
        except Exception as e:  # noqa: BLE001 - the page says it; the server goes on
            self.extraction.state = "failed"
            self.extraction.message = f"stage 1 failed: {e}"
        finally:
            stop.set()

    def _watch(self, stop: threading.Event) -> None:
        """Counts the frames stage 1 has written so far (in its private folder)."""
        while not stop.wait(0.3):
            try:
                works = [p for p in self.frames_dir.iterdir()
                         if p.name.startswith(EXTRACT_PREFIX) and p.is_dir()]
                self.extraction.done = sum(len(os.listdir(w)) for w in works)
            except OSError:
                pass

    def load(self) -> None:
        """The frames' count, type, size and rate."""
        frames = find_frames(self.frames_dir, None, None, None)
        if frames.first != 1:
            raise DreamerError(f"the frames in {self.frames_dir} start at {frames.first}; the "
                               "studio needs a film from frame 1 (00000001.png)")
        self.image_type, self.count = frames.image_type, frames.last
        with Image.open(frames.path(1)) as img:
            self.size = img.size
        record = read_record(self.frames_dir)
        if record:
            self.fps = float(record.get("fps_float") or 12.0)
        self.extraction.done = self.extraction.total = self.count

    def frameset(self, first: int, last: int) -> FrameSet:
        return find_frames(self.frames_dir, self.image_type, first, last)

    def check_frame(self, k: int) -> int:
        if not 1 <= k <= self.count:
            raise DreamerError(f"frame {k} is not in the film (1 to {self.count})")
        return k

    def frame_path(self, k: int) -> Path:
        return FrameSet(self.frames_dir, self.image_type, 1, self.count).path(
            self.check_frame(k))

    def size_at(self, width: int) -> tuple[int, int]:
        """The frames' size at a preview width (stage 2's -p: aspect kept, even height)."""
        return preview_size(*self.size, width)

    def thumbnail(self, k: int, width: int) -> Path:
        """Frame k as a JPEG `width` wide (a few fixed widths, cached in the studio's
        folder)."""
        width = min(THUMB_WIDTHS, key=lambda w: abs(w - width))
        out = self.studio_dir / "thumbs" / str(width) / f"{self.check_frame(k):08d}.jpg"
        if not out.is_file():
            pixels = read_frame(self.frame_path(k), self.size_at(width))
            data = io.BytesIO()
            Image.fromarray(pixels).save(data, format="JPEG", quality=85)
            out.parent.mkdir(parents=True, exist_ok=True)
            tmp = out.with_name(f".{out.name}.{os.getpid()}.{threading.get_ident()}")
            tmp.write_bytes(data.getvalue())
            os.replace(tmp, out)
        return out

    def state(self) -> dict:
        e = self.extraction
        return {"name": self.name, "count": self.count, "width": self.size[0],
                "height": self.size[1], "fps": self.fps, "image_type": self.image_type,
                "frames_dir": str(self.frames_dir), "dreamed_dir": str(self.dreamed_dir),
                "video": str(self.video) if self.video else None,
                "toml": str(self.toml_path), "result": str(self.result_path),
                "extraction": {"state": e.state, "done": e.done, "total": e.total,
                               "message": e.message}}
