"""Attribution accuracy of fpfast's product path on a built GM-zoo: the gallery (kNN and centroid,
standardised or LDA) enrolled from the zoo's train split, queried with every test split.

    python benchmarks/bench_gallery_accuracy.py ZOO_DIR [--spec default] [--out benchmarks/results]

Appends a section to ``accuracy_gallery.md`` (rows: method; columns: split accuracy, open-set AUROC).
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from fpfast.jobs.specs import resolve_spec  # noqa: E402
from fpfast.gallery import Gallery, auroc  # noqa: E402
from fpfast.ops.features import fingerprint_features  # noqa: E402
from fpfast.zoo import load_zoo_split  # noqa: E402

SPLITS = ("test", "test_jpeg90", "test_jpeg75", "test_resize", "test_crop", "unseen_seed")


def vectors(root: str, split: str, spec) -> tuple[np.ndarray, list[str]]:
    imgs, labels, _ = load_zoo_split(root, split)
    out = []
    for i in range(0, len(imgs), 256):
        batch = torch.from_numpy(np.stack(imgs[i:i + 256]))
        out.append(fingerprint_features(batch, spec).numpy())
    return np.concatenate(out), labels


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("zoo")
    ap.add_argument("--spec", default="default")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"))
    ap.add_argument("--note", default="")
    a = ap.parse_args(argv)
    spec = resolve_spec(a.spec)
    train, train_labels = vectors(a.zoo, "train", spec)
    data = {s: vectors(a.zoo, s, spec) for s in SPLITS + ("open_set",)}
    rows = []
    for norm in ("standardize", "lda"):
        g = Gallery(os.path.join(a.out, ".tmp-gallery"), spec, normalize=norm)  # in memory, never saved
        for m in sorted(set(train_labels)):
            g.add(m, train[[i for i, lab in enumerate(train_labels) if lab == m]])
        g.fit(norm)
        for method in ("knn", "centroid"):
            accs = []
            for s in SPLITS:
                x, y = data[s]
                pred = g.attribute(x, method=method, k=10).predicted
                accs.append(float(np.mean([p == t for p, t in zip(pred, y)])))
            known = g.attribute(data["test"][0], method=method, k=10).distance
            unknown = g.attribute(data["open_set"][0], method=method, k=10).distance
            au = auroc(np.concatenate([known, unknown]), np.r_[np.zeros(len(known)), np.ones(len(unknown))].astype(bool))
            rows.append((f"fpfast gallery, {method}, {norm}", accs, au))
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [f"\n## {os.path.basename(os.path.normpath(a.zoo))}: spec {a.spec} ({spec.dim} dims), {now}",
             f"\nMachine: {platform.machine()}, {os.cpu_count()} CPUs. Train split enrolled; best enrolled model "
             f"(no 'unknown' threshold) against each split's expected label; AUROC: distance to the nearest "
             f"known model, clean test vs open_set. {a.note}\n",
             "| method | " + " | ".join(SPLITS) + " | open-set AUROC |",
             "|---|" + "---:|" * (len(SPLITS) + 1)]
    for name, accs, au in rows:
        lines.append(f"| {name} | " + " | ".join(f"{v:.3f}" for v in accs) + f" | {au:.3f} |")
    path = os.path.join(a.out, "accuracy_gallery.md")
    new = not os.path.exists(path)
    with open(path, "a", encoding="utf-8") as fh:
        if new:
            fh.write("# Attribution accuracy of the gallery (the product path) on the GM-zoo\n")
        fh.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
