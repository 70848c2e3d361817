"""Cross-fitted open-set thresholds (``fpfast.gallery.crossfit``) against the held-out images'
alone, on training images only (issue 14).

    python benchmarks/bench_crossfit.py ZOO --n 10 --draws 20 [--spec universal+handcrafted] --out crossfit.json

``--draws`` galleries enrolled by ``fpfast enroll`` (as a user runs it: 20 % held out, calibrated
on the held-out images and their processed copies, views), the d-th from training images
d*n .. (d+1)*n - 1 of each model; each recalibrated twice, with and without the enrolled samples'
cross-fitted statistics; validation queries: training images 200-299 of each model (never
enrolled; clean PNGs, told the gallery as such). Per gallery and rule: accuracy (`unknown` counted
wrong) and the false `unknown` rate; their mean, spread and range over the galleries.
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

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.bench_unknown import first_images  # noqa: E402
from fpfast.gallery import Gallery  # noqa: E402
from fpfast.jobs.mappers import host_vectors, vector_mapper  # noqa: E402
from fpfast.jobs.options import StreamOptions  # noqa: E402
from fpfast.prepare import map_images  # noqa: E402
from fpfast.zoo import load_zoo_split  # noqa: E402

VALIDATION = slice(200, 300)   # each model's training images used as queries (the draws stay below 200)


def answer(g, v, want, crossfitted: bool) -> tuple[float, float]:
    """(accuracy, `unknown` rate) of ``g`` recalibrated with or without cross-fitted statistics."""
    g.recalibrate(0.05, cross_fit=crossfitted)
    a = g.attribute(v, k=None, sides=[g.spec.size] * len(v), jpeg=np.zeros(len(v)))
    return float(np.mean(np.array(a.model) == want)), float(a.is_unknown.mean())


def summary(rows: list, key: str) -> dict:
    acc, unk = np.array([r[key][0] for r in rows]), np.array([r[key][1] for r in rows])
    sd = (lambda x: float(x.std(ddof=1))) if len(rows) > 1 else (lambda x: None)
    return {"accuracy": float(acc.mean()), "accuracy_sd": sd(acc), "unknown": float(unk.mean()),
            "unknown_sd": sd(unk), "unknown_min": float(unk.min()), "unknown_max": float(unk.max())}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("zoo")
    ap.add_argument("--n", type=int, default=10, help="training images per model per gallery (20 %% held out)")
    ap.add_argument("--draws", type=int, default=20)
    ap.add_argument("--spec", default="universal+handcrafted")
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    if a.n * a.draws > VALIDATION.start:
        ap.error(f"--n x --draws must stay below {VALIDATION.start} (the validation images start there)")
    opts = StreamOptions(device="cpu", quiet=True)
    imgs, labels, _ = load_zoo_split(a.zoo, "train")
    lab = np.array(labels)
    sel = np.concatenate([np.flatnonzero(lab == m)[VALIDATION] for m in sorted(set(labels))])
    want, v, rows = lab[sel], None, []
    for d in range(a.draws):
        with tempfile.TemporaryDirectory() as tmp:
            train = first_images(os.path.join(a.zoo, "train"), os.path.join(tmp, "train"), a.n, offset=d * a.n)
            subprocess.run([sys.executable, "-m", "fpfast", "enroll", f"{tmp}/g", "--from-folders", train,
                            "--spec", a.spec, "-q"], check=True)
            g = Gallery.load(f"{tmp}/g")
            if v is None:
                v = map_images([imgs[i] for i in sel], host_vectors(vector_mapper(g.spec, opts, g.embedder())))
            rows.append({"held out": answer(g, v, want, False), "cross-fitted": answer(g, v, want, True)})
        print(d, rows[-1], flush=True)
    res = {"zoo": a.zoo, "n": a.n, "draws": a.draws, "spec": a.spec, "queries": int(len(sel)),
           "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "per_draw": rows,
           "mean": {k: summary(rows, k) for k in ("held out", "cross-fitted")}}
    for k, s in res["mean"].items():
        print(f"{k:13s} accuracy {s['accuracy']:.3f}  false unknown {s['unknown']:.3f} ± {s['unknown_sd'] or 0:.3f} "
              f"({s['unknown_min']:.3f}-{s['unknown_max']:.3f})")
    with open(a.out, "w") as f:
        json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
