import struct
import zlib

import numpy as np
import pytest
import torch

from fpfast.io.decode import decode_image
from fpfast.io.png16 import decode_png16
from fpfast.prepare import to_float
from io_helpers import assert_fine_row, encode


def png16(arr: np.ndarray, filters=(0, 1, 2, 3, 4)) -> bytes:
    """A 16-bit PNG (colour type by channel count) with each row filtered by a cycling filter."""
    h, w, c = arr.shape
    ctype = {1: 0, 2: 4, 3: 2, 4: 6}[c]
    raw = arr.astype(">u2").reshape(h, w * c).view(np.uint8).reshape(h, w * c * 2).astype(np.int32)
    bpp = 2 * c
    out = []
    prior = np.zeros(raw.shape[1], np.int32)
    for y in range(h):
        f = filters[y % len(filters)]
        x = raw[y]
        a = np.concatenate([np.zeros(bpp, np.int32), x[:-bpp]])
        cc = np.concatenate([np.zeros(bpp, np.int32), prior[:-bpp]])
        b = prior
        if f == 0:
            r = x
        elif f == 1:
            r = x - a
        elif f == 2:
            r = x - b
        elif f == 3:
            r = x - (a + b) // 2
        else:
            p = a + b - cc
            pa, pb, pc = abs(p - a), abs(p - b), abs(p - cc)
            r = x - np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, cc))
        out.append(bytes([f]) + (r & 0xFF).astype(np.uint8).tobytes())
        prior = x

    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, ctype, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"".join(out))) + chunk(b"IEND", b""))


@pytest.mark.parametrize("channels", [3, 4, 2])
def test_16bit_colour_png_keeps_precision(channels):
    a = np.random.default_rng(channels).integers(0, 65536, (21, 19, channels), dtype=np.uint16)
    got = decode_png16(png16(a))
    np.testing.assert_array_equal(got, a)
    img, note = decode_image(png16(a))
    assert img.dtype == np.uint16 and img.shape == (21, 19, 3)
    want = a[:, :, :3] if channels >= 3 else np.repeat(a[:, :, :1], 3, axis=2)
    np.testing.assert_array_equal(img, want)
    assert ("alpha dropped" in note) == (channels in (2, 4))
    # the precision survives to the float the ops see
    f = to_float(torch.from_numpy(img))
    assert torch.equal(f, torch.from_numpy(want.astype(np.float64) / 65535.0).float())


def test_16bit_gray_png_via_pillow():
    g = np.random.default_rng(0).integers(0, 65536, (30, 20), dtype=np.uint16)
    img, _ = decode_image(encode(g, "PNG"))
    assert img.dtype == np.uint16
    np.testing.assert_array_equal(img[:, :, 2], g)


def test_16bit_truncated_is_an_error():
    from fpfast.io.decode import DecodeError
    data = png16(np.zeros((20, 20, 3), np.uint16) + 7)
    with pytest.raises(DecodeError, match="truncated"):
        decode_image(data[:-30])


def test_16bit_row_in_the_stream(tmp_path):
    a = np.random.default_rng(5).integers(0, 65536, (24, 24, 3), dtype=np.uint16)
    r = assert_fine_row(tmp_path, "deep.png", png16(a))
    assert r["vector"] is not None
