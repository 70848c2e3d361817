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
from benchmarks.bench_fewshot_concat import knn_accuracy  # noqa: E402
from benchmarks.bench_fewshot_knobs import blockwise_accuracy  # noqa: E402
from benchmarks.bench_universal import _jpeg, first_n  # noqa: E402
from fpfast.embed.universal import SHIPPED_DIR, load_card  # noqa: E402
from fpfast.ops.features import fingerprint_features  # noqa: E402
from fpfast.spec import load_spec  # noqa: E402
from fpfast.zoo import load_zoo_split  # noqa: E402

QUERY_OFFSET, QUERIES = 200, 100


def seed_pairs(names):
    """{``M_seed1``: ``M``} for the gallery's pairs."""
    return {m: m[:-len("_seed1")] for m in names if m.endswith("_seed1") and m[:-len("_seed1")] in names}


class Split:
    """The gallery (first ``n`` training images per model) and the validation queries (images
    200-299) of a zoo, with the seed pairs' masks."""

    def __init__(self, y, n):
        self.names = sorted(set(y))
        self.pairs = seed_pairs(self.names)
        lab = np.array(y)
        self.gal, self.val = first_n(y, n), first_n(y, QUERIES, offset=QUERY_OFFSET)
        self.gy, self.vy = lab[self.gal], lab[self.val]
        self.k = max(1, n // 10)  # the gallery's vote
        self.keep = ~np.isin(self.gy, list(self.pairs))  # the gallery without the _seed1 models
        self.known = sorted(set(self.gy[self.keep]))
        self.lab = np.array([self.known.index(m) for m in self.gy[self.keep]])
        self.own, self.new = np.isin(self.vy, self.known), np.isin(self.vy, list(self.pairs))
        self.truth_new = np.array([self.pairs[m] for m in self.vy[self.new]])


def space_figures(sp: Split, gv, qv, qj, method):
    """{figure: accuracy} of gallery vectors ``gv`` and validation queries ``qv`` (clean) / ``qj``
    (JPEG 90) of one space, normalised by ``method``."""
    g, kn, lab, k = gv[sp.keep], sp.known, sp.lab, sp.k
    out = {"known clean": knn_accuracy(g, lab, qv[sp.own], sp.vy[sp.own], kn, method, k=k),
           "known JPEG 90": knn_accuracy(g, lab, qj[sp.own], sp.vy[sp.own], kn, method, k=k),
           "new seed": knn_accuracy(g, lab, qv[sp.new], sp.truth_new, kn, method, k=k),
           "new seed JPEG 90": knn_accuracy(g, lab, qj[sp.new], sp.truth_new, kn, method, k=k)}
    # every model enrolled: the pairs must stay apart
    pair_q = np.isin(sp.vy, list(sp.pairs) + list(sp.pairs.values()))
    out["seed pair"] = knn_accuracy(gv, np.array([sp.names.index(m) for m in sp.gy]), qv[pair_q], sp.vy[pair_q],
                                    sp.names, method, k=k)
    return {key: round(v, 4) for key, v in out.items()}


def knob_figures(sp: Split, gv, qv, d_net):
    """{knob: {"known clean", "new seed"}} of universal ⊕ handcrafted galleries (see ``--knobs``);
    ``d_net``: the network's share of the vectors."""
    g, kn, lab = gv[sp.keep], sp.known, sp.lab
    truth = {"known clean": (sp.own, sp.vy[sp.own]), "new seed": (sp.new, sp.truth_new)}
    out = {}
    for sh in (0.05, 0.2, 0.5, 0.9):
        out[f"LDA shrinkage {sh}"] = {f: knn_accuracy(g, lab, qv[sel], t, kn, "lda", k=sp.k, shrinkage=sh)
                                      for f, (sel, t) in truth.items()}
    for k in (1, 3, 5):
        out[f"k = {k}"] = {f: knn_accuracy(g, lab, qv[sel], t, kn, "lda", k=k) for f, (sel, t) in truth.items()}
    for w in (0.0, 0.25, 0.5, 1.0):
        out[f"blockwise w = {w}"] = {f: blockwise_accuracy(g, lab, qv[sel], t, kn, d_net, w, k=sp.k)
                                     for f, (sel, t) in truth.items()}
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
        sp = Split(y, a.n)
        gx, vx = [x[i] for i in sp.gal], [x[i] for i in sp.val]
        vj = [_jpeg(im, 90) for im in vx]

        def space(f):  # (gallery, clean query, JPEG 90 query) vectors of one space
            return vectors(gx, f), vectors(vx, f), vectors(vj, f)
        rows = {"handcrafted (standardised)": space_figures(sp, *space(lambda b: fingerprint_features(b, spec)),
                                                            "standardize")}
        print(json.dumps({zoo: rows}), flush=True)
        for i, (w, (emb, _)) in enumerate(cards.items()):
            hyb = emb.with_handcrafted()
            gv, qv, qj = space(lambda b: hyb.embed(b, layout="hwc"))
            rows[f"universal ⊕ handcrafted / {w}"] = space_figures(sp, gv, qv, qj, "lda")
            if not a.no_universal_alone:
                rows[f"universal / {w}"] = space_figures(sp, *space(lambda b: emb.embed(b, layout="hwc")), "lda")
            print(json.dumps({zoo: {k: v for k, v in rows.items() if w in k}}), flush=True)
            if a.knobs and i == 0:
                rows["knobs"] = knob_figures(sp, gv, qv, int(emb.config["arch"]["dim"]))
                print(json.dumps({zoo: {"knobs": rows["knobs"]}}), flush=True)
        res["zoos"][zoo] = rows
    if a.out:
        with open(a.out, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
