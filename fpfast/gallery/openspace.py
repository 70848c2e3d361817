"""The open-set space of a gallery: where the `unknown` statistics of clean-looking queries are read.

A gallery whose vectors concatenate several parts (a fine-tuned network's unit vector, the raw
handcrafted fingerprint, a reference network's unit vector) names the model from the whole,
normalised vector, but may read its open-set statistics from *blocks* of the raw vector
(:attr:`Gallery.openset_blocks`: ``(start, stop, standardize[, kind])`` each; ``standardize``: each
dimension centred and scaled by the enrolled samples' mean and standard deviation). One block: the
squared distance to each model's nearest sample (or centroid) in it, as before blocks existed.
Several: per model, the geometric mean over blocks of that squared distance divided by the
model's *scale* in the block (the :data:`SCALE_QUANTILE` quantile of its clean held-out samples'
squared distance to it), so that each block weighs the same for every model:

    stat[q, m] = exp(mean_b log(d_b[q, m] / s_b[m]))

Why: benchmarks/results/embedding.md, "Issue 14, sixteenth session" (a fine-tuned gallery's
network pulls an enrolled design's siblings onto it; the universal network it started from and
the handcrafted fingerprint do not).

A block may measure, instead of the distance to a model's nearest sample, its *per-model Gaussian*
distance (kind ``gauss``, a fourth element): the squared Mahalanobis distance to the model's mean
under the model's own covariance in the block, shrunk towards a multiple of the identity by the
Ledoit-Wolf rule (:func:`ledoit_wolf`). A model with fewer than :data:`GAUSS_MIN_FACTOR` times the
block's dimensions enrolled is measured under the pooled (Ledoit-Wolf) covariance of the models
that have their own, so that the block's distances share one unit (a nearest-sample distance beside
Mahalanobis ones made such a model's pooled scale meaningless: a newcomer of 10 images was never
`unknown`); in a block where no model has enough, every model keeps the distance to its nearest
sample. Why the Gaussian: a sibling design (one choice changed, the same weights) shifts the
fingerprint along directions its enrolled model hardly varies in, which a Euclidean distance to
the nearest sample weighs like any other (benchmarks/results/embedding.md, "Issue 14, eighteenth
session").

The blocks may instead lie in the gallery's *normalised* space (``Gallery.openset_space``
``normalized``): the few-shot default gallery (``fpfast enroll``, LDA-normalised) reads each
model's own Gaussian in its first :data:`DISCRIMINANT_AXES` discriminant axes (:func:`discriminant_blocks`),
whose axes follow each refit. There the block's ratio does not replace the searched space's
statistics but joins them: a clean-looking query is `unknown` when its distance, its ratio or the
Gaussians' ratio exceeds its threshold (each fitted at a third of the FRR, the three then lowered
together to the FRR: :func:`.attribution.joint_scale`), once some model has
a Gaussian of its own there (``Gallery.reads_openset``; before, the rule without it). Why: the
Gaussians' ratio alone ranks a design's siblings better and left-out generators worse than the
nearest sample's; joined, both held or gained on the training images; at 10 images per model
(every model then on its nearest sample in those axes) the join moved nothing but the share of
the FRR left to the other two tests
(benchmarks/results/embedding.md, "Issue 14, twentieth session").
"""
from __future__ import annotations

import numpy as np

SPACES = ("vectors", "normalized")
DISCRIMINANT_AXES = 20   # a normalised open-set space: the first axes of the gallery's LDA
SCALE_QUANTILE = 0.95
MIN_SCALE_SAMPLES = 10   # fewer clean held-out samples: the model gets the pooled scale
KINDS = ("nearest", "gauss")
GAUSS_MIN_FACTOR = 2     # a per-model Gaussian needs at least this many enrolled samples per dimension
_TINY = 1e-12


def check_blocks(blocks, dim: int) -> list[tuple]:
    """``blocks`` as a list of (start, stop, standardize) or (start, stop, standardize, kind),
    checked against vectors of ``dim``; a block of kind ``nearest`` (the default) as the three."""
    if not isinstance(blocks, (list, tuple)) or not blocks:
        raise ValueError(f"open-set blocks must be a non-empty list, got {blocks!r}")
    out = []
    for b in blocks:
        if (not isinstance(b, (list, tuple)) or len(b) not in (3, 4)
                or any(isinstance(v, bool) or not isinstance(v, int) for v in b[:2]) or not isinstance(b[2], bool)
                or (len(b) == 4 and b[3] not in KINDS)):
            raise ValueError(f"an open-set block must be [start, stop, standardize] or [start, stop, standardize, "
                             f"kind] with kind one of {KINDS}, got {b!r}")
        if not 0 <= b[0] < b[1] <= dim:
            raise ValueError(f"open-set block {list(b)} does not lie in [0, {dim}]")
        kind = b[3] if len(b) == 4 else "nearest"
        out.append((int(b[0]), int(b[1]), bool(b[2])) + ((kind,) if kind != "nearest" else ()))
    return out


def discriminant_blocks(dim: int) -> list[tuple]:
    """The open-set blocks of a normalised space of ``dim`` axes: each model's own Gaussian in its
    first :data:`DISCRIMINANT_AXES` (an LDA's most discriminant ones)."""
    return [(0, min(DISCRIMINANT_AXES, int(dim)), False, "gauss")]


