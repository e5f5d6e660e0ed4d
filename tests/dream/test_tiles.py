"""Tiled dreaming on the tiny net: the tiled gradient is the untiled one (exact where the
rim covers the receptive field), dreams match, no seams, memory estimates scale."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dreamer.dream import objectives, tiles
from dreamer.caffe.net import load_net
from dreamer.dream.render import deepdream, make_step
from tiny_caffe import make_tiny_model

MEAN = torch.tensor([104.0, 116.0, 122.0])
END = "inception_4c/output"  # tiny net: receptive field 23 px, stride 4


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    return load_net(*make_tiny_model(tmp_path_factory.mktemp("tiles")))


def _img(h=120, w=160, seed=1):
    return torch.rand(3, h, w, generator=torch.Generator().manual_seed(seed)) * 255 - 120


def _grad(net, x, end=END, objective=objectives.l2):
    x = x.clone().requires_grad_(True)
    return torch.autograd.grad(objective(net(x[None], end=end)), x)[0]


def _cut_lines(size, tile):
    return tiles._cuts(size, tile, 4)[1:-1]


def test_cuts_are_on_the_grid_and_at_most_a_tile():
    for size in (1, 15, 64, 65, 100, 161, 1080):
        for tile in (4, 16, 64, 100):
            cuts = tiles._cuts(size, tile - tile % 4, 4)
            assert cuts[0] == 0 and cuts[-1] == size
            assert all(c % 4 == 0 for c in cuts[:-1])
            assert all(0 < b - a <= tile for a, b in zip(cuts, cuts[1:]))


def test_default_rim_covers_the_receptive_field_so_tiles_are_exact(net):
    rf, stride = tiles.geometry(net, END)
    assert (rf, stride) == (23, 4) and tiles.default_overlap(net, END) == 24
    x = _img()
    torch.testing.assert_close(tiles.tiled_gradient(net, x, END, objectives.l2, 64),
                               _grad(net, x), rtol=1e-4, atol=1e-4)


def test_thin_rim_is_exact_in_the_core_and_close_everywhere(net):
    x, tile, rim = _img(), 64, 4
    g, gt = _grad(net, x), tiles.tiled_gradient(net, x, END, objectives.l2, tile, rim)
    err = (gt - g).abs() / g.abs().mean()
    # exact wherever the rim plus the distance to the core's edge spans the field (22 px)
    far = torch.ones(120, 160, dtype=torch.bool)
    for c in _cut_lines(120, tile):
        far[c - 18:c + 18] = False
    for c in _cut_lines(160, tile):
        far[:, c - 18:c + 18] = False
    assert far.any() and err[:, far].max() < 1e-4
    assert err[:, ~far].max() > 1e-3  # the thin rim does show near the tile edges
    assert err.mean() < 0.2


def test_guide_objective_tiles_too(net):
    guide = objectives.guide(net(_img(48, 48, seed=5)[None], end=END)[0].detach())
    x = _img()
    torch.testing.assert_close(tiles.tiled_gradient(net, x, END, guide, 64),
                               _grad(net, x, objective=guide), rtol=1e-4, atol=1e-4)


def _seam(g, tile):
    """|log| of (mean jump of the gradient across the tiles' vertical edges / across the
    other columns): 0 when the edges look like anywhere else."""
    jumps = (g[..., 1:] - g[..., :-1]).abs().mean((0, 1))
    edges = torch.tensor([c - 1 for c in _cut_lines(g.shape[-1], tile)])
    others = torch.ones_like(jumps, dtype=torch.bool)
    others[edges] = False
    return (jumps[edges].mean() / jumps[others].mean()).log().abs().item()


def test_no_seam_at_tile_edges(net):
    x = _img()
    assert _seam(tiles.tiled_gradient(net, x, END, objectives.l2, 64), 64) < 0.15
    # the measure does see a seam where there is one: tiles without context
    assert _seam(tiles.tiled_gradient(net, x, END, objectives.l2, 64, 0), 64) > 0.4


def _dream(net, **kw):
    offsets = iter([(3, -2), (-7, 5), (11, 1), (0, -9)] * 10)
    img = (_img() + 120).clamp(0, 255)
    return deepdream(net, img, END, offsets, MEAN, iter_n=2, octave_n=2, **kw)


def test_tiled_dream_matches_untiled(net):
    whole = _dream(net)
    tiled = _dream(net, tile=64)
    assert (tiled - whole).abs().mean() < 1e-3  # 0..255 pixel units; the rim is exact here
    assert torch.equal(_dream(net, tile=160), whole)  # tile >= frame: untiled, bit for bit
    x = _img()
    untiled = make_step(net, x, END, (5, 3))
    assert torch.equal(make_step(net, x, END, (5, 3), tile=500), untiled)


def test_auto_tiles_only_when_the_step_does_not_fit(net):
    whole = _dream(net)
    assert torch.equal(_dream(net, tile="auto", budget=1 << 40), whole)
    small = tiles.step_memory_bytes(net, 80, 80, END)
    assert (_dream(net, tile="auto", budget=small) - whole).abs().mean() < 0.01


def test_choose_tile(net):
    assert tiles.choose_tile(net, 120, 160, END, 1 << 40) is None
    whole = 2 * 3 * 120 * 160 * 4  # full-size image buffers a tiled step keeps
    budget = whole + tiles.step_memory_bytes(net, 120, 160, END) // 3
    t = tiles.choose_tile(net, 120, 160, END, budget)
    rim = tiles.default_overlap(net, END)
    assert t is not None and t % 4 == 0 and t < 160
    assert whole + tiles.step_memory_bytes(net, min(120, t + 2 * rim), t + 2 * rim,
                                           END) <= budget
    bigger = t + 4 + 2 * rim  # the next tile size up would not fit
    assert whole + tiles.step_memory_bytes(net, min(120, bigger), min(160, bigger),
                                           END) > budget
    assert tiles.choose_tile(net, 120, 160, END, 1) == 4  # nothing fits: smallest tile


def test_step_memory_grows_linearly_with_pixels(net):
    one = tiles.step_memory_bytes(net, 270, 480, END)
    four = tiles.step_memory_bytes(net, 540, 960, END)
    assert 3.8 < four / one < 4.2


def _fake_meminfo(monkeypatch, text):
    """/proc/meminfo reads `text` (None: the file is missing, as off Linux)."""
    real_read_text = Path.read_text

    def read_text(self, *args, **kwargs):
        if str(self) != "/proc/meminfo":
            return real_read_text(self, *args, **kwargs)
        if text is None:
            raise FileNotFoundError(str(self))
        return text

    monkeypatch.setattr(Path, "read_text", read_text)


def test_memory_budget_on_cpu_is_memavailable_less_the_margin(monkeypatch):
    assert 0.5 <= tiles.CPU_MARGIN < 1
    meminfo = Path("/proc/meminfo")
    if meminfo.is_file():  # this machine's, read before and after: it moves meanwhile

        def available():
            return next(int(line.split()[1]) * 1024 for line in
                        meminfo.read_text().splitlines() if line.startswith("MemAvailable:"))

        before, budget, after = available(), tiles.memory_budget("cpu"), available()
        low, high = sorted((before, after))
        assert low * tiles.CPU_MARGIN * 0.98 <= budget <= high * tiles.CPU_MARGIN * 1.02
    _fake_meminfo(monkeypatch, "MemTotal:       16000000 kB\nMemFree:         1000000 kB\n"
                               "MemAvailable:    6000000 kB\nBuffers:          100 kB\n")
    assert tiles.memory_budget("cpu") == int(6000000 * 1024 * tiles.CPU_MARGIN)
    assert tiles.memory_budget(torch.device("cpu")) == int(6000000 * 1024 * tiles.CPU_MARGIN)
    _fake_meminfo(monkeypatch, None)
    assert tiles.memory_budget("cpu") == 1 << 62  # unknown: never tile automatically


def test_memory_budget_on_cuda_is_free_plus_torchs_cache_less_the_margin(monkeypatch):
    assert 0.5 <= tiles.CUDA_MARGIN < 1
    asked = []
    monkeypatch.setattr(torch.cuda, "mem_get_info",
                        lambda d: asked.append(d) or (5 * 2**30, 80 * 2**30))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda d: 3 * 2**30)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda d: 2 * 2**30)
    # free 5 GB, and 1 GB that PyTorch holds cached but unused
    assert tiles.memory_budget("cuda:1") == int(6 * 2**30 * tiles.CUDA_MARGIN)
    assert asked == [torch.device("cuda", 1)]


def test_whole_image_layers_are_not_tiled(net):
    assert tiles.geometry(net, "pool5")[0] is None
    assert tiles.choose_tile(net, 120, 160, "pool5", 1) is None
    with pytest.raises(ValueError, match="whole image"):
        tiles.tiled_gradient(net, _img(), "pool5", objectives.l2, 64)
