"""Does a few-shot gallery name a generator retrained from another seed? Chosen on training images
only (issue 14's "unseen seed" column, without its test split).

    python benchmarks/bench_seed_transfer.py ZOO [ZOO...] --weights shipped DIR [DIR...] [--n 8] \
        [--out results/seed_transfer.json]

For each zoo, the *seed pairs* of its gallery (a model ``M`` and ``M_seed1``, the same
architecture trained from another seed) give a validation split of the unseen-seed question:

* ``new seed``: a gallery of the first ``n`` training images of every model but the ``_seed1``
  ones; queries: training images 200-299 of each ``_seed1`` model, whose right answer is ``M``;
* ``known``: the same gallery, queries training images 200-299 of its own models, clean and JPEG 90;
* ``seed pair``: a gallery of every model (``_seed1`` ones included); queries images 200-299 of
  the pair's models: the two seeds must still be told apart.

Spaces: the handcrafted default fingerprint (standardised: the speed mode's gallery) and, per
candidate weights, universal ⊕ handcrafted (LDA, the default gallery) and the universal embedding
alone (LDA). The vote is the gallery's (k = a tenth of the samples per model, at least 1). The
``fpfast pretrain`` card's held-out figures (random decoders, ``acc_new_weights``: the same
architectures with new weights) are printed beside them.

``--knobs``: the default gallery's knobs for the first weights, on ``known clean`` and ``new
seed``: LDA shrinkage, the vote's k, and each half normalised apart (the network's half LDA,
weighted w; the handcrafted half standardised).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.bench_embedding import vectors  # noqa: E402
from benchmarks.bench_fewshot_concat import knn_accuracy, vote_accuracy  # noqa: E402
from fpfast.gallery import normalize as norm  # noqa: E402
from benchmarks.bench_universal import _jpeg, first_n  # noqa: E402
from fpfast.embed.universal import SHIPPED_DIR, load_card  # noqa: E402
from fpfast.ops.features import fingerprint_features  # noqa: E402
from fpfast.spec import load_spec  # noqa: E402
from fpfast.zoo import load_zoo_split  # noqa: E402

QUERY_OFFSET, QUERIES = 200, 100


def seed_pairs(names):
    """{``M_seed1``: ``M``} for the gallery's pairs."""
    return {m: m[:-len("_seed1")] for m in names if m.endswith("_seed1") and m[:-len("_seed1")] in names}


