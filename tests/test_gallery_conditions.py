"""Calibration on clean and processed (re-encoded, resized, cropped) held-out images, and the
detector that picks per query which thresholds apply (:mod:`fpfast.gallery.conditions`,
``fpfast enroll --calibrate-on``)."""
from __future__ import annotations

import io
import json
import os

import numpy as np
import pytest
from PIL import Image

from cli_helpers import MODELS, invoke, make_folders
from fpfast.gallery import Gallery, GalleryError
from fpfast.gallery import attribution as attr
from fpfast.gallery.conditions import (COPIES, MIN_EACH, ConditionDetector, calibration_copies, copy_key,
                                       is_copy)
from fpfast.gallery.views import VIEWS
from fpfast.spec import FingerprintSpec


def test_copies_are_the_named_re_encodings():
    img = np.random.default_rng(0).integers(0, 256, (40, 48, 3), dtype=np.uint8)
    got = calibration_copies(img)
    assert [n for n, _ in got] == list(COPIES)
    c = dict(got)
    assert c["jpeg90"].shape == c["jpeg70"].shape == img.shape
    assert c["resize075"].shape == (30, 36, 3) and c["resize05"].shape == (20, 24, 3)
    np.testing.assert_array_equal(c["crop08"], img[4:36, 4:42])
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=70)
    np.testing.assert_array_equal(c["jpeg70"], np.asarray(Image.open(buf).convert("RGB")))
    np.testing.assert_array_equal(c["resize05"], np.asarray(Image.fromarray(img).resize((24, 20), Image.LANCZOS)))
    assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(got, calibration_copies(img)))
    assert copy_key("a/b.png", "jpeg70") == "a/b.png#cal-jpeg70" and is_copy("a/b.png#cal-jpeg70")
    assert not is_copy("a/b.png") and not is_copy("")


def test_detector_is_standardised_logistic_regression():
    """p_clean equals sklearn's probability on the standardised inputs (the oracle, converged
    tightly: its default tolerance stops ~1e-4 short of the optimum the Newton fit reaches); it
    round-trips through its dict and refuses one of another width."""
    from sklearn.linear_model import LogisticRegression
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 1, (40, 6)), rng.normal(0.8, 2, (160, 6))]) * [1, 10, 100, 1, 1, 1]
    clean = np.arange(200) < 40
    det = ConditionDetector.fit(x, clean)
    z = (x - x.mean(0)) / x.std(0)
    ref = LogisticRegression(C=0.5 / (1e-3 * 200), class_weight="balanced", max_iter=10000, tol=1e-12)
    ref.fit(z, clean)
    q = rng.normal(0.4, 1.5, (25, 6)) * [1, 10, 100, 1, 1, 1]
    np.testing.assert_allclose(det.p_clean(q), ref.predict_proba((q - x.mean(0)) / x.std(0))[:, 1], atol=1e-6)
    assert (det.is_clean(x) == clean).mean() > 0.7
    back = ConditionDetector.from_dict(det.to_dict(), 6)
    np.testing.assert_array_equal(back.p_clean(q), det.p_clean(q))
    with pytest.raises(ValueError, match="of 5 dims"):
        ConditionDetector.from_dict(det.to_dict(), 5)
    assert ConditionDetector.fit(x[:49], np.arange(49) < MIN_EACH - 1) is None   # 9 clean: too few


def _gallery(tmp_path, with_copies: bool):
    """Three models; held-out samples clean, plus (``with_copies``) 'copies' shifted along the
    first axis - a re-encoding the detector can see - and spread wider."""
    spec = FingerprintSpec()
    rng = np.random.default_rng(0)
    g = Gallery.create(str(tmp_path / ("c" if with_copies else "p")), spec)
    for m in "abc":
        c = rng.normal(size=spec.dim) * 3
        g.add(m, c + rng.normal(size=(30, spec.dim)))
        keys = [f"{m}{i}" for i in range(12)]
        g.add_holdout(m, c + rng.normal(size=(12, spec.dim)), keys)
        if with_copies:
            cp = c + 2.0 * rng.normal(size=(24, spec.dim))
            cp[:, 0] += 25
            g.add_holdout(m, cp, [copy_key(k, n) for k in keys for n in ("jpeg90", "resize05")])
    g.fit()
    g.recalibrate(frr=0.25)   # per-model thresholds need >= 7 held-out samples each at this level
    return g, rng


