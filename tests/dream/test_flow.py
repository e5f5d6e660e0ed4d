"""Optical flow, warping, the reliability mask, the flow cache and the prefetcher
(dreamer/dream/flow.py), on small synthetic frames with known motion."""
from __future__ import annotations

import os
import threading
import time

import cv2
import numpy as np
import pytest
import torch
from scipy import ndimage

from dreamer.dream import flow
from dreamer.errors import DreamerError

H, W = 96, 128
DX, DY = 3, -2  # frame k is frame k-1 moved 3 px right and 2 px up


def smooth_pattern(seed: int, h: int = H + 20, w: int = W + 20) -> np.ndarray:
    """A uint8 RGB texture with features a few pixels wide, which flow can follow."""
    noise = np.random.default_rng(seed).random((h, w, 3))
    blurred = ndimage.gaussian_filter(noise, sigma=(2, 2, 0))
    lo, hi = blurred.min(), blurred.max()
    return ((blurred - lo) / (hi - lo) * 255).round().astype(np.uint8)


def shifted_pair(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(frame k-1, frame k) with frame_k(x, y) = frame_prev(x - DX, y - DY): both crops of one
    larger canvas, so what enters at frame k's left and bottom edges is genuinely new."""
    canvas = smooth_pattern(seed)
    prev = canvas[10:10 + H, 10:10 + W]
    frame = canvas[10 - DY:10 - DY + H, 10 - DX:10 - DX + W]
    return np.ascontiguousarray(prev), np.ascontiguousarray(frame)


@pytest.fixture(scope="module")
def pair():
    prev, frame = shifted_pair()
    return prev, frame, flow.compute_flow(frame, prev), flow.compute_flow(prev, frame)


def test_backward_flow_of_a_shift_points_back(pair):
    _, _, backward, forward = pair
    inner = (slice(8, -8), slice(8, -8))
    assert backward.dtype == np.float32 and backward.shape == (H, W, 2)
    np.testing.assert_allclose(backward[inner].mean(axis=(0, 1)), [-DX, -DY], atol=0.05)
    assert np.abs(backward[inner] - [-DX, -DY]).max() < 0.5
    np.testing.assert_allclose(forward[inner].mean(axis=(0, 1)), [DX, DY], atol=0.05)


def test_warping_the_previous_frame_gives_this_one(pair):
    prev, frame, backward, _ = pair
    warped = flow.warp(prev.astype(np.float32), backward)
    error = np.abs(warped - frame)[8:-8, 8:-8]
    assert error.mean() < 1.0 and np.percentile(error, 99) < 5


def test_reliability_marks_the_uncovered_strip(pair):
    _, _, backward, forward = pair
    mask = flow.reliability(backward, forward)
    assert mask.dtype == np.float32 and mask.shape == (H, W)
    assert 0 <= mask.min() and mask.max() <= 1
    # Frame k's first 3 columns and last 2 rows show what frame k-1 did not.
    assert mask[:, :DX].max() < 0.1
    assert mask[H + DY:, :].max() < 0.1
    assert mask[8:-8, 8:-8].min() > 0.95
    assert not flow.scene_cut(mask)


def test_reliability_marks_a_motion_boundary():
    backward = np.zeros((40, 60, 2), np.float32)
    backward[:, 30:, 1] = 4.0  # the right half moves, the left does not
    backward[:4, 30:, 1] = 0.0  # (so that no pixel samples from beyond the bottom)
    mask = flow.reliability(backward, -backward)
    assert mask[10:30, 29:31].max() < 0.1
    assert mask[10:30, 5:20].min() > 0.99 and mask[10:30, 40:55].min() > 0.99


def test_unrelated_frames_are_a_scene_cut():
    a, b = smooth_pattern(1)[:H, :W], smooth_pattern(2)[:H, :W]
    mask = flow.reliability(flow.compute_flow(b, a), flow.compute_flow(a, b))
    assert flow.scene_cut(mask)


def test_compute_flow_is_deterministic(pair):
    prev, frame, backward, _ = pair
    results = [flow.compute_flow(frame, prev)]
    old = cv2.getNumThreads()
    try:
        for n in (1, 4):
            cv2.setNumThreads(n)
            results.append(flow.compute_flow(frame, prev))
    finally:
        cv2.setNumThreads(old)
    thread = threading.Thread(target=lambda: results.append(flow.compute_flow(frame, prev)))
    thread.start()
    thread.join()
    assert len(results) == 4
    assert all(r.tobytes() == backward.tobytes() for r in results)


def test_compute_flow_refuses_bad_frames(pair):
    prev, frame, _, _ = pair
    with pytest.raises(ValueError):
        flow.compute_flow(prev, frame[:-1])
    with pytest.raises(ValueError):
        flow.compute_flow(prev.astype(np.float32), frame.astype(np.float32))


def test_warp_with_an_integer_flow_is_an_exact_shift():
    image = np.arange(4 * 5 * 2, dtype=np.float32).reshape(4, 5, 2)
    shift = np.zeros((4, 5, 2), np.float32)
    shift[..., 0], shift[..., 1] = 1, -2  # sample one right and two up
    rows = np.clip(np.arange(4) - 2, 0, 3)
    cols = np.clip(np.arange(5) + 1, 0, 4)
    expected = image[rows][:, cols]
    assert np.array_equal(flow.warp(image, shift), expected)
    assert np.array_equal(flow.warp(image[..., 0], shift), expected[..., 0])
    tensor = torch.from_numpy(image).permute(2, 0, 1)
    torch.testing.assert_close(flow.warp_tensor(tensor, shift),
                               torch.from_numpy(expected).permute(2, 0, 1), atol=1e-5, rtol=0)


def test_warp_of_zero_flow_is_the_image():
    image = np.random.default_rng(3).random((7, 9, 3), dtype=np.float32)
    assert np.array_equal(flow.warp(image, np.zeros((7, 9, 2), np.float32)), image)


def test_warp_halfway_is_the_mean_of_neighbours():
    image = np.array([[0, 10, 30]], np.float32)
    half = np.zeros((1, 3, 2), np.float32)
    half[..., 0] = 0.5
    np.testing.assert_allclose(flow.warp(image, half), [[5, 20, 30]])


def test_warp_numpy_and_torch_agree():
    rng = np.random.default_rng(4)
    image = rng.random((23, 31, 3), dtype=np.float32)
    # fractional flows, some pointing far outside the frame (border replication)
    shift = (rng.standard_normal((23, 31, 2)) * 6).astype(np.float32)
    expected = flow.warp(image, shift)
    tensor = torch.from_numpy(image).permute(2, 0, 1).contiguous()
    got = flow.warp_tensor(tensor, torch.from_numpy(shift))
    np.testing.assert_allclose(got.permute(1, 2, 0).numpy(), expected, atol=1e-5, rtol=0)
    batch = flow.warp_tensor(torch.stack([tensor, 2 * tensor]), shift)
    np.testing.assert_allclose(batch[1].permute(1, 2, 0).numpy(), 2 * expected, atol=2e-5,
                               rtol=0)
    assert got.dtype == torch.float32
    with pytest.raises(ValueError):
        flow.warp_tensor(tensor, shift[:-1])


def test_cache_reuses_the_stored_flow(tmp_path, pair, monkeypatch):
    prev, frame, backward, forward = pair
    cache = flow.FlowCache.next_to(tmp_path)
    assert cache.folder == tmp_path / ".dreamer" / "flow"
    first = cache.get(5, prev, frame)
    assert first[0].tobytes() == backward.tobytes() and first[1].tobytes() == forward.tobytes()
    files = list(cache.folder.iterdir())
    assert [f.name[:8] for f in files] == ["00000005"]  # and no temporary file left

    def boom(*_):
        raise AssertionError("computed again instead of read from the cache")
    monkeypatch.setattr(flow, "compute_flow", boom)
    again = flow.FlowCache(cache.folder).get(5, prev, frame)
    assert again[0].tobytes() == first[0].tobytes()
    assert again[1].tobytes() == first[1].tobytes()

    changed = frame.copy()
    changed[0, 0, 0] ^= 1
    with pytest.raises(AssertionError, match="computed again"):
        cache.get(5, prev, changed)
    monkeypatch.undo()
    cache.get(5, prev, changed)
    assert len(list(cache.folder.iterdir())) == 1  # the stale flow of pair 5 is gone
    cache.get(6, prev, frame)  # another pair: kept alongside
    cache.get(5, prev[:-8], frame[:-8])  # another size: kept alongside
    assert len(list(cache.folder.iterdir())) == 3


def test_cache_recomputes_a_damaged_file(tmp_path, pair):
    prev, frame, backward, _ = pair
    cache = flow.FlowCache(tmp_path)
    cache.path(2, prev, frame).write_bytes(b"not a flow")
    assert cache.get(2, prev, frame)[0].tobytes() == backward.tobytes()


def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x10]) + data[at + 1:]