def kind_of(block) -> str:
    """A checked block's kind: ``nearest`` or ``gauss``."""
    return block[3] if len(block) == 4 else "nearest"


def ledoit_wolf(x: np.ndarray) -> tuple[np.ndarray, float]:
    """(shrunk covariance [d, d], shrinkage) of samples ``x`` [n, d] (float64): the biased sample
    covariance S pulled towards mu I (mu = tr S / d) by the Ledoit-Wolf (2004) estimate of the
    shrinkage that minimises the expected Frobenius loss (as scikit-learn's ``ledoit_wolf``)."""
    x = np.asarray(x, np.float64)
    n, d = x.shape
    xc = x - x.mean(0)
    s = xc.T @ xc / n
    mu = np.trace(s) / d
    delta = ((s - mu * np.eye(d)) ** 2).sum() / d
    beta = (((xc * xc).sum(1) ** 2).sum() / n - (s * s).sum()) / (d * n)
    a = 0.0 if delta <= 0 else float(min(max(beta, 0.0), delta) / delta)
    return (1 - a) * s + a * mu * np.eye(d), a


def gaussians(x: np.ndarray, labels: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per model of ``labels`` (ids < ``m``) of samples ``x`` [N, d]: (means [m, d], whitening
    maps W [m, d, d] with |(q - mean) W|^2 the squared Mahalanobis distance under the model's
    :func:`ledoit_wolf` covariance - for a model with fewer than GAUSS_MIN_FACTOR x d samples, the
    pooled covariance of the models that have their own -, usable [m] bool: False for every model
    when none has enough samples, and for a model without samples)."""
    x, labels = np.asarray(x, np.float64), np.asarray(labels)
    d = x.shape[1]
    means, maps, ok = np.zeros((m, d)), np.zeros((m, d, d)), np.zeros(m, bool)
    def whitening(cov):
        w, v = np.linalg.eigh(cov)
        return v / np.sqrt(np.maximum(w, max(float(w.max()), _TINY) * 1e-9))
    for j in range(m):
        xj = x[labels == j]
        if len(xj) < GAUSS_MIN_FACTOR * d:
            continue
        means[j], maps[j], ok[j] = xj.mean(0), whitening(ledoit_wolf(xj)[0]), True
    if ok.any() and not ok.all():   # the others: the pooled covariance of those, in the same units
        own = np.isin(labels, np.flatnonzero(ok))
        pooled = whitening(ledoit_wolf(x[own] - means[labels[own]])[0])
        for j in np.flatnonzero(~ok):
            xj = x[labels == j]
            if len(xj):
                means[j], maps[j], ok[j] = xj.mean(0), pooled, True
    return means, maps, ok


def block_views(x: np.ndarray, blocks) -> list[tuple[np.ndarray, np.ndarray | None, np.ndarray | None]]:
    """Per block (its samples [N, d] float64, mean, std or None): what queries are measured against."""
    out = []
    for a, b, std, *_ in blocks:
        v = np.asarray(x[:, a:b], np.float64)
        if std:
            mu, sd = v.mean(0), v.std(0)
            sd = np.where(sd > 0, sd, 1.0)
            out.append(((v - mu) / sd, mu, sd))
        else:
            out.append((v, None, None))
    return out


def combine(dists: list[np.ndarray], scales: np.ndarray | None) -> np.ndarray:
    """[Q, M] statistic of per-block [Q, M] squared distances ``dists``: the one block's as it is;
    of several, the geometric mean of each divided by the models' scales ``scales`` [B, M] (None:
    unscaled)."""
    if len(dists) == 1:
        return dists[0]
    logs = np.stack([np.log(np.maximum(np.asarray(d, np.float64), _TINY)) for d in dists])
    if scales is not None:
        logs = logs - np.log(np.maximum(scales, _TINY))[:, None, :]
    return np.exp(logs.mean(0))


def fit_scales(own: np.ndarray, labels: np.ndarray, names: list[str]) -> dict:
    """The record of per-block scales from clean held-out samples' squared distances to their own
    model ``own`` [B, N] (``labels``: their models' ids): per model with at least
    :data:`MIN_SCALE_SAMPLES`, and pooled (``global``)."""
    own, labels = np.asarray(own, np.float64), np.asarray(labels)
    rec = {"quantile": SCALE_QUANTILE, "global": [float(np.quantile(o, SCALE_QUANTILE)) for o in own],
           "per_model": {}}
    for j, name in enumerate(names):
        sel = labels == j
        if sel.sum() >= MIN_SCALE_SAMPLES:
            rec["per_model"][name] = [float(np.quantile(o[sel], SCALE_QUANTILE)) for o in own]
    return rec


def scales_for(rec: dict | None, names: list[str], n_blocks: int) -> np.ndarray | None:
    """[B, M] scales of a :func:`fit_scales` record (a model without its own: the pooled ones);
    None without a record."""
    if not rec:
        return None
    per = rec.get("per_model", {})
    for name, v in [("global", rec.get("global"))] + list(per.items()):
        if not isinstance(v, list) or len(v) != n_blocks or not all(isinstance(x, (int, float)) and x >= 0 for x in v):
            raise ValueError(f"open-set scales of {name!r} must be {n_blocks} non-negative numbers, got {v!r}")
    return np.asarray([per.get(n, rec["global"]) for n in names], np.float64).T
