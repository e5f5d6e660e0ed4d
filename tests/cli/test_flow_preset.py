"""--flow fast: --flow with the fast preset's values (docs/flow.md), each unless a flag gives
it; the run is exactly the run with those flags."""
from __future__ import annotations

from pathlib import Path

import pytest

from conftest import tree_hashes, write_frames
from dreamer.cli.dream import config_from_args, main as dream_main, parse_args
from dreamer.config import FLOW_PRESETS


def parsed(*argv):
    return config_from_args(parse_args(["-i", "in", "-o", "out", *argv]))


def test_flow_fast_sets_the_preset_and_flags_still_win():
    fast = parsed("--flow", "fast")
    assert fast.flow is True
    assert {k: getattr(fast, k) for k in FLOW_PRESETS["fast"]} == FLOW_PRESETS["fast"]
    assert parsed("--flow", "fast", "-itr", "3", "--flow-smooth", "0.5").iter_n == 3
    assert parsed("--flow", "fast", "--flow-smooth", "0.5").flow_smooth == 0.5
    plain = parsed("--flow")
    assert (plain.flow, plain.iter_n, plain.step_size) == (True, 10, 1.5)
    assert parsed().flow is False


def test_an_unknown_preset_is_one_line(capsys):
    with pytest.raises(SystemExit) as e:
        parsed("--flow", "slow")
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "write --flow alone, or --flow fast" in err


def test_the_preset_s_run_is_the_run_with_its_flags(tiny_model, tmp_path):
    write_frames(tmp_path / "in", 3)
    common = ["-i", str(tmp_path / "in"), "-t", str(tiny_model), "-m", "tiny.caffemodel",
              "-oct", "1", "--seed", "3", "-v", "0"]
    assert dream_main([*common, "-o", str(tmp_path / "a"), "--flow", "fast"]) == 0
    assert dream_main([*common, "-o", str(tmp_path / "b"), "--flow", "-itr", "2", "-s", "3",
                       "--flow-smooth", "0.7"]) == 0
    a, b = ({Path(k).name: v for k, v in tree_hashes(tmp_path / d).items()
             if k.endswith(".png") and "/.dreamer/" not in k} for d in "ab")
    assert len(a) == 3 and a == b
