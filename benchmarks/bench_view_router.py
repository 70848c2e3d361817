"""What sends a query to a gallery view (issue 14: `embedding.md`, "Issue 14, eighth session", items
3-5), on a product gallery: `fpfast enroll` (in process, the default spec and views) of the first
N training images per model.

    python benchmarks/bench_view_router.py ZOO --n 20 --out results/view_router_small_20.json

Per split of the zoo (bench_unknown's, 100 test images per model), the accuracy (an `unknown`
answer counts wrong) of the gallery alone (router off), routed by the detectors alone (no file
type given), routed with the file type (the product), and routed by the detectors then kept only
where the view's calibrated open-set score is below the gallery's (arbitration); and the share of
each split the router sends to each view with its detectors refitted on the whole vector, its
handcrafted half and its universal half.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.bench_unknown import first_images, queries, zoo_splits  # noqa: E402
from fpfast.gallery import Gallery  # noqa: E402
from fpfast.gallery.views import VIEWS, Router, copy_name  # noqa: E402
from fpfast.jobs.options import StreamOptions  # noqa: E402
from fpfast.spec import load_spec  # noqa: E402


def accuracy(a, want):
    return float(np.mean(np.array(a.model) == np.array(want)))


def main():
    from click.testing import CliRunner

    from fpfast.cli import cli
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("zoo")
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    res = {"zoo": a.zoo, "n_per_model": a.n, "accuracy": {}, "routed_share": {}}
    with tempfile.TemporaryDirectory() as tmp:
        train = first_images(os.path.join(a.zoo, "train"), os.path.join(tmp, "train"), a.n)
        r = CliRunner().invoke(cli, ["enroll", os.path.join(tmp, "g"), "--from-folders", train, "-q"],
                               catch_exceptions=False)
        assert r.exit_code == 0, r.output
        g = Gallery.load(os.path.join(tmp, "g"))
    q = queries(g.spec, g.embedder(), zoo_splits(a.zoo, 100), StreamOptions(device="cpu", quiet=True))
    router = g.router
    for split, (v, want, sides, jpeg, _) in q.items():
        g.router = None
        alone = g.attribute(v, sides=sides)
        g.router = router
        detector, product = g.attribute(v, sides=sides), g.attribute(v, sides=sides, jpeg=jpeg)
        routed = g.route(v, sides) != ""
        keep = routed & (detector.open_set_score <= alone.open_set_score)
        arbitrated = np.where(keep, np.array(detector.model, dtype=object), np.array(alone.model, dtype=object))
        res["accuracy"][split] = {"gallery alone": accuracy(alone, want), "detectors": accuracy(detector, want),
                                  "detectors + file type": accuracy(product, want),
                                  "detectors, arbitrated": float(np.mean(arbitrated == np.array(want)))}
    off = g.spec.dim - load_spec("default").dim
    kind = [copy_name(k) for k in g.hold_keys]
    inputs = {"whole vector": slice(0, g.spec.dim)}
    if off > 0:
        inputs.update({"handcrafted half": slice(off, g.spec.dim), "universal half": slice(0, off)})
    for name, cols in inputs.items():
        r = Router.fit(g._hold_vectors[:, cols], kind)
        res["routed_share"][name] = {}
        for split, (v, want, sides, jpeg, _) in q.items():
            to = r.route(v[:, cols], sides, g._calibrated_side(), dict.fromkeys(VIEWS), jpeg)
            res["routed_share"][name][split] = {w: float(np.mean(to == w)) for w in VIEWS}
    for what in ("accuracy", "routed_share"):
        for k, row in res[what].items():
            print(what, k, json.dumps(row), flush=True)
    with open(a.out, "w") as fh:
        json.dump(res, fh, indent=1)


if __name__ == "__main__":
    main()
