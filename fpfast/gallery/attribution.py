"""Attribution rules on search results: kNN vote, nearest centroid, open-set thresholds.

Pure numpy on what the index returns; the :class:`~fpfast.gallery.Gallery` wires them up.

* ``knn``: the k nearest samples vote for their model, each with weight 1 (``uniform``) or
  ``1 / (d + eps)`` (``distance``, d the squared L2 distance). The score is the winner's share of
  the votes, in [0, 1]; a tie goes to the model whose sample is nearest. The open-set statistic
  is the distance to the winner's nearest sample.
* ``centroid``: the nearest model mean. The score is ``1 - d1 / d2`` (d1, d2 the distances to
  the nearest and second-nearest centroid), 0 for a tie and near 1 for an unambiguous answer;
  1 when only one model is enrolled. The open-set statistic is d1.

Open set: two statistics, each with a threshold per model (or one global). The *distance* (above)
says how far the query is from the model it points to; the *ratio* (Lowe's ratio test) says how
ambiguous it is: the L2 distance to the winner's nearest sample over that to the nearest sample of
any other model (exact on a flat gallery; among the :data:`RATIO_K` nearest on an IVF / HNSW one,
0 when none is among them), or for ``centroid`` the distance to the winner's mean over the
second-nearest mean. A query of an unknown generator that resembles two known ones sits between
them: it is near both (its distance is unremarkable) but its ratio is high. Both thresholds are
conformal ``1 - frr / 2`` quantiles (:func:`quantile_threshold`) of the statistics of held-out
samples of the enrolled models with respect to their own model (so that a fresh sample of an
enrolled model exceeds either with probability at most ``frr``), then both lowered by one common
factor until about ``frr`` of those samples exceed either (:func:`joint_scale`; since
2026-12-07); above either the answer is ``unknown``. Models with fewer than ``min_per_model``
held-out samples, or fewer than the conformal rank needs (:func:`conformal_min`: 39 at a level of
0.025), use the global thresholds: the largest of ten samples is a noisy threshold (measured:
``benchmarks/results/accuracy.md``, "Per-model thresholds need enough held-out samples").
A calibration without ratio thresholds (galleries from before the ratio rule) thresholds the
distance alone at ``frr``. Why this rule: chosen by leaving one known model
out on training images (``benchmarks/bench_openset_rule.py``; ``benchmarks/results/accuracy.md``,
"The open-set rule").
"""
from __future__ import annotations

import dataclasses

import numpy as np

UNKNOWN = "unknown"
WEIGHTINGS = ("uniform", "distance")
RATIO_K = 256  # IVF / HNSW galleries: nearest samples searched for another model's nearest


@dataclasses.dataclass
class Attribution:
    """Per-query answers, all of length Q.

    ``model``: the attributed model name, or ``"unknown"`` when the open-set statistic exceeds
    the threshold; ``predicted``: the best enrolled model regardless of the threshold;
    ``score``: confidence in [0, 1] among the enrolled models (see the module doc);
    ``distance``: the open-set statistic (squared L2 in the normalised space; for a query that
    looks clean in a gallery with ``openset_blocks``, in that open-set space: :mod:`.openspace`);
    ``threshold``: the threshold applied (inf when not calibrated);
    ``top``: per query, up to ``k`` ``(model, distance)`` pairs, nearest first;
    ``ratio``: the ambiguity statistic (see the module doc), ``ratio_threshold`` its threshold (for a
    query that looks clean in a gallery whose open-set blocks lie in its normalised space, the larger
    of it and that space's ratio, each over its threshold, in the first one's units: :func:`joined_ratio`);
    ``condition``: per query ``clean`` or ``processed`` as the gallery's calibration detector
    saw it (:mod:`.conditions`; it chose the thresholds), or the name of the view that answered
    it (:mod:`.views`); None for a gallery without either. ``choice``: where the open-set
    statistics are read in a space of their own (``Gallery.openset_blocks``), the open-set score
    in the space searched (what chooses between a view's answer and the gallery's own), else None.
    """
    model: list[str]
    predicted: list[str]
    score: np.ndarray
    distance: np.ndarray
    threshold: np.ndarray
    top: list[list[tuple[str, float]]]
    method: str
    ratio: np.ndarray | None = None
    ratio_threshold: np.ndarray | None = None
    condition: list[str] | None = None
    choice: np.ndarray | None = None

    @property
    def open_set_score(self) -> np.ndarray:
        """Per query, larger = less like the model it points to: with both statistics calibrated,
        the larger of each divided by its threshold, minus 1 (> 0 is answered ``unknown``; the
        per-model thresholds put every model's held-out samples on one scale); with the distance
        alone calibrated, the distance minus its threshold; else the ratio (or the distance when
        there is none). What `fpfast eval`'s ``open_set_auroc_margin`` ranks."""
        return open_set_margin(self.distance, self.threshold, self.ratio, self.ratio_threshold)

    @property
    def choice_score(self) -> np.ndarray:
        """The open-set score in the space searched: :attr:`choice`, else :attr:`open_set_score`."""
        return self.open_set_score if self.choice is None else np.asarray(self.choice, np.float64)

    @property
    def is_unknown(self) -> np.ndarray:
        return np.array([m == UNKNOWN for m in self.model], dtype=bool)

    def __len__(self) -> int:
        return len(self.model)

    def take(self, sel) -> "Attribution":
        """The answers at rows ``sel`` (indices or a bool mask)."""
        sel = np.flatnonzero(sel) if np.asarray(sel).dtype == bool else np.asarray(sel, np.int64)

        def pick(v):
            return v if v is None or isinstance(v, str) else [v[i] for i in sel] if isinstance(v, list) \
                else np.asarray(v)[sel]
        return dataclasses.replace(self, **{f.name: pick(getattr(self, f.name)) for f in dataclasses.fields(self)})


