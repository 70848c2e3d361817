"""Durall et al. 2020, "Watch your up-convolution" (cc-hpc-itwm/UpConv).

Follows the released ``radialProfile.azimuthalAverage`` and the spectrum code of
``train_spectrum.py``: gray = 0.2989 R + 0.5870 G + 0.1140 B -> ``fftshift(fft2(gray)) + 1e-8``
-> ``20 ln|F|`` -> the mean over 1-pixel integer rings ``floor(r)`` of the radius r from
((W-1)/2, (H-1)/2), keeping rings 1 .. R-1 (the centre ring, which holds DC, and the outermost,
partial ring are dropped, as the released cumulative-sum differences do) -> min-max scaled to
[0, 1] per image -> logistic regression. Deliberate difference: a query of another size has a
profile of another length; it is linearly resampled to the training length.
"""
from __future__ import annotations

import numpy as np

from .base import FeatureBaseline


def azimuthal_profile(g: np.ndarray) -> np.ndarray:
    """Mean of ``g`` over integer rings 1 .. R-1 around ((W-1)/2, (H-1)/2) (see the module docstring)."""
    h, w = g.shape
    y, x = np.indices((h, w))
    ring = np.hypot(x - (w - 1) / 2.0, y - (h - 1) / 2.0).astype(int).ravel()
    sums = np.bincount(ring, g.ravel())
    counts = np.bincount(ring)
    keep = np.flatnonzero(counts)[1:-1]       # rings present, without the first and the last
    return sums[keep] / counts[keep]


def spectrum_profile(img: np.ndarray) -> np.ndarray:
    a = np.asarray(img, np.float64)
    gray = 0.2989 * a[..., 0] + 0.5870 * a[..., 1] + 0.1140 * a[..., 2]
    f = np.fft.fftshift(np.fft.fft2(gray)) + 1e-8
    p = azimuthal_profile(20 * np.log(np.abs(f)))
    span = p.max() - p.min()
    return (p - p.min()) / span if span > 0 else np.zeros_like(p)


def resample(p: np.ndarray, n: int) -> np.ndarray:
    if len(p) == n:
        return p
    return np.interp(np.linspace(0, 1, n), np.linspace(0, 1, len(p)), p)


class Durall2020(FeatureBaseline):
    name = "Durall 2020 (azimuthal spectrum + logistic)"

    def _fit_geometry(self, imgs) -> None:
        super()._fit_geometry(imgs)
        self.bins = len(azimuthal_profile(np.zeros((self.size, self.size))))

    def features(self, images) -> np.ndarray:
        return np.stack([resample(spectrum_profile(a), self.bins) for a in images])
