"""Attribution: kNN vote / centroid, normalisers, open-set AUROC, calibrated false-reject rate."""
import numpy as np
import pytest

from fpfast.gallery import UNKNOWN, Gallery, GalleryError, auroc, evaluate
from fpfast.gallery import attribution as attr
from fpfast.gallery import normalize as norm

from _gallery_synth import Clusters

pytest.importorskip("faiss")


@pytest.fixture(scope="module")
def enrolled(tmp_path_factory):
    """6 overlapping-ish clusters (sep=2: open-set AUROC ~0.90 knn / ~0.95 centroid at this
    seed); models 0-4 enrolled (80 each), model 5 held out as the unknown."""
    c = Clusters(n_models=6, seed=21, sep=2.0)
    g = Gallery.create(tmp_path_factory.mktemp("g") / "g")
    c.enroll(g, range(5), 80)
    return c, g


def test_knn_vote_rules():
    labels = np.array([[0, 1, 1, 0], [2, 1, -1, -1]])
    dists = np.array([[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, np.inf, np.inf]])
    win, share, nearest = attr.knn_vote(labels, dists, 3)
    assert win.tolist() == [0, 2]                   # ties go to the nearest sample's model
    assert share.tolist() == [0.5, 0.5]
    assert nearest[0].tolist() == [1.0, 2.0, np.inf]
    win, share, _ = attr.knn_vote(labels, dists, 3, weighting="distance")
    assert win[0] == 0 and share[0] == pytest.approx((1 + 1 / 4) / (1 + 1 / 2 + 1 / 3 + 1 / 4), rel=1e-6)
    with pytest.raises(ValueError, match="unknown weighting"):
        attr.knn_vote(labels, dists, 3, weighting="rank")


def test_closed_set_accuracy_and_scores(enrolled):
    c, g = enrolled
    q, y = c.batch(range(5), 40)
    for method, kw in (("knn", {"k": 10}), ("knn", {"k": 10, "weighting": "distance"}),
                       ("centroid", {})):
        a = g.attribute(q, method=method, **kw)
        assert np.mean(np.array(a.model) == np.array(y)) > 0.97, method
        assert ((a.score >= 0) & (a.score <= 1)).all()
        # a higher score goes with a correct answer more often
        right = np.array(a.predicted) == np.array(y)
        assert a.score[right].mean() >= a.score[~right].mean() if (~right).any() else True
        assert a.top[0][0][0] == a.predicted[0] and len(a.top[0]) <= 5
        assert np.isinf(a.threshold).all() and UNKNOWN not in a.model   # not calibrated


def test_open_set_auroc_with_held_out_cluster(enrolled):
    c, g = enrolled
    known_q, known_y = c.batch(range(5), 40)
    unk_q, unk_y = c.batch([5], 100)
    q = np.concatenate([known_q, unk_q])
    y = known_y + unk_y
    for method in ("knn", "centroid"):
        a = g.attribute(q, method=method)
        value = auroc(a.distance, np.array([t == c.names[5] for t in y]))
        print(f"open-set AUROC ({method}) = {value:.4f}")
        assert value >= {"knn": 0.85, "centroid": 0.9}[method], method
        rep = evaluate(y, a.model, g.models(), open_set_scores=a.distance)
        assert rep["open_set_auroc"] == pytest.approx(value)


def test_calibrated_false_reject_rate(enrolled):
    c, g = enrolled
    held, held_y = c.batch(range(5), 60)
    frr = 0.1
    rec = g.calibrate(held, held_y, frr=frr)
    assert set(rec["per_model"]) == set(c.names[:5]) and rec["frr"] == frr
    test_q, test_y = c.batch(range(5), 400)          # fresh genuine samples
    a = g.attribute(test_q)
    rejected = float(np.mean(a.is_unknown))
    print(f"false-reject rate at frr={frr}: {rejected:.3f}")
    # 60 calibration samples per model: the quantile itself wanders by ~sqrt(.1*.9/60) = 0.04
    assert abs(rejected - frr) < 0.07
    unk = g.attribute(c.sample(5, 200))
    print(f"unknown model rejected: {np.mean(unk.is_unknown):.3f}")
    assert np.mean(unk.is_unknown) > 0.5             # the held-out model is mostly rejected
    # the margin over the applied thresholds: > 0 exactly where the answer is 'unknown'
    np.testing.assert_allclose(unk.open_set_score, np.maximum(unk.distance / unk.threshold,
                                                              unk.ratio / unk.ratio_threshold) - 1)
    np.testing.assert_array_equal(unk.open_set_score > 0, unk.is_unknown)
    assert rec["rejected"] <= frr                    # on the calibration samples: the union bound
    rep = evaluate(test_y + [c.names[5]] * 200, a.model + unk.model, g.models(),
                   open_set_margins=np.r_[a.open_set_score, unk.open_set_score])
    assert rep["open_set_auroc_margin"] == pytest.approx(
        auroc(np.r_[a.open_set_score, unk.open_set_score], np.r_[np.zeros(len(test_y), bool), np.ones(200, bool)]))
    grec = g.calibrate(held, held_y, frr=frr, per_model=False, method="centroid")
    assert grec["per_model"] == {}
    a = g.attribute(test_q, method="centroid")
    assert abs(np.mean(a.is_unknown) - frr) < 0.07
    assert (a.threshold == grec["global"]).all()
    g.fit()                                          # refit: distances change, thresholds go
    assert g.calibration == {}


