"""Choose between universal embeddings without touching a zoo's test splits (issue 14).

    python benchmarks/bench_universal_select.py ZOO [ZOO...] --weights shipped DIR [DIR...] [--max-train 200] \
        [--out select.json]

Two signals per candidate. (a) Few-shot attribution of held-out random decoders (never drawn in
any pretraining; ``fpfast.embed.pretrain.heldout_eval``) under one protocol for every candidate
(64-px crops, 32-px patches, 32 decoders of which 16 known, 10 enrolled + 20 queried each, seed 7),
whatever recipe each was trained with (the card's own held-out figure uses its recipe's).
(b) For every zoo: a few-shot gallery of each model's first 50 training images (as
``bench_universal.py``'s "50 per model" row) queried with the rest of the training images (images
81 onwards, so the calibration images 51-80 stay apart) as they are and re-encoded as JPEG 90;
kNN (k = 10) accuracy. The random held-out decoders of ``fpfast pretrain`` are the first selection
signal; this one checks transfer to real generator families on data no result table reports.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.bench_accuracy import cap, positive  # noqa: E402
from benchmarks.bench_embedding import gallery_of, vectors  # noqa: E402
from benchmarks.bench_universal import _jpeg, first_n  # noqa: E402
from fpfast.embed.pretrain import DEFAULT_PRETRAIN, photo_bank, heldout_eval  # noqa: E402
from fpfast.embed.universal import load_card  # noqa: E402
from fpfast.spec import load_spec  # noqa: E402
from fpfast.zoo import load_zoo_split  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("zoos", nargs="+")
    ap.add_argument("--weights", nargs="+", default=["shipped"], help="'shipped' or fpfast pretrain outputs")
    ap.add_argument("--max-train", type=positive, default=200)
    ap.add_argument("--out", default=None, help="write the figures as JSON")
    a = ap.parse_args(argv)
    if a.max_train <= 80:
        ap.error("--max-train must be > 80 (images 1-50 enroll, 81 onwards query)")
    spec = load_spec("default")
    out = {}
    opts = {**DEFAULT_PRETRAIN, "crop": 64, "patch": 32, "heldout": 32, "heldout_enroll": 10, "heldout_query": 20,
            "seed": 7}
    bank = photo_bank(opts["bank"], opts["crop"], opts["seed"])
    embs = {w: load_card()[0] if w == "shipped" else load_card(w)[0] for w in a.weights}
    for w, emb in embs.items():
        out[f"decoders / {w}"] = {**heldout_eval(emb, opts, bank), "identity": emb.identity[:12]}
        print(json.dumps({f"decoders / {w}": out[f"decoders / {w}"]}), flush=True)
    for zoo in a.zoos:
        x, y = cap(load_zoo_split(zoo, "train"), a.max_train)[:2]
        g_ids, q_ids = first_n(y, 50), first_n(y, a.max_train, offset=80)
        qx = [x[i] for i in q_ids]
        qj = [_jpeg(im, 90) for im in qx]
        qy = np.array([y[i] for i in q_ids])
        for w, emb in embs.items():
            fn = lambda b: emb.embed(b, layout="hwc")  # noqa: E731
            g = gallery_of(spec, vectors([x[i] for i in g_ids], fn), [y[i] for i in g_ids], "none", emb)
            r = {split: float(np.mean(np.array(g.attribute(vectors(q, fn), method="knn", k=10).predicted) == qy))
                 for split, q in (("clean", qx), ("jpeg90", qj))}
            out[f"{os.path.basename(zoo.rstrip('/'))} / {w}"] = {**r, "queries": len(qy), "identity": emb.identity[:12]}
            print(json.dumps({f"{zoo} / {w}": out[f"{os.path.basename(zoo.rstrip('/'))} / {w}"]}), flush=True)
    if a.out:
        with open(a.out, "w") as fh:
            json.dump(out, fh, indent=1)
    return out


if __name__ == "__main__":
    main()
