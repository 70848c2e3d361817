"""Batched JPEG decode on the GPU (nvJPEG through torchvision), CPU decode for everything else.

::

    dec = DeviceDecoder(spec, device="cuda")
    images, errors = dec.decode([(key, data), ...])   # images: {index: uint8 [3, h, w] on the device}

Which inputs go to the device is decided from the JPEG header alone (:func:`jpeg_route`): 8-bit
baseline or extended-sequential Huffman JPEGs (SOF0 / SOF1) with one or three components, no EXIF
segment (orientation is applied on the CPU path), no Adobe segment declaring RGB or CMYK
colour, and ending in the EOI marker (a truncated file goes to the CPU decoder, which refuses it). Everything else — PNG, WebP, progressive or arithmetic JPEGs, CMYK, EXIF-rotated photos,
16-bit files — is decoded by :func:`fpfast.io.decode.decode_image`, exactly as in the CPU stream,
and uploaded. Size limits (decompression bombs, the spec's minimum side) are checked from the
header with the CPU path's own messages, before any pixel is decoded.

nvJPEG decodes a whole list in one call and returns nothing when one member is corrupt; the list is
then split in halves until the bad members stand alone, and those go to the CPU decoder, which
writes the same error row as the CPU stream would. The spec's centre crop is taken on the device.

nvJPEG's inverse DCT and chroma up-sampling are not libjpeg-turbo's, so pixels can differ by a
few levels from the CPU decode of the same file; a fingerprint is a measurement of exactly such
small differences, so galleries and queries should be decoded the same way. The measured
difference is in ``benchmarks/results/`` (GPU decode section); ``decode="cpu"`` stays the default.

Importing this module touches neither CUDA nor torchvision; both are imported on first use.
"""
from __future__ import annotations

import time
from typing import NamedTuple, Sequence

import torch

from ..prepare import crop_box
from ..spec import FingerprintSpec
from .decode import DEFAULT_MAX_PIXELS, Decoded, DecodeError, _check_size, decode_image, decode_item
from .sources import Payload, load_bytes

# SOF markers nvJPEG's batched decode takes: baseline and extended-sequential Huffman.
_DEVICE_SOF = (0xC0, 0xC1)
_ALL_SOF = tuple(m for m in range(0xC0, 0xD0) if m not in (0xC4, 0xC8, 0xCC))


class JpegHeader(NamedTuple):
    sof: int          # the SOFn marker byte (0xC0 baseline, 0xC2 progressive, ...)
    precision: int    # bits per sample
    height: int
    width: int
    components: int
    exif: bool        # an APP1 Exif segment is present
    adobe_transform: int | None  # APP14 Adobe colour transform flag, None when absent


def jpeg_header(data: bytes) -> JpegHeader | None:
    """The frame header of a JPEG, read from its markers; None when ``data`` is not a well-formed
    JPEG up to its first scan (the CPU decoder then writes the error message)."""
    if not data.startswith(b"\xff\xd8"):
        return None
    pos, n = 2, len(data)
    exif, adobe, sof = False, None, None
    while pos + 4 <= n:
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        length = int.from_bytes(data[pos + 2:pos + 4], "big")
        if length < 2 or pos + 2 + length > n:
            return None
        body = data[pos + 4:pos + 2 + length]
        if marker == 0xE1 and body[:6] == b"Exif\x00\x00":
            exif = True
        elif marker == 0xEE and body[:5] == b"Adobe" and len(body) >= 12:
            adobe = body[11]
        elif marker in _ALL_SOF:
            if len(body) < 6:
                return None
            sof = JpegHeader(marker, body[0], int.from_bytes(body[1:3], "big"),
                             int.from_bytes(body[3:5], "big"), body[5], False, None)
        elif marker == 0xDA:  # start of scan: the header is complete
            if sof is None:
                return None
            return sof._replace(exif=exif, adobe_transform=adobe)
        pos += 2 + length
    return None


def jpeg_route(data: bytes) -> str:
    """``"device"`` when nvJPEG's batched decode gives this file's pixels, else ``"cpu"``."""
    h = jpeg_header(data)
    if h is None or h.sof not in _DEVICE_SOF or h.precision != 8 or h.components not in (1, 3):
        return "cpu"
    if h.exif:  # orientation and the colour handling of the CPU path stay authoritative
        return "cpu"
    if h.adobe_transform is not None and h.components == 3 and h.adobe_transform == 0:
        return "cpu"  # RGB-coded (not YCbCr) JPEG
    if h.height == 0 or h.width == 0:
        return "cpu"  # DNL-defined height: let the CPU decoder handle it
    if not data.endswith(b"\xff\xd9"):
        return "cpu"  # truncated (or trailing bytes): nvJPEG may fill the gap where libjpeg refuses
    return "device"