def test_joint_thresholds_against_numpy():
    """Two tests sharing the FRR jointly: both union-bound thresholds (each at frr / 2) times one factor,
    the conformal 1 - frr quantile of each sample's larger statistic over its threshold (brute force
    here); about frr of the calibration samples then exceed either, at least as many as under the
    union bound and never more than frr; per-model thresholds scale alike."""
    rng = np.random.default_rng(12)
    n, names = 600, ["a", "b", "c"]
    lab = rng.integers(0, 3, n)
    d = rng.gamma(4.0, 1.0 + lab, n)
    r = 0.5 * d / (1 + lab) + rng.random(n)          # correlated with the distance, as the two are
    frr = 0.1
    union = attr.calibrate_thresholds(d, lab, names, frr, True, 5, r, joint=False)
    rec = attr.calibrate_thresholds(d, lab, names, frr, True, 5, r)
    td, tr = attr.thresholds_for(union, names)[lab], attr.ratio_thresholds_for(union, names)[lab]
    worst = np.maximum(d / td, r / tr)
    k = int(np.ceil((1 - frr) * (n + 1))) - 1
    tau = min(np.sort(worst)[k], 1.0)
    assert rec["joint"] == pytest.approx(tau) and tau < 1.0
    assert rec["global"] == pytest.approx(union["global"] * tau)
    assert rec["ratio"]["global"] == pytest.approx(union["ratio"]["global"] * tau)
    for m in names:
        assert rec["per_model"][m]["threshold"] == pytest.approx(union["per_model"][m]["threshold"] * tau)
        assert rec["ratio"]["per_model"][m]["threshold"] == pytest.approx(union["ratio"]["per_model"][m]["threshold"] * tau)
    assert union["rejected"] < rec["rejected"] <= frr and rec["rejected"] == pytest.approx(np.mean(worst > tau))
    assert frr - rec["rejected"] < 2.0 / n + 1e-12   # the conformal rank: within a sample or two of frr
    # no finite threshold (nothing calibrated) or independent tests far apart: the factor stays <= 1
    assert attr.joint_scale([(d, np.full(n, np.inf))], frr) == 1.0
    assert attr.joint_scale([], frr) == 1.0


def test_quantile_threshold():
    s = np.arange(1, 101, dtype=float)
    assert attr.quantile_threshold(s, 0.05) == 96.0      # the ceil(101 * 0.95) = 96th smallest
    assert attr.quantile_threshold(np.arange(1, 20, dtype=float), 0.05) == 19.0   # n + 1 = 20: exact
    assert attr.quantile_threshold(np.arange(1, 10, dtype=float), 0.05) == 9.0    # too few: the largest
    assert attr.quantile_threshold(s, 0.0) == 100.0
    assert attr.quantile_threshold(np.array([]), 0.1) == np.inf


def test_quantile_threshold_bounds_fresh_false_rejects():
    """Split-conformal guarantee: over calibrations of n = 60 uniform samples, a fresh sample
    exceeds the threshold t with probability 1 - t, whose mean must not exceed frr. Exactly it is
    (n + 1 - rank) / (n + 1): 3/61 = 0.049 here; the plain empirical quantile gives 4/61 = 0.066."""
    rng = np.random.default_rng(5)
    fresh = np.mean([1.0 - attr.quantile_threshold(rng.random(60), 0.05) for _ in range(4000)])
    assert abs(fresh - 3 / 61) < 0.003 and fresh <= 0.05


def test_normalisers_do_what_they_say():
    rng = np.random.default_rng(22)
    a = rng.normal(size=(400, 6)) @ rng.normal(size=(6, 6)) * 3 + 7
    lab = np.repeat(np.arange(4), 100)
    a[:, 0] += lab * 2.0
    z = norm.fit("standardize", a).transform(a.astype(np.float32))
    np.testing.assert_allclose(z.mean(0), 0, atol=1e-4)
    np.testing.assert_allclose(z.std(0), 1, atol=1e-4)
    z = norm.fit("whiten", a).transform(a.astype(np.float32))
    np.testing.assert_allclose(np.cov(z.T.astype(np.float64)), np.eye(6), atol=1e-3)
    nz = norm.fit("lda", a, lab, shrinkage=0.0)
    z = nz.transform(a.astype(np.float32)).astype(np.float64)
    within = sum(np.cov(z[lab == j].T, bias=True) * 100 for j in range(4)) / (400 - 4)
    np.testing.assert_allclose(within, np.eye(6), atol=1e-3)
    assert norm.fit("lda", a, lab, n_components=3).transform(a.astype(np.float32)).shape == (400, 3)
    one = norm.fit("lda", a, np.zeros(400, int))  # one model: standardised only, until a second comes
    assert one.method == "lda" and one.projection is None
    np.testing.assert_allclose(one.transform(a.astype(np.float32)),
                               norm.fit("standardize", a).transform(a.astype(np.float32)), atol=1e-6)


