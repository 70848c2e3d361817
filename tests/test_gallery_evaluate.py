"""Evaluation metrics against scikit-learn (the oracle), and the written reports."""
import csv
import json

import numpy as np
import pytest

from fpfast.gallery import UNKNOWN, auroc, confusion_matrix, evaluate, report

sk = pytest.importorskip("sklearn.metrics")


@pytest.fixture
def preds():
    rng = np.random.default_rng(31)
    labels = ["a", "b", "c", "d"]
    y = rng.choice(labels, 300)
    p = np.where(rng.random(300) < 0.7, y, rng.choice(labels[:3], 300))   # "d" never predicted
    return labels, y.tolist(), p.tolist()


def test_report_matches_sklearn(preds):
    labels, y, p = preds
    r = report(y, p, labels)
    assert r["accuracy"] == pytest.approx(sk.accuracy_score(y, p))
    assert r["macro_f1"] == pytest.approx(sk.f1_score(y, p, labels=labels, average="macro", zero_division=0))
    pr, rc, f1, sup = sk.precision_recall_fscore_support(y, p, labels=labels, zero_division=0)
    for i, name in enumerate(labels):
        m = r["per_model"][name]
        assert (m["precision"], m["recall"], m["f1"], m["support"]) == pytest.approx((pr[i], rc[i], f1[i], sup[i]))
    np.testing.assert_array_equal(confusion_matrix(y, p, labels), sk.confusion_matrix(y, p, labels=labels))


def test_auroc_matches_sklearn_with_ties():
    rng = np.random.default_rng(32)
    pos = rng.random(500) < 0.3
    scores = np.round(rng.normal(size=500) + pos, 1)           # many ties
    assert auroc(scores, pos) == pytest.approx(sk.roc_auc_score(pos, scores), abs=1e-12)
    assert auroc(np.ones(10), np.arange(10) < 3) == 0.5
    assert np.isnan(auroc(np.arange(5.0), np.zeros(5, bool)))


def test_evaluate_writes_reports(tmp_path, preds):
    labels, y, p = preds
    known = labels[:3]                                          # "d" is the unknown model
    p = [(UNKNOWN if i % 2 else "a") if q == "d" else q for i, q in enumerate(p)]
    scores = np.array([1.0 if t == "d" else 0.0 for t in y]) + np.random.default_rng(0).random(len(y))
    out = evaluate(y, p, known, open_set_scores=scores, out_dir=tmp_path / "rep")
    sel = [t in known for t in y]
    ky = [t for t, s in zip(y, sel) if s]
    kp = [q for q, s in zip(p, sel) if s]
    assert out["closed_set"]["accuracy"] == pytest.approx(sk.accuracy_score(ky, kp))
    assert out["closed_set"]["macro_f1"] == pytest.approx(
        sk.f1_score(ky, kp, labels=known, average="macro", zero_division=0))
    assert out["open_set_auroc"] == pytest.approx(sk.roc_auc_score([not s for s in sel], scores))
    assert out["confusion_labels"] == known + [UNKNOWN]
    rows = list(csv.reader(open(tmp_path / "rep" / "confusion.csv")))
    assert rows[0][1:] == known + [UNKNOWN] and len(rows) == 5
    assert sum(int(v) for r in rows[1:] for v in r[1:]) == len(y)
    assert (tmp_path / "rep" / "confusion.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match=r"not among the known ones: \['d'\]"):
        evaluate(y, y, known)
    metrics = json.load(open(tmp_path / "rep" / "metrics.json"))
    assert metrics["unknown_recall"] == pytest.approx(out["unknown_recall"])
