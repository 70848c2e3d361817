"""Each paper baseline pinned against its authors' recipe, transcribed in a few lines from the
released code's steps (re-written here, not copied) and run on fixed inputs."""
from __future__ import annotations

import numpy as np
import pytest
import torch

RNG = np.random.default_rng(7)
IMG = RNG.integers(0, 256, (32, 32, 3)).astype(np.uint8)
IMG_ODD = RNG.integers(0, 256, (20, 24, 3)).astype(np.uint8)


def test_frank_is_the_per_channel_rgb_dct_of_the_released_code():
    from scipy import fftpack

    from fpfast.baselines.frank import dct_features
    # GANDCTAnalysis: load RGB (0..255), dct over axis 0 then axis 1 (ortho), log(|c| + 1e-12)
    a = np.asarray(IMG).astype(np.float64)
    a = fftpack.dct(a, type=2, norm="ortho", axis=0)
    a = fftpack.dct(a, type=2, norm="ortho", axis=1)
    want = np.log(np.abs(a) + 1e-12)
    got = dct_features(IMG, 32)
    assert got.shape == (32 * 32 * 3,)
    np.testing.assert_allclose(got, want.ravel(), rtol=0, atol=1e-9)  # two float64 DCT paths


def _azimuthal_sorted(image):
    """The released azimuthal average: sort radii, integer rings, cumulative-sum differences."""
    y, x = np.indices(image.shape)
    c = ((x.max() - x.min()) / 2.0, (y.max() - y.min()) / 2.0)
    r = np.hypot(x - c[0], y - c[1])
    order = np.argsort(r.flat)
    r_int = r.flat[order].astype(int)
    vals = image.flat[order]
    change = np.where(r_int[1:] - r_int[:-1])[0]
    counts = change[1:] - change[:-1]
    cs = np.cumsum(vals, dtype=float)
    return (cs[change[1:]] - cs[change[:-1]]) / counts


@pytest.mark.parametrize("img", [IMG, IMG_ODD], ids=["32x32", "20x24"])
def test_durall_follows_the_released_spectrum_and_rings(img):
    from fpfast.baselines.durall import spectrum_profile
    a = img.astype(np.float64)
    gray = 0.2989 * a[..., 0] + 0.5870 * a[..., 1] + 0.1140 * a[..., 2]
    f = np.fft.fftshift(np.fft.fft2(gray)) + 1e-8
    prof = _azimuthal_sorted(20 * np.log(np.abs(f)))
    want = (prof - prof.min()) / (prof.max() - prof.min())
    np.testing.assert_allclose(spectrum_profile(img), want, rtol=0, atol=1e-9)  # sums in another order


def test_marra_follows_the_prnu_recipe():
    pywt = pytest.importorskip("pywt")
    from scipy.ndimage import uniform_filter

    from fpfast.baselines import marra
    imgs = [RNG.integers(0, 256, (32, 32, 3)).astype(np.uint8) for _ in range(3)]

    def wiener(c, s2):          # toolbox WaveNoise: min over 3/5/7/9 windows of the local energy
        v = np.stack([uniform_filter(c ** 2, k, mode="constant") for k in (3, 5, 7, 9)], -1) - s2
        return c * s2 / ((v + np.abs(v)) / 2).min(-1).__add__(s2)

    def noise(im):              # NoiseExtract: db4, 4 levels, approximation zeroed, sigma 5
        out = np.zeros(im.shape)
        for ch in range(3):
            with pytest.warns(UserWarning):
                co = pywt.wavedec2(im[..., ch].astype(np.float64), "db4", level=4)
            co[0][...] = 0
            co[1:] = [tuple(wiener(d, 25.0) for d in lvl) for lvl in co[1:]]
            out[..., ch] = pywt.waverec2(co, "db4")[:32, :32]
        return out

    def zero_mean_total(g):     # ZeroMean 'both' (means from the channel-centred array) per 2x2 phase
        g = g.copy()
        for dy in (0, 1):
            for dx in (0, 1):
                p = g[dy::2, dx::2] - g[dy::2, dx::2].mean()
                g[dy::2, dx::2] = p - p.mean(1, keepdims=True) - p.mean(0, keepdims=True)
        return g

    def wdft(g):
        s = g.std(ddof=1)
        F = np.fft.fft2(g)
        m = np.abs(F / np.sqrt(g.size))
        mf = wiener(m, s * s)
        return np.real(np.fft.ifft2(F * mf / m))   # no zero magnitudes on random input

    gray = np.array([0.29893602, 0.58704307, 0.11402090])
    # weighted estimate; images below 250, so the intensity weight is I/252 and no pixel is saturated
    small = [np.minimum(im, 249).astype(np.uint8) for im in imgs]
    num = sum(noise(im) * im / 255.0 for im in small)
    den = sum((im / 252.0) ** 2 for im in small)
    K = wdft(zero_mean_total((num / (den + 1)) @ gray))
    np.testing.assert_allclose(marra.fingerprint(small), K, rtol=0, atol=1e-9)   # float64 throughout
    np.testing.assert_allclose(marra.query_residual(small[0]), wdft(zero_mean_total(noise(small[0]) @ gray)),
                               rtol=0, atol=1e-9)


