import numpy as np

from fpfast.io.decode import decode_image
from io_helpers import assert_fine_row, encode, rand_rgb


def test_rgba_drops_alpha(tmp_path):
    rgb = rand_rgb(30, 30, seed=4)
    alpha = np.random.default_rng(1).integers(0, 256, (30, 30, 1), dtype=np.uint8)
    data = encode(np.concatenate([rgb, alpha], axis=2), "PNG")
    img, note = decode_image(data)
    np.testing.assert_array_equal(img, rgb)  # dropped, not composited
    assert "alpha dropped" in note
    assert_fine_row(tmp_path, "rgba.png", data, note="alpha dropped")


def test_la_drops_alpha_and_replicates_gray():
    from PIL import Image
    g = rand_rgb(20, 20, seed=9)[:, :, 0]
    la = Image.merge("LA", [Image.fromarray(g), Image.fromarray(g[::-1].copy())])
    img, note = decode_image(encode(la, "PNG"))
    np.testing.assert_array_equal(img, np.repeat(g[:, :, None], 3, axis=2))
