"""Gallery views (:mod:`fpfast.gallery.views`): the enrolled images JPEG-compressed and down-scaled,
each a searchable gallery of its own, and the router that sends a processed query to the view that
matches (``fpfast enroll --views``)."""
from __future__ import annotations

import io
import json
import os

import numpy as np
import pytest
from PIL import Image

from _gallery_synth import Clusters
from cli_helpers import invoke, make_folders
from fpfast.gallery import Gallery, GalleryError
from fpfast.gallery.conditions import ConditionDetector, copy_key
from fpfast.gallery.views import (FEEDS, MIN_LOOK_CLEAN, QUALITIES, SMALL, VIEWS, Router, check_views, copy_name,
                                  jpeg_file, parse_views, view_copy)
from fpfast.spec import FingerprintSpec


def test_view_copies_and_names():
    img = np.random.default_rng(0).integers(0, 256, (40, 48, 3), dtype=np.uint8)
    assert view_copy(img, "scale075").shape == (30, 36, 3) and view_copy(img, "scale05").shape == (20, 24, 3)
    np.testing.assert_array_equal(view_copy(img, "scale05"),
                                  np.asarray(Image.fromarray(img).resize((24, 20), Image.BICUBIC)))
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=85)
    np.testing.assert_array_equal(view_copy(img, "jpeg85"), np.asarray(Image.open(buf).convert("RGB")))
    # drawn: a JPEG quality in QUALITIES drawn from the image's pixels, the same every time for them
    def at(im, q):
        b = io.BytesIO()
        Image.fromarray(im).save(b, format="JPEG", quality=q)
        return np.asarray(Image.open(b).convert("RGB"))
    drawn = set()
    for i in range(12):
        im = img.copy()
        im[0, 0, 0] = i  # another image, one pixel apart
        jp = view_copy(im, "jpeg85", True)
        assert np.array_equal(jp, view_copy(im.copy(), "jpeg85", True))  # the pixels decide, not where they lie
        drawn |= {q for q in range(QUALITIES[0], QUALITIES[1] + 1) if np.array_equal(jp, at(im, q))}
        np.testing.assert_array_equal(view_copy(im, "scale075", True), view_copy(im, "scale075"))  # bicubic
    assert len(drawn) > 1
    assert parse_views("all") == tuple(VIEWS) and parse_views("none") == ()
    assert parse_views("jpeg85, scale05") == ("scale05", "jpeg85")  # VIEWS' order
    with pytest.raises(ValueError, match="unknown gallery view"):
        check_views(["scale2"])
    assert copy_name(copy_key("a/b.png", "resize05")) == "resize05" and copy_name("a/b.png") is None
    assert all(set(FEEDS[v]) for v in VIEWS)


def _router_data(rng, n=60, d=6):
    """Held-out vectors: images near 0, down-scaled copies shifted along axis 0, JPEG ones along 1."""
    shift = {None: 0, "crop08": 0, "resize075": 0, "resize05": 0, "jpeg90": 1, "jpeg70": 1}
    names = [None, "crop08", "resize075", "resize05", "jpeg90", "jpeg70"]
    copies = [c for c in names for _ in range(n)]
    x = rng.normal(size=(len(copies), d))
    for i, c in enumerate(copies):
        if c in ("resize075", "resize05"):
            x[i, 0] += 6
        x[i, 1] += 6 * shift[c]
    return x, copies


