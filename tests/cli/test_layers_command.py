"""`dreamvideo layers`: the layers a dream can end at (blob shape, receptive field) and the
sheet of one image dreamed at a spread of them, on the tiny test net."""
from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import write_frames
from dreamer.caffe.net import load_net
from dreamer.cli.layers import main as layers_main
from dreamer.config import BGR_MEAN
from dreamer.dream import schedule
from dreamer.dream.render import deepdream
from dreamer.dream.sheet import LABEL, layer_rows, spread


@pytest.fixture(scope="module")
def net(tiny_model):
    return load_net(tiny_model / "deploy.prototxt", tiny_model / "tiny.caffemodel")


def test_the_rows_are_the_net_s_own_blobs_and_fields(net):
    rows = {r.name: r for r in layer_rows(net, 40, 48)}
    x = torch.zeros(1, 3, 40, 48)
    for name in ("conv1/7x7_s2", "pool1/3x3_s2", "inception_3a/output", "inception_4c/output"):
        assert rows[name].shape == tuple(net(x, end=name).shape[1:])
    conv1 = rows["conv1/7x7_s2"]
    assert (conv1.field, conv1.stride) == (net.layers[0].weight.shape[-1], 2)
    assert rows["loss3/classifier"].field is None  # fully connected: the whole image
    assert "prob" not in rows  # Softmax is no place to end a dream


def test_layers_that_cannot_take_the_size_say_so(net):
    rows = layer_rows(net, 2, 2)  # conv1 takes it, pool1 not, nor anything after
    pool1 = [r.name for r in rows].index("pool1/3x3_s2")
    assert all(r.fits for r in rows[:pool1]) and not any(r.fits for r in rows[pool1:])


def test_the_spread_goes_over_the_depth_in_order_and_keeps_the_usual_layer(net):
    rows = layer_rows(net, 40, 48)
    picked = spread(rows, 3)
    order = [r.name for r in rows]
    assert len(picked) == 3 and picked == sorted(picked, key=order.index)
    assert "inception_4c/output" in spread(rows, 3, keep=("inception_4c/output",))
    assert len(spread(rows, 200)) < 200  # never more than there are blocks


