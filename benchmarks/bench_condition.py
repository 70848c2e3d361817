"""Can a query's condition (clean, JPEG, down-scaled) be told from its fingerprint, so that open-set
thresholds calibrated per condition can be used without the decoder's help? (issue 14: the
per-condition thresholds, *told* the condition, flag ~40 % of the unseen generator at a few %
false unknowns; pooled thresholds flag almost none.)

    python benchmarks/bench_condition.py ZOO --finetuned DIR --out results/condition.json [--max-test 200]

The gallery: a learned embedding (``--finetuned``: a directory with universal.json +
universal.safetensors as ``Embedder.to_bytes`` writes them; default the shipped universal one) on
the zoo's whole train split, less the calibration images (train images 51-80 of each model),
calibrated like ``bench_universal.product_rows``: the clean, JPEG-75 and 0.5x thirds of those
images. A detector (multinomial logistic regression, L2: ``fpfast.baselines.base.LinearHead``,
fitted on the calibration vectors' three thirds; inputs: the gallery's normalised vector, or the
handcrafted default vector) predicts each test query's condition; the query is answered with
the thresholds of the predicted condition.
A second, two-way detector (handcrafted input) tells clean from any re-encoding, trained with
milder copies too (JPEG 90 and 0.75x of the same calibration images): a query it calls clean
gets the clean thresholds, any other the pooled ones.
Rows: pooled thresholds, told condition (the bound), detected condition per detector; columns: the
unseen model's `unknown` rate (clean and JPEG 75) and the false-unknown rate of known images per
test split, and the detector's accuracy per split.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.bench_accuracy import cap, positive  # noqa: E402
from benchmarks.bench_embedding import gallery_of, vectors  # noqa: E402
from benchmarks.bench_universal import _jpeg, _resize, calibration_images, first_n  # noqa: E402
from fpfast.baselines.base import LinearHead  # noqa: E402
from fpfast.embed import Embedder  # noqa: E402
from fpfast.embed.universal import load_universal  # noqa: E402
from fpfast.ops.features import fingerprint_features  # noqa: E402
from fpfast.spec import load_spec  # noqa: E402
from fpfast.zoo import load_zoo_split  # noqa: E402

CONDITIONS = ("clean", "jpeg", "resize")
# test split -> its true condition
QUERIES = {"test": "clean", "test_jpeg90": "jpeg", "test_jpeg75": "jpeg", "resize075": "resize",
           "test_resize": "resize", "open_set": "clean", "open_set_jpeg75": "jpeg"}


def fit_detector(x: np.ndarray, y: np.ndarray, l2: float = 1e-3):
    """Standardise + multinomial logistic regression (:class:`fpfast.baselines.base.LinearHead`)
    minimising the mean cross-entropy + ``l2`` ||w||^2 (sklearn's C = 1 / (2 l2 n)) -> a predict
    function giving the class labels."""
    head = LinearHead("logistic", C=0.5 / (l2 * len(x)), max_iter=2000).fit(x, y)
    return lambda q: head.predict_score(q)[0]


def answer(g, v, conds, recs):
    """``g.attribute`` of ``v`` with each row answered under the thresholds of its condition."""
    unknown = np.zeros(len(v), bool)
    for c in np.unique(conds):
        g.calibration["knn"] = recs[CONDITIONS[c]]
        sel = conds == c
        unknown[sel] = g.attribute(v[sel], k=10).is_unknown
    return unknown


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("zoo")
    ap.add_argument("--finetuned", default=None)
    ap.add_argument("--max-test", type=positive, default=200)
    ap.add_argument("--frr", type=float, default=0.05)
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    spec = load_spec("default")
    if a.finetuned:
        with open(os.path.join(a.finetuned, "universal.json"), "rb") as c, \
                open(os.path.join(a.finetuned, "universal.safetensors"), "rb") as w:
            emb = Embedder.from_bytes(c.read(), w.read())
    else:
        emb = load_universal()
    tr_x, tr_y = cap(load_zoo_split(a.zoo, "train"), None)[:2]
    data = {s: cap(load_zoo_split(a.zoo, s), a.max_test)[:2] for s in ("test", "test_jpeg90", "test_jpeg75",
                                                                        "test_resize", "open_set")}
    data["resize075"] = ([_resize(im, 0.75) for im in data["test"][0]], data["test"][1])
    data["open_set_jpeg75"] = ([_jpeg(im, 75) for im in data["open_set"][0]], data["open_set"][1])
    cal_ids = first_n(tr_y, 30, offset=50)
    cal_imgs = calibration_images([tr_x[i] for i in cal_ids])
    cal_y = [tr_y[i] for i in cal_ids] * 3
    cal_c = np.repeat(np.arange(3), len(cal_ids))
    keep = ~np.isin(np.arange(len(tr_y)), cal_ids)

    def embed(b):
        return emb.embed(b, layout="hwc")

    def hand(b):
        return fingerprint_features(b, spec)
    t0 = time.perf_counter()
    gv = vectors([tr_x[i] for i in np.flatnonzero(keep)], embed)
    cv, ch = vectors(cal_imgs, embed), vectors(cal_imgs, hand)
    qv = {s: vectors(d[0], embed) for s, d in data.items()}
    qh = {s: vectors(d[0], hand) for s, d in data.items()}
    g = gallery_of(spec, gv, [tr_y[i] for i in np.flatnonzero(keep)], "none", emb)
    third = len(cal_ids)
    recs = {c: g.calibrate(cv[i * third:(i + 1) * third], cal_y[i * third:(i + 1) * third], a.frr)
            for i, c in enumerate(CONDITIONS)}
    pooled = g.calibrate(cv, cal_y, a.frr)
    detectors = {"gallery vector": (fit_detector(g.transform(cv), cal_c), lambda s: g.transform(qv[s])),
                 "handcrafted vector": (fit_detector(ch, cal_c), lambda s: qh[s])}
    truth = {s: np.full(len(qv[s]), CONDITIONS.index(c)) for s, c in QUERIES.items()}
    # a two-way detector: clean against any re-encoding, trained with mild ones too (JPEG 90 and 0.75x
    # copies of the same calibration images); a query it calls clean gets the clean thresholds, any
    # other the pooled ones
    cal_src = [tr_x[i] for i in cal_ids]
    mild = [_jpeg(im, 90) for im in cal_src] + [_resize(im, 0.75) for im in cal_src]
    mh = vectors(mild, hand)
    is_copy = np.r_[np.zeros(third, int), np.ones(len(cal_c) - third + len(mild), int)]
    two = fit_detector(np.concatenate([ch, mh]), is_copy)
    res = {"zoo": a.zoo, "embedding": emb.identity, "frr": a.frr, "max_test": a.max_test,
           "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "rows": {}, "detector_accuracy": {}}
    rows = {"pooled thresholds": {s: np.zeros(len(qv[s]), int) for s in QUERIES},
            "told condition (bound)": truth}
    recs_by_row = {"pooled thresholds": {c: pooled for c in CONDITIONS}}
    for name, (predict, inputs) in detectors.items():
        pred = {s: predict(inputs(s)) for s in QUERIES}
        rows[f"detected from the {name}"] = pred
        res["detector_accuracy"][name] = {s: float(np.mean(pred[s] == truth[s])) for s in QUERIES}
    pred = {s: two(qh[s]) for s in QUERIES}
    rows["clean or not, from the handcrafted vector (mild copies too)"] = pred
    recs_by_row["clean or not, from the handcrafted vector (mild copies too)"] = {"clean": recs["clean"],
                                                                                 "jpeg": pooled}
    res["detector_accuracy"]["clean or not (handcrafted)"] = {
        s: float(np.mean(pred[s] == (truth[s] > 0))) for s in QUERIES}
    for name, conds in rows.items():
        r = recs_by_row.get(name, recs)
        res["rows"][name] = {s: float(answer(g, qv[s], conds[s], r).mean()) for s in QUERIES}
        print(name, json.dumps({s: round(x, 3) for s, x in res["rows"][name].items()}), flush=True)
    print("detector accuracy", json.dumps(res["detector_accuracy"]), flush=True)
    res["seconds"] = round(time.perf_counter() - t0, 1)
    with open(a.out, "w") as fh:
        json.dump(res, fh, indent=1)


if __name__ == "__main__":
    main()
