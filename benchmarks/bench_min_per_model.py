"""Per-model open-set thresholds from few held-out images: the old floor (5 per model) against the
conformal one (``attribution.conformal_min``: 39 at FRR 0.05), on `fpfast enroll` galleries of
the first N training images per model (issue 14).

    python benchmarks/bench_min_per_model.py ZOO --out results/unknown_min_per_model.json [--n 10,50,200]

Each gallery is enrolled as a user does (`fpfast enroll`, 20 % held out, with processed copies),
then recalibrated with each floor and answered as in ``bench_unknown.py`` (200 test images per
model, the gallery's default vote).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.bench_unknown import first_images, queries, rates, zoo_splits  # noqa: E402
from fpfast.gallery import Gallery  # noqa: E402
from fpfast.jobs.options import StreamOptions  # noqa: E402

SPLITS = ("test_jpeg90", "test_jpeg75", "resize075", "test_resize", "test_crop")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("zoo")
    ap.add_argument("--n", default="10,50,200")
    ap.add_argument("--specs", default="default,universal+handcrafted")
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    opts = StreamOptions(device="cpu", quiet=True)
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in (int(x) for x in a.n.split(",")):
            train = first_images(os.path.join(a.zoo, "train"), os.path.join(tmp, f"train{n}"), n)
            for spec in a.specs.split(","):
                gdir = os.path.join(tmp, f"g{n}-{spec}".replace("+", "_"))
                subprocess.run([sys.executable, "-m", "fpfast", "enroll", gdir, "--from-folders", train, "-q"]
                               + ([] if spec == "default" else ["--spec", spec]), check=True, capture_output=True)
                g = Gallery.load(gdir)
                q = queries(g.spec, g.embedder(), zoo_splits(a.zoo, 200), opts)
                for floor in (5, 39):
                    g.recalibrate(0.05, min_per_model=floor)
                    r = rates(g, q, {}, None)
                    out[f"{n}/{spec}/min_per_model={floor}"] = r
                    print(f"{n} per model, {spec}, floor {floor}: k {r['k']} AUROC {r['auroc']:.3f}, unknown: "
                          f"unseen model {r['open_set']['unknown']:.3f}, clean {r['test']['unknown']:.3f}, "
                          + ", ".join(f"{s} {r[s]['unknown']:.3f}" for s in SPLITS)
                          + f"; clean accuracy {r['test']['accuracy']:.3f}", flush=True)
                with open(a.out, "w") as f:
                    json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