def space_figures(f, method, x, y, n):
    """{figure: accuracy} of one vector function ``f`` normalised by ``method``."""
    names = sorted(set(y))
    pairs = seed_pairs(names)
    lab_all = np.array(y)
    gal, val = first_n(y, n), first_n(y, QUERIES, offset=QUERY_OFFSET)
    gv = vectors([x[i] for i in gal], f)
    vx = [x[i] for i in val]
    qv, qj = vectors(vx, f), vectors([_jpeg(im, 90) for im in vx], f)
    gy, vy = lab_all[gal], lab_all[val]
    k = max(1, n // 10)
    out = {}
    # gallery without the _seed1 models
    keep = ~np.isin(gy, list(pairs))
    known_names = sorted(set(gy[keep]))
    lab = np.array([known_names.index(m) for m in gy[keep]])
    own = np.isin(vy, known_names)
    new = np.isin(vy, list(pairs))
    truth_new = np.array([pairs[m] for m in vy[new]])
    out["known clean"] = knn_accuracy(gv[keep], lab, qv[own], vy[own], known_names, method, k=k)
    out["known JPEG 90"] = knn_accuracy(gv[keep], lab, qj[own], vy[own], known_names, method, k=k)
    out["new seed"] = knn_accuracy(gv[keep], lab, qv[new], truth_new, known_names, method, k=k)
    out["new seed JPEG 90"] = knn_accuracy(gv[keep], lab, qj[new], truth_new, known_names, method, k=k)
    # every model enrolled: the pairs must stay apart
    lab = np.array([names.index(m) for m in gy])
    pair_q = np.isin(vy, list(pairs) + list(pairs.values()))
    out["seed pair"] = knn_accuracy(gv, lab, qv[pair_q], vy[pair_q], names, method, k=k)
    return {key: round(v, 4) for key, v in out.items()}


def knob_figures(emb, x, y, n):
    """{knob: {"known clean", "new seed"}} of universal ⊕ handcrafted galleries (see ``--knobs``)."""
    hyb, d_net = emb.with_handcrafted(), int(emb.config["arch"]["dim"])
    names = sorted(set(y))
    pairs = seed_pairs(names)
    lab_all = np.array(y)
    gal, val = first_n(y, n), first_n(y, QUERIES, offset=QUERY_OFFSET)
    gy, vy = lab_all[gal], lab_all[val]
    keep = ~np.isin(gy, list(pairs))
    gv = vectors([x[i] for i in gal], lambda b: hyb.embed(b, layout="hwc"))[keep]
    qv = vectors([x[i] for i in val], lambda b: hyb.embed(b, layout="hwc"))
    kn = sorted(set(gy[keep]))
    lab = np.array([kn.index(m) for m in gy[keep]])
    own, new = np.isin(vy, kn), np.isin(vy, list(pairs))
    truth = {"known clean": (own, vy[own]), "new seed": (new, np.array([pairs[m] for m in vy[new]]))}
    k0 = max(1, n // 10)
    out = {}
    for sh in (0.05, 0.2, 0.5, 0.9):
        out[f"LDA shrinkage {sh}"] = {f: knn_accuracy(gv, lab, qv[sel], t, kn, "lda", k=k0, shrinkage=sh)
                                      for f, (sel, t) in truth.items()}
    for k in (1, 3, 5):
        out[f"k = {k}"] = {f: knn_accuracy(gv, lab, qv[sel], t, kn, "lda", k=k) for f, (sel, t) in truth.items()}
    for w in (0.0, 0.25, 0.5, 1.0):
        g, q = [], []
        for sl, method, ww in ((slice(0, d_net), "lda", w), (slice(d_net, None), "standardize", 1.0)):
            nz = norm.fit(method, gv[:, sl].astype(np.float64), lab)
            g.append(nz.transform(gv[:, sl].astype(np.float32)) * ww)
            q.append(nz.transform(qv[:, sl].astype(np.float32)) * ww)
        g, q = np.concatenate(g, 1), np.concatenate(q, 1)
        out[f"blockwise w = {w}"] = {f: vote_accuracy(g, q[sel], lab, t, kn, k0) for f, (sel, t) in truth.items()}
    return {key: {f: round(v, 4) for f, v in row.items()} for key, row in out.items()}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("zoos", nargs="+")
    ap.add_argument("--weights", nargs="+", default=["shipped"], help="'shipped' or fpfast pretrain outputs")
    ap.add_argument("--n", type=int, default=8, help="gallery images per model (8: a 10-image enrollment less "
                                                      "its 2 held-out images)")
    ap.add_argument("--no-universal-alone", action="store_true")
    ap.add_argument("--knobs", action="store_true", help="also the default gallery's knobs (first weights)")
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    spec = load_spec("default")
    cards = {w: load_card(SHIPPED_DIR if w == "shipped" else w) for w in a.weights}
    res = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "n": a.n, "zoos": {},
           "weights": {w: {"identity": e.identity[:12], "heldout": c.get("heldout"),
                           "weight_draws": e.config["training"].get("weight_draws", 1)}
                       for w, (e, c) in cards.items()}}
    for zoo in a.zoos:
        x, y = load_zoo_split(zoo, "train")[:2]
        rows = {"handcrafted (standardised)": space_figures(lambda b: fingerprint_features(b, spec),
                                                            "standardize", x, y, a.n)}
        print(json.dumps({zoo: rows}), flush=True)
        for w, (emb, _) in cards.items():
            hyb = emb.with_handcrafted()
            rows[f"universal ⊕ handcrafted / {w}"] = space_figures(lambda b: hyb.embed(b, layout="hwc"),
                                                                   "lda", x, y, a.n)
            if not a.no_universal_alone:
                rows[f"universal / {w}"] = space_figures(lambda b: emb.embed(b, layout="hwc"), "lda", x, y, a.n)
            print(json.dumps({zoo: {k: v for k, v in rows.items() if w in k}}), flush=True)
        if a.knobs:
            rows["knobs"] = knob_figures(next(iter(cards.values()))[0], x, y, a.n)
            print(json.dumps({zoo: {"knobs": rows["knobs"]}}), flush=True)
        res["zoos"][zoo] = rows
    if a.out:
        with open(a.out, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
