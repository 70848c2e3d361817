"""GPU JPEG decode: which files go to nvJPEG (header parsing, on the CPU), and on a GPU that the
device path gives the CPU decoder's images (within nvJPEG's rounding), crops and error rows."""
from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from fpfast.io.decode import decode_image
from fpfast.io.device_decode import DeviceDecoder, jpeg_header, jpeg_route
from fpfast.spec import FingerprintSpec


def _photo(h=48, w=40, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    base = np.stack([np.sin(xx / 5.0 + c) * 60 + np.cos(yy / 7.0) * 50 + 128 for c in range(3)], -1)
    return np.clip(base + rng.normal(0, 8, (h, w, 3)), 0, 255).astype(np.uint8)


def _jpeg(a: np.ndarray, mode="RGB", **kw) -> bytes:
    buf = io.BytesIO()
    img = Image.fromarray(a)
    if mode != "RGB":
        img = img.convert(mode)
    img.save(buf, format="JPEG", **kw)
    return buf.getvalue()


def _png(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    return buf.getvalue()


def test_header_of_baseline_colour_jpeg():
    h = jpeg_header(_jpeg(_photo(48, 40), quality=90))
    assert (h.sof, h.precision, h.height, h.width, h.components, h.exif) == (0xC0, 8, 48, 40, 3, False)
    assert jpeg_route(_jpeg(_photo(), quality=90)) == "device"


def test_header_of_gray_jpeg_goes_to_device():
    data = _jpeg(_photo(), mode="L", quality=90)
    assert jpeg_header(data).components == 1
    assert jpeg_route(data) == "device"


@pytest.mark.parametrize("case", ["progressive", "cmyk", "exif", "png", "truncated_header",
                                  "truncated_scan", "empty"])
def test_files_nvjpeg_does_not_take_go_to_cpu(case):
    a = _photo()
    if case == "progressive":
        data = _jpeg(a, progressive=True)
        assert jpeg_header(data).sof == 0xC2
    elif case == "cmyk":
        data = _jpeg(a, mode="CMYK")
        assert jpeg_header(data).components == 4
    elif case == "exif":
        exif = Image.Exif()
        exif[0x0112] = 6
        data = _jpeg(a, exif=exif.tobytes())
        assert jpeg_header(data).exif
    elif case == "png":
        data = _png(a)
        assert jpeg_header(data) is None
    elif case == "truncated_header":
        data = _jpeg(a)[:30]
        assert jpeg_header(data) is None
    elif case == "truncated_scan":  # header whole, scan cut: libjpeg refuses, nvJPEG might not
        full = _jpeg(a)
        data = full[:len(full) - 40]
        assert jpeg_header(data).sof == 0xC0
    else:
        data = b""
    assert jpeg_route(data) == "cpu"


def _items():
    a = _photo(48, 40, 1)
    exif = Image.Exif()
    exif[0x0112] = 6
    return [("a.jpg", _jpeg(a, quality=95, subsampling=0)),
            ("b.png", _png(_photo(36, 52, 2))),
            ("broken.jpg", _jpeg(a)[:200]),
            ("cut.jpg", _jpeg(a)[:-40]),
            ("empty.jpg", b""),
            ("rot.jpg", _jpeg(_photo(40, 56, 3), exif=exif.tobytes())),
            ("small.jpg", _jpeg(_photo(8, 8, 4))),
            ("gray.jpg", _jpeg(_photo(40, 40, 5), mode="L", quality=95))]


def _check_against_cpu(out, items, spec, max_mean_diff: float):
    for i, (key, data) in enumerate(items):
        try:
            ref, _ = decode_image(data, spec)
        except ValueError as e:
            assert out.errors[i] == str(e), key
            assert i not in out.images
            continue
        got = out.images[i].cpu().permute(1, 2, 0).numpy()
        assert got.shape == ref.shape, key
        diff = np.abs(got.astype(np.int32) - ref.astype(np.int32))
        assert diff.mean() <= max_mean_diff, (key, diff.mean(), diff.max())


def test_cpu_device_decoder_matches_decode_image_exactly():
    spec = FingerprintSpec(size=32)
    items = _items()
    out = DeviceDecoder(spec, device="cpu").decode(items)
    assert out.on_device == 0
    assert set(out.images) | set(out.errors) == set(range(len(items)))  # every input once
    assert not set(out.images) & set(out.errors)
    _check_against_cpu(out, items, spec, max_mean_diff=0.0)  # same decoder: identical pixels
    assert "EXIF orientation 6 applied" in out.notes[5]  # rot.jpg


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_nvjpeg_batch_matches_cpu_decode_and_keeps_error_rows():
    pytest.importorskip("torchvision")
    spec = FingerprintSpec(size=32)
    items = _items()
    out = DeviceDecoder(spec, device="cuda").decode(items)
    assert out.on_device == 2  # a.jpg and gray.jpg; the corrupt one falls back to the CPU's error
    assert all(t.is_cuda and t.dtype == torch.uint8 for t in out.images.values())
    assert set(out.images) | set(out.errors) == set(range(len(items)))
    # nvJPEG's IDCT rounds differently from libjpeg-turbo: a mean of at most 1 level per pixel at
    # 4:4:4 q95 (the measured figures are in benchmarks/results/decode_gpu.md)
    _check_against_cpu(out, items, spec, max_mean_diff=1.0)


def test_a_failing_nvjpeg_batch_is_split_until_the_bad_files_stand_alone():
    """nvJPEG returns nothing for a list with one corrupt member: the decoder halves the list and
    hands only the refused files back (None) for the CPU decoder to judge."""
    calls = []

    def fake_decode_jpeg(tensors, mode, device):
        calls.append(len(tensors))
        if any(bytes(t[:3].tolist()) == b"BAD" for t in tensors):
            raise RuntimeError("nvjpeg: corrupt")
        return [torch.full((3, 2, 2), len(t), dtype=torch.uint8) for t in tensors]

    dec = DeviceDecoder(FingerprintSpec(size=32), device="cpu")
    dec._decode_jpeg, dec._mode = fake_decode_jpeg, type("M", (), {"RGB": "RGB"})
    datas = [b"ok%03d" % i for i in range(7)]
    datas[2], datas[5] = b"BAD1", b"BAD22"
    got = dec._device_decode(datas)
    assert [g is None for g in got] == [i in (2, 5) for i in range(7)]
    assert all(int(g[0, 0, 0]) == len(d) for g, d in zip(got, datas) if g is not None)
    assert calls[0] == 7 and max(calls[1:]) < 7