def test_the_listing_marks_the_sheet_s_layers(tiny_model, tmp_path, capsys):
    assert layers_main(["-t", str(tiny_model), "-m", "tiny.caffemodel", "--size", "48x40",
                        "--count", "3"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("layers of tiny model") and "at 48x40" in out[0]
    marked = [line.split()[1] for line in out[1:] if line.startswith("*")]
    assert len(marked) == 3
    conv1 = next(line for line in out if " conv1/7x7_s2 " in line)
    assert re.search(r"Convolution +\d+ x 20 x 24 +field \d+ px, stride 2", conv1), conv1


def test_the_sheet_holds_the_image_and_each_layer_s_dream_labelled(tiny_model, tmp_path,
                                                                     net, capsys):
    frame = write_frames(tmp_path / "frames", 1, size=(48, 40))[0]
    sheet = tmp_path / "sheet.png"
    layers = ["inception_3a/output", "inception_4c/output"]
    assert layers_main(["-t", str(tiny_model), "-m", "tiny.caffemodel", str(frame), "-p", "48",
                        "--sheet", str(sheet), "--layers", *layers, "-itr", "2", "-oct", "2",
                        "--seed", "5"]) == 0
    got = np.asarray(Image.open(sheet))
    assert got.shape == (40 + LABEL, 3 * 48, 3)  # the image and two layers in a row
    image = np.asarray(Image.open(frame).convert("RGB"))
    assert np.array_equal(got[:40, :48], image)
    for i, layer in enumerate(layers, 1):  # each tile is the dream stage 2 would make
        dreamed = deepdream(net, torch.from_numpy(image.astype(np.float32)).permute(2, 0, 1),
                            layer, schedule.jitter_offsets(5, 1, 32),
                            torch.tensor(BGR_MEAN), iter_n=2, octave_n=2)
        want = np.rint(dreamed.clamp(0, 255).permute(1, 2, 0).numpy()).astype(np.uint8)
        assert np.array_equal(got[:40, 48 * i:48 * (i + 1)], want), layer
        assert not np.array_equal(want, image)
    assert "wrote" in capsys.readouterr().err


@pytest.mark.parametrize("args, message", [
    (["--size", "big"], r"--size big: write WIDTHxHEIGHT"),
    (["--layers", "nope", "--size", "48x40"], r"unknown layer 'nope'"),
    (["no_such_model"], r"'no_such_model' is neither a model from `dreamvideo models list`"),
    (["--count", "0"], r"--count 0: give 1 to 200"),
])
def test_bad_input_is_one_line(tiny_model, capsys, args, message):
    assert layers_main(["-t", str(tiny_model), "-m", "tiny.caffemodel", *args]) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and re.search(message, err), err


def test_an_existing_sheet_is_never_replaced_unasked(tiny_model, tmp_path, capsys):
    frame = write_frames(tmp_path / "frames", 1, size=(48, 40))[0]
    sheet = tmp_path / "sheet.png"
    sheet.write_bytes(b"mine")
    args = ["-t", str(tiny_model), "-m", "tiny.caffemodel", str(frame), "--sheet", str(sheet),
            "--layers", "inception_3a/output", "-itr", "1", "-oct", "1", "-p", "48"]
    assert layers_main(args) != 0
    assert "already exists; name another file, or add --overwrite" in capsys.readouterr().err
    assert sheet.read_bytes() == b"mine"
    assert layers_main([*args, "--overwrite"]) == 0
    assert Image.open(sheet).size == (96, 40 + LABEL)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frames", "sheet.png"]


def test_a_model_whose_weights_are_not_here_lists_and_sheets_on_random_weights(tiny_model,
                                                                               tmp_path, capsys):
    """Only the deploy file: the listing is the real net's, the sheet dreams on random
    weights (issue 23: a sheet for ResNet-50 with random weights)."""
    import shutil

    folder = tmp_path / "deploy only"
    folder.mkdir()
    shutil.copy(tiny_model / "deploy.prototxt", folder / "Tiny-deploy.prototxt")
    frame = write_frames(tmp_path / "frames", 1, size=(48, 40))[0]
    sheet = tmp_path / "sheet.png"
    assert layers_main([str(folder), str(frame), "--random-weights", "-p", "48", "--sheet",
                        str(sheet), "--layers", "inception_3a/output", "-itr", "1",
                        "-oct", "1"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("layers of deploy only (Tiny-deploy.prototxt) at 48x40")
    assert Image.open(sheet).size == (96, 40 + LABEL)
    assert layers_main([str(folder), "--size", "48x40"]) != 0  # without it: no weights


def test_a_residual_net_s_spread_takes_its_blocks_sums():
    """ResNet names no block with a '/': its blocks end in their Eltwise sums."""
    from dreamer.dream.sheet import LayerRow

    rows = [LayerRow("conv1", "Convolution", (1, 8, 8), 7, 2),
            LayerRow("pool1", "Pooling", (1, 4, 4), 11, 4)]
    for block in ("res2a", "res2b", "res3a", "res3b"):
        rows += [LayerRow(f"{block}_branch2a", "Convolution", (1, 4, 4), 19, 4),
                 LayerRow(f"{block}_branch2b", "Convolution", (1, 4, 4), 27, 4),
                 LayerRow(block, "Eltwise", (1, 4, 4), 27, 4),
                 LayerRow(f"{block}_relu", "ReLU", (1, 4, 4), 27, 4)]
    assert spread(rows, 11) == ["conv1", "pool1", "res2a", "res2b", "res3a", "res3b"]
    assert spread(rows, 3) == ["conv1", "res2a", "res3b"]  # indices 0, 2.5 -> 2, 5
