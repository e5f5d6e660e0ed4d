"""Optical flow between raw frames, for carrying the previous dream along with the film.

Conventions, used throughout:

- A flow is a float32 array (H, W, 2) in pixels, channel 0 horizontal (u, +x = right) and
  channel 1 vertical (v, +y = down), defined on the pixel grid of its *source* frame.
- `compute_flow(src, dst)` is the flow w with src(x) ~ dst(x + w(x)) for every pixel x.
- `warp(image, w)` is backward warping: out(x) = image(x + w(x)), bilinear, with the border
  replicated (coordinates clamped to the image).

So the dream of frame k-1 is carried into frame k with the *backward* flow from raw frame k to
raw frame k-1: `warp(dream_prev, compute_flow(raw_k, raw_prev))`. Every pixel of frame k is
then an exact sample of the previous dream, without the holes and overlaps of pushing pixels
forward. The forward flow (k-1 -> k) serves only to tell where that sample is trustworthy
(`reliability`). If frame k is frame k-1 moved by (+3, -2) px, the backward flow is (-3, +2).
"""
from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import threading
import time
import zipfile
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from dreamer.errors import DreamerError

log = logging.getLogger(__name__)

# DIS (Kroeger et al. 2016): fast, no weights to download, good on the large smooth motions
# of film. Measured at 540x360 on a textured frame under a known rotation + zoom + pan, both
# flows of a pair on 2 Zen 4 threads: ULTRAFAST 7 ms, endpoint error 0.20 px; FAST 12 ms,
# 0.13 px; MEDIUM 44 ms, 0.07 px. MEDIUM halves the error for a cost that is ~2 % of a
# dreamed frame (1.9 s), so it is the one.
PRESET = cv2.DISOPTICAL_FLOW_PRESET_MEDIUM
# Names the flow method in the cache key: a change of method (preset, parameters) must never
# reuse a cached flow. OpenCV's own version is deliberately not in it, so that a run resumed
# after an OpenCV upgrade reuses the flows its first part used and stays byte-identical.
METHOD = "dis-medium-v1"

# Thresholds of the consistency tests (Ruder et al. 2016, "Artistic style transfer for
# videos", section 3.2), for flows in pixels.
OCCLUSION_REL, OCCLUSION_ABS = 0.01, 0.5
BOUNDARY_REL, BOUNDARY_ABS = 0.01, 0.002
# A frame pair is a scene cut when less than this fraction of the frame is reliable. Two
# unrelated images measure about 0.08; busy but continuous footage (testsrc2 panned, with
# its own parts moving every way) 0.4 to 0.65, which must not count as cuts.
SCENE_CUT_RELIABLE = 0.25

# The flow cache's bound: 2 GiB is ~690 pairs at 540x360 (3.1 MB each), ~125 at 1080p.
MAX_BYTES = 2 << 30
TMP_PREFIX = ".tmp-"
STALE_TMP_SECONDS = 3600  # a temporary file this old was left by a killed run

_local = threading.local()


def _dis(shape: tuple[int, int]) -> cv2.DISOpticalFlow:
    # One instance per thread and frame size: a DIS object holds scratch buffers and is not
    # thread-safe, and creating one per call costs more than the buffers it saves. No initial
    # flow is passed, yet an instance that has seen frames of another size gives other bits
    # (measured: a 24x32 pair first changed a 48x64 pair's flow), so each size gets its own.
    instances = getattr(_local, "dis", None)
    if instances is None:
        instances = _local.dis = {}
    if shape not in instances:
        if len(instances) >= 4:
            instances.clear()  # (a long-lived thread that sees many sizes)
        instances[shape] = cv2.DISOpticalFlow_create(PRESET)
    return instances[shape]


def _grey(frame: np.ndarray) -> np.ndarray:
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"expected a uint8 RGB frame (H, W, 3), got {frame.dtype} "
                         f"{frame.shape}")
    return cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY)


