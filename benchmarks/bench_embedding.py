"""Learned embedding vs handcrafted gallery on a built GM-zoo (issue 8).

    python benchmarks/bench_embedding.py /tmp/zt --epochs 60 --out benchmarks/results/embedding_tiny.json

Both galleries are built from ``ROOT/train`` exactly as the CLI does (``enroll --from-folders``,
20 % held out for calibration; ``train --from-folders`` for the embedding, which trains on the
other 80 %), then every evaluation split is attributed through the same pipeline as
``fpfast attribute``. Reported per split: closed-set accuracy of the kNN vote (k=10) and of the
nearest centroid (``predicted``: best enrolled model, no rejection), and the accuracy with the
open-set threshold calibrated at FRR 0.05 (``model``: 'unknown' counts as wrong). Plus images/s
of embedding inference on CPU (batch 256, after warm-up, median of 5).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time

import numpy as np
import torch

from fpfast import workflows as wf
from fpfast.gallery import Gallery

SPLITS = ("test", "test_jpeg90", "test_jpeg75", "test_resize", "test_crop", "unseen_seed")


def _label_of(root: str, split: str, folder: str) -> str:
    with open(os.path.join(root, split, folder, "model.json")) as fh:
        return json.load(fh).get("label") or "unknown"


def evaluate(g: Gallery, root: str, opts) -> dict:
    out = {}
    for split in SPLITS:
        if not os.path.isdir(os.path.join(root, split)):
            continue
        truth, vecs = [], []
        for folder, path in wf.model_folders(os.path.join(root, split)).items():
            fp = wf.gallery_fingerprints(g, [path], opts)
            truth += [_label_of(root, split, folder)] * len(fp.keys)
            vecs.append(fp.vectors)
        v, t = np.concatenate(vecs), np.array(truth)
        row = {"n": int(len(t))}
        for method in ("knn", "centroid"):
            a = g.attribute(v, method=method, k=10)
            row[f"{method}_closed"] = float(np.mean(np.array(a.predicted) == t))
            row[f"{method}_open"] = float(np.mean(np.array(a.model) == t))
        out[split] = row
    return out


def throughput(emb, size: int, n: int = 256, reps: int = 5) -> float:
    x = torch.randint(0, 256, (n, size, size, 3), dtype=torch.uint8)
    emb.embed(x[:32], layout="hwc")
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        emb.embed(x, layout="hwc")
        times.append(time.perf_counter() - t)
    return n / float(np.median(times))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("root")
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--handcrafted", action="store_true", help="also the embedding + handcrafted row")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    opts = wf.StreamOptions(device="cpu", quiet=True)
    tmp = tempfile.mkdtemp(prefix="bench_embed_")
    res = {"root": args.root, "epochs": args.epochs, "date": time.strftime("%Y-%m-%d"),
           "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores (shared), "
                      f"torch {torch.__version__}, {torch.get_num_threads()} threads",
           "rows": {}}
    g = wf.open_or_create(os.path.join(tmp, "hand"), None, "standardize", "flat")
    for m, folder in wf.model_folders(os.path.join(args.root, "train")).items():
        wf.enroll(g, m, wf.fingerprint_sources([folder], g.spec, opts))
    wf.finish_enrollment(g, None, 0.05)
    res["rows"]["handcrafted + standardize"] = evaluate(g, args.root, opts)
    variants = [("learned embedding", False)] + ([("learned + handcrafted", True)] if args.handcrafted else [])
    for name, hc in variants:
        gpath = os.path.join(tmp, name.replace(" ", "_").replace("+", ""))
        shutil.copytree(g.path, gpath)
        t = time.perf_counter()
        ge, info = wf.train_gallery(Gallery.load(gpath), os.path.join(args.root, "train"), opts,
                                    epochs=args.epochs, handcrafted=hc, frr=0.05)
        row = evaluate(ge, args.root, opts)
        row["train_seconds"] = round(time.perf_counter() - t, 1)
        row["train_images"] = info["trained_on"]
        row["final_train_acc"] = info["history"][-1]["train_acc"]
        emb = ge.embedder()
        row["cpu_images_per_s"] = {str(s): round(throughput(emb, s), 1) for s in (32, 64)}
        res["rows"][name] = row
        print(name, json.dumps(row), flush=True)
    print("handcrafted", json.dumps(res["rows"]["handcrafted + standardize"]), flush=True)
    with open(args.out, "w") as fh:
        json.dump(res, fh, indent=1)
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
