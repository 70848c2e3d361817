"""Marra et al. 2019, "Do GANs leave artificial fingerprints?" — the PRNU-style pipeline.

The paper estimates a GAN's fingerprint the way camera PRNU is estimated (the Binghamton
toolbox, whose Python port is polimi-ispl/prnu-python), and this follows that recipe:

* residual of an image I (uint8, per colour channel, in 0..255 units): 4-level ``db4`` wavelet
  decomposition; every detail sub-band filtered by the adaptive Wiener rule
  ``c * s² / (s² + max(0, min_w mean_w(c²) - s²))`` over square windows w of 3, 5, 7, 9
  (zero-padded), s = 5; approximation set to 0; inverse transform -> W;
* a model's fingerprint: the weighted estimate ``K = sum W·I/255 / (sum (t(I)·sat(I))² + 1)``
  (t: the intensity weight I/252 below 252, exp(-(I-252)²/6) above; sat: 0 on saturated flat
  pixels), then to gray (0.29893602, 0.58704307, 0.11402090), zero-mean per row and column in
  each of the four 2x2 phases, and Wiener-filtered in the DFT domain (the same adaptive rule on
  the orthonormal DFT magnitude, s = std(K));
* a query's residual: W of the image, gray, zero-meaned and DFT-Wiener-filtered the same way;
* attribution: the model whose fingerprint has the highest normalised cross-correlation
  (zero-mean, unit-norm inner product) with the query's residual, on the common centre region.

Needs PyWavelets (``pip install PyWavelets``, in the ``baselines`` extra).
"""
from __future__ import annotations

import numpy as np
from scipy.ndimage import uniform_filter

from .base import load_images

SIGMA = 5.0
LEVELS = 4
GRAY = np.array([0.29893602, 0.58704307, 0.11402090])


def _pywt():
    try:
        import pywt
    except ImportError:
        raise ImportError("the Marra 2019 baseline needs PyWavelets: pip install PyWavelets "
                          "(or pip install 'fpfast[baselines]')") from None
    return pywt


def wiener_adaptive(c: np.ndarray, noise_var: float) -> np.ndarray:
    """The toolbox's adaptive Wiener rule with the smallest local energy over 3/5/7/9 windows, over
    the last two axes (leading axes: a batch)."""
    e = c * c
    lead = (1,) * (c.ndim - 2)
    local = np.min([uniform_filter(e, size=lead + (w, w), mode="constant") for w in (3, 5, 7, 9)], axis=0)
    return c * noise_var / (np.maximum(local - noise_var, 0) + noise_var)


def noise_residual(img: np.ndarray, sigma: float = SIGMA, levels: int = LEVELS) -> np.ndarray:
    """W: the wavelet-Wiener noise residual of uint8 [..., H, W, 3] images, float64, 0..255 units
    (every channel and image of a batch filtered on its own)."""
    import warnings
    pywt = _pywt()
    a = np.moveaxis(np.asarray(img, np.float64), -1, -3)          # [..., 3, H, W]
    h, w = a.shape[-2:]
    with warnings.catch_warnings():  # small images: 'level too high' boundary warning, as in the toolbox
        warnings.simplefilter("ignore")
        coeffs = pywt.wavedec2(a, "db4", level=levels, axes=(-2, -1))
    coeffs[0] = np.zeros_like(coeffs[0])
    coeffs[1:] = [tuple(wiener_adaptive(d, sigma ** 2) for d in band) for band in coeffs[1:]]
    out = pywt.waverec2(coeffs, "db4", axes=(-2, -1))[..., :h, :w]
    return np.moveaxis(out, -3, -1)


def zero_mean_phases(g: np.ndarray) -> np.ndarray:
    """Remove the mean, then row and column means, separately in each of the four 2x2 phases
    (last two axes)."""
    g = g.copy()
    for dy in (0, 1):
        for dx in (0, 1):
            p = g[..., dy::2, dx::2]
            p = p - p.mean((-2, -1), keepdims=True)
            p = p - p.mean(-1, keepdims=True)
            g[..., dy::2, dx::2] = p - p.mean(-2, keepdims=True)
    return g


