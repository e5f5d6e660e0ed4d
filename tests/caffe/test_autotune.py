"""The autotuner (dreamer/caffe/autotune.py): the faster of the compiled kernels and
PyTorch's op per layer, shape and direction, kept on disk and in the manifest."""
from __future__ import annotations

import dataclasses
import json
import time

import pytest
import torch

from conftest import write_frames
from dreamer.caffe import autotune
from dreamer.caffe.net import load_net
from dreamer.config import DreamConfig
from dreamer.errors import DreamerError
from dreamer.run.manifest import Manifest
from dreamer.run.sequence import dream_sequence


@pytest.fixture(autouse=True)
def fresh(monkeypatch, tmp_path):
    """Each test: mode auto, its own disk cache, no choices in memory."""
    monkeypatch.setenv("DREAMER_NATIVE", "auto")
    monkeypatch.setenv("DREAMER_TUNE_CACHE", str(tmp_path / "cache"))
    autotune.reset()
    yield
    autotune.reset()


def slow(seconds, value):
    calls = []

    def fn():
        calls.append(1)
        time.sleep(seconds)
        return value
    fn.calls = calls
    return fn


@pytest.mark.parametrize("value, mode", [("0", "off"), ("1", "on"), ("auto", "auto"),
                                         ("", "auto"), (" AUTO ", "auto")])
def test_mode_is_read_from_the_environment(monkeypatch, value, mode):
    monkeypatch.setenv("DREAMER_NATIVE", value)
    assert autotune.mode() == mode


def test_a_bad_mode_is_one_line_naming_the_values(monkeypatch):
    monkeypatch.setenv("DREAMER_NATIVE", "yes")
    with pytest.raises(DreamerError, match="use auto .* 1 .* or 0"):
        autotune.mode()


@pytest.mark.parametrize("native_s, torch_s, winner", [(0.02, 0.0, "torch"),
                                                       (0.0, 0.02, "native")])
def test_the_faster_wins_once_and_is_kept(monkeypatch, native_s, torch_s, winner):
    monkeypatch.setattr(autotune, "CLEAR", float("inf"))  # every round, for the count
    fast_native, fast_torch = slow(native_s, "N"), slow(torch_s, "T")
    k = autotune.key("layer", "conv", "forward", (1, 2, 3, 4))
    choice, result = autotune.decide(k, fast_native, fast_torch)
    assert choice == winner and result == winner[0].upper()
    timed = len(fast_native.calls), len(fast_torch.calls)
    # each timed once and then dropped, the winner once more for the result
    rounds = autotune.ROUNDS + 1
    assert timed == ((rounds + 1, rounds) if winner == "native" else (rounds, rounds + 1))
    assert autotune.decide(k, fast_native, fast_torch) == (winner, winner[0].upper())
    runs = [len(fast_native.calls) - timed[0], len(fast_torch.calls) - timed[1]]
    assert runs == ([1, 0] if winner == "native" else [0, 1])  # no second timing
    assert autotune.used() == {k: winner}


def test_a_clear_winner_is_timed_one_round_only():
    n, t = slow(0.03, "N"), slow(0.0, "T")
    assert autotune.decide("k", n, t) == ("torch", "T")
    assert (len(n.calls), len(t.calls)) == (2, 3)  # warm-up, one round, the result


def test_the_modes_on_and_off_never_time(monkeypatch):
    n, t = slow(0, "N"), slow(0, "T")
    monkeypatch.setenv("DREAMER_NATIVE", "1")
    assert autotune.decide("k", n, t) == ("native", "N")
    monkeypatch.setenv("DREAMER_NATIVE", "0")
    assert autotune.decide("k", n, t) == ("torch", "T")
    assert (len(n.calls), len(t.calls)) == (1, 1)


def test_choices_are_cached_on_disk_and_adopted_choices_win(tmp_path):
    k = autotune.key("layer", "maxpool", "backward", (1, 8, 5, 5))
    autotune.decide(k, slow(0.0, "N"), slow(0.02, "T"))
    autotune.save()
    path = autotune.cache_path()
    assert path.parent == tmp_path / "cache" and f"{torch.get_num_threads()}threads" in path.name
    assert json.loads(path.read_text())["choices"] == {k: "native"}
    autotune.reset()  # a new run: the cache makes the choice, nothing is timed
    n, t = slow(0.0, "N"), slow(0.0, "T")
    assert autotune.decide(k, n, t) == ("native", "N") and len(t.calls) == 0
    autotune.reset()  # a resumed run whose manifest says otherwise
    autotune.adopt({k: "torch"})
    assert autotune.decide(k, n, t) == ("torch", "T")


def test_a_choice_another_run_made_meanwhile_is_taken_not_timed():
    autotune.decide("other", slow(0, 1), slow(0.02, 2))  # this run has read the cache
    path = autotune.cache_path()
    data = json.loads(path.read_text())
    data["choices"]["k"] = "torch"  # another run, timing k first, found PyTorch faster
    path.write_text(json.dumps(data))
    n, t = slow(0.0, "N"), slow(0.02, "T")
    assert autotune.decide("k", n, t) == ("torch", "T") and len(n.calls) == 0
    autotune.decide("new", slow(0, 1), slow(0.02, 2))  # written at once, k kept
    assert json.loads(path.read_text())["choices"] == {"other": "native", "k": "torch",
                                                       "new": "native"}


