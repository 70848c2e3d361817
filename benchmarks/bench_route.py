"""Route each query by its detected condition: clean queries searched in one normalised space,
processed ones (JPEG, down-scaled, cropped) in another (issue 14: an approach to the few-shot
must-show and to clean accuracy at the whole split, measured before building it in).

    python benchmarks/bench_route.py ZOO --n 10 --out results/route.json [--max-test 200]

Gallery: the first N training images per model (``--n 0``: all). Spaces: the default handcrafted
vector standardised (`fpfast enroll`'s default) or LDA-normalised, and universal ⊕ handcrafted
LDA-normalised; kNN vote, k = 10 (:func:`bench_fewshot_concat.knn_accuracy`'s). The detector is
the product's (:class:`fpfast.gallery.conditions.ConditionDetector` on the handcrafted vector),
fitted on training images the gallery does not hold (images 1,000-1,029 of each model; ``--n``
must stay below 1,000) and their :func:`~fpfast.gallery.conditions.calibration_copies`, never on
test images. A routed row answers a query the detector calls clean in its first space and any
other in its second. Columns: the zoo's test splits and a 0.75x bilinear down-scale of the test
images; ``called_clean``: the detector's clean rate per split.
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
from benchmarks.bench_fewshot_concat import zoo_splits  # noqa: E402
from benchmarks.bench_universal import first_n  # noqa: E402
from fpfast.embed.universal import load_universal  # noqa: E402
from fpfast.gallery import normalize as norm  # noqa: E402
from fpfast.gallery.attribution import knn_vote  # noqa: E402
from fpfast.gallery.conditions import ConditionDetector, calibration_copies  # noqa: E402
from fpfast.ops.features import fingerprint_features  # noqa: E402
from fpfast.spec import load_spec  # noqa: E402

CAL_OFFSET, CAL_N = 1000, 30


def correct(train, lab, q, truth, names, method, k=10, fit_on=None):
    """Per query: is the uniform k-NN vote in ``method``'s space right (the normaliser fitted on
    ``fit_on``, same labels, when given, else on ``train``)."""
    nz = norm.fit(method, (train if fit_on is None else fit_on).astype(np.float64), lab)
    g, z = (nz.transform(x.astype(np.float32)).astype(np.float64) for x in (train, q))
    d = (z ** 2).sum(1)[:, None] - 2 * z @ g.T + (g ** 2).sum(1)[None]
    nn = np.argsort(d, 1, kind="stable")[:, :k]
    win = knn_vote(lab[nn], np.take_along_axis(d, nn, 1), len(names))[0]
    return np.array(names)[win] == np.asarray(truth)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("zoo")
    ap.add_argument("--n", type=int, default=10)
    ap.add_argument("--max-test", type=int, default=200)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    spec = load_spec("default")
    data, tr_x, tr_y = zoo_splits(a.zoo, a.max_test)
    ids = first_n(tr_y, a.n) if a.n else np.arange(len(tr_y))
    cal = first_n(tr_y, CAL_N, CAL_OFFSET)
    if a.n:
        data["train"] = ([tr_x[i] for i in ids], [tr_y[i] for i in ids])
    else:  # the whole split less the detector's images
        keep = np.setdiff1d(ids, cal)
        data["train"] = ([tr_x[i] for i in keep], [tr_y[i] for i in keep])
    cal_imgs = [tr_x[i] for i in cal]
    cal_copies = [c for im in cal_imgs for _, c in calibration_copies(im)]

    def hand(imgs):
        return vectors(imgs, lambda b: fingerprint_features(b, spec))
    det = ConditionDetector.fit(np.concatenate([hand(cal_imgs), hand(cal_copies)]),
                                np.r_[np.ones(len(cal_imgs), bool), np.zeros(len(cal_copies), bool)])
    emb = load_universal()
    hv = {s: hand(data[s][0]) for s in data}
    uv = {s: vectors(data[s][0], lambda b: emb.embed(b, layout="hwc")) for s in data}
    spaces = {"handcrafted, standardize": (hv, "standardize"), "handcrafted, lda": (hv, "lda"),
              "universal ⊕ handcrafted, lda": ({s: np.concatenate([uv[s], hv[s]], 1) for s in data}, "lda")}
    names = sorted(set(data["train"][1]))
    lab = np.array([names.index(m) for m in data["train"][1]])
    splits = [s for s in data if s != "train"]
    right = {name: {s: correct(v["train"], lab, v[s], data[s][1], names, m) for s in splits}
             for name, (v, m) in spaces.items()}
    clean = {s: det.is_clean(hv[s]) for s in splits}
    res = {"zoo": a.zoo, "n_per_model": a.n or "all", "max_test": a.max_test, "universal": emb.identity,
           "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
           "called_clean": {s: float(clean[s].mean()) for s in splits}, "rows": {}}
    for name in spaces:
        res["rows"][name] = {s: float(right[name][s].mean()) for s in splits}
    for first, second in (("universal ⊕ handcrafted, lda", "handcrafted, standardize"),
                          ("handcrafted, lda", "handcrafted, standardize")):
        res["rows"][f"routed: clean -> {first}, processed -> {second}"] = {
            s: float(np.where(clean[s], right[first][s], right[second][s]).mean()) for s in splits}
    for k, v in res["rows"].items():
        print(f"{k}: " + " ".join(f"{s} {x:.3f}" for s, x in v.items()), flush=True)
    print("called clean: " + json.dumps(res["called_clean"]))
    with open(a.out, "w") as fh:
        json.dump(res, fh, indent=1)


if __name__ == "__main__":
    main()
