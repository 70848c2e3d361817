"""Synthetic fingerprint clusters for the gallery tests (no images, no downloads)."""
from __future__ import annotations

import numpy as np

from fpfast.spec import FingerprintSpec

DIM = FingerprintSpec().dim


class Clusters:
    """``n_models`` Gaussian clusters in ``dim`` dimensions: centre ~ N(0, sep^2 / dim) per
    coordinate, samples = centre + N(0, 1) per coordinate, plus per-dimension offsets/scales so
    that standardisation has something to do."""

    def __init__(self, n_models: int = 6, dim: int = DIM, sep: float = 12.0, seed: int = 0):
        self.rng = np.random.default_rng(seed)
        self.dim = dim
        self.centres = self.rng.normal(size=(n_models, dim)) * sep / np.sqrt(dim) * 3
        self.offset = self.rng.normal(size=dim) * 5
        self.scale = np.exp(self.rng.normal(size=dim))
        self.names = [f"model{j}" for j in range(n_models)]

    def sample(self, j: int, n: int) -> np.ndarray:
        x = self.centres[j] + self.rng.normal(size=(n, self.dim))
        return (x * self.scale + self.offset).astype(np.float32)

    def enroll(self, gallery, models, n_each: int) -> None:
        """Add ``n_each`` samples of each of ``models`` (indices) to ``gallery``, in order."""
        for j in models:
            gallery.add(self.names[j], self.sample(j, n_each))

    def batch(self, models, n_each: int):
        xs = [self.sample(j, n_each) for j in models]
        return np.concatenate(xs), [self.names[j] for j in models for _ in range(n_each)]


def brute_force(x: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Squared L2 distances [Q, N] in float64."""
    x = x.astype(np.float64)
    q = q.astype(np.float64)
    return ((q[:, None, :] - x[None, :, :]) ** 2).sum(-1)


def assert_knn_exact(d, i, x, q, k, rtol=1e-4):
    """``(d, i)`` are the k nearest rows of ``x`` for each row of ``q``: every returned id is at
    its reported distance, and the returned distances are the k smallest ones (so ids may
    differ from brute force only between rows at equal distance, up to float32 rounding).
    rtol 1e-4: float32 |q|^2 - 2 q.x + |x|^2 loses ~6 digits relative to |q|^2 + |x|^2."""
    d = np.asarray(d, np.float64)
    i = np.asarray(i)
    full = brute_force(x, q)
    scale = (np.asarray(q, np.float64) ** 2).sum(1, keepdims=True) + (np.asarray(x, np.float64) ** 2).sum(1).max()
    tol = rtol * scale
    assert i.shape == (q.shape[0], k)
    assert (i >= 0).all() and (i < x.shape[0]).all()
    at_ids = np.take_along_axis(full, i, axis=1)
    assert np.all(np.abs(at_ids - d) <= tol), "a returned id is not at its reported distance"
    best = np.sort(full, axis=1)[:, :k]
    assert np.all(np.abs(best - d) <= tol), "returned distances are not the k smallest"
    assert np.all(np.diff(d, axis=1) >= -tol), "results not sorted nearest first"
    assert all(len(set(row)) == k for row in i.tolist()), "duplicate ids in a result row"
