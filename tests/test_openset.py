"""Open-set scorers and metrics against brute-force numpy / scipy / sklearn computations."""
import numpy as np
import pytest
from scipy.stats import multivariate_normal

from fpfast.gallery.openset import OpenSetScorer, auroc, gmm_loglik, oscr, tnr_at_tpr


@pytest.fixture
def data():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(60, 5))
    y = rng.integers(0, 4, size=60) * 10 + 7          # labels need not be 0..C-1
    q = rng.normal(size=(23, 5)) * 1.5
    return x, y, q


def test_nearest_and_kth_match_brute_force(data):
    x, y, q = data
    d = np.array([[np.linalg.norm(a - b) for b in x] for a in q])
    s, c = OpenSetScorer("nearest").fit(x, y).score(q)
    np.testing.assert_allclose(s, d.min(1), rtol=1e-9, atol=1e-9)   # float64, same sums reordered
    np.testing.assert_array_equal(c, y[d.argmin(1)])
    s, _ = OpenSetScorer("kth", k=4).fit(x, y).score(q)
    np.testing.assert_allclose(s, np.sort(d, 1)[:, 3], rtol=1e-9, atol=1e-9)


def test_ratio_matches_brute_force(data):
    x, y, q = data
    d = np.array([[np.linalg.norm(a - b) for b in x] for a in q])
    s, c = OpenSetScorer("ratio").fit(x, y).score(q)
    for i in range(len(q)):
        j = d[i].argmin()
        other = d[i][y != y[j]].min()               # nearest sample of any other model
        assert s[i] == pytest.approx(d[i, j] / other, rel=1e-9)
        assert c[i] == y[j]
    assert ((s >= 0) & (s <= 1)).all()
    # a query exactly between two one-sample models scores 1, one on a sample scores 0
    s, _ = OpenSetScorer("ratio").fit(np.array([[0.0, 0], [2, 0]]), [1, 2]).score([[1.0, 0], [2, 0]])
    np.testing.assert_allclose(s, [1.0, 0.0])
    with pytest.raises(ValueError, match="at least two models"):
        OpenSetScorer("ratio").fit(x, np.zeros(len(x)))


def test_mahalanobis_matches_brute_force(data):
    x, y, q = data
    classes = np.unique(y)
    mu = {c: x[y == c].mean(0) for c in classes}
    r = np.stack([x[i] - mu[y[i]] for i in range(len(x))])
    cov = sum(np.outer(v, v) for v in r) / len(x)
    cov = 0.8 * cov + 0.2 * np.trace(cov) / 5 * np.eye(5)
    inv = np.linalg.inv(cov)
    want = np.array([[(a - mu[c]) @ inv @ (a - mu[c]) for c in classes] for a in q])
    s, c = OpenSetScorer("mahalanobis", shrink=0.2).fit(x, y).score(q)
    np.testing.assert_allclose(s, want.min(1), rtol=1e-8)           # float64 matrix inverse
    np.testing.assert_array_equal(c, classes[want.argmin(1)])


def test_gmm_loglik_matches_scipy(data):
    x, _, q = data
    rng = np.random.default_rng(1)
    w = np.array([0.3, 0.7])
    means, var = rng.normal(size=(2, 5)), rng.uniform(0.5, 2, size=(2, 5))
    want = np.log(sum(w[j] * multivariate_normal(means[j], np.diag(var[j])).pdf(q) for j in range(2)))
    np.testing.assert_allclose(gmm_loglik(q, np.log(w), means, var), want, rtol=1e-9)


def test_gmm_scorer_single_component_is_a_diagonal_gaussian(data):
    x, y, q = data
    s, c = OpenSetScorer("gmm", components=1, reg=1e-6).fit(x, y).score(q)
    classes = np.unique(y)
    ll = np.stack([multivariate_normal(x[y == k].mean(0), np.diag(x[y == k].var(0) + 1e-6)).logpdf(q)
                   for k in classes], 1)
    np.testing.assert_allclose(s, -ll.max(1), rtol=1e-5)             # sklearn's EM converges to the MLE
    np.testing.assert_array_equal(c, classes[ll.argmax(1)])


def test_metrics_match_sklearn_and_definitions():
    from sklearn.metrics import roc_auc_score
    rng = np.random.default_rng(0)
    k, u = rng.normal(size=50).round(1), rng.normal(0.8, 1, size=30).round(1)   # rounded: ties
    want = roc_auc_score(np.r_[np.zeros(50), np.ones(30)], np.r_[k, u])
    assert auroc(k, u) == pytest.approx(want, abs=1e-12)
    assert tnr_at_tpr(k, u) == pytest.approx((u > np.quantile(k, 0.95)).mean())
    # OSCR: perfect separation and all correct -> 1; nothing correct -> 0
    assert oscr(np.zeros(5), np.ones(5, bool), np.ones(4)) == pytest.approx(1.0)
    assert oscr(k, np.zeros(50, bool), u) == 0.0
    with pytest.raises(ValueError, match="unknown open-set scorer"):
        OpenSetScorer("vote")
