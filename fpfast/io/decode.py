"""Bytes -> one image ``[H, W, 3]`` per the spec's colour policy, or a readable error.

:func:`decode_image` returns ``uint8 [H, W, 3]``, or ``uint16 [H, W, 3]`` for 16-bit sources
(full precision; :func:`fpfast.prepare.to_float` divides by 65535), C-contiguous. Colour policy
(:class:`fpfast.spec.FingerprintSpec`): gray -> replicated to 3 channels; RGBA/LA/PA -> alpha
dropped (not composited); palette -> RGB; CMYK/YCbCr/LAB/HSV -> RGB by Pillow's conversion; 1-bit
-> 0/255. EXIF orientation is applied before anything else. Animated images give their first
frame and a note. With the ``crop`` geometry the centre crop (:func:`fpfast.prepare.crop_box`) is
taken right after decoding, before any colour conversion, so a large image costs one full decode
and nothing more. (``Image.draft`` is not used: JPEG DCT scaling is a down-sampling, which would
change the very traces a fingerprint measures.)

Refused, with the message in :class:`DecodeError`: empty input, a non-image (whatever its
extension), truncated or corrupt data (Pillow's ``LOAD_TRUNCATED_IMAGES`` is forced off while
decoding), images above ``max_pixels`` (decompression bombs; checked from the header before any
pixel is decoded), and images below ``spec.min_size`` on a side.

:func:`decode_item` wraps it for the pipeline: never raises, returns a :class:`Decoded`.
"""
from __future__ import annotations

import contextlib
import io
import os
import struct
import time
import warnings
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from ..errors import InputDataError
from ..prepare import crop_box
from ..spec import FingerprintSpec
from .png16 import PNGError, decode_png16, png_header, wants_png16
from .sources import Payload, load_bytes

# Pillow's own hard limit is 2 x Image.MAX_IMAGE_PIXELS (~179 Mpx); ours defaults to the same.
DEFAULT_MAX_PIXELS = 2 * 89_478_485

# Optional faster JPEG path (libjpeg-turbo through simplejpeg, identical pixels; speed in
# benchmarks/results/decode.md). Used only for plain YCbCr/gray JPEGs without EXIF
# or MPF segments; everything else goes through Pillow. FPFAST_JPEG=pillow turns it off.
try:
    import simplejpeg as _simplejpeg
except ImportError:  # optional dependency
    _simplejpeg = None
USE_SIMPLEJPEG = _simplejpeg is not None and os.environ.get("FPFAST_JPEG", "auto") != "pillow"

_SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")


class DecodeError(InputDataError):
    """An input that cannot become an image; the message is meant for the output's error column."""


class Decoded(NamedTuple):
    key: str
    image: np.ndarray | None  # uint8 or uint16 [H, W, 3]; None on error
    error: str                # "" when fine
    note: str                 # "" or a remark (animated, alpha dropped, ...)
    seconds: float            # time spent reading + decoding
    jpeg: tuple | None = None  # ((h, w, 3), bytes): a JPEG left to the device decoder (image None)
    side: int = 0             # the image's shorter side before any crop (0: not known)


@contextlib.contextmanager
def _pillow_guard():
    """Pillow's global switches as decoding needs them, restored afterwards."""
    old_trunc, old_max = ImageFile.LOAD_TRUNCATED_IMAGES, Image.MAX_IMAGE_PIXELS
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    # Pillow's own bomb check is switched off: ours runs on the header right after open (before
    # any pixel is decoded) with the limit the caller chose and a message that says what to do.
    Image.MAX_IMAGE_PIXELS = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            yield
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES, Image.MAX_IMAGE_PIXELS = old_trunc, old_max


def _bomb_message(w: int, h: int, max_pixels: int) -> str:
    return (f"decompression bomb refused: {w}x{h} = {w * h:,} pixels exceeds the limit of "
            f"{max_pixels:,} pixels (raise max_pixels / --max-pixels to accept it)")


def _check_size(w: int, h: int, spec: FingerprintSpec, max_pixels: int) -> None:
    if w * h > max_pixels:
        raise DecodeError(_bomb_message(w, h, max_pixels))
    if min(w, h) < spec.min_size:
        raise DecodeError(f"image is {w}x{h}, below the minimum of {spec.min_size} px a side")


def _crop_array(a: np.ndarray, spec: FingerprintSpec) -> np.ndarray:
    if spec.geometry != "crop":
        return a
    t, l, ch, cw = crop_box(a.shape[0], a.shape[1], spec)
    return a[t:t + ch, l:l + cw]