def route_item(key: str, payload: Payload, spec: FingerprintSpec | None = None,
               max_pixels: int = DEFAULT_MAX_PIXELS) -> Decoded:
    """:func:`fpfast.io.decode.decode_item` for a stream that decodes JPEGs on the device: a JPEG
    that :func:`jpeg_route` sends there and that passes the size checks comes back undecoded, as
    ``Decoded(jpeg=((h, w, 3), bytes))`` with (h, w) its size after the spec's crop; any other
    input is decoded here, exactly as :func:`decode_item` does. Never raises."""
    spec = spec or FingerprintSpec()
    t0 = time.perf_counter()
    try:
        data = payload if isinstance(payload, bytes) else load_bytes(payload)
    except (OSError, ValueError):
        return decode_item(key, payload, spec, max_pixels)  # its error row, in its words
    if jpeg_route(data) != "device":
        return decode_item(key, data, spec, max_pixels)
    h = jpeg_header(data)
    try:
        _check_size(h.width, h.height, spec, max_pixels)
    except DecodeError as e:
        return Decoded(key, None, str(e), "", time.perf_counter() - t0)
    _, _, ch, cw = crop_box(h.height, h.width, spec)
    return Decoded(key, None, "", "", time.perf_counter() - t0, ((ch, cw, 3), data), min(h.height, h.width))


def _torchvision_io():
    try:
        from torchvision.io import ImageReadMode, decode_jpeg
    except Exception as e:  # ImportError, or torchvision built for another torch
        raise RuntimeError(f"GPU decode needs torchvision with nvJPEG ({type(e).__name__}: {e}); "
                           f"install torchvision matching your torch, or decode on the CPU") from None
    return decode_jpeg, ImageReadMode


class DecodedBatch(NamedTuple):
    images: dict      # index in the input list -> uint8 [3, h, w] on the device (cropped per spec)
    errors: dict      # index -> error message (the CPU decoder's words)
    notes: dict       # index -> note ("" omitted)
    on_device: int    # how many were decoded by nvJPEG


class DeviceDecoder:
    """Decodes lists of (key, bytes) into device tensors; see the module docstring."""

    def __init__(self, spec: FingerprintSpec | None = None, device: str | torch.device = "cuda",
                 max_pixels: int = DEFAULT_MAX_PIXELS):
        self.spec = spec or FingerprintSpec()
        self.device = torch.device(device)
        self.max_pixels = max_pixels
        if self.device.type == "cuda":
            self._decode_jpeg, self._mode = _torchvision_io()

    def _crop(self, x: torch.Tensor) -> torch.Tensor:
        t, l, ch, cw = crop_box(x.shape[-2], x.shape[-1], self.spec)
        return x[:, t:t + ch, l:l + cw]

    def _device_decode(self, datas: list[bytes]) -> list[torch.Tensor | None]:
        """nvJPEG on the whole list; on failure, halves until the failing files stand alone."""
        if not datas:
            return []
        tensors = [torch.frombuffer(bytearray(d), dtype=torch.uint8) for d in datas]
        try:
            return list(self._decode_jpeg(tensors, mode=self._mode.RGB, device=self.device))
        except RuntimeError:
            if len(datas) == 1:
                return [None]
            mid = len(datas) // 2
            return self._device_decode(datas[:mid]) + self._device_decode(datas[mid:])

    def _cpu_decode(self, i: int, data: bytes, out: DecodedBatch) -> None:
        try:
            a, note = decode_image(data, self.spec, self.max_pixels)
        except DecodeError as e:
            out.errors[i] = str(e)
            return
        # uint16 sources keep their precision, as in the CPU stream
        a = a if a.flags.writeable else a.copy()
        out.images[i] = torch.from_numpy(a).permute(2, 0, 1).to(self.device)
        if note:
            out.notes[i] = note

    def decode(self, items: Sequence[tuple[str, bytes]]) -> DecodedBatch:
        """Route, check and decode ``(key, bytes)`` items (indices of the result: positions)."""
        out = DecodedBatch({}, {}, {}, 0)
        jobs = []
        for i, (_key, data) in enumerate(items):
            if not data:
                out.errors[i] = "empty file (0 bytes)"
                continue
            if self.device.type == "cuda" and jpeg_route(data) == "device":
                h = jpeg_header(data)
                try:
                    _check_size(h.width, h.height, self.spec, self.max_pixels)
                except DecodeError as e:
                    out.errors[i] = str(e)
                    continue
                jobs.append((i, data))
            else:
                self._cpu_decode(i, data, out)
        return self._decode_jobs(jobs, out)

    def decode_routed(self, datas: Sequence[bytes]) -> DecodedBatch:
        """JPEGs that :func:`route_item` already sent to the device (routed and size-checked)."""
        return self._decode_jobs(list(enumerate(datas)), DecodedBatch({}, {}, {}, 0))

    def _decode_jobs(self, jobs: list, out: DecodedBatch) -> DecodedBatch:
        if self.device.type != "cuda":  # no device decoder: the CPU decoder, as in the CPU stream
            for i, data in jobs:
                self._cpu_decode(i, data, out)
            return out
        n_dev = 0
        for (i, data), img in zip(jobs, self._device_decode([d for _, d in jobs])):
            if img is None:  # nvJPEG refused it: the CPU decoder decodes it or says why not
                self._cpu_decode(i, data, out)
            else:
                out.images[i] = self._crop(img)
                n_dev += 1
        return out._replace(on_device=n_dev)