def test_lda_helps_when_nuisance_dimensions_dominate(tmp_path):
    """Models differ only in 5 dimensions; 40 others carry large shared noise."""
    rng = np.random.default_rng(23)
    d, m, n = 45, 4, 60
    def sample(j, k):
        x = rng.normal(size=(k, d))
        x[:, 5:] *= 8.0
        x[:, :5] += np.eye(m, 5)[j] * 2.5
        return x.astype(np.float32)
    from fpfast.spec import FingerprintSpec
    spec = FingerprintSpec(families=("moments", "xcorr", "radial"), radial_bins=30)
    assert spec.dim == d
    g = Gallery.create(tmp_path / "g", spec)
    for j in range(m):
        g.add(f"m{j}", sample(j, n))
    q = np.concatenate([sample(j, 50) for j in range(m)])
    y = np.repeat([f"m{j}" for j in range(m)], 50)
    acc = {}
    for method in ("standardize", "whiten", "lda"):
        g.fit(method)
        acc[method] = float(np.mean(np.array(g.attribute(q, k=10).model) == y))
    print(acc)
    assert acc["lda"] >= acc["standardize"] + 0.1 and acc["lda"] > 0.8


def test_ratio_statistic_matches_brute_force_and_flags_in_between_queries(tmp_path):
    """The ratio (Lowe's test) against :class:`OpenSetScorer` ('ratio', exact), and a query halfway
    between two enrolled models: an unremarkable distance, a ratio near 1, answered 'unknown'."""
    from fpfast.gallery.openset import OpenSetScorer
    rng = np.random.default_rng(4)
    dim = Gallery.create(tmp_path / "probe").spec.dim
    centres = rng.normal(size=(3, dim))
    x = np.concatenate([c + rng.normal(size=(60, dim)) * 0.5 for c in centres]).astype(np.float32)
    y = np.repeat([0, 1, 2], 60)
    g = Gallery.create(tmp_path / "g", normalize="none")
    for j in range(3):
        g.add(f"m{j}", x[y == j][:45])
        g.add_holdout(f"m{j}", x[y == j][45:])
    g.fit()
    g.recalibrate(frr=0.1)
    q = np.concatenate([c + rng.normal(size=(20, dim)) * 0.5 for c in centres]).astype(np.float32)
    a = g.attribute(q, k=5)
    exact, nearest = OpenSetScorer("ratio").fit(x[np.r_[0:45, 60:105, 120:165]], np.repeat([0, 1, 2], 45)).score(q)
    agree = np.array([p == f"m{n}" for p, n in zip(a.predicted, nearest)])
    assert agree.mean() > 0.9  # the comparison below is not over an empty set
    np.testing.assert_allclose(a.ratio[agree], exact[agree], rtol=1e-4, atol=1e-6)
    assert np.isfinite(a.ratio_threshold).all() and (a.ratio_threshold < 1).all()
    mid = ((centres[0] + centres[1]) / 2 + rng.normal(size=(20, dim)) * 0.5).astype(np.float32)
    b = g.attribute(mid, k=5)
    assert (b.ratio > 0.8).all() and np.mean(b.is_unknown) >= 0.9
    c = g.attribute(mid, method="centroid")
    np.testing.assert_allclose(c.ratio, np.sqrt(np.sort(g._centroid_dists(mid), 1)[:, 0]
                                                / np.sort(g._centroid_dists(mid), 1)[:, 1]), rtol=1e-5)
    # a calibration from before the ratio rule (no 'ratio' record) thresholds the distance alone
    for rec in g.calibration.values():
        rec.pop("ratio")
    old = g.attribute(mid, k=5)
    assert np.isinf(old.ratio_threshold).all()
    np.testing.assert_array_equal(old.is_unknown, old.distance > old.threshold)


def test_ratio_and_margin_edge_cases():
    np.testing.assert_allclose(attr.ratio_of([4.0, 1.0, 0.0, 1.0], [16.0, np.inf, 0.0, 0.0]), [0.5, 0.0, 1.0, np.inf])
    m = attr.open_set_margin([2.0, 1.0, 1.0], [1.0, 2.0, np.inf], [0.1, 0.9, 0.7], [0.5, 0.6, np.inf])
    np.testing.assert_allclose(m, [1.0, 0.5, 0.7])   # max(2, .2) - 1; max(.5, 1.5) - 1; uncalibrated: the ratio
    np.testing.assert_allclose(attr.open_set_margin([3.0], [1.0]), [2.0])  # no ratio: distance - threshold


def test_model_distances_match_brute_force_in_any_blocks(tmp_path):
    rng = np.random.default_rng(5)
    g = Gallery.create(tmp_path / "g", normalize="none")
    d = g.spec.dim
    for j in range(4):
        g.add(f"m{j}", rng.normal(size=(30 + j, d)).astype(np.float32) + j)
    g.fit()
    q = rng.normal(size=(23, d)).astype(np.float32)
    x, lab = g.transform(g._vectors), g._labels
    ref = np.stack([((q[:, None].astype(np.float64) - x[lab == j][None]) ** 2).sum(-1).min(1) for j in range(4)], 1)
    for kw in ({}, {"block": 7, "q_block": 5}, {"block": 1, "q_block": 1}):
        np.testing.assert_allclose(g.model_distances(q, **kw), ref, rtol=1e-4, atol=1e-3)


