"""Cross-fitted open-set statistics (fpfast.gallery.crossfit): each enrolled sample's distance and
ratio measured in a refitted gallery without its fold, checked against a brute-force numpy
computation; the calibration they join; and what they are for: a few-shot gallery's false
`unknown` rate near the one asked instead of scattered by which images it holds."""
import numpy as np
import pytest

from fpfast.gallery import Gallery
from fpfast.gallery import attribution as attr
from fpfast.gallery import crossfit
from fpfast.gallery import normalize as norm

from _gallery_synth import Clusters


def few_shot(tmp_path, seed, n_models=6, enrolled=8, held=2, normalize="lda", sep=6.0):
    """A gallery of ``enrolled`` samples and ``held`` held-out ones of each of ``n_models``
    Gaussian clusters, fitted."""
    c = Clusters(n_models, sep=sep, seed=seed)
    g = Gallery.create(str(tmp_path / f"g{seed}"), normalize=normalize)
    for j in range(n_models):
        g.add(c.names[j], c.sample(j, enrolled))
    for j in range(n_models):
        g.add_holdout(c.names[j], c.sample(j, held))
    g.fit()
    return g, c


def test_fold_ids_deal_every_model_across_the_folds():
    y = np.repeat([0, 1, 2], [10, 7, 1])
    f = crossfit.fold_ids(y, 5, seed=3)
    np.testing.assert_array_equal(f, crossfit.fold_ids(y, 5, seed=3))      # seeded
    for j, n in ((0, 10), (1, 7)):
        counts = np.bincount(f[y == j], minlength=5)
        assert counts.sum() == n and counts.max() - counts.min() <= 1   # round-robin
    assert not np.array_equal(f, crossfit.fold_ids(y, 5, seed=4))
    # models with as many samples are dealt alike (the held-out split's way): the i-th images of
    # every model, often one content through each generator, leave the gallery together
    y2 = np.repeat([0, 1, 2], 10)
    f2 = crossfit.fold_ids(y2, 5, seed=3)
    np.testing.assert_array_equal(f2[:10], f2[10:20])
    np.testing.assert_array_equal(f2[:10], f2[20:])


def test_crossfit_stats_match_brute_force(tmp_path):
    """Each enrolled sample's statistics equal numpy's: the normaliser refitted on the other folds
    plus the held-out images, the squared distance to its own model's nearest sample there, and
    the ratio over the nearest sample of any other model."""
    g, _ = few_shot(tmp_path, 0, normalize="standardize")
    hx, hy = g._hold_vectors, g._hold_labels
    s, r, lab = crossfit.crossfit_stats(g, ["knn"], hx, hy)["knn"]
    assert len(s) == len(g) and sorted(lab.tolist()) == sorted(g._labels.tolist())
    fold = crossfit.fold_ids(g._labels)
    x, y = np.concatenate([g._vectors, hx]), np.concatenate([g._labels, hy])
    want_s, want_r = [], []
    for f in range(crossfit.FOLDS):
        rest = np.r_[fold != f, np.ones(len(hx), bool)]
        nz = norm.fit("standardize", x[rest], y[rest])
        z, zq = nz.transform(x[rest]).astype(np.float64), nz.transform(g._vectors[fold == f]).astype(np.float64)
        d = ((zq[:, None] - z[None]) ** 2).sum(-1)
        for row, j in zip(d, g._labels[fold == f]):
            own, other = row[y[rest] == j].min(), row[y[rest] != j].min()
            want_s.append(own), want_r.append(np.sqrt(own / other))
    np.testing.assert_allclose(s, want_s, rtol=1e-4)
    np.testing.assert_allclose(r, want_r, rtol=1e-4)


