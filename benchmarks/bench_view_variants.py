"""How a gallery's views are made, chosen on validation images (issue 14): training images outside
the gallery, processed otherwise than the zoo's test splits.

    python benchmarks/bench_view_variants.py ZOO --n 50 --out results/views_validation_standard_50.json

Galleries: `fpfast enroll` (in process) of the first N training images per model, once per variant
of :func:`fpfast.gallery.views.view_copy`: ``fixed`` (bicubic down-scales, JPEG quality 85),
``diverse`` (each image's down-scale filter among bilinear / bicubic / Lanczos / box and its JPEG
quality in 70-95, drawn from its pixels; from its key before 2026-12-06), ``shipped`` (the package's own: bicubic, drawn quality) and
``global`` (shipped, each view's thresholds global, not per model). Queries: training images
``--offset``..+59 of each model (never enrolled; N must stay below the offset) as JPEG 80 / 65,
0.7x bilinear, 0.6x Lanczos, 0.5x box, and clean, answered by the gallery with each image's side
and file type; accuracy (an `unknown` answer counts wrong) and the `unknown` rate.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.bench_unknown import first_images  # noqa: E402
from benchmarks.bench_universal import first_n  # noqa: E402
from fpfast.embed.train import _jpeg, _rescale as _scale  # noqa: E402
from fpfast.gallery import views  # noqa: E402
from fpfast.gallery import Gallery  # noqa: E402
from fpfast.jobs.mappers import host_vectors, vector_mapper  # noqa: E402
from fpfast.jobs.options import StreamOptions  # noqa: E402
from fpfast.prepare import map_images  # noqa: E402
from fpfast.zoo import load_zoo_split  # noqa: E402

FILTERS = (Image.BILINEAR, Image.BICUBIC, Image.LANCZOS, Image.BOX)


def fixed(image, name, drawn=False):
    how, arg = views.VIEWS[name]
    return _jpeg(image, 85) if how == "jpeg" else _scale(image, arg, Image.BICUBIC)


def diverse(image, name, drawn=True):
    how, arg = views.VIEWS[name]
    image = np.ascontiguousarray(image, np.uint8)
    rng = np.random.default_rng(int.from_bytes(hashlib.sha256(f"{name}\0".encode() + image.tobytes()).digest()[:8],
                                                "little"))
    if how == "jpeg":
        return _jpeg(image, int(rng.integers(70, 96)))
    return _scale(image, arg, FILTERS[int(rng.integers(len(FILTERS)))])


QUERIES = {"jpeg80": (lambda im: _jpeg(im, 80), 1.0), "jpeg65": (lambda im: _jpeg(im, 65), 1.0),
           "0.7x bilinear": (lambda im: _scale(im, 0.7, Image.BILINEAR), 0.0),
           "0.6x lanczos": (lambda im: _scale(im, 0.6, Image.LANCZOS), 0.0),
           "0.5x box": (lambda im: _scale(im, 0.5, Image.BOX), 0.0), "clean": (lambda im: im, 0.0)}


def main():
    from click.testing import CliRunner

    from fpfast.cli import cli
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("zoo")
    ap.add_argument("--n", type=int, default=50)
    ap.add_argument("--variants", default="fixed,diverse,shipped")
    ap.add_argument("--offset", type=int, default=600)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    imgs, labels, _ = load_zoo_split(a.zoo, "train")
    sel = first_n([str(x) for x in labels], 60, a.offset)
    want = np.array([labels[i] for i in sel])
    opts = StreamOptions(device="cpu", quiet=True)
    shipped = views.view_copy
    res = {"zoo": a.zoo, "n_per_model": a.n, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "rows": {}}
    with tempfile.TemporaryDirectory() as tmp:
        train = first_images(os.path.join(a.zoo, "train"), os.path.join(tmp, "train"), a.n)
        calibrate_views = Gallery._calibrate_views

        def global_thresholds(self, *args, **kw):
            return calibrate_views(self, *args, **{**kw, "per_model": False})
        for variant in a.variants.split(","):
            views.view_copy = {"fixed": fixed, "diverse": diverse}.get(variant, shipped)
            if variant == "global":
                Gallery._calibrate_views = global_thresholds
            try:
                g = os.path.join(tmp, variant)
                r = CliRunner().invoke(cli, ["enroll", g, "--from-folders", train, "-q"], catch_exceptions=False)
                assert r.exit_code == 0, r.output
            finally:
                views.view_copy, Gallery._calibrate_views = shipped, calibrate_views
            gal = Gallery.load(g)
            vec = host_vectors(vector_mapper(gal.spec, opts, gal.embedder()))
            row = {}
            for name, (fn, is_jpeg) in QUERIES.items():
                q = [fn(imgs[i]) for i in sel]
                ans = gal.attribute(map_images(q, vec), sides=[min(x.shape[:2]) for x in q], jpeg=[is_jpeg] * len(q))
                row[name] = {"accuracy": float(np.mean(np.array(ans.model) == want)), "unknown": float(ans.is_unknown.mean())}
            res["rows"][variant] = row
            print(variant, json.dumps({k: (round(v["accuracy"], 3), round(v["unknown"], 3)) for k, v in row.items()}),
                  flush=True)
    with open(a.out, "w") as fh:
        json.dump(res, fh, indent=1)


if __name__ == "__main__":
    main()