def test_default_vote_is_sized_to_the_gallery(tmp_path):
    """k defaults to a tenth of the smallest model's sample count, in [1, 10]; an explicit k wins;
    with eight samples per model, ten votes would outvote a query's own model, and a model of few
    samples beside a dense one is outvoted by it."""
    from fpfast.spec import FingerprintSpec
    spec = FingerprintSpec()
    rng = np.random.default_rng(0)
    g = Gallery.create(str(tmp_path / "g"), spec)
    assert g.vote_k() == 10                      # empty: the largest vote
    centres = rng.normal(size=(3, spec.dim)) * 3
    for m, n, c in zip("abc", (35, 60, 300), centres):
        g.add(m, c + rng.normal(size=(n, spec.dim)))
    assert g.vote_k() == 3                       # the smallest model: 35 samples
    g.add("d", rng.normal(size=(500, spec.dim)))
    g.add("e", rng.normal(size=(400, spec.dim)))
    assert g.vote_k() == 3
    big = Gallery.create(str(tmp_path / "big"), spec)
    for m, n in (("a", 150), ("b", 400)):
        big.add(m, rng.normal(size=(n, spec.dim)))
    assert big.vote_k() == 10                    # 150 samples and more: capped
    # a newcomer of 8 samples beside a dense model around the same place: its queries are its own
    rng = np.random.default_rng(0)
    new = Gallery.create(str(tmp_path / "new"), spec)
    new.add("dense", rng.normal(size=(400, spec.dim)))
    new.add("newcomer", 0.7 + rng.normal(size=(8, spec.dim)))
    qn = 0.7 + rng.normal(size=(40, spec.dim))
    own = np.mean(np.array(new.attribute(qn).predicted) == "newcomer")
    assert new.vote_k() == 1 and own > 0.7
    assert np.mean(np.array(new.attribute(qn, k=10).predicted) == "newcomer") < own - 0.4   # the median rule's vote
    h = Gallery.create(str(tmp_path / "h"), spec)
    h.add("near", np.zeros((8, spec.dim)) + rng.normal(size=(8, spec.dim)) * 0.1)
    h.add("far", np.ones((30, spec.dim)) + rng.normal(size=(30, spec.dim)) * 0.1)
    h.add("mid", np.full((8, spec.dim), 0.4) + rng.normal(size=(8, spec.dim)) * 0.1)
    q = np.zeros((1, spec.dim))
    assert h.vote_k() == 1 and h.attribute(q).predicted == ["near"]
    np.testing.assert_array_equal(h.attribute(q, k=1).score, h.attribute(q).score)
    assert h.attribute(q, k=30, method="knn").predicted == ["far"]  # 30 votes: the biggest model wins


def test_per_model_thresholds_need_the_conformal_rank():
    """A model gets its own threshold only with enough held-out values for the conformal rank to be
    one of them (n >= 1/level - 1), else it uses the global one: the max of a handful is noise."""
    assert attr.conformal_min(0.025) == 39 and attr.conformal_min(0.05) == 19 and attr.conformal_min(0.5) == 1
    for level in (0.025, 0.05, 0.1, 0.3):
        n = attr.conformal_min(level)
        assert np.ceil((1 - level) * (n + 1) - 1e-9) <= n < np.ceil((1 - level) * (n + 2) - 1e-9)
        assert np.ceil((1 - level) * n - 1e-9) > n - 1                   # one fewer: past the largest
    rng = np.random.default_rng(0)
    stats, labels = rng.random(39 + 38), np.r_[np.zeros(39, int), np.ones(38, int)]
    rec = attr.calibrate_thresholds(stats, labels, ["a", "b"], 0.025, True, 5)
    assert set(rec["per_model"]) == {"a"}
    np.testing.assert_array_equal(attr.thresholds_for(rec, ["a", "b"]),
                                  [attr.quantile_threshold(stats[:39], 0.025), rec["global"]])


