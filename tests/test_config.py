"""The settings schema (dreamer/config.py): every flag of stage 2 is a field's, with the
original's spellings, and the library's values are checked as the flags' are."""
from __future__ import annotations

import pytest

from dreamer.cli.dream import build_parser, config_from_args, parse_args
from dreamer.cli.params_file import keys
from dreamer.config import DreamConfig, keyed, schedulable_numbers, settings, validate
from dreamer.errors import DreamerError

# The original DeepDreamVideo's flags: users paste its command lines.
ORIGINAL = ("-i", "--input", "-o", "--output", "-it", "--image_type", "--gpu", "-t",
            "--model_path", "-m", "--model_name", "-p", "--preview", "-oct", "--octaves",
            "-octs", "--octavescale", "-itr", "--iterations", "-j", "--jitter", "-z", "--zoom",
            "-s", "--stepsize", "-b", "--blend", "-l", "--layers", "-v", "--verbose", "-gi",
            "--guide_image", "-sf", "--start_frame", "-ef", "--end_frame")


def test_the_originals_flags_are_all_there_and_each_sets_its_field():
    flags = {flag: name for name, s in settings().items() for flag in s.flags}
    assert set(ORIGINAL) <= set(flags)
    parser = build_parser()
    for action in parser._actions:  # (reading the parser the schema made)
        for flag in action.option_strings:
            if flag not in ("-h", "--help", "--params"):
                assert action.dest == flags[flag], flag


def test_a_command_line_becomes_the_config_it_says():
    c = config_from_args(parse_args(["-i", "in", "-o", "out", "-oct", "3", "-octs", "1.5",
                                     "-itr", "1:(2), 9:(4)", "-l", "a", "b", "--flow",
                                     "--gpu"]))
    assert (c.octave_n, c.octave_scale, c.iter_n, c.layers, c.flow, c.gpu) == (
        3, 1.5, "1:(2), 9:(4)", ("a", "b"), True, 0)
    assert config_from_args(parse_args(["-i", "in", "-o", "out"])) == DreamConfig("in", "out")


def test_what_is_derived_from_the_schema():
    assert list(schedulable_numbers()) == ["octave_n", "octave_scale", "iter_n", "jitter",
                                           "zoom", "step_size", "flow_blend", "scene_cut"]
    assert {"preview", "octave_n", "mean", "tile", "precision", "flow_carry"} <= set(keyed())
    assert not {"verbose", "overwrite", "workers", "seed", "gpu"} & set(keyed())
    assert keys()["octavescale"] == keys()["octave_scale"] == "octave_scale"
    assert keys()["flow_blend"] == "flow_blend" and "params" not in keys()


@pytest.mark.parametrize("field,value,message", [
    ("iter_n", "x", "-itr x: not a number"),
    ("octave_n", 2.5, "-oct 2.5 is not a whole number"),
    ("preview", "3", "-p '3' is not a whole number"),
    ("zoom", True, "-z True is not a number"),
    ("seed", -5, "--seed must be 0 to 4294967295 (got -5)"),
    ("verbose", 4, "verbosity must be 0 to 3 (got 4)"),
    ("precision", "fp64", "--precision fp64: use fp32 or tf32 or bf16"),
    ("flow_smooth", 0.5, "--flow-smooth only applies with --flow"),
    ("tile", "8", "--tile 8 is too small"),
    ("blend", "2", "blend 2 is outside [0, 1]"),
])
def test_a_library_config_is_checked_as_the_flags_are(field, value, message):
    with pytest.raises(DreamerError) as e:
        validate(DreamConfig("in", "out", **{field: value}))
    assert message in str(e.value) and "\n" not in str(e.value)


def test_layers_may_be_given_as_one_name_or_a_list():
    assert DreamConfig(layers="inception_4c/output").layers == ("inception_4c/output",)
    assert DreamConfig(layers=["a", "b"]).layers == ("a", "b")


# --- bounds: every number has an upper bound, NaN and inf are never within -------------

@pytest.mark.parametrize("field,value,message", [
    ("jitter", 10**20, "jitter must be at most 100000 (got 1e+20)"),       # beyond int64
    pytest.param("jitter", 10**5000, "jitter must be at most 100000 (got about 1e5000)",
                 id="jitter-5001-digits"),  # (str() refuses it: the message must not)
    ("iter_n", 10**300, "iterations must be at most 100000 (got 1e+300)"),
    ("octave_n", 31, "octaves must be at most 30 (got 31)"),
    ("octave_scale", 1e300, "octave scale must be at most 100 (got 1e+300)"),
    ("octave_scale", float("nan"), "octave scale must be 1 to 100 (got nan)"),
    ("zoom", float("inf"), "zoom must be at most 100 (got inf)"),
    ("step_size", float("nan"), "step size must be above 0 and at most 1000 (got nan)"),
    ("preview", 10**6, "preview width must be at most 100000 (got 1000000)"),
    ("workers", 10**9, "--workers must be at most 10000 (got 1000000000)"),
    ("iter_n", -1, "iterations must be 0 or more (got -1)"),   # the cap named only above it
    ("iter_n", "1:(1e300)", "-itr '1:(1e300)': '1e300' reaches 1e+300 at t=1"),
    ("jitter", "1:(nan)", "unknown name 'nan'"),
])
def test_every_number_is_bounded_above_and_finite(field, value, message):
    with pytest.raises(DreamerError) as e:
        validate(DreamConfig("in", "out", **{field: value}))
    assert message in str(e.value) and "\n" not in str(e.value)


def test_every_default_is_within_its_bounds_and_every_number_has_an_upper_bound():
    validate(DreamConfig("in", "out"))
    config = DreamConfig("in", "out")
    for name, s in settings().items():
        value = getattr(config, name)
        if s.numeric and s.kind is not bool and isinstance(value, (int, float)):
            assert s.within(value), name
        if s.kind is int and name not in ("gpu", "start_frame", "end_frame"):
            assert s.high is not None, f"{name} has no upper bound"


@pytest.mark.parametrize("argv, message", [
    (["-j", "99999999999999999999"], "jitter must be at most 100000"),
    (["-itr", "1:(1e300)"], "-itr '1:(1e300)': '1e300' reaches 1e+300"),
    (["-oct", "1:(1e308), 3:(-1e308)"], "-oct '1:(1e308), 3:(-1e308)': '1e308' reaches"),
    (["-octs", "1e300"], "octave scale must be at most 100 (got 1e+300)"),
])
def test_huge_values_on_the_command_line_end_in_one_line(argv, message):
    config = config_from_args(parse_args(["-i", "in", "-o", "out", *argv]))
    with pytest.raises(DreamerError) as e:
        validate(config, 1, 5)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_messages_never_echo_a_long_value_back(capsys):
    long = "x" * 25_000
    for config in (DreamConfig("in", "out", precision=long), DreamConfig("in", "out", zoom=long),
                   DreamConfig("in", "out", preview=[long])):
        with pytest.raises(DreamerError) as e:
            validate(config)
        assert len(str(e.value)) < 400 and "..." in str(e.value)
    with pytest.raises(SystemExit):
        parse_args(["-i", "in", "-o", "out", "-p", long])
    err = capsys.readouterr().err
    assert len(err) < 1000 and "..." in err
