"""The GPU decode stage of the runner: every input once, the CPU stage's rows and error rows.

On the CPU the stage runs with its decoder on the CPU (the same routing, grouping and fallback
code, the CPU decoder's pixels), so its rows must equal the CPU stage's exactly; on a GPU the
JPEGs go through nvJPEG and the vectors agree within its rounding."""
from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from fpfast.device_stage import device_decode_stage
from fpfast.io.device_decode import jpeg_route
from fpfast.io.sources import Item
from fpfast.jobs.collect import CollectWriter
from fpfast.jobs.mappers import fingerprint_mapper
from fpfast.pipeline import run_stream
from fpfast.spec import FingerprintSpec


def _img(seed, h=40, w=40):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    base = np.sin(xx / 4.0 + seed)[..., None] * 50 + 128 + rng.normal(0, 6, (h, w, 3))
    return np.clip(base, 0, 255).astype(np.uint8)


def _encode(a, fmt, **kw):
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format=fmt, **kw)
    return buf.getvalue()


def _items():
    items = []
    for i in range(23):
        kind = i % 6
        if kind == 0:
            data = _encode(_img(i), "PNG")
        elif kind == 1:
            data = _encode(_img(i), "JPEG", quality=85)[:-60]          # truncated scan
        elif kind == 2:
            data = _encode(_img(i, 48, 36), "JPEG", quality=92)        # another shape
        elif kind == 3:
            data = _encode(_img(i), "JPEG", quality=90, progressive=True)
        else:
            data = _encode(_img(i), "JPEG", quality=95, subsampling=0)
        items.append(Item(f"{i:03d}.{'png' if kind == 0 else 'jpg'}", data))
    items.insert(5, Item("empty.jpg", b""))
    return items


def _rows(spec, stage=None, device="cpu", shard_size=1 << 62, batch_size=4):
    w = CollectWriter()
    w.shard_size = shard_size
    run_stream(_items(), fingerprint_mapper(spec, device=device), w, spec=spec, batch_size=batch_size,
               decode_stage=stage)
    return w.rows


@pytest.mark.parametrize("shard_size", [7, 1 << 62])
@pytest.mark.parametrize("geometry", ["crop", "resize"])
def test_stage_with_a_cpu_decoder_gives_the_cpu_stage_rows(shard_size, geometry):
    spec = FingerprintSpec(size=32, geometry=geometry)
    ref = _rows(spec, shard_size=shard_size)
    got = _rows(spec, device_decode_stage(spec, batch_size=4, device="cpu"), shard_size=shard_size)
    assert [r["path"] for r in got] == [it.key for it in _items()]   # every input once, in order
    assert [r["path"] for r in got] == [r["path"] for r in ref]
    for a, b in zip(got, ref):
        assert a["error"] == b["error"], a["path"]
        if not a["error"]:
            # same pixels; the batches differ in make-up and layout (CHW views), which changes the
            # float32 summation order of the kernel: agreement to float32 rounding
            np.testing.assert_allclose(a["vector"], b["vector"], rtol=1e-5, atol=1e-6, err_msg=a["path"])
    assert sum(1 for r in got if r["error"]) == 5  # 4 truncated + the empty file


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_stage_on_the_gpu_decodes_jpegs_there_and_keeps_every_row():
    pytest.importorskip("torchvision")
    spec = FingerprintSpec(size=32)
    seen = []
    stage = device_decode_stage(spec, batch_size=4, device="cuda")

    def spy(indexed, shard_of, timings):
        for x in stage(indexed, shard_of, timings):
            if hasattr(x, "images"):
                seen.append(x.images.device.type)
            yield x
    ref = _rows(spec, device="cuda")
    got = _rows(spec, spy, device="cuda")
    assert "cuda" in seen and "cpu" in seen  # JPEG batches decoded on the GPU, PNG/progressive on the CPU
    assert [(r["path"], r["error"]) for r in got] == [(r["path"], r["error"]) for r in ref]
    on_device = {it.key for it in _items() if jpeg_route(it.payload) == "device"}
    for a, b in zip(got, ref):
        if a["error"]:
            continue
        assert np.isfinite(a["vector"]).all(), a["path"]
        if a["path"] not in on_device:
            # decoded on the CPU in both stages: the same pixels, float32 summation order aside
            np.testing.assert_allclose(a["vector"], b["vector"], rtol=1e-5, atol=1e-6, err_msg=a["path"])
    # nvJPEG's pixels are NOT libjpeg-turbo's (on an H200: mean 2.4 levels, 21 % of pixels differ
    # at 4:2:0, benchmarks/results/e2e_gpu.md), so device-decoded vectors are not compared here


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without a GPU")
def test_decode_cuda_without_a_gpu_is_a_usage_error(tmp_path):
    from click.testing import CliRunner
    from fpfast.cli import cli
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(_img(0)).save(src / "a.png")
    r = CliRunner().invoke(cli, ["extract", str(src), "--out", str(tmp_path / "o"), "--decode", "cuda"])
    assert r.exit_code == 2, r.output
    assert "--decode cuda" in r.output and "no CUDA GPU" in r.output
    assert not (tmp_path / "o").exists()


