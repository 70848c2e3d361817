"""Shared plumbing of the baselines: image loading, size handling, a linear classifier head."""
from __future__ import annotations

import os
from typing import Sequence

import numpy as np


def load_images(images) -> list[np.ndarray]:
    """Images as uint8 HxWx3 arrays, from arrays or paths (a [B,H,W,3] array counts as B images)."""
    if isinstance(images, np.ndarray) and images.ndim == 4:
        return list(images)
    out = []
    for im in images:
        if isinstance(im, (str, os.PathLike)):
            from ..io.decode import read_image
            im = read_image(im)
        out.append(np.asarray(im))
    return out


def to_float(img: np.ndarray) -> np.ndarray:
    a = img.astype(np.float64)
    return a / 255.0 if img.dtype == np.uint8 else a


def gray(img: np.ndarray) -> np.ndarray:
    """ITU-R BT.601 luma of a uint8 HxWx3 image, float64 in [0, 1]."""
    a = to_float(img)
    return a[..., 0] * 0.299 + a[..., 1] * 0.587 + a[..., 2] * 0.114


def fit_size(a: np.ndarray, n: int) -> np.ndarray:
    """A 2-D (or HxWxC) array brought to n x n: centre crop when larger, bilinear up-scale when smaller."""
    h, w = a.shape[:2]
    if h < n or w < n:
        import torch
        import torch.nn.functional as F

        t = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float64))
        t = t[None, None] if t.dim() == 2 else t.permute(2, 0, 1)[None]
        s = max(n / h, n / w)
        t = F.interpolate(t, size=(max(n, round(h * s)), max(n, round(w * s))), mode="bilinear", align_corners=False)
        a = t[0, 0].numpy() if a.ndim == 2 else t[0].permute(1, 2, 0).numpy()
        h, w = a.shape[:2]
    t, l = (h - n) // 2, (w - n) // 2
    return a[t:t + n, l:l + n]


class LinearHead:
    """Standardise each feature, then multinomial logistic regression (or ridge)."""

    def __init__(self, kind: str = "logistic", C: float = 1.0, max_iter: int = 1000):
        from sklearn.linear_model import LogisticRegression, RidgeClassifier
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        clf = LogisticRegression(C=C, max_iter=max_iter) if kind == "logistic" else RidgeClassifier(alpha=1.0)
        self.kind = kind
        self.model = make_pipeline(StandardScaler(), clf)

    def fit(self, X: np.ndarray, y: Sequence[str]) -> "LinearHead":
        self.model.fit(np.nan_to_num(X), np.asarray(y))
        self.classes_ = self.model.classes_
        return self

    def predict_score(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(labels, confidence): max class probability (logistic) or max softmax of the ridge scores."""
        X = np.nan_to_num(X)
        if self.kind == "logistic":
            p = self.model.predict_proba(X)
        else:
            d = self.model.decision_function(X)
            d = d if d.ndim == 2 else np.stack([-d, d], 1)
            p = np.exp(d - d.max(1, keepdims=True))
            p /= p.sum(1, keepdims=True)
        return self.classes_[p.argmax(1)], p.max(1)


class FeatureBaseline:
    """A per-image feature vector + a linear head. Subclasses define ``features(list of uint8 images)``."""

    name = "baseline"
    head_kind = "logistic"

    def features(self, images: list[np.ndarray]) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def fit(self, images, labels) -> "FeatureBaseline":
        imgs = load_images(images)
        self._fit_geometry(imgs)
        self.head = LinearHead(self.head_kind).fit(self.features(imgs), labels)
        return self

    def _fit_geometry(self, imgs: list[np.ndarray]) -> None:
        self.size = int(min(min(a.shape[:2]) for a in imgs))

    def predict_score(self, images) -> tuple[np.ndarray, np.ndarray]:
        return self.head.predict_score(self.features(load_images(images)))

    def predict(self, images) -> np.ndarray:
        return self.predict_score(images)[0]