def test_router_fits_two_detectors_and_routes_by_them_and_by_size():
    rng = np.random.default_rng(0)
    x, copies = _router_data(rng)
    r = Router.fit(x, copies)
    plain = np.array([c in (None, "crop08") for c in copies])
    for det, pos in ((r.scaled, ("resize075", "resize05")), (r.jpeg, ("jpeg90", "jpeg70"))):  # the oracle
        sel = plain | np.isin(np.array(copies, dtype=object), pos)
        ref = ConditionDetector.fit(x[sel], plain[sel])
        np.testing.assert_allclose(det.p_clean(x), ref.p_clean(x), atol=1e-12)
    q = np.zeros((6, 6))
    q[[0, 1, 2], 0] = 6          # looks down-scaled
    q[[3, 4], 1] = 6             # looks JPEG-compressed
    sides = np.array([48, 32, 64, 64, 40, 40])
    views = dict.fromkeys(VIEWS, object())
    got = r.route(q, sides, 64, views)
    # 48/64 -> scale075, 32/64 -> scale05; a full-size query is no down-scale whatever it looks like
    assert got.tolist() == ["scale075", "scale05", "", "jpeg85", "jpeg85", ""]
    assert r.route(q, None, 64, views).tolist() == ["", "", "", "jpeg85", "jpeg85", ""]  # no sides: no scale
    assert r.route(q, sides, 64, {"jpeg85": 1}).tolist() == ["", "", "", "jpeg85", "jpeg85", ""]
    assert (sides / 64 < SMALL).tolist() == [True, True, False, False, True, True]
    back = Router.from_dict(json.loads(json.dumps(r.to_dict("vector"))), 6)
    assert back.route(q, sides, 64, views).tolist() == got.tolist()
    assert Router.fit(x[:60], copies[:60]) is None  # images only: nothing to tell apart
    # a query whose file is known not to be a JPEG never goes to the JPEG view; unknown: the detector says
    flags = [jpeg_file(k) for k in ("a/1.png", "b.tar/2.JPG", "3.TIFF", "4.jpeg", None, "x.parquet#7", "5.webp")]
    assert flags[:4] == [0.0, 1.0, 0.0, 1.0] and np.isnan(flags[4:]).all()  # WebP may be lossy: unknown
    assert r.route(q, sides, 64, views, jpeg=[0, 1, 1, 0, np.nan, 1]).tolist() == \
        ["scale075", "scale05", "", "", "jpeg85", ""]


def test_router_sends_down_scaled_queries_of_any_size_to_a_view_when_the_views_were_made_of_large_images():
    """``full_size`` (Gallery.large_views): a query that looks down-scaled goes to a scale view
    whatever its size, the one the factor detector (0.75x copies against 0.5x ones) picks."""
    rng = np.random.default_rng(1)
    x, copies = _router_data(rng)
    x[np.array(copies, dtype=object) == "resize05", 2] += 6      # the stronger down-scale, along dim 2
    r = Router.fit(x, copies)
    sc = np.isin(np.array(copies, dtype=object), ["resize075", "resize05"])
    ref = ConditionDetector.fit(x[sc], np.array(copies, dtype=object)[sc] == "resize075")
    np.testing.assert_allclose(r.factor.p_clean(x), ref.p_clean(x), atol=1e-12)  # the oracle
    q = np.zeros((7, 6))
    q[[0, 1, 4, 5, 6], 0] = 6
    q[[1, 4], 2] = 6        # 0: looks 0.75x, 1 and 4: 0.5x, 2: clean, 3: JPEG, 5 and 6: 0.75x and JPEG
    q[[3, 5, 6], 1] = 6
    sides = np.array([64, 64, 64, 64, 48, 64, 48])
    views = dict.fromkeys(VIEWS, object())
    by_size = ["", "", "", "jpeg85", "scale075", "jpeg85", "scale075"]
    assert r.route(q, sides, 64, views).tolist() == by_size
    # full size: the factor picks the view; what looks compressed goes to the JPEG view, but for its size
    every = ["scale075", "scale05", "", "jpeg85", "scale075", "jpeg85", "scale075"]
    assert r.route(q, sides, 64, views, full_size=True).tolist() == every
    assert r.route(q, None, 64, views, full_size=True).tolist() == every[:4] + ["scale05", "jpeg85", "jpeg85"]
    assert r.route(q, sides, 64, views, jpeg=np.zeros(7), full_size=True).tolist() == \
        ["scale075", "scale05", "", "", "scale075", "scale075", "scale075"]     # PNGs: never the JPEG view
    assert r.route(q, None, 64, {"scale05": 1}, full_size=True).tolist() == ["scale05", "scale05", "", "",
                                                                             "scale05", "scale05", "scale05"]
    back = Router.from_dict(json.loads(json.dumps(r.to_dict("vector"))), 6)
    assert back.route(q, sides, 64, views, full_size=True).tolist() == every
    old = r.to_dict("vector")
    assert old["clean"] == 60 >= MIN_LOOK_CLEAN
    del old["factor"]   # a router without the factor detector: the milder view
    assert Router.from_dict(old, 6).route(q, None, 64, views, full_size=True).tolist()[:2] == ["scale075"] * 2
    del old["clean"]    # a gallery from before both: nothing routed by look
    assert Router.from_dict(old, 6).route(q, sides, 64, views, full_size=True).tolist() == by_size
    # more (vectors, copy name) groups teach the down-scale detectors, not the JPEG one
    more = [(rng.normal(size=(30, 6)), None), (rng.normal(size=(30, 6)) + [6, 0, 6, 0, 0, 0], "resize05")]
    r2 = Router.fit(x, copies, more)
    np.testing.assert_allclose(r2.jpeg.p_clean(x), r.jpeg.p_clean(x), atol=1e-12)
    X = np.concatenate([x] + [v for v, _ in more])
    C = np.array(copies + [c for v, c in more for _ in range(len(v))], dtype=object)
    plain, sc = np.array([c in (None, "crop08") for c in C]), np.isin(C, ["resize075", "resize05"])
    np.testing.assert_allclose(r2.scaled.p_clean(X), ConditionDetector.fit(X[plain | sc], plain[plain | sc]).p_clean(X),
                               atol=1e-12)
    np.testing.assert_allclose(r2.factor.p_clean(X), ConditionDetector.fit(X[sc], C[sc] == "resize075").p_clean(X),
                               atol=1e-12)
    assert r2.clean == 60   # the held-out clean images: what the look rule's threshold counts
    r.clean = MIN_LOOK_CLEAN - 1   # detectors fitted on too few clean images: the size rule alone
    assert r.route(q, sides, 64, views, full_size=True).tolist() == by_size
    # ... against the crop and against the images' own side (``native``): a query smaller than
    # every enrolled image that looks down-scaled goes to the view of the nearest scale, whatever
    # else it looks like (5 looks compressed too); one that does not look down-scaled (2, 3) or is
    # not smaller (0 and 6: 240 px of 256) stays; without full size native counts for nothing
    big = np.array([240, 128, 128, 100, 48, 128, 240])
    crop_rule = ["", "", "", "jpeg85", "scale075", "jpeg85", "jpeg85"]
    own = ["", "scale05", "", "jpeg85", "scale075", "scale05", "jpeg85"]
    assert r.route(q, big, 64, views, full_size=True, native=256).tolist() == own
    assert r.route(q, big, 64, views, native=256).tolist() == crop_rule
    assert r.route(q, big, 64, views, full_size=True, native=64).tolist() == crop_rule  # an older gallery's side
    r.clean = MIN_LOOK_CLEAN    # then the look rule for what the size rules left (0; 6 looks compressed)
    assert r.route(q, big, 64, views, full_size=True, native=256).tolist() == ["scale075"] + own[1:]
    with pytest.raises(ValueError, match="clean count"):
        Router.from_dict({**r.to_dict("vector"), "clean": -1}, 6)


