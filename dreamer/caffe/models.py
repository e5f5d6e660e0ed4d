"""Finding a model's files on disk, and downloading and checking the registry's models
(dreamer/caffe/registry.py).

Search order for the model a run uses: explicit -t/--model_path, then $DREAMER_MODELS,
then the user cache, then the original's ../caffe/models/<name>/. In a folder, the deploy
file is deploy.prototxt, else the folder's one *.prototxt / *.protxt (the zoo names them
ResNet-50-deploy.prototxt, deploy_places205.protxt, ...); --prototxt names it outright.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tarfile
import urllib.error
import urllib.request
from pathlib import Path

from dreamer.caffe.registry import MODELS, ModelInfo
from dreamer.errors import DreamerError

CHUNK = 1 << 16


class DownloadError(DreamerError):
    """The network failed; `reason` is the short why."""

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


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


DEFAULT_WEIGHTS = "bvlc_googlenet.caffemodel"
NOT_DEPLOY = ("solver", "train_val", "train_test", "train.")  # a zoo folder's other nets


def info_for_weights(caffemodel: str) -> ModelInfo | None:
    return next((m for m in MODELS.values() if m.caffemodel == caffemodel), None)


def get_info(name: str) -> ModelInfo:
    if name not in MODELS:
        raise DreamerError(f"unknown model '{name}'; known models: {', '.join(MODELS)} "
                           "(`dreamvideo models list`)")
    return MODELS[name]


def deploy_file(folder: Path, prototxt: str | None = None, usual: str | None = None) -> Path:
    """The deploy net of a model folder: `prototxt` if given (a path, or a name inside
    the folder), else deploy.prototxt, else `usual` (a registry model's own name for it)
    when the folder holds it, else the folder's one *.prototxt / *.protxt (solvers and
    training nets left out)."""
    if prototxt:
        inside = folder / prototxt
        return inside if inside.is_file() or not Path(prototxt).is_file() else Path(prototxt)
    for name in ("deploy.prototxt", usual):
        if name and (folder / name).is_file():
            return folder / name
    found = sorted(p for p in [*folder.glob("*.prototxt"), *folder.glob("*.protxt")]
                   if p.is_file()
                   and not p.name.lower().startswith(NOT_DEPLOY))
    if len(found) == 1:
        return found[0]
    if not found:
        raise DreamerError(f"no deploy file in {folder} (no deploy.prototxt, no *.prototxt or "
                           "*.protxt); put the model's deploy net there, or name it with "
                           "--prototxt FILE")
    raise DreamerError(f"{folder} holds several deploy files ({', '.join(p.name for p in found)})"
                       "; pick one with --prototxt NAME")


def weights_file(folder: Path, model_name: str) -> Path:
    """The caffemodel of a model folder: `model_name` in it, or, while -m is left at its
    default, the folder's one *.caffemodel."""
    named = folder / model_name
    if named.is_file() or model_name != DEFAULT_WEIGHTS:
        return named
    found = sorted(p for p in folder.glob("*.caffemodel") if p.is_file())
    if len(found) == 1:
        return found[0]
    if len(found) > 1:
        raise DreamerError(f"{folder} holds several caffemodels "
                           f"({', '.join(p.name for p in found)}); pick one with -m NAME")
    return named  # missing: load_net says so, naming -t and -m


def resolve(model_path: str | None, model_name: str,
            prototxt: str | None = None) -> tuple[Path, Path]:
    """(deploy prototxt, caffemodel) for a run: an explicit folder wins, else the search;
    `model_name` is a caffemodel's file name or a registry model's name."""
    if model_path is not None:
        folder = Path(model_path)
        if not folder.is_dir():
            raise DreamerError(f"model folder {folder} does not exist; point -t/--model_path "
                               "at the folder holding the deploy file and the caffemodel")
        info = MODELS.get(model_name)  # -t FOLDER -m resnet50: that model's own file names
        return (deploy_file(folder, prototxt, info and info.prototxt),
                weights_file(folder, info.caffemodel if info else model_name))
    info = MODELS.get(model_name) or info_for_weights(model_name)
    weights = info.caffemodel if info else model_name
    folder_name = info.name if info else Path(model_name).stem
    for base in search_dirs():
        folder = base / folder_name
        if (folder / weights).is_file():
            return deploy_file(folder, prototxt, info and info.prototxt), folder / weights
    looked = ", ".join(str(d / folder_name) for d in search_dirs())
    hint = (f"download it with `dreamvideo models download {info.name}`" if info
            else "put it in one of those folders")
    raise DreamerError(f"model {model_name} not found (looked in {looked}); {hint}, or "
                       "point -t/--model_path at the folder holding it and its deploy file")


