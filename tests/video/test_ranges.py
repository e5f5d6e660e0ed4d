"""Property tests of frame-range arithmetic and of where a resumed run starts."""
from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dreamer.errors import DreamerError
from dreamer.video.frames import FrameSet, choose_range
from dreamer.run.resume import Plan, plan_run

numbers = st.sets(st.integers(1, 60), min_size=1, max_size=40)
bound = st.none() | st.integers(-2, 70)


@given(numbers, bound, bound)
def test_choose_range_is_contiguous_inside_the_frames_or_refuses(nums, start, end):
    try:
        first, last = choose_range(nums, start, end, "png")
    except DreamerError as e:
        msg = str(e)
        lo = min(nums) if start is None else start
        hi = max(nums) if end is None else end
        if lo < 1:
            assert "before frame 1" in msg
        elif max(lo, hi) > max(nums) and (lo <= hi or lo > max(nums)):
            assert f"past the last frame ({max(nums)})" in msg
        elif lo > hi:
            assert "after end frame" in msg
        else:
            assert "is missing" in msg
            assert any(k not in nums for k in range(lo, hi + 1))
        return
    assert 1 <= first <= last
    assert all(k in nums for k in range(first, last + 1))
    assert first == (min(nums) if start is None else start)
    assert last == (max(nums) if end is None else end)


class FakeManifest:
    def __init__(self, records):
        self.frames = records

    def run(self, index):
        return {"dream": {"params": {"step_size": 1.5}, "seed": 1}}


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 20), st.integers(0, 20), st.sets(st.integers(1, 40), max_size=30),
       st.booleans())
def test_plan_starts_at_the_first_frame_not_done(first, length, done, overwrite):
    import tempfile

    last = first + length
    params = {"step_size": 1.5}
    from dreamer.run.resume import params_key

    key = params_key(params)
    with tempfile.TemporaryDirectory() as d:
        out = Path(d)
        for k in done:
            (out / f"{k:08d}.png").write_bytes(b"x")
        records = {k: {"key": key, "seed": 1, "run": 0} for k in done}
        frames = FrameSet(out, "png", first, last)
        plan = plan_run(FakeManifest(records), frames, out, params, None, lambda: 99, overwrite)
    assert isinstance(plan, Plan)
    in_range = [k for k in range(first, last + 1)]
    expected = next((k for k in in_range if overwrite or k not in done), None)
    assert plan.start == expected
    if not overwrite and any(k in done for k in in_range):
        assert plan.seed == 1 and plan.seed_source == "resumed"
    if plan.start is not None:  # the frames before the first to dream are all done
        assert set(range(first, plan.start)) <= plan.done


def test_plan_refuses_frames_dreamed_otherwise(tmp_path):
    (tmp_path / "00000002.png").write_bytes(b"x")
    records = {2: {"key": "other", "seed": 1, "run": 0}}
    frames = FrameSet(tmp_path, "png", 1, 3)
    with pytest.raises(DreamerError, match="frames 2..2 .* other parameters"):
        plan_run(FakeManifest(records), frames, tmp_path, {"step_size": 2.0}, 1, lambda: 5,
                 False)
