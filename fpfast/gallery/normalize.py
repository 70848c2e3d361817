"""Normalisation and learned projections applied before search.

Every method is the affine map ``z = ((x - mean) * scale) @ projection`` (``projection`` absent
for the per-dimension ones), fitted on the gallery's vectors and stored in the gallery as plain
float32 arrays (``mean`` [D], ``scale`` [D], ``projection`` [D, d]):

* ``none``        identity.
* ``standardize`` per-dimension zero mean, unit variance (a constant dimension keeps scale 1).
* ``whiten``      standardise, then PCA whitening: unit variance along every principal axis;
                  axes with variance below ``1e-6`` of the largest are dropped.
* ``lda``         standardise, then whiten the pooled within-model covariance (shrunk towards a
                  multiple of the identity by ``shrinkage``, needed when a model has few
                  samples) and rotate so that axes come in decreasing between-model variance.
                  Euclidean distance is then the Mahalanobis distance under the within-model
                  covariance. ``n_components`` keeps the first axes: ``None`` keeps all of
                  them, ``n_models - 1`` gives classic LDA. With a single model it is
                  ``standardize`` (no projection) until a refit sees two.

Fitting uses float64; at most ``max_fit`` rows (a fixed-seed random subset) enter the fit.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from ..errors import ConfigError

METHODS = ("none", "standardize", "whiten", "lda")


@dataclasses.dataclass
class Normalizer:
    method: str
    mean: np.ndarray | None = None          # [D] float32
    scale: np.ndarray | None = None         # [D] float32
    projection: np.ndarray | None = None    # [D, d] float32
    params: dict = dataclasses.field(default_factory=dict)

    def out_dim(self, dim: int) -> int:
        return dim if self.projection is None else int(self.projection.shape[1])

    def arrays(self) -> dict[str, np.ndarray]:
        """The fitted parameters by name (what the gallery stores)."""
        return {k: v for k, v in (("mean", self.mean), ("scale", self.scale),
                                  ("projection", self.projection)) if v is not None}

    def transform(self, x):
        """Apply to a numpy array or a torch tensor (stays on its device); float32 out."""
        if self.method == "none":
            return x
        if isinstance(x, np.ndarray):
            z = (x - self.mean) * self.scale
            if self.projection is not None:
                z = z @ self.projection
            return np.ascontiguousarray(z, dtype=np.float32)
        import torch
        z = (x.float() - torch.as_tensor(self.mean, device=x.device)) * torch.as_tensor(
            self.scale, device=x.device)
        if self.projection is not None:
            z = z @ torch.as_tensor(self.projection, device=x.device)
        return z.contiguous()


def _subset(x: np.ndarray, labels: np.ndarray, max_fit: int):
    if x.shape[0] <= max_fit:
        return x, labels
    sel = np.sort(np.random.default_rng(0).choice(x.shape[0], max_fit, replace=False))
    return x[sel], labels[sel]


def fit(method: str, x: np.ndarray, labels: np.ndarray | None = None, *,
        shrinkage: float = 0.05, n_components: int | None = None,
        max_fit: int = 200_000) -> Normalizer:
    """Fit ``method`` on vectors ``x`` [N, D] (``labels`` [N] needed for ``lda``)."""
    if method not in METHODS:
        raise ValueError(f"unknown normalisation {method!r}; expected one of {METHODS}")
    if method == "none":
        return Normalizer("none")
    if x.shape[0] < 2:
        raise ConfigError(f"normalisation {method!r} needs at least 2 vectors, the gallery has {x.shape[0]}")
    if labels is None:
        labels = np.zeros(x.shape[0], np.int32)
    x, labels = _subset(x, labels, max_fit)
    x64 = x.astype(np.float64)
    mean = x64.mean(0)
    std = x64.std(0)
    std[~(std > 1e-12 * max(float(std.max()), 1e-300))] = 1.0
    scale = 1.0 / std
    z = (x64 - mean) * scale
    proj = None
    params: dict = {}
    if method == "whiten":
        cov = z.T @ z / (z.shape[0] - 1)
        w, v = np.linalg.eigh(cov)
        w, v = w[::-1], v[:, ::-1]
        keep = w > 1e-6 * w[0]
        proj = v[:, keep] / np.sqrt(w[keep])
    elif method == "lda":
        classes = np.unique(labels)
        if not 0.0 <= shrinkage < 1.0:
            raise ValueError(f"shrinkage must lie in [0, 1), got {shrinkage}")
        params = {"shrinkage": float(shrinkage), "n_components": n_components}
        if classes.size < 2:  # nothing to tell apart yet: standardised only (refitted as models are added)
            return Normalizer(method, mean.astype(np.float32), scale.astype(np.float32), None, params)
        d = z.shape[1]
        sw = np.zeros((d, d))
        means = np.empty((classes.size, d))
        counts = np.empty(classes.size)
        for j, c in enumerate(classes):
            zc = z[labels == c]
            means[j] = zc.mean(0)
            counts[j] = zc.shape[0]
            r = zc - means[j]
            sw += r.T @ r
        sw /= max(z.shape[0] - classes.size, 1)
        sw = (1 - shrinkage) * sw + shrinkage * (np.trace(sw) / d) * np.eye(d)
        lw, lv = np.linalg.eigh(sw)
        lw = np.maximum(lw, 1e-12 * lw.max())
        w1 = lv / np.sqrt(lw)                                   # whitens Sw
        mb = (means - z.mean(0)) @ w1
        sb = (mb * counts[:, None]).T @ mb / z.shape[0]
        bw, bv = np.linalg.eigh(sb)
        proj = w1 @ bv[:, ::-1]
        nc = d if n_components is None else int(n_components)
        if not 1 <= nc <= d:
            raise ValueError(f"n_components must lie in [1, {d}], got {n_components}")
        proj = proj[:, :nc]
    return Normalizer(method, mean.astype(np.float32), scale.astype(np.float32),
                      None if proj is None else np.ascontiguousarray(proj, dtype=np.float32),
                      params)
