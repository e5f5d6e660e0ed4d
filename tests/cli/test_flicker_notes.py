"""dreamvideo flicker says when a measure covers part of the film, or reads as no dream of it."""
from __future__ import annotations

from dreamer.cli.flicker import notes
from dreamer.dream.flicker import Report


def report(frames, added):
    r = Report(frames=frames, strength_per_frame=[5.0] * len(frames),
               pairs=frames[1:], residual_per_pair=[1.0] * (len(frames) - 1),
               dreamed_per_pair=[1.0 + added] * (len(frames) - 1),
               reliable_per_pair=[1.0] * (len(frames) - 1))
    return r


def test_part_of_the_film_and_a_negative_added_flicker_are_named():
    original = {k: None for k in range(1, 11)}
    lines = notes(original, {"a": report([1, 2, 3], 2.0), "b": report(list(range(1, 11)), -3)})
    assert lines == [
        "note: a: only 3 of the 10 original frames have a dreamed frame of the same number; "
        "the rest are not measured",
        "note: b: the added flicker is below zero: the dreamed frames change less from frame "
        "to frame than the film does; are they a dream of these frames?"]
    assert notes(original, {"": report(list(range(1, 11)), 1.0)}) == []


def test_a_long_measure_shows_its_progress(capsys):
    from dreamer.cli.flicker import _progress

    quiet, shown = _progress(after=60), _progress(after=-1)
    for k in range(1, 4):
        quiet(k, 3)
        shown(k, 3)
    lines = capsys.readouterr().err.splitlines()
    assert [ln.split(":")[0] for ln in lines] == [f"frame {k:08d} done" for k in (1, 2, 3)]
    assert lines[-1].startswith("frame 00000003 done: 3/3 frames")
