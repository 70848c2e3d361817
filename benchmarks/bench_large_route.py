"""Routing the down-scales of large images (``Gallery.large_views``), chosen on a large split's
*training* images (never its test split).

    python -c "from fpfast.zoo.large import build_large; build_large('ZOO', 'LARGE')"
    python benchmarks/bench_large_route.py LARGE --work /tmp/large_route --out results/large_route.json

``fpfast enroll`` (the default gallery, or ``--spec``) of the first ``--enroll`` training images of
every model; validation queries: its training images from ``--enroll`` on, as files the way users
get them: clean PNG, JPEG 90 / 75 (``.jpg``), bilinear 0.75x / 0.5x down-scales and a centred 3/4
crop (PNG, larger than the spec's crop). Each query is answered once by the gallery itself and by
each view, with the router's detectors' outputs beside; routing rules are then applied to those
answers:

* ``before``: no full-size query is routed by its look (the size rule alone: what a gallery of
  images no larger than the crop does);
* ``scale first``: a full-size query that looks down-scaled goes to the scale view the factor
  detector picks, even if it also looks JPEG-compressed;
* ``JPEG first``: the same unless it looks JPEG-compressed (then the JPEG view);
* ``JPEG first, keep m``: the same, but the gallery's own answer is kept where its open-set
  score is lower than the view's by more than m; ``p < t``: routed only where the scaled
  detector's p(clean) is below t (0.5: its decision);
* ``native size, then R``: the size rule against the enrolled images' own shorter side (before
  the crop) as well as the crop's: a query smaller than every enrolled image that looks
  down-scaled goes to the view of the nearest scale; rule R for the others (``native size keep
  m``: the gallery's own answer kept where its open-set score is lower by more than m).

``(processed)``: the gallery's own answer that the keep step weighs and keeps is the one at the
thresholds of processed images (a query the rule routes is one), not its file type's; ``(kind)``:
its score against the gallery's held-out copies of the view's kind (:func:`kind_thresholds`)
(both measured, not shipped: ``embedding.md``, twelfth session, item 3).

The product (since the eleventh session) applies the native size rule with the keep margin, then
routes by look only when the router saw at least ``MIN_LOOK_CLEAN`` clean held-out images
(``--enroll 10`` on 10 models: 20): ``native size keep 0.25, then JPEG first, keep 0.25``, below
that ``native size keep 0.25, then before``.

The shipped rule is also run end to end (``fpfast attribute`` of the query folders) and its
accuracy must equal its simulated row (printed side by side). ``--lomo``: the open set on the
same training images, each model left out of a gallery of the others in turn (its clean
validation images the unknowns): the mean AUROC of each rule's open-set score.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import time

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from fpfast.gallery import Gallery  # noqa: E402
from fpfast.gallery.conditions import centre  # noqa: E402
from fpfast.gallery.attribution import open_set_margin, quantile_threshold  # noqa: E402
from fpfast.gallery.views import FEEDS, KEEP_MARGIN, MIN_LOOK_CLEAN, VIEWS, Router, copy_name, smaller  # noqa: E402
from fpfast.jobs.mappers import with_query_columns  # noqa: E402
from fpfast.jobs.options import StreamOptions  # noqa: E402
from fpfast.zoo import load_zoo_split  # noqa: E402

MARK = ".bench_large_route"   # marks a --work folder as this benchmark's
CONDITIONS = {"clean": None, "jpeg90": 90, "jpeg75": 75, "resize075": 0.75, "resize05": 0.5, "crop075": "crop"}


def write_queries(zoo: str, work: str, n_enroll: int, n_queries: int | None = None) -> None:
    """work/enroll/<model>/*.png and work/q/<condition>/<model>/* from the zoo's training split
    (``n_queries``: at most that many query images per model, the first after the enrolled ones)."""
    x, y = load_zoo_split(zoo, "train")[:2]
    seen: dict = {}
    for im, m in zip(x, y):
        i = seen[m] = seen.get(m, -1) + 1
        p = Image.fromarray(im)
        if i < n_enroll:
            os.makedirs(f"{work}/enroll/{m}", exist_ok=True)
            p.save(f"{work}/enroll/{m}/{i:04d}.png")
            continue
        if n_queries is not None and i >= n_enroll + n_queries:
            continue
        for cond, arg in CONDITIONS.items():
            d = f"{work}/q/{cond}/{m}"
            os.makedirs(d, exist_ok=True)
            if arg is None:
                p.save(f"{d}/{i:04d}.png")
            elif cond.startswith("jpeg"):
                p.save(f"{d}/{i:04d}.jpg", quality=arg)
            elif arg == "crop":   # the centred 3/4: as small as a 0.75x down-scale, not one
                c = round(p.width * 0.75), round(p.height * 0.75)
                left, top = (p.width - c[0]) // 2, (p.height - c[1]) // 2
                p.crop((left, top, left + c[0], top + c[1])).save(f"{d}/{i:04d}.png")
            else:
                p.resize((round(p.width * arg), round(p.height * arg)), Image.BILINEAR).save(f"{d}/{i:04d}.png")


def per_query(g: Gallery, work: str, conditions=tuple(CONDITIONS)) -> dict:
    """{condition: {answer: array}}: whether the gallery / each view is right, their open-set
    scores, the router's p(clean) / p(0.75x) and JPEG look, per query."""
    mp = with_query_columns(g.spec, StreamOptions(quiet=True), g.embedder(), g)
    if g.router is None or g.router.get("input") != "vector":
        raise SystemExit("needs a gallery whose router reads its own vectors (universal + handcrafted or handcrafted)")
    r = Router.from_dict(g.router, g.spec.dim)
    kind_thr = kind_thresholds(g)
    out = {}
    for cond in conditions:
        files = sorted(glob.glob(f"{work}/q/{cond}/*/*"))
        whole = [np.asarray(Image.open(f).convert("RGB")) for f in files]
        ims = np.stack([centre(im, g.spec.size) for im in whole])
        native = np.array([min(im.shape[:2]) for im in whole])
        cols = mp(torch.from_numpy(ims), files, native.tolist())
        v = np.asarray(cols["vector"].detach().cpu() if hasattr(cols["vector"], "detach") else cols["vector"])
        truth = np.array([f.split("/")[-2] for f in files])
        here = g._attribute_here(v, "knn", None, "uniform", 1, cols["side"], None, cols["jpeg"])
        proc = g._attribute_here(v, "knn", None, "uniform", 1, [0] * len(v), None, None)  # as processed
        a = {"here": np.array(here.model) == truth, "here_score": here.open_set_score,
             "proc": np.array(proc.model) == truth, "proc_score": proc.open_set_score,
             "p_clean": r.scaled.p_clean(v), "p_mild": r.factor.p_clean(v),
             "looks_jpeg": (np.asarray(cols["jpeg"]) != 0) & ~r.jpeg.is_clean(v), "files": files,
             "native": native.astype(np.float64)}
        for name, (td, tr) in kind_thr.items():   # the gallery's answer against its held-out copies of the view's kind
            a[f"kind_{name}_score"] = open_set_margin(here.distance, td, here.ratio, tr)
        for name in VIEWS:
            va = g.views[name].attribute(v)
            a[name], a[name + "_score"] = np.array(va.model) == truth, va.open_set_score
        out[cond] = a
    return out