def test_recalibrate_adds_crossfit_to_the_global_thresholds_only(tmp_path):
    g, _ = few_shot(tmp_path, 1)
    rec = g.recalibrate(frr=0.05, joint=False)["knn"]   # the union bound's shares, as fitted
    n_hold = len(g._hold_labels)
    assert rec["crossfit"] == len(g) and rec["n"] == len(g) + n_hold
    s, r, lab = g._open_set_stats(g._hold_vectors, [g._names[i] for i in g._hold_labels], "knn")
    xs, xr, _ = crossfit.crossfit_stats(g, ["knn"], g._hold_vectors, g._hold_labels)["knn"]
    assert rec["global"] == attr.quantile_threshold(np.r_[s, xs], 0.025)
    assert rec["ratio"]["global"] == attr.quantile_threshold(np.r_[r, xr], 0.025)
    assert rec["per_model"] == {}            # 2 held-out images per model: no per-model threshold
    # jointly (the default): both scaled by one factor, measured over the held-out and cross-fitted alike
    worst = np.maximum(np.r_[s, xs] / rec["global"], np.r_[r, xr] / rec["ratio"]["global"])
    tau = min(attr.quantile_threshold(worst, 0.05), 1.0)
    jrec = g.recalibrate(frr=0.05)["knn"]
    assert jrec["joint"] == pytest.approx(tau) and jrec["global"] == pytest.approx(rec["global"] * tau)
    assert jrec["ratio"]["global"] == pytest.approx(rec["ratio"]["global"] * tau)
    # enough clean held-out images: no cross-fit, the record as before
    big, _ = few_shot(tmp_path, 2, n_models=4, enrolled=20, held=crossfit.CROSSFIT_BELOW // 4)
    rec = big.recalibrate(frr=0.05)["knn"]
    assert "crossfit" not in rec and rec["n"] == crossfit.CROSSFIT_BELOW
    assert set(rec["per_model"]) == set(big._names)


def test_per_model_thresholds_ignore_the_crossfit_values():
    stats = np.r_[np.linspace(0, 1, 40), np.full(100, 5.0)]
    labels = np.zeros(140, int)
    own = np.r_[np.ones(40, bool), np.zeros(100, bool)]
    rec = attr.calibrate_thresholds(stats, labels, ["a"], 0.05, True, 5, stats, own)
    assert rec["per_model"]["a"]["threshold"] == attr.quantile_threshold(stats[:40], 0.025)
    assert rec["global"] == 5.0 and rec["crossfit"] == 100


@pytest.mark.parametrize("normalize", ["lda", "standardize"])
def test_crossfit_steadies_the_few_shot_false_unknown_rate(tmp_path, normalize):
    """Over 12 few-shot galleries (8 enrolled + 2 held-out samples per model), fresh samples of the
    known models are answered `unknown` at a rate that scatters far less around the one asked,
    and never far above it, once the enrolled samples are cross-fitted."""
    rates = {True: [], False: []}
    for seed in range(12):
        g, c = few_shot(tmp_path, 100 + seed, normalize=normalize)
        q, _ = c.batch(range(len(c.names)), 60)
        for on in (False, True):
            g.recalibrate(frr=0.05, methods=("knn",), cross_fit=on)
            rates[on].append(g.attribute(q, k=1).is_unknown.mean())
    off, on = np.array(rates[False]), np.array(rates[True])
    assert np.abs(on - 0.05).mean() < 0.6 * np.abs(off - 0.05).mean()
    assert on.max() < 0.15 and on.std() < off.std()


def test_a_model_with_one_sample_is_left_out_of_its_fold(tmp_path):
    g, c = few_shot(tmp_path, 3, n_models=3, enrolled=6, held=0)
    g.add("solo", c.sample(0, 1) + 50.0)
    g.fit()
    s, r, lab = crossfit.crossfit_stats(g, ["knn", "centroid"], g._hold_vectors, g._hold_labels)["centroid"]
    solo = g._names.index("solo")
    assert len(s) == len(g) - 1 and solo not in lab and np.isfinite(s).all() and np.isfinite(r).all()


def test_crossfit_ratios_match_the_held_out_ones_when_models_share_content(tmp_path):
    """The i-th image of every model shows one content (a photo or prompt through each generator),
    and enrollment holds out the same positions of every model: a held-out image's content twins
    are never in the gallery. The folds must deal the models alike too, or a fold sample's twins
    stay as its nearest other-model neighbours and its ratio statistic is inflated."""
    rng = np.random.default_rng(5)
    n_models, n, dim = 5, 40, 24
    content = rng.normal(size=(n, dim)) * 4.0            # shared by the i-th image of every model
    centres = rng.normal(size=(n_models, dim)) * 1.5
    from fpfast.jobs.enroll import split_holdout
    keep, hold = split_holdout(n, 0.2, 0)
    g = Gallery.create(str(tmp_path / "g"), normalize="standardize")
    spec_dim = g.spec.dim
    x = [np.pad(centres[j] + content + rng.normal(size=(n, dim)) * 0.5, ((0, 0), (0, spec_dim - dim)))
         for j in range(n_models)]
    for j in range(n_models):
        g.add(f"m{j}", x[j][keep])
    for j in range(n_models):
        g.add_holdout(f"m{j}", x[j][hold])
    g.fit()
    _, held, _ = g._open_set_stats(g._hold_vectors, [g._names[i] for i in g._hold_labels], "knn")
    _, xr, _ = crossfit.crossfit_stats(g, ["knn"], g._hold_vectors, g._hold_labels)["knn"]
    assert abs(np.median(xr) - np.median(held)) < 0.1 * np.median(held)


def test_augmented_copies_go_with_their_image_and_are_not_measured(tmp_path):
    """``fpfast enroll --augment`` enrolls copies of each image (keys ``<key>#aug<j>``): in its fold's
    gallery an image's own copy would be its nearest neighbour, and a copy is no clean image."""
    from fpfast.gallery.conditions import aug_key
    c = Clusters(4, sep=6.0, seed=7)
    g = Gallery.create(str(tmp_path / "g"), normalize="standardize")
    for j in range(4):
        x = c.sample(j, 8)
        keys = [f"m{j}/{i}.png" for i in range(8)]
        g.add(c.names[j], x, keys)
        g.add(c.names[j], x + 0.01, [aug_key(k, 1) for k in keys])   # near-duplicate copies
        g.add(c.names[j], c.sample(j, 1) + 0.01, [aug_key(f"m{j}/gone.png", 1)])  # its image not enrolled
        g.add_holdout(c.names[j], c.sample(j, 2))
    g.fit()
    fold, measured = crossfit.enrolled_folds(g)
    keys = np.array(g.keys)
    for i in np.flatnonzero(measured):
        assert fold[keys == aug_key(keys[i], 1)] == fold[i]
    assert measured.sum() == 32 and (fold[[k.endswith("gone.png#aug1") for k in keys]] == -1).all()
    s, _, lab = crossfit.crossfit_stats(g, ["knn"], g._hold_vectors, g._hold_labels)["knn"]
    held, _, _ = g._open_set_stats(g._hold_vectors, [g._names[i] for i in g._hold_labels], "knn")
    assert len(s) == 32 and np.median(s) > 0.5 * np.median(held)    # no sample met its own copy
