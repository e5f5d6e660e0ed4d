"""Expressions and schedules are bounded (dreamer/values/expr.py, keyframes.py): no text
hangs, crashes or is echoed back whole; every value is a finite real within +-1e15; a
frame's value costs the same whatever the number of keys."""
from __future__ import annotations

import time
import types

import pytest

from dreamer.config import DreamConfig, validate
from dreamer.errors import DreamerError
from dreamer.values.expr import Expression
from dreamer.values.keyframes import Keyframes

MAX_VALUE, MAX_KEYS = 1e15, 100_000  # (expr.MAX_VALUE, keyframes.MAX_KEYS)


def refused(fn, *args) -> str:
    """The one-line message fn(*args) is refused with."""
    with pytest.raises(DreamerError) as e:
        fn(*args)
    message = str(e.value)
    assert "\n" not in message and len(message) < 400, message
    return message


@pytest.mark.parametrize("text", [
    "(((10**64)**64)**64)",                            # the issue's: one exponent was checked
    "((((((10**64)**64)**64)**64)**64)**64)",
    "(((t**64)**64)**64)**64",
    "pow(pow(10, 64), 64)",
    "1e15 * 10", "exp(40)", "(1e10 * 1e10) / 1e10",   # beyond 1e15 on the way, not at the end
    "1e300", "-1e300", "99999999999999999999",
])
def test_every_value_on_the_way_is_bounded_so_nested_powers_end_at_once(text):
    start = time.perf_counter()
    message = refused(Expression(text), 3)
    assert time.perf_counter() - start < 1
    assert "beyond any setting's range" in message and "1e+15" in message


def test_values_within_the_bounds_are_computed():
    assert Expression("1e15")(1) == MAX_VALUE and Expression("-1e15")(1) == -MAX_VALUE
    assert Expression("2**49 / 2**48")(1) == 2 and Expression("exp(34)")(1) > 5e14
    assert Expression("round(t*1000, -3)")(12.3456) == 12000


@pytest.mark.parametrize("text, part", [
    ("1+" * 50_000 + "1", "100,001 characters long; an expression may have at most 1,000"),
    ("(" * 10_000 + "1" + ")" * 10_000, "characters long"),
    ("-" * 100_000 + "1", "characters long"),                  # MemoryError in the parser
    ("(" * 150 + "1" + ")" * 150, "parentheses nest more than 100 deep"),
    ("1+" * 400 + "1", "operations nest more than 100 deep"),  # RecursionError in the walk
    ("-" * 300 + "1", "operations nest more than 100 deep"),
    ("[" + "1+" * 450 + "1]", "is not allowed"),                # (its message unparses)
])
def test_long_and_deeply_nested_expressions_are_one_line_before_any_recursion(text, part):
    message = refused(Expression, text)
    assert part in message
    assert message.startswith(f"'{text[:60]}...'")  # cut, never the 100 KB back


def test_a_round_to_huge_digits_is_refused_not_computed():
    # round(5, -10**14) would compute 10**10**14
    assert "round()'s digits must be within -30 to 30" in refused(
        Expression("round(5, -10**14)"), 1)


@pytest.mark.parametrize("text, part", [
    ("1:(1e400)", "'1e400' is inf at t=20"),
    ("1:(1), 9:(2 - 1e999)", "is inf at t=20"),
    ("1:(t * 1e14)", "reaches 2e+15 at t=20"),
    ("1:((-8)**(1/3))", "is not a real number at t=20"),
])
def test_inf_nan_and_huge_values_are_refused_naming_the_flag_and_frame(text, part):
    keys = Keyframes.parse(text, "-itr", integer=True)
    message = refused(keys.at, 20)
    assert message.startswith("-itr '") and part in message


@pytest.mark.parametrize("settings, part", [
    (dict(iter_n="1:(1e300)"), "-itr '1:(1e300)': '1e300' reaches 1e+300"),
    (dict(octave_n="1:(1e308), 3:(-1e308)"), "-oct '1:(1e308), 3:(-1e308)'"),
    (dict(iter_n="1:(10), 5:(1e6)"), "iterations must be at most 100000 (got 250008 at "
                                     "frame 2"),
    (dict(zoom="1:(1), 3:(1000) @cubic"), "zoom must be at most 100 (got 500.5 at frame 2"),
])
def test_scheduled_values_are_bounded_as_plain_ones_are(settings, part):
    config = DreamConfig("in", "out", **settings)
    assert part in refused(validate, config, 1, 9)


