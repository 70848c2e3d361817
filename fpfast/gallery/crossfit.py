"""Cross-fitted open-set statistics of a gallery's enrolled samples (issue 14).

A gallery's open-set thresholds are quantiles of held-out samples' statistics: their distance to
their own model's nearest enrolled sample and their ratio (:mod:`.attribution`). ``fpfast enroll``
holds out a fifth of each model's images, so a gallery of 10 images per model calibrates on 2 per
model, 30 clean images for 15 models: each statistic's ``1 - frr / 2`` quantile is then the largest
of the 30, and a gallery's clean known images were answered ``unknown`` 0.4-21 % of the time
depending on which images it held (FRR 0.05 asked; ``benchmarks/results/accuracy.md``, "Few-shot
galleries over many draws").

Cross-fitting gives every enrolled image a held-out statistic too: the enrolled samples are split
into :data:`FOLDS` folds per model, and each fold's statistics are measured in a gallery of
everything else (the other folds and the clean held-out images), its normaliser refitted, so that
a sample never meets itself nor a space fitted on it. A fold gallery holds about as many samples
per model as the gallery itself (one fold out, the held-out images in), so its distances are
those a fresh query meets. These statistics join the clean held-out images' in the *global*
thresholds of the record that clean-looking queries meet; per-model thresholds stay the held-out
images' own (:func:`.attribution.calibrate_thresholds`' ``own``). Done only while the clean
held-out images are fewer than :data:`CROSSFIT_BELOW`: beyond that the quantile is steady and the
refits would only cost time. An augmented copy of an enrolled image (``fpfast enroll --augment``)
leaves the gallery with its image and is not measured (:func:`enrolled_folds`).
"""
from __future__ import annotations

import numpy as np

from . import conditions as cond

FOLDS = 5
CROSSFIT_BELOW = 200
SEED = 0


def fold_ids(labels: np.ndarray, folds: int = FOLDS, seed: int = SEED) -> np.ndarray:
    """Per sample, its fold in 0 .. folds - 1: each model's samples in a seeded random order,
    dealt round-robin (so every fold holds about 1 / folds of every model). The order is the
    same for every model with as many samples, as ``fpfast enroll``'s held-out split is: where
    the i-th image of every model shows the same content (one set of photos or prompts through
    each generator), a sample's twins of other models leave the gallery with it, as a held-out
    image's do, instead of staying as its nearest other-model neighbours (that inflated the
    ratio statistic: ``benchmarks/results/accuracy.md``, "Cross-fitted thresholds")."""
    labels = np.asarray(labels)
    out = np.zeros(len(labels), np.int64)
    for j in np.unique(labels):
        idx = np.flatnonzero(labels == j)
        out[idx[np.random.default_rng(seed).permutation(len(idx))]] = np.arange(len(idx)) % folds
    return out


def crossfit_stats(gallery, methods, hold_x: np.ndarray, hold_y: np.ndarray, *, folds: int = FOLDS,
                   seed: int = SEED, openset: bool = False) -> dict:
    """{method: (distance statistics, ratio statistics, label ids)} of ``gallery``'s enrolled
    samples for each of ``methods``, each sample measured in a refitted gallery without its fold
    but with the clean held-out samples ``hold_x`` (labels ``hold_y``, the gallery's label ids).
    A model whose every sample is in one fold is left out of that fold (it would have nothing to
    be near); so is a fold whose gallery would hold fewer than two models (no ratio). ``openset``:
    the statistics in the gallery's open-set space (``openset_blocks``, its scales; ratios None
    where that space has none)."""
    x = np.concatenate([gallery._vectors, np.asarray(hold_x, np.float32)])
    y = np.concatenate([gallery._labels, np.asarray(hold_y, np.int32)])
    fold, measured = np.full(len(x), -1), np.zeros(len(x), bool)
    fold[:len(gallery._vectors)], measured[:len(gallery._vectors)] = enrolled_folds(gallery, folds, seed)
    names = list(gallery._names)
    parts: dict = {m: [] for m in methods}
    for f in range(folds):
        rest = fold != f
        present = np.unique(y[rest])
        sel = np.flatnonzero((fold == f) & measured & np.isin(y, present))
        if not len(sel) or len(present) < 2:
            continue
        g = _fold_gallery(gallery, x[rest], y[rest])
        for m in methods:
            parts[m].append(g._open_set_stats(x[sel], [names[i] for i in y[sel]], m, openset))
    empty = (np.empty(0), np.empty(0), np.empty(0, np.int64))
    return {m: tuple(None if c[0] is None else np.concatenate(c) for c in zip(*p)) if p else empty
            for m, p in parts.items()}


def enrolled_folds(gallery, folds: int = FOLDS, seed: int = SEED) -> tuple[np.ndarray, np.ndarray]:
    """(fold of each enrolled sample, whether it is measured): the images are dealt by
    :func:`fold_ids`; an augmented copy (``fpfast enroll --augment``) goes with its image - it would
    otherwise be that image's nearest neighbour - and is never measured itself (it is not a clean
    image); a copy whose image is not enrolled stays in every fold's gallery (fold -1)."""
    keys = list(gallery._keys)
    src = [cond.aug_source(k) for k in keys]
    own = np.array([s == k for s, k in zip(src, keys)], bool)
    fold_of = dict(zip((keys[i] for i in np.flatnonzero(own)), fold_ids(gallery._labels[own], folds, seed)))
    return np.array([fold_of.get(s, -1) for s in src], np.int64), own


def _fold_gallery(gallery, x: np.ndarray, y: np.ndarray):
    """An in-memory gallery (never saved) of ``gallery``'s spec and normalisation holding ``x``
    (``y``: ``gallery``'s label ids), its normaliser fitted; flat (exact) search."""
    g = type(gallery)(gallery.path, gallery.spec, normalize=gallery.normalize,
                      normalize_params=gallery.normalize_params, index="flat")
    g.openset_blocks, g.openset_scales = gallery.openset_blocks, dict(gallery.openset_scales)
    g.openset_space = gallery.openset_space
    for j in np.unique(y):
        g.add(gallery._names[j], x[y == j])
    g.fit()
    return g
