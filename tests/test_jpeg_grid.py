"""The JPEG grid read from pixels (fpfast.gallery.jpeg_grid): the torch score against a scipy
computation, what it tells apart, and how the stream's flags use it."""
import io

import numpy as np
import pytest
import scipy.fft
import torch
from PIL import Image

from fpfast.gallery.jpeg_grid import LUMA, MIN_SIDE, THRESHOLD, WINDOW, ZERO, grid_score, refine_flags


def reference_score(img: np.ndarray) -> float:
    """scipy / numpy, float64: the same definition, block by block."""
    h0, w0 = img.shape[:2]
    nh, nw = (min(h0, WINDOW) - 7) // 8, (min(w0, WINDOW) - 7) // 8  # blocks per phase and side
    t, l = (h0 - (8 * nh + 7)) // 2, (w0 - (8 * nw + 7)) // 2      # the centred window they cover
    x = img[t:t + 8 * nh + 7, l:l + 8 * nw + 7].astype(np.float64)
    y = x[..., 0] * LUMA[0] + x[..., 1] * LUMA[1] + x[..., 2] * LUMA[2]
    shares = []
    for oy in range(8):
        for ox in range(8):
            zero = total = 0
            for i in range(nh):
                for j in range(nw):
                    blk = y[oy + 8 * i:oy + 8 * i + 8, ox + 8 * j:ox + 8 * j + 8]
                    f = scipy.fft.dctn(blk, norm="ortho").ravel()[1:]  # AC
                    zero += int((np.abs(f) < ZERO).sum())
                    total += f.size
            shares.append(zero / total)
    return float(np.max(shares) - np.median(shares))


def _photo(h, w, seed=0):
    """A smooth image with texture: what a camera or a generator gives, never compressed."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = 128 + 60 * np.sin(xx / 7.0 + seed)[..., None] * np.cos(yy / 11.0)[..., None] * np.array([1, 0.8, 0.6])
    return np.clip(base + rng.normal(0, 6, (h, w, 3)), 0, 255).astype(np.uint8)


def _jpeg(img, q):
    b = io.BytesIO()
    Image.fromarray(img).save(b, format="JPEG", quality=q)
    return np.asarray(Image.open(b).convert("RGB"))


@pytest.mark.parametrize("shape", [(32, 41), (64, 64), (40, 57), (150, 140)])
def test_grid_score_matches_scipy(shape):
    imgs = [_photo(*shape, seed=s) for s in range(2)] + [_jpeg(_photo(*shape, seed=2), 85)]
    got = grid_score(torch.from_numpy(np.stack(imgs))).numpy()
    want = np.array([reference_score(im) for im in imgs])
    # float32 convolutions against float64 blocks: a coefficient within ~1e-4 of ZERO may count
    # differently, a handful of counts at most
    np.testing.assert_allclose(got, want, atol=0.01)


def test_a_png_resaved_from_a_jpeg_carries_the_grid_wherever_it_was_cropped():
    clean = [_photo(72, 72, seed=s) for s in range(4)]
    for q in (70, 85, 90):
        jp = [_jpeg(im, q) for im in clean]
        for oy, ox in ((0, 0), (3, 5), (7, 1)):  # cropped after compression: another grid phase
            s = grid_score(torch.from_numpy(np.stack([im[oy:oy + 64, ox:ox + 64] for im in jp]))).numpy()
            assert (s > THRESHOLD).all(), (q, oy, ox, s)
    s = grid_score(torch.from_numpy(np.stack([im[3:67, 5:69] for im in clean]))).numpy()
    assert (s < THRESHOLD).all(), s


def test_grid_score_says_nothing_of_small_or_float_images():
    assert np.isnan(grid_score(torch.zeros(2, MIN_SIDE - 1, 40, 3, dtype=torch.uint8)).numpy()).all()
    assert np.isnan(grid_score(torch.zeros(2, 40, 40, 3)).numpy()).all()  # a resized float batch
    assert grid_score(torch.zeros(0, 40, 40, 3, dtype=torch.uint8)).shape == (0,)


def test_refine_flags_reads_only_lossless_files_where_it_matters():
    jp = _jpeg(_photo(64, 64, seed=5), 80)
    clean = _photo(64, 64, seed=6)
    batch = torch.from_numpy(np.stack([jp, clean, jp, jp, jp]))
    flags = [0.0, 0.0, 1.0, float("nan"), 0.0]  # .png, .png, .jpg, no name, .png
    got = refine_flags(flags, batch)
    assert got[:3] == [1.0, 0.0, 1.0] and np.isnan(got[3]) and got[4] == 1.0
    asked = []

    def matters(idx):
        asked.append(idx.tolist())
        return idx != 4  # the last one's flag changes no answer: not read, left as its name says
    got = refine_flags(flags, batch, matters)
    assert asked == [[0, 1, 4]] and got[0] == 1.0 and got[1] == 0.0 and got[4] == 0.0
    assert refine_flags(flags, batch, lambda idx: None)[0] == 0.0  # no router, no detector: by name


def test_query_columns_read_the_grid_for_a_gallery_that_needs_it():
    from fpfast.jobs.mappers import with_query_columns
    from fpfast.jobs.options import StreamOptions
    from fpfast.spec import load_spec

    class Needs:  # a gallery whose answers every flag changes
        def file_type_matters(self, vectors, sides, condition):
            assert len(vectors) == len(sides) == 2 and condition is None
            return np.ones(len(vectors), bool)
    spec, opts = load_spec("default"), StreamOptions(device="cpu", quiet=True)
    batch = torch.from_numpy(np.stack([_jpeg(_photo(64, 64, seed=7), 85), _photo(64, 64, seed=8)]))
    keys = ["a/resaved.png", "a/clean.png"]
    assert with_query_columns(spec, opts)(batch, keys)["jpeg"] == [0.0, 0.0]  # by name alone
    assert with_query_columns(spec, opts, None, Needs())(batch, keys)["jpeg"] == [1.0, 0.0]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_grid_score_runs_where_the_batch_is():
    imgs = [_jpeg(_photo(64, 64, seed=s), 85) for s in range(3)] + [_photo(64, 64, seed=9)]
    cpu = torch.from_numpy(np.stack(imgs))
    gpu = cpu.cuda()
    np.testing.assert_allclose(grid_score(gpu).numpy(), grid_score(cpu).numpy(), atol=0.01)
    assert refine_flags([0.0] * 4, gpu) == [1.0, 1.0, 1.0, 0.0]
