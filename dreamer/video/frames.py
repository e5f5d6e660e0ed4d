"""Numbered frame files (`%08d.png|jpg`, from 1): finding, checking, reading, writing."""
from __future__ import annotations

import io
import os
import re
import shlex
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from dreamer.errors import DreamerError
from dreamer.image import open_image, read_image, reason

def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# mkstemp creates files 0600; frames should get the permissions any new file gets.
FILE_MODE = 0o666 & ~_umask()

FRAME_RE = re.compile(r"^(\d{8})\.(png|jpg)$")
IMAGE_TYPES = ("png", "jpg")
# What a video file is called, for the advice to one given where frames are wanted.
VIDEO_SUFFIXES = frozenset(
    ".3g2 .3gp .asf .avi .dv .f4v .flv .gif .m2t .m2ts .m2v .m4v .mj2 .mjpeg .mkv .mov .mp4 "
    ".mpeg .mpg .mts .mxf .ogg .ogv .qt .rm .rmvb .ts .vob .webm .wmv .y4m".split())
JPEG_QUALITY = 95


def frame_name(k: int, image_type: str) -> str:
    return f"{k:08d}.{image_type}"


@dataclass(frozen=True)
class FrameSet:
    folder: Path
    image_type: str
    first: int
    last: int

    def path(self, k: int) -> Path:
        return self.folder / frame_name(k, self.image_type)

    @property
    def numbers(self) -> range:
        return range(self.first, self.last + 1)


def numbered_frames(folder: Path) -> dict[str, set[int]]:
    """{image type: the numbers of the frames of that type in `folder`}."""
    found: dict[str, set[int]] = {t: set() for t in IMAGE_TYPES}
    for name in os.listdir(folder):
        m = FRAME_RE.match(name)
        if m:
            found[m.group(2)].add(int(m.group(1)))
    return found