def test_copies_of_a_large_image_are_crops_of_its_down_scales():
    from fpfast.gallery.conditions import calibration_copies, centre, copy_size, copy_spec
    spec = FingerprintSpec()          # a 64-px centre crop
    assert copy_size(64) == 144 and copy_spec(spec).size == 144 and copy_spec(spec).id != spec.id
    assert copy_spec(spec.replace(geometry="none")) == spec.replace(geometry="none")
    region = np.random.default_rng(2).integers(0, 256, (144, 150, 3), dtype=np.uint8)
    crop = centre(region, 64)
    np.testing.assert_array_equal(crop, region[40:104, 43:107])
    for name in ("scale075", "scale05"):
        want = centre(np.asarray(Image.fromarray(region).resize(
            (round(150 * VIEWS[name][1]), round(144 * VIEWS[name][1])), Image.BICUBIC)), 64)
        np.testing.assert_array_equal(view_copy(region, name, size=64), want)
        assert want.shape == (64, 64, 3)
    np.testing.assert_array_equal(view_copy(region, "jpeg85", True, 64), view_copy(crop, "jpeg85", True))
    big, small = dict(calibration_copies(region, 64)), dict(calibration_copies(crop))
    assert all(c.shape == ((51, 51, 3) if n == "crop08" else (64, 64, 3)) for n, c in big.items())
    for name in ("jpeg90", "jpeg70", "crop08"):   # made of the crop, as before
        np.testing.assert_array_equal(big[name], small[name])
    want = centre(np.asarray(Image.fromarray(region).resize((75, 72), Image.LANCZOS)), 64)
    np.testing.assert_array_equal(big["resize05"], want)
    # an image no larger than the crop: the copies are as they were (the down-scale of the whole)
    img = region[:64, :64]
    for (n1, a), (n2, b) in zip(calibration_copies(img, 64), calibration_copies(img)):
        assert n1 == n2 and np.array_equal(a, b)
    assert view_copy(img, "scale05", size=64).shape == (32, 32, 3)


