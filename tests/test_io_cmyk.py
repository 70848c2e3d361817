import numpy as np
from PIL import Image

from fpfast.io.decode import decode_image
from io_helpers import assert_fine_row, encode, rand_rgb


def test_cmyk_jpeg_becomes_rgb(tmp_path):
    cmyk = Image.fromarray(rand_rgb(32, 40, seed=3)).convert("CMYK")
    data = encode(cmyk, "JPEG", quality=95)
    img, _ = decode_image(data)
    assert img.shape == (32, 40, 3) and img.dtype == np.uint8
    np.testing.assert_array_equal(img, np.asarray(Image.open(__import__("io").BytesIO(data)).convert("RGB")))
    assert_fine_row(tmp_path, "cmyk.jpg", data)
