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
