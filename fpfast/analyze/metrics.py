"""Cluster agreement (NMI, ARI), k-means, and leave-one-model-out model parsing.

NMI is the arithmetic-mean normalisation (scikit-learn's default, ManiFPT's Table 5 measure):
``I(U;V) / ((H(U) + H(V)) / 2)``; ARI is Hubert & Arabie's adjusted Rand index. Both are
computed from the contingency table here (tested against scikit-learn).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def _contingency(a, b) -> np.ndarray:
    _, ia = np.unique(np.asarray(a), return_inverse=True)
    _, ib = np.unique(np.asarray(b), return_inverse=True)
    c = np.zeros((ia.max() + 1 if len(ia) else 0, ib.max() + 1 if len(ib) else 0), np.int64)
    np.add.at(c, (ia, ib), 1)
    return c


def _entropy(counts: np.ndarray) -> float:
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def nmi(labels_true, labels_pred) -> float:
    """Normalised mutual information (arithmetic mean of the two entropies); 1.0 when both are one cluster."""
    c = _contingency(labels_true, labels_pred).astype(np.float64)
    n = c.sum()
    if n == 0:
        return float("nan")
    hu, hv = _entropy(c.sum(1)), _entropy(c.sum(0))
    if hu == 0 and hv == 0:
        return 1.0
    pij = c / n
    outer = np.outer(c.sum(1), c.sum(0)) / (n * n)
    nz = pij > 0
    mi = float((pij[nz] * np.log(pij[nz] / outer[nz])).sum())
    return max(0.0, mi / ((hu + hv) / 2)) if (hu + hv) > 0 else 0.0


def ari(labels_true, labels_pred) -> float:
    """Adjusted Rand index (1: identical partitions, ~0: chance)."""
    c = _contingency(labels_true, labels_pred).astype(np.float64)
    n = c.sum()
    comb = lambda x: x * (x - 1) / 2  # noqa: E731
    sum_ij = comb(c).sum()
    sa, sb = comb(c.sum(1)).sum(), comb(c.sum(0)).sum()
    expected = sa * sb / comb(n) if n > 1 else 0.0
    top = (sa + sb) / 2
    if top == expected:  # both partitions trivial (one cluster each, or all singletons)
        return 1.0
    return float((sum_ij - expected) / (top - expected))


REDUCTIONS = {"pca": (64, False), "whiten": (16, True)}


def reduce(X: np.ndarray, dims: int = 64, seed: int = 0, whiten: bool = False):
    """An unfitted standardise -> PCA(<= dims, optionally whitened) pipeline."""
    from sklearn.decomposition import PCA
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    k = int(max(1, min(dims, X.shape[1], X.shape[0] - 1)))
    return make_pipeline(StandardScaler(), PCA(n_components=k, whiten=whiten, random_state=seed))


def kmeans_labels(X: np.ndarray, k: int, seed: int = 0, reduction: str = "pca") -> np.ndarray:
    """k-means (10 restarts) on the standardised fingerprints reduced by ``reduction``: ``pca``
    (64 principal components) or ``whiten`` (16, scaled to unit variance)."""
    from sklearn.cluster import KMeans
    if reduction not in REDUCTIONS:
        raise ValueError(f"unknown reduction {reduction!r}; expected one of {sorted(REDUCTIONS)}")
    dims, whiten = REDUCTIONS[reduction]
    Z = reduce(X, dims, seed, whiten).fit_transform(np.nan_to_num(X))
    return KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(Z)


@dataclass
class Lomo:
    accuracy: float          # over the images of the scored models
    balanced: float          # mean over the scored values of the accuracy on that value's images
    chance: float            # best label-only guess, same protocol: max(training majority, 1 / values)
    scored: list[str]        # models whose value another model shares (the only ones a probe can get right)
    skipped: list[str]       # models whose value no other model has
    per_model: dict          # model -> accuracy on its images


def leave_one_model_out(X: np.ndarray, values, models, seed: int = 0, fit=None) -> Lomo:
    """Predict each model's attribute ``values`` from a linear probe trained on the *other* models.

    For every model m whose value another model shares: fit standardise -> PCA -> logistic
    regression on the rows of all models but m, predict m's rows. Chance: what a guesser that ignores
    the fingerprint gets under the same protocol, the better of the training rows' majority value
    and a uniform guess over the attribute's values (1 / number of values). ``fit(X_train, y_train) -> predict`` replaces the probe (tests).
    """
    values = np.asarray([str(v) for v in values], dtype=object)
    models = np.asarray(models, dtype=object)
    fit = fit or _probe(seed)
    names = list(dict.fromkeys(models.tolist()))
    value_of = {m: values[models == m][0] for m in names}
    scored, skipped, per_model = [], [], {}
    hits = chance_hits = total = 0
    by_value: dict[str, list[int]] = {}
    for m in names:
        others = [o for o in names if o != m]
        if not any(value_of[o] == value_of[m] for o in others):
            skipped.append(m)
            continue
        train, test = models != m, models == m
        ytr = values[train]
        pred = fit(X[train], ytr)(X[test])
        ok = int((np.asarray(pred, dtype=object) == values[test]).sum())
        vals, counts = np.unique(ytr.astype(str), return_counts=True)
        chance_hits += int((values[test] == vals[counts.argmax()]).sum())
        hits += ok
        total += int(test.sum())
        per_model[m] = ok / int(test.sum())
        by_value.setdefault(value_of[m], [0, 0])
        by_value[value_of[m]][0] += ok
        by_value[value_of[m]][1] += int(test.sum())
        scored.append(m)
    if not total:
        return Lomo(float("nan"), float("nan"), float("nan"), scored, skipped, per_model)
    chance = max(chance_hits / total, 1.0 / len(set(values.tolist())))
    balanced = float(np.mean([h / n for h, n in by_value.values()]))
    return Lomo(hits / total, balanced, chance, scored, skipped, per_model)


def _probe(seed: int):
    def fit(Xtr, ytr):
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        Xtr = np.nan_to_num(Xtr)
        if len(set(ytr.tolist())) == 1:
            only = ytr[0]
            return lambda Xte: np.full(len(Xte), only, dtype=object)
        pipe = make_pipeline(reduce(Xtr, seed=seed), LogisticRegression(C=1.0, max_iter=2000))
        pipe.fit(Xtr, ytr.astype(str))
        return lambda Xte: pipe.predict(np.nan_to_num(Xte)).astype(object)
    return fit