@pytest.mark.parametrize("damage", [
    lambda data: data[:len(data) // 2],   # truncated: BadZipFile before checksums
    lambda data: b"",                     # empty: EOFError
    lambda data: data[:-1],               # the zip directory's last byte gone
    lambda data: _flip(data, 200),        # a bit flipped in the first flow
    lambda data: _flip(data, len(data) - 400),  # in the checksum or the zip directory
], ids=["truncated", "empty", "one byte short", "flipped bit", "flipped tail"])
def test_cache_recomputes_a_truncated_empty_or_flipped_entry(tmp_path, pair, damage, caplog):
    prev, frame, backward, forward = pair
    cache = flow.FlowCache(tmp_path)
    cache.get(3, prev, frame)
    path = cache.path(3, prev, frame)
    path.write_bytes(damage(path.read_bytes()))
    for _ in range(2):  # every rerun: recomputed once, then the repaired entry is read
        got = flow.FlowCache(tmp_path).get(3, prev, frame)
        assert got[0].tobytes() == backward.tobytes()
        assert got[1].tobytes() == forward.tobytes()
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # replaced, no temp left
    with np.load(path) as data:
        assert data["backward"].tobytes() == backward.tobytes()


def test_cache_never_trusts_a_valid_file_of_other_flows(tmp_path, pair, monkeypatch):
    """A well-formed entry holding flows of another pair (copied, or written by a bug) has
    the wrong checksum for this pair's key: computed again, not used."""
    prev, frame, backward, forward = pair
    cache = flow.FlowCache(tmp_path)
    cache.get(4, frame, prev)  # the reverse pair: flows of the same size, other values
    other = cache.path(4, frame, prev)
    other.rename(cache.path(4, prev, frame))
    got = cache.get(4, prev, frame)
    assert got[0].tobytes() == backward.tobytes() and got[1].tobytes() == forward.tobytes()
    # and an entry of the right shapes with no checksum at all is not trusted either
    path = cache.path(4, prev, frame)
    np.savez(path, backward=forward, forward=backward)
    got = cache.get(4, prev, frame)
    assert got[0].tobytes() == backward.tobytes()


def test_cache_refuses_an_oversized_entry_without_reading_it(tmp_path, pair):
    prev, frame, backward, _ = pair
    cache = flow.FlowCache(tmp_path)
    path = cache.path(8, prev, frame)
    tmp_path.mkdir(exist_ok=True)
    with open(path, "wb") as f:  # sparse: 1 GB on paper, nothing on disk
        f.truncate(1 << 30)
    assert cache.get(8, prev, frame)[0].tobytes() == backward.tobytes()
    assert path.stat().st_size < 1 << 20


def test_another_film_in_the_same_frames_folder_never_reuses_flows(tmp_path, monkeypatch):
    """Stage 1 re-run on another film writes the same frame numbers: the entries are keyed
    by both frames' content, so the old film's flows are not found."""
    cache = flow.FlowCache(tmp_path)
    old, new = clip(3), [np.ascontiguousarray(f[::-1]) for f in clip(3)]
    for k in (2, 3):
        cache.get(k, old[k - 2], old[k - 1])
    computed = []
    real = flow.compute_flow
    monkeypatch.setattr(flow, "compute_flow", lambda a, b: computed.append(1) or real(a, b))
    for k in (2, 3):
        backward, _ = cache.get(k, new[k - 2], new[k - 1])
        assert backward.tobytes() == real(new[k - 1], new[k - 2]).tobytes()
    assert len(computed) == 4  # both flows of both pairs, none reused


def test_a_write_killed_midway_leaves_no_entry_under_the_real_name(tmp_path, pair,
                                                                   monkeypatch):
    prev, frame, backward, _ = pair
    cache = flow.FlowCache(tmp_path)

    def killed(f, **arrays):
        f.write(b"PK\x03\x04 half a zip")
        raise KeyboardInterrupt
    monkeypatch.setattr(np, "savez", killed)
    with pytest.raises(KeyboardInterrupt):
        cache.get(9, prev, frame)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    # a temporary file a kill -9 left an hour ago is removed by a later store
    stale = tmp_path / ".tmp-killed.npz"
    stale.write_bytes(b"PK half")
    os.utime(stale, (time.time() - 7200,) * 2)
    assert cache.get(9, prev, frame)[0].tobytes() == backward.tobytes()
    assert [p.name for p in tmp_path.iterdir()] == [cache.path(9, prev, frame).name]


def test_the_cache_is_bounded_keeping_what_was_used_last(tmp_path):
    frames = clip(8)
    one = flow.FlowCache(tmp_path).get(2, frames[0], frames[1])
    entry = 2 * one[0].nbytes + 1000  # about one entry
    cache = flow.FlowCache(tmp_path, max_bytes=3 * entry)
    used = cache.path(2, frames[0], frames[1])
    for k in range(3, 9):
        cache.get(k, frames[k - 2], frames[k - 1])
        time.sleep(0.02)  # past the file system's clock tick, so the use is later
        cache._written = None  # look at the folder on every store (it does every 1/8)
        cache.get(2, frames[0], frames[1])  # pair 2 is used again and again
        files = list(tmp_path.iterdir())
        assert sum(p.stat().st_size for p in files) <= 3 * entry
        assert used in files and cache.path(k, frames[k - 2], frames[k - 1]) in files
    assert len(list(tmp_path.iterdir())) == 3


def test_cache_refuses_frames_of_different_sizes(tmp_path, pair):
    prev, frame, _, _ = pair
    with pytest.raises(DreamerError, match="00000006 and 00000007 differ in size"):
        flow.FlowCache(tmp_path).get(7, prev, frame[:-1])


def clip(n: int) -> list[np.ndarray]:
    """n frames of one canvas panning 2 px right and 1 px down a frame."""
    canvas = smooth_pattern(5, H + 2 * n + 4, W + 2 * n + 4)
    return [np.ascontiguousarray(canvas[n - k:n - k + H, 2 * (n - k):2 * (n - k) + W])
            for k in range(n)]


def test_prefetcher_gives_the_direct_flows(tmp_path):
    frames = clip(6)  # frame numbers 1..6
    reads = []

    def read(k):
        reads.append(k)
        return frames[k - 1]
    with flow.FlowPrefetcher(read, 1, 6, cache=flow.FlowCache(tmp_path), ahead=2) as pre:
        for k in range(2, 7):
            backward, forward, mask = pre.flows(k)
            assert mask.tobytes() == flow.reliability(backward, forward).tobytes()
            assert backward.tobytes() == flow.compute_flow(frames[k - 1],
                                                           frames[k - 2]).tobytes()
            assert forward.tobytes() == flow.compute_flow(frames[k - 2],
                                                          frames[k - 1]).tobytes()
        with pytest.raises(ValueError):
            pre.flows(1)
    assert reads == [1, 2, 3, 4, 5, 6]  # each frame read once
    assert len(list(tmp_path.iterdir())) == 5


def test_prefetcher_raises_the_workers_error():
    frames = clip(4)

    def read(k):
        if k == 3:
            raise DreamerError("frame 00000003.png is damaged")
        return frames[k - 1]
    pre = flow.FlowPrefetcher(read, 1, 4, ahead=3)
    try:
        assert pre.flows(2)[0].shape == (H, W, 2)
        with pytest.raises(DreamerError, match="00000003.png is damaged"):
            pre.flows(3)
    finally:
        pre.close()


def test_a_flow_does_not_depend_on_the_frame_sizes_seen_before(pair):
    """One DIS object in a thread that first saw frames of another size gave other bits
    (the flicker test's small frames changed this module's flows): each size has its own."""
    prev, frame, backward, _ = pair
    rng = np.random.default_rng(0)
    small = [rng.integers(0, 256, (24, 32, 3), dtype=np.uint8) for _ in range(2)]
    results = []

    def in_a_fresh_thread():
        flow.compute_flow(*small)
        results.append(flow.compute_flow(frame, prev))
    thread = threading.Thread(target=in_a_fresh_thread)
    thread.start()
    thread.join()
    assert results[0].tobytes() == backward.tobytes()
