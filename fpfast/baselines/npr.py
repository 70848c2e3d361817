"""NPR, Tan et al. 2024, "Rethinking the up-sampling operations in CNN-based generative network"
(re-implemented; the paper feeds NPR to a CNN, here its statistics go to a linear classifier).

NPR r = x - up(down(x)), nearest down/up-sampling by 2 (r = 0 on the anchor pixel of every 2x2
cell). Features: per channel mean |r|, std and excess kurtosis of r over the three non-anchor
positions (9); the mean r^2 (over channels) at each of the three non-anchor positions of the
2x2 cell, divided by their sum (3); the same at the 16 positions of the 4x4 cell (16); the log
radial power spectrum of the gray NPR in 12 normalised rings (12). 40 numbers, any image size.
"""
from __future__ import annotations

import numpy as np

from .base import FeatureBaseline, to_float


def radial_profile(g: np.ndarray, bins: int) -> np.ndarray:
    """log of the mean power |FFT2(g)|^2 / (h w) over ``bins`` equal rings of the normalised radius
    sqrt(fy^2 + fx^2) in [0, sqrt(2)/2] cycles/pixel (DC in ring 0); an empty ring takes its lower
    neighbour's value."""
    h, w = g.shape
    p = np.log(np.abs(np.fft.fft2(g)) ** 2 / (h * w) + 1e-10)
    fy, fx = np.fft.fftfreq(h), np.fft.fftfreq(w)
    rho = np.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2)
    k = np.minimum((rho / (np.sqrt(2) / 2) * bins).astype(int), bins - 1).ravel()
    s = np.bincount(k, p.ravel(), bins)
    c = np.bincount(k, minlength=bins)
    prof = s / np.maximum(c, 1)
    for i in range(1, bins):
        if c[i] == 0:
            prof[i] = prof[i - 1]
    return prof


def npr(img: np.ndarray) -> np.ndarray:
    a = to_float(img)
    h, w = a.shape[:2]
    up = np.repeat(np.repeat(a[::2, ::2], 2, 0), 2, 1)[:h, :w]
    return a - up


def npr_features(img: np.ndarray) -> np.ndarray:
    r = npr(img)
    h, w = r.shape[:2]
    keep = np.ones((h, w), bool)
    keep[::2, ::2] = False
    v = r[keep]  # [n, 3]
    mu, sd = v.mean(0), v.std(0)
    kurt = np.where(sd > 1e-12, ((v - mu) ** 4).mean(0) / np.maximum(sd, 1e-12) ** 4 - 3, 0)
    e = (r * r).mean(2)
    p2 = np.array([e[0::2, 1::2].mean(), e[1::2, 0::2].mean(), e[1::2, 1::2].mean()])
    p2 = p2 / max(p2.sum(), 1e-20)
    p4 = np.array([e[i::4, j::4].mean() for i in range(4) for j in range(4)])
    p4 = p4 / max(p4.sum(), 1e-20)
    rad = radial_profile(r.mean(2), 12)
    return np.concatenate([np.abs(v).mean(0), sd, kurt, p2, p4, rad])


class NPR2024(FeatureBaseline):
    name = "NPR 2024 (statistics + logistic)"

    def features(self, images) -> np.ndarray:
        return np.stack([npr_features(a) for a in images])