def _to_rgb_array(img: Image.Image, notes: list[str]) -> np.ndarray:
    """A loaded Pillow image (any mode) -> uint8/uint16 [H, W, 3] (not yet contiguous)."""
    mode = img.mode
    if mode in _SIXTEEN_BIT_MODES:
        a = np.asarray(img)
        if a.dtype != np.uint16:
            if a.size and (a.min() < 0 or a.max() > 65535):
                raise DecodeError(f"{mode} image with values outside 0..65535 is not supported")
            a = a.astype(np.uint16)
        return np.repeat(a[:, :, None], 3, axis=2)
    if mode == "F":
        raise DecodeError("floating-point (mode F) images are not supported; save as 8- or 16-bit")
    if mode in ("RGBA", "RGBa", "LA", "La", "PA") or (mode == "P" and "transparency" in img.info):
        notes.append("alpha dropped")
    if mode in ("L", "LA", "La", "1"):
        a = np.asarray(img.convert("L") if mode != "L" else img)
        return np.repeat(a[:, :, None], 3, axis=2)
    if mode in ("RGB",):
        return np.asarray(img)
    if mode == "RGBA":
        return np.asarray(img)[:, :, :3]
    return np.asarray(img.convert("RGB"))


def _plain_jpeg(data: bytes) -> bool:
    """A JPEG whose segments before the scan hold no EXIF (orientation) and no MPF (multi-picture)."""
    if not data.startswith(b"\xff\xd8"):
        return False
    pos, n = 2, len(data)
    while pos + 4 <= n:
        if data[pos] != 0xFF:
            return False
        marker = data[pos + 1]
        if marker == 0xDA:  # start of scan: header done
            return True
        length = int.from_bytes(data[pos + 2:pos + 4], "big")
        if marker == 0xE1 and data[pos + 4:pos + 10] == b"Exif\x00\x00":
            return False
        if marker == 0xE2 and data[pos + 4:pos + 8] == b"MPF\x00":
            return False
        pos += 2 + length
    return False


def _decode_jpeg_fast(data: bytes, spec: FingerprintSpec, max_pixels: int) -> tuple[np.ndarray, int] | None:
    """(uint8 [H, W, 3] through simplejpeg, the image's shorter side), or None when the file needs
    Pillow's path."""
    if not _plain_jpeg(data):
        return None
    try:
        h, w, colorspace, _ = _simplejpeg.decode_jpeg_header(data)
    except ValueError:
        return None  # let Pillow produce its message
    if colorspace not in ("YCbCr", "Gray"):
        return None
    _check_size(w, h, spec, max_pixels)
    try:
        if colorspace == "Gray":
            a = _simplejpeg.decode_jpeg(data, colorspace="GRAY")
            a = np.repeat(a.reshape(h, w, 1), 3, axis=2)
        else:
            a = _simplejpeg.decode_jpeg(data, colorspace="RGB")
    except ValueError as e:
        msg = str(e)
        if "Premature end" in msg:
            raise DecodeError(f"truncated image data: {msg}") from None
        raise DecodeError(f"corrupt image data: {msg}") from None
    return np.ascontiguousarray(_crop_array(a, spec)), min(w, h)


