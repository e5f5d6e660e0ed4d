"""Issue 22's second sweep: what `dreamvideo all` refuses before stage 1 (not after
minutes of extracting every frame), and long values never echoed in full."""
from __future__ import annotations

import errno

import pytest

from conftest import bomb
from dreamer.cli.dreamvideo import main as dreamvideo
from dreamer.cli.oneline import os_error_line
from dreamer.config import DreamConfig
from dreamer.errors import DreamerError
from dreamer.run import pipeline
from dreamer.run.prepare import check_inputs


def config(tiny_model, **kw) -> DreamConfig:
    return DreamConfig("in", "out", **{"model_path": str(tiny_model),
                                        "model_name": "tiny.caffemodel", **kw})


@pytest.mark.parametrize("kw, message", [
    (dict(layers=("nosuchlayer",)), r"unknown layer 'nosuchlayer'; valid layers: conv1"),
    (dict(model_name="none.caffemodel"), r"model weights .*none.caffemodel not found"),
    (dict(guide_image="/nonexistent.png"), r"guide image, folder or video /nonexistent.png "
                                           r"not found"),
])
def test_the_model_its_layers_and_the_guide_are_checked_before_any_frame(tiny_model, kw,
                                                                          message):
    with pytest.raises(DreamerError, match=message):
        check_inputs(config(tiny_model, **kw))


def test_a_bomb_guide_is_refused_before_any_frame(tiny_model, tmp_path):
    path = bomb(tmp_path / "bomb.png")
    with pytest.raises(DreamerError, match="too large"):
        check_inputs(config(tiny_model, guide_image=str(path)))


def test_dreamvideo_all_refuses_them_before_stage_1(tiny_model, tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(pipeline, "_stage1", lambda *a: calls.append(a))
    with pytest.raises(DreamerError, match="unknown layer 'nosuchlayer'"):
        pipeline.run_all(tmp_path / "film.mp4", tmp_path / "out.mp4",
                         config(tiny_model, layers=("nosuchlayer",)), workdir=tmp_path / "w")
    assert calls == [] and not (tmp_path / "w").exists()


def test_a_25_kb_layer_name_is_not_echoed_in_full(tiny_model):
    with pytest.raises(DreamerError) as e:
        check_inputs(config(tiny_model, layers=("x" * 25_000,)))
    assert len(str(e.value)) < 2_000


def test_a_25_kb_command_is_not_echoed_in_full(capsys):
    assert dreamvideo(["x" * 25_000]) == 2
    assert len(capsys.readouterr().err) < 200


def test_a_name_too_long_gets_its_own_advice_and_is_cut_short():
    line = os_error_line(OSError(errno.ENAMETOOLONG, "File name too long", "y" * 25_000))
    assert "use a shorter file or folder name" in line and "free disk space" not in line
    assert len(line) < 400
    full = os_error_line(OSError(errno.ENOSPC, "No space left on device", "/x"))
    assert full.endswith("(/x); free disk space, then run again")