def test_open_set_statistics_on_the_leading_dimensions(tmp_path):
    """With one open-set block of the leading dimensions the names come from the whole (normalised)
    vector and the open-set statistics - distance to the winner's nearest sample or mean, the
    ratio, their calibration - from those dimensions, raw: checked against numpy, and kept through
    a save (galleries that recorded ``openset_dims`` load as that block)."""
    import json
    rng = np.random.default_rng(8)
    g0 = Gallery.create(tmp_path / "g0")
    dim, d = g0.spec.dim, 16
    centres = rng.normal(size=(3, dim)) * 2
    x = np.concatenate([c + rng.normal(size=(50, dim)) for c in centres]).astype(np.float32) * 3 + 1
    y = np.repeat([0, 1, 2], 50)
    g = Gallery.create(tmp_path / "g")
    g.openset_blocks = [(0, d, False)]
    for gal in (g0, g):
        for j in range(3):
            gal.add(f"m{j}", x[y == j][:40])
            gal.add_holdout(f"m{j}", x[y == j][40:])
        gal.fit()
        gal.recalibrate(frr=0.1)
    q = (np.concatenate([centres, centres[:1] + centres[1:2]]) + rng.normal(size=(4, dim))).astype(np.float32) * 3 + 1
    q = np.repeat(q, 5, 0) + rng.normal(size=(20, dim)).astype(np.float32)
    sl = lambda v: v[:, :d].astype(np.float64)   # noqa: E731
    enrolled = np.concatenate([x[y == j][:40] for j in range(3)])
    lab = np.repeat([0, 1, 2], 40)
    near = np.stack([((sl(q)[:, None] - sl(enrolled)[lab == j][None]) ** 2).sum(-1).min(1) for j in range(3)], 1)
    mean = np.stack([((sl(q) - sl(enrolled)[lab == j].mean(0)) ** 2).sum(1) for j in range(3)], 1)
    for method, dist in (("knn", near), ("centroid", mean)):
        a, a0 = g.attribute(q, method=method, k=5), g0.attribute(q, method=method, k=5)
        assert a.predicted == a0.predicted
        win = np.array([int(p[1:]) for p in a.predicted])
        own = dist[np.arange(len(q)), win]
        other = np.where(np.arange(3)[None] == win[:, None], np.inf, dist).min(1)
        np.testing.assert_allclose(a.distance, own, rtol=1e-4)
        np.testing.assert_allclose(a.ratio, np.sqrt(own / other), rtol=1e-4)
        assert np.isfinite(a.threshold).all()
        assert not np.allclose(a.distance, a0.distance)
        np.testing.assert_allclose(a.choice, a0.open_set_score, rtol=1e-5)   # views are chosen by it
        assert a0.choice is None and "openset" in g.calibration[method] and "openset" not in g0.calibration[method]
        # few held-out images: the enrolled samples' cross-fitted statistics join both spaces' thresholds
        assert g.calibration[method]["openset"]["crossfit"] == g.calibration[method]["crossfit"] > 0
    held = np.concatenate([x[y == j][40:] for j in range(3)])
    hold_lab = np.repeat([0, 1, 2], 10)
    ref = ((sl(held)[:, None] - sl(enrolled)[None]) ** 2).sum(-1)
    ref = np.array([ref[i, lab == hold_lab[i]].min() for i in range(len(held))])
    np.testing.assert_allclose(g.own_model_distance(held, [f"m{j}" for j in hold_lab], openset=True), ref, rtol=1e-4)
    g.save()
    back = Gallery.load(g.path)
    assert back.openset_blocks == [(0, d, False)] and Gallery.load(g0.path).openset_blocks is None
    assert back.openset_scales == {}   # one block: no scales (its per-model thresholds are enough)
    b = back.attribute(q, k=5)
    np.testing.assert_allclose(b.distance, g.attribute(q, k=5).distance, rtol=1e-6)
    meta_path = tmp_path / "g" / "gallery.json"
    meta = json.loads(meta_path.read_text())
    old = {k: v for k, v in meta.items() if k not in ("openset_blocks", "openset_scales")}
    meta_path.write_text(json.dumps({**old, "openset_dims": d}))   # a gallery of 2026-12-06
    assert Gallery.load(g.path, verify=False).openset_blocks == [(0, d, False)]
    for bad in (dim + 1, 0, "16", True):
        meta_path.write_text(json.dumps({**old, "openset_dims": bad}))
        with pytest.raises(GalleryError, match="openset_dims"):
            Gallery.load(g.path, verify=False)
    for bad in ([[0, dim + 1, False]], [[4, 4, False]], [[0, 8]], [[0, 8, 1]], [], "x"):
        meta_path.write_text(json.dumps({**meta, "openset_blocks": bad}))
        with pytest.raises(GalleryError, match="block"):
            Gallery.load(g.path, verify=False)


def test_open_set_statistic_of_several_blocks_is_the_scaled_geometric_mean(tmp_path):
    """Several open-set blocks (one standardised): per model, the geometric mean over blocks of the
    squared distance to its nearest sample in the block divided by its scale there - the 0.95
    quantile of its clean held-out samples' own squared distances - checked against numpy; no
    ratio in that space; the scales and blocks kept through a save; a damaged scale refused."""
    import json
    rng = np.random.default_rng(9)
    g = Gallery.create(tmp_path / "g")
    dim = g.spec.dim
    blocks = [(0, 10, False), (10, 30, True), (30, dim, False)]
    g.openset_blocks = blocks
    centres = rng.normal(size=(3, dim)) * 2
    x = np.concatenate([c + rng.normal(size=(60, dim)) * (1 + j) for j, c in enumerate(centres)]).astype(np.float32)
    x[:, 10:30] = x[:, 10:30] * 50 + 7   # a block of another scale: standardised
    y = np.repeat([0, 1, 2], 60)
    for j in range(3):
        g.add(f"m{j}", x[y == j][:45])
        g.add_holdout(f"m{j}", x[y == j][45:])
    g.fit()
    g.recalibrate(frr=0.1, cross_fit=False)
    enrolled, lab = np.concatenate([x[y == j][:45] for j in range(3)]).astype(np.float64), np.repeat([0, 1, 2], 45)
    held, hlab = np.concatenate([x[y == j][45:] for j in range(3)]).astype(np.float64), np.repeat([0, 1, 2], 15)

    def per_block(q):
        out = []
        for a, b, std in blocks:
            e, v = enrolled[:, a:b], q[:, a:b]
            if std:
                mu, sd = e.mean(0), e.std(0)
                e, v = (e - mu) / sd, (v - mu) / sd
            d = ((v[:, None] - e[None]) ** 2).sum(-1)
            out.append(np.stack([d[:, lab == j].min(1) for j in range(3)], 1))
        return out
    own = np.stack([d[np.arange(len(held)), hlab] for d in per_block(held)])
    scale = np.array([[np.quantile(o[hlab == j], 0.95) for j in range(3)] for o in own])   # [B, M]
    q = (centres[[0, 1, 2, 0]] + rng.normal(size=(4, dim))).astype(np.float32)
    q[:, 10:30] = q[:, 10:30] * 50 + 7
    want = np.exp(np.mean([np.log(d / s[None]) for d, s in zip(per_block(q.astype(np.float64)), scale)], 0))
    np.testing.assert_allclose(g.stat_distances(q, openset=True), want, rtol=1e-3)
    assert set(g.openset_scales) == {"knn", "centroid"}
    np.testing.assert_allclose(np.array([g.openset_scales["knn"]["per_model"][f"m{j}"] for j in range(3)]).T,
                               scale, rtol=1e-3)
    a = g.attribute(q, k=5)
    win = np.array([int(p[1:]) for p in a.predicted])
    np.testing.assert_allclose(a.distance, want[np.arange(4), win], rtol=1e-3)
    assert "ratio" not in g.calibration["knn"]["openset"] and np.isinf(a.ratio_threshold).all()
    g.save()
    back = Gallery.load(g.path)
    assert back.openset_blocks == blocks and back.openset_scales == g.openset_scales
    np.testing.assert_allclose(back.attribute(q, k=5).distance, a.distance, rtol=1e-6)
    meta_path = tmp_path / "g" / "gallery.json"
    meta = json.loads(meta_path.read_text())
    meta["openset_scales"]["knn"]["global"] = [1.0]   # one scale for three blocks
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(GalleryError, match="scales"):
        Gallery.load(g.path, verify=False)