def kind_thresholds(g: Gallery) -> dict:
    """{scale view: (distance, ratio) thresholds}: the FRR 0.05 thresholds (each at 0.025) of the
    gallery's held-out copies of the kind that feeds the view, searched in the gallery itself."""
    kinds = np.array([copy_name(k) for k in g.hold_keys], dtype=object)
    s, r, _ = g._open_set_stats(g._hold_vectors, [g._names[i] for i in g._hold_labels], "knn")
    out = {}
    for name, feeds in FEEDS.items():
        m = np.isin(kinds, feeds)
        if VIEWS[name][0] != "jpeg" and m.any():
            out[name] = (quantile_threshold(s[m], 0.025), quantile_threshold(r[m], 0.025))
    return out


def answers(a: dict, order: str | None, keep: float | None = None, tau: float = 0.5, native: float | None = None,
            native_keep: float | None = None, kept: str = "here", native_kept: str = "here"):
    """(right, open-set score) per query under one routing rule, from one condition's answers;
    ``native``: the enrolled images' shorter side, for the native size rule (``native_keep``: the
    gallery's own answer kept where lower by that margin, as ``keep`` for the look rule);
    ``kept`` / ``native_kept``: which of the gallery's own answers the look rule's / the native
    size rule's keep step weighs and keeps - ``here`` (the query's own condition: a full-size
    lossless file meets the clean thresholds), ``proc`` (the thresholds of processed images, as
    a query routed to a scale view is judged) or ``kind`` (its score against the gallery's
    held-out copies of the view's kind, :func:`kind_thresholds`)."""
    mild = a["p_mild"] >= 0.5
    view, vscore = np.where(mild, a["scale075"], a["scale05"]), np.where(mild, a["scale075_score"], a["scale05_score"])
    jp = a["looks_jpeg"]
    go = np.zeros(len(jp), bool) if order is None else (a["p_clean"] < tau) & (~jp if order == "jpeg" else True)
    right = np.where(jp, a["jpeg85"], a["here"])
    score = np.where(jp, a["jpeg85_score"], a["here_score"])
    if kept == "kind":   # the gallery's answer, its score against its copies of the view's kind
        a = {**a, "kind": a["here"], "kind_score": np.where(mild, a["kind_scale075_score"], a["kind_scale05_score"])}
    if keep is not None:
        stay = go & (a[kept + "_score"] + keep < vscore)
        right, score = np.where(stay, a[kept], right), np.where(stay, a[kept + "_score"], score)
        go &= ~stay
    right, score = np.where(go, view, right), np.where(go, vscore, score)
    if native:
        f = a["native"] / native
        sized = smaller(a["native"], native) & (a["p_clean"] < 0.5)
        half = np.abs(np.log(f / VIEWS["scale05"][1])) < np.abs(np.log(f / VIEWS["scale075"][1]))
        nat, nscore = np.where(half, a["scale05"], a["scale075"]), np.where(half, a["scale05_score"], a["scale075_score"])
        if native_kept == "kind":
            a = {**a, "kind": a["here"],
                 "kind_score": np.where(half, a["kind_scale05_score"], a["kind_scale075_score"])}
        if native_keep is not None:   # kept: the gallery's own answer (never another view's)
            stay = a[native_kept + "_score"] + native_keep < nscore
            nat, nscore = np.where(stay, a[native_kept], nat), np.where(stay, a[native_kept + "_score"], nscore)
        right, score = np.where(sized, nat, right), np.where(sized, nscore, score)
    return right, score


