"""Why open-set AUROC sits below 0.5 on the zoo, and what per-model calibration changes (issue 14).

    python benchmarks/bench_openset.py /tmp/zoo_small --out /tmp/openset.json [--cache /tmp/openset_vecs.npz]

Vectors: the shipped universal embedding (unit vectors, no training) and the handcrafted default
spec (standardised on the gallery). Gallery: the first 50 ``train`` images of each model;
calibration: train images 51-80 of each model, clean + one JPEG-75 + one 0.5x-resized copy (as
``bench_universal.py``). For each scorer of :mod:`fpfast.gallery.openset`: AUROC of the raw score
(one global threshold), of the score relative to the calibration quantile of the model it points
to (``per_model``: score minus that quantile, what a gallery's per-model thresholds do, :mod:`fpfast.gallery.attribution`),
and of minus the raw score (the sign check); and the per-known-model AUROC against the open-set
model (which known models score *above* the unknown one).

Then the product path (``--gallery``): a :class:`~fpfast.gallery.Gallery` of the same vectors
(universal: normalize none; handcrafted: standardize, the enroll defaults), calibrated on the
calibration images (per-model thresholds at FRR 0.05, kNN), attributing the clean test images and
the open-set model: AUROC of the raw open-set statistic (``Attribution.distance``, what `fpfast
eval` reported) and of its margin over the threshold applied (``Attribution.open_set_score``),
with the unknown rate of the open-set model and the false-unknown rate of known test images.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.bench_universal import calibration_images, first_n  # noqa: E402
from benchmarks.bench_embedding import gallery_of  # noqa: E402
from fpfast.embed.universal import load_universal  # noqa: E402
from fpfast.gallery.openset import SCORERS, OpenSetScorer, auroc  # noqa: E402
from fpfast.ops.features import fingerprint_features  # noqa: E402
from fpfast.prepare import map_images  # noqa: E402
from fpfast.spec import load_spec  # noqa: E402
from fpfast.zoo import load_zoo_split  # noqa: E402


def _vectors(zoo: str, cache: str | None) -> dict:
    """Vectors of every set; the universal ones (the slow part) cached in ``cache`` when given."""
    tr_x, tr_y = load_zoo_split(zoo, "train")[:2]
    te_x, te_y = load_zoo_split(zoo, "test")[:2]
    op_x = load_zoo_split(zoo, "open_set")[0]
    gal, cal = first_n(tr_y, 50), first_n(tr_y, 30, offset=50)
    cal_imgs = calibration_images([tr_x[i] for i in cal])
    sets = {"gallery": [tr_x[i] for i in gal], "calib": cal_imgs, "test": te_x, "open": op_x}
    spec = load_spec("default")
    out = {"gallery_y": np.array([tr_y[i] for i in gal]), "calib_y": np.array([tr_y[i] for i in cal] * 3),
           "test_y": np.array(te_y)}
    cached = dict(np.load(cache, allow_pickle=False)) if cache and os.path.exists(cache) else {}
    emb = load_universal()
    for name, imgs in sets.items():
        out[f"uni_{name}"] = cached.get(f"uni_{name}")
        if out[f"uni_{name}"] is None:
            out[f"uni_{name}"] = map_images(imgs, lambda b: emb.embed(b, layout="hwc"))
        out[f"hand_raw_{name}"] = map_images(imgs, lambda b: fingerprint_features(b, spec).numpy())
    mu, sd = out["hand_raw_gallery"].mean(0), out["hand_raw_gallery"].std(0) + 1e-6
    for name in sets:
        out[f"hand_{name}"] = (out[f"hand_raw_{name}"] - mu) / sd
    if cache and not cached:
        np.savez(cache, **{k: x for k, x in out.items() if k.startswith("uni_")})
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("zoo")
    ap.add_argument("--out", required=True)
    ap.add_argument("--cache", default=None)
    ap.add_argument("--scorers", default=",".join(SCORERS))
    a = ap.parse_args(argv)
    v = _vectors(a.zoo, a.cache)
    res = {"zoo": a.zoo, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "rows": {}, "product": {}}
    emb = load_universal()
    for kind, normalize in (("uni", "none"), ("hand", "standardize"), ("hand", "lda")):
        g = gallery_of(load_spec("default"), v[f"{kind}_gallery"] if kind == "uni" else v["hand_raw_gallery"],
                       list(v["gallery_y"]), normalize, emb if kind == "uni" else None)
        pick = (lambda n: v[f"uni_{n}"]) if kind == "uni" else (lambda n: v[f"hand_raw_{n}"])
        g.calibrate(pick("calib"), list(v["calib_y"]), frr=0.05, method="knn")
        t, o = g.attribute(pick("test"), method="knn", k=10), g.attribute(pick("open"), method="knn", k=10)
        row = {"auroc_distance": auroc(t.distance, o.distance),
               "auroc_margin": auroc(t.open_set_score, o.open_set_score),
               "unknown_rate": float(o.is_unknown.mean()), "false_unknown": float(t.is_unknown.mean()),
               "accuracy_known": float(np.mean(np.array(t.model) == v["test_y"]))}
        res["product"][f"{kind}/{normalize}"] = row
        print("product", f"{kind}/{normalize}", json.dumps({k2: round(x, 3) for k2, x in row.items()}), flush=True)
    for kind in ("uni", "hand"):
        for scorer in a.scorers.split(","):
            s = OpenSetScorer(scorer).fit(v[f"{kind}_gallery"], v["gallery_y"])
            cal, cal_c = s.score(v[f"{kind}_calib"])
            k, kc = s.score(v[f"{kind}_test"])
            u, uc = s.score(v[f"{kind}_open"])
            # per-model thresholds: each score minus the 95 % quantile of the calibration scores that
            # point to the same model (a difference: GMM scores can be negative), 'unknown' above 0
            q = {c: np.quantile(cal[cal_c == c], 0.95) if (cal_c == c).sum() >= 5 else np.quantile(cal, 0.95)
                 for c in np.unique(np.r_[kc, uc])}
            kn, un = k - np.array([q[c] for c in kc]), u - np.array([q[c] for c in uc])
            per_model = {m: round(auroc(k[v["test_y"] == m], u), 3) for m in np.unique(v["test_y"])}
            row = {"auroc_raw": auroc(k, u), "auroc_minus_raw": auroc(-k, -u), "auroc_per_model": auroc(kn, un),
                   "tnr95_per_model": float((un > np.quantile(kn, 0.95)).mean()),
                   "unknown_rate_per_model": float((un > 0).mean()), "false_unknown_per_model": float((kn > 0).mean()),
                   "open_set_points_to": dict(zip(*[x.tolist() for x in np.unique(uc, return_counts=True)])),
                   "auroc_vs_each_known_model": per_model}
            res["rows"][f"{kind}/{scorer}"] = row
            print(f"{kind}/{scorer}", json.dumps({k2: (round(x, 3) if isinstance(x, float) else x)
                                                   for k2, x in row.items()}), flush=True)
    with open(a.out, "w") as fh:
        json.dump(res, fh, indent=1)


if __name__ == "__main__":
    main()
