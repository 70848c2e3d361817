"""The optional simplejpeg path gives Pillow's pixels, and falls back where it must."""

import numpy as np
import pytest
from PIL import Image

from fpfast.io import decode
from io_helpers import encode, rand_rgb

pytestmark = pytest.mark.skipif(decode._simplejpeg is None, reason="simplejpeg not installed")


@pytest.mark.parametrize("kind", ["rgb", "gray", "progressive", "444"])
def test_same_pixels_as_pillow(kind, monkeypatch):
    a = rand_rgb(40, 52, seed=3)
    if kind == "gray":
        data = encode(a[:, :, 0], "JPEG", quality=90)
    elif kind == "progressive":
        data = encode(a, "JPEG", quality=90, progressive=True)
    elif kind == "444":
        data = encode(a, "JPEG", quality=90, subsampling=0)
    else:
        data = encode(a, "JPEG", quality=90)
    assert decode._plain_jpeg(data)
    fast, _ = decode.decode_image(data)
    monkeypatch.setattr(decode, "USE_SIMPLEJPEG", False)
    slow, _ = decode.decode_image(data)
    np.testing.assert_array_equal(fast, slow)


def test_exif_and_cmyk_go_through_pillow():
    im = Image.fromarray(rand_rgb(24, 40))
    exif = im.getexif()
    exif[0x0112] = 6
    assert not decode._plain_jpeg(encode(im, "JPEG", exif=exif))
    cmyk = encode(im.convert("CMYK"), "JPEG")
    assert decode._decode_jpeg_fast(cmyk, decode.FingerprintSpec(), 10**8) is None


def test_truncated_refused_on_the_fast_path():
    data = encode(rand_rgb(48, 48), "JPEG", quality=90)
    with pytest.raises(decode.DecodeError, match="truncated"):
        decode.decode_image(data[: len(data) // 2])