def test_a_gallery_remembers_its_decoder_and_refuses_queries_decoded_elsewhere(tmp_path):
    """nvJPEG and the CPU decoder give different pixels, so a gallery enrolled with one refuses
    queries decoded with the other (exit 2, saying which to use); the choice survives save/load."""
    from click.testing import CliRunner
    from fpfast.cli import cli
    from fpfast.gallery import Gallery
    src = tmp_path / "train"
    for m, seed in (("a", 0), ("b", 100)):
        (src / m).mkdir(parents=True)
        for i in range(4):
            Image.fromarray(_img(seed + i)).save(src / m / f"{i}.png")
    g = str(tmp_path / "g")
    r = CliRunner().invoke(cli, ["enroll", g, "--from-folders", str(src), "-q"])
    assert r.exit_code == 0, r.output
    assert Gallery.load(g).decode == "cpu"
    gal = Gallery.load(g)
    gal.decode = "cuda"  # as if enrolled with --decode cuda on a GPU machine
    gal.save()
    assert Gallery.load(g).decode == "cuda"
    r = CliRunner().invoke(cli, ["attribute", str(src / "a"), "--gallery", g, "--out", str(tmp_path / "o.csv")])
    assert r.exit_code == 2, r.output
    assert "--decode cuda" in r.output and not (tmp_path / "o.csv").exists()


def _sides(spec, stage=None):
    from fpfast.jobs.mappers import image_sides
    w = CollectWriter()

    def mapper(batch, keys, sides=None):
        return {"side": image_sides(batch, sides), "shown": [int(min(batch.shape[1:3]))] * len(keys)}
    mapper.reads_sides = True
    run_stream(_items(), mapper, w, spec=spec, batch_size=4, decode_stage=stage)
    return {r["path"]: (r["side"], r["shown"]) for r in w.rows if not r["error"]}


def test_both_stages_hand_a_side_reading_mapper_each_images_side_before_the_crop():
    """A gallery of large images compares a query's own size with its images' (views.Router):
    the decoders (simplejpeg, Pillow, the device stage's header read) say it, the batches carry
    it past the crop."""
    spec = FingerprintSpec(size=32)
    payload = {it.key: it.payload for it in _items()}
    for stage in (None, device_decode_stage(spec, batch_size=4, device="cpu")):
        got = _sides(spec, stage)
        assert len(got) == 19   # 24 inputs less 4 truncated and the empty one
        assert {k: v[0] for k, v in got.items()} == {k: min(Image.open(io.BytesIO(payload[k])).size) for k in got}
        assert {v[0] for v in got.values()} == {40, 36} and {v[1] for v in got.values()} == {32}
