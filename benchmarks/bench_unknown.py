"""What `fpfast enroll` galleries answer `unknown`, calibrated on clean held-out images or on those
plus their processed copies with the condition detector (``--calibrate-on``; issue 14).

    python benchmarks/bench_unknown.py ZOO --out results/unknown_standard.json [--specs default,universal]
        [--views "all;none"] [--embedding DIR] [--max-train N [--draws D]] [--k 10,auto] [--max-test 200]
        [--baseline [discriminant|union]] [--table]

The product path end to end: ``fpfast enroll G --from-folders ZOO/train --spec S --calibrate-on C
--views V``
(a subprocess, as a user runs it: 20 % of each model's images held out, FRR 0.05; ``--embedding``:
a fine-tuned embedding's gallery through the command's own enrollment loop), then the gallery's own
``attribute`` (kNN with each ``--k``, with each image's side, its JPEG flag - by file name, a
PNG's pixels read for a JPEG grid where the answer depends on it - and, for a plain embedding,
its handcrafted vector, as the stream passes them) on the zoo's test splits as the pipeline
fingerprints them, plus a 0.75x bilinear down-scale of the test images made in memory. Per
split: accuracy (an `unknown` answer counts as wrong; for ``open_set`` `unknown` is the right
answer), the `unknown` rate, ``named`` (the answer before the open-set decision right: what
`unknown` took away), ``family`` (the answer a model of the right architecture, another seed of
it included: for the unseen seed, whose expected answer is seed 0's class though the gallery may
hold seed 1's too) and the fraction the detector called clean; per gallery: AUROC and
OSCR of ``open_set_score`` (clean test images against the open-set model's) and the enroll time.

``--baseline``: each gallery measured a second time as it was before a change (a copy,
recalibrated), a row of its own on the same samples; its ``enroll_s`` is the copy's recalibration
time. ``discriminant`` (the default): without its normalised (discriminant) open-set space
(:mod:`fpfast.gallery.openspace`), for the galleries that have one; ``union``: each open-set test at
its union-bound share of the FRR instead of the joint thresholds (:func:`fpfast.gallery.attribution.joint_scale`).

``--draws D``: D galleries per setting, the d-th enrolled from training images d*N .. (d+1)*N - 1
of each model (disjoint draws; a few-shot gallery's figures swing with the images it holds, the
unseen seed's by 10-25 points between draws). Each row is then the mean over the draws, with
their standard deviation; ``--table`` adds each gallery's paired difference against the last
one (the same draws), mean and 95 % interval (Student t).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.bench_accuracy import positive  # noqa: E402
from benchmarks.bench_embedding import PAIR  # noqa: E402
from benchmarks.bench_universal import _resize, first_n  # noqa: E402
from fpfast.gallery import Gallery  # noqa: E402
from fpfast.gallery.attribution import UNKNOWN  # noqa: E402
from fpfast.gallery.openset import auroc, oscr  # noqa: E402
from fpfast.gallery.conditions import detector_spec  # noqa: E402
from fpfast.gallery.views import VIEWS, jpeg_file  # noqa: E402
from fpfast.jobs.mappers import host_vectors, jpeg_flags, vector_mapper  # noqa: E402
from fpfast.jobs.options import StreamOptions  # noqa: E402
from fpfast.prepare import map_images  # noqa: E402
from fpfast.zoo import load_zoo_split  # noqa: E402

SPLITS = ("test", "test_jpeg90", "test_jpeg75", "resize075", "test_resize", "test_crop", "unseen_seed", "open_set")

FRR = 0.05   # `fpfast enroll --frr`'s default: the galleries enrolled here and their baseline copies


def zoo_splits(zoo, max_test):
    """{split: (images, expected answers, JPEG flags by file name)} of the zoo's test splits (the
    first ``max_test`` images of each model), with a 0.75x bilinear down-scale of the clean ones."""
    out = {}
    for split in SPLITS:
        src = "test" if split == "resize075" else split
        if not os.path.isdir(os.path.join(zoo, src)):
            continue
        imgs, labels, _ = load_zoo_split(zoo, src)
        sel = first_n([str(x) for x in labels], max_test)
        want = [UNKNOWN if labels[i] is None else labels[i] for i in sel]
        chosen = [_resize(imgs[i], 0.75) if split == "resize075" else imgs[i] for i in sel]
        # the zoo's JPEG splits are .jpg files, the others .png (resize075: made in memory from .png)
        out[split] = (chosen, want, [jpeg_file(f"x.{'jpg' if split.startswith('test_jpeg') else 'png'}")] * len(sel))
    return out


def queries(spec, embedder, splits, opts):
    """{split: (vectors, expected answers, image sides, JPEG flags by file name, images)} of ``spec``
    (``embedder``'s when it names one) for the ``splits`` of :func:`zoo_splits`."""
    vectorize = host_vectors(vector_mapper(spec, opts, embedder))
    return {split: (map_images(imgs, vectorize), want, [min(im.shape[:2]) for im in imgs], jpeg, imgs)
            for split, (imgs, want, jpeg) in splits.items()}


def measure(gdir, zoo, max_test, opts, ks=("10",), cache=None, splits=None):
    """{k: row} of the gallery at ``gdir``, one row per vote size in ``ks`` ("auto": ``vote_k``);
    ``cache``: a dict keeping the queries' vectors between galleries of the same fingerprint;
    ``splits``: the queries (:func:`zoo_splits`' form) instead of the zoo's test splits."""
    g = Gallery.load(gdir)
    cache = {} if cache is None else cache
    emb = g.embedder()
    key = (repr(g.spec), None if emb is None else emb.identity)
    if key not in cache:
        cond = {}
        splits = zoo_splits(zoo, max_test) if splits is None else splits
        if detector_spec(g.spec) is not None:  # a plain embedding's detector reads handcrafted vectors
            cond = {s: v[0] for s, v in queries(detector_spec(g.spec), None, splits, opts).items()}
        cache[key] = (queries(g.spec, emb, splits, opts), cond)
    q, cond = cache[key]
    return {k: rates(g, q, cond, None if k == "auto" else int(k)) for k in ks}


def family(model: str) -> str:
    """A zoo model's architecture: its name without a ``_seedN`` suffix (``UNKNOWN`` stays)."""
    return re.sub(r"_seed\d+$", "", model)


def rates(g, q, cond, k):
    row, att = {"k": g.vote_k() if k is None else k}, {}
    for split, (v, want, sides, jpeg, images) in q.items():
        c_split = cond.get(split)
        # the flags as the stream gives them: a PNG's pixels read for a JPEG grid where it matters
        jpeg = jpeg_flags(g, jpeg, torch.from_numpy(np.stack(images)), v, sides, c_split)
        a = g.attribute(v, k=k, sides=sides, condition=c_split, jpeg=jpeg)
        att[split] = (a, np.array(want))
        row[split] = figures(g, a, np.array(want))
    if "test" in att:
        t, ty = att["test"]
        sel = np.flatnonzero(np.isin(ty, PAIR))
        if len(sel) and set(PAIR) <= set(g.models()):   # both seeds enrolled: told apart?
            row["seed_pair"] = figures(g, t.take(sel), ty[sel])
    for split in att:   # "open_set", and "open_set:NAME" (one unknown design of several) where asked
        if split == "open_set" or split.startswith("open_set:"):
            (t, ty), (u, _) = att["test"], att[split]
            tail = split[len("open_set"):]
            row["auroc" + tail] = auroc(t.open_set_score, u.open_set_score)
            row["oscr" + tail] = oscr(t.open_set_score, np.array(t.predicted) == ty, u.open_set_score)
    return row


def figures(g, a, want: np.ndarray) -> dict:
    """One split's figures of the answers ``a`` to queries whose expected answers are ``want``."""
    c = None if a.condition is None else np.array(a.condition, dtype=object)
    return {"accuracy": float(np.mean(np.array(a.model) == want)),
            "unknown": float(np.mean(a.is_unknown)),
            "named": float(np.mean(np.array(a.predicted) == want)),
            "family": float(np.mean([family(m) == family(w) for m, w in zip(a.model, want)])),
            "called_clean": None if c is None else float(np.mean(c == "clean")),
            "views": {} if c is None else {v: float(np.mean(c == v)) for v in g.views if (c == v).any()}}


NAMES = {"test": "clean", "test_jpeg90": "JPEG 90", "test_jpeg75": "JPEG 75", "resize075": "0.75×",
         "test_resize": "0.5×", "test_crop": "crop", "unseen_seed": "unseen seed", "seed_pair": "seed pair",
         "open_set": "unseen model"}
# the table's columns: the splits, and the clean test images of a seed pair (benchmarks.bench_embedding.PAIR)
COLUMNS = SPLITS[:-1] + ("seed_pair", SPLITS[-1])


def table(res: dict) -> str:
    """Two markdown tables of a result: accuracy (`unknown` counted wrong, right for the unseen
    model) and the `unknown` rate per split, one row per gallery."""
    rows = res["rows"]
    splits = [s for s in COLUMNS if any(s in r for r in rows.values())]
    out = []
    for what, key in (("accuracy", "accuracy"), ("`unknown` rate", "unknown")):
        out += [f"| gallery ({what}) | " + " | ".join(NAMES[s] for s in splits) + " | AUROC | OSCR | enroll s |",
                "|---|" + "---:|" * (len(splits) + 3)]
        out += [f"| {name} | " + " | ".join(f"{r[s][key]:.3f}" for s in splits)
                + f" | {r.get('auroc', float('nan')):.3f} | {r.get('oscr', float('nan')):.3f} | {r['enroll_s']:.0f} |"
                for name, r in rows.items()]
        out.append("")
    return "\n".join(out)


def enroll_with(gdir, train, emb_dir, how, opts):
    """What `fpfast enroll` does for a gallery holding the embedding saved in ``emb_dir``
    (universal.json + universal.safetensors, ``Embedder.to_bytes``' two parts: a fine-tuned
    one), through the same job functions: enroll, copies, refit, recalibrate, save."""
    from fpfast.cli.enroll import _enroll_groups
    from fpfast.embed import Embedder
    from fpfast.jobs.enroll import finish_enrollment, model_folders
    with open(os.path.join(emb_dir, "universal.json"), "rb") as c, \
            open(os.path.join(emb_dir, "universal.safetensors"), "rb") as w:
        emb = Embedder.from_bytes(c.read(), w.read())
    g = Gallery.create(gdir, normalize="none").with_embedding(emb)
    g.view_names = tuple(VIEWS) if how == "augmented" else ()  # as `fpfast enroll` sets them
    _enroll_groups(g, {m: [d] for m, d in model_folders(train).items()}, None, 0.2, how, opts)
    finish_enrollment(g, None, FRR)
    return emb.identity


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("zoo")
    ap.add_argument("--specs", default="default,universal+handcrafted,universal")
    ap.add_argument("--calibrate-on", default="clean,augmented")
    ap.add_argument("--views", default="all", help="`fpfast enroll --views` settings to compare, separated by "
                    "semicolons (all, none, or names with commas); with --calibrate-on clean: none")
    ap.add_argument("--embedding", help="also a gallery of this fine-tuned embedding (a directory with "
                    "universal.json + universal.safetensors), enrolled by the same job functions")
    ap.add_argument("--max-test", type=positive, default=200)
    ap.add_argument("--max-train", type=positive, default=None,
                    help="enroll the first N training images of each model (links in a temporary folder)")
    ap.add_argument("--draws", type=positive, default=1, help="galleries per setting, each from the next "
                    "N training images of each model (with --max-train N): mean and spread over the draws")
    ap.add_argument("--k", default="10", help="vote sizes to answer with, comma-separated; auto: Gallery.vote_k")
    ap.add_argument("--baseline", nargs="?", const="discriminant", choices=BASELINES,
                    help="each gallery also as before a change (a recalibrated copy, a row of its own): "
                         "discriminant (default): without its normalised open-set space; union: union-bound thresholds")
    ap.add_argument("--out", required=True)
    ap.add_argument("--table", action="store_true", help="print the tables of an existing --out and stop")
    a = ap.parse_args(argv)
    if a.table:
        with open(a.out) as f:
            res = json.load(f)
        print(table(res))
        if res.get("per_draw"):
            print(paired(res))
        return
    if a.draws > 1 and not a.max_train:
        ap.error("--draws needs --max-train (each draw enrolls N other images of each model)")
    opts = StreamOptions(device="cpu", quiet=True)
    res = {"zoo": a.zoo, "max_test": a.max_test, "max_train": a.max_train, "draws": a.draws,
           "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "rows": {}}
    if a.draws > 1:
        res["per_draw"] = {}
    ks, cache = a.k.split(","), {}

    def add(name, t0, gdir):
        secs = round(time.perf_counter() - t0, 1)
        for k, row in measure(gdir, a.zoo, a.max_test, opts, ks, cache).items():
            key = name if len(ks) == 1 else f"{name}, k = {k}"
            row = {"enroll_s": secs, **row}
            if a.draws > 1:
                res["per_draw"].setdefault(key, []).append(row)
                row = mean_row(res["per_draw"][key])
            res["rows"][key] = row
            print(f"{key}: " + json.dumps(res["rows"][key]), flush=True)
        with open(a.out, "w") as f:
            json.dump(res, f, indent=1)
    for d in range(a.draws):
        with tempfile.TemporaryDirectory() as tmp:
            train = os.path.join(a.zoo, "train")
            if a.max_train:
                train = first_images(train, os.path.join(tmp, "train"), a.max_train, offset=d * a.max_train)
            enroll_all(a, train, tmp, add, opts)


def has_discriminant(g: Gallery) -> bool:
    """Whether ``g`` reads `unknown` also in a normalised open-set space (:mod:`fpfast.gallery.openspace`)."""
    return bool(g.openset_blocks) and g.openset_space == "normalized"


def drop_discriminant(g: Gallery) -> Gallery:
    """``g`` (in memory, not saved) with its normalised open-set space removed and recalibrated
    (``Gallery.recalibrate`` at enrolling's FRR): the rule before it, on the same samples."""
    g.openset_blocks, g.openset_space, g.openset_scales = None, "vectors", {}
    g.recalibrate(FRR)
    return g


BASELINES = ("discriminant", "union")


def baseline_of(g: Gallery, kind: str):
    """(row-name suffix, ``g`` changed in memory) of ``--baseline kind``, None where it does not
    apply: ``discriminant``, :func:`drop_discriminant`; ``union``, every record recalibrated with each
    test at its union-bound share of the FRR (``Gallery.recalibrate(joint=False)``: the thresholds
    before 2026-12-07)."""
    if kind == "discriminant":
        return (", without the discriminant space", drop_discriminant(g)) if has_discriminant(g) else None
    if kind != "union":
        raise ValueError(f"unknown baseline {kind!r}; expected one of {BASELINES}")
    g.recalibrate(FRR, joint=False)
    return ", union-bound thresholds", g


def baseline_copy(gdir: str, out: str, kind: str) -> str | None:
    """A copy at ``out`` of the gallery at ``gdir`` under :func:`baseline_of`; its row-name suffix,
    or None (nothing written) where the baseline does not apply."""
    if kind == "discriminant" and not has_discriminant(Gallery.load(gdir)):
        return None
    shutil.copytree(gdir, out)
    suffix, g = baseline_of(Gallery.load(out), kind)
    g.save()
    return suffix


def enroll_all(a, train, tmp, add, opts):
    """Every gallery the options ask for, enrolled from ``train`` under ``tmp`` and measured by ``add``."""
    views = a.views.split(";")
    for spec in a.specs.split(","):
        for how in a.calibrate_on.split(","):
            for v in (views if how == "augmented" else ["none"]):
                gdir = os.path.join(tmp, f"{spec}-{how}-{v}".replace("+", "_").replace(",", "_"))
                t0 = time.perf_counter()
                subprocess.run([sys.executable, "-m", "fpfast", "enroll", gdir, "--from-folders", train,
                                "--calibrate-on", how, "--spec", spec, "--views", v, "-q"], check=True)
                name = f"{spec}, calibrated on {how}" + (f", views {v}" if len(views) > 1 else "")
                add(name, t0, gdir)
                t1 = time.perf_counter()   # the baseline's "enroll s": its copy and recalibration alone
                suffix = baseline_copy(gdir, gdir + "-baseline", a.baseline) if a.baseline else None
                if suffix:
                    add(name + suffix, t1, gdir + "-baseline")
    for how in a.calibrate_on.split(",") if a.embedding else ():
        gdir = os.path.join(tmp, f"embedding-{how}")
        t0 = time.perf_counter()
        ident = enroll_with(gdir, train, a.embedding, how, opts)
        add(f"fine-tuned {ident[:8]}, calibrated on {how}", t0, gdir)


FIGURES = ("accuracy", "unknown", "named", "family", "called_clean")


def mean_row(rows):
    """The mean of per-draw rows, with ``sd``: each split's accuracy and AUROC / OSCR standard
    deviation over the draws."""
    out, sd = {"enroll_s": float(np.mean([r["enroll_s"] for r in rows])), "k": rows[0]["k"]}, {}

    def spread(x):
        return float(np.std(x, ddof=1)) if len(x) > 1 else None
    for s in COLUMNS:
        if s in rows[0]:
            out[s] = {f: None if rows[0][s].get(f) is None else float(np.mean([r[s][f] for r in rows]))
                      for f in FIGURES}
            sd[s] = spread([r[s]["accuracy"] for r in rows])
    for f in ("auroc", "oscr"):
        if f in rows[0]:
            out[f], sd[f] = float(np.mean([r[f] for r in rows])), spread([r[f] for r in rows])
    return {**out, "sd": sd}


def paired(res: dict) -> str:
    """A markdown table: each gallery's accuracy (and AUROC / OSCR) minus the last gallery's on the
    same draws, mean and 95 % Student-t interval over the draws."""
    from scipy.stats import t as student
    per = res["per_draw"]
    names = list(per)
    base, n = names[-1], len(per[names[-1]])
    splits = [s for s in COLUMNS if s in per[base][0]]
    cols = splits + [c for c in ("auroc", "oscr") if c in per[base][0]]
    head = [NAMES.get(c, c.upper()) for c in cols]
    out = [f"| minus `{base}` ({n} draws) | " + " | ".join(head) + " |", "|---|" + "---:|" * len(cols)]
    q = student.ppf(0.975, n - 1)
    for name in names[:-1]:
        cells = []
        for c in cols:
            diff = np.array([(r[c]["accuracy"] if c in splits else r[c]) - (b[c]["accuracy"] if c in splits else b[c])
                             for r, b in zip(per[name], per[base])])
            half = q * diff.std(ddof=1) / np.sqrt(n)
            cells.append(f"{diff.mean():+.3f} ± {half:.3f}")
        out.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def first_images(src, dst, n, offset=0):
    """``dst/<model>/``: links to files ``offset`` .. ``offset + n - 1`` (sorted) of each
    ``src/<model>/``; refuses a model with fewer."""
    for m in sorted(os.listdir(src)):
        if not os.path.isdir(os.path.join(src, m)):
            continue
        os.makedirs(os.path.join(dst, m))
        files = sorted(x for x in os.listdir(os.path.join(src, m)) if x != "model.json")
        if len(files) < offset + n:
            raise SystemExit(f"{m} has {len(files)} training images; the draw needs {offset + n}")
        for f in files[offset:offset + n]:
            os.symlink(os.path.join(src, m, f), os.path.join(dst, m, f))
    return dst


if __name__ == "__main__":
    main()
