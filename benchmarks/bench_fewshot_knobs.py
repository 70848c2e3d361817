"""Few-shot gallery knobs chosen on training images only (issue 14): LDA shrinkage and the k of the
kNN vote, for galleries of the handcrafted default vector and of universal ⊕ handcrafted
(``--spec universal+handcrafted``).

    python benchmarks/bench_fewshot_knobs.py ZOO --out results/fewshot_knobs_standard.json

Galleries: the first 10 / 50 training images of each model. Validation queries: training images
200-299 of each model (never in a gallery, never a test image), clean, JPEG 90 / 75 and resized
0.75x / 0.5x (Pillow bilinear). Accuracy of the uniform kNN vote (:func:`bench_fewshot_concat.
knn_accuracy`, ``Gallery``'s tie rule) after the normaliser fitted on the gallery. Two sweeps:
shrinkage (0-0.9) of ``lda`` at k = 10, and k (1, 3, 5, 10) at the default shrinkage 0.05; and
the normaliser fitted on the gallery plus 4 ``enroll --augment`` copies of each of its images,
the copies not searched (``fit_with_copies``); and universal ⊕ handcrafted with each half
normalised apart (``blockwise``: LDA on the network's half, weighted, the handcrafted half
standardised as in the default gallery).
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
from benchmarks.bench_embedding import vectors  # noqa: E402
from benchmarks.bench_fewshot_concat import knn_accuracy, vote_accuracy  # noqa: E402
from benchmarks.bench_universal import _jpeg, _resize, augmented_train, first_n  # noqa: E402
from fpfast.embed.universal import load_universal  # noqa: E402
from fpfast.gallery import normalize as norm  # noqa: E402
from fpfast.ops.features import fingerprint_features  # noqa: E402
from fpfast.spec import load_spec  # noqa: E402
from fpfast.zoo import load_zoo_split  # noqa: E402

SHRINKAGES = (0.0, 0.05, 0.1, 0.2, 0.4, 0.7, 0.9)
KS = (1, 3, 5, 10)
COPIES = 4
BLOCK_WEIGHTS = (0.5, 1.0, 2.0, 4.0)


def blockwise_accuracy(gallery, lab, queries, truth, names, d_net, weight, k=10):
    """kNN accuracy (``Gallery``'s vote) with the first ``d_net`` dimensions LDA-normalised and
    scaled by ``weight``, the rest standardised, both fitted on ``gallery``."""
    g, q = [], []
    for sl, method, w in ((slice(0, d_net), "lda", weight), (slice(d_net, None), "standardize", 1.0)):
        nz = norm.fit(method, gallery[:, sl].astype(np.float64), lab)
        g.append(nz.transform(gallery[:, sl].astype(np.float32)) * w)
        q.append(nz.transform(queries[:, sl].astype(np.float32)) * w)
    return vote_accuracy(np.concatenate(g, 1), np.concatenate(q, 1), lab, truth, names, k)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("zoo")
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    x, y = cap(load_zoo_split(a.zoo, "train"), None)[:2]
    names = sorted(set(y))
    gal, val = first_n(y, 50), first_n(y, 100, offset=200)
    vx, vy = [x[i] for i in val], [y[i] for i in val]
    sets = {"clean": vx, "jpeg90": [_jpeg(im, 90) for im in vx], "jpeg75": [_jpeg(im, 75) for im in vx],
            "resize075": [_resize(im, 0.75) for im in vx], "resize05": [_resize(im, 0.5) for im in vx]}
    spec, hyb = load_spec("default"), load_universal().with_handcrafted()
    spaces = {"handcrafted": (lambda b: fingerprint_features(b, spec), ("standardize", "lda")),
              "universal ⊕ handcrafted": (lambda b: hyb.embed(b, layout="hwc"), ("lda",))}
    gy = np.array([y[i] for i in gal])
    res = {"zoo": a.zoo, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "universal": hyb.identity,
           "shrinkage": {}, "k": {}, "fit_with_copies": {}, "blockwise": {}}
    for space, (f, methods) in spaces.items():
        gv, qv = vectors([x[i] for i in gal], f), {s: vectors(v, f) for s, v in sets.items()}
        for n in (10, 50):
            ids = np.concatenate([np.flatnonzero(gy == m)[:n] for m in names])
            lab = np.array([names.index(m) for m in gy[ids]])

            def acc(method, k=10, **fit_kw):
                return {s: round(knn_accuracy(gv[ids], lab, qv[s], vy, names, method, k=k, **fit_kw), 4)
                        for s in sets}
            for sh in SHRINKAGES:
                res["shrinkage"][f"{space}, {n} per model, lda {sh}"] = acc("lda", shrinkage=sh)
            for method in methods:
                for k in KS:
                    res["k"][f"{space} + {method}, {n} per model, k = {k}"] = acc(method, k)
            # the normaliser fitted on the gallery and COPIES enroll --augment copies of its images,
            # which are not searched: LDA then whitens the re-encodings' spread without their
            # samples crowding clean queries' neighbours
            cx, cy = augmented_train([x[gal[i]] for i in ids], list(gy[ids]), COPIES, spec.min_size)
            cl = np.array([names.index(m) for m in cy])
            cv = vectors(cx, f)
            for method in methods:
                res["fit_with_copies"][f"{space} + {method}, {n} per model"] = {
                    s: round(knn_accuracy(gv[ids], lab, qv[s], vy, names, method, fit_extra=(cv, cl)), 4)
                    for s in sets}
            if space != "handcrafted":  # each half normalised apart: LDA on the network's, the
                # handcrafted half standardised (what the default gallery does with it), weighted
                d_net = hyb.plain().dim
                for w in BLOCK_WEIGHTS:
                    res["blockwise"][f"{space}, {n} per model, network LDA x {w} + handcrafted standardised"] = {
                        s: round(blockwise_accuracy(gv[ids], lab, qv[s], vy, names, d_net, w), 4) for s in sets}
            print(space, n, flush=True)
    with open(a.out, "w") as fh:
        json.dump(res, fh, indent=1)


if __name__ == "__main__":
    main()
