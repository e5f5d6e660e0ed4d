"""--scene-cut, the setting added as one field of DreamConfig: its flag, --params key,
bounds, schedule, run key and help come from that field; carry() uses its value."""
from __future__ import annotations

import dataclasses

import pytest

from dreamer.cli.dream import build_parser, config_from_args, parse_args
from dreamer.cli.flagdoc import page
from dreamer.config import DreamConfig, validate
from dreamer.dream.schedule import Schedules
from dreamer.errors import DreamerError
from dreamer.run.manifest import Manifest
from dreamer.run.resume import dream_params, params_key
from dreamer.run.sequence import dream_sequence

from test_carry import config_for, moving_frames


def config(*flags: str) -> DreamConfig:
    return config_from_args(parse_args(["-i", "in", "-o", "out", *flags]))


def test_the_flag_the_params_key_and_the_help_come_from_the_field(tmp_path):
    assert config().scene_cut == 0.25
    assert config("--flow", "--scene-cut", "0.5").scene_cut == 0.5
    (tmp_path / "p.toml").write_text('flow = true\nscene-cut = "1:(0.1), 9:(0.6)"\n')
    assert config("--params", str(tmp_path / "p.toml")).scene_cut == "1:(0.1), 9:(0.6)"
    assert "--scene-cut" in build_parser().format_help()
    assert "`--scene-cut`" in page()


@pytest.mark.parametrize("flags,message", [
    (["--scene-cut", "0.5"], "--scene-cut only applies with --flow; add --flow"),
    (["--flow", "--scene-cut", "1.5"], "--scene-cut must be 0 to 1 (got 1.5)"),
    (["--flow", "--scene-cut", "1:(0.5), 5:(-1)"], "--scene-cut must be 0 to 1 (got -0.25 at "
                                                     "frame 3"),
])
def test_bad_values_are_refused_in_one_line(flags, message):
    with pytest.raises(DreamerError) as e:
        validate(config(*flags), 1, 9)
    assert message in str(e.value)


def test_a_schedule_gives_each_frame_its_threshold():
    schedules = Schedules(config("--flow", "--scene-cut", "1:(0), 5:(0.8)"))
    assert [round(schedules.at(k, 1).scene_cut, 2) for k in (1, 3, 5, 9)] == [0, 0.4, 0.8, 0.8]


def test_the_default_keeps_the_keys_of_runs_made_before_it():
    model = {"caffemodel": {"sha1": "x"}}
    flow = config("--flow")
    params = dream_params(flow, model, None, "png")
    assert "scene_cut" not in params
    other = dream_params(dataclasses.replace(flow, scene_cut=0.5), model, None, "png")
    assert other["scene_cut"] == 0.5 and params_key(other) != params_key(params)


def test_a_run_cuts_every_frame_at_1_and_none_at_0(tiny_model, tmp_path):
    frames = moving_frames(tmp_path / "in")
    cuts = {}
    for threshold in (0.0, 1.0):
        out = tmp_path / f"cut{threshold}"
        dream_sequence(config_for(tiny_model, frames, out, scene_cut=threshold))
        records = Manifest(out).frames
        cuts[threshold] = [records[k]["flow"]["cut"] for k in sorted(records) if k > 1]
    assert cuts[0.0] == [False] * 5 and cuts[1.0] == [True] * 5
