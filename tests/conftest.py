"""Shared fixtures: tiny generated Caffe models, frame folders, the ../shared goldens."""
from __future__ import annotations

import hashlib
import os
import subprocess
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("DREAMER_SHARED", ROOT.parent / "shared"))
GOOGLENET = SHARED / "models" / "bvlc_googlenet"
GOLDEN = SHARED / "golden"

sys.path.insert(0, str(Path(__file__).parent))
from tiny_caffe import make_tiny_model  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def kernel_choices_cache(tmp_path_factory):
    """The autotuner's disk cache (dreamer/caffe/autotune.py) in a temporary folder, for
    this process and the runs it starts: tests never write into the user's cache."""
    folder = tmp_path_factory.mktemp("kernel choices")
    old = os.environ.get("DREAMER_TUNE_CACHE")
    os.environ["DREAMER_TUNE_CACHE"] = str(folder)
    yield folder
    if old is None:
        os.environ.pop("DREAMER_TUNE_CACHE", None)
    else:
        os.environ["DREAMER_TUNE_CACHE"] = old


def need_shared():
    if not (GOOGLENET / "bvlc_googlenet.caffemodel").is_file() or not GOLDEN.is_dir():
        pytest.skip(f"real GoogLeNet and Caffe goldens not found at {SHARED} "
                    "(only developers and CI have ../shared)")


def demo_photo() -> Path:
    """The demo's photo, which matplotlib ships (`make venv` installs it). A test that
    needs it fails without it, never skips or swaps it: `dreamvideo demo` and the gallery
    must not go untested for want of it."""
    from dreamer.cli.demo import find_photo
    from dreamer.errors import DreamerError

    try:
        return find_photo()
    except DreamerError as e:
        pytest.fail(f"{e} (tests need the demo's photo)", pytrace=False)


@pytest.fixture(scope="module")
def kernels():
    """The compiled CPU kernels; the test skips where they cannot be built."""
    from dreamer.caffe import native

    k = native.kernels()
    if k is None:
        pytest.skip("the compiled CPU kernels could not be built here (see the log)")
    return k


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """Folder holding deploy.prototxt + tiny.caffemodel (current format)."""
    folder = tmp_path_factory.mktemp("tiny model")
    make_tiny_model(folder)
    return folder


def write_frames(folder: Path, n: int, size=(48, 40), image_type="png", first=1,
                 seed=0) -> list[Path]:
    """n smooth random RGB frames, a little different each (like video)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    w, h = size
    base = rng.uniform(0, 255, (h // 4 + 1, w // 4 + 1, 3))
    paths = []
    for i in range(n):
        small = np.clip(base + rng.normal(0, 10, base.shape), 0, 255).astype(np.uint8)
        img = Image.fromarray(small).resize((w, h), Image.BILINEAR)
        path = folder / f"{first + i:08d}.{image_type}"
        img.save(path, quality=95) if image_type == "jpg" else img.save(path)
        paths.append(path)
    return paths


def tree_hashes(*folders: Path) -> dict[str, str]:
    out = {}
    for folder in folders:
        for p in sorted(Path(folder).rglob("*")):
            if p.is_file():
                out[str(p)] = hashlib.sha1(p.read_bytes()).hexdigest()
    return out


def run_dream(*args, cwd=None, timeout=300) -> subprocess.CompletedProcess:
    """Runs 2_dreaming_time.py as a user would, in a child process."""
    return subprocess.run([sys.executable, str(ROOT / "2_dreaming_time.py"), *map(str, args)],
                          capture_output=True, text=True, cwd=cwd, timeout=timeout)


def bomb(path: Path, width=100_000, height=100_000) -> Path:
    """A valid PNG header claiming width x height, with almost no pixels behind it."""
    return png_header(path, width, height)


def png_header(path: Path, width: int, height: int) -> Path:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body)))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
                     + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))
    return path
