"""Whole stage-2 runs on a tiny model: frames, chaining, schedules, manifest, options."""
from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import run_dream, tree_hashes, write_frames
from dreamer.dream import schedule, transforms
from dreamer.caffe.net import load_net
from dreamer.config import DreamConfig
from dreamer.run.manifest import MANIFEST_NAME
from dreamer.caffe.models import sha1_file
from dreamer.run.progress import Progress
from dreamer.dream.render import deepdream
from dreamer.run.sequence import dream_sequence

FAST = dict(octave_n=2, iter_n=2, octave_scale=1.4, model_name="tiny.caffemodel")


def run(tmp_path, tiny_model, frames="frames", out="out", **kw):
    cfg = DreamConfig(input=str(tmp_path / frames), output=str(tmp_path / out),
                      model_path=str(tiny_model), **{**FAST, **kw})
    return dream_sequence(cfg, argv=["test"], progress=Progress(1, 0))


def load(path):
    return np.asarray(Image.open(path))


@pytest.fixture
def frames(tmp_path):
    return write_frames(tmp_path / "frames", 4)


def test_chain_equals_the_published_algorithm(tmp_path, tiny_model, frames):
    """Frame k's input is (1-b)*rint(dream k-1) + b*raw k, dreamed with layer (k-1)%n."""
    layers = ("inception_4c/output", "inception_3a/output")
    run(tmp_path, tiny_model, layers=layers, blend="0.7", seed=11)
    net = load_net(tiny_model / "deploy.prototxt", tiny_model / "tiny.caffemodel")
    mean = torch.tensor([104.0, 116.0, 122.0])
    state = None
    for k in range(1, 5):
        raw = torch.from_numpy(load(frames[k - 1]).astype(np.float32)).permute(2, 0, 1)
        img = raw if state is None else 0.3 * state + 0.7 * raw
        out = deepdream(net, img, layers[(k - 1) % 2], schedule.jitter_offsets(11, k, 32), mean,
                        iter_n=2, octave_n=2, octave_scale=1.4)
        state = out.clamp(0, 255).round()
        want = state.permute(1, 2, 0).to(torch.uint8).numpy()
        assert np.array_equal(load(tmp_path / "out" / f"{k:08d}.png"), want), k


def test_each_frame_is_decoded_once_while_the_one_before_dreams(tmp_path, tiny_model, frames,
                                                                monkeypatch):
    import threading

    from dreamer.run import frame as frame_module

    reads, decode = [], frame_module.read_frame

    def read_frame(path, size=None):
        reads.append((int(path.stem), threading.current_thread() is threading.main_thread()))
        return decode(path, size)

    monkeypatch.setattr(frame_module, "read_frame", read_frame)
    run(tmp_path, tiny_model, start_frame=2)
    # frame 2 on the main thread (nothing before it); 3 and 4 by the reader thread
    assert sorted(reads) == [(2, True), (3, False), (4, False)]


def test_blend_one_means_every_frame_dreams_on_its_raw_frame(tmp_path, tiny_model, frames):
    run(tmp_path, tiny_model, out="all", blend="1", seed=3)
    run(tmp_path, tiny_model, out="third", blend="1", seed=3, start_frame=3, end_frame=3)
    assert np.array_equal(load(tmp_path / "all/00000003.png"),
                          load(tmp_path / "third/00000003.png"))
    assert sorted(p.name for p in (tmp_path / "third").glob("0*")) == ["00000003.png"]


def test_same_seed_same_frames_other_seed_other_frames(tmp_path, tiny_model, frames):
    run(tmp_path, tiny_model, out="a", seed=5, end_frame=2)
    run(tmp_path, tiny_model, out="b", seed=5, end_frame=2)
    run(tmp_path, tiny_model, out="c", seed=6, end_frame=2)
    a, b, c = (load(tmp_path / d / "00000002.png") for d in "abc")
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_manifest_records_parameters_models_and_each_frame(tmp_path, tiny_model, frames):
    result = run(tmp_path, tiny_model, blend="loop", layers=("inception_4c/output",
                                                              "inception_5b/output"))
    m = json.loads((tmp_path / "out" / MANIFEST_NAME).read_text())
    (r,) = m["runs"]
    assert r["parameters"]["seed"] == result.seed
    assert r["parameters"]["octave_n"] == 2 and r["parameters"]["blend"] == "loop"
    assert r["model"]["caffemodel"]["sha1"] == sha1_file(tiny_model / "tiny.caffemodel")
    assert r["model"]["prototxt"]["sha1"] == sha1_file(tiny_model / "deploy.prototxt")
    assert r["versions"]["torch"] == torch.__version__
    assert r["frames"] == {"first": 1, "last": 4, "image_type": "png", "width": 48,
                           "height": 40}
    assert r["status"] == "complete" and r["description"] == result.description
    assert [m["frames"][f"{k:08d}"]["blend"] for k in range(1, 5)] == [None, 0.5, 0.6, 0.7]
    assert [m["frames"][f"{k:08d}"]["layer"] for k in range(1, 5)] == \
        ["inception_4c/output", "inception_5b/output"] * 2
    assert f"seed {result.seed}" in result.description


