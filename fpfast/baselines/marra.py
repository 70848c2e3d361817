"""Marra et al. 2019, "Do GANs leave artificial fingerprints?" (re-implemented from the paper).

Residual r = x - denoise(x) per colour channel; a model's fingerprint is the mean residual of its
training images; an image goes to the model whose fingerprint has the highest normalised
cross-correlation (zero-mean, unit-norm inner product) with its residual. The paper denoises with
a wavelet denoiser; here a 3x3 median filter (edge-preserving, fast) stands in — stated in reports.
Images of another size are compared on the common centre region.
"""
from __future__ import annotations

import numpy as np
from scipy.ndimage import median_filter

from .base import load_images, to_float


def residual(img: np.ndarray) -> np.ndarray:
    a = to_float(img)
    return a - median_filter(a, size=(3, 3, 1), mode="mirror")


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
    name = "Marra 2019 (mean residual + NCC)"

    def fit(self, images, labels) -> "Marra2019":
        imgs = load_images(images)
        labels = np.asarray(labels)
        size = min(min(a.shape[:2]) for a in imgs)
        self.classes_ = np.unique(labels)
        self.fingerprints = []
        for c in self.classes_:
            rs = [_centre(residual(a), size, size) for a, l in zip(imgs, labels) if l == c]
            self.fingerprints.append(np.mean(rs, 0))
        return self

    def predict_score(self, images) -> tuple[np.ndarray, np.ndarray]:
        scores = np.array([[ncc(residual(a), f) for f in self.fingerprints] for a in load_images(images)])
        return self.classes_[scores.argmax(1)], scores.max(1)

    def predict(self, images) -> np.ndarray:
        return self.predict_score(images)[0]