def open_set_margin(d, t, r=None, rt=None) -> np.ndarray:
    """:attr:`Attribution.open_set_score` of distances ``d`` / thresholds ``t`` and ratios ``r`` /
    ratio thresholds ``rt`` (None or inf: not calibrated)."""
    d, t = np.asarray(d, np.float64), np.asarray(t, np.float64)
    if r is None:
        return np.where(np.isfinite(t), d - t, d)
    r = np.asarray(r, np.float64)
    rt = np.full(r.shape, np.inf) if rt is None else np.asarray(rt, np.float64)
    both = np.isfinite(t) & np.isfinite(rt)
    with np.errstate(divide="ignore", invalid="ignore"):
        scaled = np.maximum(np.where(t > 0, d / t, np.where(d > 0, np.inf, 0.0)),
                            np.where(rt > 0, r / rt, np.where(r > 0, np.inf, 0.0))) - 1.0
    return np.where(both, scaled, np.where(np.isfinite(t), d - t, r))


def joined_ratio(r, rt, r2, rt2) -> np.ndarray:
    """One ratio statistic of two, ``r`` (threshold ``rt``) and ``r2`` (threshold ``rt2``), in the
    first's units: ``rt * max(r / rt, r2 / rt2)``, so that it exceeds ``rt`` exactly where either
    exceeds its own threshold (and :func:`open_set_margin` takes the larger of the three tests with
    a distance). Where either threshold is not finite and positive, ``r`` as it is."""
    r, rt, r2, rt2 = (np.asarray(a, np.float64) for a in (r, rt, r2, rt2))
    ok = np.isfinite(rt) & np.isfinite(rt2) & (rt > 0) & (rt2 > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(ok, rt * np.maximum(r / rt, r2 / rt2), r)


def ratio_of(d_win: np.ndarray, d_other: np.ndarray) -> np.ndarray:
    """Lowe's ratio from squared distances: sqrt(d_win / d_other); 0 where no other model was
    found (``d_other`` inf), 1 for two zero distances."""
    d_win, d_other = np.asarray(d_win, np.float64), np.asarray(d_other, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.sqrt(np.maximum(d_win, 0) / d_other)
    return np.where(np.isinf(d_other), 0.0, np.where(d_other > 0, r, np.where(d_win > 0, np.inf, 1.0)))


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
    """The conformal ``1 - frr`` quantile of ``stats``: the ``ceil((n + 1)(1 - frr))``-th smallest
    of the n values, so that a fresh sample from the same distribution exceeds it with probability
    at most ``frr`` (split conformal; the plain empirical quantile overshoots by up to
    ``1 / (n + 1)``). With too few values for that rank (n < 1 / frr - 1) it is the largest value,
    and the bound is not guaranteed."""
    stats = np.sort(np.asarray(stats, dtype=np.float64))
    n = stats.size
    if n == 0:
        return float("inf")
    idx = int(np.ceil((1.0 - frr) * (n + 1) - 1e-9)) - 1
    return float(stats[min(max(idx, 0), n - 1)])


def conformal_min(level: float) -> int:
    """The fewest values for which the conformal ``1 - level`` rank of :func:`quantile_threshold`
    exists (n >= 1 / level - 1); with fewer, the threshold is their maximum and the bound fails."""
    return int(np.ceil(1.0 / level - 1.0 - 1e-9)) if level > 0 else 1 << 62


def _thresholds(stats: np.ndarray, labels: np.ndarray, model_names: list[str], level: float, per_model: bool,
                min_per_model: int, own: np.ndarray) -> dict:
    rec = {"global": quantile_threshold(stats, level), "n": int(stats.size), "per_model": {}}
    if per_model:
        need = max(min_per_model, conformal_min(level))  # fewer: the max of a handful, no bound and noisy
        for j, name in enumerate(model_names):
            s = stats[own & (labels == j)]
            if s.size >= need:
                rec["per_model"][name] = {"threshold": quantile_threshold(s, level), "n": int(s.size)}
    return rec


def calibrate_thresholds(stats: np.ndarray, labels: np.ndarray, model_names: list[str],
                         frr: float, per_model: bool, min_per_model: int, ratios: np.ndarray | None = None,
                         own: np.ndarray | None = None, joint: bool = True) -> dict:
    """The calibration record stored in gallery.json for one method: distance thresholds at
    ``frr``, or with ``ratios`` distance and ratio thresholds at ``frr`` jointly: each fitted at
    ``frr / 2`` (the union bound: at most ``frr`` of the held-out samples exceed either), then
    both scaled by the common factor (:func:`joint_scale`, recorded as ``joint``) at which about
    ``frr`` of them exceed either (``joint=False``: the union bound's, as before 2026-12-07).
    ``rejected`` records the fraction that does. ``own`` (a mask; None: all): the statistics that
    per-model thresholds are fitted on; the others (cross-fitted ones, :mod:`.crossfit`) count for
    the global thresholds and the common factor only, and their number is recorded as ``crossfit``."""
    if not 0.0 <= frr < 1.0:
        raise ValueError(f"frr must lie in [0, 1), got {frr}")
    stats = np.asarray(stats, np.float64)
    own = np.ones(stats.size, bool) if own is None else np.asarray(own, bool)
    extra = {"crossfit": int((~own).sum())} if not own.all() else {}
    if ratios is None:
        return {"frr": float(frr), **_thresholds(stats, labels, model_names, frr, per_model, min_per_model, own),
                **extra}
    ratios = np.asarray(ratios, np.float64)
    dist = _thresholds(stats, labels, model_names, frr / 2, per_model, min_per_model, own)
    rat = _thresholds(ratios, labels, model_names, frr / 2, per_model, min_per_model, own)
    rec = {"frr": float(frr), **dist, "ratio": {"global": rat["global"], "per_model": rat["per_model"]}, **extra}
    tests = [(stats, thresholds_for(rec, model_names)[labels]), (ratios, ratio_thresholds_for(rec, model_names)[labels])]
    if joint:
        tau = joint_scale(tests, frr)
        rec = scale_record(rec, tau)
        tests = [(s, t * tau) for s, t in tests]
    rec["rejected"] = exceeded(tests)
    return rec


def exceeded(tests) -> float:
    """The fraction of samples above at least one of ``tests`` ((statistics [N], thresholds [N]) pairs)."""
    if not len(tests) or not np.asarray(tests[0][0]).size:
        return 0.0
    return float(np.mean(np.any([np.asarray(s) > np.asarray(t) for s, t in tests], axis=0)))


def joint_scale(tests, frr: float) -> float:
    """The common factor, at most 1, of the thresholds of several ``tests`` ((statistics [N],
    thresholds [N]) pairs of the same N calibration samples, each threshold fitted at a share of
    ``frr``) at which about ``frr`` of the samples exceed at least one: the conformal ``1 - frr``
    quantile (:func:`quantile_threshold`) of each sample's largest statistic over its threshold.
    The union bound (each test at ``frr / T``) rejects fewer than ``frr`` where the tests agree,
    and so misses unknowns it could take (``benchmarks/results/accuracy.md``, "Twenty-first session").
    1 where no test has a finite positive threshold or the quantile is not positive."""
    worst = None
    for s, t in tests:
        s, t = np.asarray(s, np.float64), np.asarray(t, np.float64)
        ok = np.isfinite(t) & (t > 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            r = np.where(ok, s / np.where(ok, t, 1.0), 0.0)
        worst = r if worst is None else np.maximum(worst, r)
    if worst is None or not worst.size:
        return 1.0
    tau = quantile_threshold(worst, frr)
    return float(min(tau, 1.0)) if np.isfinite(tau) and tau > 0 else 1.0


def scale_record(rec: dict, tau: float) -> dict:
    """A copy of calibration record ``rec`` with its distance and ratio thresholds (global and per
    model) multiplied by ``tau``, recorded (times any factor it had) under ``joint``."""
    def scaled(r):
        return {**r, "global": r["global"] * tau,
                "per_model": {m: {**v, "threshold": v["threshold"] * tau} for m, v in r.get("per_model", {}).items()}}
    out = scaled(rec)
    if "ratio" in rec:
        out["ratio"] = scaled(rec["ratio"])
    out["joint"] = float(rec.get("joint", 1.0) * tau)
    return out


def thresholds_for(rec: dict | None, names: list[str]) -> np.ndarray:
    """Distance threshold per model name: its own when calibrated, else the global one, else inf."""
    if not rec:
        return np.full(len(names), np.inf)
    per = rec.get("per_model", {})
    return np.array([per[n]["threshold"] if n in per else rec["global"] for n in names], dtype=np.float64)


def ratio_thresholds_for(rec: dict | None, names: list[str]) -> np.ndarray:
    """Ratio threshold per model name (inf where the calibration has none: the distance alone)."""
    return thresholds_for((rec or {}).get("ratio"), names)