def _gallery_with_views(tmp_path, seed=0, openset_blocks=None, name="g"):
    """A gallery whose views are its clusters processed: down-scaling moves every sample along dim 0
    and model j's onto model j+1's clean cluster, JPEG along dim 1 and onto model j+2's (held-out
    copies alike): a processed query is then nearest another model's clean samples."""
    c = Clusters(n_models=4, dim=FingerprintSpec().dim, seed=seed)
    g = Gallery.create(str(tmp_path / name), FingerprintSpec())
    g.view_names = tuple(VIEWS)
    g.openset_blocks = openset_blocks
    group = {"scale075": 0, "scale05": 0, "resize075": 0, "resize05": 0, "jpeg85": 1, "jpeg90": 1, "jpeg70": 1}
    off = np.stack([[c.centres[(j + 1 + k) % 4] - c.centres[j] for j in range(4)] for k in range(2)])

    def moved(x, how, j):
        if how not in group:  # a crop: as the image
            return x.copy()
        k = group[how]
        y = x + off[k, j] * c.scale
        y[:, k] += 40 * c.scale[k]
        return y.astype(np.float32)
    for j, m in enumerate(c.names):
        x = c.sample(j, 30)
        keys = [f"{m}/{i}.png" for i in range(30)]
        g.add(m, x, keys)
        for v in VIEWS:
            g.add_view(v, m, moved(x, v, j), keys)
        h = c.sample(j, 40)  # >= 39 per model: enough for per-model thresholds (the conformal floor)
        hk = [f"{m}/h{i}.png" for i in range(40)]
        g.add_holdout(m, h, hk)
        for name in ("jpeg90", "jpeg70", "resize075", "resize05", "crop08"):
            g.add_holdout(m, moved(h, name, j), [copy_key(k, name) for k in hk])
    g.note_sides([64])
    g.fit()
    g.recalibrate(0.05)
    return c, g, moved


def test_views_answer_routed_queries_and_round_trip(tmp_path):
    c, g, moved = _gallery_with_views(tmp_path)
    assert g.router is not None and all(g.views[v].calibration.get("knn") for v in VIEWS)
    # the gallery has per-model thresholds; its views, whose copies were made one way, global ones only
    assert g.calibration["knn"]["per_model"] and not any(g.views[v].calibration["knn"].get("per_model") for v in VIEWS)
    q, truth = c.batch(range(4), 10)
    lab = np.repeat(np.arange(4), 10)
    jq = np.concatenate([moved(q[lab == j], "jpeg85", j) for j in range(4)])
    sq = np.concatenate([moved(q[lab == j], "scale05", j) for j in range(4)])
    sides = np.full(len(q), 64)
    a = g.attribute(np.concatenate([q, jq, sq]), sides=np.r_[sides, sides, np.full(len(q), 32)])
    assert set(a.condition[:40]) <= {"clean", "processed"}  # clean queries stay in the gallery
    assert a.condition[40:80] == ["jpeg85"] * 40
    # the small ones go to the 0.5x view by their size (answered there unless the gallery's own
    # answer is clearly nearer: KEEP_MARGIN, the next test)
    assert list(g.route(sq, np.full(len(q), 32))) == ["scale05"] * 40 and "scale05" in a.condition[80:]
    assert a.predicted[:80] == truth * 2
    assert all(p == t for p, t, c in zip(a.predicted[80:], truth, a.condition[80:]) if c == "scale05")
    # the JPEG-looking queries are those whose file type matters (a .png never goes to the JPEG view)
    m = g.file_type_matters(np.concatenate([q, jq]), sides=np.r_[sides, sides])
    assert m[40:].all() and m.sum() <= 40 + sum(c != "clean" for c in a.condition[:40])
    png = g.attribute(jq, sides=sides, jpeg=np.zeros(len(jq)))
    assert "jpeg85" not in png.condition
    # a routed answer is the view's own, thresholds included
    v = g.views["jpeg85"].attribute(jq)
    np.testing.assert_allclose(a.distance[40:80], v.distance)
    np.testing.assert_allclose(a.threshold[40:80], v.threshold)
    assert a.model[40:80] == v.model
    # without its views the same gallery answers the processed queries badly: the views are what helps
    g.save()
    h = Gallery.load(g.path)
    assert h.view_names == g.view_names and h.router == g.router
    for name in VIEWS:
        np.testing.assert_array_equal(h.views[name]._vectors, g.views[name]._vectors)
        assert h.views[name].keys == g.views[name].keys and h.views[name].calibration == g.views[name].calibration
    b = h.attribute(np.concatenate([q, jq, sq]), sides=np.r_[sides, sides, np.full(len(q), 32)])
    assert b.model == a.model and b.condition == a.condition
    np.testing.assert_allclose(b.distance, a.distance, rtol=1e-5)
    plain = Gallery.load(g.path)
    plain.views, plain.router = {}, None
    assert np.mean(np.array(plain.attribute(sq).predicted) == np.array(truth)) < 0.9


