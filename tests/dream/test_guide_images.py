"""Guide images and the flicker measure read images as frames are read (dreamer/image.py):
16-bit images at their true 8-bit values, a decompression bomb in one line."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from conftest import bomb
from dreamer.dream import flicker
from dreamer.dream.guides import check_readable, load_image
from dreamer.errors import DreamerError



def grey16(path, value=40000):
    Image.fromarray(np.full((20, 30), value, np.uint16)).save(path)
    return path


def test_a_16_bit_guide_is_read_at_its_8_bit_value(tmp_path):
    image = load_image(grey16(tmp_path / "g.png"))
    assert image.shape == (20, 30, 3) and np.all(image == round(40000 / 257))


def test_a_bomb_as_a_guide_or_a_measured_frame_is_one_line(tmp_path):
    path = bomb(tmp_path / "b.png")
    for read in (lambda: check_readable([path]), lambda: load_image(path),
                 lambda: flicker.measure({1: path, 2: path}, {1: path, 2: path})):
        with pytest.raises(DreamerError, match="too large to read") as e:
            read()
        assert "\n" not in str(e.value)
