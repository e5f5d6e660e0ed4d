"""`dreamvideo flicker` (dreamer/cli/flicker.py) on a made-up clip whose answer is known."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from dreamer.cli import dreamvideo as cli

H, W, N = 48, 64, 8


def panning_clip(n: int = N) -> list[np.ndarray]:
    """n frames of a smooth texture (grey levels 20-220, so +-10 never clips) panning 2 px
    left per frame."""
    noise = ndimage.gaussian_filter(np.random.default_rng(0).random((H, W + 2 * n, 3)),
                                    sigma=(3, 3, 0))
    canvas = (20 + (noise - noise.min()) / np.ptp(noise) * 200).round().astype(np.uint8)
    return [np.ascontiguousarray(canvas[:, 2 * k:2 * k + W]) for k in range(n)]


def write(folder: Path, frames: list[np.ndarray]) -> Path:
    folder.mkdir(parents=True)
    for k, frame in enumerate(frames, 1):
        Image.fromarray(frame).save(folder / f"{k:08d}.png")
    return folder


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """(original, alternating +-10 dream, constant +15 dream) folders."""
    root = tmp_path_factory.mktemp("flicker")
    film = panning_clip()
    alternating = [(f.astype(np.int16) + (10 if k % 2 else -10)).astype(np.uint8)
                   for k, f in enumerate(film)]
    steady = [f + np.uint8(15) for f in film]
    return (write(root / "film", film), write(root / "alternating", alternating),
            write(root / "steady", steady))


def rows(out: str) -> dict[str, list[str]]:
    """The table's rows by label: [frames, '(span)', residual, dreamed, added, strength,
    ratio]."""
    lines = out.splitlines()
    assert lines[0].split() == ["frames", "residual", "dreamed", "added", "flicker",
                                "strength", "ratio"]
    return {line.split()[0]: line.split()[1:] for line in lines[1:]
            if line and not line.startswith(("grey levels", "plot written"))}


def test_table_of_two_dreams_labelled_by_folder(clip, capsys):
    film, alternating, steady = clip
    assert cli.main(["flicker", str(film), str(alternating), str(steady)]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    table = rows(captured.out)
    assert set(table) == {"alternating", "steady"}
    frames, span, residual, dreamed, added, strength, ratio = table["alternating"]
    assert (frames, span) == ("8", "(1-8)")
    assert float(added) == pytest.approx(20, abs=0.5)  # +-10 flips: 20 per frame pair
    assert float(dreamed) == pytest.approx(float(residual) + float(added), abs=0.02)
    assert float(strength) == pytest.approx(10, abs=0.01)
    assert float(ratio) == pytest.approx(2, abs=0.05)
    _, _, residual_s, _, added_s, strength_s, _ = table["steady"]
    assert residual_s == residual  # the same film, the same flow: the same residual
    assert float(added_s) == pytest.approx(0, abs=0.05)  # moves with the film: no flicker
    assert float(strength_s) == pytest.approx(15, abs=0.01)
    legend = [line for line in captured.out.splitlines() if line.startswith("grey levels")]
    assert len(legend) == 1 and "added flicker = dreamed - residual" in legend[0]
    assert "strength = mean |dream - film|" in legend[0] and "0-255" in legend[0]


def test_first_and_last_limit_the_frames(clip, capsys):
    film, alternating, _ = clip
    assert cli.main(["flicker", str(film), str(alternating), "--first", "3",
                     "--last", "6"]) == 0
    frames, span, *_ = rows(capsys.readouterr().out)["alternating"]
    assert (frames, span) == ("4", "(3-6)")


def test_plot_written_then_refused_without_overwrite(clip, capsys, tmp_path):
    film, alternating, _ = clip
    plot = tmp_path / "flicker.png"
    assert cli.main(["flicker", str(film), str(alternating), "--plot", str(plot)]) == 0
    assert f"plot written to {plot}" in capsys.readouterr().out
    with Image.open(plot) as image:
        assert image.format == "PNG" and image.size == (640, 240)
    written = plot.read_bytes()
    assert [p.name for p in tmp_path.iterdir()] == ["flicker.png"]  # no temporary left

    plot.write_bytes(b"the user's own file")
    assert cli.main(["flicker", str(film), str(alternating), "--plot", str(plot)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""  # refused before measuring
    assert captured.err.count("\n") == 1 and "--overwrite" in captured.err
    assert plot.read_bytes() == b"the user's own file"

    assert cli.main(["flicker", str(film), str(alternating), "--plot", str(plot),
                     "--overwrite"]) == 0
    assert plot.read_bytes() == written


def test_one_plot_per_dreamed_folder(clip, capsys, tmp_path):
    film, alternating, steady = clip
    plot = tmp_path / "cmp.png"
    assert cli.main(["flicker", str(film), str(alternating), str(steady), "--last", "3",
                     "--plot", str(plot)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cmp-alternating.png",
                                                          "cmp-steady.png"]


def one_line_error(capsys) -> str:
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.startswith("error: ")
    assert captured.err.count("\n") == 1 and "Traceback" not in captured.err
    return captured.err


def test_missing_folder_is_one_line_exit_2(clip, capsys, tmp_path):
    film, _, _ = clip
    assert cli.main(["flicker", str(film), str(tmp_path / "nowhere")]) == 2
    assert "nowhere is not a folder of frames" in one_line_error(capsys)


def test_bad_inputs_are_one_line_exit_2(clip, capsys, tmp_path):
    film, alternating, _ = clip
    (tmp_path / "empty").mkdir()
    assert cli.main(["flicker", str(film), str(tmp_path / "empty")]) == 2
    assert "holds no numbered frames" in one_line_error(capsys)

    small = write(tmp_path / "small", [np.zeros((24, 32, 3), np.uint8)] * 2)
    assert cli.main(["flicker", str(film), str(small)]) == 2
    assert "32x24, not 64x48" in one_line_error(capsys)

    later = tmp_path / "later"
    later.mkdir()
    Image.fromarray(panning_clip(1)[0]).save(later / "00000020.png")
    assert cli.main(["flicker", str(film), str(later)]) == 2
    assert "no frame number in common" in one_line_error(capsys)

    assert cli.main(["flicker", str(film), str(alternating), "--first", "9"]) == 2
    assert "no frame numbered 9-end" in one_line_error(capsys)

    with pytest.raises(SystemExit) as exit_:  # a usage error, as argparse ends them
        cli.main(["flicker", str(film), str(alternating), "--first", "0"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a frame number" in err


def test_ctrl_c_is_one_line_exit_130(clip, capsys, monkeypatch):
    from dreamer.dream import flicker

    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(flicker, "measure_all", interrupted)
    film, alternating, _ = clip
    assert cli.main(["flicker", str(film), str(alternating)]) == 130
    err = capsys.readouterr().err
    assert err.strip().startswith("error: interrupted") and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_listed_in_the_usage(capsys):
    cli.main(["--help"])
    assert "flicker" in capsys.readouterr().out
