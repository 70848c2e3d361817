import numpy as np
import pytest

from fpfast.io.decode import decode_image
from io_helpers import encode, rand_rgb, run_folder


@pytest.mark.parametrize("fmt,ext,lossless", [("PNG", "png", True), ("JPEG", "jpg", False),
                                              ("WEBP", "webp", True), ("BMP", "bmp", True),
                                              ("TIFF", "tif", True)])
def test_formats_decode(fmt, ext, lossless):
    rgb = rand_rgb(20, 26, seed=11)
    kw = {"lossless": True} if fmt == "WEBP" else {}
    img, _ = decode_image(encode(rgb, fmt, **kw))
    assert img.shape == (20, 26, 3) and img.dtype == np.uint8 and img.flags["C_CONTIGUOUS"]
    if lossless:
        np.testing.assert_array_equal(img, rgb)


def test_large_image_cropped_early(tmp_path):
    img, _ = decode_image(encode(rand_rgb(300, 500, seed=1), "PNG"))
    assert img.shape == (64, 64, 3)
    full = rand_rgb(300, 500, seed=1)
    np.testing.assert_array_equal(img, full[118:182, 218:282])


def test_all_formats_in_one_run(tmp_path):
    files = {f"x.{ext}": encode(rand_rgb(20, 26, seed=i), fmt)
             for i, (fmt, ext) in enumerate([("PNG", "png"), ("JPEG", "jpeg"), ("WEBP", "webp"),
                                             ("BMP", "bmp"), ("TIFF", "tiff")])}
    rows, s = run_folder(tmp_path, files)
    assert s.exit_code == 0 and all(r["error"] is None for r in rows.values())