def test_jpg_frames_stay_jpg_at_high_quality_and_inputs_are_untouched(tmp_path, tiny_model):
    write_frames(tmp_path / "jf", 2, image_type="jpg")
    before = tree_hashes(tmp_path / "jf")
    run(tmp_path, tiny_model, frames="jf", seed=1)
    assert tree_hashes(tmp_path / "jf") == before
    out = tmp_path / "out" / "00000002.jpg"
    with Image.open(out) as img:
        assert img.format == "JPEG"
        # libjpeg scales its base luminance table (largest entry 121) by
        # (200 - 2 * quality) / 100: quality 95 or better keeps every entry <= 12
        assert max(img.quantization[0]) <= 12
    assert not list((tmp_path / "out").glob(".*tmp"))


def test_preview_resizes_to_width_keeping_aspect_even_height(tmp_path, tiny_model):
    write_frames(tmp_path / "frames", 1, size=(60, 34))
    run(tmp_path, tiny_model, preview=32, seed=1)
    assert load(tmp_path / "out/00000001.png").shape == (18, 32, 3)


def test_zoom_falls_into_the_dream(tmp_path, tiny_model, frames):
    run(tmp_path, tiny_model, out="flat", blend="0", seed=2, end_frame=2)
    run(tmp_path, tiny_model, out="zoom", blend="0", zoom=1.2, seed=2, end_frame=2)
    one = load(tmp_path / "flat/00000001.png").astype(np.float32)
    assert np.array_equal(one, load(tmp_path / "zoom/00000001.png"))
    assert not np.array_equal(load(tmp_path / "flat/00000002.png"),
                              load(tmp_path / "zoom/00000002.png"))
    # with blend 0 frame 2 dreams on the zoomed frame 1: its centre should look alike
    zoomed = transforms.zoom(torch.from_numpy(one).permute(2, 0, 1), 1.2).permute(1, 2, 0)
    two = load(tmp_path / "zoom/00000002.png").astype(np.float32)
    flat_two = load(tmp_path / "flat/00000002.png").astype(np.float32)
    assert np.abs(two - zoomed.numpy()).mean() < np.abs(flat_two - zoomed.numpy()).mean()


@pytest.mark.parametrize("mode,size", [("RGBA", (300, 200)), ("L", (50, 40)),
                                       ("RGB", (100, 500))])
def test_guide_images_of_any_size_and_mode(tmp_path, tiny_model, frames, mode, size):
    guide = tmp_path / "guide.png"
    Image.new(mode, size, color=128 if mode == "L" else (200, 50, 10, 255)[: len(mode)]) \
        .save(guide)
    run(tmp_path, tiny_model, out="guided", guide_image=str(guide), seed=4, end_frame=1)
    run(tmp_path, tiny_model, out="plain", seed=4, end_frame=1)
    assert not np.array_equal(load(tmp_path / "guided/00000001.png"),
                              load(tmp_path / "plain/00000001.png"))


def test_guide_features_are_computed_once_per_layer(tmp_path, tiny_model, frames, monkeypatch):
    from dreamer.dream import guides

    calls = []
    original = guides.features_of
    monkeypatch.setattr(guides, "features_of",
                        lambda *a, **k: calls.append(a[2]) or original(*a, **k))
    guide = tmp_path / "g.png"
    Image.new("RGB", (60, 60), (10, 200, 30)).save(guide)
    layers = ("inception_4c/output", "inception_3a/output")
    run(tmp_path, tiny_model, guide_image=str(guide), seed=4, layers=layers)
    assert sorted(calls) == sorted(layers)


def test_verbose_3_writes_octave_previews_and_0_is_silent(tmp_path, tiny_model, frames):
    r = run_dream("-i", tmp_path / "frames", "-o", tmp_path / "v3", "-t", tiny_model, "-m",
                  "tiny.caffemodel", "-oct", "2", "-itr", "1", "-ef", "2", "-v", "3",
                  "--seed", "1", "-l", "inception_4c/output")
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in (tmp_path / "v3/previews").iterdir()) == [
        "00000001_octave1.jpg", "00000001_octave2.jpg", "00000002_octave1.jpg",
        "00000002_octave2.jpg"]
    assert "octave 2/2" in r.stderr and "Parameters for your video description" in r.stdout
    q = run_dream("-i", tmp_path / "frames", "-o", tmp_path / "v0", "-t", tiny_model, "-m",
                  "tiny.caffemodel", "-oct", "2", "-itr", "1", "-ef", "2", "-v", "0",
                  "-l", "inception_4c/output")
    assert q.returncode == 0 and q.stdout == "" and q.stderr == ""


