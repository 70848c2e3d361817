"""The default gallery's open-set score, measured without the zoo's open-set split: leave one
known model out, on training images only (issue 14, few-shot AUROC target).

    python benchmarks/bench_openset_lomo.py ZOO --n 50 [--spec universal+handcrafted] [--out lomo.json]

For every gallery model m of the zoo: ``fpfast enroll`` (a subprocess, the product's defaults: 20 %
held out, calibrated on the held-out images and their processed copies, views) of the first ``n``
training images of every *other* model; queries: training images 200-299 of every model (clean
PNGs, as the zoo's open-set split): m's are the unknowns, the others' the knowns. Scores compared
on the same answers (larger = more likely unknown):

* ``product``: :attr:`~fpfast.gallery.Attribution.open_set_score` (distance and ratio, each over
  its calibrated threshold, the larger);
* ``distance / threshold`` and ``ratio / threshold``: each half of it alone, their sum and their
  product;
* ``distance``, ``ratio``: the raw statistics (one global scale);
* ``kth k``: the distance to the k-th nearest enrolled sample (Sun et al. 2022);
* ``mahalanobis``, ``gmm``: :class:`~fpfast.gallery.openset.OpenSetScorer` fitted on the
  gallery's normalised samples.

``--siblings``: one gallery of every model instead, its unknowns the zoo's ``validation`` designs
labelled unknown (its first 100 images each; sibling designs of enrolled ones), one row per design.
``--baseline``: each gallery scored a second time as before a change, recalibrated in memory
(``Gallery.recalibrate``, as enrolling does; :func:`benchmarks.bench_unknown.baseline_of`):
``discriminant`` (the default; rows ``…, without the discriminant space``) with its normalised open-set
space removed, ``union`` (rows ``…, union-bound thresholds``) with each test at its union-bound share
of the FRR; the `unknown` rates at its thresholds beside the product's. ``--offset``: the training images enrolled
start there (another draw).

Per score: AUROC and TNR at 95 % TPR, their mean over the left-out models, and (for the product)
the unknown rate of m and the false-unknown rate of the known queries at the calibrated thresholds,
with the share of each the condition detector called clean. The known models' queries processed
(JPEG 80 as a .jpg, the same saved as PNG, 0.7x bilinear): accuracy (`unknown` counted wrong) and
`unknown` rate. ``--file-type``: whether the PNG queries are told the gallery as PNG files (as the
stream does for .png keys, their pixels read for a JPEG grid where the gallery needs it:
``fpfast.gallery.jpeg_grid``) or of an unknown type (NaN: the condition detector decides alone, as
it did for every query before the file type was read).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.bench_universal import _jpeg, _resize, first_n  # noqa: E402
from benchmarks.bench_unknown import BASELINES, baseline_of, first_images  # noqa: E402
from fpfast.gallery import Gallery  # noqa: E402
from fpfast.gallery.openset import OpenSetScorer, auroc, tnr_at_tpr  # noqa: E402
from fpfast.jobs.mappers import host_vectors, jpeg_flags, vector_mapper  # noqa: E402
from fpfast.jobs.options import StreamOptions  # noqa: E402
from fpfast.prepare import map_images  # noqa: E402
from fpfast.zoo import load_zoo_split  # noqa: E402

QUERY_OFFSET, QUERIES = 200, 100
KTH = (5, 10)


BY_NAME_ONLY = False  # --before: the JPEG flags by file name alone


def flags(g: Gallery, v: np.ndarray, images, sides, flag: float) -> list[float]:
    """The JPEG flags the stream gives these queries (files named ``flag``: 0 for PNG, whose pixels
    are read for a JPEG grid where the gallery needs them: ``fpfast.jobs.mappers.jpeg_flags``)."""
    named = [flag] * len(images)
    return named if BY_NAME_ONLY else jpeg_flags(g, named, torch.from_numpy(np.stack(images)), v, sides)


def before_this_session() -> None:
    """Patch in the rule of ``--before`` (this process only)."""
    global BY_NAME_ONLY
    here = Gallery.query_condition
    Gallery.query_condition = lambda self, q, method="knn", sides=None, condition=None, jpeg=None: \
        here(self, q, method, sides, condition)
    BY_NAME_ONLY = True


def scores(g: Gallery, v: np.ndarray, sides, jpeg) -> dict:
    """{score name: [M]} of queries ``v`` (raw vectors) in gallery ``g``."""
    a = g.attribute(v, sides=sides, jpeg=jpeg)
    out = {"product": a.open_set_score,
           "distance / threshold": a.distance / a.threshold, "ratio / threshold": a.ratio / a.ratio_threshold,
           "distance": a.distance, "ratio": a.ratio}
    # the same rule with global thresholds only (each record's one threshold per statistic)
    rec = g.calibration["knn"]
    clean = np.array([c == "clean" for c in a.condition]) if a.condition is not None else np.ones(len(v), bool)
    t = np.where(clean, rec.get("clean", rec)["global"], rec["global"])
    rt = np.where(clean, rec.get("clean", rec)["ratio"]["global"], rec["ratio"]["global"])
    out["product, global thresholds"] = np.maximum(a.distance / t, a.ratio / rt) - 1
    out["ratio / global threshold"] = a.ratio / rt
    # the two statistics over their thresholds added (the product takes the larger) and multiplied
    out["distance / threshold + ratio / threshold"] = a.distance / a.threshold + a.ratio / a.ratio_threshold
    out["distance / threshold x ratio / threshold"] = (a.distance / a.threshold) * (a.ratio / a.ratio_threshold)
    for k in KTH:
        out[f"kth {k}"] = g.search(v, k).distances[:, -1]
    st = g.state()
    z, lab = g.transform(st.vectors), st.labels
    q = g.transform(v)
    for kind in ("mahalanobis", "gmm"):
        out[kind] = OpenSetScorer(kind).fit(z, lab).score(q)[0]
    return {k: np.asarray(s, np.float64) for k, s in out.items()}, a, clean


def baseline_scores(g: Gallery, kind: str, v: np.ndarray, sides, images, flag: float) -> dict:
    """:func:`scores` of ``g`` as before a change (``--baseline kind``:
    :func:`benchmarks.bench_unknown.baseline_of`, in memory), under names ending with its suffix;
    {} where it does not apply."""
    base = baseline_of(Gallery.load(g.path), kind)
    if base is None:
        return {}
    suffix, g0 = base
    s0 = scores(g0, v, sides, flags(g0, v, images, sides, flag))[0]
    return {f"{k}{suffix}": x for k, x in s0.items()}


def decided(s: dict, sel_unknown: np.ndarray, sel_known: np.ndarray) -> dict:
    """Per decision score of ``s`` (the product's open-set score, and a baseline's): the `unknown` rate
    (score above 0) of the unknown and of the known queries."""
    return {k: {"unknown": round(float((x[sel_unknown] > 0).mean()), 4),
                "false_unknown": round(float((x[sel_known] > 0).mean()), 4)}
            for k, x in s.items() if k == "product" or (k.startswith("product, ") and "global" not in k)}


def sibling_rows(g: Gallery, vec, vx, svec, sib, flag: float, baseline: str | None) -> dict:
    """{design: row} of ``--siblings``: AUROC and TNR of each score, the known queries ``vec``
    against each validation design's images ``svec`` (and all of them pooled)."""
    v = np.concatenate([vec, svec])
    ims = list(vx) + list(sib[0])
    sides = [min(im.shape[:2]) for im in ims]
    s, att, _ = scores(g, v, sides, flags(g, v, ims, sides, flag))
    if baseline:
        s.update(baseline_scores(g, baseline, v, sides, ims, flag))
    design = np.r_[np.full(len(vec), ""), sib[1]]
    rows = {}
    for d in sorted(set(sib[1])) + ["pooled"]:
        unk = design == d if d != "pooled" else design != ""
        sel = (design == "") | unk
        rows[d] = {k: {"auroc": round(auroc(x[sel][~unk[sel]], x[sel][unk[sel]]), 4),
                       "tnr95": round(tnr_at_tpr(x[sel][~unk[sel]], x[sel][unk[sel]]), 4)} for k, x in s.items()}
        for k, r in decided(s, unk, design == "").items():
            rows[d][k].update(r)
        print(d, json.dumps({k: r["auroc"] for k, r in rows[d].items()}), flush=True)
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("zoo")
    ap.add_argument("--n", type=int, default=50, help="training images per model enrolled (20 %% held out)")
    ap.add_argument("--spec", default="universal+handcrafted")
    ap.add_argument("--models", default=None, help="comma-separated models to leave out (default: all)")
    ap.add_argument("--file-type", choices=("png", "unknown"), default="png",
                    help="what the gallery is told of the PNG queries' files (unknown: NaN, the detector decides)")
    ap.add_argument("--before", action="store_true",
                    help="the rule before 2026-12-06: the open-set record chosen by the condition detector "
                         "alone, JPEG flags by file name alone (the file type only routed)")
    ap.add_argument("--siblings", action="store_true",
                    help="one gallery of every model; unknowns: the zoo's validation designs labelled unknown")
    ap.add_argument("--baseline", nargs="?", const="discriminant", choices=BASELINES,
                    help="also score each gallery as before a change (recalibrated in memory): discriminant "
                         "(default): without its normalised open-set space; union: union-bound thresholds")
    ap.add_argument("--offset", type=int, default=0, help="first training image enrolled per model")
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    if a.before:
        before_this_session()
    flag = 0.0 if a.file_type == "png" else np.nan
    x, y = load_zoo_split(a.zoo, "train")[:2]
    names = sorted(set(y))
    val = first_n(y, QUERIES, offset=QUERY_OFFSET)
    vy = np.array([y[i] for i in val])
    vx = [x[i] for i in val]
    # known models' images processed (accuracy and `unknown` rate; the left-out model's are skipped):
    # (images, JPEG-file flag)
    processed = {} if a.siblings else {"JPEG 80 (.jpg)": ([_jpeg(im, 80) for im in vx], 1.0),
                                       "JPEG 80 saved as PNG": ([_jpeg(im, 80) for im in vx], flag),
                                       "0.7x bilinear (.png)": ([_resize(im, 0.7) for im in vx], flag)}
    sib = None
    if a.siblings:   # (images, design names) of the validation designs labelled unknown
        sx, sy, src = load_zoo_split(a.zoo, "validation")
        keep = first_n(src, QUERIES)
        keep = [i for i in keep if sy[i] == "unknown"]
        sib = ([sx[i] for i in keep], np.array([src[i] for i in keep]))
    opts = StreamOptions(device="cpu", quiet=True)
    vec = None
    res = {"zoo": a.zoo, "n": a.n, "offset": a.offset, "siblings": a.siblings, "spec": a.spec,
           "rule": "before 2026-12-06" if a.before else "2026-12-06",
           "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "left_out": {}}
    with tempfile.TemporaryDirectory() as tmp:
        train = first_images(os.path.join(a.zoo, "train"), os.path.join(tmp, "train"), a.n, a.offset)
        for m in ["siblings"] if a.siblings else (a.models.split(",") if a.models else names):
            if not a.siblings:
                os.rename(os.path.join(train, m), os.path.join(tmp, "out"))
            gdir = os.path.join(tmp, f"g_{m}")
            subprocess.run([sys.executable, "-m", "fpfast", "enroll", gdir, "--from-folders", train, "--spec",
                            a.spec, "-q"], check=True)
            if not a.siblings:
                os.rename(os.path.join(tmp, "out"), os.path.join(train, m))
            g = Gallery.load(gdir)
            if vec is None:  # the queries as the stream fingerprints them for this kind of gallery
                f = host_vectors(vector_mapper(g.spec, opts, g.embedder()))
                vec = map_images(vx, f)
                pvec = {p: map_images(ims, f) for p, (ims, _) in processed.items()}
                if sib is not None:
                    svec = map_images(sib[0], f)
            if sib is not None:
                res["left_out"].update(sibling_rows(g, vec, vx, svec, sib, flag, a.baseline))
                continue
            sides = [min(im.shape[:2]) for im in vx]
            s, att, clean = scores(g, vec, sides, flags(g, vec, vx, sides, flag))
            if a.baseline:
                s.update(baseline_scores(g, a.baseline, vec, sides, vx, flag))
            unk = vy == m
            row = {k: {"auroc": round(auroc(v[~unk], v[unk]), 4), "tnr95": round(tnr_at_tpr(v[~unk], v[unk]), 4)}
                   for k, v in s.items()}
            for k, r in decided(s, unk, ~unk).items():
                row[k].update(r)
            row["product"].update(called_clean_unknown=round(float(clean[unk].mean()), 4),
                                  called_clean_known=round(float(clean[~unk].mean()), 4))
            for p, (ims, fl) in processed.items():
                sides = np.array([min(im.shape[:2]) for im in ims])[~unk]
                pa = g.attribute(pvec[p][~unk], sides=sides,
                                 jpeg=flags(g, pvec[p][~unk], [im for im, u in zip(ims, unk) if not u], sides, fl))
                row[p] = {"accuracy": round(float(np.mean(np.array(pa.model) == vy[~unk])), 4),
                          "unknown": round(float(pa.is_unknown.mean()), 4)}
            res["left_out"][m] = row
            print(m, json.dumps({k: v.get("auroc", v) for k, v in row.items()}), flush=True)
    rows = [r for k, r in res["left_out"].items() if k != "pooled"]
    res["mean"] = {k: {f: round(float(np.mean([r[k][f] for r in rows])), 4) for f in v}
                   for k, v in rows[0].items()}
    print(json.dumps(res["mean"]))
    if a.out:
        with open(a.out, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