def numbered_files(folder: str | Path) -> dict[int, Path]:
    """{frame number: file} of a folder's numbered frames, of its one image type."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DreamerError(f"{folder} is not a folder of frames; give the folder that holds "
                           "00000001.png ...")
    found = numbered_frames(folder)
    image_type = the_one_type(folder, found, "move one kind away")
    return {k: folder / frame_name(k, image_type) for k in sorted(found[image_type])}


def the_one_type(folder: Path, found: dict[str, set[int]], how_to_choose: str) -> str:
    """The image type `folder` holds frames of (png when none), from numbered_frames;
    a mix is refused, saying `how_to_choose` (each command has its own way)."""
    present = [t for t in IMAGE_TYPES if found[t]]
    if len(present) > 1:
        raise DreamerError(f"{folder} holds both png and jpg frames; {how_to_choose}")
    return present[0] if present else "png"


@dataclass(frozen=True)
class Advice:
    """What a refusal to read a frames folder tells the user, in the words of the stage
    that reads it."""
    folder: str      # what the folder is to that stage
    no_folder: str   # what to do when it does not exist
    two_types: str   # how to choose between png and jpg frames
    no_frames: str   # what to do when it holds none
    gap: str         # what to do about a frame missing in the range
    video: str       # what to do when it is a video file ({video}: its name, quoted)
    file: str        # what to do when it is some other file


# Stage 2 reads the frames stage 1 wrote; stage 3 (and the GIF) those stage 2 dreamed.
STAGE2 = Advice("input folder", "extract frames into it with ./1_movie2frames.sh first",
                "choose one with -it png or -it jpg",
                "extract them with ./1_movie2frames.sh or check -i and -it",
                "re-extract the frames or choose a range with -sf/-ef",
                "cut it into frames first (stage 1: ./1_movie2frames.sh ffmpeg {video} frames "
                "png, then -i frames), or run all three stages with dreamvideo all {video}",
                "give -i the folder that holds 00000001.png ... (stage 1, "
                "./1_movie2frames.sh, cuts a video into one)")
STAGE3 = Advice("frames folder", "run stages 1 and 2 first, or check the path",
                "name the type to use (png or jpg) or move one set away",
                "run stages 1 and 2 first, or check the folder and the image type",
                "dream the missing frames or move the stray ones away",
                "name the folder of dreamed frames first and the original video after it",
                "name the folder that holds the dreamed frames 00000001.png ...")


def find_frames(folder: str | Path, image_type: str | None, start: int | None,
                end: int | None, advice: Advice = STAGE2) -> FrameSet:
    """The contiguous range [start, end] of frames in `folder` (default: all there),
    checked to all be there: a gap would skip part of the film, and put the sound out of
    sync from the gap on."""
    folder = Path(folder)
    if image_type is not None and image_type not in IMAGE_TYPES:
        raise DreamerError(f"unknown image type '{image_type}'; use png or jpg")
    if not folder.is_dir():
        raise DreamerError(_not_a_folder(folder, advice))
    found = numbered_frames(folder)
    if image_type is None:
        image_type = the_one_type(folder, found, advice.two_types)
    numbers = found[image_type]
    if not numbers:
        raise DreamerError(f"no frames named like 00000001.{image_type} in {folder}; "
                           f"{advice.no_frames}")
    first, last = choose_range(numbers, start, end, image_type, folder, advice.gap)
    return FrameSet(folder, image_type, first, last)


def _not_a_folder(path: Path, advice: Advice) -> str:
    """Why `path`, given as a folder of frames, is not one, and what to do instead: a video
    goes through stage 1 first."""
    if not path.exists():
        return f"{advice.folder} {path} does not exist; {advice.no_folder}"
    if path.suffix.lower() in VIDEO_SUFFIXES:
        fix = advice.video.format(video=shlex.quote(str(path)))
        return f"{path} is a video file, not a folder of frames; {fix}"
    return f"{path} is a file, not a folder of frames; {advice.file}"


def choose_range(numbers: set[int], start: int | None, end: int | None, image_type: str,
                 folder: Path | str = ".", gap: str = STAGE2.gap) -> tuple[int, int]:
    """[start, end] defaulting to the first and last frame there; every frame in between
    must be there (`gap`: what to do when one is not)."""
    first = min(numbers) if start is None else start
    last = max(numbers) if end is None else end
    if first < 1:
        raise DreamerError(f"start frame {first} is before frame 1; frames are numbered "
                           "from 1")
    if start is not None and start > max(numbers):
        raise DreamerError(f"start frame {start} is past the last frame ({max(numbers)}) in "
                           f"{folder}; choose -sf {min(numbers)} to {max(numbers)}")
    if first > last:
        raise DreamerError(f"start frame {first} is after end frame {last}; swap -sf and -ef")
    if end is not None and end > max(numbers):
        raise DreamerError(f"end frame {end} is past the last frame ({max(numbers)}) in "
                           f"{folder}; choose -ef {max(numbers)} or less, or leave it out")
    missing = [k for k in range(first, last + 1) if k not in numbers]
    if missing:
        raise DreamerError(f"frame {frame_name(missing[0], image_type)} is missing from "
                           f"{folder} ({len(missing)} missing in {first}..{last}); {gap}")
    return first, last


def common_size(frames: FrameSet) -> tuple[int, int]:
    """(width, height) shared by all frames, read from the headers only; the first frame is
    also decoded in full, so that a run whose first frame cannot be read is refused before
    it writes anything (a manifest of a run that never dreamed a frame)."""
    sizes: dict[tuple[int, int], int] = {}
    for k in frames.numbers:
        path = frames.path(k)
        try:
            with open_image(path) as img:
                size = img.size
        except (OSError, UnidentifiedImageError, ValueError) as e:
            raise DreamerError(f"cannot read frame {path}: {reason(e)}; re-extract the "
                               "frames") from None
        if sizes and size not in sizes:
            (w, h), = sizes
            raise DreamerError(f"frame {path.name} is {size[0]}x{size[1]} but earlier frames "
                               f"are {w}x{h}; all frames of a run must be one size "
                               "(re-extract them, or use -p to resize)")
        sizes[size] = k
    (size,) = sizes
    read_frame(frames.path(frames.first))
    return size


def preview_size(width: int, height: int, preview: int) -> tuple[int, int]:
    """Width `preview` keeping the aspect, height rounded to even (video encoders need it)."""
    if not preview:
        return width, height
    new_h = max(2, int(round(height * preview / width / 2.0)) * 2)
    return preview, new_h


def read_frame(path: Path, size: tuple[int, int] | None = None) -> np.ndarray:
    """A frame as RGB uint8 HxWx3, resized (Lanczos) to `size` when given."""
    return read_image(path, size, "replace the file or re-extract the frames")


def encode_image(array: np.ndarray, image_type: str) -> bytes:
    """The bytes of the image's file: png, or jpg at quality JPEG_QUALITY."""
    fmt = "JPEG" if image_type.lower().lstrip(".") in ("jpg", "jpeg") else "PNG"
    options = {"quality": JPEG_QUALITY, "subsampling": 0} if fmt == "JPEG" else {}
    out = io.BytesIO()
    Image.fromarray(array).save(out, format=fmt, **options)
    return out.getvalue()


