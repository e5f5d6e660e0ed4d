"""--flow on real film (issue 24): ../shared/footage/fear_loathing_1000-1119, the original's
own footage, dreamed with its published parameters (-itr 5 -oct 4 -b loop, the layer loop)
and real GoogLeNet. On frames 1-16 (docs/flow.md has all 120): --flow adds at most a third
of the blend's flicker at 90 % of its strength or more, and --flow fast adds no more than
--flow at 90 % of its strength or more, in fewer steps."""
from __future__ import annotations

import pytest

from conftest import GOOGLENET, SHARED
from dreamer.cli.dream import main as dream_main
from dreamer.dream import flicker
from dreamer.video.frames import numbered_files

FILM = SHARED / "footage" / "fear_loathing_1000-1119" / "original"

pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    not FILM.is_dir() or not (GOOGLENET / "bvlc_googlenet.caffemodel").is_file(),
    reason=f"needs {FILM} and real GoogLeNet ({GOOGLENET}): the developers' ../shared")]


def dream(out, *extra):
    assert dream_main(["-i", str(FILM), "-o", str(out), "-t", str(GOOGLENET),
                       "-oct", "4", "-b", "loop", "--seed", "1", "-ef", "16", "-v", "0",
                       *extra]) == 0
    return numbered_files(out)


def test_flow_and_its_fast_preset_on_real_film(tmp_path):
    film = {k: p for k, p in numbered_files(FILM).items() if k <= 16}
    runs = {name: dream(tmp_path / name, *extra) for name, extra in (
        ("plain", ("-itr", "5")), ("flow", ("-itr", "5", "--flow")),
        ("fast", ("--flow", "fast")))}  # (-itr 5 given would win over the preset's 2)
    r = flicker.measure_all(film, runs)
    plain, flow, fast = r["plain"], r["flow"], r["fast"]
    assert flow.added <= plain.added / 3, (flow.added, plain.added)
    assert flow.strength >= 0.9 * plain.strength, (flow.strength, plain.strength)
    assert fast.added <= flow.added, (fast.added, flow.added)
    assert fast.strength >= 0.9 * flow.strength, (fast.strength, flow.strength)