def test_marra_saturation_mask():
    from fpfast.baselines.marra import saturation_mask
    im = np.full((6, 6, 3), 100, np.uint8)
    im[2:4, 2:4, 0] = 255          # a flat saturated patch in red
    m = saturation_mask(im)
    assert (m[2:4, 2:4, 0] == 0).all() and m[..., 0].sum() == 36 - 4
    assert (m[..., 1:] == 1).all()
    assert (saturation_mask(np.full((4, 4, 3), 10, np.uint8)) == 1).all()


def test_manifpt_freq_is_the_released_transform():
    from fpfast.projectors.spaces import freq_artifact, manifpt_freq_image
    # gm-fpts xform_freq_rgb: image /255 (h,w,3) -> per-channel |fftshift(fft2)| -> log(. + 1e-12)
    a = IMG / 255.0
    f = np.fft.fftshift(np.fft.fft2(a, axes=(0, 1)), axes=(0, 1))
    want = np.log(np.abs(f) + 1e-12).transpose(2, 0, 1)
    x = torch.from_numpy(a.transpose(2, 0, 1).copy())[None]
    np.testing.assert_allclose(manifpt_freq_image(x)[0].numpy(), want, rtol=0, atol=1e-9)  # float64 FFTs
    nb = torch.from_numpy((IMG_ODD[:20, :20] / 255.0).transpose(2, 0, 1).copy())[None]
    xx = x[..., :20, :20]
    np.testing.assert_allclose(freq_artifact(xx, nb, "manifpt").numpy(),
                               (manifpt_freq_image(xx) - manifpt_freq_image(nb)).numpy())
    with pytest.raises(ValueError, match="recipe"):
        freq_artifact(xx, nb, "other")


@pytest.mark.parametrize("space", ["rgb", "freq", "encoder"])
def test_manifpt_baseline_attributes_planted_patterns(tmp_path, space):
    from cli_helpers import model_image
    from fpfast.analyze.encoders import TinyEncoder
    from fpfast.baselines import ManiFPT2024
    from fpfast.projectors import build_manifold
    refs = np.stack([model_image(7, 900 + i) for i in range(16)])
    build_manifold(refs, tmp_path / "ref", 32)
    periods = {"a": 2, "b": 3, "c": 4}
    x = [model_image(p, 10 * p + i) for p in periods.values() for i in range(12)]
    y = [m for m in periods for _ in range(12)]
    xt = [model_image(p, 500 + 10 * p + i) for p in periods.values() for i in range(6)]
    yt = np.array([m for m in periods for _ in range(6)])
    torch.manual_seed(0)
    m = ManiFPT2024(tmp_path / "ref", space, encoder=TinyEncoder() if space == "encoder" else None, epochs=8)
    pred, score = m.fit(x, y).predict_score(xt + [xt[0][:20, :20]])   # a smaller image is up-scaled
    assert len(pred) == 19 and np.isfinite(score).all()
    assert (pred[:18] == yt).mean() > 0.6   # chance 1/3
