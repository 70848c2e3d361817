"""The universal embedding on a built GM-zoo (issue 14): few-shot, fine-tuned, vs handcrafted, and
the open-set scorers compared.

    python benchmarks/bench_universal.py /tmp/zoo_small --out /tmp/univ.json --finetune-epochs 3
    python benchmarks/bench_universal.py ZOO --max-train 200 --max-test 100 ...   # a big zoo, sampled
    python benchmarks/bench_universal.py ZOO --augment 4 ...   # + galleries with augmented copies

Rows (every gallery on the zoo's ``train`` split; the zoo's generators were never seen in
pretraining): universal few-shot (the first 10 / 50 images of each model, no training; and the
handcrafted gallery of the same 10 / 50 images, standardised and with LDA),
universal on the whole train split (no training), universal + fine-tune (``train_embedding``
with ``init`` = the universal embedding on the train split; also followed by the handcrafted
vector, LDA-normalised), handcrafted + LDA, and the universal embedding followed by the
handcrafted vector, LDA-normalised (``--spec universal+handcrafted``) at 10 / 50 / all images per
model, with the product rows below for it and for the handcrafted galleries at 10 and 50 images
per model (``--few-augment K``: each few-shot gallery again with K ``enroll --augment`` copies of
its images). Columns as ``bench_embedding.py`` (kNN k = 10 and nearest centroid) plus ``resize
0.75×`` (the clean test images, Pillow bilinear) and OSCR (kNN: nearest-sample distance, correct =
right model).

Open-set section (universal, 50-shot gallery): each scorer of :mod:`fpfast.gallery.openset`
fitted on the gallery vectors; threshold at 5 % false rejects of held-out known images (train
images 51-80 of each model, clean + one JPEG-75 / 0.5x-resized copy each); AUROC / OSCR / TNR at
95 % TPR on clean test (known) vs the open-set model, and at the calibrated threshold the
unknown rate of the open-set model and the false-unknown rate of known clean test images. More
rows per table are what a gallery answers (``Gallery.calibrate`` + ``attribute``, kNN; for the
whole-split gallery the calibration images are left out of it), each also with its false-unknown
rate on re-encoded known images and the unknown rate of the open-set model after JPEG 75: its
default rule (distance or ratio above its threshold) calibrated on the pooled calibration images,
on their clean third alone, or per condition (each query answered with the thresholds of its own
condition, told); and the distance threshold alone (the rule before the ratio). With ``--augment``
the first three again for the fine-tuned gallery enrolled with the copies.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import platform
import sys
import time

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.bench_accuracy import cap, positive  # noqa: E402
from benchmarks.bench_embedding import SPLITS, gallery_of, score, vectors  # noqa: E402
from fpfast.embed import Embedder, train_embedding  # noqa: E402
from fpfast.embed.universal import load_universal  # noqa: E402
from fpfast.jobs.augment import augmented_copies  # noqa: E402
from fpfast.gallery.attribution import calibrate_thresholds  # noqa: E402
from fpfast.gallery.openset import SCORERS, OpenSetScorer, auroc, oscr, tnr_at_tpr  # noqa: E402
from fpfast.ops.features import fingerprint_features  # noqa: E402
from fpfast.spec import load_spec  # noqa: E402
from fpfast.zoo import load_zoo_split  # noqa: E402

COLS = ("test", "test_jpeg90", "test_jpeg75", "resize075", "test_resize", "test_crop", "unseen_seed", "pair",
        "auroc", "oscr")
NAMES = {"test": "clean", "test_jpeg90": "JPEG 90", "test_jpeg75": "JPEG 75", "resize075": "resize 0.75×",
         "test_resize": "resize 0.5×", "test_crop": "crop", "unseen_seed": "unseen seed", "pair": "seed pair",
         "auroc": "AUROC", "oscr": "OSCR"}


def _resize(im, f):
    h, w = im.shape[:2]
    return np.asarray(Image.fromarray(im).resize((max(1, round(w * f)), max(1, round(h * f))), Image.BILINEAR))


def _jpeg(im, q):
    b = io.BytesIO()
    Image.fromarray(im).save(b, format="JPEG", quality=q)
    b.seek(0)
    return np.asarray(Image.open(b).convert("RGB"))


def calibration_images(imgs):
    """The open-set calibration set of held-out images ``imgs``: the clean images, then one JPEG-75
    copy each, then one 0.5x-resized copy each (three equal thirds, in that order)."""
    return imgs + [_jpeg(im, 75) for im in imgs] + [_resize(im, 0.5) for im in imgs]


def first_n(labels, n, offset=0):
    lab = np.array(labels)
    return np.concatenate([np.flatnonzero(lab == m)[offset:offset + n] for m in sorted(set(labels))])


def row_of(g, vecs, labels):
    r = score(g, {s: vecs[s] for s in vecs if s not in ("train", "calib")}, labels)
    for method in ("knn", "centroid"):
        a = g.attribute(vecs["resize075"], method=method, k=10)
        r[f"{method}/resize075"] = float(np.mean(np.array(a.predicted) == np.array(labels["resize075"])))
        t, o = g.attribute(vecs["test"], method=method, k=10), g.attribute(vecs["open_set"], method=method, k=10)
        r[f"{method}/oscr"] = oscr(t.distance, np.array(t.predicted) == np.array(labels["test"]), o.distance)
    return r


def augmented_train(tr_x, tr_y, k, min_size):
    """(copies, labels): ``k`` copies of every training image under ``fpfast enroll --augment``'s
    augmentations (:func:`fpfast.jobs.augment.augmented_copies`, drawn from each image's pixels)."""
    xs, ys = [], []
    for im, m in zip(tr_x, tr_y):
        xs += augmented_copies(im, k, min_size)
        ys += [m] * k
    return xs, ys


def with_augmented(spec, vecs, labels, aug_vecs, aug_labels, normalize, embedder=None):
    """A gallery of the training vectors plus their augmented copies' vectors and labels."""
    return gallery_of(spec, np.concatenate([vecs, aug_vecs]), list(labels) + list(aug_labels), normalize, embedder)


RE_ENCODED = ("test_jpeg90", "test_jpeg75", "resize075", "test_resize")
CONDITION = {"test_jpeg90": "jpeg", "test_jpeg75": "jpeg", "resize075": "resize", "test_resize": "resize",
             "open_set_jpeg75": "jpeg"}
QUERY_SETS = RE_ENCODED + ("open_set_jpeg75",)   # re-encoded queries each product row answers
PRODUCT_RULES = ("distance + ratio (default)", "default, calibrated on clean images only",
                 "default, per-condition thresholds (condition known)", "distance alone")


def product_rows(spec, gv, gy, calib, calib_y, test, test_y, unknown, frr=0.05, embedder=None, keep=None,
                 re_encoded=None, rules=None, prefix="gallery", normalize="none"):
    """What a gallery answers: ``Gallery.calibrate`` on the calibration vectors (``calib``: clean,
    JPEG-75 and 0.5x-resized thirds; the distance and ratio thresholds at ``frr``),
    ``Gallery.attribute`` (kNN, k = 10) ranked by ``open_set_score``; the same gallery calibrated
    on the clean third alone (what ``fpfast enroll``'s clean held-out split gives); calibrated on
    each third apart, each query answered with the thresholds of its own condition (clean, JPEG,
    resized: told, not detected; what a detector of the condition could reach at best); and the
    distance threshold alone (the rule before the ratio). ``keep``: the gallery vectors to enroll
    (the calibration images left out); ``re_encoded``: {split: vectors} of known test images
    re-encoded, whose false-unknown rate each row also reports (and the unknown rate of the
    open-set model's images JPEG-75 compressed, when ``re_encoded`` has them); ``rules``: the row
    names to compute (all of :data:`PRODUCT_RULES` by default); ``prefix``: the rows' names start
    with it; ``normalize``: the gallery's normaliser."""
    keep = np.ones(len(gy), bool) if keep is None else keep
    g = gallery_of(spec, gv[keep], list(np.asarray(gy)[keep]), normalize, embedder)
    names, third = list(g.models()), len(calib_y) // 3
    lab = np.array([names.index(m) for m in calib_y])
    part = {c: slice(i * third, (i + 1) * third) for i, c in enumerate(("clean", "jpeg", "resize"))}

    def calibrated(sl):
        return g.calibrate(calib[sl], list(calib_y)[sl], frr)
    out = {}
    for name in rules or PRODUCT_RULES:
        if name.startswith("distance + ratio"):
            recs = dict.fromkeys(part, calibrated(slice(None)))
        elif name.startswith("default, calibrated on clean"):
            recs = dict.fromkeys(part, calibrated(part["clean"]))
        elif name.startswith("default, per-condition"):
            recs = {c: calibrated(sl) for c, sl in part.items()}
        else:  # the rule before the ratio: the distance's quantile at frr
            recs = dict.fromkeys(part, calibrate_thresholds(g.own_model_distance(calib, list(calib_y)), lab, names,
                                                            frr, True, 5))

        def answer(v, cond="clean"):
            g.calibration["knn"] = recs[cond]
            return g.attribute(v, k=10)
        t, u = answer(test), answer(unknown)
        ks, us = t.open_set_score, u.open_set_score
        out[f"{prefix}: {name}"] = {"auroc": auroc(ks, us), "oscr": oscr(ks, np.array(t.predicted) == test_y, us),
                                   "tnr95": tnr_at_tpr(ks, us), "unknown_rate": float(u.is_unknown.mean()),
                                   "false_unknown": float(t.is_unknown.mean()),
                                   **{f"{'unknown_rate' if s.startswith('open_set') else 'false_unknown'}/{s}":
                                      float(answer(v, CONDITION[s]).is_unknown.mean())
                                      for s, v in (re_encoded or {}).items()}}
    return out


def openset_table(gv, gy, calib, test, test_y, unknown, frr=0.05):
    out = {}
    for kind in SCORERS:
        s = OpenSetScorer(kind).fit(gv, gy)
        cal, _ = s.score(calib)
        thr = np.quantile(cal, 1 - frr)
        k, kc = s.score(test)
        u, _ = s.score(unknown)
        out[kind] = {"auroc": auroc(k, u), "oscr": oscr(k, kc == test_y, u), "tnr95": tnr_at_tpr(k, u),
                     "unknown_rate": float((u > thr).mean()), "false_unknown": float((k > thr).mean())}
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("zoo")
    ap.add_argument("--out", required=True)
    ap.add_argument("--finetune-epochs", type=int, default=3)
    ap.add_argument("--skip", default="", help="comma list of rows to skip: few10,few50,full,finetune,lda,hybrid")
    ap.add_argument("--weights", default=None,
                    help="directory of a universal.safetensors + universal.json (fpfast pretrain OUT); default: shipped")
    ap.add_argument("--max-train", type=positive, help="at most this many training images per model (a seeded "
                    "random subset, >= 80: the calibration takes images 51-80); for a big zoo")
    ap.add_argument("--augment", type=int, default=0, help="also measure the whole-split rows (universal, "
                    "fine-tuned, LDA) with K augmented copies of each training image enrolled (fpfast enroll --augment K)")
    ap.add_argument("--few-augment", type=int, default=0, help="also measure the few-shot handcrafted and "
                    "universal ⊕ handcrafted galleries with K augmented copies of each image enrolled")
    ap.add_argument("--finetuned", default=None, help="a directory with universal.json + universal.safetensors as "
                    "Embedder.to_bytes writes them: use these fine-tuned weights for the fine-tune row instead of "
                    "training (e.g. a longer train_embedding(init=universal) run on the same train split; weights "
                    "trained from scratch give a 'same network from scratch' row)")
    ap.add_argument("--max-test", type=positive, help="at most this many images per model in every evaluated split")
    a = ap.parse_args(argv)
    if a.max_train is not None and a.max_train < 80:
        ap.error("--max-train must be >= 80 (the few-shot 50 gallery and images 51-80 for calibration)")
    skip = set(a.skip.split(",")) - {""}
    spec = load_spec("default")
    data = {s: cap(load_zoo_split(a.zoo, s), a.max_train if s == "train" else a.max_test)[:2]
            for s in ("train",) + SPLITS + ("open_set",) if os.path.isdir(os.path.join(a.zoo, s))}
    data["resize075"] = ([_resize(im, 0.75) for im in data["test"][0]], data["test"][1])
    if "open_set" in data:
        data["open_set_jpeg75"] = ([_jpeg(im, 75) for im in data["open_set"][0]], data["open_set"][1])
    tr_x, tr_y = data["train"]
    cal_ids = first_n(tr_y, 30, offset=50)
    cal_imgs = [tr_x[i] for i in cal_ids]
    data["calib"] = (calibration_images(cal_imgs),
                     [tr_y[i] for i in cal_ids] * 3)
    labels = {s: data[s][1] for s in data}
    emb = load_universal(a.weights) if a.weights else load_universal()
    res = {"zoo": a.zoo, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "universal": emb.identity,
           "max_train": a.max_train, "max_test": a.max_test,
           "machine": f"{platform.machine()}, {os.cpu_count()} cores (shared), torch {torch.__version__}, "
                      f"{torch.get_num_threads()} threads", "rows": {}}

    def dump():
        with open(a.out, "w") as fh:
            json.dump(res, fh, indent=1)

    aug = augmented_train(tr_x, tr_y, a.augment, spec.min_size) if a.augment else None
    few_ids = {"few10": first_n(tr_y, 10), "few50": first_n(tr_y, 50)}
    few_copies = {k: augmented_train([tr_x[i] for i in ids], [tr_y[i] for i in ids], a.few_augment, spec.min_size)
                  for k, ids in few_ids.items()} if a.few_augment else {}
    aug_name = f" + {a.augment} augmented copies each"
    t = time.perf_counter()
    uv = {s: vectors(data[s][0], lambda b: emb.embed(b, layout="hwc")) for s in data}
    hand = {}   # the handcrafted vectors of every split, computed once, when first asked for

    def handcrafted():
        if not hand:
            hand.update({s: vectors(data[s][0], lambda b: fingerprint_features(b, spec)) for s in data})
        return hand

    def appended(v):
        """An embedder's vectors followed by the handcrafted ones: what ``with_handcrafted()`` embeds
        (``tests/test_embed_hybrid.py`` holds the two equal), without running the network again."""
        return {s: np.concatenate([v[s], handcrafted()[s]], 1) for s in data}
    res["embed_seconds"] = round(time.perf_counter() - t, 1)
    for key, n in (("few10", 10), ("few50", 50), ("full", None)):
        if key in skip:
            continue
        ids = few_ids[key] if n else np.arange(len(tr_y))
        g = gallery_of(spec, uv["train"][ids], [tr_y[i] for i in ids], "none", emb)
        res["rows"][f"universal, {n or 'all'} per model, no training"] = row_of(g, uv, labels)
        if key == "few50":
            ty = np.array(labels["test"])
            res["openset_few50"] = openset_table(uv["train"][ids], np.array([tr_y[i] for i in ids]), uv["calib"],
                                                 uv["test"], ty, uv["open_set"])
            res["openset_few50"].update(product_rows(spec, uv["train"][ids], [tr_y[i] for i in ids], uv["calib"],
                                                     labels["calib"], uv["test"], ty, uv["open_set"], embedder=emb,
                                                     re_encoded={s: uv[s] for s in QUERY_SETS}))
        if key == "full" and aug:
            g = with_augmented(spec, uv["train"], tr_y, vectors(aug[0], lambda b: emb.embed(b, layout="hwc")), aug[1],
                               "none", emb)
            res["rows"]["universal, all per model, no training" + aug_name] = row_of(g, uv, labels)
        print(key, json.dumps(res["rows"].get(f"universal, {n or 'all'} per model, no training")), flush=True)
        dump()
    if "finetune" not in skip:
        t = time.perf_counter()
        if a.finetuned:
            with open(os.path.join(a.finetuned, "universal.json"), "rb") as c, \
                    open(os.path.join(a.finetuned, "universal.safetensors"), "rb") as w:
                ft = Embedder.from_bytes(c.read(), w.read())
            init = ft.config["training"].get("init")
            if init not in (emb.identity, None):
                raise SystemExit(f"--finetuned {a.finetuned} was fine-tuned from {init[:16]}, not {emb.identity[:16]}")
            a.finetune_epochs = ft.config["training"]["epochs"]
            row_name = f"{'universal + fine-tune' if init else 'same network from scratch'} ({a.finetune_epochs} epochs)"
        else:
            ft, hist = train_embedding(tr_x, tr_y, spec, init=emb, epochs=a.finetune_epochs,
                                       log=lambda r: print(json.dumps(r), flush=True))
            row_name = f"universal + fine-tune ({a.finetune_epochs} epochs)"
        secs = time.perf_counter() - t
        fv = {s: vectors(data[s][0], lambda b: ft.embed(b, layout="hwc")) for s in data}
        g = gallery_of(spec, fv["train"], tr_y, "none", ft)
        r = row_of(g, fv, labels)
        r.update(train_seconds=None if a.finetuned else round(secs, 1), epochs=a.finetune_epochs, identity=ft.identity,
                 n_images=ft.config["training"]["n_images"])
        res["rows"][row_name] = r
        if "hybrid" not in skip:  # the fine-tuned network followed by the handcrafted vector, LDA
            fh = appended(fv)
            res["rows"][row_name + " ⊕ handcrafted + LDA"] = row_of(
                gallery_of(spec, fh["train"], tr_y, "lda", ft.with_handcrafted()), fh, labels)
        if aug:
            fa = vectors(aug[0], lambda b: ft.embed(b, layout="hwc"))
            g = with_augmented(spec, fv["train"], tr_y, fa, aug[1], "none", ft)
            res["rows"][row_name + aug_name] = row_of(g, fv, labels)
        res["openset_finetuned_full"] = openset_table(fv["train"], np.array(tr_y), fv["calib"], fv["test"],
                                                      np.array(labels["test"]), fv["open_set"])
        keep = ~np.isin(np.arange(len(tr_y)), cal_ids)
        res["openset_finetuned_full"].update(product_rows(spec, fv["train"], tr_y, fv["calib"], labels["calib"],
                                                          fv["test"], np.array(labels["test"]), fv["open_set"],
                                                          embedder=ft, keep=keep,
                                                          re_encoded={s: fv[s] for s in QUERY_SETS}))
        if aug:  # the same gallery enrolled with --augment (the calibration images' copies left out too)
            res["openset_finetuned_full"].update(product_rows(
                spec, np.concatenate([fv["train"], fa]), list(tr_y) + aug[1], fv["calib"], labels["calib"], fv["test"],
                np.array(labels["test"]), fv["open_set"], embedder=ft, keep=np.r_[keep, np.repeat(keep, a.augment)],
                re_encoded={s: fv[s] for s in QUERY_SETS}, rules=PRODUCT_RULES[:3],
                prefix=f"gallery{aug_name}"))
        dump()
    if "lda" not in skip:
        hv = handcrafted()
        g = gallery_of(spec, hv["train"], tr_y, "lda")
        res["rows"]["handcrafted + LDA"] = row_of(g, hv, labels)
        for key, n in (("few10", 10), ("few50", 50)):  # the few-shot comparison at equal data: the same images
            if key in skip:
                continue
            for norm in ("standardize", "lda"):
                name = f"handcrafted + {'LDA' if norm == 'lda' else norm}, {n} per model"
                few_shot_rows(res, spec, hv, labels, few_ids[key], norm, name, key,
                              lambda b: fingerprint_features(b, spec), copies=few_copies.get(key))
        if aug:
            g = with_augmented(spec, hv["train"], tr_y, vectors(aug[0], lambda b: fingerprint_features(b, spec)),
                               aug[1], "lda")
            res["rows"]["handcrafted + LDA" + aug_name] = row_of(g, hv, labels)
        dump()
    if "hybrid" not in skip:
        hybrid_rows(res, spec, emb.with_handcrafted(), appended(uv), labels, skip, few_ids, few_copies)
        dump()
    print(json.dumps(res, indent=1))


def hybrid_rows(res, spec, hyb, yv, labels, skip, few_ids, few_copies):
    """``fpfast enroll --spec universal+handcrafted``: the universal embedding followed by the
    handcrafted vector (``hyb``; ``yv``: its vectors of every split), LDA-normalised, at 10 / 50 /
    all images per model, no training (:func:`few_shot_rows`; the handcrafted few-shot galleries'
    are in the ``lda`` block)."""
    def embed(b):
        return hyb.embed(b, layout="hwc")
    for key, n in (("few10", 10), ("few50", 50), ("full", None)):
        if key in skip:
            continue
        name = f"universal ⊕ handcrafted + LDA, {n or 'all'} per model, no training"
        if n:
            few_shot_rows(res, spec, yv, labels, few_ids[key], "lda", name, key, embed, hyb, few_copies.get(key))
        else:
            res["rows"][name] = row_of(gallery_of(spec, yv["train"], labels["train"], "lda", hyb), yv, labels)


def few_shot_rows(res, spec, v, labels, ids, normalize, name, key, embed, embedder=None, copies=None):
    """Row ``name`` of the gallery of vectors ``v["train"][ids]`` and what it answers
    (:func:`product_rows`, in ``res["openset_<key>_galleries"]``); with ``copies`` ((images,
    labels) of ``fpfast enroll --augment`` copies of those images, embedded by ``embed``) the same
    again with the copies enrolled too."""
    gy = [labels["train"][i] for i in ids]
    variants = [("", v["train"][ids], gy)]
    if copies:
        variants.append((f" + {len(copies[1]) // len(ids)} copies each",
                         np.concatenate([v["train"][ids], vectors(copies[0], embed)]), gy + list(copies[1])))
    for suffix, gv, gl in variants:
        res["rows"][name + suffix] = row_of(gallery_of(spec, gv, gl, normalize, embedder), v, labels)
        res.setdefault(f"openset_{key}_galleries", {}).update(product_rows(
            spec, gv, gl, v["calib"], labels["calib"], v["test"], np.array(labels["test"]), v["open_set"],
            embedder=embedder, normalize=normalize, re_encoded={s: v[s] for s in QUERY_SETS}, prefix=name + suffix))


def markdown(res: dict) -> str:
    lines = ["| row | attribution | " + " | ".join(NAMES[c] for c in COLS) + " |", "|---|---|" + "---:|" * len(COLS)]
    for name, row in res["rows"].items():
        for method in ("knn", "centroid"):
            cells = [f"{row[f'{method}/{c}']:.3f}" if f"{method}/{c}" in row else "—" for c in COLS]
            lines.append(f"| {name if method == 'knn' else ''} | {method} | " + " | ".join(cells) + " |")
    for key in ("openset_few50", "openset_few10_galleries", "openset_few50_galleries", "openset_finetuned_full"):
        if key in res:
            lines += ["", f"{key}:", "", "| scorer | AUROC | OSCR | TNR@95%TPR | unknown rate (open-set model) | "
                      "false-unknown rate (known, clean) | false-unknown, known "
                      + " / ".join(NAMES[s] for s in RE_ENCODED) + " | unknown rate, open-set model JPEG 75 |",
                      "|---|---:|---:|---:|---:|---:|---:|---:|"]
            for kind, m in res[key].items():
                re_enc = " / ".join(f"{m[f'false_unknown/{s}']:.3f}" for s in RE_ENCODED) \
                    if f"false_unknown/{RE_ENCODED[0]}" in m else "—"
                uj = m.get("unknown_rate/open_set_jpeg75")
                lines.append(f"| {kind} | {m['auroc']:.3f} | {m['oscr']:.3f} | {m['tnr95']:.3f} | "
                             f"{m['unknown_rate']:.3f} | {m['false_unknown']:.3f} | {re_enc} | "
                             f"{'—' if uj is None else f'{uj:.3f}'} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--markdown":
        print(markdown(json.load(open(sys.argv[2]))))
    else:
        main()
