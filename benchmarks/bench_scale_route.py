"""Down-scaled queries searched among down-scaled copies of the gallery (issue 14: an approach to
the resize columns, measured before building it in).

    python benchmarks/bench_scale_route.py ZOO --n 10 --out results/scale_route.json [--max-test 200]

A query smaller than the gallery's images was either down-scaled or cropped; its size alone cannot
say which (the zoo's 0.75x resize and its 3/4 crop are both 48 px at 64 px). So a two-class
detector (:class:`fpfast.gallery.conditions.ConditionDetector` on the handcrafted vector, the
product's) is fitted to tell down-scaled images from clean and cropped ones, on training images
the gallery does not hold (images 1,000-1,029 of each model, ``--cal-offset``; ``--n`` must stay below it) and
copies of them (bicubic 0.75x / 0.5x against 3/4 and 0.8 crops), never on test images. A routed
query (smaller than the gallery's images and called down-scaled) is searched among copies of the
gallery images down-scaled, bicubic, by the gallery scale nearest its own (0.75 or 0.5, in log
scale), in a space normalised on those copies; any other query in the gallery's own space.
``oracle`` routes by the true split (the bound). The queries' down-scaling is Pillow's bilinear
(the zoo's ``test_resize`` and ``resize075``): other than the copies'.

Spaces: the default handcrafted vector standardised (``fpfast enroll``'s default) and universal ⊕
handcrafted LDA-normalised. kNN vote, k = 10 (the bench_fewshot_concat vote).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.bench_embedding import vectors  # noqa: E402
from benchmarks.bench_fewshot_concat import zoo_splits  # noqa: E402
from benchmarks.bench_route import correct  # noqa: E402
from benchmarks.bench_universal import first_n  # noqa: E402
from fpfast.embed.train import _jpeg, _rescale  # noqa: E402
from fpfast.embed.universal import load_universal  # noqa: E402
from fpfast.gallery.conditions import ConditionDetector  # noqa: E402
from fpfast.ops.features import fingerprint_features  # noqa: E402
from fpfast.spec import load_spec  # noqa: E402

CAL_OFFSET, CAL_N = 1000, 30
SCALES = (0.75, 0.5)
JPEG_VIEW = 85                     # the quality of the gallery's JPEG copies (the queries': 90, 75)
JPEG_TRAIN = (95, 85, 70, 60)      # the JPEG detector's positives


def _crop(im, keep):
    h, w = im.shape[:2]
    t, l = round(h * (1 - keep) / 2), round(w * (1 - keep) / 2)
    return im[t:t + round(h * keep), l:l + round(w * keep)].copy()


def nearest_scale(f):
    return min(SCALES, key=lambda s: abs(np.log(f) - np.log(s)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("zoo")
    ap.add_argument("--n", type=int, default=10)
    ap.add_argument("--max-test", type=int, default=200)
    ap.add_argument("--cal-offset", type=int, default=CAL_OFFSET,
                    help="first training image per model of the detector's (the gallery's stay below it)")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    spec = load_spec("default")
    data, tr_x, tr_y = zoo_splits(a.zoo, a.max_test)
    ids = first_n(tr_y, a.n) if a.n else np.setdiff1d(np.arange(len(tr_y)), first_n(tr_y, CAL_N, a.cal_offset))
    cal = first_n(tr_y, CAL_N, a.cal_offset)
    g_imgs, g_lab = [tr_x[i] for i in ids], [tr_y[i] for i in ids]
    side = int(np.median([min(im.shape[:2]) for im in g_imgs]))
    cal_imgs = [tr_x[i] for i in cal]
    scaled = [_rescale(im, f, Image.BICUBIC) for im in cal_imgs for f in SCALES]
    unscaled = cal_imgs + [_crop(im, k) for im in cal_imgs for k in (0.75, 0.8)]

    def hand(imgs):
        return vectors(imgs, lambda b: fingerprint_features(b, spec))
    det = ConditionDetector.fit(np.concatenate([hand(unscaled), hand(scaled)]),
                                np.r_[np.ones(len(unscaled), bool), np.zeros(len(scaled), bool)])
    jpegs = [_jpeg(im, q) for im in cal_imgs for q in JPEG_TRAIN]
    jdet = ConditionDetector.fit(np.concatenate([hand(unscaled), hand(jpegs)]),
                                 np.r_[np.ones(len(unscaled), bool), np.zeros(len(jpegs), bool)])
    emb = load_universal()

    def hybrid(imgs):
        return np.concatenate([vectors(imgs, lambda b: emb.embed(b, layout="hwc")), hand(imgs)], 1)
    splits = [s for s in data if s != "train"]
    copies = {f: [_rescale(im, f, Image.BICUBIC) for im in g_imgs] for f in SCALES}
    names = sorted(set(g_lab))
    lab = np.array([names.index(m) for m in g_lab])
    q_scale = {s: np.array([min(im.shape[:2]) / side for im in data[s][0]]) for s in splits}
    res = {"zoo": a.zoo, "n_per_model": a.n or "all", "max_test": a.max_test, "universal": emb.identity,
           "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "rows": {}, "called_scaled": {}}
    hq = {s: hand(data[s][0]) for s in splits}
    small = {s: q_scale[s] < 0.9 for s in splits}
    routed = {s: small[s] & ~det.is_clean(hq[s]) for s in splits}
    jrouted = {s: ~routed[s] & ~jdet.is_clean(hq[s]) for s in splits}
    res["called_scaled"] = {s: float(routed[s].mean()) for s in splits}
    res["called_jpeg"] = {s: float(jrouted[s].mean()) for s in splits}
    print("called down-scaled: " + json.dumps(res["called_scaled"]), flush=True)
    print("called JPEG: " + json.dumps(res["called_jpeg"]), flush=True)
    for space, fn, method in (("handcrafted, standardize", hand, "standardize"),
                              ("universal ⊕ handcrafted, lda", hybrid, "lda")):
        gv = fn(g_imgs)
        qv = hq if fn is hand else {s: fn(data[s][0]) for s in splits}
        plain = {s: correct(gv, lab, qv[s], data[s][1], names, method) for s in splits}
        cv = {f: fn(copies[f]) for f in SCALES}
        own = {s: {f: correct(cv[f], lab, qv[s], data[s][1], names, method) for f in SCALES} for s in splits}
        shared = {s: {f: correct(cv[f], lab, qv[s], data[s][1], names, method, fit_on=gv) for f in SCALES}
                  for s in splits}

        def pick(s, mask, by_scale):
            near = np.array([nearest_scale(f) for f in q_scale[s]])
            scaled_right = np.where(near == SCALES[0], by_scale[s][SCALES[0]], by_scale[s][SCALES[1]])
            return float(np.where(mask, scaled_right, plain[s]).mean())
        oracle = {s: np.full(len(plain[s]), s in ("test_resize", "resize075")) for s in splits}
        jv = fn([_jpeg(im, JPEG_VIEW) for im in g_imgs])
        jright = {s: correct(jv, lab, qv[s], data[s][1], names, method) for s in splits}
        joracle = {s: np.full(len(plain[s]), s.startswith("test_jpeg")) for s in splits}
        rows = {space: {s: float(plain[s].mean()) for s in splits},
                f"{space}, routed": {s: pick(s, routed[s], own) for s in splits},
                f"{space}, routed, the gallery's normaliser": {s: pick(s, routed[s], shared) for s in splits},
                f"{space}, oracle route": {s: pick(s, oracle[s], own) for s in splits},
                f"{space}, routed + JPEG view": {s: float(np.where(jrouted[s], jright[s], 0).mean())
                                                 + pick(s, routed[s], own) - float(np.where(jrouted[s], plain[s], 0).mean())
                                                 for s in splits},
                f"{space}, oracle route + JPEG view": {s: float(np.where(joracle[s], jright[s], 0).mean())
                                                       + pick(s, oracle[s], own) - float(np.where(joracle[s], plain[s], 0).mean())
                                                       for s in splits}}
        res["rows"].update(rows)
        for k in rows:
            print(f"{k}: " + " ".join(f"{s} {x:.3f}" for s, x in res["rows"][k].items()), flush=True)
    with open(a.out, "w") as fh:
        json.dump(res, fh, indent=1)


if __name__ == "__main__":
    main()
