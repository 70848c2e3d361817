"""Choosing the gallery's open-set rule without the zoo's open-set split (issue 14).

    python benchmarks/bench_openset_rule.py ZOO [ZOO...] [--max-train 200] --out rule.json

Leave one known model out, on ``train`` images only: for every model m of a zoo, a gallery of the
other models' first 50 training images (the shipped universal embedding, normalize none; and the
handcrafted default spec, standardised: the enroll defaults), calibrated (kNN, FRR 0.05) on their
images 51-80, clean + one JPEG-75 + one 0.5x-resized copy (as ``bench_universal.py``); queries: the
other models' images 81 onwards (known) and m's (unknown). Three rules on the same
:class:`~fpfast.gallery.Attribution` fields:

* ``distance``: distance to the winner's nearest sample above its model's threshold at FRR (the
  rule before the ratio), ranked by ``distance - threshold``;
* ``ratio``: Lowe's ratio above its threshold at FRR, ranked by ``ratio - threshold``;
* ``distance + ratio``: either above its threshold at FRR / 2 (``Gallery.calibrate``), ranked by
  :attr:`~fpfast.gallery.Attribution.open_set_score`.

Per rule, the mean over left-out models of the AUROC, the unknown rate of the left-out model and
the false-unknown rate of known queries. The zoos' test and open-set splits are never read.
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
from benchmarks.bench_embedding import gallery_of  # noqa: E402
from benchmarks.bench_universal import calibration_images, first_n  # noqa: E402
from fpfast.embed.universal import load_universal  # noqa: E402
from fpfast.gallery import attribution as attr  # noqa: E402
from fpfast.gallery.openset import auroc  # noqa: E402
from fpfast.ops.features import fingerprint_features  # noqa: E402
from fpfast.prepare import map_images  # noqa: E402
from fpfast.spec import load_spec  # noqa: E402
from fpfast.zoo import load_zoo_split  # noqa: E402

RULES = ("distance", "ratio", "distance + ratio")


def rule_scores(g, calib, calib_y, queries, frr: float = 0.05) -> dict:
    """{rule: (ranking score, unknown?)} of ``queries`` on gallery ``g`` calibrated on ``calib``."""
    names = list(g.models())
    lab = np.array([names.index(m) for m in calib_y])
    d_own, r_own = g.own_model_distance(calib, calib_y), g.own_model_ratio(calib, calib_y)
    g.calibrate(calib, list(calib_y), frr)
    a = g.attribute(queries, k=10)
    win = np.array([names.index(p) for p in a.predicted])
    out = {"distance + ratio": (a.open_set_score, a.is_unknown)}
    for rule, own, stat in (("distance", d_own, a.distance), ("ratio", r_own, a.ratio)):
        t = attr.thresholds_for(attr.calibrate_thresholds(own, lab, names, frr, True, 5), names)[win]
        out[rule] = (stat - t, stat > t)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("zoos", nargs="+")
    ap.add_argument("--max-train", type=positive, default=200)
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    spec, emb = load_spec("default"), load_universal()
    res = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "universal": emb.identity, "zoos": {}}
    for zoo in a.zoos:
        x, y = cap(load_zoo_split(zoo, "train"), a.max_train)[:2]
        y = np.array(y)
        gal, cal, qry = first_n(y, 50), first_n(y, 30, offset=50), first_n(y, a.max_train, offset=80)
        cal_imgs = calibration_images([x[i] for i in cal])
        cal_y = np.concatenate([y[cal]] * 3)
        spaces = {"universal": (lambda b: emb.embed(b, layout="hwc"), "none", emb),
                  "handcrafted": (lambda b: fingerprint_features(b, spec).numpy(), "standardize", None)}
        for space, (fn, norm, embedder) in spaces.items():
            v_gal, v_cal, v_qry = (map_images(imgs, fn) for imgs in
                                   ([x[i] for i in gal], cal_imgs, [x[i] for i in qry]))
            per = {r: [] for r in RULES}
            for m in sorted(set(y)):
                keep_g, keep_c = y[gal] != m, cal_y != m
                g = gallery_of(spec, v_gal[keep_g], list(y[gal][keep_g]), norm, embedder)
                sc = rule_scores(g, v_cal[keep_c], list(cal_y[keep_c]), v_qry)
                unk = y[qry] == m
                for r, (s, u) in sc.items():
                    per[r].append({"left_out": m, "auroc": auroc(s[~unk], s[unk]), "unknown_rate": float(u[unk].mean()),
                                   "false_unknown": float(u[~unk].mean())})
            res["zoos"].setdefault(zoo, {})[space] = {
                r: {"auroc": float(np.mean([p["auroc"] for p in per[r]])),
                    "unknown_rate": float(np.mean([p["unknown_rate"] for p in per[r]])),
                    "false_unknown": float(np.mean([p["false_unknown"] for p in per[r]])), "per_model": per[r]}
                for r in RULES}
            print(zoo, space, {r: round(res["zoos"][zoo][space][r]["auroc"], 3) for r in RULES}, flush=True)
            with open(a.out, "w") as fh:
                json.dump(res, fh, indent=1)


if __name__ == "__main__":
    main()
