"""Attribution rules on search results: kNN vote, nearest centroid, open-set thresholds.

Pure numpy on what the index returns; the :class:`~fpfast.gallery.Gallery` wires them up.

* ``knn``: the k nearest samples vote for their model, each with weight 1 (``uniform``) or
  ``1 / (d + eps)`` (``distance``, d the squared L2 distance). The score is the winner's share of
  the votes, in [0, 1]; a tie goes to the model whose sample is nearest. The open-set statistic
  is the distance to the winner's nearest sample.
* ``centroid``: the nearest model mean. The score is ``1 - d1 / d2`` (d1, d2 the distances to
  the nearest and second-nearest centroid), 0 for a tie and near 1 for an unambiguous answer;
  1 when only one model is enrolled. The open-set statistic is d1.

Open set: a threshold per model (or one global) on the open-set statistic, calibrated on
held-out samples of the enrolled models as the ``1 - frr`` quantile of their statistic with
respect to their own model; above the threshold the answer is ``unknown``. Models with fewer
than ``min_per_model`` held-out samples use the global threshold.
"""
from __future__ import annotations

import dataclasses

import numpy as np

UNKNOWN = "unknown"
WEIGHTINGS = ("uniform", "distance")


@dataclasses.dataclass
class Attribution:
    """Per-query answers, all of length Q.

    ``model``: the attributed model name, or ``"unknown"`` when the open-set statistic exceeds
    the threshold; ``predicted``: the best enrolled model regardless of the threshold;
    ``score``: confidence in [0, 1] among the enrolled models (see the module doc);
    ``distance``: the open-set statistic (squared L2 in the normalised space);
    ``threshold``: the threshold applied (inf when not calibrated);
    ``top``: per query, up to ``k`` ``(model, distance)`` pairs, nearest first.
    """
    model: list[str]
    predicted: list[str]
    score: np.ndarray
    distance: np.ndarray
    threshold: np.ndarray
    top: list[list[tuple[str, float]]]
    method: str

    @property
    def open_set_score(self) -> np.ndarray:
        """Per query, larger = less like the model it points to: the open-set statistic minus the
        threshold applied to it (> 0 is answered ``unknown``; the per-model thresholds put every
        model's held-out samples on one scale), or the statistic itself where none is calibrated.
        What `fpfast eval`'s ``open_set_auroc_margin`` ranks (``benchmarks/results/embedding.md``)."""
        d, t = np.asarray(self.distance, np.float64), np.asarray(self.threshold, np.float64)
        return np.where(np.isfinite(t), d - t, d)

    @property
    def is_unknown(self) -> np.ndarray:
        return np.array([m == UNKNOWN for m in self.model], dtype=bool)

    def __len__(self) -> int:
        return len(self.model)


def knn_vote(labels: np.ndarray, dists: np.ndarray, n_models: int, weighting: str = "uniform",
             eps: float = 1e-9) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Votes over the neighbours ``labels`` [Q, k] (-1 = no neighbour) at ``dists`` [Q, k].

    Returns ``(winner [Q], share [Q], nearest [Q, M])``: the winning model, its vote share and
    each model's nearest neighbour distance among the k (inf when absent).
    """
    if weighting not in WEIGHTINGS:
        raise ValueError(f"unknown weighting {weighting!r}; expected one of {WEIGHTINGS}")
    q, k = labels.shape
    valid = labels >= 0
    w = np.ones((q, k)) if weighting == "uniform" else 1.0 / (np.maximum(dists, 0.0) + eps)
    w = np.where(valid, w, 0.0)
    rows = np.repeat(np.arange(q), k)
    lab = np.where(valid, labels, 0).ravel()
    votes = np.zeros((q, n_models))
    np.add.at(votes, (rows, lab), w.ravel())
    nearest = np.full((q, n_models), np.inf)
    np.minimum.at(nearest, (rows[valid.ravel()], labels[valid]), dists[valid].astype(np.float64))
    top = votes.max(1, keepdims=True)
    tied = votes >= top - 1e-12 * np.maximum(top, 1.0)
    winner = np.argmin(np.where(tied, nearest, np.inf), axis=1)
    total = votes.sum(1)
    share = np.divide(votes[np.arange(q), winner], total, out=np.zeros(q), where=total > 0)
    return winner, share, nearest


def centroid_scores(d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(winner [Q], score [Q])`` from centroid distances ``d`` [Q, M]."""
    q, m = d.shape
    winner = np.argmin(d, axis=1)
    if m == 1:
        return winner, np.ones(q)
    part = np.partition(d, 1, axis=1)
    d1, d2 = part[:, 0], part[:, 1]
    score = np.where(d2 > 0, 1.0 - d1 / np.where(d2 > 0, d2, 1.0), 0.0)
    return winner, np.clip(score, 0.0, 1.0)


def quantile_threshold(stats: np.ndarray, frr: float) -> float:
    """Smallest value with at most a ``frr`` fraction of ``stats`` strictly above it."""
    stats = np.sort(np.asarray(stats, dtype=np.float64))
    n = stats.size
    if n == 0:
        return float("inf")
    idx = int(np.ceil((1.0 - frr) * n)) - 1
    return float(stats[min(max(idx, 0), n - 1)])


def calibrate_thresholds(stats: np.ndarray, labels: np.ndarray, model_names: list[str],
                         frr: float, per_model: bool, min_per_model: int) -> dict:
    """The calibration record stored in gallery.json for one method."""
    if not 0.0 <= frr < 1.0:
        raise ValueError(f"frr must lie in [0, 1), got {frr}")
    rec = {"frr": float(frr), "global": quantile_threshold(stats, frr),
           "n": int(stats.size), "per_model": {}}
    if per_model:
        for j, name in enumerate(model_names):
            s = stats[labels == j]
            if s.size >= min_per_model:
                rec["per_model"][name] = {"threshold": quantile_threshold(s, frr), "n": int(s.size)}
    return rec


def thresholds_for(rec: dict | None, names: list[str]) -> np.ndarray:
    """Threshold per model name: its own when calibrated, else the global one, else inf."""
    if not rec:
        return np.full(len(names), np.inf)
    per = rec.get("per_model", {})
    return np.array([per[n]["threshold"] if n in per else rec["global"] for n in names], dtype=np.float64)