def test_an_unreadable_cache_means_timing_again(tmp_path):
    path = autotune.cache_path()
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    assert autotune.decide("k", slow(0.02, "N"), slow(0.0, "T")) == ("torch", "T")


@pytest.mark.parametrize("damage", [
    "[" * 100_000 + "]" * 100_000,                      # RecursionError in json
    '{"choices": ' + "[" * 100_000,
    '{"choices": ["native"]}', '{"choices": {"k": ["native"]}}', "[]", "null", "7",
    b"\xff\xfe\x00 not text",                        # UnicodeDecodeError
    b"",                                                # empty (a crash while writing)
    '{"choices": {"k": "native"}, "pad": "' + "x" * 2**21 + '"}',   # too large to be ours
])
def test_a_damaged_cache_is_timed_again_and_rewritten_never_a_traceback(damage):
    path = autotune.cache_path()
    path.parent.mkdir(parents=True)
    if isinstance(damage, str):
        path.write_text(damage)
    else:
        path.write_bytes(damage)
    assert autotune.cached() == {}
    assert autotune.decide("k", slow(0.02, "N"), slow(0.0, "T")) == ("torch", "T")
    assert json.loads(path.read_text())["choices"] == {"k": "torch"}  # repaired


def test_a_cache_that_cannot_be_written_leaves_no_temporary_file():
    """The cache file's place is taken by a folder (a read-only folder, a full disk: the
    same failure, and tests run as root, for whom no folder is read-only)."""
    path = autotune.cache_path()
    (path / "inside").mkdir(parents=True)  # os.replace cannot put a file there
    assert autotune.decide("k", slow(0.02, "N"), slow(0.0, "T")) == ("torch", "T")
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]
    assert autotune.decide("k", slow(0, "N"), slow(0, "T")) == ("torch", "T")  # still known


def test_a_full_disk_leaves_no_temporary_file(monkeypatch):
    def full(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(autotune.os, "replace", full)
    assert autotune.decide("k", slow(0.02, "N"), slow(0.0, "T")) == ("torch", "T")
    assert list(autotune.cache_path().parent.iterdir()) == []


def test_take_used_gives_each_new_choice_once():
    autotune.adopt({"a": "native", "b": "torch"})
    autotune.decide("a", slow(0, 1), slow(0, 2))
    assert autotune.take_used() == {"a": "native"}
    autotune.decide("a", slow(0, 1), slow(0, 2))
    autotune.decide("b", slow(0, 1), slow(0, 2))
    assert autotune.take_used() == {"b": "torch"}


def _image_gradient(net, x, end):
    x = x.clone().requires_grad_()
    y = net(x, end=end)
    y.backward(y.detach())
    return y.detach(), x.grad


@pytest.mark.parametrize("choice", ["native", "torch"])
def test_each_choice_runs_what_it_names(tiny_model, monkeypatch, kernels, choice):
    """Every key of the tiny net forced one way gives the blob and image gradient of
    that mode, bit for bit: the choices reach every tuned layer, both directions."""
    net = load_net(tiny_model / "deploy.prototxt", tiny_model / "tiny.caffemodel")
    x = torch.rand(1, 3, 64, 80).contiguous(memory_format=torch.channels_last) * 255
    end = "inception_4c/output"
    _image_gradient(net, x, end)  # times every key once
    keys = autotune.used()
    ops = {k.split("|")[1] + "|" + k.split("|")[2] for k in keys}
    assert ops == {"conv|forward", "conv|backward", "maxpool|forward", "maxpool|backward",
                   "lrn|forward+backward"}
    autotune.reset()
    autotune.adopt(dict.fromkeys(keys, choice))
    got = _image_gradient(net, x, end)
    assert set(autotune.used().values()) == {choice}
    monkeypatch.setenv("DREAMER_NATIVE", "1" if choice == "native" else "0")
    want = _image_gradient(net, x, end)
    for a, b in zip(got, want):
        assert torch.equal(a, b)


def test_a_run_records_its_choices_and_a_resumed_run_adopts_them(tiny_model, tmp_path,
                                                                 kernels):
    frames = tmp_path / "frames"
    write_frames(frames, 4, size=(64, 48))
    config = DreamConfig(input=str(frames), output=str(tmp_path / "out"),
                         model_path=str(tiny_model), model_name="tiny.caffemodel",
                         layers=("inception_4c/output",), octave_n=2, iter_n=2, seed=5,
                         verbose=0, end_frame=2)
    dream_sequence(config)
    manifest = Manifest(tmp_path / "out")
    recorded = manifest.kernel_choices()
    assert recorded and set(recorded.values()) <= {"native", "torch"}
    assert "kernels" in manifest.frames[1] and "kernels" not in manifest.frames[2]
    assert manifest.run(0)["kernels"]["mode"] == "auto"
    # Another machine's cache says the opposite everywhere; the manifest wins.
    autotune.reset()
    flipped = {k: "torch" if v == "native" else "native" for k, v in recorded.items()}
    autotune.adopt(flipped)
    config = dataclasses.replace(config, end_frame=4)
    dream_sequence(config)
    assert autotune.used() == recorded
