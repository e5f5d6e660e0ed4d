"""2_dreaming_time.py's flags (the original's spellings) and its answers to bad input."""
from __future__ import annotations

import os
import shutil

import pytest
from PIL import Image

from conftest import run_dream, tree_hashes, write_frames
from dreamer.cli.dream import build_parser, config_from_args

ALL_SHORT = ["-i", "in", "-o", "out", "-it", "jpg", "--gpu", "1", "-t", "models/x/", "-m",
             "x.caffemodel", "-p", "320", "-oct", "3", "-octs", "1.3", "-itr", "7", "-j", "8",
             "-z", "1.02", "-s", "2.5", "-b", "loop", "-l", "a", "b", "-v", "2", "-gi", "g.png",
             "-sf", "3", "-ef", "9", "--seed", "5"]
ALL_LONG = ["--input", "in", "--output", "out", "--image_type", "jpg", "--gpu", "1",
            "--model_path", "models/x/", "--model_name", "x.caffemodel", "--preview", "320",
            "--octaves", "3", "--octavescale", "1.3", "--iterations", "7", "--jitter", "8",
            "--zoom", "1.02", "--stepsize", "2.5", "--blend", "loop", "--layers", "a", "b",
            "--verbose", "2", "--guide_image", "g.png", "--start_frame", "3", "--end_frame",
            "9", "--seed", "5"]


def parse(args):
    return config_from_args(build_parser().parse_args(args))


@pytest.mark.parametrize("args", [ALL_SHORT, ALL_LONG])
def test_every_flag_maps_onto_the_config(args):
    c = parse(args)
    assert (c.input, c.output, c.image_type, c.gpu) == ("in", "out", "jpg", 1)
    assert (c.model_path, c.model_name, c.preview) == ("models/x/", "x.caffemodel", 320)
    assert (c.octave_n, c.octave_scale, c.iter_n, c.jitter) == (3, 1.3, 7, 8)
    assert (c.zoom, c.step_size, c.blend, c.layers) == (1.02, 2.5, "loop", ("a", "b"))
    assert (c.verbose, c.guide_image, c.start_frame, c.end_frame, c.seed) == \
        (2, "g.png", 3, 9, 5)


def test_hyphen_spellings_of_the_original_readme():
    c = parse(["-i", "a", "-o", "b", "--guide-image", "g.jpg", "--start-frame", "4",
               "--end-frame", "6"])
    assert (c.guide_image, c.start_frame, c.end_frame) == ("g.jpg", 4, 6)


def test_defaults_are_the_original_readmes():
    c = parse(["-i", "a", "-o", "b"])
    assert (c.octave_n, c.octave_scale, c.iter_n, c.jitter, c.step_size) == (4, 1.4, 10, 32, 1.5)
    assert c.blend == "0.5" and c.layers == ("customloop",) and c.zoom == 1.0
    assert c.model_path is None  # searched: $DREAMER_MODELS, cache, ../caffe/models/
    assert c.model_name == "bvlc_googlenet.caffemodel"
    assert c.gpu is None and c.seed is None


def test_our_own_flags_map_onto_the_config():
    c = parse(["-i", "a", "-o", "b", "--overwrite", "--tile", "512", "--precision", "bf16",
               "--deterministic", "--compile"])
    assert (c.overwrite, c.tile, c.precision, c.deterministic, c.compile) == \
        (True, "512", "bf16", True, True)
    d = parse(["-i", "a", "-o", "b"])
    assert (d.overwrite, d.tile, d.precision, d.deterministic, d.compile) == \
        (False, "auto", "fp32", False, False)


def test_gpu_alone_means_device_0():
    assert parse(["-i", "a", "-o", "b", "--gpu"]).gpu == 0


# --- bad input: one line, non-zero exit, no traceback, the user's files untouched ----------

def _model_args(model):
    return ["-t", model, "-m", "tiny.caffemodel", "-l", "inception_4c/output", "-oct", "2",
            "-itr", "1", "--seed", "1"]


def _break_model(tmp_path, tiny_model, how):
    broken = tmp_path / "broken model"
    shutil.copytree(tiny_model, broken)
    how(broken / "deploy.prototxt", broken / "tiny.caffemodel")
    return broken


