"""Single crop vs multi-crop fingerprints on the zoo's large split (issue 14, any resolution).

    python -c "from fpfast.zoo.large import build_large; build_large('/tmp/zoo_small', '/tmp/zoo_large')"
    python benchmarks/bench_multicrop.py /tmp/zoo_large --out /tmp/multicrop.json

For each crop budget (``--crops``, e.g. ``1,4,9,4:random:0``: the ``--crops`` syntax of
``fpfast enroll``) and each vector kind (handcrafted + LDA; the shipped universal embedding, no
training, normalize none), a gallery is enrolled from the large split's ``train`` images with that
spec and the ``test`` splits are attributed (kNN k = 10 and nearest centroid, as
``bench_embedding.py``); AUROC = nearest-sample distance, known clean test vs ``open_set``. Also
the seconds each spends computing vectors (on this machine's load: a ratio, not a speed).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.bench_embedding import SPLITS, gallery_of, score, vectors  # noqa: E402
from fpfast.embed.universal import load_universal  # noqa: E402
from fpfast.jobs.mappers import embed_images  # noqa: E402
from fpfast.ops.features import fingerprint_features  # noqa: E402
from fpfast.spec import FingerprintSpec, parse_crops  # noqa: E402
from fpfast.zoo import load_zoo_split  # noqa: E402

COLS = ("test", "test_jpeg90", "test_jpeg75", "test_resize", "test_crop", "unseen_seed", "auroc")
NAMES = {"test": "clean", "test_jpeg90": "JPEG 90", "test_jpeg75": "JPEG 75", "test_resize": "resize 0.5×",
         "test_crop": "crop 3/4", "unseen_seed": "unseen seed", "auroc": "AUROC"}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("zoo")
    ap.add_argument("--out", required=True)
    ap.add_argument("--crops", default="1,4,9,4:random:0")
    ap.add_argument("--kinds", default="lda,universal")
    ap.add_argument("--splits", default=",".join(SPLITS), help="test splits to attribute (open_set always)")
    a = ap.parse_args(argv)
    data = {s: load_zoo_split(a.zoo, s)[:2] for s in ["train"] + a.splits.split(",") + ["open_set"]
            if os.path.isdir(os.path.join(a.zoo, s))}
    labels = {s: data[s][1] for s in data}
    emb = load_universal()
    res = {"zoo": a.zoo, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "universal": emb.identity,
           "machine": f"{platform.machine()}, {os.cpu_count()} cores (shared), torch {torch.__version__}, "
                      f"{torch.get_num_threads()} threads", "load": os.getloadavg()[0], "rows": {}}
    for kind in a.kinds.split(","):
        for c in a.crops.split(","):
            spec = FingerprintSpec(crops=parse_crops(c))
            if kind == "universal":
                spec = spec.replace(embedding=emb.spec_record())
                fn = lambda b, s=spec: embed_images(emb, b, s).numpy()  # noqa: E731
            else:
                fn = lambda b, s=spec: fingerprint_features(b, s).numpy()  # noqa: E731
            t = time.perf_counter()
            vecs = {s: vectors(data[s][0], fn) for s in data}
            secs = time.perf_counter() - t
            g = gallery_of(spec.handcrafted(), vecs["train"], labels["train"], "lda" if kind == "lda" else "none",
                           emb if kind == "universal" else None)
            row = score(g, {s: vecs[s] for s in vecs if s != "train"}, labels)
            row["vector_seconds"] = round(secs, 1)
            row["images"] = sum(len(v) for v in vecs.values())
            name = f"{'handcrafted + LDA' if kind == 'lda' else 'universal, no training'}, crops {c}"
            res["rows"][name] = row
            print(name, json.dumps({k: v for k, v in row.items() if not k.startswith("conf")}), flush=True)
            with open(a.out, "w") as fh:
                json.dump(res, fh, indent=1)
    print(markdown(res))


def markdown(res: dict) -> str:
    lines = ["| row | attribution | " + " | ".join(NAMES[c] for c in COLS) + " | vector s |",
             "|---|---|" + "---:|" * (len(COLS) + 1)]
    for name, row in res["rows"].items():
        for method in ("knn", "centroid"):
            cells = [f"{row[f'{method}/{c}']:.3f}" if f"{method}/{c}" in row else "—" for c in COLS]
            secs = f"{row['vector_seconds']:.0f}" if method == "knn" else ""
            lines.append(f"| {name if method == 'knn' else ''} | {method} | " + " | ".join(cells) + f" | {secs} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