def test_gauss_block_is_each_models_own_ledoit_wolf_mahalanobis(tmp_path):
    """A block of kind ``gauss``: per model with at least GAUSS_MIN_FACTOR samples per dimension the
    squared Mahalanobis distance to its mean under its own Ledoit-Wolf covariance (scikit-learn's
    estimate, in the block's standardised space), for a model with fewer under the pooled
    covariance of those (the same units), the nearest-sample distance where no model has enough;
    combined with a nearest block as any two blocks are; the kind kept through a save."""
    import json
    sk = pytest.importorskip("sklearn.covariance")
    from fpfast.gallery import openspace
    rng = np.random.default_rng(11)
    g = Gallery.create(tmp_path / "g")
    dim = g.spec.dim
    blocks = [(0, 6, True, "gauss"), (6, dim, False)]
    g.openset_blocks = blocks
    n_enr = [40, 40, 8]   # the third model: fewer than 2 x 6 samples, the first two's pooled covariance
    mix = rng.normal(size=(3, 6, 6))   # each model its own correlated covariance in the gauss block
    xs, hs = [], []
    for j in range(3):
        c = rng.normal(size=dim) * 3
        v = c + rng.normal(size=(n_enr[j] + 20, dim))
        v[:, :6] = c[:6] * 10 + rng.normal(size=(n_enr[j] + 20, 6)) @ mix[j] * 5
        xs.append(v[:n_enr[j]].astype(np.float32)); hs.append(v[n_enr[j]:].astype(np.float32))
        g.add(f"m{j}", xs[j])
        g.add_holdout(f"m{j}", hs[j])
    g.fit()
    g.recalibrate(frr=0.1, cross_fit=False)
    enrolled = np.concatenate(xs).astype(np.float64)
    lab = np.repeat([0, 1, 2], n_enr)
    mu, sd = enrolled[:, :6].mean(0), enrolled[:, :6].std(0)
    z = (enrolled[:, :6] - mu) / sd
    q = np.concatenate([h[:4] for h in hs]).astype(np.float64)
    zq = (q[:, :6] - mu) / sd
    want = np.empty((len(q), 3))
    pooled = sk.LedoitWolf().fit(np.concatenate([z[lab == j] - z[lab == j].mean(0) for j in range(2)])).covariance_
    for j in range(3):
        cov = sk.LedoitWolf().fit(z[lab == j]).covariance_ if j < 2 else pooled
        diff = zq - z[lab == j].mean(0)
        want[:, j] = np.einsum("nd,de,ne->n", diff, np.linalg.inv(cov), diff)
    d0 = g.block_distances(q.astype(np.float32))[0]
    np.testing.assert_allclose(d0, want, rtol=1e-3)
    cov, a = openspace.ledoit_wolf(z[lab == 0])
    ref = sk.LedoitWolf().fit(z[lab == 0])
    np.testing.assert_allclose(cov, ref.covariance_, rtol=1e-9, atol=1e-12)
    assert a == pytest.approx(ref.shrinkage_, rel=1e-9) and 0 < a < 1
    # the two blocks combine as any two do: per model, the geometric mean of each scaled distance
    d1 = ((q[:, None, 6:] - enrolled[None, :, 6:]) ** 2).sum(-1)
    d1 = np.stack([d1[:, lab == j].min(1) for j in range(3)], 1)
    sc = openspace.scales_for(g.openset_scales["knn"], ["m0", "m1", "m2"], 2)
    np.testing.assert_allclose(g.stat_distances(q.astype(np.float32), openset=True),
                               np.sqrt(want / sc[0] * d1 / sc[1]), rtol=1e-3)
    g.save()
    assert json.loads((tmp_path / "g" / "gallery.json").read_text())["openset_blocks"][0] == [0, 6, True, "gauss"]
    back = Gallery.load(g.path)
    assert back.openset_blocks == blocks
    np.testing.assert_allclose(back.block_distances(q.astype(np.float32))[0], d0, rtol=1e-6)
    with pytest.raises(ValueError, match="kind"):
        openspace.check_blocks([[0, 6, True, "gaussian"]], dim)
    # no model with enough samples: every model's nearest sample
    g3 = Gallery.create(tmp_path / "g3")
    g3.openset_blocks = [(0, 6, False, "gauss")]
    for j in range(3):
        g3.add(f"m{j}", xs[j][:8])
    g3.fit()
    near = np.stack([((q[:, None, :6] - xs[j][None, :8, :6].astype(np.float64)) ** 2).sum(-1).min(1) for j in range(3)], 1)
    np.testing.assert_allclose(g3.block_distances(q.astype(np.float32))[0], near, rtol=1e-3)
    # every model with a Gaussian of its own: the same distances, no nearest-sample pass
    g2 = Gallery.create(tmp_path / "g2")
    g2.openset_blocks = [(0, 6, False, "gauss")]
    for j in range(2):
        g2.add(f"m{j}", xs[j])
    g2.fit()
    want2 = np.stack([np.einsum("nd,de,ne->n", q[:, :6] - lw.location_, np.linalg.inv(lw.covariance_),
                                q[:, :6] - lw.location_)
                      for lw in (sk.LedoitWolf().fit(xs[j][:, :6].astype(np.float64)) for j in range(2))], 1)
    np.testing.assert_allclose(g2.block_distances(q.astype(np.float32))[0], want2, rtol=1e-3)
    # chunked over models and queries alike (a gallery of many models stays within memory)
    import torch
    from fpfast.gallery.gallery import _whitened_sq
    qt, mt, wt = torch.randn(50, 7), torch.randn(5, 7), torch.randn(5, 7, 7)
    ref = torch.stack([((qt - mt[j]) @ wt[j]).pow(2).sum(1) for j in range(5)], 1)
    for budget in (1, 7, 20, 1 << 22):
        torch.testing.assert_close(_whitened_sq(qt, mt, wt, budget), ref, rtol=1e-5, atol=1e-5)