CASES = {
    "missing input": (lambda d, m: (["-i", d / "nope", "-o", d / "out"] + _model_args(m)),
                      "does not exist"),
    "empty input": (lambda d, m: (["-i", d / "empty", "-o", d / "out"] + _model_args(m)),
                    "no frames"),
    "unknown layer": (lambda d, m: (["-i", d / "frames", "-o", d / "out"] + _model_args(m)
                                    + ["-l", "inception_9z/output"]),
                      "unknown layer 'inception_9z/output'; valid layers: conv1/7x7_s2"),
    "missing model": (lambda d, m: ["-i", d / "frames", "-o", d / "out", "-t", d / "none/"],
                      "does not exist; point -t/--model_path at the folder"),
    "blend too big": (lambda d, m: (["-i", d / "frames", "-o", d / "out", "-b", "1.2"]
                                    + _model_args(m)), "outside [0, 1]"),
    "blend word": (lambda d, m: (["-i", d / "frames", "-o", d / "out", "-b", "often"]
                                 + _model_args(m)), "unknown blend 'often'"),
    "start after end": (lambda d, m: (["-i", d / "frames", "-o", d / "out", "-sf", "2", "-ef",
                                       "1"] + _model_args(m)), "start frame 2 is after end"),
    "frames differ": (lambda d, m: (["-i", d / "mixed sizes", "-o", d / "out"]
                                    + _model_args(m)), "all frames of a run must be one size"),
    "unreadable image": (lambda d, m: (["-i", d / "corrupt", "-o", d / "out"]
                                       + _model_args(m)), "cannot read"),
    "output is a file": (lambda d, m: (["-i", d / "frames", "-o", d / "a file" / "sub"]
                                       + _model_args(m)), "cannot create output folder"),
    "output is input": (lambda d, m: (["-i", d / "frames", "-o", d / "frames"]
                                      + _model_args(m)), "is the input folder"),
    "bad number": (lambda d, m: ["-i", d / "frames", "-o", d / "out", "-oct", "many"],
                   "-oct many: not a number"),
    "zero octave scale": (lambda d, m: (["-i", d / "frames", "-o", d / "out", "-octs", "0.5"]
                                        + _model_args(m)[:-6]), "octave scale"),
    "too many octaves": (lambda d, m: (["-i", d / "frames", "-o", d / "out"] + _model_args(m)
                                       + ["-oct", "12", "-octs", "2"]),
                         "too small for 12 octaves"),
    "no gpu": (lambda d, m: (["-i", d / "frames", "-o", d / "out", "--gpu", "7"]
                             + _model_args(m)), "--gpu 7"),
    "missing guide": (lambda d, m: (["-i", d / "frames", "-o", d / "out", "-gi", d / "no.png"]
                                    + _model_args(m)), "guide image"),
    "gap in frames": (lambda d, m: (["-i", d / "gap", "-o", d / "out"] + _model_args(m)),
                      "00000002.png is missing"),
    "non-numeric names": (lambda d, m: (["-i", d / "named", "-o", d / "out"]
                                        + _model_args(m)), "no frames named like 00000001"),
    "unknown image type": (lambda d, m: (["-i", d / "frames", "-o", d / "out", "-it", "gif"]
                                         + _model_args(m)), "invalid choice"),
    "bad tile": (lambda d, m: (["-i", d / "frames", "-o", d / "out", "--tile", "4"]
                               + _model_args(m)), "--tile 4 is too small"),
}


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad inputs")
    write_frames(d / "frames", 2)
    (d / "empty").mkdir()
    write_frames(d / "mixed sizes", 2)
    Image.new("RGB", (30, 20)).save(d / "mixed sizes" / "00000003.png")
    write_frames(d / "corrupt", 2)
    (d / "corrupt" / "00000002.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    write_frames(d / "gap", 3)
    (d / "gap" / "00000002.png").unlink()
    (d / "a file").write_text("not a folder")
    for name in ("frame_a.png", "shot-1.png", "0001.png"):
        write_frames(d / "named", 1)[0].rename(d / "named" / name)
    return d


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_gives_one_clear_line(bad_inputs, tiny_model, name):
    make_args, expected = CASES[name]
    before = tree_hashes(bad_inputs, tiny_model)
    result = run_dream(*make_args(bad_inputs, tiny_model))
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert expected in lines[0]
    assert "Traceback" not in result.stderr + result.stdout
    after = tree_hashes(bad_inputs, tiny_model)
    assert {k: v for k, v in after.items() if "/out/" not in k} == before


@pytest.mark.parametrize("damage,expected", [
    (lambda p, m: p.write_text("layer { name: "), "not a valid prototxt"),
    (lambda p, m: m.write_bytes(m.read_bytes()[:100]), "not a valid caffemodel"),
    (lambda p, m: p.write_text(p.read_text().replace('"Concat"', '"Slice"', 1)),
     "has type Slice, which is not supported"),
    (lambda p, m: p.write_text(p.read_text().replace("num_output: 4", "num_output: 5", 1)),
     "conv1/7x7_s2"),
])
def test_broken_model_files_give_one_clear_line(bad_inputs, tiny_model, tmp_path, damage,
                                                expected):
    broken = _break_model(tmp_path, tiny_model, damage)
    result = run_dream("-i", bad_inputs / "frames", "-o", tmp_path / "out",
                       *_model_args(broken))
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and expected in result.stderr


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write into read-only folders")
def test_read_only_output_folder(bad_inputs, tiny_model, tmp_path):
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o500)
    try:
        result = run_dream("-i", bad_inputs / "frames", "-o", out, *_model_args(tiny_model))
    finally:
        out.chmod(0o700)
    assert result.returncode != 0 and "not writable" in result.stderr
