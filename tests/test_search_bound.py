"""Pruned exact search (fpfast.search.PcaBound / bounded_knn) against numpy brute force."""
import numpy as np
import pytest
import torch

from fpfast.search import PcaBound, bounded_knn


def _clustered(n=300, d=48, seed=0):
    """Points near 30 well-separated centres in a 6-dim subspace, plus small full-dimensional noise."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 10, (30, 6)) @ rng.normal(0, 1, (6, d))
    base = centres[rng.integers(0, 30, n)] + rng.normal(0, 0.3, (n, d))
    q = base[rng.integers(0, n, 20)] + rng.normal(0, 0.3, (20, d))
    return torch.from_numpy(base), torch.from_numpy(q)


def _brute(base, q):
    return ((q.numpy()[:, None, :] - base.numpy()[None, :, :]) ** 2).sum(-1)


def _exact_fn(base, q, log):
    def exact(rows, cand):
        c = cand.clamp_min(0)
        d = ((q[rows][:, None, :] - base[c]) ** 2).sum(-1)
        d = torch.where(cand >= 0, d, torch.full_like(d, float("inf")))
        log.append(int((cand >= 0).sum()))
        order = torch.argsort(cand, dim=1)           # ties: lower id first, as numpy's stable argsort
        d, cand = d.gather(1, order), cand.gather(1, order)
        d, pos = torch.sort(d, dim=1, stable=True)
        return d, cand.gather(1, pos)
    return exact


@pytest.mark.parametrize("dims", [1, 4, 16])
def test_lower_bound_never_exceeds_distance(dims):
    base, q = _clustered()
    lb = PcaBound.fit(lambda i: base[i], len(base), dims=dims, sample=128, chunk=64).lower_bounds(q).numpy()
    d = _brute(base, q)
    # float64 throughout; the bound is mathematically <= d, rounding is ~1e-12 relative
    assert (lb <= d * (1 + 1e-10) + 1e-9).all()
    assert lb.min() >= 0


def test_full_basis_bound_is_the_distance():
    base, q = _clustered(n=80, d=12)
    lb = PcaBound.fit(lambda i: base[i], len(base), dims=12, sample=80).lower_bounds(q).numpy()
    np.testing.assert_allclose(lb, _brute(base, q), rtol=1e-9, atol=1e-8)


@pytest.mark.parametrize("k", [1, 3])
def test_bounded_knn_is_exact_and_prunes(k):
    base, q = _clustered()
    bound = PcaBound.fit(lambda i: base[i], len(base), dims=6, sample=300)
    log = []
    d, ids, over = bounded_knn(bound.lower_bounds(q), _exact_fn(base, q, log), k, first=8)
    want = np.argsort(_brute(base, q), axis=1, kind="stable")[:, :k]
    assert not over.any()
    assert (ids[:, :k].numpy() == want).all()
    np.testing.assert_allclose(d[:, :k].numpy(), np.sort(_brute(base, q), axis=1)[:, :k], rtol=1e-12)
    # pruning happened: far fewer exact evaluations than the brute force's 20 x 300
    assert sum(log) < 0.25 * len(q) * len(base)


def test_bounded_knn_reports_queries_over_the_cap():
    base, q = _clustered()
    bound = PcaBound.fit(lambda i: base[i], len(base), dims=1, sample=300)   # a weak bound
    lower = bound.lower_bounds(q)
    d, ids, over = bounded_knn(lower, _exact_fn(base, q, []), 1, first=4, cap=12)
    dist = _brute(base, q)
    need = (lower.numpy() <= dist.min(1, keepdims=True) * (1 + 1e-9) + 1e-9).sum(1)
    # rows needing more than cap evaluations even with the true nearest distance must be flagged
    assert over.numpy()[need > 12].all() and over.any() and not over.all()
    ok = ~over.numpy()
    assert (ids[ok, 0].numpy() == dist.argmin(1)[ok]).all()
    assert (ids[over] == -1).all() and torch.isinf(d[over]).all()
