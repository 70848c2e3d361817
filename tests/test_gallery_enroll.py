"""Enrollment: small models, adding samples, removing models, input checks."""
import numpy as np
import pytest
import torch

from fpfast.gallery import Gallery

from _gallery_synth import Clusters

pytest.importorskip("faiss")


def test_ten_samples_per_model_work(tmp_path):
    c = Clusters(n_models=3, seed=11)
    g = Gallery.create(tmp_path / "g")
    c.enroll(g, range(3), 10)
    q, y = c.batch(range(3), 30)
    for method in ("knn", "centroid"):
        a = g.attribute(q, method=method, k=5)
        assert np.mean(np.array(a.model) == np.array(y)) > 0.95
    g.fit("lda")                      # 30 samples in 179-D: shrinkage keeps it well posed
    assert np.mean(np.array(g.attribute(q, k=5).model) == np.array(y)) > 0.95


def test_add_to_existing_model_extends_index_without_rebuild(tmp_path):
    c = Clusters(n_models=2, seed=12)
    g = Gallery.create(tmp_path / "g")
    g.add("a", c.sample(0, 20))
    g.add("b", c.sample(1, 20))
    g.search(c.sample(0, 1))                     # fits the normaliser, builds the index
    index = g._index
    g.add("a", c.sample(0, 15), keys=[f"late{i}" for i in range(15)])
    assert g._index is index and index.ntotal == 55
    assert g.models() == {"a": 35, "b": 20}
    assert g._keys[:2] == ["a#0", "a#1"] and g._keys[-1] == "late14"
    # the extended index answers like one built from scratch with the same normaliser
    q = c.sample(0, 5)
    ref = g.search(q, 10)
    g._index = None
    fresh = g.search(q, 10)
    np.testing.assert_array_equal(ref.ids, fresh.ids)
    g.save()
    assert Gallery.load(tmp_path / "g").models() == {"a": 35, "b": 20}


@pytest.mark.parametrize("index", ["flat", "hnsw"])
def test_remove_model(tmp_path, index):
    c = Clusters(n_models=3, seed=13)
    g = Gallery.create(tmp_path / "g", index=index)
    c.enroll(g, range(3), 30)
    g.add(c.names[0], c.sample(0, 5))            # model0's samples are not contiguous
    q = c.sample(2, 6)
    g.search(q)
    assert g.remove(c.names[0]) == 35
    assert g.models() == {c.names[1]: 30, c.names[2]: 30}
    res = g.search(q, 4)
    assert set(res.models.ravel()) <= {c.names[1], c.names[2]}
    # same answers as a gallery enrolled without model0, same normaliser
    h = Gallery(tmp_path / "h", g.spec, index=index)
    h._normalizer = g._normalizer
    h.add(c.names[1], g._vectors[g._labels == 0])
    h.add(c.names[2], g._vectors[g._labels == 1])
    np.testing.assert_array_equal(h.search(q, 4).ids, res.ids)
    assert (g._labels[res.ids] == res.labels).all()
    with pytest.raises(KeyError, match="not enrolled"):
        g.remove("nope")
    g.save()
    assert Gallery.load(tmp_path / "g").models() == g.models()


def test_torch_input_and_input_checks(tmp_path):
    g = Gallery.create(tmp_path / "g")
    d = g.spec.dim
    g.add("t", torch.randn(12, d))
    g.add("t2", torch.randn(12, d, dtype=torch.float64))
    assert g.models() == {"t": 12, "t2": 12}
    with pytest.raises(ValueError, match=rf"shape \[B, {d}\]"):
        g.add("x", np.zeros((3, d + 1)))
    bad = np.zeros((3, d))
    bad[1, 4] = np.nan
    with pytest.raises(ValueError, match="NaN or inf"):
        g.add("x", bad)
    with pytest.raises(ValueError, match="other than 'unknown'"):
        g.add("unknown", np.zeros((3, d)))
    with pytest.raises(ValueError, match="2 keys for 3 vectors"):
        g.add("x", np.zeros((3, d)), keys=["a", "b"])
    with pytest.raises(ValueError, match=rf"queries must have shape \[Q, {d}\]"):
        g.search(np.zeros((2, 5)))


def test_holdout_survives_save_load_remove_and_recalibrates(tmp_path):
    import numpy as np

    from fpfast.gallery import Gallery
    from fpfast.spec import FingerprintSpec

    spec = FingerprintSpec()
    rng = np.random.default_rng(0)
    g = Gallery.create(str(tmp_path / "g"), spec)
    for i, m in enumerate(["a", "b", "c"]):
        c = rng.normal(size=spec.dim) * 3
        g.add(m, c + rng.normal(size=(20, spec.dim)))
        g.add_holdout(m, c + rng.normal(size=(8, spec.dim)))
    g.fit()
    rec = g.recalibrate(frr=0.25)
    assert set(rec) == {"knn", "centroid"} and set(rec["knn"]["per_model"]) == {"a", "b", "c"}
    g.save()
    h = Gallery.load(str(tmp_path / "g"))
    assert h.holdout_counts() == {"a": 8, "b": 8, "c": 8}
    h.remove("b")
    assert h.holdout_counts() == {"a": 8, "c": 8}
    assert set(h.calibration["knn"]["per_model"]) == set(h.calibration["knn"]["ratio"]["per_model"]) == {"a", "c"}
    h.fit()
    assert h.calibration == {}  # a refit forgets thresholds of the old space ...
    assert set(h.recalibrate(frr=0.25)["knn"]["per_model"]) == {"a", "c"}  # ... the holdout brings them back
