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

``--fallback D``: over D galleries (the d-th of training images d*n .. (d+1)*n - 1 of each model),
the default gallery's answer replaced by the handcrafted gallery's where the query is far in the
default's space (its nearest model's distance, or that over the second model's, above the q-th
percentile of the known queries' own: a bound on what a threshold calibrated on held-out images
could do), on ``known clean`` and ``new seed``; mean and standard deviation over the draws.
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
from fpfast.gallery import normalize as norm  # noqa: E402
from fpfast.ops.features import fingerprint_features  # noqa: E402
from fpfast.spec import load_spec  # noqa: E402
from fpfast.zoo import load_zoo_split  # noqa: E402

QUERY_OFFSET, QUERIES = 200, 100


def seed_pairs(names):
    """{``M_seed1``: ``M``} for the gallery's pairs."""
    return {m: m[:-len("_seed1")] for m in names if m.endswith("_seed1") and m[:-len("_seed1")] in names}


class Split:
    """The gallery (training images ``offset`` .. ``offset + n - 1`` per model) and the validation
    queries (images 200-299) of a zoo, with the seed pairs' masks."""

    def __init__(self, y, n, offset=0):
        if offset + n > QUERY_OFFSET:
            raise SystemExit(f"a gallery of images {offset}..{offset + n - 1} would take in validation queries")
        self.names = sorted(set(y))
        self.pairs = seed_pairs(self.names)
        lab = np.array(y)
        self.gal, self.val = first_n(y, n, offset=offset), first_n(y, QUERIES, offset=QUERY_OFFSET)
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


def nearest_models(gv, lab, n_models, qv, method):
    """[Q, M] distance of each query to each model's nearest gallery vector after ``method``."""
    nz = norm.fit(method, gv.astype(np.float64), lab)
    g, q = (nz.transform(v.astype(np.float32)).astype(np.float64) for v in (gv, qv))
    d = np.sqrt(np.maximum((q ** 2).sum(1)[:, None] - 2 * q @ g.T + (g ** 2).sum(1)[None], 0))
    return np.stack([d[:, lab == m].min(1) for m in range(n_models)], 1)


def fallback_figures(sp: Split, hand, joint, percentiles=(75, 90, 95)):
    """{rule: {"known clean", "new seed"}} of one draw: the handcrafted gallery (standardised), the
    default one (LDA) and the default answer with the handcrafted one where the query is far
    (see ``--fallback``). ``hand`` / ``joint``: (gallery, query) vectors of the two spaces."""
    kn = np.array(sp.known)
    truth = np.where(sp.new, np.array([sp.pairs.get(m, m) for m in sp.vy]), sp.vy)
    near = {s: nearest_models(g[sp.keep], sp.lab, len(kn), q, m)
            for s, (g, q), m in (("hand", hand, "standardize"), ("joint", joint, "lda"))}
    win = {s: d.argmin(1) for s, d in near.items()}
    srt = np.sort(near["joint"], 1)
    far = {"distance": srt[:, 0], "ratio": srt[:, 0] / srt[:, 1]}

    def figures(w):
        return {f: float(np.mean(kn[w[sel]] == truth[sel]))
                for f, sel in (("known clean", sp.own), ("new seed", sp.new))}
    out = {"handcrafted (standardised)": figures(win["hand"]), "universal ⊕ handcrafted": figures(win["joint"])}
    for what, x in far.items():
        for q in percentiles:
            out[f"fallback where {what} > {q}th percentile"] = figures(
                np.where(x > np.percentile(x[sp.own], q), win["hand"], win["joint"]))
    return out


def fallback_draws(x, y, n, draws, spec, hyb):
    """``--fallback``: {rule: {figure: (mean, sd)}} over ``draws`` galleries."""
    sp0 = Split(y, n)
    vx = [x[i] for i in sp0.val]
    qh, qj = vectors(vx, lambda b: fingerprint_features(b, spec)), vectors(vx, lambda b: hyb.embed(b, layout="hwc"))
    rows = []
    for d in range(draws):
        sp = Split(y, n, offset=d * n)
        gx = [x[i] for i in sp.gal]
        rows.append(fallback_figures(sp, (vectors(gx, lambda b: fingerprint_features(b, spec)), qh),
                                     (vectors(gx, lambda b: hyb.embed(b, layout="hwc")), qj)))
    return {r: {f: [round(float(np.mean([x[r][f] for x in rows])), 4), round(float(np.std([x[r][f] for x in rows])), 4)]
                for f in rows[0][r]} for r in rows[0]}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("zoos", nargs="+")
    ap.add_argument("--weights", nargs="+", default=["shipped"], help="'shipped' or fpfast pretrain outputs")
    ap.add_argument("--n", type=int, default=8, help="gallery images per model (8: a 10-image enrollment less "
                                                      "its 2 held-out images)")
    ap.add_argument("--no-universal-alone", action="store_true")
    ap.add_argument("--knobs", action="store_true", help="also the default gallery's knobs (first weights)")
    ap.add_argument("--fallback", type=int, default=0, metavar="D",
                    help="also the handcrafted fallback rule over D gallery draws (first weights)")
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
            if a.fallback and i == 0:
                rows["fallback"] = fallback_draws(x, y, a.n, a.fallback, spec, hyb)
                print(json.dumps({zoo: {"fallback": rows["fallback"]}}), flush=True)
            if a.knobs and i == 0:
                rows["knobs"] = knob_figures(sp, gv, qv, int(emb.config["arch"]["dim"]))
                print(json.dumps({zoo: {"knobs": rows["knobs"]}}), flush=True)
        res["zoos"][zoo] = rows
    if a.out:
        with open(a.out, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