def test_open_set_statistics_of_their_own_leave_the_routing_and_the_views_choice_as_they_were(tmp_path):
    """With ``openset_blocks`` the view that answers a query, and whether the gallery's own answer is
    kept instead, are chosen by the searched space's open-set score as without it; queries the
    gallery answers and calls clean get the open-set statistics and thresholds of the leading
    dimensions, processed ones and those a view answers keep the searched space's (the views
    have none of their own)."""
    c, g, moved = _gallery_with_views(tmp_path)
    _, h, _ = _gallery_with_views(tmp_path, openset_blocks=[(0, 40, False)], name="h")
    assert "openset" in h.calibration["knn"] and "clean" in h.calibration["knn"]["openset"]
    assert all(v.openset_blocks is None and "openset" not in v.calibration["knn"] for v in h.views.values())
    q, truth = c.batch(range(4), 10)
    lab = np.repeat(np.arange(4), 10)
    x = np.concatenate([q] + [np.concatenate([moved(q[lab == j], v, j) for j in range(4)]) for v in ("jpeg85", "scale05")])
    sides = np.r_[np.full(80, 64), np.full(40, 32)]
    a, b = g.attribute(x, sides=sides), h.attribute(x, sides=sides)
    assert b.condition == a.condition and b.predicted == a.predicted
    np.testing.assert_allclose(b.choice, a.open_set_score, rtol=1e-5)
    cond = np.array(b.condition)
    clean, other = np.flatnonzero(cond == "clean"), np.flatnonzero(cond != "clean")
    assert len(clean) > 30 and "jpeg85" in cond
    np.testing.assert_allclose(b.distance[other], a.distance[other], rtol=1e-6)
    np.testing.assert_allclose(b.threshold[other], a.threshold[other])
    win = np.array([list(h.models()).index(p) for p in np.array(b.predicted)[clean]])
    base, lab_h = h._vectors[:, :40].astype(np.float64), h._labels
    own = np.array([((x[i, :40] - base[lab_h == w]) ** 2).sum(1).min() for i, w in zip(clean, win)])
    np.testing.assert_allclose(b.distance[clean], own, rtol=1e-3)   # float32 expansion, norms in the hundreds
    clean_rec = h.calibration["knn"]["openset"]["clean"]
    assert np.allclose(b.threshold[clean], [clean_rec["per_model"].get(n, {}).get("threshold", clean_rec["global"])
                                            for n in np.array(b.predicted)[clean]])
    h.save()
    back = Gallery.load(h.path)
    assert back.openset_blocks == [(0, 40, False)] and all(v.openset_blocks is None for v in back.views.values())
    assert back.attribute(x, sides=sides).model == b.model


def test_views_follow_removal_and_refit_and_tampering_is_refused(tmp_path):
    c, g, _ = _gallery_with_views(tmp_path)
    g.remove(c.names[0])
    assert all(c.names[0] not in v.models() for v in g.views.values())
    assert all(len(v) == 90 for v in g.views.values())
    g.fit("lda")
    assert g.router is None and all(v.normalize == "lda" and v._normalizer.method == "lda" for v in g.views.values())
    g.recalibrate(0.05)
    g.save()
    p = os.path.join(g.path, "view_jpeg85_vectors.npy")
    arr = np.load(p)
    arr[0, 0] += 1
    np.save(p, arr)
    with pytest.raises(GalleryError):
        Gallery.load(g.path)