def stage_image(array: np.ndarray, path: Path) -> Path:
    """Writes the image to a synced temporary file beside `path`; commit() renames it in.

    Writing under a temporary name first means an interrupted run never leaves a
    truncated image under a frame's name.
    """
    return stage_bytes(encode_image(array, Path(path).suffix), path)


def stage_bytes(data: bytes, path: Path) -> Path:
    """stage_image for a file already encoded."""
    return _stage(Path(path), lambda f: f.write(data))


def _stage(path: Path, write) -> Path:
    """A synced temporary file beside `path`, filled by write(binary file)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, FILE_MODE)
    except BaseException:
        _remove_quietly(tmp)
        raise
    return Path(tmp)


def commit(tmp: Path, path: Path) -> None:
    os.replace(tmp, path)


def discard(tmp: Path) -> None:
    _remove_quietly(str(tmp))


def _commit_or_discard(tmp: Path, path: Path) -> None:
    try:
        commit(tmp, path)
    except BaseException:
        discard(tmp)
        raise


def write_image(array: np.ndarray, path: Path) -> None:
    """Atomic image write: stage, then rename into place."""
    _commit_or_discard(stage_image(array, path), Path(path))


def write_text(text: str, path: Path) -> None:
    """Atomic text write (the manifest), same scheme as write_image."""
    path = Path(path)
    _commit_or_discard(_stage(path, lambda f: f.write(text.encode("utf-8"))), path)


def _remove_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def prepare_output(folder: str | Path, input_folder: Path) -> Path:
    """Creates the output folder if needed and proves it writable before any work. What
    can be refused without creating anything is refused first, and a refusal after that
    removes the folders it created: a refused run leaves nothing behind."""
    folder = Path(folder)
    blocking = _file_in_the_way(folder)
    if blocking == folder:
        raise DreamerError(f"output {folder} is {_kind(folder)}, not a folder; choose "
                           "another -o (a folder for the dreamed frames)")
    if blocking is not None:
        raise DreamerError(f"cannot create output folder {folder}: {blocking} is "
                           f"{_kind(blocking)}, not a folder; choose another -o")
    if folder.resolve() == Path(input_folder).resolve():
        raise DreamerError(f"output folder {folder} is the input folder; the dream would "
                           "overwrite the frames: choose another -o")
    created = missing_folders(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        remove_empty(created)
        raise DreamerError(f"cannot create output folder {folder}: {e.strerror}; choose "
                           "another -o") from None
    if not folder.is_dir():   # replaced meanwhile
        raise DreamerError(f"output {folder} is not a folder; choose another -o")
    try:
        fd, probe = tempfile.mkstemp(prefix=".write-test.", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        remove_empty(created)
        raise DreamerError(f"output folder {folder} is not writable ({e.strerror}); fix its "
                           "permissions or choose another -o") from None
    return folder


def _file_in_the_way(folder: Path) -> Path | None:
    """`folder` itself, or the nearest of its parents, when it exists and is not a folder
    (a file, or a link to one): the output folder cannot be made there."""
    for path in (folder, *folder.parents):
        if path.is_dir():
            return None
        if path.exists() or path.is_symlink():
            return path
    return None


def _kind(path: Path) -> str:
    if path.is_file():
        return "a file"
    return "a broken link" if path.is_symlink() and not path.exists() else "a special file"


def missing_folders(folder: Path) -> list[Path]:
    """`folder` and those of its parents that do not exist yet, deepest first."""
    missing = []
    folder = Path(folder).absolute()
    for path in (folder, *folder.parents):
        if path.exists() or path.is_symlink():
            break
        missing.append(path)
    return missing


def remove_empty(folders: list[Path]) -> None:
    """Removes folders made for work that did not happen, as long as they are still
    empty: whatever holds a file stays."""
    for folder in folders:
        try:
            folder.rmdir()
        except FileNotFoundError:
            continue
        except OSError:
            return