def test_joined_ratio_is_the_larger_test_in_the_first_ratios_units():
    rng = np.random.default_rng(3)
    r, rt, r2, rt2 = rng.uniform(0.1, 2, (4, 50))
    got = attr.joined_ratio(r, rt, r2, rt2)
    np.testing.assert_allclose(got / rt, np.maximum(r / rt, r2 / rt2))
    # above its threshold exactly where either ratio is above its own
    assert ((got > rt) == ((r > rt) | (r2 > rt2))).all()
    # an uncalibrated second test (inf, or 0) leaves the first ratio as it is
    np.testing.assert_array_equal(attr.joined_ratio(r, rt, r2, np.full(50, np.inf)), r)
    np.testing.assert_array_equal(attr.joined_ratio(r, rt, r2, np.zeros(50)), r)


def test_normalized_open_set_space_joins_the_gaussians_ratio(tmp_path):
    """``openset_space = "normalized"``: the blocks lie in the LDA-normalised vectors searched (each
    model's own Gaussian in its first axes, brute force in numpy from the normaliser's own map), and
    a clean query is `unknown` where its distance, its ratio or the Gaussians' ratio exceeds its
    threshold (each at a third of the FRR); the space is saved, refused when damaged, and follows a
    refit; `fpfast enroll`'s helper sets it for an LDA gallery only."""
    import json
    from fpfast.gallery import openspace
    from fpfast.jobs.enroll import use_discriminant_openset
    c = Clusters(n_models=5, seed=4, sep=2.0)
    g = Gallery.create(tmp_path / "g", normalize="lda")
    assert use_discriminant_openset(g)
    k = openspace.DISCRIMINANT_AXES
    assert g.openset_blocks == [(0, min(k, g.spec.dim), False, "gauss")] and g.openset_space == "normalized"
    g.openset_blocks = [(0, 4, False, "gauss")]   # 4 axes: 40 samples a model is a Gaussian of its own
    for j in range(4):                             # 40 enrolled, 10 held out per model
        g.add(c.names[j], c.sample(j, 40))
        g.add_holdout(c.names[j], c.sample(j, 10))
    g.fit()
    frr = 0.15
    rec = g.recalibrate(frr, cross_fit=False, joint=False)["knn"]
    # the three tests of a clean query, each at a third of the FRR (the union bound): per statistic frr / 3
    hold = g._hold_vectors.astype(np.float64)
    hl = g._hold_labels
    assert rec["frr"] == pytest.approx(frr * 2 / 3) and rec["openset"]["frr"] == pytest.approx(frr * 2 / 3)
    # brute force: LDA map, each model's Ledoit-Wolf Gaussian in the first 4 axes
    nz = g._normalizer
    z = ((g._vectors.astype(np.float64) - nz.mean) * nz.scale) @ nz.projection.astype(np.float64)
    lab = g._labels

    def gauss_sq(x):
        zq = (((x.astype(np.float64) - nz.mean) * nz.scale) @ nz.projection.astype(np.float64))[:, :4]
        out = np.empty((len(x), 4))
        for j in range(4):
            zj = z[lab == j, :4]
            diff = zq - zj.mean(0)
            out[:, j] = np.einsum("nd,de,ne->n", diff, np.linalg.inv(openspace.ledoit_wolf(zj)[0]), diff)
        return out
    q, _ = c.batch(range(5), 30)
    np.testing.assert_allclose(g.block_distances(q)[0], gauss_sq(q), rtol=2e-3)
    # the decision: distance, ratio and the Gaussians' ratio, each over its (global) threshold
    a = g.attribute(q, k=1)
    dm = g.model_distances(q)
    w = np.array([c.names.index(m) for m in a.predicted])
    rows = np.arange(len(q))

    def ratio(d, w):
        o = d.copy(); o[rows[:len(w)], w] = np.inf
        return np.sqrt(d[rows[:len(w)], w] / o.min(1))
    gq = gauss_sq(q)
    t, rt, ort = rec["global"], rec["ratio"]["global"], rec["openset"]["ratio"]["global"]
    want = (dm[rows, w] > t) | (ratio(dm, w) > rt) | (ratio(gq, w) > ort)
    np.testing.assert_array_equal(a.is_unknown, want)
    assert (ratio(gq, w) > ort).any() and not ((ratio(gq, w) > ort) <= (ratio(dm, w) > rt)).all()
    # the thresholds: quantiles of the held-out samples' own statistics at frr / 3 each
    hd = g.model_distances(hold.astype(np.float32))
    assert t == pytest.approx(attr.quantile_threshold(hd[np.arange(len(hl)), hl], frr / 3))
    assert ort == pytest.approx(attr.quantile_threshold(ratio(gauss_sq(hold), hl), frr / 3), rel=1e-3)
    # jointly (the default): the three thresholds times one factor, the conformal 1 - frr quantile of
    # each held-out sample's largest statistic over its union-bound threshold
    worst = np.maximum(np.maximum(hd[np.arange(len(hl)), hl] / t, ratio(hd, hl) / rt), ratio(gauss_sq(hold), hl) / ort)
    tau = min(attr.quantile_threshold(worst, frr), 1.0)
    assert tau < 1.0
    jrec = g.recalibrate(frr, cross_fit=False)["knn"]
    assert jrec["joint"] == pytest.approx(tau, rel=1e-3) and jrec["openset"]["joint"] == pytest.approx(tau, rel=1e-3)
    for got, want_ in ((jrec["global"], t), (jrec["ratio"]["global"], rt), (jrec["openset"]["ratio"]["global"], ort)):
        assert got == pytest.approx(want_ * tau, rel=1e-3)
    assert rec["rejected"] < jrec["rejected"] <= frr and jrec["openset"]["rejected"] == jrec["rejected"]
    assert jrec["rejected"] == pytest.approx(np.mean(worst > tau))
    ja = g.attribute(q, k=1)
    assert ja.is_unknown.sum() >= a.is_unknown.sum() and (ja.is_unknown | ~a.is_unknown).all()
    from fpfast.info import format_gallery_info, gallery_info   # `fpfast info --gallery` says which
    g.save()
    assert f"clean-looking queries: its tests jointly (each fitted at its share, then all x {tau:.3f})" \
        in format_gallery_info(gallery_info(g.path))
    g.recalibrate(frr, cross_fit=False, joint=False)
    g.save()
    assert "the union bound: calibrated before 2026-12-07" in format_gallery_info(gallery_info(g.path))
    # saved and loaded; a damaged value refused
    meta_path = tmp_path / "g" / "gallery.json"
    assert json.loads(meta_path.read_text())["openset_space"] == "normalized"
    back = Gallery.load(g.path)
    assert back.openset_space == "normalized"
    # `fpfast info --gallery` says so (format_gallery_info, gallery_info: imported above)
    line = [x for x in format_gallery_info(gallery_info(g.path)).splitlines() if x.startswith("open-set")]
    assert len(line) == 1 and "first 4 normalised (discriminant) axes" in line[0] and "not yet" not in line[0]
    np.testing.assert_array_equal(back.attribute(q, k=1).is_unknown, a.is_unknown)
    meta = json.loads(meta_path.read_text())
    meta["openset_space"] = "lda"
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(GalleryError, match="openset_space"):
        Gallery.load(g.path, verify=False)
    # a refit moves the axes: the blocks follow the new normaliser
    g.add(c.names[4], c.sample(4, 40))
    g.fit()
    assert not np.allclose(g.block_distances(q)[0][:, :4], gauss_sq(q))
    nz = g._normalizer
    z = ((g._vectors.astype(np.float64) - nz.mean) * nz.scale) @ nz.projection.astype(np.float64)
    lab = g._labels
    np.testing.assert_allclose(g.block_distances(q)[0][:, :4], gauss_sq(q), rtol=2e-3)
    # not for other normalisations
    assert not use_discriminant_openset(Gallery.create(tmp_path / "s", normalize="standardize"))
    # no model with a Gaussian of its own (fewer than 2 samples per axis): the rule without the space
    small = Gallery.create(tmp_path / "small", normalize="lda")
    use_discriminant_openset(small)
    small.openset_blocks = [(0, 4, False, "gauss")]
    for j in range(4):
        small.add(c.names[j], c.sample(j, 7))
        small.add_holdout(c.names[j], c.sample(j, 10))
    small.fit()
    assert not small.reads_openset and g.reads_openset
    g.fit("standardize")   # refitted with another method: its first axes discriminate nothing
    assert not g.reads_openset
    g.fit("lda")
    assert g.reads_openset
    rec = small.recalibrate(frr, cross_fit=False)["knn"]
    assert "openset" not in rec and rec["frr"] == frr
    small.save()
    assert "(not yet: no model has that many)" in format_gallery_info(gallery_info(small.path))
    sa = small.attribute(q, k=1)
    small.openset_blocks = None
    np.testing.assert_array_equal(sa.is_unknown, small.attribute(q, k=1).is_unknown)
