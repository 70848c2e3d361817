"""Evaluation of attributions: accuracy, macro-F1, per-model precision/recall, confusion
matrix (CSV + PNG), open-set AUROC. Plain numpy (matplotlib only for the plot)."""
from __future__ import annotations

import csv
import json
import os
from typing import Sequence

import numpy as np

from .attribution import UNKNOWN


def strict_json(obj):
    """``obj`` with NaN / inf floats as None: JSON every strict parser reads."""
    if isinstance(obj, dict):
        return {k: strict_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict_json(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return float(obj) if np.isfinite(obj) else None
    return obj


def confusion_matrix(y_true: Sequence[str], y_pred: Sequence[str],
                     labels: Sequence[str]) -> np.ndarray:
    """int64 [L, L]: rows the true label, columns the predicted one, in ``labels`` order.
    Pairs with a label outside ``labels`` are left out."""
    pos = {name: i for i, name in enumerate(labels)}
    cm = np.zeros((len(labels), len(labels)), dtype=np.int64)
    for t, p in zip(y_true, y_pred):
        if t in pos and p in pos:
            cm[pos[t], pos[p]] += 1
    return cm


def report(y_true: Sequence[str], y_pred: Sequence[str],
           labels: Sequence[str] | None = None) -> dict:
    """accuracy, macro_f1 (over ``labels``, default every label seen in ``y_true``), and per
    label precision/recall/f1/support. A 0/0 precision or recall counts as 0 (scikit-learn's
    ``zero_division=0``)."""
    y_true, y_pred = list(y_true), list(y_pred)
    if len(y_true) != len(y_pred):
        raise ValueError(f"{len(y_true)} true labels but {len(y_pred)} predictions")
    if labels is None:
        labels = sorted(set(y_true))
    all_labels = list(labels) + sorted((set(y_true) | set(y_pred)) - set(labels))
    cm = confusion_matrix(y_true, y_pred, all_labels)
    tp = np.diag(cm).astype(np.float64)
    pred_n = cm.sum(0).astype(np.float64)
    true_n = cm.sum(1).astype(np.float64)
    prec = np.divide(tp, pred_n, out=np.zeros_like(tp), where=pred_n > 0)
    rec = np.divide(tp, true_n, out=np.zeros_like(tp), where=true_n > 0)
    f1 = np.divide(2 * prec * rec, prec + rec, out=np.zeros_like(tp), where=(prec + rec) > 0)
    n = len(y_true)
    per = {name: {"precision": float(prec[i]), "recall": float(rec[i]), "f1": float(f1[i]),
                  "support": int(true_n[i])} for i, name in enumerate(all_labels) if name in labels}
    return {
        "n": n,
        "accuracy": float(tp.sum() / n) if n else float("nan"),
        "macro_f1": float(np.mean([per[name]["f1"] for name in labels])) if labels else float("nan"),
        "per_model": per,
        "labels": list(labels),
    }


def auroc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve of ``scores`` (higher = more positive); ties count one half.
    nan when either class is empty. (Mann-Whitney U with average ranks.)"""
    scores = np.asarray(scores, dtype=np.float64).ravel()
    positive = np.asarray(positive, dtype=bool).ravel()
    n_pos = int(positive.sum())
    n_neg = positive.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    _, inv, counts = np.unique(scores, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    avg_rank = ends - (counts - 1) / 2.0                 # 1-based average rank of each value
    rank_sum = avg_rank[inv][positive].sum()
    return float((rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def write_confusion_csv(path: str, cm: np.ndarray, labels: Sequence[str]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["true \\ predicted", *labels])
        for name, row in zip(labels, cm):
            w.writerow([name, *[int(v) for v in row]])


def plot_confusion(path: str, cm: np.ndarray, labels: Sequence[str],
                   title: str = "Attribution confusion matrix") -> None:
    """PNG of the row-normalised matrix, with counts in the cells."""
    from matplotlib.figure import Figure   # a bare Figure renders with Agg; pyplot untouched

    n = len(labels)
    size = min(4 + 0.45 * n, 30)
    fig = Figure(figsize=(size + 1.5, size))
    ax = fig.add_subplot(1, 1, 1)
    rows = cm.sum(1, keepdims=True)
    frac = np.divide(cm, rows, out=np.zeros(cm.shape), where=rows > 0)
    im = ax.imshow(frac, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n))
    ax.set_yticks(range(n))
    ax.set_xticklabels(labels, rotation=45, ha="right", fontsize=max(5, 10 - n // 10))
    ax.set_yticklabels(labels, fontsize=max(5, 10 - n // 10))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    if n <= 30:
        for i in range(n):
            for j in range(n):
                if cm[i, j]:
                    ax.text(j, i, str(int(cm[i, j])), ha="center", va="center", fontsize=7,
                            color="white" if frac[i, j] > 0.5 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of true row")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def evaluate(y_true: Sequence[str], y_pred: Sequence[str], known: Sequence[str], *,
             open_set_scores: np.ndarray | None = None, open_set_margins: np.ndarray | None = None,
             out_dir: str | None = None) -> dict:
    """The full evaluation of an attribution run.

    ``y_true``: true model names (models absent from ``known`` are the open-set unknowns);
    ``y_pred``: attributed names (``"unknown"`` allowed); ``known``: the gallery's models;
    ``open_set_scores``: per query, larger = less like any known model (e.g. the distance to the
    nearest enrolled sample), giving ``open_set_auroc`` with unknown models as positives;
    ``open_set_margins``: the same statistic minus the per-model threshold the gallery applies
    (:attr:`~fpfast.gallery.attribution.Attribution.open_set_score`), giving ``open_set_auroc_margin``:
    the ranking the calibrated decisions make.
    Closed-set metrics are computed on the queries of known models only; ``unknown_recall`` is
    the fraction of unknown-model queries answered ``unknown``. With ``out_dir``, writes
    ``metrics.json``, ``confusion.csv`` and ``confusion.png`` there.
    """
    y_true, y_pred = list(y_true), list(y_pred)
    known = list(known)
    known_set = set(known)
    stray = sorted(set(y_pred) - known_set - {UNKNOWN})
    if stray:
        raise ValueError(f"predictions name models that are not among the known ones: {stray}")
    is_known = np.array([t in known_set for t in y_true], dtype=bool)
    closed = report([t for t, k in zip(y_true, is_known) if k],
                    [p for p, k in zip(y_pred, is_known) if k], labels=known)
    out = {"closed_set": closed, "n_queries": len(y_true), "n_unknown_queries": int((~is_known).sum())}
    if (~is_known).any():
        out["unknown_recall"] = float(np.mean([p == UNKNOWN for p, k in zip(y_pred, is_known) if not k]))
    if open_set_scores is not None:
        out["open_set_auroc"] = auroc(np.asarray(open_set_scores), ~is_known)
    if open_set_margins is not None:
        out["open_set_auroc_margin"] = auroc(np.asarray(open_set_margins), ~is_known)
    labels = known + ([UNKNOWN] if (UNKNOWN in y_pred or (~is_known).any()) else [])
    true_mapped = [t if t in known_set else UNKNOWN for t in y_true]
    cm = confusion_matrix(true_mapped, y_pred, labels)
    out["confusion_labels"] = labels
    if out_dir is not None:
        os.makedirs(out_dir, exist_ok=True)
        write_confusion_csv(os.path.join(out_dir, "confusion.csv"), cm, labels)
        plot_confusion(os.path.join(out_dir, "confusion.png"), cm, labels)
        with open(os.path.join(out_dir, "metrics.json"), "w", encoding="utf-8") as fh:
            json.dump(strict_json(out), fh, indent=1, allow_nan=False)  # null where undefined
    out["confusion"] = cm
    return out