def decode_image(data: bytes, spec: FingerprintSpec | None = None,
                 max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[np.ndarray, str]:
    """(image, note): uint8/uint16 [H, W, 3] C-contiguous, cropped when ``spec.geometry == 'crop'``;
    raises :class:`DecodeError` with a readable message."""
    return decode_sized(data, spec, max_pixels)[:2]


def decode_sized(data: bytes, spec: FingerprintSpec | None = None,
                 max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[np.ndarray, str, int]:
    """:func:`decode_image`'s (image, note) and the image's shorter side before the crop (what a
    gallery of large images compares a query's size with: ``Gallery.large_views``)."""
    spec = spec or FingerprintSpec()
    if not data:
        raise DecodeError("empty file (0 bytes)")
    notes: list[str] = []
    if USE_SIMPLEJPEG and data[:2] == b"\xff\xd8":
        fast = _decode_jpeg_fast(data, spec, max_pixels)
        if fast is not None:
            return fast[0], "", fast[1]
    if wants_png16(data):
        w, h = png_header(data)[:2]
        _check_size(w, h, spec, max_pixels)
        try:
            a = decode_png16(data, max_pixels)
        except PNGError as e:
            raise DecodeError(f"cannot decode 16-bit PNG: {e}") from None
        if a.shape[2] in (2, 4):
            notes.append("alpha dropped")
        a = a[:, :, :1].repeat(3, axis=2) if a.shape[2] <= 2 else a[:, :, :3]
        return np.ascontiguousarray(_crop_array(a, spec)), "; ".join(notes), min(w, h)
    with _pillow_guard():
        try:
            img = Image.open(io.BytesIO(data))
        except UnidentifiedImageError:
            raise DecodeError(f"not an image Pillow can read (starts with {data[:8]!r}, "
                              f"{len(data)} bytes)") from None
        except Image.DecompressionBombError as e:
            raise DecodeError(f"decompression bomb refused: {e}") from None
        except (OSError, ValueError, SyntaxError, struct.error) as e:
            raise DecodeError(f"corrupt image header: {e}") from None
        with img:
            w, h = img.size
            _check_size(w, h, spec, max_pixels)
            n_frames = getattr(img, "n_frames", 1)
            if getattr(img, "is_animated", False) and n_frames > 1:
                notes.append(f"animated ({n_frames} frames): first frame used")
            hdr = png_header(data[:33])
            if hdr is not None and hdr[2] == 16 and hdr[3] in (2, 4, 6):
                notes.append("interlaced 16-bit PNG decoded at 8 bits")
            if img.format == "TIFF" and img.mode in ("RGB", "RGBA"):
                bits = img.tag_v2.get(258, (8,))
                if max(bits if isinstance(bits, tuple) else (bits,)) > 8:
                    notes.append(f"{max(bits)}-bit colour TIFF decoded at 8 bits (Pillow)")
            try:
                img.load()
                orientation = img.getexif().get(0x0112, 1)
                if orientation not in (None, 1):
                    img = ImageOps.exif_transpose(img)
                    notes.append(f"EXIF orientation {orientation} applied")
                if spec.geometry == "crop":
                    t, l, ch, cw = crop_box(img.height, img.width, spec)
                    if (ch, cw) != (img.height, img.width):
                        img = img.crop((l, t, l + cw, t + ch))
                a = _to_rgb_array(img, notes)
            except DecodeError:
                raise
            except Image.DecompressionBombError as e:
                raise DecodeError(f"decompression bomb refused: {e}") from None
            except (OSError, ValueError, SyntaxError, EOFError, IndexError, struct.error) as e:
                msg = str(e) or type(e).__name__
                if "truncat" in msg or isinstance(e, EOFError):
                    raise DecodeError(f"truncated image data: {msg}") from None
                raise DecodeError(f"corrupt image data: {msg}") from None
    return np.ascontiguousarray(a), "; ".join(notes), min(w, h)


def decode_item(key: str, payload: Payload, spec: FingerprintSpec | None = None,
                max_pixels: int = DEFAULT_MAX_PIXELS) -> Decoded:
    """Read and decode one input; never raises (a failure is ``Decoded(error=...)``)."""
    t0 = time.perf_counter()
    try:
        data = load_bytes(payload)
    except OSError as e:
        return Decoded(key, None, f"cannot read file: {e.strerror or e}", "", time.perf_counter() - t0)
    except ValueError as e:
        return Decoded(key, None, str(e), "", time.perf_counter() - t0)
    try:
        image, note, side = decode_sized(data, spec, max_pixels)
    except DecodeError as e:
        return Decoded(key, None, str(e), "", time.perf_counter() - t0)
    except MemoryError:
        return Decoded(key, None, "out of memory while decoding (lower max_pixels or use fewer workers)",
                       "", time.perf_counter() - t0)
    except Exception as e:  # a decoder bug must not end a run of millions; say what it was
        return Decoded(key, None, f"unexpected decoder failure: {type(e).__name__}: {e}", "",
                       time.perf_counter() - t0)
    return Decoded(key, image, "", note, time.perf_counter() - t0, side=side)


def read_image(path, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """The uint8 [H, W, 3] image of a file, decoded as the stream decodes (EXIF rotation, CMYK,
    palette, 16-bit scaled to 8 bits, decompression bombs refused), whole (no geometry). For the
    readers outside the stream (zoo, baselines); raises :class:`DecodeError` or ``OSError``."""
    with open(path, "rb") as fh:
        a, _ = decode_image(fh.read(), FingerprintSpec(geometry="none"), max_pixels)
    if a.dtype == np.uint16:
        a = np.round(a.astype(np.float64) / 257.0).astype(np.uint8)
    return a
