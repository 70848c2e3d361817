import io

import numpy as np
from PIL import Image

from fpfast.io.decode import decode_image
from io_helpers import assert_fine_row, encode, rand_rgb


def test_palette_becomes_rgb(tmp_path):
    p = Image.fromarray(rand_rgb(24, 28, seed=6)).convert("P")
    data = encode(p, "PNG")
    img, _ = decode_image(data)
    np.testing.assert_array_equal(img, np.asarray(Image.open(io.BytesIO(data)).convert("RGB")))
    assert_fine_row(tmp_path, "pal.png", data)


def test_gray_replicated_to_three_channels(tmp_path):
    g = rand_rgb(20, 22, seed=7)[:, :, 0]
    img, _ = decode_image(encode(g, "PNG"))
    assert img.shape == (20, 22, 3)
    for c in range(3):
        np.testing.assert_array_equal(img[:, :, c], g)
    assert_fine_row(tmp_path, "gray.png", encode(g, "PNG"))