def test_errors_never_echo_a_long_expression_or_schedule_back():
    long_value = "+".join(["0.001*sin(t)"] * 70)              # 900 characters, allowed
    schedule = ", ".join(f"{k}:({long_value})" for k in range(1, 30)) + ", 30:(1/(t-31))"
    assert len(schedule) > 25_000
    keys = Keyframes.parse(schedule, "-z")
    message = refused(keys.at, 31)
    assert "cannot be computed at t=31" in message and "..." in message
    assert "frame 0 has an empty value" in refused(Keyframes.parse,
                                                   schedule + ", 0:()", "-z")
    config = DreamConfig("in", "out", zoom=schedule.replace("1/(t-31)", "-1"))
    assert "zoom must be above 0" in refused(validate, config, 1, 40)
    assert "is not a number or an expression" in refused(Expression, "1 + " + "1" * 900 + " +")


def test_a_cubic_frame_evaluates_only_the_keys_beside_it():
    """Fritsch-Carlson's tangent at a key needs only its neighbours: between keys i and
    i+1, keys i-1 to i+2. Evaluating every key for every frame made 10,000 keys cost
    minutes."""
    text = ", ".join(f"{k}:({1 + (k % 5) / 10} + t*0)" for k in range(1, 201)) + " @cubic"
    keys = Keyframes.parse(text, "-z")
    calls = []
    for value in keys.values:
        value.__class__ = type("Counted", (Expression,), {
            "__call__": lambda self, t, _call=Expression.__call__: (calls.append(t),
                                                                     _call(self, t))[1]})
    for k in (1, 50, 100, 199, 200, 500):
        calls.clear()
        keys.at(k)
        assert len(calls) <= 4, (k, len(calls))


@pytest.mark.parametrize("uses_t", [False, True])
def test_a_10000_key_cubic_schedule_is_validated_and_described_in_well_under_seconds(uses_t):
    from dreamer.run.manifest import describe

    n = 10_000
    value = (lambda k: f"1+0.01*sin(t/{k})") if uses_t else (lambda k: f"{1 + k % 7 / 100}")
    text = ", ".join(f"{k}:({value(k)})" for k in range(1, n + 1)) + " @cubic"
    config = DreamConfig("in", "out", zoom=text)
    start = time.perf_counter()
    validate(config, 1, n)
    paragraph = describe(config, 0, types.SimpleNamespace(first=1, last=n), (64, 48), "m")
    seconds = time.perf_counter() - start
    assert "zoom by keyframes 1:(" in paragraph
    assert seconds < 5, seconds  # about 0.3 s (1 s with t) here; minutes before


def test_too_many_keys_or_too_long_a_schedule_is_refused_at_once():
    start = time.perf_counter()
    two_million = ", ".join(f"{k}:(1)" for k in range(2_000_000))
    built = time.perf_counter()
    assert "a schedule of 24,888,888 characters; at most 4,000,000" in refused(
        Keyframes.parse, two_million, "-z")
    too_many = ",".join(f"{k}:(1)" for k in range(MAX_KEYS + 1))
    assert f"{MAX_KEYS + 1:,} keyframes; a schedule may have at most {MAX_KEYS:,}" in refused(
        Keyframes.parse, too_many, "-z")
    assert time.perf_counter() - built < 1 + (built - start)
    assert "frame 111111111111... is beyond any film" in refused(
        Keyframes.parse, "1" * 5000 + ":(1)", "-z")   # int() refuses 4300 digits


def test_a_long_blend_or_tile_is_not_echoed_back():
    from dreamer.values.blend import parse_blend
    from dreamer.values.tile import parse_tile

    for parse in (parse_blend, parse_tile):
        with pytest.raises(DreamerError) as e:
            parse("x" * 25_000)
        assert len(str(e.value)) < 200