def wiener_dft(g: np.ndarray, sigma) -> np.ndarray:
    """DFT-domain Wiener filter of [..., H, W] with noise std ``sigma`` (a scalar or one per leading index)."""
    h, w = g.shape[-2:]
    F = np.fft.fft2(g)
    mag = np.abs(F) / np.sqrt(h * w)
    filt = wiener_adaptive(mag, np.asarray(sigma, np.float64)[..., None, None] ** 2)
    zero = mag == 0
    ratio = np.where(zero, 0.0, filt / np.where(zero, 1.0, mag))
    return np.real(np.fft.ifft2(F * ratio))


def _finish(rgb: np.ndarray) -> np.ndarray:
    g = zero_mean_phases(rgb @ GRAY)
    return wiener_dft(g, g.reshape(g.shape[:-2] + (-1,)).std(-1, ddof=1))


def intensity_weight(img: np.ndarray) -> np.ndarray:
    a = np.asarray(img, np.float64)
    return np.where(a < 252, a / 252.0, np.exp(-((a - 252.0) ** 2) / 6.0))


def saturation_mask(img: np.ndarray) -> np.ndarray:
    """0 where a channel sits at its maximum (> 250) on a pixel whose 4 neighbours share its value, else 1."""
    a = np.asarray(img).astype(np.int16)
    out = np.ones(a.shape)
    if a.max() < 250:
        return out
    dh = a - np.roll(a, 1, axis=1)
    dv = a - np.roll(a, 1, axis=0)
    flat = (dh == 0) | (dv == 0) | (np.roll(dh, -1, axis=1) == 0) | (np.roll(dv, -1, axis=0) == 0)
    for ch in range(a.shape[2]):
        m = a[..., ch].max()
        if m > 250:
            out[..., ch] = ~((a[..., ch] == m) & flat[..., ch])
    return out


def fingerprint(images: list[np.ndarray]) -> np.ndarray:
    """K of a model from its images (same size): the weighted PRNU-style estimate, gray, filtered."""
    num = np.zeros(images[0].shape)
    den = np.zeros(images[0].shape)
    for i in range(0, len(images), 256):
        b = np.stack(images[i:i + 256])
        num += (noise_residual(b) * b / 255.0).sum(0)
    for im in images:
        den += (intensity_weight(im) * saturation_mask(im)) ** 2
    return _finish(num / (den + 1.0))


def query_residual(img: np.ndarray) -> np.ndarray:
    """The filtered gray residual of one image [H, W, 3] or a batch [N, H, W, 3]."""
    return _finish(noise_residual(img))


def _centre(a: np.ndarray, h: int, w: int) -> np.ndarray:
    t, l = (a.shape[0] - h) // 2, (a.shape[1] - w) // 2
    return a[t:t + h, l:l + w]


def ncc(a: np.ndarray, b: np.ndarray) -> float:
    h, w = min(a.shape[0], b.shape[0]), min(a.shape[1], b.shape[1])
    a, b = _centre(a, h, w).ravel(), _centre(b, h, w).ravel()
    a, b = a - a.mean(), b - b.mean()
    den = np.linalg.norm(a) * np.linalg.norm(b)
    return float(a @ b / den) if den > 0 else 0.0


class Marra2019:
    name = "Marra 2019 (PRNU-style fingerprint + NCC)"

    def fit(self, images, labels) -> "Marra2019":
        _pywt()
        imgs = load_images(images)
        labels = np.asarray(labels)
        size = min(min(a.shape[:2]) for a in imgs)
        self.classes_ = np.unique(labels)
        self.fingerprints = [fingerprint([_centre(a, size, size) for a, l in zip(imgs, labels) if l == c])
                             for c in self.classes_]
        return self

    def predict_score(self, images) -> tuple[np.ndarray, np.ndarray]:
        imgs = load_images(images)
        res: list = [None] * len(imgs)
        by_shape: dict = {}
        for i, a in enumerate(imgs):
            by_shape.setdefault(a.shape, []).append(i)
        for idx in by_shape.values():              # one batched residual per image size
            for s in range(0, len(idx), 256):
                part = idx[s:s + 256]
                for i, r in zip(part, query_residual(np.stack([imgs[i] for i in part]))):
                    res[i] = r
        scores = np.array([[ncc(r, f) for f in self.fingerprints] for r in res])
        return self.classes_[scores.argmax(1)], scores.max(1)

    def predict(self, images) -> np.ndarray:
        return self.predict_score(images)[0]
