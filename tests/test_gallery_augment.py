"""Augmented enrollment (``fpfast enroll --augment K``, :mod:`fpfast.jobs.augment`)."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from cli_helpers import MODELS, invoke, make_folders
from fpfast.gallery import Gallery, GalleryError
from fpfast.gallery.conditions import COPIES, aug_key, is_copy
from fpfast.gallery.store import MAX_AUGMENT, check_augment
from fpfast.jobs.augment import augmented_copies


def test_copies_are_deterministic_per_image_and_re_encoded():
    img = np.random.default_rng(0).integers(0, 256, (48, 40, 3), dtype=np.uint8)
    a = augmented_copies(img, 6, 16, seed=0)
    b = augmented_copies(img.copy(), 6, 16, seed=0)   # the same pixels, from anywhere
    other = img.copy()
    other[0, 0, 0] ^= 1
    c = augmented_copies(other, 6, 16, seed=0)
    assert len(a) == 6 and all(x.dtype == np.uint8 and x.ndim == 3 and x.shape[2] == 3 for x in a)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert any(x.shape != y.shape or not np.array_equal(x, y) for x, y in zip(a, c))
    assert all(min(x.shape[:2]) >= 16 and max(x.shape[:2]) <= 48 for x in a)
    assert any(min(x.shape[:2]) < 36 for x in a + c)  # some are down-scaled, not only cropped
    assert aug_key("x.png", 2) == "x.png#aug2"


def test_add_augmented_stores_each_copy_under_its_images_key(tmp_path):
    """Copy j of the image keyed k is enrolled as k#augj with the vector of exactly that copy."""
    import torch

    from fpfast.jobs.augment import add_augmented
    from fpfast.ops.features import fingerprint_features
    g = Gallery.create(tmp_path / "g")
    rng = np.random.default_rng(1)
    imgs = [rng.integers(0, 256, (40, 36 + 4 * i, 3), dtype=np.uint8) for i in range(3)]
    keys = ["a.png", "b.png", "c.png"]

    def vec(batch):
        return fingerprint_features(batch, g.spec).numpy()
    assert add_augmented(g, "m", imgs, keys, vec, 2) == 6
    for key, im in zip(keys, imgs):
        for j, c in enumerate(augmented_copies(im, 2, g.spec.min_size), 1):
            row = g.keys.index(aug_key(key, j))
            np.testing.assert_allclose(g._vectors[row], vec(torch.from_numpy(c[None]))[0], rtol=1e-5, atol=1e-6)
    assert add_augmented(g, "m", imgs, keys, vec, 2) == 0   # already enrolled: skipped


def test_check_augment_refuses_bad_values():
    assert check_augment(0) == 0 and check_augment(MAX_AUGMENT) == MAX_AUGMENT
    for bad in (-1, MAX_AUGMENT + 1, 1.5, True, "2", None):
        with pytest.raises(ValueError, match="augment must be an integer"):
            check_augment(bad)


def _enroll(gallery, *args):
    r = invoke("enroll", gallery, *args, catch_exceptions=True)
    return r


def test_enroll_augment_adds_copies_keeps_the_setting_and_leaves_holdouts_clean(tmp_path):
    train = make_folders(tmp_path / "train", 10)
    g = str(tmp_path / "g")
    r = _enroll(g, "--from-folders", train, "--spec", "default", "--augment", "2")
    assert r.exit_code == 0, r.output
    assert "(+ 16 augmented copies)" in r.output
    gal = Gallery.load(g)
    assert gal.augment == 2
    assert gal.models() == {m: 8 * 3 for m in MODELS}          # 8 enrolled + 2 copies each; 2 held out
    held = gal.hold_keys   # 2 held out each, with their calibration copies, never augmented ones
    assert sum(not is_copy(k) for k in held) == 2 * len(MODELS) and not any("#aug" in k for k in held)
    assert len(held) == 2 * len(MODELS) * (1 + len(COPIES))
    keys = gal.keys
    originals = [k for k in keys if "#aug" not in k]
    assert sorted(keys) == sorted(originals + [aug_key(k, j) for k in originals for j in (1, 2)])
    # a later model is augmented the same way; an enrollment run twice adds nothing
    extra = make_folders(tmp_path / "extra", 10, seed=3, models={"delta": 7})
    assert _enroll(g, "--model", "delta", os.path.join(extra, "delta"), "--quiet").exit_code == 0
    assert Gallery.load(g).models()["delta"] == 24
    assert _enroll(g, "--model", "delta", os.path.join(extra, "delta"), "--quiet").exit_code == 0
    assert Gallery.load(g).models()["delta"] == 24
    # the setting is fixed at creation
    r = _enroll(g, "--model", "eps", os.path.join(extra, "delta"), "--augment", "3")
    assert r.exit_code == 2 and "fixed when a gallery is created" in r.output
    info = invoke("info", "--gallery", g)
    assert "augmented copies per enrolled image: 2" in info.output


def test_the_same_images_from_another_folder_give_the_same_gallery(tmp_path):
    """Copies are drawn from pixels, not paths: moving the photos does not change the gallery."""
    import shutil
    train = make_folders(tmp_path / "a" / "train", 10)
    moved = str(tmp_path / "elsewhere" / "deeper" / "train")
    shutil.copytree(train, moved)
    vecs = []
    for name, src in (("g1", train), ("g2", moved)):
        g = str(tmp_path / name)
        assert _enroll(g, "--from-folders", src, "--spec", "default", "--augment", "2", "--holdout", "0",
                       "--calibrate-on", "clean", "--quiet").exit_code == 0
        gal = Gallery.load(g)
        vecs.append(gal._vectors[np.lexsort(np.asarray(gal._vectors).T)])
    np.testing.assert_array_equal(vecs[0], vecs[1])


def test_without_augment_the_gallery_is_as_before(tmp_path):
    train = make_folders(tmp_path / "train", 10)
    g = str(tmp_path / "g")
    assert _enroll(g, "--from-folders", train, "--spec", "default", "--quiet").exit_code == 0
    gal = Gallery.load(g)
    assert gal.augment == 0 and not any("#aug" in k for k in gal.keys)
    meta = json.load(open(os.path.join(g, "gallery.json")))
    assert meta["augment"] == 0


def test_a_bad_augment_in_gallery_json_is_refused(tmp_path):
    train = make_folders(tmp_path / "train", 10)
    g = str(tmp_path / "g")
    assert _enroll(g, "--from-folders", train, "--spec", "default", "--quiet").exit_code == 0
    p = os.path.join(g, "gallery.json")
    meta = json.load(open(p))
    meta["augment"] = "lots"
    with open(p, "w") as fh:
        json.dump(meta, fh)
    with pytest.raises(GalleryError, match="augment must be an integer"):
        Gallery.load(g, verify=False)


def test_train_re_enrolls_the_augmented_copies(tmp_path):
    train = make_folders(tmp_path / "train", 10)
    g = str(tmp_path / "g")
    assert _enroll(g, "--from-folders", train, "--spec", "default", "--augment", "1", "--quiet").exit_code == 0
    r = invoke("train", g, "--from-folders", train, "--epochs", "1", "--dim", "8", "--quiet", catch_exceptions=True)
    assert r.exit_code == 0, r.output
    gal = Gallery.load(g)
    assert gal.spec.embedding is not None and gal.augment == 1
    assert gal.models() == {m: 8 * 2 for m in MODELS}
    assert sum(k.endswith("#aug1") for k in gal.keys) == 8 * len(MODELS)
