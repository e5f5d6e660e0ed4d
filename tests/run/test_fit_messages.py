"""The -p a refusal of too many or too large octaves advises: a -p that fits, within reason,
or, where only an absurd one would (-octs 1e300 once advised a 300-digit -p, or died of an
OverflowError), fewer octaves or a smaller octave scale instead."""
from __future__ import annotations

import re
from dataclasses import replace

import pytest

from conftest import write_frames
from dreamer.caffe.net import load_net
from dreamer.cli.dream import main as dream_main
from dreamer.config import DreamConfig
from dreamer.errors import DreamerError
from dreamer.run import fit

END = "inception_4c/output"


@pytest.fixture(scope="module")
def net(tiny_model):
    return load_net(tiny_model / "deploy.prototxt", tiny_model / "tiny.caffemodel")


def refusal(net, size, **settings) -> str:
    """check_octaves' one line for frames of `size` (settings set as they are, unchecked,
    as a schedule's value reaches it)."""
    config = replace(DreamConfig("in", "out"), **settings)
    with pytest.raises(DreamerError) as e:
        fit.check_octaves(net, [END], size, config, size)
    text = str(e.value)
    assert "\n" not in text
    return text


def advised_p(text: str) -> int | None:
    m = re.search(r"-p (\d+) or more", text)
    return int(m[1]) if m else None


@pytest.mark.parametrize("scale", [1e300, 1e30, 100.0])
def test_a_huge_octave_scale_advises_fewer_or_smaller_octaves_not_a_huge_p(net, scale):
    text = refusal(net, (48, 40), octave_n=30, octave_scale=scale)
    assert advised_p(text) is None, text
    assert not re.search(r"\d{7,}", text), text     # no number of 7 digits or more
    assert "fewer octaves (-oct " in text and "smaller octave scale (-octs " in text
    assert "larger frames" not in text


def advised(text: str, flag: str) -> float:
    return float(re.search(rf"\({flag} ([\d.]+) fits\)", text)[1])


def test_a_refused_octave_names_the_layer_its_size_and_the_oct_and_octs_that_fit(net):
    """Issue 23: the layer that cannot take the octave, the octave's size, and -oct and
    -octs values that do fit (checked here: they pass)."""
    text = refusal(net, (48, 40), octave_n=4, octave_scale=3.0)
    assert re.search(r"the smallest octave is \d+x\d+ and layer \S+ \(\w+\) cannot take it",
                     text), text
    octaves, scale = int(advised(text, "-oct")), advised(text, "-octs")
    assert 1 <= octaves < 4 and 1 < scale < 3.0
    for fix in (dict(octave_n=octaves, octave_scale=3.0), dict(octave_n=4, octave_scale=scale)):
        fit.check_octaves(net, [END], (48, 40), replace(DreamConfig("in", "out"), **fix))
    with pytest.raises(DreamerError):  # and just above it does not
        fit.check_octaves(net, [END], (48, 40), replace(DreamConfig("in", "out"), octave_n=4,
                                                         octave_scale=scale + 0.05))


def test_one_octave_too_many_still_gets_the_p_that_fits(net):
    text = refusal(net, (48, 40), octave_n=4, octave_scale=3.0)
    least = advised_p(text)
    assert least is not None and least <= 100_000, text
    # the -p it names does fit
    width, height = least, max(2, round(40 * least / 48 / 2) * 2)
    config = replace(DreamConfig("in", "out"), octave_n=4, octave_scale=3.0, preview=least)
    fit.check_octaves(net, [END], (width, height), config, (48, 40))


def test_frames_too_small_at_any_scale_with_absurd_octaves_name_no_huge_p(net):
    """Frames too small for the net themselves, and octaves no -p within reason fits."""
    text = refusal(net, (4, 4), octave_n=30, octave_scale=100.0)
    assert advised_p(text) is None and not re.search(r"\d{7,}", text), text
    assert "None" not in text


def test_stage_2_with_the_largest_octaves_allowed_is_one_short_line(capsys, tmp_path,
                                                                    tiny_model):
    frames = tmp_path / "frames"
    write_frames(frames, 2)
    out = tmp_path / "out"
    code = dream_main(["-i", str(frames), "-o", str(out), "-t", str(tiny_model), "-m",
                       "tiny.caffemodel", "-octs", "100", "-oct", "30", "-v", "0"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and len(lines) == 1, lines
    assert not re.search(r"\d{7,}", lines[0]) and "Traceback" not in lines[0], lines
    assert not out.exists()
