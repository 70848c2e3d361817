"""Gallery directory: round trip, and refusal of tampered, truncated, foreign or missing files."""
import json
import os

import numpy as np
import pytest

from fpfast.gallery import Gallery, GalleryError
from fpfast.spec import FingerprintSpec, SpecError

from _gallery_synth import Clusters

pytest.importorskip("faiss")


def _make(path, index="flat", normalize="standardize", n_models=3):
    c = Clusters(n_models=n_models + 1, seed=7)
    g = Gallery.create(path, normalize=normalize, index=index)
    for j in range(n_models):
        g.add(c.names[j], c.sample(j, 60), keys=[f"{c.names[j]}/img{i}.png" for i in range(60)])
    held, held_y = c.batch(range(n_models), 20)
    g.calibrate(held, held_y, frr=0.1)
    g.save()
    q, _ = c.batch(range(n_models + 1), 8)
    return g, q


@pytest.mark.parametrize("index,normalize", [("flat", "standardize"), ("ivf", "lda"), ("hnsw", "whiten")])
def test_round_trip_gives_identical_answers(tmp_path, index, normalize):
    g, q = _make(tmp_path / "g", index, normalize)
    before = g.search(q, 5)
    att = g.attribute(q, k=5)
    g2 = Gallery.load(tmp_path / "g", FingerprintSpec())
    after = g2.search(q, 5)
    np.testing.assert_array_equal(before.ids, after.ids)
    np.testing.assert_array_equal(before.distances, after.distances)
    assert before.keys == after.keys and after.keys[0][0].endswith(".png")
    att2 = g2.attribute(q, k=5)
    assert att.model == att2.model
    np.testing.assert_array_equal(att.score, att2.score)
    assert g2.models() == g.models() and g2.calibration == json.loads(json.dumps(g.calibration))
    meta = json.load(open(tmp_path / "g" / "gallery.json"))
    assert meta["index"]["type"] == index and meta["normalize"]["method"] == normalize
    assert meta["spec"] == FingerprintSpec().to_dict() and meta["created"]["fpfast_version"]
    assert {"vectors.npy", "labels.npy", "keys.json", "index.faiss"} <= set(meta["files"])


def test_save_is_atomic_and_leaves_no_temporaries(tmp_path):
    g, _ = _make(tmp_path / "g")
    g.add("extra", np.ones((12, g.spec.dim), np.float32))
    g.save()
    assert sorted(os.listdir(tmp_path)) == ["g"]
    assert Gallery.load(tmp_path / "g").models()["extra"] == 12


def test_empty_gallery_round_trip(tmp_path):
    Gallery.create(tmp_path / "g", index="ivf")
    g = Gallery.load(tmp_path / "g")
    assert len(g) == 0 and g.models() == {}
    with pytest.raises(GalleryError, match="empty"):
        g.search(np.zeros((1, g.spec.dim), np.float32))


def test_create_refuses_existing_directory(tmp_path):
    (tmp_path / "g").mkdir()
    (tmp_path / "g" / "photo.jpg").write_bytes(b"x")
    with pytest.raises(GalleryError, match="not empty"):
        Gallery.create(tmp_path / "g")


def _edit_meta(path, fn):
    p = path / "gallery.json"
    meta = json.load(open(p))
    fn(meta)
    p.write_text(json.dumps(meta))


