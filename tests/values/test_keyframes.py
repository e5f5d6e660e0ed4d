"""Keyframe schedules (dream/keyframes.py) and their expressions of t (dream/expr.py):
syntax, interpolation, edge cases and the one-line refusals."""
from __future__ import annotations

import math

import numpy as np
import pytest

from dreamer.config import CUSTOM_LOOP, DreamConfig, expand_layers, validate
from dreamer.values.expr import Expression
from dreamer.values.keyframes import Keyframes, LayerKeys, is_schedule, split_keys
from dreamer.dream.schedule import Schedules
from dreamer.errors import DreamerError


def values(text, frames, **kw):
    keys = Keyframes.parse(text, "-z", **kw)
    return [keys.at(k) for k in frames]


def test_linear_between_keys_flat_before_the_first_and_after_the_last():
    assert values("10:(1.0), 20:(2.0)", [1, 9, 10, 15, 19, 20, 21, 500]) == \
        [1.0, 1.0, 1.0, 1.5, 1.9, 2.0, 2.0, 2.0]


def test_step_holds_each_key_until_the_next():
    assert values("1:(4), 3:(6), 5:(2) @step", range(1, 8), integer=True) == \
        [4, 4, 6, 6, 2, 2, 2]


def test_cubic_eases_in_and_out_and_never_leaves_the_keys_range():
    got = values("1:(0), 11:(1) @cubic", range(1, 12))
    assert got[0] == 0 and got[-1] == 1 and got[5] == pytest.approx(0.5)
    steps = [b - a for a, b in zip(got, got[1:])]
    assert steps[0] < steps[4] > steps[-1]           # slow, fast, slow
    assert all(s > 0 for s in steps)
    # a peak between keys stays a peak: no overshoot above 2 or below 0
    peaked = values("1:(0), 5:(2), 9:(0), 30:(1) @cubic", range(1, 31))
    assert max(peaked) == 2 and min(peaked) == 0 and peaked[4] == 2


def test_cubic_through_a_monotone_ramp_stays_monotone():
    got = values("1:(0), 3:(0.1), 4:(5), 20:(6) @cubic", range(1, 21))
    assert all(b >= a for a, b in zip(got, got[1:]))


@pytest.mark.parametrize("text", [
    "1:(0), 4:(1), 13:(5), 15:(6), 40:(10) @cubic",               # rising all along
    "2:(1.0), 5:(3.0), 13:(2.0), 17:(2.5), 30:(-1.0), 31:(4) @cubic",  # peaks and valleys
    "0:(1.0), 7:(1.04), 9:(0.98), 30:(1.0) @cubic",               # a zoom, from key 0
    "1:(2), 6:(2), 20:(5), 23:(7) @cubic",                        # a flat stretch first
    "1:(0), 5:(t/10), 12:(2), 30:(1 + t/60) @cubic",              # keys that move with t
])
def test_cubic_is_scipys_pchip_with_the_first_and_last_key_held(text):
    """@cubic is Fritsch-Carlson's monotone Hermite, which scipy's PchipInterpolator is
    too, on unevenly spaced keys. The two differ only at the ends: scipy's end tangent is
    a one-sided three-point estimate, ours is zero (the first and last key hold before and
    after them). That is exactly PCHIP through the keys with a copy of the first key one
    frame before it and of the last one frame after it: a key beside an equal one gets
    PCHIP's zero tangent. So this compares every frame, end intervals included."""
    from scipy.interpolate import PchipInterpolator

    keys = Keyframes.parse(text, "-z")
    xs = np.array(keys.frames, dtype=float)
    assert len(set(np.diff(xs))) > 1  # uneven: the tangents' weights matter
    for k in range(keys.frames[0] - 2, keys.frames[-1] + 3):
        ys = np.array([v(k) for v in keys.values])  # every key is evaluated at t = k
        pchip = PchipInterpolator(np.r_[xs[0] - 1, xs, xs[-1] + 1], np.r_[ys[0], ys, ys[-1]])
        want = float(pchip(min(max(k, xs[0]), xs[-1])))
        assert keys.at(k) == pytest.approx(want, abs=1e-9, rel=1e-9), k


def test_expressions_of_t_are_evaluated_at_the_frame_being_dreamed():
    deforum = "0:(1.0025+0.002*sin(1.25*3.14*t/30))"  # pasted as Deforum users write it
    keys = Keyframes.parse(deforum, "-z")
    assert keys.at(12) == pytest.approx(1.0025 + 0.002 * math.sin(1.25 * 3.14 * 12 / 30))
    # between an expression key and a number key the two are interpolated at t
    mixed = Keyframes.parse("1:(t), 11:(0)", "-s")
    assert mixed.at(6) == pytest.approx(0.5 * 6 + 0.5 * 0)


def test_integers_round_half_up():
    assert values("1:(1), 5:(3)", range(1, 6), integer=True) == [1, 2, 2, 3, 3]


def test_a_plain_number_is_a_constant_schedule_with_its_own_spelling():
    keys = Keyframes.parse(1.02, "-z")
    assert keys.constant and keys.at(99) == 1.02
    assert not Keyframes.parse("1:(t/10)", "-z").constant
    assert Keyframes.parse("1 : ( 1.0 ) ,30:(1.04)  @ STEP", "-z").text() == \
        "1:(1.0), 30:(1.04) @step"


