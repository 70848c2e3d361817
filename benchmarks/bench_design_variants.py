"""What k-means sees, varied: NMI / ARI per space x attribute under three reductions of the
standardised fingerprints (64 principal components, 8, 16 whitened), for benchmarks/results/design.md.

    python -m benchmarks.bench_design_variants ZOO_DIR --refset DIR [--spec npr] [--cache F.npz]

Spaces: the spec's handcrafted vector and residual spectrum; with --refset the ManiFPT RGB and FREQ
artifacts. Leave-one-model-out accuracy does not depend on this choice (see bench_design.py).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fpfast.analyze.design import load_design  # noqa: E402
from fpfast.analyze.fingerprints import collect  # noqa: E402
from fpfast.analyze.metrics import ari, nmi, reduce  # noqa: E402
from fpfast.jobs.options import StreamOptions  # noqa: E402

VARIANTS = {"pca64": (64, False), "pca8": (8, False), "pca16-whitened": (16, True)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("zoo")
    ap.add_argument("--refset")
    ap.add_argument("--spec")
    a = ap.parse_args(argv)
    from sklearn.cluster import KMeans

    from fpfast.projectors import ReferenceSet
    from fpfast.spec import load_spec
    d = load_design(a.zoo)
    ref = ReferenceSet(a.refset) if a.refset else None
    spec = load_spec(a.spec or None)
    spec = spec.replace(size=ref.size) if ref else spec
    col = collect(d, spec, StreamOptions(quiet=True), refset=ref)
    print("| space | k-means input | " + " | ".join(d.attributes) + " |")
    print("|---|---|" + "---:|" * len(d.attributes))
    for name, sp in col.spaces.items():
        X, models = np.nan_to_num(sp.X), np.asarray(sp.models, dtype=object)
        for v, (dims, white) in VARIANTS.items():
            cells = []
            for attr in d.attributes:
                val = d.values(attr)
                keep = np.array([m in val for m in models])
                y = np.array([val[m] for m in models[keep]], dtype=object)
                Z = reduce(X[keep], dims, 0, white).fit_transform(X[keep])
                c = KMeans(len(set(y)), n_init=10, random_state=0).fit_predict(Z)
                cells.append(f"{nmi(y, c):.3f} / {ari(y, c):.3f}")
            print(f"| {name} ({spec.residual}) | {v} | " + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
