"""Stage 2's answers to frames too large for memory, Ctrl-C while starting up, and input
whose old message gave the wrong advice: one line, the real problem and its fix."""
from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time

import pytest

from conftest import GOOGLENET, ROOT, write_frames
from dreamer.dream import tiles
from dreamer.cli.dream import main


@pytest.fixture(scope="module")
def ten_frames(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ten frames") / "frames"
    write_frames(folder, 10)
    return folder


def dream(capsys, frames, out, model, *extra):
    """Runs stage 2 in this process; (exit status, its stderr lines)."""
    code = main(["-i", str(frames), "-o", str(out), "-t", str(model), "-m", "tiny.caffemodel",
                 "-l", "inception_4c/output", "-itr", "1", "--seed", "1", "-v", "0",
                 *map(str, extra)])
    return code, capsys.readouterr().err.strip().splitlines()


def one_line(code, lines):
    assert code != 0 and len(lines) == 1, lines
    assert "Traceback" not in lines[0]
    return lines[0]


# --- frames too large for memory -----------------------------------------------------------

def test_frames_too_large_for_memory_even_tiled_are_refused_with_the_p_that_fits(
        capsys, tmp_path, ten_frames, tiny_model, monkeypatch):
    # 20 MB free: a 600x500 frame needs over 3 MB per float copy, tiled or not
    monkeypatch.setattr(tiles, "memory_budget", lambda device: 20_000_000)
    out = tmp_path / "out"
    line = one_line(*dream(capsys, ten_frames, out, tiny_model, "-p", 600, "-oct", 1))
    assert "frames of 600x500 (-p 600) need about" in line and "even in tiles" in line
    assert "about 20 MB is free" in line
    widest = int(line.split("use a smaller -p (-p ")[1].split()[0])
    assert 0 < widest < 600
    assert not out.exists(), "the refused run leaves no empty output folder"
    # the -p it names does fit the same budget
    assert dream(capsys, ten_frames, out, tiny_model, "-p", widest, "-oct", 1, "-ef", 1)[0] == 0


def test_frames_memory_counts_even_when_the_step_is_tiled(tiny_model):
    from dreamer.caffe.net import load_net

    net = load_net(tiny_model / "deploy.prototxt", tiny_model / "tiny.caffemodel")
    end = "inception_4c/output"
    small = tiles.dream_bytes(net, 1000, 1000, [end], "auto", 1, 1.4)
    large = tiles.dream_bytes(net, 2000, 2000, [end], "auto", 1, 1.4)
    assert 3.9 < large / small < 4.1  # whole frames scale with the area; a tile does not
    assert tiles.frames_bytes(1000, 1000, 4, 1.4) > tiles.frames_bytes(1000, 1000, 1, 1.4)
    # untiled, the step is on top of the frames
    assert tiles.dream_bytes(net, 2000, 2000, [end], None, 1, 1.4) > large
    assert tiles.step_budget(10**9, 1000, 1000, 1, 1.4) < 10**9


# --- Ctrl-C while starting up --------------------------------------------------------------

@pytest.mark.parametrize("entry", [["2_dreaming_time.py"], ["-m", "dreamer", "dream"]],
                         ids=["2_dreaming_time.py", "python -m dreamer dream"])
def test_ctrl_c_at_any_moment_of_start_up_is_one_line_and_exit_130(tmp_path, ten_frames,
                                                                   tiny_model, entry):
    for delay in (0.05, 0.2, 0.5, 1.0):
        out = tmp_path / f"out {delay}"
        child = subprocess.Popen(
            [sys.executable, *entry, "-i", ten_frames, "-o", out, "-t", tiny_model,
             "-m", "tiny.caffemodel", "-itr", "50", "-v", "0", "--seed", "1"],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(delay)
        child.send_signal(signal.SIGINT)
        _, err = child.communicate(timeout=60)
        assert child.returncode == 130, (delay, err)
        assert "Traceback" not in err, (delay, err)
        assert len(err.strip().splitlines()) == 1 and "interrupted" in err, (delay, err)


# --- advice that fits the problem ----------------------------------------------------------

@pytest.fixture(scope="module")
def fixed_size_model(tmp_path_factory, tiny_model):
    """The tiny net with a 16x16 average pool before its fully connected layer, as
    GoogLeNet's pool5 (7x7) is: the classifier takes only the declared 64x64 input."""
    folder = tmp_path_factory.mktemp("fixed size model")
    shutil.copy(tiny_model / "tiny.caffemodel", folder)
    text = (tiny_model / "deploy.prototxt").read_text()
    (folder / "deploy.prototxt").write_text(
        text.replace("global_pooling: true", "kernel_size: 16\n    stride: 1"))
    return folder


@pytest.mark.parametrize("layer", ["prob", "loss3/classifier"])
def test_a_layer_after_a_fully_connected_one_needs_the_nets_input_size(
        capsys, tmp_path, ten_frames, fixed_size_model, layer):
    line = one_line(*dream(capsys, ten_frames, tmp_path / "out", fixed_size_model,
                           "-oct", 1, "-l", layer))
    assert "fully connected" in line and "input size 64x64" in line and "48x40" in line
    assert "-l inception_5b/output" in line
    assert "octave" not in line


def test_a_square_frame_at_the_nets_size_is_told_to_use_one_octave(
        capsys, tmp_path, fixed_size_model):
    write_frames(tmp_path / "square", 1, size=(64, 64))
    line = one_line(*dream(capsys, tmp_path / "square", tmp_path / "out", fixed_size_model,
                           "-oct", 3, "-l", "prob"))
    assert "use -oct 1" in line
    assert one_line(*dream(capsys, tmp_path / "square", tmp_path / "out", fixed_size_model,
                           "-oct", 1, "-l", "prob", "-p", 32)).endswith("-p 64 -oct 1")


def test_frames_too_small_for_the_net_ask_for_a_larger_p_not_fewer_octaves(
        capsys, tmp_path, ten_frames, tiny_model):
    line = one_line(*dream(capsys, ten_frames, tmp_path / "out", tiny_model, "-p", 3,
                           "-oct", 1))
    assert "frames of 3x2 (-p 3) are too small for the net" in line
    assert "fewer octaves" not in line
    least = int(line.split("use a larger -p (-p ")[1].split()[0])
    assert dream(capsys, ten_frames, tmp_path / "out", tiny_model, "-p", least, "-oct", 1,
                 "-ef", 1)[0] == 0
    assert dream(capsys, ten_frames, tmp_path / "less", tiny_model, "-p", least - 1, "-oct", 1,
                 "-ef", 1)[0] != 0


def test_a_start_frame_past_the_last_frame_says_so(capsys, tmp_path, ten_frames, tiny_model):
    line = one_line(*dream(capsys, ten_frames, tmp_path / "out", tiny_model, "-sf", 50))
    assert "start frame 50 is past the last frame (10)" in line and "swap" not in line
    line = one_line(*dream(capsys, ten_frames, tmp_path / "out", tiny_model, "-ef", 50))
    assert "end frame 50 is past the last frame (10)" in line


def test_a_guide_folder_without_images_says_what_it_needs(capsys, tmp_path, ten_frames,
                                                         tiny_model):
    empty = tmp_path / "empty guide"
    empty.mkdir()
    (empty / "notes.txt").write_text("x")
    line = one_line(*dream(capsys, ten_frames, tmp_path / "out", tiny_model, "-gi", empty))
    assert "holds no png or jpg images" in line and "a video" in line


@pytest.mark.parametrize("layer,old,new,needed", [
    ("conv1/7x7_s2", 4, 40, "(40, 3, 3, 3)"),        # fewer values than asked for
    ("conv1/7x7_s2", 4, 5, "(5, 3, 3, 3)"),          # a count that does not divide
    ("inception_4c/3x3", 4, 2, "(2, 8, 3, 3)"),      # divides, wrong input channels
])
def test_a_weight_shape_mismatch_names_the_shape_the_prototxt_needs(
        capsys, tmp_path, ten_frames, tiny_model, layer, old, new, needed):
    broken = tmp_path / "model"
    shutil.copytree(tiny_model, broken)
    text = (broken / "deploy.prototxt").read_text()
    at = text.index(f'name: "{layer}"')
    at = text.index(f"num_output: {old}", at)
    (broken / "deploy.prototxt").write_text(text[:at] + f"num_output: {new}"
                                            + text[at + len(f"num_output: {old}"):])
    line = one_line(*dream(capsys, ten_frames, tmp_path / "out", broken))
    assert f"layer '{layer}'" in line and f"prototxt needs {needed}" in line
    found = f"({old}, 3, 3, 3)" if layer == "conv1/7x7_s2" else f"({old}, 8, 3, 3)"
    assert f"have shape {found}" in line


# --- the output folder of a refused run ----------------------------------------------------

def test_a_refused_run_removes_only_the_empty_folders_it_created(capsys, tmp_path,
                                                                 ten_frames, tiny_model):
    bad = ("-l", "inception_9z/output")
    one_line(*dream(capsys, ten_frames, tmp_path / "new" / "deeper", tiny_model, *bad))
    assert not (tmp_path / "new").exists()
    (tmp_path / "was empty").mkdir()
    one_line(*dream(capsys, ten_frames, tmp_path / "was empty", tiny_model, *bad))
    assert (tmp_path / "was empty").is_dir()
    (tmp_path / "parent").mkdir()
    one_line(*dream(capsys, ten_frames, tmp_path / "parent" / "out", tiny_model, *bad))
    assert (tmp_path / "parent").is_dir() and not (tmp_path / "parent" / "out").exists()


@pytest.mark.slow
def test_googlenet_messages_by_hand_cases(tmp_path):
    """The cases of the issue, with the real GoogLeNet at 400x266."""
    if not (GOOGLENET / "bvlc_googlenet.caffemodel").is_file():
        pytest.skip(f"real GoogLeNet not found at {GOOGLENET}")
    from conftest import run_dream

    write_frames(tmp_path / "frames", 2, size=(400, 266))
    model = ["-t", GOOGLENET, "-m", "bvlc_googlenet.caffemodel", "-itr", "1"]
    cases = [(["-l", "prob", "-oct", "1"], "after the fully connected layer loss3/classifier"),
             (["-l", "loss3/classifier", "-oct", "1"], "input size 224x224, not on 400x266"),
             (["-p", "3", "-oct", "1"], "too small for the net"),
             (["-p", "100000"], "use a smaller -p")]
    for extra, expected in cases:
        result = run_dream("-i", tmp_path / "frames", "-o", tmp_path / "out", *model, *extra)
        lines = result.stderr.strip().splitlines()
        assert result.returncode != 0 and len(lines) == 1, (extra, result.stderr)
        assert expected in lines[0] and "fewer octaves" not in lines[0], (extra, lines)
        assert not (tmp_path / "out").exists()