def test_values_may_hold_commas_and_parentheses():
    keys, mode = split_keys("1:(max(1, t/2)), 8:((2+3)*2)", "-z")
    assert keys == [(1, "max(1, t/2)"), (8, "(2+3)*2")] and mode == "linear"
    assert Keyframes.parse("1:(max(1, t/2))", "-z").at(6) == 3


@pytest.mark.parametrize("text,part", [
    ("1:(1.0), 30:(1.04", "never closed"),
    ("1:(1.0) 30:(1.04)", "expected ','"),
    ("1:(1.0), x:(2)", "expected FRAME:(VALUE) at 'x:(2)'"),
    ("30:(1.0), 10:(2)", "frame 10 comes after frame 30"),
    ("1:(1.0), 1:(2)", "frame 1 comes after frame 1"),
    ("-1:(1.0)", "numbered from 1"),
    ("1:(1.0), 5:()", "frame 5 has an empty value"),
    ("1:(1.0), 5:(2) @smooth", "unknown interpolation '@smooth'"),
    ("1:(1.0), 5:(2 +)", "-z at frame 5: '2 +' is not a number"),
    ("1:(__import__('os').system('x'))", "unknown function '__import__('os').system'"),
    ("1:(__import__('os'))", "unknown function '__import__'"),
    ("1:(t.real)", "'t.real' is not allowed"),
    ("1:(speed*2)", "unknown name 'speed'"),
    ("1:('1')", "'1' is not a number"),
    ("1:(lambda: 1)", "is not allowed"),
    ("1:(sin(t, x=1))", "unknown function 'sin'"),
    ("1:(sin(1, 2))", "sin() takes 1 argument, not 2"),
    ("1:(min(t))", "min() takes 2 or more arguments, not 1"),
    ("1:1, 30:(1.04)", "the value after 1: goes in parentheses, as in 1:(1.0)"),
    ("1:(1), 30:1.2", "the value after 30: goes in parentheses"),
    ("1.5:(1)", "frame 1.5 is not a whole frame number"),
])
def test_bad_schedules_are_refused_naming_the_bad_part(text, part):
    with pytest.raises(DreamerError) as e:
        Keyframes.parse(text, "-z")
    assert part in str(e.value) and "\n" not in str(e.value)


def test_values_that_cannot_be_computed_name_their_frame():
    keys = Keyframes.parse("1:(1/(t-3))", "-z")
    with pytest.raises(DreamerError, match=r"^-z '1:\(1/\(t-3\)\)': .* cannot be computed at t=3"):
        keys.at(3)
    with pytest.raises(DreamerError, match=r"^-s '1:\(1e400\)': '1e400' is inf"):
        Keyframes.parse("1:(1e400)", "-s").at(1)
    with pytest.raises(DreamerError, match="a power above"):
        Expression("9**9**9")(1)


def test_a_run_checks_every_frame_of_its_range_and_names_the_first_bad_one():
    config = DreamConfig(input="i", output="o", zoom="1:(1), 11:(-1)")
    validate(config)                   # schedules wait for the range
    validate(config, 1, 5)             # 1 .. 0.2: fine
    with pytest.raises(DreamerError) as e:
        validate(config, 1, 20)
    assert str(e.value) == ("zoom must be above 0 (got 0 at frame 6 of -z "
                            "'1:(1), 11:(-1)'); 1 is off")
    with pytest.raises(DreamerError, match=r"blend must be 0 to 1 \(got 1.1 at frame 2 of -b"):
        validate(DreamConfig(input="i", output="o", blend="1:(1), 3:(1.2)"), 1, 9)
    with pytest.raises(DreamerError, match=r"octaves must be 1 or more \(got 0\)"):
        validate(DreamConfig(input="i", output="o", octave_n=0))


def test_layer_schedules_hold_each_layer_and_cycle_lists_and_customloop():
    keys = LayerKeys.parse("1:(a), 4:(b c), 8:(customloop)", expand_layers)
    assert [keys.at(k) for k in range(1, 8)] == ["a", "a", "a", "c", "b", "c", "b"]
    assert [keys.at(k) for k in range(8, 11)] == [CUSTOM_LOOP[(k - 1) % 9] for k in (8, 9, 10)]
    assert keys.all_layers[:3] == ("a", "b", "c")
    config = DreamConfig(input="i", output="o",
                         layers=("1:(inception_4c/output),", "120:(inception_5b/output)"))
    assert config.layer_schedule.text() == "1:(inception_4c/output), 120:(inception_5b/output)"
    assert config.end_layers == ("inception_4c/output", "inception_5b/output")
    with pytest.raises(DreamerError, match="layers change at their keyframes"):
        LayerKeys.parse("1:(a), 5:(b) @cubic", expand_layers)


def test_frame_values_gather_every_schedule():
    config = DreamConfig(input="i", output="o", zoom="1:(1), 11:(1.1)", iter_n="1:(2), 5:(6)",
                         blend="loop", layers=("1:(x), 3:(y)",))
    sched = Schedules(config)
    v = sched.at(3, seed=0)
    assert (v.layer, v.iter_n, v.zoom, v.blend, v.octave_n) == ("y", 4, pytest.approx(1.02),
                                                               0.6, 4)
    assert sched.at(1, 0, carried=False).blend is None
    assert set(sched.scheduled()) == {"zoom", "iter_n", "layers"}
    assert sched.values_record(v) == {"zoom": v.zoom, "iter_n": 4}


def test_is_schedule_tells_keys_from_numbers_and_words():
    assert is_schedule("1:(2)") and is_schedule(" 12 : (x)")
    assert not any(is_schedule(x) for x in ("1.5", "loop", "inception_4c/output", 3, None))
