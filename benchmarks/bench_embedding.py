"""Learned embedding vs handcrafted fingerprint on a built GM-zoo (issue 8).

    python benchmarks/bench_embedding.py /tmp/zoo_small --epochs 40 --out /tmp/emb_small.json \\
        --md benchmarks/results/embedding.md --title "small zoo, 40 epochs"

Rows: handcrafted + standardize, handcrafted + LDA (the gallery's two normalisers on the default
spec), learned embedding, learned + handcrafted (the network with the handcrafted vector
concatenated before its head). Every gallery holds the zoo's whole ``train`` split (no hold-out:
this measures the vector space, not the threshold); the learned rows train on that split with
the library's defaults plus ``--epochs``/``--patch``. Per split, closed-set accuracy of the kNN
vote (k = 10) and of the nearest centroid against the split's expected label (``unseen_seed``:
the gallery model of the same architecture). ``pair``: of the clean test images of the two-seed
pair (``ae_tconv`` / ``ae_tconv_seed1``), the fraction given to the right seed. ``AUROC``: distance
to the nearest known model (kNN: nearest sample; centroid: nearest centroid), clean test (known)
vs the ``open_set`` model (unknown). Plus training time and embedding images/s on this machine.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from fpfast.embed import train_embedding  # noqa: E402
from fpfast.gallery import Gallery, auroc  # noqa: E402
from fpfast.ops.features import fingerprint_features  # noqa: E402
from fpfast.spec import load_spec  # noqa: E402
from fpfast.prepare import map_images  # noqa: E402
from fpfast.zoo import load_zoo_split  # noqa: E402

SPLITS = ("test", "test_jpeg90", "test_jpeg75", "test_resize", "test_crop", "unseen_seed")
PAIR = ("ae_tconv", "ae_tconv_seed1")
VARIANTS = {"hand": "handcrafted + standardize", "lda": "handcrafted + LDA",
            "learned": "learned embedding", "learned_hc": "learned + handcrafted"}


vectors = map_images  # (images, fn) -> fn's rows in the images' order


def score(g: Gallery, vecs: dict, labels: dict) -> dict:
    row = {}
    for method in ("knn", "centroid"):
        att = {split: g.attribute(vecs[split], method=method, k=10) for split in SPLITS + ("open_set",)
               if split in vecs}  # one lookup per split, reused below
        for split in SPLITS:
            if split in att:
                pred, truth = np.array(att[split].predicted), np.array(labels[split])
                row[f"{method}/{split}"] = float(np.mean(pred == truth))
                if method == "knn":  # the five most frequent confusions, for the notes
                    pairs, counts = np.unique(np.stack([truth, pred], 1)[pred != truth], axis=0, return_counts=True)
                    row[f"confusions/{split}"] = [f"{t}->{p}: {c}" for (t, p), c in
                                                  sorted(zip(map(tuple, pairs), counts), key=lambda x: -x[1])[:5]]
        pred, t = np.array(att["test"].predicted), np.array(labels["test"])
        in_pair = np.isin(t, PAIR)
        if in_pair.any():
            row[f"{method}/pair"] = float(np.mean(pred[in_pair] == t[in_pair]))
        if "open_set" in att:
            known, unknown = att["test"].distance, att["open_set"].distance
            row[f"{method}/auroc"] = auroc(np.r_[known, unknown],
                                           np.r_[np.zeros(len(known)), np.ones(len(unknown))].astype(bool))
    return row


def gallery_of(spec, train_vecs: np.ndarray, train_labels: list[str], normalize: str, embedder=None) -> Gallery:
    g = Gallery(os.path.join(tempfile.gettempdir(), "bench-embedding-gallery"), spec, normalize=normalize)
    if embedder is not None:
        g = g.with_embedding(embedder)
    lab = np.array(train_labels)
    for m in sorted(set(train_labels)):
        g.add(m, train_vecs[lab == m])
    g.fit(normalize)
    return g


def throughput(emb, size: int, n: int = 256, reps: int = 5) -> float:
    x = torch.randint(0, 256, (n, size, size, 3), dtype=torch.uint8)
    emb.embed(x[:32], layout="hwc")
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        emb.embed(x, layout="hwc")
        times.append(time.perf_counter() - t)
    return n / float(np.median(times))


def markdown(res: dict, title: str) -> str:
    cols = [s for s in SPLITS] + ["pair", "auroc"]
    names = {"test": "clean", "test_jpeg90": "JPEG 90", "test_jpeg75": "JPEG 75", "test_resize": "resize 0.5×",
             "test_crop": "crop", "unseen_seed": "unseen seed", "pair": "seed pair", "auroc": "AUROC"}
    lines = [f"\n## {title}\n" if title else "\n", res["protocol"] + "\n",
             "| row | attribution | " + " | ".join(names[c] for c in cols) + " |",
             "|---|---|" + "---:|" * len(cols)]
    for name, row in res["rows"].items():
        for method in ("knn", "centroid"):
            cells = [f"{row[f'{method}/{c}']:.3f}" if f"{method}/{c}" in row else "—" for c in cols]
            lines.append(f"| {name if method == 'knn' else ''} | {method} | " + " | ".join(cells) + " |")
    extra = [f"{n}: trained {r['train_seconds']:.0f} s ({r['epochs']} epochs, final augmented train acc "
             f"{r['final_train_acc']:.3f}), embedding {r['cpu_images_per_s']} images/s on CPU"
             for n, r in res["rows"].items() if "train_seconds" in r]
    return "\n".join(lines + [""] + [f"- {e}" for e in extra]) + "\n"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("zoo")
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--patch", type=int, default=0, help="training patch size (0: whole images)")
    ap.add_argument("--widths", default="", help="e.g. 32,64,128 (default: the library's)")
    ap.add_argument("--variants", default="hand,lda,learned,learned_hc")
    ap.add_argument("--opt", action="append", default=[], metavar="KEY=VALUE",
                    help="training option override (fpfast.embed.DEFAULT_TRAIN), e.g. --opt margin=0.35")
    ap.add_argument("--out", required=True, help="JSON results (rewritten after every row)")
    ap.add_argument("--md", help="append a Markdown table to this file")
    ap.add_argument("--save", help="directory to keep each trained embedding in (config JSON + safetensors)")
    ap.add_argument("--title", default="")
    a = ap.parse_args(argv)
    spec = load_spec("default")
    data = {}
    for split in ("train",) + SPLITS + ("open_set",):
        if os.path.isdir(os.path.join(a.zoo, split)):
            data[split] = load_zoo_split(a.zoo, split)[:2]
    train_imgs, train_labels = data["train"]
    labels = {s: data[s][1] for s in data}
    res = {"zoo": a.zoo, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
           "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
                      f"{torch.get_num_threads()} threads", "rows": {},
           "protocol": (f"Zoo `{os.path.basename(os.path.normpath(a.zoo))}`: {len(train_imgs)} training images, "
                        f"{len(labels['test'])} clean test images; default spec; k = 10. "
                        f"Machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}.")}
    hand = {s: vectors(data[s][0], lambda b: fingerprint_features(b, spec)) for s in data}
    overrides = {k: float(v) for k, v in (o.split("=", 1) for o in a.opt)}
    arch = {"widths": [int(w) for w in a.widths.split(",")]} if a.widths else None
    if arch:
        arch["blocks"] = [1] * len(arch["widths"])
    for key in a.variants.split(","):
        name = VARIANTS[key]
        if key in ("hand", "lda"):
            g = gallery_of(spec, hand["train"], train_labels, "standardize" if key == "hand" else "lda")
            res["rows"][name] = score(g, {s: hand[s] for s in hand if s != "train"}, labels)
        else:
            t = time.perf_counter()
            emb, hist = train_embedding(train_imgs, train_labels, spec, arch=arch, handcrafted=key == "learned_hc",
                                        epochs=a.epochs, patch=a.patch, **overrides,
                                        log=lambda r: print(json.dumps(r), flush=True))
            secs = time.perf_counter() - t
            if a.save:
                os.makedirs(a.save, exist_ok=True)
                for ext, blob in zip(("json", "safetensors"), emb.to_bytes()):
                    with open(os.path.join(a.save, f"{key}.{ext}"), "wb") as fh:
                        fh.write(blob)
            ev = {s: vectors(data[s][0], lambda b: emb.embed(b, layout="hwc")) for s in data}
            g = gallery_of(spec, ev["train"], train_labels, "none", emb)
            row = score(g, {s: ev[s] for s in ev if s != "train"}, labels)
            row.update(train_seconds=round(secs, 1), epochs=a.epochs, patch=a.patch, arch=emb.arch, options=overrides,
                       final_train_acc=hist[-1]["train_acc"],
                       cpu_images_per_s={str(s): round(throughput(emb, s), 1) for s in (32, 64)})
            res["rows"][name] = row
        print(name, json.dumps(res["rows"][name]), flush=True)
        with open(a.out, "w") as fh:
            json.dump(res, fh, indent=1)
    if a.md:
        with open(a.md, "a", encoding="utf-8") as fh:
            fh.write(markdown(res, a.title))


if __name__ == "__main__":
    main()