def compute_flow(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Dense flow (H, W, 2) float32 in pixels from uint8 RGB frame `src` to `dst`:
    src(x) ~ dst(x + w(x)). Computed by DIS on the grey images; deterministic (the same bits
    for the same frames, whatever OpenCV's thread count)."""
    if src.shape != dst.shape:
        raise ValueError(f"frames differ in size: {src.shape} and {dst.shape}")
    flow = _dis(src.shape[:2]).calc(_grey(src), _grey(dst), None)
    return np.ascontiguousarray(flow, dtype=np.float32)


def _sample_points(flow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The points x + w(x), clamped to the image (border replication), as float32 x and y."""
    h, w = flow.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    sx = np.clip(xs + flow[..., 0], 0, w - 1)
    sy = np.clip(ys + flow[..., 1], 0, h - 1)
    return sx, sy


def warp(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """Backward warp: out(x) = image(x + flow(x)), bilinear, border replicated.
    `image` is (H, W) or (H, W, C), float (computed in float32); `flow` (H, W, 2) in pixels.
    The same arithmetic as `warp_tensor` (grid_sample, align_corners=True, border padding),
    so the two agree to float rounding. OpenCV's remap is not used: it rounds the sample
    position to 1/32 px."""
    img = np.asarray(image, dtype=np.float32)
    if img.shape[:2] != flow.shape[:2]:
        raise ValueError(f"image {img.shape} and flow {flow.shape} differ in size")
    h, w = flow.shape[:2]
    sx, sy = _sample_points(np.asarray(flow, dtype=np.float32))
    # The left/top neighbour, kept one short of the last row/column so that x0 + 1 exists;
    # at the last column the weight fx is then 1 and the result is that column exactly.
    x0 = np.minimum(np.floor(sx).astype(np.intp), max(w - 2, 0))
    y0 = np.minimum(np.floor(sy).astype(np.intp), max(h - 2, 0))
    x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
    fx, fy = sx - x0, sy - y0
    if img.ndim == 3:
        fx, fy = fx[..., None], fy[..., None]
    top = img[y0, x0] * (1 - fx) + img[y0, x1] * fx
    bottom = img[y1, x0] * (1 - fx) + img[y1, x1] * fx
    return (top * (1 - fy) + bottom * fy).astype(np.float32)


def warp_tensor(image: torch.Tensor, flow: np.ndarray | torch.Tensor) -> torch.Tensor:
    """`warp` for a float tensor (C, H, W) or (N, C, H, W) on any device: out(x) =
    image(x + flow(x)), bilinear, border replicated. `flow` (H, W, 2) in pixels, numpy or
    tensor; the result has the image's dtype and device."""
    batched = image.dim() == 4
    x = image if batched else image.unsqueeze(0)
    h, w = x.shape[-2:]
    f = torch.as_tensor(flow).to(device=x.device, dtype=x.dtype)
    if tuple(f.shape) != (h, w, 2):
        raise ValueError(f"flow {tuple(f.shape)} does not match image {tuple(image.shape)}")
    ys, xs = torch.meshgrid(torch.arange(h, device=x.device, dtype=x.dtype),
                            torch.arange(w, device=x.device, dtype=x.dtype), indexing="ij")
    # grid_sample wants positions in [-1, 1]; with align_corners=True, -1 and 1 are the
    # centres of the first and last pixels. A side of one pixel has only that centre.
    gx = (xs + f[..., 0]) * (2 / (w - 1)) - 1 if w > 1 else torch.zeros_like(xs)
    gy = (ys + f[..., 1]) * (2 / (h - 1)) - 1 if h > 1 else torch.zeros_like(ys)
    grid = torch.stack((gx, gy), dim=-1).unsqueeze(0).expand(x.shape[0], h, w, 2)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=True)
    return out if batched else out.squeeze(0)


def reliability(backward: np.ndarray, forward: np.ndarray) -> np.ndarray:
    """Where warping with `backward` can be trusted: (H, W) float32 in [0, 1], 1 = reliable.

    `backward` is w, the flow k -> k-1 on frame k's grid; `forward` is the flow k-1 -> k on
    frame k-1's grid. A pixel x is unreliable (0) where
    - it is occluded: with w' = forward sampled at x + w(x), |w + w'|^2 >
      0.01 (|w|^2 + |w'|^2) + 0.5 (forward and backward flow do not undo each other);
    - it is on a motion boundary: |grad u|^2 + |grad v|^2 > 0.01 |w|^2 + 0.002 (gradients of
      w by central differences);
    - it comes from outside frame k-1: x + w(x) beyond the image (new content entering at the
      border, which the consistency test cannot see for a pure pan).
    The 0/1 mask is then softened: eroded by one pixel (3x3) and blurred with a Gaussian of
    sigma 1 px, so unreliable pixels stay near 0 (at most ~0.07 next to the edge) and the
    carried dream fades in over ~3 px instead of showing a hard seam.
    """
    w = np.asarray(backward, dtype=np.float32)
    w_back = warp(forward, w)  # w' at x + w(x)
    sq = lambda a: np.sum(a * a, axis=-1)  # noqa: E731 (squared length of each vector)
    occluded = sq(w + w_back) > OCCLUSION_REL * (sq(w) + sq(w_back)) + OCCLUSION_ABS
    grad = sum(g * g for c in (0, 1) for g in np.gradient(w[..., c]))
    boundary = grad > BOUNDARY_REL * sq(w) + BOUNDARY_ABS
    h, wd = w.shape[:2]
    ys, xs = np.mgrid[0:h, 0:wd]
    px, py = xs + w[..., 0], ys + w[..., 1]
    outside = (px < 0) | (px > wd - 1) | (py < 0) | (py > h - 1)
    mask = (~(occluded | boundary | outside)).astype(np.float32)
    mask = ndimage.minimum_filter(mask, size=3, mode="nearest")
    mask = ndimage.gaussian_filter(mask, sigma=1.0, mode="nearest", truncate=3.0)
    return np.clip(mask, 0, 1).astype(np.float32)


def scene_cut(mask: np.ndarray, threshold: float = SCENE_CUT_RELIABLE) -> bool:
    """True when the pair is a scene cut: less than a quarter of the frame (by default) is
    reliable, so the previous dream should be dropped and frame k start from its raw frame."""
    return float(np.mean(mask)) < threshold


class FlowCache:
    """Flows per frame pair (k-1, k), kept lossless (float32 .npz) in `folder`.

    An entry is named by the frame number, the frame size and a hash of both frames' bytes
    and the flow method, so a changed frame (another film extracted into the same folder),
    another size or another method never reuses a stale flow; writing a pair's new flow
    removes its older ones of the same size. Each entry holds a checksum of the key and
    both flows, checked on every read: a truncated, empty, damaged or foreign file is
    computed again (and replaced), never trusted and never fatal. Files are written
    atomically (temporary file, then os.replace): a killed run leaves either the whole file
    or none. Arrays returned are always exactly what the file holds, so a resumed run gets
    the same bits as the run that wrote them.

    540x360 takes 3.1 MB a pair, so the folder is bounded: past `max_bytes` the entries
    used longest ago are removed (a hit counts as a use), which costs at most their
    recomputation. Measured at 540x360 on 2 Zen 4 threads: both flows 50 ms; the key
    (sha256 of both frames) 0.65 ms and the checksum (of both flows) 1.7 ms; a hit, read
    and checked, 5 ms.
    """

    MEMBERS = {"backward.npy", "forward.npy", "check.npy"}

    def __init__(self, folder: str | Path, max_bytes: int = MAX_BYTES):
        self.folder = Path(folder)
        self.max_bytes = max_bytes
        self._written = None  # bytes stored since the last look at the folder's size

    @classmethod
    def next_to(cls, frames_dir: str | Path) -> "FlowCache":
        """The cache for the frames in `frames_dir`: `frames_dir/.dreamer/flow/`."""
        return cls(Path(frames_dir) / ".dreamer" / "flow")

    @staticmethod
    def key(frame_prev: np.ndarray, frame_k: np.ndarray) -> bytes:
        """sha256 of the flow method and both frames' shapes and bytes (content, not names
        or times: frames re-extracted from another film never match)."""
        digest = hashlib.sha256(METHOD.encode())
        for frame in (frame_prev, frame_k):
            digest.update(f"{frame.shape}{frame.dtype}".encode())
            digest.update(np.ascontiguousarray(frame).data)
        return digest.digest()

    def path(self, k: int, frame_prev: np.ndarray, frame_k: np.ndarray,
             key: bytes | None = None) -> Path:
        h, w = frame_k.shape[:2]
        key = key or self.key(frame_prev, frame_k)
        return self.folder / f"{k:08d}_{w}x{h}_{key.hex()[:20]}.npz"

    def get(self, k: int, frame_prev: np.ndarray, frame_k: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray]:
        """(backward k -> k-1, forward k-1 -> k) for raw frames k-1 and k, from the cache or
        computed and stored."""
        if frame_prev.shape != frame_k.shape:
            raise DreamerError(f"frames {k - 1:08d} and {k:08d} differ in size "
                               f"({frame_prev.shape[1]}x{frame_prev.shape[0]} and "
                               f"{frame_k.shape[1]}x{frame_k.shape[0]}): every frame of "
                               "a clip must have the same size")
        key = self.key(frame_prev, frame_k)
        path = self.path(k, frame_prev, frame_k, key)
        cached = self._load(path, key, frame_k.shape[:2])
        if cached is not None:
            _touch(path)  # used now: the last to be pruned
            return cached
        backward, forward = compute_flow(frame_k, frame_prev), compute_flow(frame_prev, frame_k)
        self._store(path, key, backward, forward)
        return backward, forward

    @staticmethod
    def _check(key: bytes, backward: np.ndarray, forward: np.ndarray) -> np.ndarray:
        digest = hashlib.sha256(key)
        digest.update(np.ascontiguousarray(backward).data)
        digest.update(np.ascontiguousarray(forward).data)
        return np.frombuffer(digest.digest(), dtype=np.uint8)

    @classmethod
    def _load(cls, path: Path, key: bytes, size: tuple[int, int]):
        """The entry's flows, or None where there is none or it fails any check."""
        shape = (*size, 2)
        most = int(np.prod(shape)) * 4 + 4096  # one flow and its .npy header
        try:
            if path.stat().st_size > 3 * most:
                raise ValueError("larger than two flows")
            with zipfile.ZipFile(path) as zf:
                infos = {info.filename: info for info in zf.infolist()}
                if set(infos) != cls.MEMBERS:
                    if set(infos) == cls.MEMBERS - {"check.npy"}:
                        return None  # written before entries had checksums: not damaged
                    raise ValueError(f"holds {sorted(infos)}")
                if any(info.file_size > most for info in infos.values()):
                    raise ValueError("a member is larger than a flow")
                arrays = {}
                for name, info in infos.items():
                    with zf.open(info) as f:
                        arrays[name[:-4]] = np.lib.format.read_array(f, allow_pickle=False)
        except FileNotFoundError:
            return None
        except Exception as e:  # noqa: BLE001 (zip, npy, I/O, memory: all mean "damaged")
            return cls._damaged(path, f"{type(e).__name__}: {e}")
        backward, forward, check = arrays["backward"], arrays["forward"], arrays["check"]
        if backward.shape != shape or forward.shape != shape or backward.dtype != np.float32 \
                or forward.dtype != np.float32:
            return cls._damaged(path, f"flows {backward.shape} {backward.dtype} where "
                                      f"{shape} float32 was expected")
        if check.dtype != np.uint8 or not np.array_equal(check,
                                                         cls._check(key, backward, forward)):
            return cls._damaged(path, "its checksum does not match")
        return backward, forward

    @staticmethod
    def _damaged(path: Path, why: str) -> None:
        log.info(f"note: the flow cache entry {path} was damaged ({why[:200]}); "
                 "computing it again")
        return None

    def _store(self, path: Path, key: bytes, backward: np.ndarray,
               forward: np.ndarray) -> None:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=TMP_PREFIX, suffix=".npz")
            try:
                with os.fdopen(fd, "wb") as f:
                    np.savez(f, backward=backward, forward=forward,
                             check=self._check(key, backward, forward))
                os.replace(tmp, path)
            except BaseException:
                os.unlink(tmp)
                raise
        except OSError as e:
            raise DreamerError(f"cannot write the flow cache {self.folder}: {e.strerror or e}"
                               "; free some space or make the frames folder writable") from e
        stem = path.name.rsplit("_", 1)[0]  # "<k>_<w>x<h>"
        for old in self.folder.glob(f"{stem}_*.npz"):
            if old != path:
                old.unlink(missing_ok=True)
        self._bound(path)

    def _bound(self, newest: Path) -> None:
        """Keeps the folder under max_bytes, removing the entries used longest ago; looks
        at the folder on the first store and after each eighth of max_bytes written."""
        try:
            size = newest.stat().st_size
        except OSError:
            return
        if self._written is not None and self._written + size < self.max_bytes // 8:
            self._written += size
            return
        self._written = 0
        entries, now = [], time.time()
        for p in self.folder.iterdir():
            try:
                st = p.stat()
            except OSError:
                continue  # removed meanwhile (another worker)
            if p.name.startswith(TMP_PREFIX):
                if now - st.st_mtime > STALE_TMP_SECONDS:  # left by a killed run
                    p.unlink(missing_ok=True)
            elif p.suffix == ".npz" and p != newest:
                entries.append((st.st_mtime, p.name, st.st_size, p))
        total = size + sum(e[2] for e in entries)
        for _, _, nbytes, p in sorted(entries):
            if total <= self.max_bytes:
                break
            p.unlink(missing_ok=True)
            total -= nbytes


def _touch(path: Path) -> None:
    try:
        os.utime(path)
    except OSError:
        pass  # a read-only cache is still read


class FlowPrefetcher:
    """Computes the flows of the coming frame pairs in one background thread, `ahead` pairs
    before they are asked for, so flow stays off the dream's critical path.

    `read_frame(k)` returns raw frame k (uint8 RGB); pairs are (k-1, k) for k in
    (first, last]. `flows(k)` returns (backward, forward, reliability mask) for pair
    (k-1, k), the mask made in the thread too, blocking only if they are not ready; an exception raised computing them is raised there. `close()`
    (or leaving a `with` block) stops the thread, dropping flows not yet asked for.
    """

    def __init__(self, read_frame: Callable[[int], np.ndarray], first: int, last: int,
                 cache: FlowCache | None = None, ahead: int = 3):
        self.read_frame, self.first, self.last = read_frame, first, last
        self.cache, self.ahead = cache, max(1, ahead)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="flow")
        self._pending: dict[int, Future] = {}
        self._last_read: tuple[int, np.ndarray] | None = None  # touched by the worker only

    def flows(self, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if not self.first < k <= self.last:
            raise ValueError(f"no frame pair ends at {k} in ({self.first}, {self.last}]")
        for stale in [j for j in self._pending if j < k]:
            self._pending.pop(stale).cancel()
        for j in range(k, min(k + self.ahead, self.last) + 1):
            if j not in self._pending:
                self._pending[j] = self._pool.submit(self._compute, j)
        return self._pending.pop(k).result()

    def _read(self, k: int) -> np.ndarray:
        # Pairs go in order, so frame k of one pair is frame k-1 of the next: read once.
        if self._last_read is not None and self._last_read[0] == k:
            return self._last_read[1]
        frame = self.read_frame(k)
        self._last_read = (k, frame)
        return frame

    def _compute(self, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        prev, frame = self._read(k - 1), self._read(k)
        if self.cache is not None:
            backward, forward = self.cache.get(k, prev, frame)
        else:
            backward, forward = compute_flow(frame, prev), compute_flow(prev, frame)
        return backward, forward, reliability(backward, forward)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._pending.clear()

    def __enter__(self) -> "FlowPrefetcher":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
