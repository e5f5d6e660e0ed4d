"""The Caffe model zoo models DeepDreamVideo knows: where to get them, how to check
them, and where to find them on disk.

Search order for the model a run uses: explicit -t/--model_path, then $DREAMER_MODELS,
then the user cache, then the original's ../caffe/models/<name>/.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tarfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from dreamer.errors import DreamerError

CHUNK = 1 << 16


class DownloadError(DreamerError):
    """The network failed; `reason` is the short why."""

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class ModelInfo:
    name: str                 # folder name, as in caffe/models/<name>/
    caffemodel: str           # weights file name inside the folder
    prototxt: str             # deploy net file name inside the folder
    weights_url: str
    weights_sha1: str         # of the downloaded file, as the model zoo's script checks it
    prototxt_url: str | None  # None: the prototxt comes inside the weights archive
    archive: dict | None = None  # archive member -> file name, when weights_url is a tarball
    about: str = ""

    @property
    def download_name(self) -> str:
        """The file the download itself gives (the archive, or the weights)."""
        return Path(self.weights_url).name if self.archive else self.caffemodel


MODELS = {m.name: m for m in (
    ModelInfo(
        name="bvlc_googlenet", caffemodel="bvlc_googlenet.caffemodel",
        prototxt="deploy.prototxt",
        weights_url="http://dl.caffe.berkeleyvision.org/bvlc_googlenet.caffemodel",
        weights_sha1="405fc5acd08a3bb12de8ee5e23a96bec22f08204",
        prototxt_url="https://raw.githubusercontent.com/BVLC/caffe/master/models/"
                     "bvlc_googlenet/deploy.prototxt",
        about="GoogLeNet on ImageNet (the default: dogs, eyes, pagodas)"),
    ModelInfo(
        name="places205-googlenet", caffemodel="googlelet_places205_train_iter_2400000.caffemodel",
        prototxt="deploy_places205.protxt",
        weights_url="http://places.csail.mit.edu/model/googlenet_places205.tar.gz",
        weights_sha1="d767debf686fa15df1e05fbc9b4598076127134a",
        prototxt_url=None,
        archive={"googlenet_places205/googlelet_places205_train_iter_2400000.caffemodel":
                 "googlelet_places205_train_iter_2400000.caffemodel",
                 "googlenet_places205/deploy_places205.protxt": "deploy_places205.protxt"},
        about="GoogLeNet on Places205 (buildings, landscapes)"),
)}


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "dreamer" / "models"


def download_dir() -> Path:
    """Where `models download` puts models: $DREAMER_MODELS if set, else the cache."""
    return Path(os.environ["DREAMER_MODELS"]) if os.environ.get("DREAMER_MODELS") \
        else cache_dir()


def search_dirs() -> list[Path]:
    dirs = []
    if os.environ.get("DREAMER_MODELS"):
        dirs.append(Path(os.environ["DREAMER_MODELS"]))
    dirs += [cache_dir(), Path("../caffe/models")]
    return dirs


def info_for_weights(caffemodel: str) -> ModelInfo | None:
    return next((m for m in MODELS.values() if m.caffemodel == caffemodel), None)


def get_info(name: str) -> ModelInfo:
    if name not in MODELS:
        raise DreamerError(f"unknown model '{name}'; known models: {', '.join(MODELS)}")
    return MODELS[name]


def resolve(model_path: str | None, model_name: str, prototxt: str) -> tuple[Path, Path]:
    """(deploy prototxt, caffemodel) for a run: an explicit folder wins, else the search."""
    if model_path is not None:
        folder = Path(model_path)
        return folder / prototxt, folder / model_name
    info = info_for_weights(model_name)
    folder_name = info.name if info else Path(model_name).stem
    prototxt_names = [prototxt] + ([info.prototxt] if info else [])
    for base in search_dirs():
        folder = base / folder_name
        if (folder / model_name).is_file():
            for name in prototxt_names:
                if (folder / name).is_file():
                    return folder / name, folder / model_name
    looked = ", ".join(str(d / folder_name) for d in search_dirs())
    hint = (f"download it with `dreamvideo models download {info.name}`" if info
            else "put it in one of those folders")
    raise DreamerError(f"model {model_name} not found (looked in {looked}); {hint}, or "
                       "point -t/--model_path at the folder holding it and deploy.prototxt")


def sha1_file(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha1").hexdigest()


class _Bar:
    def __init__(self, label: str, total: int | None, stream=None):
        self.label, self.total, self.stream = label, total, stream or sys.stderr
        self.last = -1

    def update(self, done: int) -> None:
        if self.total:
            pct = int(100 * done / self.total)
            if pct != self.last:
                self.last = pct
                bar = "#" * (pct // 4) + "-" * (25 - pct // 4)
                self.stream.write(f"\r{self.label} [{bar}] {pct:3d}% "
                                  f"{done / 1e6:.1f}/{self.total / 1e6:.1f} MB")
        else:
            self.stream.write(f"\r{self.label} {done / 1e6:.1f} MB")
        self.stream.flush()

    def close(self) -> None:
        self.stream.write("\n")


def fetch(url: str, dest: Path, label: str, timeout: float = 60, quiet: bool = False) -> Path:
    """Downloads url into `dest.part` (resuming one left by an interrupted download) and
    returns that path once complete: the caller checks it before it gets the real name."""
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # the part file is already whole
            return part
        raise DreamerError(f"download of {url} failed: HTTP {e.code} {e.reason}; try again "
                           "later or download it by hand") from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        reason = getattr(reason, "strerror", None) or str(reason)
        raise DownloadError(f"cannot download {url} ({reason}); check the network, or "
                            f"download it by hand into {dest.parent}", reason) from None
    with response:
        resumed = response.status == 206
        total = response.headers.get("Content-Length")
        total = int(total) + (have if resumed else 0) if total else None
        done = have if resumed else 0
        bar = None if quiet else _Bar(label, total)
        try:
            with open(part, "ab" if resumed else "wb") as f:
                while chunk := response.read(CHUNK):
                    f.write(chunk)
                    done += len(chunk)
                    if bar:
                        bar.update(done)
        except (OSError, urllib.error.URLError) as e:
            raise DreamerError(f"download of {url} was cut off after {done} bytes ({e}); run "
                               "the same command again to resume it") from None
        finally:
            if bar:
                bar.close()
    if total is not None and done < total:
        raise DreamerError(f"download of {url} was cut off after {done} of {total} bytes; run "
                           "the same command again to resume it")
    return part


def _extract(archive: Path, members: dict, folder: Path) -> None:
    try:
        with tarfile.open(archive) as tar:
            for member, target in members.items():
                src = tar.extractfile(member)
                if src is None:
                    raise KeyError(member)
                if (folder / target).exists():
                    continue  # never replace a file that is already there
                part = folder / (target + ".part")
                with src, open(part, "wb") as out:
                    shutil.copyfileobj(src, out)
                part.replace(folder / target)
    except (tarfile.TarError, KeyError) as e:
        raise DreamerError(f"{archive} is not the expected model archive ({e}); delete it and "
                           "download again") from None


def download(info: ModelInfo, base: Path | None = None, quiet: bool = False) -> Path:
    """Fetches a model into base/<name>/ (default: download_dir()), checked by sha1."""
    folder = (base or download_dir()) / info.name
    folder.mkdir(parents=True, exist_ok=True)
    fetched = folder / info.download_name
    if fetched.exists():
        digest = sha1_file(fetched)
        if digest != info.weights_sha1:
            raise DreamerError(f"{fetched} is already there but its sha1 is {digest}, not the "
                               f"official {info.weights_sha1}; it is left as it is: move it "
                               "away and run the download again")
    else:
        _download_checked(info, fetched, folder, quiet)
    if info.archive:
        _extract(fetched, info.archive, folder)
    if info.prototxt_url and not (folder / info.prototxt).exists():
        prototxt = folder / info.prototxt
        fetch(info.prototxt_url, prototxt, f"{info.name} prototxt", quiet=quiet).replace(prototxt)
    return folder


def _download_checked(info: ModelInfo, fetched: Path, folder: Path, quiet: bool) -> None:
    """Downloads the weights; only a file with the official checksum gets the real name."""
    try:
        part = fetch(info.weights_url, fetched, info.name, quiet=quiet)
    except DownloadError:
        if not any(folder.iterdir()):
            folder.rmdir()  # leave no empty model folder behind
        raise
    digest = sha1_file(part)
    if digest != info.weights_sha1:
        bad = fetched.with_name(fetched.name + ".bad")
        part.replace(bad)
        raise DreamerError(f"the downloaded {fetched.name} has sha1 {digest}, expected "
                           f"{info.weights_sha1}: it is corrupt (kept as {bad.name}); run the "
                           "download again")
    part.replace(fetched)


def verify(info: ModelInfo, base: Path | None = None) -> tuple[bool, str]:
    """Checks a downloaded model's file against the official checksum."""
    for folder in ([base / info.name] if base else [d / info.name for d in search_dirs()]):
        fetched = folder / info.download_name
        if fetched.is_file():
            digest = sha1_file(fetched)
            if digest == info.weights_sha1:
                return True, f"{info.name}: OK ({fetched}, sha1 {digest})"
            return False, (f"{info.name}: {fetched} has sha1 {digest}, not the official "
                           f"{info.weights_sha1}; it is not the model zoo's file (or it is "
                           "damaged): move it away and download again")
    return False, (f"{info.name}: not downloaded; run `dreamvideo models download {info.name}` "
                   f"(or put {info.caffemodel} into {download_dir() / info.name})")
