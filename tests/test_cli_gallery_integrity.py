"""Gallery integrity (issue 13, item 10) and the spec at the API boundary (item 14): paths in
gallery.json stay inside the gallery, NaN / inf vectors are refused, `info --digest` pins a
gallery that `--expect-digest` checks; `Gallery.attribute` refuses vectors of another spec and
`fingerprint_features` takes numpy as the README shows."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from cli_helpers import ROOT, build_gallery, run_here, sub_env
from fpfast.hashing import sha256_file


@pytest.fixture(scope="module")
def g(tmp_path_factory):
    return build_gallery(tmp_path_factory, n_train=6, n_test=1)


def _copy(g, tmp_path):
    dst = tmp_path / "g"
    shutil.copytree(g["gallery"], dst)
    return dst


def _rewrite(gdir, edit):
    p = gdir / "gallery.json"
    meta = json.loads(p.read_text())
    edit(meta)
    p.write_text(json.dumps(meta))


def _record(meta, gdir, name, path):
    meta["files"][name] = {"bytes": os.path.getsize(path), "sha256": sha256_file(path)}


def test_a_file_named_outside_the_gallery_is_refused(g, tmp_path):
    gdir = _copy(g, tmp_path)
    outside = tmp_path / "outside_mean.npy"
    shutil.copy(gdir / "normalizer_mean.npy", outside)

    def edit(meta):
        meta["normalize"]["arrays"]["mean"] = "../outside_mean.npy"
        _record(meta, gdir, "../outside_mean.npy", outside)
    _rewrite(gdir, edit)
    r = run_here("attribute", g["test"], "-g", gdir, "-o", tmp_path / "o.csv", "-q")
    assert r.returncode == 2 and "outside_mean.npy" in r.stderr and "plain name" in r.stderr, r.stderr


def test_an_index_path_outside_the_gallery_is_refused(g, tmp_path):
    gdir = _copy(g, tmp_path)

    rel = os.path.relpath("/etc/hostname", gdir)  # ../../../etc/hostname: a real file

    def edit(meta):
        meta["index"]["file"] = rel
        _record(meta, gdir, rel, "/etc/hostname")
    _rewrite(gdir, edit)
    r = run_here("attribute", g["test"], "-g", gdir, "-o", tmp_path / "o.csv", "-q")
    assert r.returncode == 2 and "etc/hostname" in r.stderr and "plain name" in r.stderr, r.stderr


def test_nan_vectors_are_refused_on_load(g, tmp_path):
    gdir = _copy(g, tmp_path)
    v = np.load(gdir / "vectors.npy")
    v[0, 0] = np.nan
    np.save(gdir / "vectors.npy", v)
    _rewrite(gdir, lambda meta: _record(meta, gdir, "vectors.npy", gdir / "vectors.npy"))
    r = run_here("attribute", g["test"], "-g", gdir, "-o", tmp_path / "o.csv", "-q")
    assert r.returncode == 2 and "NaN" in r.stderr, r.stderr


def test_a_pinned_digest_detects_a_consistent_edit(g, tmp_path):
    gdir = _copy(g, tmp_path)
    r = run_here("info", "--gallery", gdir, "--digest")
    assert r.returncode == 0, r.stderr
    digest = r.stdout.strip()
    assert len(digest) == 64 and int(digest, 16) >= 0
    r = run_here("attribute", g["test"], "-g", gdir, "-o", tmp_path / "a.csv", "-q", "--expect-digest", digest)
    assert r.returncode == 0, r.stderr
    v = np.load(gdir / "vectors.npy")
    v[0, 0] += 1.0  # tampering that updates the recorded sha256 passes the self-check...
    np.save(gdir / "vectors.npy", v)
    _rewrite(gdir, lambda meta: _record(meta, gdir, "vectors.npy", gdir / "vectors.npy"))
    assert run_here("attribute", g["test"], "-g", gdir, "-o", tmp_path / "b.csv", "-q").returncode == 0
    r = run_here("eval", gdir, "--from-folders", g["test"], "-o", tmp_path / "ev", "--expect-digest", digest)
    assert r.returncode == 2 and "digest" in r.stderr, r.stderr  # ...not the pinned digest


README_EXAMPLE = """
import numpy as np, fpfast, sys
from fpfast.ops.features import fingerprint_features
from fpfast.gallery import Gallery
from fpfast.spec import SpecError
images_uint8_hwc = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
g = Gallery.load(sys.argv[1])
spec = g.spec
v = fingerprint_features(images_uint8_hwc, spec)
a = g.attribute(v, method="knn", k=3, spec=spec)
print("ok", len(a.model))
other = fpfast.load_spec("npr").replace(size=spec.size)
try:
    g.attribute(fingerprint_features(images_uint8_hwc, other), spec=other)
except SpecError as e:
    print("refused:", e)
"""


def test_readme_example_takes_numpy_and_the_spec_is_checked(g):
    r = subprocess.run([sys.executable, "-c", README_EXAMPLE, g["gallery"]], cwd=ROOT, env=sub_env(),
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "ok 2" in r.stdout
    assert "refused:" in r.stdout and "npr" in r.stdout
