"""A deploy file that is not a text prototxt (the caffemodel given in its place, any binary,
bytes that are not UTF-8) is refused in one printable line naming the file, never its raw
bytes; a prototxt that Caffe reads (non-UTF-8 bytes in a comment) still reads."""
from __future__ import annotations

import shutil

import pytest

from conftest import write_frames
from dreamer.caffe import proto
from dreamer.cli.dream import main as dream_main
from dreamer.errors import DreamerError


def refused(path) -> str:
    with pytest.raises(DreamerError) as e:
        proto.read_prototxt(path)
    text = str(e.value)
    assert "\n" not in text and str(path) in text, text
    assert text.isascii() and text.isprintable(), f"raw bytes in the message: {text!r}"
    assert "\ufffd" not in text
    return text


def test_the_caffemodel_given_as_the_deploy_file_is_not_a_text_prototxt(tmp_path, tiny_model):
    deploy = tmp_path / "deploy.prototxt"
    shutil.copy(tiny_model / "tiny.caffemodel", deploy)
    text = refused(deploy)
    assert "not a text prototxt" in text and "caffemodel" in text


def test_any_binary_file_is_not_a_text_prototxt(tmp_path):
    deploy = tmp_path / "deploy.prototxt"
    deploy.write_bytes(bytes(range(256)) * 8)
    assert "not a text prototxt" in refused(deploy)


def test_bytes_that_are_not_utf8_are_named_not_echoed(tmp_path):
    deploy = tmp_path / "deploy.prototxt"
    deploy.write_bytes(b'name: "x"\n\xff\xfe\xfa layer {}\n')
    text = refused(deploy)
    assert "not a text prototxt" in text and "0xff" in text and "line 2" in text


def test_control_characters_in_a_parse_error_are_escaped(tmp_path):
    deploy = tmp_path / "deploy.prototxt"
    deploy.write_bytes(b'name: "x"\n\x01\x1b[31m layer {}\n')
    assert "not a valid prototxt" in refused(deploy)


def test_a_file_far_too_large_for_a_prototxt_is_not_read_whole(tmp_path, monkeypatch):
    monkeypatch.setattr(proto, "MAX_PROTOTXT_BYTES", 1000)
    deploy = tmp_path / "deploy.prototxt"
    deploy.write_text("# a comment\n" * 1000)
    assert "not a text prototxt" in refused(deploy)


def test_dev_zero_as_the_deploy_file_ends(tmp_path):
    assert "not a text prototxt" in refused("/dev/zero")


def test_non_utf8_bytes_in_a_comment_still_read(tmp_path, tiny_model):
    """As Caffe reads it: a Latin-1 (or GBK) comment is no reason to refuse a deploy file."""
    deploy = tmp_path / "deploy.prototxt"
    deploy.write_bytes(b"# \xe9t\xe9: Latin-1 comment\n"
                       + (tiny_model / "deploy.prototxt").read_bytes())
    net = proto.read_prototxt(deploy)
    assert len(net.layer) == len(proto.read_prototxt(tiny_model / "deploy.prototxt").layer)


def test_stage_2_with_the_caffemodel_as_deploy_file_is_one_line(capsys, tmp_path, tiny_model):
    model = tmp_path / "model"
    model.mkdir()
    shutil.copy(tiny_model / "tiny.caffemodel", model / "tiny.caffemodel")
    shutil.copy(tiny_model / "tiny.caffemodel", model / "deploy.prototxt")
    write_frames(tmp_path / "frames", 1)
    code = dream_main(["-i", str(tmp_path / "frames"), "-o", str(tmp_path / "out"), "-t",
                       str(model), "-m", "tiny.caffemodel", "-v", "0"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and len(lines) == 1, lines
    assert "not a text prototxt" in lines[0] and lines[0].isprintable(), lines
    assert not (tmp_path / "out").exists()