def test_tampered_json_is_refused(tmp_path):
    _make(tmp_path / "g")
    p = tmp_path / "g" / "gallery.json"
    text = p.read_text()
    p.write_text(text[: len(text) // 2])
    with pytest.raises(GalleryError, match="not valid JSON"):
        Gallery.load(tmp_path / "g")
    p.write_text(text)
    _edit_meta(tmp_path / "g", lambda m: m["models"][0].update(count=m["models"][0]["count"] + 1))
    with pytest.raises(GalleryError, match="counts sum to"):
        Gallery.load(tmp_path / "g")
    p.write_text(text)
    _edit_meta(tmp_path / "g", lambda m: m.update(format_version=99))
    with pytest.raises(GalleryError, match="format version 99 is not supported"):
        Gallery.load(tmp_path / "g")
    p.write_text(text)
    _edit_meta(tmp_path / "g", lambda m: m["spec"].update(sigma=2.0))
    with pytest.raises(GalleryError, match="spec was edited"):
        Gallery.load(tmp_path / "g")
    p.write_text(text)
    _edit_meta(tmp_path / "g", lambda m: m.pop("models"))
    with pytest.raises(GalleryError, match="no 'models' field"):
        Gallery.load(tmp_path / "g")
    p.write_text(text)
    _edit_meta(tmp_path / "g", lambda m: m.update(dim=m["dim"] + 1))
    with pytest.raises(GalleryError, match="says dim"):
        Gallery.load(tmp_path / "g")


def test_foreign_json_is_refused(tmp_path):
    (tmp_path / "g").mkdir()
    (tmp_path / "g" / "gallery.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(GalleryError, match="not an fpfast gallery"):
        Gallery.load(tmp_path / "g")
    with pytest.raises(GalleryError, match="no gallery.json"):
        Gallery.load(tmp_path)


def test_truncated_npy_is_refused(tmp_path):
    _make(tmp_path / "g")
    p = tmp_path / "g" / "vectors.npy"
    data = p.read_bytes()
    p.write_bytes(data[: len(data) - 1000])
    with pytest.raises(GalleryError, match="vectors.npy .*truncated"):
        Gallery.load(tmp_path / "g")
    # without the recorded sizes too (a listing rewritten to match), np.load's error is wrapped
    _edit_meta(tmp_path / "g", lambda m: m["files"]["vectors.npy"].update(bytes=len(data) - 1000))
    with pytest.raises(GalleryError, match="vectors.npy is truncated or corrupt"):
        Gallery.load(tmp_path / "g", verify=False)


def test_modified_and_pickled_files_are_refused(tmp_path):
    g, _ = _make(tmp_path / "g")
    p = tmp_path / "g" / "labels.npy"
    lab = np.load(p)
    lab[0] = (lab[0] + 1) % 3
    np.save(p, lab)                                   # same size, other content
    with pytest.raises(GalleryError, match="labels.npy does not match the sha256"):
        Gallery.load(tmp_path / "g")
    with pytest.raises(GalleryError, match="labels.npy counts"):
        Gallery.load(tmp_path / "g", verify=False)
    # an object array (pickle inside a .npy) is never unpickled
    obj = np.empty(len(g), dtype=object)
    np.save(p, obj, allow_pickle=True)
    _edit_meta(tmp_path / "g", lambda m: m["files"]["labels.npy"].update(bytes=os.path.getsize(p)))
    with pytest.raises(GalleryError, match="pickled data"):
        Gallery.load(tmp_path / "g", verify=False)


def test_wrong_dtype_or_shape_is_refused(tmp_path):
    g, _ = _make(tmp_path / "g")
    p = tmp_path / "g" / "vectors.npy"
    np.save(p, g._vectors.astype(np.float64))
    _edit_meta(tmp_path / "g", lambda m: m["files"]["vectors.npy"].update(bytes=os.path.getsize(p)))
    with pytest.raises(GalleryError, match="dtype float64, expected float32"):
        Gallery.load(tmp_path / "g", verify=False)
    np.save(p, g._vectors[:, :10])
    _edit_meta(tmp_path / "g", lambda m: m["files"]["vectors.npy"].update(bytes=os.path.getsize(p)))
    with pytest.raises(GalleryError, match=r"shape \[180, 10\], expected \[180, 179\]"):
        Gallery.load(tmp_path / "g", verify=False)


def test_gallery_of_another_spec_is_refused(tmp_path):
    spec = FingerprintSpec(residual="npr")
    g = Gallery.create(tmp_path / "g", spec)
    g.add("a", np.random.default_rng(0).normal(size=(10, spec.dim)))
    g.save()
    with pytest.raises(SpecError, match="residual: 'denoise' != 'npr'"):
        Gallery.load(tmp_path / "g", FingerprintSpec())
    other = FingerprintSpec(radial_bins=8)
    with pytest.raises(SpecError, match="radial_bins: 8 != 16"):
        g.add("b", np.zeros((10, other.dim)), spec=other)
    assert Gallery.load(tmp_path / "g", spec).models() == {"a": 10}


def test_missing_index_file_is_refused(tmp_path):
    _make(tmp_path / "g")
    os.remove(tmp_path / "g" / "index.faiss")
    with pytest.raises(GalleryError, match="index.faiss is missing"):
        Gallery.load(tmp_path / "g")


def test_missing_vectors_and_foreign_index_are_refused(tmp_path):
    _make(tmp_path / "g")
    (tmp_path / "g" / "index.faiss").write_bytes(b"\x00" * os.path.getsize(tmp_path / "g" / "index.faiss"))
    with pytest.raises(GalleryError, match="not a readable FAISS index"):
        Gallery.load(tmp_path / "g", verify=False)
    os.remove(tmp_path / "g" / "vectors.npy")
    with pytest.raises(GalleryError, match="vectors.npy is missing"):
        Gallery.load(tmp_path / "g")


def _save(path, names):
    from fpfast.gallery import store
    store.save_dir(str(path), {"format": "test"}, {n: np.arange(3) for n in names}, {}, None, None)


def test_a_users_file_named_like_a_new_gallery_file_is_not_replaced(tmp_path):
    g = tmp_path / "g"
    _save(g, ["a.npy"])
    (g / "b.npy").write_bytes(b"the user's own")
    (g / "notes.txt").write_text("mine")
    before = {f: (g / f).read_bytes() for f in os.listdir(g)}
    with pytest.raises(GalleryError, match=r"would replace b\.npy.*does not name them"):
        _save(g, ["a.npy", "b.npy"])
    assert {f: (g / f).read_bytes() for f in os.listdir(g)} == before
    assert sorted(os.listdir(tmp_path)) == ["g"], "a temporary was left beside"
    _save(g, ["a.npy", "c.npy"])  # no collision: the user's files travel, the old own file goes
    assert (g / "b.npy").read_bytes() == b"the user's own" and (g / "notes.txt").read_text() == "mine"
    assert (g / "c.npy").exists()


def test_an_unreadable_gallery_json_protects_every_file(tmp_path):
    g = tmp_path / "g"
    _save(g, ["a.npy"])
    (g / "gallery.json").write_text("{ truncated")
    before = (g / "a.npy").read_bytes()
    with pytest.raises(GalleryError, match="unreadable"):
        _save(g, ["a.npy"])
    assert (g / "a.npy").read_bytes() == before
    os.remove(g / "a.npy")  # the user moved it away: the gallery is written, gallery.json replaced
    _save(g, ["a.npy"])
    assert json.loads((g / "gallery.json").read_text())["format"] == "test"