def test_enroll_keeps_views_by_default_and_attributes_processed_queries_through_them(tmp_path):
    root = make_folders(tmp_path / "train", 12)
    r = invoke("enroll", tmp_path / "g", "--from-folders", root, "--spec", "default", "-q")
    assert r.exit_code == 0, r.output
    g = Gallery.load(str(tmp_path / "g"))
    assert g.view_names == tuple(VIEWS) and g.router is not None
    assert all(set(g.views[v].models()) == set(g.models()) for v in VIEWS)
    assert all(len(g.views[v]) == len(g) for v in VIEWS)  # every enrolled image, once per view
    r = invoke("info", "--gallery", tmp_path / "g")
    assert r.exit_code == 0 and f"jpeg85 {len(g)} samples" in r.output and "routed" in r.output, r.output
    assert f"{len(g)} enrolled samples, cross-fitted" in r.output   # 2 held-out images per model: few
    jdir = tmp_path / "q" / "alpha"
    os.makedirs(jdir)
    for f in sorted(os.listdir(os.path.join(root, "alpha")))[:4]:
        Image.open(os.path.join(root, "alpha", f)).save(jdir / (f[:-4] + ".jpg"), quality=80)
    r = invoke("attribute", tmp_path / "q", "--gallery", tmp_path / "g", "--out", tmp_path / "a.parquet", "-q")
    assert r.exit_code == 0, r.output
    import pyarrow.parquet as pq
    t = pq.read_table(tmp_path / "a.parquet").to_pydict()
    assert t["condition"] == ["jpeg85"] * 4 and t["predicted"] == ["alpha"] * 4
    r = invoke("enroll", tmp_path / "g", "--model", "delta", os.path.join(root, "beta"), "--views", "none")
    assert r.exit_code == 2 and "fixed when a gallery is created" in r.output
    more = make_folders(tmp_path / "more", 12, seed=2)
    r = invoke("enroll", tmp_path / "g", "--model", "delta", os.path.join(more, "beta"), "-q")  # gets views too
    assert r.exit_code == 0 and "delta" in Gallery.load(str(tmp_path / "g")).views["scale05"].models()
    r = invoke("enroll", tmp_path / "n", "--from-folders", root, "--spec", "default", "--views", "none", "-q")
    assert r.exit_code == 0 and Gallery.load(str(tmp_path / "n")).view_names == ()
    r = invoke("enroll", tmp_path / "c", "--from-folders", root, "--views", "all", "--calibrate-on", "clean")
    assert r.exit_code == 2 and "--calibrate-on augmented" in r.output
    r = invoke("enroll", tmp_path / "x", "--from-folders", root, "--views", "scale3")
    assert r.exit_code == 2 and "unknown gallery view" in r.output


def _vectors_of(g, paths) -> np.ndarray:
    """``g``'s vectors of the centre crops of image files (as the stream computes them)."""
    from fpfast.jobs.mappers import host_vectors, vector_mapper
    from fpfast.jobs.options import StreamOptions
    from fpfast.gallery.conditions import centre
    import torch
    ims = np.stack([centre(np.asarray(Image.open(p).convert("RGB")), g.spec.size) for p in paths])
    return host_vectors(vector_mapper(g.spec, StreamOptions(quiet=True), g.embedder()))(torch.from_numpy(ims))


