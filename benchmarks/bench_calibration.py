"""Open-set thresholds of an embedding gallery calibrated on clean vs augmented held-out images.

    python benchmarks/bench_calibration.py /tmp/zoo_small --epochs 100 --md benchmarks/results/embedding.md

The product path (``fpfast train``: 20 % of each model's train images held out, thresholds at
FRR 0.05 for the kNN statistic), trained twice with the same seed (same embedding: CPU training
is deterministic) and calibrated once on the clean held-out images, once on those plus one
augmented copy each. Per split: the fraction of images answered with the right model (an
'unknown' answer counts as wrong) and the fraction answered 'unknown'; for ``open_set`` (a model
outside the gallery) 'unknown' is the right answer.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.bench_embedding import SPLITS, vectors  # noqa: E402
from fpfast.jobs.options import StreamOptions  # noqa: E402
from fpfast.jobs.train import train_gallery  # noqa: E402
from fpfast.spec import load_spec  # noqa: E402
from fpfast.gallery import Gallery  # noqa: E402
from fpfast.zoo import load_zoo_split  # noqa: E402


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("zoo")
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--md")
    a = ap.parse_args(argv)
    opts = StreamOptions(device="cpu", quiet=True)
    data = {s: load_zoo_split(a.zoo, s)[:2] for s in SPLITS + ("open_set",)
            if os.path.isdir(os.path.join(a.zoo, s))}
    table = {}
    for how in ("clean", "augmented"):
        tmp = tempfile.mkdtemp(prefix=f"calib_{how}_")
        g = Gallery.create(os.path.join(tmp, "g"), load_spec(None))
        g, info = train_gallery(g, os.path.join(a.zoo, "train"), opts, epochs=a.epochs, calibrate_on=how)
        emb = g.embedder()
        print(how, info["identity"][:16], flush=True)
        for split, (imgs, labels) in data.items():
            v = vectors(imgs, lambda b: emb.embed(b, layout="hwc"))
            ans = np.array(g.attribute(v, method="knn", k=10).model)
            truth = np.array(labels)
            table.setdefault(split, {})[how] = (float(np.mean(ans == truth)), float(np.mean(ans == "unknown")))
    lines = [f"\n### Open-set thresholds: clean vs augmented calibration ({os.path.basename(os.path.normpath(a.zoo))}, "
             f"{info['history'][-1]['epochs']} epochs, kNN, FRR 0.05)\n",
             "Cells: right answer / answered 'unknown' (for `open_set`, 'unknown' is the right answer).\n",
             "| split | clean calibration | augmented calibration |", "|---|---:|---:|"]
    for split, row in table.items():
        lines.append(f"| {split} | " + " | ".join(f"{row[h][0]:.3f} / {row[h][1]:.3f}" for h in ("clean", "augmented"))
                     + " |")
    text = "\n".join(lines) + "\n"
    print(text)
    if a.md:
        with open(a.md, "a", encoding="utf-8") as fh:
            fh.write(text)


if __name__ == "__main__":
    main()
