import numpy as np
import pytest
from PIL import Image

from fpfast.io.decode import DecodeError, decode_image
from io_helpers import assert_error_row, encode


def test_bomb_refused_above_the_pixel_limit(tmp_path):
    big = encode(np.zeros((400, 300, 3), np.uint8), "PNG")  # 120,000 px, compresses to ~1 kB
    err = assert_error_row(tmp_path, "bomb.png", big, "decompression bomb", "400", "max-pixels",
                           max_pixels=50_000)
    assert "50,000" in err


def test_bomb_check_comes_before_pillow_and_restores_its_limit():
    before = Image.MAX_IMAGE_PIXELS
    with pytest.raises(DecodeError, match="decompression bomb"):
        decode_image(encode(np.zeros((300, 300, 3), np.uint8), "PNG"), max_pixels=10_000)
    assert Image.MAX_IMAGE_PIXELS == before
    img, _ = decode_image(encode(np.zeros((300, 300, 3), np.uint8), "PNG"), max_pixels=90_000)
    assert img.shape == (64, 64, 3)  # default spec: centre crop to 64
