"""Per-frame schedules: layers, blend (number, loop, random), jitter offsets."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dreamer.config import CUSTOM_LOOP, DreamConfig
from dreamer.errors import DreamerError
from dreamer.dream.schedule import blend_for_frame, jitter_offsets, layer_for_frame
from dreamer.values.blend import parse_blend


def test_layer_k_uses_layers_k_minus_1_mod_n():
    layers = ("a", "b", "c")
    assert [layer_for_frame(layers, k) for k in range(1, 8)] == list("abcabca")


def test_customloop_is_the_originals_list():
    cfg = DreamConfig(input="i", output="o")
    assert cfg.end_layers == CUSTOM_LOOP
    assert CUSTOM_LOOP[0] == CUSTOM_LOOP[-1] == "inception_4c/output"
    assert CUSTOM_LOOP[4] == "inception_5b/output"
    mixed = DreamConfig(input="i", output="o", layers=("conv2/3x3", "customloop"))
    assert mixed.end_layers == ("conv2/3x3", *CUSTOM_LOOP)


def test_loop_blend_goes_up_to_one_and_back_with_period_10():
    values = [blend_for_frame("loop", k, 0) for k in range(2, 14)]
    assert values == [0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.6]


def test_random_blend_is_one_of_six_values_and_repeatable():
    values = [blend_for_frame("random", k, 42) for k in range(2, 200)]
    assert set(values) == {0.5, 0.6, 0.7, 0.8, 0.9, 1.0}
    assert values == [blend_for_frame("random", k, 42) for k in range(2, 200)]
    assert values != [blend_for_frame("random", k, 43) for k in range(2, 200)]


def test_constant_blend():
    assert blend_for_frame(0.25, 9, 1) == 0.25


@pytest.mark.parametrize("text,want", [("0.5", 0.5), ("1", 1.0), ("0", 0.0), ("LOOP", "loop"),
                                       ("random", "random")])
def test_parse_blend(text, want):
    assert parse_blend(text) == want


@pytest.mark.parametrize("text,match", [("1.5", "outside"), ("-0.1", "outside"),
                                        ("sometimes", "unknown blend")])
def test_parse_blend_refuses(text, match):
    with pytest.raises(DreamerError, match=match):
        parse_blend(text)


def test_jitter_offsets_follow_the_published_stream():
    got = jitter_offsets(7, 3, 32)
    rng = np.random.default_rng([7, 3])
    for _ in range(40):
        assert next(got) == tuple(int(v) for v in rng.integers(-32, 33, size=2))


@given(st.integers(0, 2**31 - 1), st.integers(1, 10**6), st.integers(0, 64))
def test_jitter_offsets_stay_within_jitter(seed, k, jitter):
    offsets = jitter_offsets(seed, k, jitter)
    for _ in range(5):
        ox, oy = next(offsets)
        assert -jitter <= ox <= jitter and -jitter <= oy <= jitter


@given(st.integers(2, 10**6))
def test_loop_blend_is_periodic_and_in_range(k):
    b = blend_for_frame("loop", k, 0)
    assert 0.5 <= b <= 1.0
    assert b == blend_for_frame("loop", k + 10, 0)


@given(st.lists(st.text(min_size=1, max_size=3), min_size=1, max_size=7),
       st.integers(1, 10**6))
def test_layer_schedule_cycles(layers, k):
    assert layer_for_frame(layers, k) == layer_for_frame(layers, k + len(layers))
    assert layer_for_frame(layers, k) == layers[(k - 1) % len(layers)]
