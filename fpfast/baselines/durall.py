"""Durall et al. 2020, "Watch your up-convolution" (re-implemented from the paper).

Grayscale -> 2-D DFT -> log power spectrum (log(|F|^2 + eps)) -> azimuthal average over rings of
the normalised radius rho = sqrt(fy^2 + fx^2) in cycles/pixel, rho in [0, sqrt(2)/2] split into
``bins`` equal rings (any image size maps to the same 1-D profile) -> standardise -> logistic
regression.
"""
from __future__ import annotations

import numpy as np

from .base import FeatureBaseline, gray


def azimuthal_profile(g: np.ndarray, bins: int) -> np.ndarray:
    h, w = g.shape
    p = np.log(np.abs(np.fft.fft2(g)) ** 2 / (h * w) + 1e-10)
    fy, fx = np.fft.fftfreq(h), np.fft.fftfreq(w)
    rho = np.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2)
    k = np.minimum((rho / (np.sqrt(2) / 2) * bins).astype(int), bins - 1).ravel()
    s = np.bincount(k, p.ravel(), bins)
    c = np.bincount(k, minlength=bins)
    prof = s / np.maximum(c, 1)
    for i in range(1, bins):  # an empty ring (small images) takes its lower neighbour
        if c[i] == 0:
            prof[i] = prof[i - 1]
    return prof


class Durall2020(FeatureBaseline):
    name = "Durall 2020 (azimuthal spectrum + logistic)"

    def __init__(self, bins: int = 24):
        self.bins = bins

    def features(self, images) -> np.ndarray:
        return np.stack([azimuthal_profile(gray(a), self.bins) for a in images])
