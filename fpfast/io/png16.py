"""A small 16-bit PNG reader, for the one case Pillow cannot keep: 16-bit colour.

Pillow opens a 16-bit RGB/RGBA PNG as 8-bit ``RGB``/``RGBA`` (the low byte is dropped), which
would round away the precision the spec keeps. This reads non-interlaced 16-bit PNGs of colour
type 2 (RGB), 6 (RGBA), 4 (gray + alpha) and 0 (gray) into uint16 ``[H, W, C]``. Interlaced
16-bit files are left to Pillow (8-bit, with a note). Row unfiltering runs in numpy: vectorised
for filters None/Sub/Up, one step per pixel for Average and Paeth.
"""
from __future__ import annotations

import struct
import zlib

import numpy as np

from ..errors import InputDataError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}


class PNGError(InputDataError):
    pass


def png_header(data: bytes) -> tuple[int, int, int, int, int] | None:
    """(width, height, bit_depth, colour_type, interlace) of a PNG, or None if not a PNG."""
    if len(data) < 33 or not data.startswith(PNG_SIGNATURE) or data[12:16] != b"IHDR":
        return None
    w, h, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", data[16:29])
    return w, h, depth, ctype, interlace


def wants_png16(data: bytes) -> bool:
    """True for a non-interlaced 16-bit PNG with colour (types 2, 4, 6) Pillow would truncate."""
    hdr = png_header(data)
    return hdr is not None and hdr[2] == 16 and hdr[3] in (2, 4, 6) and hdr[4] == 0


def _unfilter(raw: np.ndarray, h: int, stride: int, bpp: int) -> np.ndarray:
    rows = raw.reshape(h, stride + 1)
    ftypes = rows[:, 0]
    data = rows[:, 1:].astype(np.uint8)
    out = np.empty((h, stride), dtype=np.uint8)
    prior = np.zeros(stride, dtype=np.uint8)
    for y in range(h):
        f = int(ftypes[y])
        line = data[y]
        if f == 0:
            cur = line.copy()
        elif f == 1:  # Sub: running sum along pixels, modulo 256
            cur = (np.cumsum(line.reshape(-1, bpp).astype(np.int64), axis=0) & 0xFF).astype(np.uint8).ravel()
        elif f == 2:
            cur = line + prior
        elif f == 3:  # Average
            cur = line.copy()
            cur[:bpp] = line[:bpp] + (prior[:bpp] >> 1)
            p16 = prior.astype(np.int32)
            for i in range(bpp, stride, bpp):
                a = cur[i - bpp:i].astype(np.int32)
                cur[i:i + bpp] = (line[i:i + bpp].astype(np.int32) + ((a + p16[i:i + bpp]) >> 1)) & 0xFF
        elif f == 4:  # Paeth
            cur = line.copy()
            cur[:bpp] = line[:bpp] + prior[:bpp]
            b_all = prior.astype(np.int32)
            for i in range(bpp, stride, bpp):
                a = cur[i - bpp:i].astype(np.int32)
                b = b_all[i:i + bpp]
                c = b_all[i - bpp:i]
                p = a + b - c
                pa, pb, pc = np.abs(p - a), np.abs(p - b), np.abs(p - c)
                pred = np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))
                cur[i:i + bpp] = (line[i:i + bpp].astype(np.int32) + pred) & 0xFF
        else:
            raise PNGError(f"bad PNG filter type {f} on row {y}")
        out[y] = cur
        prior = cur
    return out


def decode_png16(data: bytes, max_pixels: int | None = None) -> np.ndarray:
    """uint16 [H, W, C] of a non-interlaced 16-bit PNG (C = 1, 2, 3 or 4)."""
    hdr = png_header(data)
    if hdr is None:
        raise PNGError("not a PNG")
    w, h, depth, ctype, interlace = hdr
    if depth != 16 or ctype not in _CHANNELS or interlace != 0:
        raise PNGError(f"decode_png16 reads non-interlaced 16-bit PNGs, got depth {depth}, "
                       f"colour type {ctype}, interlace {interlace}")
    if max_pixels is not None and w * h > max_pixels:
        raise PNGError(f"{w}x{h} exceeds the pixel limit")
    pos, idat = 8, []
    while pos + 8 <= len(data):
        (n,) = struct.unpack(">I", data[pos:pos + 4])
        ctype_ = data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + n]
        if len(body) < n or pos + 12 + n > len(data):
            raise PNGError("image file is truncated (a PNG chunk is cut short)")
        if ctype_ == b"IDAT":
            idat.append(body)
        elif ctype_ == b"IEND":
            break
        pos += 12 + n
    else:
        raise PNGError("image file is truncated (no IEND chunk)")
    c = _CHANNELS[ctype]
    bpp = 2 * c
    stride = w * bpp
    try:
        raw = zlib.decompress(b"".join(idat))
    except zlib.error as e:
        raise PNGError(f"broken PNG data stream: {e}") from None
    if len(raw) != h * (stride + 1):
        raise PNGError(f"image file is truncated ({len(raw)} of {h * (stride + 1)} bytes of pixel data)")
    rows = _unfilter(np.frombuffer(raw, dtype=np.uint8), h, stride, bpp)
    return rows.view(">u2").reshape(h, w, c).astype(np.uint16)
