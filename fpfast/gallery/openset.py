"""Open-set scores: how far a query is from what the gallery knows (issue 14).

Every scorer is fitted on the gallery's (normalised) vectors ``x`` [N, D] with integer labels
``y`` [N] and returns, for queries ``q`` [M, D], a score per query where *larger means more likely
unknown*, plus the model each query is closest to under that score:

* ``nearest``: Euclidean distance to the nearest enrolled sample (what the kNN attribution
  thresholds today);
* ``kth``: distance to the ``k``-th nearest enrolled sample of any model (the kNN
  out-of-distribution score of Sun et al. 2022; k = 1 is ``nearest``);
* ``mahalanobis``: squared Mahalanobis distance to the nearest class mean under one covariance
  shared by all classes (Lee et al. 2018), shrunk towards its mean diagonal by ``shrink`` so that a
  few-shot gallery (fewer samples than dimensions) still gives an invertible matrix;
* ``ratio``: the distance to the nearest sample divided by the distance to the nearest sample of
  any *other* model (the ratio test of Lowe 2004), in [0, 1]: a query between two known models -
  an unknown generator built like both - scores near 1, whatever the models' spreads;
* ``gmm``: minus the largest per-model log-density, each model a diagonal Gaussian mixture of up to
  ``components`` components (``reg`` added to every variance).

:func:`auroc`, :func:`oscr` and :func:`tnr_at_tpr` are the metrics the benchmark reports
(``benchmarks/bench_openset.py``). Everything here is float64 numpy; the tests compare every
scorer with a brute-force computation.
"""
from __future__ import annotations

import numpy as np

SCORERS = ("nearest", "kth", "ratio", "mahalanobis", "gmm")


def _sqdist(q: np.ndarray, x: np.ndarray) -> np.ndarray:
    d = (q * q).sum(1)[:, None] - 2 * q @ x.T + (x * x).sum(1)[None, :]
    return np.maximum(d, 0)


class OpenSetScorer:
    """``OpenSetScorer(kind, **params).fit(x, y)``; ``score(q)`` -> (scores [M], nearest class [M])."""

    def __init__(self, kind: str = "nearest", *, k: int = 5, shrink: float = 0.1, components: int = 2,
                 reg: float = 1e-3, seed: int = 0):
        if kind not in SCORERS:
            raise ValueError(f"unknown open-set scorer {kind!r}; expected one of {SCORERS}")
        self.kind, self.k, self.shrink, self.components, self.reg, self.seed = kind, int(k), float(shrink), \
            int(components), float(reg), int(seed)

    def fit(self, x, y) -> "OpenSetScorer":
        x = np.asarray(x, np.float64)
        y = np.asarray(y)
        if x.ndim != 2 or len(x) != len(y) or not len(x):
            raise ValueError(f"need vectors [N, D] and N labels (N > 0), got {x.shape} and {y.shape}")
        self.classes = np.unique(y)
        self.x, self.y = x, np.searchsorted(self.classes, y)
        if self.kind == "ratio" and len(self.classes) < 2:
            raise ValueError("the ratio scorer needs samples of at least two models")
        if self.kind == "mahalanobis":
            self.means = np.stack([x[self.y == c].mean(0) for c in range(len(self.classes))])
            r = x - self.means[self.y]
            cov = r.T @ r / len(x)
            cov = (1 - self.shrink) * cov + self.shrink * np.trace(cov) / cov.shape[0] * np.eye(cov.shape[0])
            self.precision = np.linalg.inv(cov + 1e-12 * np.eye(cov.shape[0]))
        elif self.kind == "gmm":
            from sklearn.mixture import GaussianMixture
            self.mix = []
            for c in range(len(self.classes)):
                xc = x[self.y == c]
                n = max(1, min(self.components, len(xc) // 5))
                gm = GaussianMixture(n, covariance_type="diag", reg_covar=self.reg, random_state=self.seed).fit(xc)
                self.mix.append((np.log(gm.weights_), gm.means_, gm.covariances_))
        return self

    def score(self, q) -> tuple[np.ndarray, np.ndarray]:
        q = np.asarray(q, np.float64)
        if self.kind in ("nearest", "kth"):
            d2 = _sqdist(q, self.x)
            k = 1 if self.kind == "nearest" else min(self.k, d2.shape[1])
            idx = np.argpartition(d2, k - 1, axis=1)[:, :k]
            part = np.take_along_axis(d2, idx, 1)
            kth = part.max(1)
            nearest = self.y[idx[np.arange(len(q)), part.argmin(1)]]
            return np.sqrt(kth), self.classes[nearest]
        if self.kind == "ratio":
            from .attribution import ratio_of
            best = np.stack([_sqdist(q, self.x[self.y == c]).min(1) for c in range(len(self.classes))], 1)
            two = np.partition(best, 1, axis=1)[:, :2]
            return ratio_of(two[:, 0], two[:, 1]), self.classes[best.argmin(1)]
        if self.kind == "mahalanobis":
            diff = q[:, None, :] - self.means[None]                      # [M, C, D]
            m = np.einsum("mcd,de,mce->mc", diff, self.precision, diff)
            return m.min(1), self.classes[m.argmin(1)]
        ll = np.stack([gmm_loglik(q, *p) for p in self.mix], 1)          # [M, C]
        return -ll.max(1), self.classes[ll.argmax(1)]


def gmm_loglik(q: np.ndarray, log_w: np.ndarray, means: np.ndarray, var: np.ndarray) -> np.ndarray:
    """log sum_j w_j N(q; mean_j, diag(var_j)) for each row of q."""
    d = q.shape[1]
    lp = (-0.5 * (((q[:, None, :] - means[None]) ** 2) / var[None]).sum(2)
          - 0.5 * np.log(var).sum(1)[None] - 0.5 * d * np.log(2 * np.pi) + log_w[None])
    mx = lp.max(1, keepdims=True)
    return (mx + np.log(np.exp(lp - mx).sum(1, keepdims=True)))[:, 0]


def auroc(known: np.ndarray, unknown: np.ndarray) -> float:
    """P(an unknown query scores above a known one), ties counted half."""
    from .evaluate import auroc as _auroc
    k, u = np.asarray(known, np.float64).ravel(), np.asarray(unknown, np.float64).ravel()
    return _auroc(np.r_[k, u], np.r_[np.zeros(len(k), bool), np.ones(len(u), bool)])


def oscr(known: np.ndarray, correct: np.ndarray, unknown: np.ndarray) -> float:
    """Open-set classification rate (Dhamija et al. 2018): area under the curve of the correct
    classification rate of known queries (right model and accepted) against the false-positive
    rate of unknown ones (accepted), as the threshold sweeps every score."""
    k, c, u = np.asarray(known, np.float64), np.asarray(correct, bool), np.asarray(unknown, np.float64)
    thr = np.unique(np.concatenate([k, u, [np.inf]]))
    ccr = np.array([(c & (k <= t)).mean() for t in thr])
    fpr = np.array([(u <= t).mean() for t in thr])
    fpr, ccr = np.concatenate([[0.0], fpr]), np.concatenate([[0.0], ccr])
    return float(np.sum((fpr[1:] - fpr[:-1]) * (ccr[1:] + ccr[:-1]) / 2))


def tnr_at_tpr(known: np.ndarray, unknown: np.ndarray, tpr: float = 0.95) -> float:
    """Fraction of unknown queries rejected at the threshold that accepts ``tpr`` of the known."""
    t = np.quantile(np.asarray(known, np.float64), tpr)
    return float((np.asarray(unknown) > t).mean())