def test_drawn_seed_is_reported_and_repeats_the_run(tmp_path, tiny_model, frames):
    args = ["-i", tmp_path / "frames", "-t", tiny_model, "-m", "tiny.caffemodel", "-oct", "2",
            "-itr", "1", "-ef", "2", "-l", "inception_4c/output"]
    r = run_dream(*args, "-o", tmp_path / "drawn")
    seed = int(r.stderr.split("--seed ")[1].split(")")[0])
    run_dream(*args, "-o", tmp_path / "again", "--seed", seed)
    assert np.array_equal(load(tmp_path / "drawn/00000002.png"),
                          load(tmp_path / "again/00000002.png"))


def test_progress_eta_uses_recent_frames():
    p = Progress(10, verbose=1, stream=io.StringIO())
    p.frame_done(1, 30.0)  # warm-up frame
    for k in range(2, 12):
        p.frame_done(k, 2.0) if p.done < 10 else None
    assert p.done == 10
    p2 = Progress(20, verbose=1, stream=io.StringIO())
    for k in range(1, 12):
        p2.frame_done(k, 30.0 if k == 1 else 2.0)
    assert p2.eta_seconds() == pytest.approx(2.0 * 9)
    assert "11/20 frames" in p2.stream.getvalue().splitlines()[-1]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_matches_cpu(tmp_path, tiny_model, frames):
    run(tmp_path, tiny_model, out="cpu", seed=9, end_frame=1)
    run(tmp_path, tiny_model, out="gpu", seed=9, end_frame=1, gpu=0)
    a = load(tmp_path / "cpu/00000001.png").astype(float)
    b = load(tmp_path / "gpu/00000001.png").astype(float)
    assert np.abs(a - b).mean() < 2.0



def test_tiled_run_matches_untiled_and_auto_tiles_when_memory_is_short(tmp_path, tiny_model,
                                                                        monkeypatch):
    import dreamer.dream.tiles as tiles

    write_frames(tmp_path / "big", 2, size=(160, 120))
    run(tmp_path, tiny_model, frames="big", out="whole", seed=3, tile="off")
    run(tmp_path, tiny_model, frames="big", out="tiled", seed=3, tile="64")
    whole = load(tmp_path / "whole/00000002.png").astype(float)
    tiled = load(tmp_path / "tiled/00000002.png").astype(float)
    assert np.abs(whole - tiled).mean() < 0.5
    calls = []
    original = tiles.tiled_gradient
    monkeypatch.setattr(tiles, "tiled_gradient", lambda *a, **k: calls.append(1) or
                        original(*a, **k))
    # 800 kB left for the steps once the whole frames are held: too little untiled
    held = tiles.frames_bytes(120, 160, FAST["octave_n"], 1.4) - 2 * 3 * 4 * 120 * 160
    monkeypatch.setattr(tiles, "memory_budget", lambda device: held + 800_000)
    run(tmp_path, tiny_model, frames="big", out="auto", seed=3)
    assert calls, "a step that does not fit the budget is tiled"
    auto = load(tmp_path / "auto/00000002.png").astype(float)
    assert np.abs(whole - auto).mean() < 0.5


@pytest.mark.parametrize("tile,match", [("8", "too small"), ("big", "not a size")])
def test_bad_tile_sizes_are_refused(tmp_path, tiny_model, frames, tile, match):
    from dreamer.errors import DreamerError

    with pytest.raises(DreamerError, match=match):
        run(tmp_path, tiny_model, tile=tile)


def test_an_error_met_mid_run_says_which_frames_are_complete(tmp_path, tiny_model, frames):
    from dreamer.errors import DreamerError
    from dreamer.run.manifest import Manifest

    data = frames[2].read_bytes()
    frames[2].write_bytes(data[: len(data) // 2])  # frame 3: its header, half its pixels
    with pytest.raises(DreamerError) as e:
        run(tmp_path, tiny_model, seed=2)
    text = str(e.value)
    assert text.startswith("frame 3: cannot read image") and "\n" not in text
    assert "frames 1..2 are complete" in text and "run the same command again" in text
    assert Manifest(tmp_path / "out").data["runs"][-1]["status"].startswith("failed at frame 3")


def test_with_flow_each_raw_frame_is_decoded_once(tiny_model, tmp_path, monkeypatch):
    """The dream and the flow thread share one decode of each raw frame (they decoded it
    twice, and the first frame of a range three times)."""
    from dreamer.run import frame as frame_module
    from dreamer.run.sequence import dream_sequence

    decodes = []
    real = frame_module.read_frame
    monkeypatch.setattr(frame_module, "read_frame", lambda p, s=None: decodes.append(p.name)
                        or real(p, s))
    write_frames(tmp_path / "in", 6)
    config = DreamConfig(str(tmp_path / "in"), str(tmp_path / "out"), model_path=str(tiny_model),
                         model_name="tiny.caffemodel", iter_n=1, octave_n=1, flow=True,
                         verbose=0, seed=1)
    dream_sequence(config)
    assert sorted(decodes) == [f"{k:08d}.png" for k in range(1, 7)]