def test_recalibrate_fits_clean_pooled_and_detector_and_attribute_picks_per_query(tmp_path):
    g, rng = _gallery(tmp_path, True)
    rec = g.calibration["knn"]
    assert set(rec["clean"]["per_model"]) == set(rec["per_model"]) == {"a", "b", "c"}
    assert rec["n"] == 108 and "detector" in rec and "crossfit" not in rec
    # few clean held-out images: the enrolled samples, cross-fitted, join the clean record's global thresholds
    assert rec["clean"]["crossfit"] == len(g) and rec["clean"]["n"] == 36 + len(g)
    assert rec["clean"]["global"] < rec["global"]     # the copies spread wider: pooled thresholds are looser
    q = np.concatenate([g._hold_vectors[:5], g._hold_vectors[-5:]])  # 5 clean, 5 copies
    a = g.attribute(q, k=5)
    assert a.condition == ["clean"] * 5 + ["processed"] * 5
    names = list(g.models())
    win = np.array([names.index(p) for p in a.predicted])
    want = np.where(np.arange(10) < 5, attr.thresholds_for(rec["clean"], names)[win],
                    attr.thresholds_for(rec, names)[win])
    np.testing.assert_array_equal(a.threshold, want)
    # an image smaller than the spec's crop and than every enrolled image was cropped or down-scaled:
    # processed whatever it looks like (no rule while the enrolled sides are unknown)
    side = g.spec.size
    sides = [side, side - 1, side * 4, side - 1, side] + [side] * 5
    assert g.attribute(q, k=5, sides=sides).condition == a.condition
    g.note_sides([side * 2, side * 3])
    c = g.attribute(q, k=5, sides=sides)
    assert c.condition == ["clean", "processed", "clean", "processed", "clean"] + ["processed"] * 5
    # a full-size query known not to come from a JPEG file meets the clean thresholds, whatever the
    # detector says; a JPEG file's or an unknown type's (NaN) keeps the detector's call; a smaller one
    # stays processed
    jpeg = [0, 0, 1, np.nan, 0, 0, 0, 1, np.nan, 0]
    f = g.attribute(q, k=5, sides=sides, jpeg=jpeg)
    assert f.condition == ["clean", "processed", "clean", "processed", "clean"] \
        + ["clean", "clean", "processed", "processed", "clean"]
    np.testing.assert_array_equal(f.threshold[5:], np.where(f.condition[5:] == np.array(["clean"] * 5),
                                                            attr.thresholds_for(rec["clean"], names)[win[5:]],
                                                            attr.thresholds_for(rec, names)[win[5:]]))
    # whose file type can change the answer: called processed and not smaller (no router here)
    assert g.file_type_matters(q, sides).tolist() == [False] * 5 + [True] * 5
    assert g.file_type_matters(q, [side - 1] * 10).tolist() == [False] * 10
    g.note_sides([side // 2])   # a gallery of small images: a small query is not a processed one
    small = g.attribute(q, k=5, sides=[side // 2] * 5 + [side // 2 - 1] * 5)
    assert small.condition == a.condition[:5] + ["processed"] * 5
    # saved and loaded, the detector answers the same; a removed model leaves both records
    g.save()
    h = Gallery.load(g.path)
    b = h.attribute(q, k=5)
    assert b.condition == a.condition and b.model == a.model and h.min_side == side // 2
    h.remove("b")
    for r in (h.calibration["knn"], h.calibration["knn"]["clean"]):
        assert set(r["per_model"]) == set(r["ratio"]["per_model"]) == {"a", "c"}


def test_without_copies_calibration_is_as_before(tmp_path):
    g, _ = _gallery(tmp_path, False)
    rec = g.calibration["knn"]
    assert "clean" not in rec and "detector" not in rec
    a = g.attribute(g._hold_vectors[:4], k=5)
    assert a.condition is None


def test_a_damaged_detector_is_refused(tmp_path):
    g, _ = _gallery(tmp_path, True)
    g.calibration["knn"]["detector"]["coef"] = [0.0] * 3
    with pytest.raises(GalleryError, match="condition detector of 179 dims"):
        g.attribute(g._hold_vectors[:2])
    g.note_sides([64])
    g.save()
    p = os.path.join(g.path, "gallery.json")
    meta = json.load(open(p))
    assert meta["min_side"] == 64
    assert meta["copy_side"] is None   # no copies noted: not a gallery of large images
    for field, bad in (("min_side", "64"), ("copy_side", 0)):
        json.dump({**meta, field: bad}, open(p, "w"))
        with pytest.raises(GalleryError, match=f"{field} must be a positive integer"):
            Gallery.load(g.path, verify=False)
    del meta["copy_side"]   # a gallery from before large views
    json.dump(meta, open(p, "w"))
    assert Gallery.load(g.path, verify=False).copy_side is None


def _jpeg_folder(src, dst, quality):
    for m in os.listdir(src):
        os.makedirs(os.path.join(dst, m), exist_ok=True)
        for f in os.listdir(os.path.join(src, m)):
            Image.open(os.path.join(src, m, f)).convert("RGB").save(os.path.join(dst, m, f[:-4] + ".jpg"),
                                                                    quality=quality)
    return dst


def test_enroll_holds_out_copies_and_re_encoded_queries_of_known_models_are_not_unknown(tmp_path):
    """``fpfast enroll``: each held-out image gets its copies (keys KEY#cal-NAME); JPEG queries of
    known models are then answered 'unknown' far less often than under a clean-only calibration,
    which calls most of them unknown; the output names each query's condition."""
    import pyarrow.parquet as pq
    train = make_folders(tmp_path / "train", 50)
    test = make_folders(tmp_path / "test", 20, seed=7)
    jpeg = _jpeg_folder(test, str(tmp_path / "jpeg"), 80)
    rates = {}
    for how in ("augmented", "clean"):
        gdir = str(tmp_path / how)
        r = invoke("enroll", gdir, "--from-folders", train, "--calibrate-on", how, "--quiet")
        assert r.exit_code == 0, r.output
        g = Gallery.load(gdir)
        copies = [k for k in g.hold_keys if is_copy(k)]
        assert len(copies) == (len(COPIES) * 10 * len(MODELS) if how == "augmented" else 0)
        assert ("detector" in g.calibration["knn"]) == (how == "augmented")
        out = str(tmp_path / f"{how}.parquet")
        for m in MODELS:
            r = invoke("attribute", os.path.join(jpeg, m), "-g", gdir, "-o", out, "--quiet")
            assert r.exit_code == 0, r.output
            t = pq.read_table(out).to_pandas()
            rates.setdefault(how, []).append((t["model"] == "unknown").mean())
            assert set(t["condition"].dropna()) <= {"clean", "processed", *VIEWS}
            assert t["condition"].isna().all() == (how == "clean")
            os.remove(out)
    assert np.mean(rates["clean"]) > 0.5, rates
    assert np.mean(rates["augmented"]) < np.mean(rates["clean"]) - 0.3, rates
    info = invoke("info", "--gallery", str(tmp_path / "augmented"))
    assert "processed copies" in info.output


def test_a_second_pass_decodes_only_the_keys_asked_for(tmp_path, monkeypatch):
    """``only_keys``: the copies' pass over a model's sources decodes its held-out images alone."""
    from fpfast import pipeline
    from fpfast.jobs.collect import image_sources
    from fpfast.jobs.options import StreamOptions
    from fpfast.spec import load_spec
    root = make_folders(tmp_path / "f", 6)
    src = os.path.join(root, "alpha")
    want = {os.path.join(src, "001.png"), os.path.join(src, "004.png")}
    decoded = []
    real = pipeline.run_stream

    def counting(items, *a, **kw):
        items = list(items)
        decoded.extend(it.key for it in items)
        return real(iter(items), *a, **kw)
    monkeypatch.setattr(pipeline, "run_stream", counting)
    imgs, keys, errors = image_sources([src], load_spec(None), StreamOptions(quiet=True), only_keys=want)
    assert sorted(keys) == sorted(want) == sorted(decoded) and len(imgs) == 2 and not errors