def simulate(a: dict, *rule) -> float:
    """Accuracy of one routing rule on one condition's per-query answers."""
    return round(float(answers(a, *rule)[0].mean()), 4)


def left_out_auroc(work: str, spec: str | None, rules: dict) -> dict:
    """{rule: mean AUROC} over the models, each left out of a gallery of the others in turn (its
    clean validation images the unknowns, the others' the knowns): the open set, on training
    images."""
    import shutil

    from click.testing import CliRunner

    from fpfast.cli import cli
    from fpfast.gallery.openset import auroc
    models = sorted(os.listdir(f"{work}/enroll"))
    per = {name: [] for name in rules}
    for m in models:
        d = f"{work}/lomo/{m}"
        if not os.path.isdir(f"{d}/g"):
            for o in models:
                if o != m:
                    shutil.copytree(f"{work}/enroll/{o}", f"{d}/enroll/{o}")
            r = CliRunner().invoke(cli, ["enroll", f"{d}/g", "--from-folders", f"{d}/enroll", "-q"]
                                   + (["--spec", spec] if spec else []))
            if r.exit_code:
                raise SystemExit(r.output)
        a = per_query(Gallery.load(f"{d}/g"), work, ("clean",))["clean"]
        unknown = np.array([f.split("/")[-2] == m for f in a["files"]])
        for name, rule in rules.items():
            score = answers(a, *rule)[1]
            per[name].append(auroc(score[~unknown], score[unknown]))
    return {name: round(float(np.mean(v)), 4) for name, v in per.items()}


