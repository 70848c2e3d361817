"""Few-shot galleries (the first N training images per model) of the universal embedding, the
handcrafted fingerprint, and the two concatenated, on a built GM-zoo (issue 14: an approach to the
few-shot must-show, measured before building it into the product).

    python benchmarks/bench_fewshot_concat.py ZOO --n 10 --out benchmarks/results/fewshot_concat.json

Each gallery is normalised by ``fpfast.gallery.normalize`` (standardise or LDA, fitted on the N
images per model) and queried by the kNN vote of ``Gallery.attribute`` (k = 10, uniform weights),
in numpy with its vote (:func:`fpfast.gallery.attribution.knn_vote`): a concatenated vector has
no fingerprint spec of its own for a ``Gallery``. Both
normalisers rescale every dimension, so how the two blocks are weighted before them does not
matter. Columns: the zoo's test splits (200 images per model) and ``resize075``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.bench_accuracy import cap  # noqa: E402
from benchmarks.bench_embedding import SPLITS, vectors  # noqa: E402
from benchmarks.bench_universal import _resize, first_n  # noqa: E402
from fpfast.embed.universal import load_universal  # noqa: E402
from fpfast.gallery import normalize as norm  # noqa: E402
from fpfast.gallery.attribution import knn_vote  # noqa: E402
from fpfast.ops.features import fingerprint_features  # noqa: E402
from fpfast.spec import load_spec  # noqa: E402
from fpfast.zoo import load_zoo_split  # noqa: E402


def knn_accuracy(gallery, lab, queries, truth, names, method, k=10, fit_extra=None, **fit_kw):
    """Accuracy of the uniform k-NN vote after ``method`` fitted on ``gallery`` (and, when given,
    ``fit_extra`` = (vectors, labels) that enter the fit but are not searched; ``fit_kw``: options
    of :func:`fpfast.gallery.normalize.fit`, e.g. ``shrinkage``)."""
    fx, fl = (gallery, lab) if fit_extra is None else (np.concatenate([gallery, fit_extra[0]]),
                                                      np.concatenate([lab, fit_extra[1]]))
    nz = norm.fit(method, fx.astype(np.float64), fl, **fit_kw)
    return vote_accuracy(nz.transform(gallery.astype(np.float32)), nz.transform(queries.astype(np.float32)),
                         lab, truth, names, k)


def vote_accuracy(g, q, lab, truth, names, k=10):
    """Accuracy of the uniform k-NN vote (``Gallery``'s tie rule) of normalised queries ``q`` among
    normalised gallery vectors ``g`` labelled ``lab`` (indices into ``names``)."""
    g, q = g.astype(np.float64), q.astype(np.float64)
    d = (q ** 2).sum(1)[:, None] - 2 * q @ g.T + (g ** 2).sum(1)[None]
    nn = np.argsort(d, 1, kind="stable")[:, :k]
    winner = knn_vote(lab[nn], np.take_along_axis(d, nn, 1), len(names))[0]
    return float(np.mean(np.array(names)[winner] == np.asarray(truth)))


def zoo_splits(zoo, max_test):
    """({split: (images, labels)} of the zoo's test splits, ``max_test`` per model, plus
    ``resize075``: the test images down-scaled 0.75x), then the whole train split's images and labels."""
    data = {s: cap(load_zoo_split(zoo, s), max_test)[:2] for s in SPLITS if os.path.isdir(os.path.join(zoo, s))}
    data["resize075"] = ([_resize(im, 0.75) for im in data["test"][0]], data["test"][1])
    tr_x, tr_y = cap(load_zoo_split(zoo, "train"), None)[:2]
    return data, tr_x, tr_y


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("zoo")
    ap.add_argument("--n", type=int, default=10, help="training images per model in the gallery")
    ap.add_argument("--max-test", type=int, default=200)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    spec = load_spec("default")
    data, tr_x, tr_y = zoo_splits(a.zoo, a.max_test)
    ids = first_n(tr_y, a.n)
    data["train"] = ([tr_x[i] for i in ids], [tr_y[i] for i in ids])
    emb = load_universal()
    spaces = {"universal": {s: vectors(data[s][0], lambda b: emb.embed(b, layout="hwc")) for s in data},
              "handcrafted": {s: vectors(data[s][0], lambda b: fingerprint_features(b, spec)) for s in data}}
    spaces["universal ⊕ handcrafted"] = {s: np.concatenate([spaces["universal"][s], spaces["handcrafted"][s]], 1)
                                         for s in data}
    names = sorted(set(data["train"][1]))
    lab = np.array([names.index(m) for m in data["train"][1]])
    res = {"zoo": a.zoo, "n_per_model": a.n, "max_test": a.max_test, "universal": emb.identity,
           "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "rows": {}}
    for space, v in spaces.items():
        for method in ("standardize", "lda"):
            res["rows"][f"{space}, {method}"] = {s: knn_accuracy(v["train"], lab, v[s], data[s][1], names, method)
                                                 for s in data if s != "train"}
            print(space, method, json.dumps(res["rows"][f"{space}, {method}"]), flush=True)
    with open(a.out, "w") as fh:
        json.dump(res, fh, indent=1)


if __name__ == "__main__":
    main()