def _large_image(period: int, seed: int, size: int = 160) -> np.ndarray:
    """cli_helpers.model_image at ``size`` px: noise plus the model's periodic grid."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    grid = ((xx % period == 0) | (yy % period == 0)) * 120.0
    base = rng.integers(0, 256, (size, size, 3)).astype(np.float32) * 0.3
    return np.clip(base + grid[..., None], 0, 255).astype(np.uint8)


def test_a_gallery_of_large_images_routes_their_down_scales_whatever_their_size(tmp_path, monkeypatch):
    """Images larger than twice the crop: views and copies are crops of down-scales, the gallery
    says so (large_views) and records the images' own side (160 px, before the crop). A 0.5x
    down-scale of a new image (80 px, larger than the 64-px crop but smaller than every enrolled
    image) goes to the 0.5x view by its size, end to end, while the full images stay in the
    gallery; one of the enrolled images' size goes to a view by its look alone only once the
    router was fitted on enough clean held-out images (MIN_LOOK_CLEAN, lowered here to the 12
    this gallery holds)."""
    from cli_helpers import MODELS
    import pyarrow.parquet as pq
    from fpfast.gallery import views
    for m, period in MODELS.items():
        os.makedirs(tmp_path / "train" / m)
        os.makedirs(tmp_path / "q" / m)
        for i in range(20):   # 4 held out per model: enough copies (>= 10 each) for every detector
            Image.fromarray(_large_image(period, period * 1000 + i)).save(tmp_path / "train" / m / f"{i:03d}.png")
        for i in range(4):
            im = Image.fromarray(_large_image(period, 7000 + period * 100 + i))
            im.save(tmp_path / "q" / m / f"full{i}.png")
            im.resize((80, 80), Image.BILINEAR).save(tmp_path / "q" / m / f"half{i}.png")
    r = invoke("enroll", tmp_path / "g", "--from-folders", tmp_path / "train", "--spec", "default", "-q")
    assert r.exit_code == 0, r.output
    g = Gallery.load(str(tmp_path / "g"))
    assert g.copy_side == 144 and g.min_side == 160 and g.large_views and g.router.get("factor") is not None
    assert g.router["clean"] == 12 < views.MIN_LOOK_CLEAN
    r = invoke("info", "--gallery", tmp_path / "g")
    assert ("a query smaller than its images (160 px) is routed by its size, not yet by its look alone: the "
            "router was fitted on 12 clean held-out images") in r.output, r.output
    halves = [tmp_path / "q" / m / f"half{i}.png" for m in MODELS for i in range(4)]
    hv, n = _vectors_of(g, halves), len(halves)
    assert list(g.route(hv, np.full(n, 80), None, np.zeros(n))) == ["scale05"] * n
    assert not any(str(x).startswith("scale") for x in g.attribute(   # the same at the images' own size
        hv, sides=np.full(n, 160), jpeg=np.zeros(n)).condition)
    r = invoke("attribute", tmp_path / "q", "--gallery", tmp_path / "g", "--out", tmp_path / "a.parquet", "-q")
    assert r.exit_code == 0, r.output
    t = pq.read_table(tmp_path / "a.parquet").to_pydict()
    cond_of = {os.path.basename(p)[:4]: [] for p in t["path"]}
    for p, c in zip(t["path"], t["condition"]):
        cond_of[os.path.basename(p)[:4]].append(c)
    assert cond_of["half"] == ["scale05"] * n, cond_of["half"]
    assert not any(str(c).startswith("scale") for c in cond_of["full"]), cond_of["full"]
    g.min_side = 64   # a gallery enrolled before the images' own side was read: capped at the crop
    g.save()
    r = invoke("info", "--gallery", tmp_path / "g")
    assert "(64 px)" not in r.output and "re-enroll it to route queries smaller than them" in r.output, r.output
    g.min_side = 160
    g.save()
    monkeypatch.setattr(views, "MIN_LOOK_CLEAN", 12)
    r = invoke("info", "--gallery", tmp_path / "g")
    assert "a down-scaled query of any size is routed" in r.output and "re-enroll" not in r.output, r.output
    assert all(str(x).startswith("scale") for x in g.route(hv, np.full(n, 160), None, np.zeros(n)))
    r = invoke("attribute", tmp_path / "q", "--gallery", tmp_path / "g", "--out", tmp_path / "a.parquet",
               "--overwrite", "-q")
    assert r.exit_code == 0, r.output
    t = pq.read_table(tmp_path / "a.parquet").to_pydict()
    full = [c for p, c in zip(t["path"], t["condition"]) if os.path.basename(p).startswith("full")]
    assert sum(str(c).startswith("scale") for c in full) <= 1, full
    # fpfast train re-enrolls the same way: trained on the crops, views made of the larger regions
    r = invoke("train", tmp_path / "g", "--from-folders", tmp_path / "train", "--epochs", "1", "--dim", "8", "-q")
    assert r.exit_code == 0, r.output
    t = Gallery.load(str(tmp_path / "g"))
    assert t.spec.embedding is not None and t.copy_side == 144 and t.min_side == 160 and t.large_views
    assert all(len(t.views[v]) == len(t) for v in VIEWS)
    key = t.keys[0]
    crop = np.asarray(Image.open(key).convert("RGB"))[48:112, 48:112]
    import torch
    want = t.embedder().embed(torch.from_numpy(crop[None].copy()), layout="hwc")
    np.testing.assert_allclose(t._vectors[0], np.asarray(want)[0], rtol=1e-4, atol=1e-5)
    # a plain embedding's router reads the handcrafted vectors, kept for held-out images alone
    assert t.router["input"] == "handcrafted" and t.router["clean"] == 12
    r = invoke("attribute", tmp_path / "q", "--gallery", tmp_path / "g", "--out", tmp_path / "b.parquet", "-q")
    assert r.exit_code == 0, r.output
    u = pq.read_table(tmp_path / "b.parquet").to_pydict()
    halves = [c for p, c in zip(u["path"], u["condition"]) if os.path.basename(p).startswith("half")]
    assert sum(str(c).startswith("scale") for c in halves) >= len(halves) - 1, halves
    # a gallery of small images (no larger than the crop) keeps the size rule alone
    small = make_folders(tmp_path / "small", 12)
    assert invoke("enroll", tmp_path / "s", "--from-folders", small, "--spec", "default", "-q").exit_code == 0
    s = Gallery.load(str(tmp_path / "s"))
    assert s.copy_side == 32 and not s.large_views


def test_large_views_route_full_size_queries_by_look_and_keep_a_clearly_nearer_answer_here(tmp_path):
    """A query sent to a scale view is answered by it unless the gallery's own answer is nearer
    its model by more than KEEP_MARGIN of open-set score: one smaller than the crop (by its size),
    and with ``large_views`` one of full size that looks down-scaled (by its look) and one smaller
    than the enrolled images (by their own size); without ``large_views`` a full-size query is
    never routed to a scale view."""
    from fpfast.gallery.views import KEEP_MARGIN
    c, g, moved = _gallery_with_views(tmp_path)
    q, truth = c.batch(range(4), 10)
    lab = np.repeat(np.arange(4), 10)
    sq = np.concatenate([moved(q[lab == j], "scale05", j) for j in range(4)])

    def kept_here(route, a, sides):
        here = g._attribute_here(sq, "knn", None, "uniform", 5, sides, None, None)
        kept = 0
        for i, name in enumerate(route):
            v = g.views[name].attribute(sq[i:i + 1])
            if here.open_set_score[i] + KEEP_MARGIN < v.open_set_score[0]:   # the gallery's answer, kept
                kept += 1
                assert a.condition[i] in ("clean", "processed") and a.model[i] == here.model[i]
                np.testing.assert_allclose(a.distance[i], here.distance[i], rtol=1e-6)
            else:
                assert a.condition[i] == name and a.model[i] == v.model[0]
                np.testing.assert_allclose(a.distance[i], v.distance[0], rtol=1e-6)
        return kept
    full, small = np.full(len(q), 64), np.full(len(sq), 32)
    assert not g.large_views
    a = g.attribute(np.concatenate([q, sq]), sides=np.r_[full, full])
    assert not any(str(x).startswith("scale") for x in a.condition)     # full size: never by look alone
    route = g.route(sq, small)   # smaller than the crop: by its size
    assert set(route) == {"scale05"}
    assert 0 < kept_here(route, g.attribute(sq, sides=small), small) < len(sq)   # both branches taken
    g.note_copy_sides([144])   # large images enrolled into a gallery whose copies predate copy_side
    assert g.copy_side == 64 and not g.large_views
    fresh = Gallery.create(str(tmp_path / "fresh"), FingerprintSpec())
    fresh.note_copy_sides([144, 200])
    assert fresh.copy_side == 144 and fresh.large_views
    g.copy_side = 144
    assert g.large_views
    a = g.attribute(np.concatenate([q, sq]), sides=np.r_[full, full])
    assert set(a.condition[:40]) <= {"clean", "processed"} and a.predicted[:40] == truth
    route = g.route(sq, full)   # by its look
    assert all(str(x).startswith("scale") for x in route)
    assert 0 < kept_here(route, a.take(np.arange(40, 80)), full) < len(sq)
    g.min_side = 256            # smaller than the enrolled images (their own side, 256 px): by their size
    half = np.full(len(sq), 128)
    route = g.route(sq, half)
    assert set(route) == {"scale05"}
    assert 0 < kept_here(route, g.attribute(sq, sides=half), half) < len(sq)