def end_to_end(work: str) -> dict:
    """The shipped rule as a user runs it: ``fpfast attribute`` of each query folder."""
    import pyarrow.parquet as pq
    from click.testing import CliRunner

    from fpfast.cli import cli
    acc = {}
    for cond in CONDITIONS:
        out = f"{work}/a_{cond}.parquet"
        r = CliRunner().invoke(cli, ["attribute", f"{work}/q/{cond}", "--gallery", f"{work}/g", "--out", out,
                                     "--overwrite", "-q"])
        if r.exit_code:
            raise SystemExit(r.output)
        t = pq.read_table(out).to_pydict()
        acc[cond] = round(float(np.mean([m == p.split("/")[-2] for m, p in zip(t["model"], t["path"])])), 4)
    return acc


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("zoo")
    ap.add_argument("--work", required=True, help="a new folder for the query files and the gallery")
    ap.add_argument("--enroll", type=int, default=24, help="training images per model enrolled (the rest: queries)")
    ap.add_argument("--queries", type=int, default=None, help="at most this many query images per model")
    ap.add_argument("--spec", default=None, help="fpfast enroll --spec (default: the default gallery)")
    ap.add_argument("--lomo", action="store_true", help="also each rule's open-set AUROC, each model left out in turn")
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    mark = os.path.join(a.work, MARK)
    if os.path.exists(a.work) and os.listdir(a.work) and not os.path.exists(mark):
        raise SystemExit(f"--work {a.work} holds files this benchmark did not write: give a new folder")
    os.makedirs(a.work, exist_ok=True)
    open(mark, "a").close()   # its own folder: later runs reuse the queries and galleries in it
    if not os.path.isdir(f"{a.work}/g"):
        from click.testing import CliRunner

        from fpfast.cli import cli
        write_queries(a.zoo, a.work, a.enroll, a.queries)
        r = CliRunner().invoke(cli, ["enroll", f"{a.work}/g", "--from-folders", f"{a.work}/enroll", "-q"]
                               + (["--spec", a.spec] if a.spec else []))
        if r.exit_code:
            raise SystemExit(r.output)
    g = Gallery.load(f"{a.work}/g")
    q = per_query(g, a.work)
    rules = {"before": (None, None, 0.5), "scale first": ("scale", None, 0.5), "JPEG first": ("jpeg", None, 0.5)}
    for keep in (0.0, 0.25, 0.5, 0.75, 1.0, 2.0):
        rules[f"JPEG first, keep {keep}"] = ("jpeg", keep, 0.5)
    for tau in (0.3, 0.1):
        rules[f"JPEG first, p < {tau}"] = ("jpeg", None, tau)
        rules[f"JPEG first, p < {tau}, keep 0.25"] = ("jpeg", 0.25, tau)
    native = float(g.min_side)   # the enrolled images' own side, as the gallery recorded it
    for base in ("before", f"JPEG first, keep {KEEP_MARGIN}"):
        rules[f"native size, then {base}"] = rules[base] + (native,)
    for nk in (0.25, 0.5, 1.0):
        rules[f"native size keep {nk}, then before"] = rules["before"] + (native, nk)
    rules[f"native size keep {KEEP_MARGIN}, then JPEG first, keep {KEEP_MARGIN}"] = \
        rules[f"JPEG first, keep {KEEP_MARGIN}"] + (native, KEEP_MARGIN)
    look = f"JPEG first, keep {KEEP_MARGIN}"
    for nk in (0.5, 1.0):
        rules[f"native size keep {nk}, then {look}"] = rules[look] + (native, nk)
    for nk in (0.0, 0.25, 0.5):   # ... weighed against the gallery's held-out copies of the view's kind
        rules[f"native size keep {nk} (kind), then before"] = rules["before"] + (native, nk, "here", "kind")
        rules[f"native size keep {nk} (kind), then {look}"] = rules[look] + (native, nk, "here", "kind")
        rules[f"native size keep {nk} (kind), then JPEG first, keep {nk} (kind)"] = \
            ("jpeg", nk, 0.5, native, nk, "kind", "kind")
    for nk in (0.25, 0.5, 1.0):   # the gallery's own answer weighed at the thresholds of processed images
        rules[f"native size keep {nk} (processed), then before"] = rules["before"] + (native, nk, "here", "proc")
        rules[f"native size keep {nk} (processed), then {look}"] = rules[look] + (native, nk, "here", "proc")
        rules[f"native size keep {nk} (processed), then JPEG first, keep {nk} (processed)"] = \
            ("jpeg", nk, 0.5, native, nk, "proc", "proc")
    table = {name: {c: simulate(q[c], *rule) for c in CONDITIONS} for name, rule in rules.items()}
    for name, row in table.items():
        row["mean"] = round(float(np.mean(list(row.values()))), 4)
        print(f"{name:<32s}", row, flush=True)
    # the shipped rule: look routing only with detectors fitted on enough clean held-out images
    shipped = f"native size keep {KEEP_MARGIN}, then " + (
        f"JPEG first, keep {KEEP_MARGIN}" if g.router.get("clean", 0) >= MIN_LOOK_CLEAN else "before")
    e2e = end_to_end(a.work)
    print("shipped, end to end", e2e, "simulated", {c: table[shipped][c] for c in CONDITIONS}, flush=True)
    res = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "zoo": a.zoo, "enroll": a.enroll,
           "spec": a.spec or "default gallery", "queries": {c: len(q[c]["here"]) for c in CONDITIONS},
           "large_views": g.large_views, "router_clean": g.router.get("clean", 0), "shipped": shipped,
           "rules": table, "end_to_end": e2e}
    if a.lomo:
        res["left_out_auroc"] = left_out_auroc(a.work, a.spec, {k: rules[k] for k in (
            "before", "JPEG first", f"JPEG first, keep {KEEP_MARGIN}", f"native size keep {KEEP_MARGIN}, then before",
            f"native size keep {KEEP_MARGIN}, then JPEG first, keep {KEEP_MARGIN}", shipped)})
        print("left-one-out AUROC", res["left_out_auroc"], flush=True)
    with open(a.out, "w") as fh:
        json.dump(res, fh, indent=1)


if __name__ == "__main__":
    main()