def sha1_file(path: Path, algorithm: str = "sha1") -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, algorithm).hexdigest()


def _refuse(part: Path, dest: Path, why: str) -> DreamerError:
    """A download whose checksum is wrong: kept beside as NAME.bad (never under its real
    name), and the one line saying so."""
    bad = dest.with_name(dest.name + ".bad")
    part.replace(bad)
    return DreamerError(f"the downloaded {dest.name} {why} (kept as {bad.name}); run the "
                        "download again")


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
    """Fetches a model into base/<name>/ (default: download_dir()), checked by sha1 (a
    model with none published gets its sha1 recorded at this first download)."""
    folder = (base or download_dir()) / info.name
    folder.mkdir(parents=True, exist_ok=True)
    fetched = folder / info.download_name
    if fetched.exists():
        ok, text = check(info, fetched)
        if not ok:
            raise DreamerError(text + "; it is left as it is")
    if info.prototxt_url and not (folder / info.prototxt).exists():
        _fetch_prototxt(info, folder, quiet)
    if not fetched.exists():
        if not info.weights_url:
            raise DreamerError(f"{info.name}'s weights are offered only on a web page: "
                               f"download {info.caffemodel} from {info.page} into {folder}, "
                               f"then run `dreamvideo models verify {info.name}`")
        _download_checked(info, fetched, folder, quiet)
    if info.archive:
        _extract(fetched, info.archive, folder)
    return folder


def _fetch_prototxt(info: ModelInfo, folder: Path, quiet: bool) -> None:
    prototxt = folder / info.prototxt
    part = fetch(info.prototxt_url, prototxt, f"{info.name} deploy file", quiet=quiet)
    if info.prototxt_sha256:
        digest = sha1_file(part, "sha256")
        if digest != info.prototxt_sha256:
            raise _refuse(part, prototxt, f"has sha256 {digest}, not the published file's "
                                          f"{info.prototxt_sha256}")
    part.replace(prototxt)


def _download_checked(info: ModelInfo, fetched: Path, folder: Path, quiet: bool) -> None:
    """Downloads the weights; only a file with the right checksum gets the real name."""
    try:
        part = fetch(info.weights_url, fetched, info.name, quiet=quiet)
    except DownloadError:
        if not any(folder.iterdir()):
            folder.rmdir()  # leave no empty model folder behind
        raise
    digest = sha1_file(part)
    if info.weights_sha1 is None:
        _record(fetched, digest)
    elif digest != info.weights_sha1:
        raise _refuse(part, fetched, f"has sha1 {digest}, expected {info.weights_sha1}: it is "
                                     "corrupt")
    part.replace(fetched)


def recorded_sha1(fetched: Path) -> Path:
    return fetched.with_name(fetched.name + ".sha1")


def _record(fetched: Path, digest: str) -> None:
    record = recorded_sha1(fetched)
    part = record.with_name(record.name + ".part")
    part.write_text(f"{digest}  {fetched.name}\n")
    part.replace(record)


def check(info: ModelInfo, fetched: Path) -> tuple[bool, str]:
    """Holds a model's file to its published sha1, else to the one recorded at its first
    download (recording it now if there is none: from here on it cannot change unseen)."""
    digest = sha1_file(fetched)
    if info.weights_sha1 is not None:
        if digest == info.weights_sha1:
            return True, f"{info.name}: OK ({fetched}, sha1 {digest}, as published)"
        return False, (f"{info.name}: {fetched} has sha1 {digest}, not the published "
                       f"{info.weights_sha1}; it is not that model's file (or it is damaged): "
                       "move it away and download again")
    record = recorded_sha1(fetched)
    if not record.is_file():
        _record(fetched, digest)
        return True, (f"{info.name}: no published checksum; sha1 {digest} of {fetched} is "
                      f"recorded in {record.name}, and later checks hold the file to it")
    want = record.read_text().split()[0] if record.read_text().split() else ""
    if digest == want:
        return True, (f"{info.name}: OK ({fetched}, sha1 {digest}, as recorded at its "
                      "first download; none is published)")
    return False, (f"{info.name}: {fetched} has sha1 {digest}, not {want} recorded at its "
                   f"first download; it changed since: move it away and download again")


def verify(info: ModelInfo, base: Path | None = None) -> tuple[bool, str]:
    """Checks a downloaded model's file (see `check`)."""
    for folder in ([base / info.name] if base else [d / info.name for d in search_dirs()]):
        fetched = folder / info.download_name
        if fetched.is_file():
            return check(info, fetched)
    return False, (f"{info.name}: not downloaded; run `dreamvideo models download {info.name}` "
                   f"(or put {info.caffemodel} into {download_dir() / info.name})")
